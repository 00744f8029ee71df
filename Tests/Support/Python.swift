import Checkpointing
import Crypto
public import Foundation
public import Testing

/// A `python3` run that exited with an error.
public struct PythonFailure: Error, CustomStringConvertible {
    public var status: Int32
    public var stderr: String
    public var description: String { "python3 exited with status \(status):\n\(stderr)" }
}

/// What a command-line tool did.
public struct ToolRun {
    public var status: Int32
    public var stdout: [UInt8]
    public var stderr: String
}

/// Runs a command-line tool (found on `PATH`), with standard input from a file when given.
///
/// Output goes to files, not pipes: a child that fills a pipe nobody reads would hang.
@discardableResult
public func runTool(_ arguments: [String], input: String? = nil) throws -> ToolRun {
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tool-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(at: scratch) }
    let outURL = scratch.appendingPathComponent("stdout")
    let errURL = scratch.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL)
    let err = try FileHandle(forWritingTo: errURL)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    process.standardOutput = out
    process.standardError = err
    if let input { process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: input)) }
    try process.run()
    process.waitUntilExit()
    try out.close()
    try err.close()
    return ToolRun(
        status: process.terminationStatus, stdout: Array(try Data(contentsOf: outURL)),
        stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
}

/// Runs `python3 -c script arguments...` and returns its standard output.
///
/// A non-zero exit records an issue that quotes standard error, and throws.
@discardableResult
public func runPython(
    _ script: String, _ arguments: [String] = [], sourceLocation: SourceLocation = #_sourceLocation
) throws -> String {
    let run = try runTool(["python3", "-c", script] + arguments)
    guard run.status == 0 else {
        let failure = PythonFailure(status: run.status, stderr: run.stderr)
        Issue.record("\(failure)", sourceLocation: sourceLocation)
        throw failure
    }
    return String(decoding: run.stdout, as: UTF8.self)
}

/// The SHA-256 of some bytes, in hex.
public func sha256Hex(_ bytes: some DataProtocol) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

/// Python's `safetensors` package as the reference reader of native files.
public enum PythonSafetensors {
    /// For each path: every tensor's name and the SHA-256 of its raw bytes, as Python reads them.
    static let script = """
        import hashlib, json, sys
        import safetensors
        out = {}
        for path in sys.argv[1:]:
            with open(path, "rb") as f:
                tensors = safetensors.deserialize(f.read())
            out[path] = {name: hashlib.sha256(bytes(info["data"])).hexdigest() for name, info in tensors}
        print(json.dumps(out))
        """

    /// Reads every native checkpoint under `folder` (those this library opens) with Python's
    /// `safetensors` and records an issue for any tensor whose bytes differ from what this
    /// library reads, or any file Python refuses. A float-split file (`.safetensors.fsz`) is
    /// first decoded to its plain bytes (``decompressFile(_:to:limits:)``), which
    /// Python must read as the tensors this library reads from the encoded file.
    public static func crossCheck(folder: String) {
        var expected: [String: [String: String]] = [:]
        let decoded = FileManager.default.temporaryDirectory.appendingPathComponent("decoded-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: decoded) }
        let walker = FileManager.default.enumerator(atPath: folder)
        while let relative = walker?.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            let encoded = name.hasSuffix(".safetensors.fsz")
            guard name.hasSuffix(".safetensors") || encoded, !name.hasPrefix(".") else { continue }
            var path = folder + "/" + relative
            guard let file = try? CheckpointFile.open(path), file.isNative else { continue }
            let tensors = Dictionary(
                uniqueKeysWithValues: file.tree.tensors.map { ($0.path, $0.tensor.withUnsafeBytes { sha256Hex($0) }) })
            if encoded {
                try? FileManager.default.createDirectory(atPath: decoded, withIntermediateDirectories: true)
                path = decoded + "/\(expected.count)-" + name.dropLast(".fsz".count)
                do {
                    try decompressFile(folder + "/" + relative, to: path)
                } catch {
                    Issue.record("\(relative) does not decode to a plain file: \(error)")
                    continue
                }
            }
            expected[path] = tensors
        }
        guard !expected.isEmpty else { return }
        do {
            let output = try runPython(script, expected.keys.sorted())
            let seen = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: [String: String]]
            for (path, tensors) in expected where seen?[path] != tensors {
                Issue.record("Python's safetensors reads \(path) differently from this library")
            }
        } catch {
            Issue.record("Python's safetensors could not read the native files in \(folder): \(error)")
        }
    }
}
