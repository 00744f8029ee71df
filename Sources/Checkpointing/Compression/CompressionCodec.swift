#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A compressed-stream format: chosen by the file name's last extension on save,
/// recognised by its magic number on load.
///
/// Every codec but one writes the plain stream that its command-line tool reads (`gzip -d`,
/// `bzip2 -d`, `xz -d`, `lzma -d`, `zstd -d`, `lz4 -d`, `lzop -d`), in-process and streaming.
/// The exception is this library's own float-split codec (`.fsz`, see the FloatSplitFormat
/// article): it entropy-codes the exponents of each float tensor and stores the mantissas as
/// they are, chunked with an index, so a load decodes only the tensors it needs; `ckpt convert`
/// turns it back into the plain file.
public enum CompressionCodec: String, Sendable, CaseIterable, CustomStringConvertible {
    case gzip, bzip2, xz, lzma, zstd, lz4, lzop
    case floatSplit = "float-split"

    /// The file extension, without its dot: `gz`, `bz2`, `xz`, `lzma`, `zst`, `lz4`, `lzo`, `fsz`.
    public var fileExtension: String {
        switch self {
        case .gzip: "gz"
        case .bzip2: "bz2"
        case .xz: "xz"
        case .lzma: "lzma"
        case .zstd: "zst"
        case .lz4: "lz4"
        case .lzop: "lzo"
        case .floatSplit: "fsz"
        }
    }

    /// The codec a file extension (without its dot) names, if any.
    public init?(fileExtension: String) {
        guard let codec = Self.allCases.first(where: { $0.fileExtension == fileExtension }) else { return nil }
        self = codec
    }

    /// The codec of a sniffed file kind, if the kind is a compressed stream.
    init?(kind: FileKind) {
        switch kind {
        case .gzip: self = .gzip
        case .bzip2: self = .bzip2
        case .xz: self = .xz
        case .lzma: self = .lzma
        case .zstd: self = .zstd
        case .lz4: self = .lz4
        case .lzop: self = .lzop
        case .floatSplit: self = .floatSplit
        case .safetensors, .torchZip, .torchLegacy, .tar, .distributedCheckpoint: return nil
        }
    }

    /// The kind of file a stream of this codec is.
    public var fileKind: FileKind {
        switch self {
        case .gzip: .gzip
        case .bzip2: .bzip2
        case .xz: .xz
        case .lzma: .lzma
        case .zstd: .zstd
        case .lz4: .lz4
        case .lzop: .lzop
        case .floatSplit: .floatSplit
        }
    }

    /// The command-line tool that reads and writes this codec's files (`ckpt convert` for
    /// the float-split codec, which has no tool of its own).
    public var toolName: String {
        switch self {
        case .gzip: "gzip"
        case .floatSplit: "ckpt convert"
        default: rawValue
        }
    }

    /// Whether the codec compresses on several threads (``CompressionOptions/threads``).
    public var isMultithreaded: Bool { self == .zstd || self == .xz || self == .floatSplit }

    /// The level used when ``CompressionOptions/level`` is `nil`: fast, since a checkpoint is
    /// mostly weights, which compress little at any level. Measured on float32 weights like the
    /// bench state's: zstd 1 (given level 3's window) matches zstd 3's ratio; gzip -6 gains 0.3%
    /// over -1 for 20% more time; xz -6 1.2% over -1 for twice the time; lz4 -9 nothing at all.
    public var defaultLevel: Int {
        switch self {
        case .gzip: 1
        case .bzip2: 9  // bzip2's level is only its block size; 9 is what `bzip2` writes.
        case .xz, .lzma: 1
        case .zstd: 1
        case .lz4: 0
        case .lzop: 3  // lzop's default, -3.
        // The zstd level of what is not a float (the header, integer tensors): the floats'
        // exponents are Huffman-coded whatever the level.
        case .floatSplit: 1
        }
    }

    /// The levels the codec accepts.
    public var levels: ClosedRange<Int> {
        switch self {
        case .gzip: 0...9
        case .bzip2: 1...9
        case .xz, .lzma: 0...9
        case .zstd, .floatSplit: -7...22
        case .lz4: 0...12
        // lzop's -2 to -6, which all mean LZO1X-1, the only method written here.
        case .lzop: 2...6
        }
    }

    public var description: String { rawValue }

    /// The implementation.
    var implementation: any StreamCodec.Type {
        switch self {
        case .gzip: GzipCodec.self
        case .bzip2: BZip2Codec.self
        case .xz: XZCodec.self
        case .lzma: LZMACodec.self
        case .zstd: ZstdCodec.self
        case .lz4: LZ4Codec.self
        case .lzop: LzopCodec.self
        case .floatSplit: FloatSplitCodec.self
        }
    }

    /// A sink that compresses what it is given into `sink`; call ``StreamTransform/finish()``
    /// to end the stream.
    func compressor(into sink: any ByteSink, options: CompressionOptions = CompressionOptions()) throws(CheckpointError)
        -> any StreamTransform
    {
        let level = options.level ?? defaultLevel
        guard levels.contains(level) else {
            throw CheckpointError(
                .invalidArgument,
                "\(rawValue) compression level \(level) is out of range: \(rawValue) accepts \(levels.lowerBound) to \(levels.upperBound)")
        }
        let threads = options.threads ?? CompressionOptions.defaultThreads
        guard threads >= 1 else {
            throw CheckpointError(.invalidArgument, "the compression thread count must be at least 1, got \(threads)")
        }
        return try implementation.compressor(into: sink, level: level, threads: threads)
    }

    /// A sink that decompresses what it is given into `sink`; ``StreamTransform/finish()``
    /// fails when the stream is incomplete.
    func decompressor(into sink: any ByteSink) throws(CheckpointError) -> any StreamTransform {
        try implementation.decompressor(into: sink)
    }
}

/// How to compress: the codec's level and, for zstd and xz, the number of threads.
public struct CompressionOptions: Sendable, Equatable {
    /// The codec's level; `nil` is the codec's fast default (``CompressionCodec/defaultLevel``).
    public var level: Int?
    /// Threads for the codecs that can use several (zstd, xz, float-split); `nil` uses every core, up to
    /// 16 (each thread holds a few tens of MB of buffers, and 16 cores of zstd outrun any
    /// disk). Other codecs compress on the calling thread.
    public var threads: Int?

    public init(level: Int? = nil, threads: Int? = nil) {
        self.level = level
        self.threads = threads
    }

    /// The cores this process may run on.
    static var processorCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// The thread count when none is given.
    static var defaultThreads: Int { min(processorCount, 16) }
}

/// A byte sink that transforms what it is given (compresses or decompresses it) and writes
/// the result into the next sink. Memory use is bounded by the codec's buffers, whatever the
/// stream's length.
protocol StreamTransform: ByteSink {
    /// Ends the stream: flushes a compressor's last bytes; checks that a decompressor saw a
    /// complete stream (it throws for a truncated one).
    func finish() throws(CheckpointError)
}

/// One codec over its C library.
protocol StreamCodec {
    /// `level` is within the codec's ``CompressionCodec/levels``; `threads` is at least 1.
    static func compressor(into sink: any ByteSink, level: Int, threads: Int) throws(CheckpointError) -> any StreamTransform
    static func decompressor(into sink: any ByteSink) throws(CheckpointError) -> any StreamTransform
}

/// The staging buffer every codec writes its output into before passing it on.
///
/// 1 MiB: large enough that the next sink (a file, usually) sees few, large writes.
final class CodecBuffer {
    static let defaultCapacity = 1 << 20
    let start: UnsafeMutableRawPointer
    let capacity: Int

    init(capacity: Int = CodecBuffer.defaultCapacity) {
        self.capacity = capacity
        start = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
    }

    /// Writes the first `count` bytes to `sink`.
    func flush(_ count: Int, to sink: any ByteSink) throws(CheckpointError) {
        guard count > 0 else { return }
        try sink.write(UnsafeRawBufferPointer(start: start, count: count))
    }

    deinit { start.deallocate() }
}

/// Errors shared by the codecs.
enum CodecErrors {
    /// The input is damaged.
    static func corrupt(_ codec: CompressionCodec, _ detail: String, at offset: Int) -> CheckpointError {
        CheckpointError(
            .malformed,
            "the \(codec.rawValue) stream is corrupt (\(detail)); restore the file from another copy",
            offset: offset)
    }

    /// The input ended inside a stream.
    static func truncated(_ codec: CompressionCodec, after count: Int) -> CheckpointError {
        CheckpointError(
            .malformed,
            "the \(codec.rawValue) stream is truncated: it ends after \(count) bytes, before the end of the compressed data; the file is incomplete (an interrupted copy or download?)",
            offset: count)
    }

    /// Bytes follow the end of the stream that are not another stream of the same codec.
    static func trailingData(_ codec: CompressionCodec, at offset: Int) -> CheckpointError {
        CheckpointError(
            .malformed,
            "bytes follow the end of the \(codec.rawValue) stream that are not another \(codec.rawValue) stream; the file is damaged or two files were joined",
            offset: offset)
    }

    /// The library failed for a reason that is not the input's fault.
    static func library(_ codec: CompressionCodec, _ operation: String, _ detail: String) -> CheckpointError {
        CheckpointError(.io, "\(codec.rawValue): \(operation) failed: \(detail)")
    }

    /// The input exceeds the decoder's memory limit.
    static func memoryLimit(_ codec: CompressionCodec, _ detail: String) -> CheckpointError {
        CheckpointError(
            .limitExceeded,
            "the \(codec.rawValue) stream needs more decoder memory than this library allows (\(detail)); it was not written by a common setting of \(codec.toolName): decompress it with the \(codec.toolName) tool and load the result")
    }
}
