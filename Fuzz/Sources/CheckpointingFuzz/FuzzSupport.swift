#if canImport(Glibc)
import Glibc
#endif

@testable import Checkpointing

/// Properties the targets check on what a parser accepted.
enum FuzzCheck {
    /// Crashes, naming the property, when `condition` is false: libFuzzer then saves the input.
    static func expect(_ condition: Bool, _ property: @autoclosure () -> String) {
        guard !condition else { return }
        fatalError("fuzz property violated: \(property())")
    }

    /// Runs `body`, which must not throw for the input at hand (a tree this library read must
    /// save again); a thrown error is a finding.
    @discardableResult
    static func succeeds<T>(_ what: String, _ body: () throws(CheckpointError) -> T) -> T {
        do {
            return try body()
        } catch {
            fatalError("fuzz property violated: \(what) failed: \(error)")
        }
    }
}

/// What a parser made of an input: compared between the whole input and the same bytes
/// handed over in pieces.
enum Outcome: Equatable, CustomStringConvertible {
    case accepted(UInt64)
    case refused(CheckpointError.Code)

    var description: String {
        switch self {
        case .accepted(let digest): "accepted (digest \(TensorChecksum.hex(digest)))"
        case .refused(let code): "refused (\(code))"
        }
    }

    var isLimit: Bool { self == .refused(.limitExceeded) }
}

/// Hands `bytes` to `write` in uneven pieces (1, 7, 2, 31, ... bytes), so that every state of
/// a streaming parser meets input that stops mid-field.
func feedInPieces(
    _ bytes: UnsafeRawBufferPointer, _ write: (UnsafeRawBufferPointer) throws(CheckpointError) -> Void
) throws(CheckpointError) {
    let sizes = [1, 7, 2, 31, 3, 127, 5, 509, 11, 4093]
    var offset = 0
    var turn = 0
    while offset < bytes.count {
        let end = min(bytes.count, offset + sizes[turn % sizes.count])
        try write(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
        offset = end
        turn += 1
    }
}

/// A sink that keeps what it is given.
final class MemorySink: ByteSink {
    private(set) var bytes: [UInt8] = []
    var position: Int { bytes.count }
    func write(_ chunk: UnsafeRawBufferPointer) throws(CheckpointError) { bytes.append(contentsOf: chunk) }
}

/// A sink that keeps only the XXH3-64 and the count of what it is given.
final class DigestSink: ByteSink {
    private let hasher = StreamingChecksum()
    private(set) var position = 0
    func write(_ chunk: UnsafeRawBufferPointer) throws(CheckpointError) {
        hasher.update(chunk)
        position += chunk.count
    }
    /// The digest of the bytes, mixed with their count.
    var digest: UInt64 { hasher.value ^ UInt64(position) &* 0x9E37_79B9_7F4A_7C15 }
}

/// A scratch file that holds one input at a time, mapped as the parsers map a checkpoint.
///
/// The file lives in memory (`/dev/shm`) with no name, and is reused for every input. A mapping
/// ends mid-page: the rest of the page is readable, so AddressSanitizer is told to treat it
/// as out of bounds, and a read past the input is reported as it would be on the heap (a read
/// beyond that page faults, or lands in another mapping unseen).
/// `@unchecked Sendable`: libFuzzer runs every input on one thread.
final class InputFile: @unchecked Sendable {
    private let fd: Int32
    private let path: String

    init(name: String) {
        path = name
        var template = Array("/dev/shm/checkpointing-fuzz-XXXXXX".utf8CString)
        var fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if fd < 0 {
            template = Array("/tmp/checkpointing-fuzz-XXXXXX".utf8CString)
            fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        }
        guard fd >= 0 else { fatalError("the harness cannot create a scratch file: errno \(errno)") }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Maps `bytes`; the previous mapping must be gone (a parser keeps none past its input).
    func map(_ bytes: UnsafeRawBufferPointer) -> MappedFile {
        guard ftruncate(fd, 0) == 0 else { fatalError("the harness cannot truncate its scratch file: errno \(errno)") }
        var written = 0
        while written < bytes.count {
            let count = pwrite(fd, bytes.baseAddress! + written, bytes.count - written, off_t(written))
            guard count > 0 else { fatalError("the harness cannot write its scratch file: errno \(errno)") }
            written += count
        }
        let file: MappedFile
        do {
            file = try MappedFile(descriptor: fd, path: path)
        } catch {
            fatalError("the harness cannot map its scratch file: \(error)")
        }
        if let start = file.bytes.baseAddress, !file.bytes.isEmpty {
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            let end = (file.bytes.count + page - 1) / page * page
            Sanitizers.poison(start + file.bytes.count, end - file.bytes.count)
        }
        return file
    }

    func map(_ bytes: [UInt8]) -> MappedFile {
        bytes.withUnsafeBytes { map($0) }
    }
}

/// The sanitizers' run-time interface, looked up at run time (absent from a build without them).
enum Sanitizers {
    private typealias Poison = @convention(c) (UnsafeRawPointer?, Int) -> Void
    private typealias Toggle = @convention(c) () -> Void

    private static func lookUp<T>(_ name: String, as type: T.Type) -> T? {
        dlsym(nil, name).map { unsafeBitCast($0, to: type) }
    }

    private static let poisonRegion = lookUp("__asan_poison_memory_region", as: Poison.self)
    private static let disableLeakChecks = lookUp("__lsan_disable", as: Toggle.self)
    private static let enableLeakChecks = lookUp("__lsan_enable", as: Toggle.self)

    /// Marks memory the program may not touch; AddressSanitizer's `munmap` interceptor clears
    /// the mark when a mapping goes.
    static func poison(_ start: UnsafeRawPointer, _ count: Int) {
        guard count > 0 else { return }
        poisonRegion?(start, count)
    }

    /// Runs `body` with its allocations hidden from LeakSanitizer.
    ///
    /// For what lives as long as the process (seed trees, a target's fixed archive, the lazy
    /// globals of the library and of Foundation): LeakSanitizer finds a pointer only where it
    /// is stored whole, and Swift stores the case of a multi-payload enum in the spare bits
    /// of the references it holds, so an object reachable only through such an enum (a
    /// `StateValue` in a global) looks unreachable.
    static func ignoringLeaks(_ body: () -> Void) {
        disableLeakChecks?()
        body()
        enableLeakChecks?()
    }
}
