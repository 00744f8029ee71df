internal import CBZip2

/// bzip2 over libbz2. Single-threaded: libbz2 has no parallel mode.
enum BZip2Codec: StreamCodec {
    static func compressor(into sink: any ByteSink, level: Int, threads: Int) throws(CheckpointError) -> any StreamTransform {
        try Compressor(sink: sink, level: level)
    }

    static func decompressor(into sink: any ByteSink) throws(CheckpointError) -> any StreamTransform {
        try Decompressor(sink: sink)
    }

    /// libbz2 keeps a pointer back to its `bz_stream`, so the stream lives at a fixed address.
    private static func makeStream() -> UnsafeMutablePointer<bz_stream> {
        let stream = UnsafeMutablePointer<bz_stream>.allocate(capacity: 1)
        stream.initialize(to: bz_stream())
        return stream
    }

    /// libbz2 counts in `UInt32`: larger inputs go in pieces.
    private static let maximumPiece = 1 << 30

    final class Compressor: StreamTransform {
        private let sink: any ByteSink
        private let stream = BZip2Codec.makeStream()
        private let buffer = CodecBuffer()
        private(set) var position = 0

        init(sink: any ByteSink, level: Int) throws(CheckpointError) {
            self.sink = sink
            // Work factor 0 is libbz2's default (30) for repetitive input.
            let result = BZ2_bzCompressInit(stream, Int32(level), 0, 0)
            guard result == BZ_OK else {
                stream.deallocate()
                throw CodecErrors.library(.bzip2, "BZ2_bzCompressInit", "error \(result)")
            }
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            try bytes.forEachChunk(ofAtMost: BZip2Codec.maximumPiece) { (piece) throws(CheckpointError) in
                stream.pointee.next_in = UnsafeMutableRawPointer(mutating: piece.baseAddress!).assumingMemoryBound(to: CChar.self)
                stream.pointee.avail_in = UInt32(piece.count)
                try run(action: BZ_RUN)
            }
            position += bytes.count
        }

        func finish() throws(CheckpointError) {
            stream.pointee.avail_in = 0
            try run(action: BZ_FINISH)
        }

        private func run(action: Int32) throws(CheckpointError) {
            while true {
                stream.pointee.next_out = buffer.start.assumingMemoryBound(to: CChar.self)
                stream.pointee.avail_out = UInt32(buffer.capacity)
                let result = BZ2_bzCompress(stream, action)
                guard result == BZ_RUN_OK || result == BZ_FINISH_OK || result == BZ_STREAM_END else {
                    throw CodecErrors.library(.bzip2, "BZ2_bzCompress", "error \(result)")
                }
                try buffer.flush(buffer.capacity - Int(stream.pointee.avail_out), to: sink)
                if action == BZ_FINISH {
                    if result == BZ_STREAM_END { return }
                } else if stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 {
                    return
                }
            }
        }

        deinit {
            BZ2_bzCompressEnd(stream)
            stream.deallocate()
        }
    }

    final class Decompressor: StreamTransform {
        private let sink: any ByteSink
        private let stream = BZip2Codec.makeStream()
        private let buffer = CodecBuffer()
        private(set) var position = 0
        /// Whether the input so far ends exactly at the end of a bzip2 stream.
        private var atStreamEnd = false
        private var sawInput = false

        init(sink: any ByteSink) throws(CheckpointError) {
            self.sink = sink
            let result = BZ2_bzDecompressInit(stream, 0, 0)
            guard result == BZ_OK else {
                stream.deallocate()
                throw CodecErrors.library(.bzip2, "BZ2_bzDecompressInit", "error \(result)")
            }
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            try bytes.forEachChunk(ofAtMost: BZip2Codec.maximumPiece) { (piece) throws(CheckpointError) in try decompress(piece) }
        }

        private func decompress(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            guard !bytes.isEmpty else { return }
            sawInput = true
            stream.pointee.next_in = UnsafeMutableRawPointer(mutating: bytes.baseAddress!).assumingMemoryBound(to: CChar.self)
            stream.pointee.avail_in = UInt32(bytes.count)
            while true {
                if atStreamEnd {
                    guard stream.pointee.avail_in > 0 else { break }
                    // bzip2 reads streams joined one after another, as its tool does.
                    let next = UnsafeRawBufferPointer(start: stream.pointee.next_in, count: Int(stream.pointee.avail_in))
                    if next[0] != UInt8(ascii: "B") {
                        throw CodecErrors.trailingData(.bzip2, at: position + bytes.count - next.count)
                    }
                    BZ2_bzDecompressEnd(stream)
                    let (input, available) = (stream.pointee.next_in, stream.pointee.avail_in)
                    stream.pointee = bz_stream()
                    guard BZ2_bzDecompressInit(stream, 0, 0) == BZ_OK else {
                        throw CodecErrors.library(.bzip2, "BZ2_bzDecompressInit", "out of memory")
                    }
                    stream.pointee.next_in = input
                    stream.pointee.avail_in = available
                    atStreamEnd = false
                }
                stream.pointee.next_out = buffer.start.assumingMemoryBound(to: CChar.self)
                stream.pointee.avail_out = UInt32(buffer.capacity)
                let result = BZ2_bzDecompress(stream)
                switch result {
                case BZ_OK:
                    break
                case BZ_STREAM_END:
                    atStreamEnd = true
                case BZ_DATA_ERROR, BZ_DATA_ERROR_MAGIC:
                    let consumed = position + bytes.count - Int(stream.pointee.avail_in)
                    throw CodecErrors.corrupt(
                        .bzip2, result == BZ_DATA_ERROR ? "a block fails its CRC or is malformed" : "bad magic number",
                        at: consumed)
                case BZ_MEM_ERROR:
                    throw CodecErrors.library(.bzip2, "BZ2_bzDecompress", "out of memory")
                default:
                    throw CodecErrors.library(.bzip2, "BZ2_bzDecompress", "error \(result)")
                }
                try buffer.flush(buffer.capacity - Int(stream.pointee.avail_out), to: sink)
                if !atStreamEnd && stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 { break }
            }
            position += bytes.count
        }

        func finish() throws(CheckpointError) {
            guard sawInput, atStreamEnd else { throw CodecErrors.truncated(.bzip2, after: position) }
        }

        deinit {
            BZ2_bzDecompressEnd(stream)
            stream.deallocate()
        }
    }
}
