import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// A sink that keeps everything written to it.
final class CollectingSink: ByteSink {
    var bytes: [UInt8] = []
    var position: Int { bytes.count }
    func write(_ chunk: UnsafeRawBufferPointer) throws(CheckpointError) { bytes.append(contentsOf: chunk) }
}

/// What a command-line tool did.
struct ToolRun {
    var status: Int32
    var stdout: [UInt8]
    var stderr: String
}

/// Runs a command-line tool (found on `PATH`), with standard input from a file when given.
///
/// Output goes to files, not pipes: a child that fills a pipe nobody reads would hang.
@discardableResult
func runTool(_ arguments: [String], input: String? = nil) throws -> ToolRun {
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

/// The tools' own names and options for each codec.
extension CompressionCodec {
    /// `tool -t FILE`: the tool's integrity test.
    var testCommand: [String] {
        switch self {
        case .zstd: ["zstd", "-q", "-t"]
        default: [toolName, "-t"]
        }
    }

    /// `tool -c`: compress standard input to standard output.
    var compressCommand: [String] {
        switch self {
        case .zstd: ["zstd", "-q", "-c"]
        default: [toolName, "-c"]
        }
    }

    /// `tool -dc FILE`: decompress to standard output.
    var decompressCommand: [String] {
        switch self {
        case .zstd: ["zstd", "-q", "-dc"]
        default: [toolName, "-dc"]
        }
    }
}

/// Bytes that compress somewhat, like weights: floats with random mantissas near a scale.
func weightLikeBytes(count: Int, seed: UInt64) -> [UInt8] {
    var random = SplitMix64(seed: seed)
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset + 4 <= raw.count {
            let value = (Float(random.next() >> 40) / Float(1 << 23) - 1) * 0.02
            raw.storeBytes(of: value, toByteOffset: offset, as: Float.self)
            offset += 4
        }
    }
    return bytes
}

/// `bytes` compressed with `codec`, written in pieces of varying size.
func compress(_ bytes: [UInt8], _ codec: CompressionCodec, options: CompressionOptions = CompressionOptions(), seed: UInt64 = 1)
    throws -> [UInt8]
{
    let sink = CollectingSink()
    let compressor = try codec.compressor(into: sink, options: options)
    try feed(bytes, to: compressor, seed: seed)
    try compressor.finish()
    return sink.bytes
}

/// `bytes` decompressed with `codec`, fed in pieces of varying size.
func decompress(_ bytes: [UInt8], _ codec: CompressionCodec, seed: UInt64 = 2) throws -> [UInt8] {
    let sink = CollectingSink()
    let decompressor = try codec.decompressor(into: sink)
    try feed(bytes, to: decompressor, seed: seed)
    try decompressor.finish()
    return sink.bytes
}

/// Writes `bytes` to `sink` in pieces of 1 byte to 300 KB, so every codec sees input split at
/// awkward places (inside headers, across blocks).
func feed(_ bytes: [UInt8], to sink: any ByteSink, seed: UInt64) throws {
    var random = SplitMix64(seed: seed)
    var offset = 0
    try bytes.withUnsafeBytes { raw in
        while offset < raw.count {
            let limit = random.next() % 4 == 0 ? 16 : 300_000
            let count = min(raw.count - offset, 1 + Int(random.next() % UInt64(limit)))
            try sink.write(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + count)]))
            offset += count
        }
    }
}

/// The SHA-256 of bytes, for comparing large buffers without printing them.
func digest(_ bytes: [UInt8]) -> String { sha256Hex(bytes) }
