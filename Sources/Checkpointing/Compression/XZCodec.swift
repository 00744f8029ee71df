internal import CLZMA

/// xz over liblzma: the multi-threaded stream encoder (`lzma_stream_encoder_mt`), which splits
/// the input into blocks compressed in parallel and records their sizes, so the
/// multi-threaded decoder can also spread the work. One thread uses the plain stream encoder.
enum XZCodec: StreamCodec {
    static func compressor(into sink: any ByteSink, level: Int, threads: Int) throws(CheckpointError) -> any StreamTransform {
        try LibLZMATransform(codec: .xz, sink: sink, decoding: false) { stream in
            guard threads > 1 else { return lzma_easy_encoder(stream, UInt32(level), LZMA_CHECK_CRC64) }
            var options = lzma_mt()
            options.threads = UInt32(threads)
            options.preset = UInt32(level)
            options.check = LZMA_CHECK_CRC64
            return lzma_stream_encoder_mt(stream, &options)
        }
    }

    static func decompressor(into sink: any ByteSink) throws(CheckpointError) -> any StreamTransform {
        try LibLZMATransform(codec: .xz, sink: sink, decoding: true) { stream in
            var options = lzma_mt()
            // Streams joined one after another decode as one, as with the xz tool.
            options.flags = clzma_concatenated()
            options.threads = UInt32(CompressionOptions.defaultThreads)
            options.memlimit_threading = LibLZMATransform.memoryLimit / 2
            options.memlimit_stop = LibLZMATransform.memoryLimit
            return lzma_stream_decoder_mt(stream, &options)
        }
    }
}

/// A liblzma encoder or decoder as a sink: the driver shared by xz and lzma.
final class LibLZMATransform: StreamTransform {
    /// The most memory a decoder may use: a stream asks for its dictionary, and xz's largest
    /// preset (-9e) needs 64 MiB, so 1 GiB refuses only streams made to exhaust memory.
    static let memoryLimit: UInt64 = 1 << 30

    private let codec: CompressionCodec
    private let sink: any ByteSink
    private let decoding: Bool
    private let stream: UnsafeMutablePointer<lzma_stream>
    private let buffer = CodecBuffer()
    private(set) var position = 0
    private var ended = false
    private var sawInput = false

    /// `setup` initialises the stream as an encoder or decoder.
    init(
        codec: CompressionCodec, sink: any ByteSink, decoding: Bool,
        setup: (UnsafeMutablePointer<lzma_stream>) -> lzma_ret
    ) throws(CheckpointError) {
        self.codec = codec
        self.sink = sink
        self.decoding = decoding
        // liblzma keeps internal pointers to its `lzma_stream`, so the stream lives at a fixed address.
        stream = UnsafeMutablePointer<lzma_stream>.allocate(capacity: 1)
        stream.initialize(to: lzma_stream())
        let result = setup(stream)
        guard result == LZMA_OK else {
            stream.deallocate()
            throw CodecErrors.library(codec, decoding ? "starting the decoder" : "starting the encoder", Self.describe(result))
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        guard !bytes.isEmpty else { return }
        sawInput = true
        if ended {
            throw CodecErrors.trailingData(codec, at: position)
        }
        stream.pointee.next_in = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_in = bytes.count
        let start = position
        try run(LZMA_RUN, inputStart: start, inputCount: bytes.count)
        position += bytes.count
        if ended && stream.pointee.avail_in > 0 {
            throw CodecErrors.trailingData(codec, at: start + bytes.count - stream.pointee.avail_in)
        }
    }

    func finish() throws(CheckpointError) {
        if decoding && !sawInput { throw CodecErrors.truncated(codec, after: 0) }
        guard !ended else { return }
        stream.pointee.avail_in = 0
        try run(LZMA_FINISH, inputStart: position, inputCount: 0)
        if !ended { throw CodecErrors.truncated(codec, after: position) }
    }

    /// Runs the coder until the input is used up (or, finishing, the stream ends).
    private func run(_ action: lzma_action, inputStart: Int, inputCount: Int) throws(CheckpointError) {
        while true {
            stream.pointee.next_out = buffer.start.assumingMemoryBound(to: UInt8.self)
            stream.pointee.avail_out = buffer.capacity
            let result = lzma_code(stream, action)
            try buffer.flush(buffer.capacity - stream.pointee.avail_out, to: sink)
            switch result {
            case LZMA_OK:
                if action == LZMA_RUN && stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 { return }
            case LZMA_STREAM_END:
                ended = true
                return
            case LZMA_BUF_ERROR:
                // No progress is possible: the input ended inside the stream.
                if decoding { throw CodecErrors.truncated(codec, after: inputStart + inputCount - stream.pointee.avail_in) }
                throw CodecErrors.library(codec, "encoding", Self.describe(result))
            case LZMA_DATA_ERROR, LZMA_FORMAT_ERROR, LZMA_OPTIONS_ERROR:
                guard decoding else { throw CodecErrors.library(codec, "encoding", Self.describe(result)) }
                throw CodecErrors.corrupt(codec, Self.describe(result), at: inputStart + inputCount - stream.pointee.avail_in)
            case LZMA_MEMLIMIT_ERROR:
                throw CodecErrors.memoryLimit(codec, "it needs more than \(Self.memoryLimit >> 20) MiB")
            default:
                throw CodecErrors.library(codec, decoding ? "decoding" : "encoding", Self.describe(result))
            }
        }
    }

    static func describe(_ result: lzma_ret) -> String {
        switch result {
        case LZMA_MEM_ERROR: "out of memory"
        case LZMA_MEMLIMIT_ERROR: "memory limit reached"
        case LZMA_FORMAT_ERROR: "not in the expected format"
        case LZMA_OPTIONS_ERROR: "unsupported options in the header"
        case LZMA_DATA_ERROR: "the compressed data is damaged (a check or size does not match)"
        case LZMA_BUF_ERROR: "no progress possible"
        case LZMA_UNSUPPORTED_CHECK: "unsupported integrity check"
        case LZMA_PROG_ERROR: "invalid arguments"
        default: "liblzma error \(result.rawValue)"
        }
    }

    deinit {
        lzma_end(stream)
        stream.deallocate()
    }
}
