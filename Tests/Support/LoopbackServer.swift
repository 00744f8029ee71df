import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A Python server on 127.0.0.1 that a test starts: moto's S3 server, or a small stub or proxy.
/// It gets a free port, is waited for until it accepts connections, and is killed when stopped
/// or released; it also exits by itself when the test process dies, even by a crash. Only
/// loopback addresses are ever used.
///
/// `@unchecked Sendable`: the process is started in `init` and only terminated afterwards,
/// once, under the lock.
public final class LoopbackServer: @unchecked Sendable {
    public let port: Int
    public var endpoint: String { "http://127.0.0.1:\(port)" }
    private let process: Process
    private let logFile: URL
    private let stopped = Mutex(false)

    /// Runs `script` with `python3`, with `arguments` after it (`{port}` in them becomes the
    /// port), and waits until the port accepts connections.
    public init(python script: String, _ arguments: [String], environment: [String: String] = [:], name: String) throws {
        port = try Self.freePort()
        logFile = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(port).log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let log = try FileHandle(forWritingTo: logFile)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-u", "-c", Self.orphanGuard + script]
            + arguments.map { $0.replacingOccurrences(of: "{port}", with: String(port)) }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try log.close()
        let deadline = ContinuousClock.now + .seconds(60)
        while !Self.accepts(port) {
            guard process.isRunning else {
                throw ServerFailure("\(name) exited before it answered:\n\(self.log)")
            }
            guard ContinuousClock.now < deadline else {
                stop()
                throw ServerFailure("\(name) did not answer on port \(port) within 60 s:\n\(self.log)")
            }
            usleep(50_000)
        }
    }

    /// What the server printed.
    public var log: String {
        (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
    }

    /// Kills the server (SIGKILL: a stopped server must not finish anything) and waits for it.
    public func stop() {
        let already = stopped.withLock { state in
            defer { state = true }
            return state
        }
        guard !already else { return }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: logFile)
    }

    deinit { stop() }

    /// Python that ends the process once its parent (the test process) is gone.
    static let orphanGuard = """
        import os as _os, threading as _threading, time as _time
        def _watch(parent=_os.getppid()):
            while _os.getppid() == parent:
                _time.sleep(0.5)
            _os._exit(0)
        _threading.Thread(target=_watch, daemon=True).start()

        """

    /// A port on 127.0.0.1 that nothing listens on right now.
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ServerFailure("socket failed") }
        defer { close(fd) }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw ServerFailure("bind failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Whether a TCP connection to 127.0.0.1:`port` succeeds.
    public static func accepts(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}

/// A server that would not start.
public struct ServerFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// moto's S3 server (`moto_server`, from PyPI's `moto[server]`) on 127.0.0.1.
public enum MotoServer {
    /// Starts one; `environment` can set moto's options (`S3_UPLOAD_PART_MIN_SIZE`, ...).
    ///
    /// Records an issue naming the install step when moto is not installed.
    public static func start(environment: [String: String] = [:]) throws -> LoopbackServer {
        guard pythonCanImport("moto.server, flask, flask_cors") else {
            Issue.record("moto[server] is not installed: run scripts/install-dependencies.sh --test")
            throw ServerFailure("moto[server] is not installed")
        }
        return try LoopbackServer(
            python: "import runpy, sys\nsys.argv[0] = 'moto_server'\nrunpy.run_module('moto.server', run_name='__main__')",
            ["-H", "127.0.0.1", "-p", "{port}"], environment: environment, name: "moto")
    }
}

/// Whether `python3` can import `modules` (a comma-separated list), without recording anything.
public func pythonCanImport(_ modules: String) -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", "import \(modules)"]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
}
