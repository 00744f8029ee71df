internal import CZlib

/// gzip (RFC 1952) over zlib: deflate with window bits 31, which adds the gzip header and the
/// CRC-32 trailer. Single-threaded: zlib has no parallel mode.
enum GzipCodec: StreamCodec {
    static func compressor(into sink: any ByteSink, level: Int, threads: Int) throws(CheckpointError) -> any StreamTransform {
        try Compressor(sink: sink, level: level)
    }

    static func decompressor(into sink: any ByteSink) throws(CheckpointError) -> any StreamTransform {
        try Decompressor(sink: sink)
    }

    /// zlib keeps a pointer back to its `z_stream` and checks it on every call, so the stream
    /// lives at a fixed address.
    private static func makeStream() -> UnsafeMutablePointer<z_stream> {
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        return stream
    }

    private static func message(_ stream: UnsafeMutablePointer<z_stream>, _ code: Int32) -> String {
        if let text = stream.pointee.msg { return String(cString: text) }
        return "zlib error \(code)"
    }

    /// zlib counts in `UInt32`: larger inputs go in pieces.
    private static let maximumPiece = 1 << 30

    final class Compressor: StreamTransform {
        private let sink: any ByteSink
        private let stream = GzipCodec.makeStream()
        private let buffer = CodecBuffer()
        private(set) var position = 0

        init(sink: any ByteSink, level: Int) throws(CheckpointError) {
            self.sink = sink
            // Window bits 31: a 32 KiB window (15) plus 16 for the gzip wrapper; memory level 8 is zlib's default.
            let result = czlib_deflate_init2(stream, Int32(level), Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY)
            guard result == Z_OK else {
                stream.deallocate()
                throw CodecErrors.library(.gzip, "deflateInit2", "zlib error \(result)")
            }
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            try bytes.forEachChunk(ofAtMost: GzipCodec.maximumPiece) { (piece) throws(CheckpointError) in
                stream.pointee.next_in = UnsafeMutableRawPointer(mutating: piece.baseAddress!).assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_in = uInt(piece.count)
                try run(flush: Z_NO_FLUSH)
            }
            position += bytes.count
        }

        func finish() throws(CheckpointError) {
            stream.pointee.avail_in = 0
            try run(flush: Z_FINISH)
        }

        /// Deflates until the input is used up (or, when finishing, the stream has ended),
        /// passing each full buffer on.
        private func run(flush: Int32) throws(CheckpointError) {
            while true {
                stream.pointee.next_out = buffer.start.assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = uInt(buffer.capacity)
                let result = deflate(stream, flush)
                guard result == Z_OK || result == Z_STREAM_END || result == Z_BUF_ERROR else {
                    throw CodecErrors.library(.gzip, "deflate", GzipCodec.message(stream, result))
                }
                try buffer.flush(buffer.capacity - Int(stream.pointee.avail_out), to: sink)
                if flush == Z_FINISH {
                    if result == Z_STREAM_END { return }
                } else if stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 {
                    return
                }
            }
        }

        deinit {
            deflateEnd(stream)
            stream.deallocate()
        }
    }

    final class Decompressor: StreamTransform {
        private let sink: any ByteSink
        private let stream = GzipCodec.makeStream()
        private let buffer = CodecBuffer()
        private(set) var position = 0
        /// Whether the input so far ends exactly at the end of a gzip member.
        private var atMemberEnd = false
        private var sawInput = false

        init(sink: any ByteSink) throws(CheckpointError) {
            self.sink = sink
            let result = czlib_inflate_init2(stream, 31)
            guard result == Z_OK else {
                stream.deallocate()
                throw CodecErrors.library(.gzip, "inflateInit2", "zlib error \(result)")
            }
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            try bytes.forEachChunk(ofAtMost: GzipCodec.maximumPiece) { (piece) throws(CheckpointError) in try inflate(piece) }
        }

        private func inflate(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            guard !bytes.isEmpty else { return }
            sawInput = true
            stream.pointee.next_in = UnsafeMutableRawPointer(mutating: bytes.baseAddress!).assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_in = uInt(bytes.count)
            while true {
                if atMemberEnd {
                    guard stream.pointee.avail_in > 0 else { break }
                    // gzip allows several members one after another; anything else is garbage.
                    let next = UnsafeRawBufferPointer(start: stream.pointee.next_in, count: Int(stream.pointee.avail_in))
                    if next[0] != 0x1F || (next.count > 1 && next[1] != 0x8B) {
                        throw CodecErrors.trailingData(.gzip, at: position + bytes.count - next.count)
                    }
                    inflateReset(stream)
                    atMemberEnd = false
                }
                stream.pointee.next_out = buffer.start.assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = uInt(buffer.capacity)
                let result = CZlib.inflate(stream, Z_NO_FLUSH)
                switch result {
                case Z_OK, Z_BUF_ERROR:
                    break
                case Z_STREAM_END:
                    atMemberEnd = true
                case Z_NEED_DICT, Z_DATA_ERROR:
                    let consumed = position + bytes.count - Int(stream.pointee.avail_in)
                    throw CodecErrors.corrupt(.gzip, GzipCodec.message(stream, result), at: consumed)
                case Z_MEM_ERROR:
                    throw CodecErrors.library(.gzip, "inflate", "out of memory")
                default:
                    throw CodecErrors.library(.gzip, "inflate", GzipCodec.message(stream, result))
                }
                try buffer.flush(buffer.capacity - Int(stream.pointee.avail_out), to: sink)
                // Done when the input is used up and the output did not fill the buffer (so
                // nothing is pending inside zlib).
                if !atMemberEnd && stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 { break }
            }
            position += bytes.count
        }

        func finish() throws(CheckpointError) {
            guard sawInput, atMemberEnd else { throw CodecErrors.truncated(.gzip, after: position) }
        }

        deinit {
            inflateEnd(stream)
            stream.deallocate()
        }
    }
}
