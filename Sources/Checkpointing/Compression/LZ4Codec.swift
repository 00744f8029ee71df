internal import CLZ4

/// The lz4 *frame* format (magic `04 22 4D 18`, what the `lz4` tool writes) over liblz4's
/// `LZ4F_*` API, with the tool's defaults: 4 MiB independent blocks and a content checksum.
/// Single-threaded: liblz4 has no parallel mode (and compresses faster than a disk writes).
enum LZ4Codec: StreamCodec {
    static func compressor(into sink: any ByteSink, level: Int, threads: Int) throws(CheckpointError) -> any StreamTransform {
        try Compressor(sink: sink, level: level)
    }

    static func decompressor(into sink: any ByteSink) throws(CheckpointError) -> any StreamTransform {
        try Decompressor(sink: sink)
    }

    private static func errorName(_ code: Int) -> String { String(cString: LZ4F_getErrorName(code)) }

    final class Compressor: StreamTransform {
        /// Input is handed to liblz4 in pieces of this size, so the output buffer has a fixed bound.
        private static let piece = 1 << 20
        private let sink: any ByteSink
        private let context: OpaquePointer
        private var preferences = LZ4F_preferences_t()
        private let buffer: CodecBuffer
        private(set) var position = 0

        init(sink: any ByteSink, level: Int) throws(CheckpointError) {
            self.sink = sink
            preferences.frameInfo.blockSizeID = LZ4F_max4MB
            preferences.frameInfo.blockMode = LZ4F_blockIndependent
            preferences.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
            preferences.compressionLevel = Int32(level)
            buffer = CodecBuffer(capacity: max(LZ4F_compressBound(Self.piece, &preferences), CodecBuffer.defaultCapacity))
            var context: OpaquePointer?
            let created = LZ4F_createCompressionContext(&context, clz4_frame_version())
            guard LZ4F_isError(created) == 0, let context else {
                throw CodecErrors.library(.lz4, "LZ4F_createCompressionContext", LZ4Codec.errorName(created))
            }
            self.context = context
            let header = LZ4F_compressBegin(context, buffer.start, buffer.capacity, &preferences)
            guard LZ4F_isError(header) == 0 else {
                LZ4F_freeCompressionContext(context)
                throw CodecErrors.library(.lz4, "LZ4F_compressBegin", LZ4Codec.errorName(header))
            }
            try buffer.flush(header, to: sink)
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            try bytes.forEachChunk(ofAtMost: Self.piece) { (piece) throws(CheckpointError) in
                let written = LZ4F_compressUpdate(context, buffer.start, buffer.capacity, piece.baseAddress, piece.count, nil)
                guard LZ4F_isError(written) == 0 else {
                    throw CodecErrors.library(.lz4, "LZ4F_compressUpdate", LZ4Codec.errorName(written))
                }
                try buffer.flush(written, to: sink)
            }
            position += bytes.count
        }

        func finish() throws(CheckpointError) {
            let written = LZ4F_compressEnd(context, buffer.start, buffer.capacity, nil)
            guard LZ4F_isError(written) == 0 else {
                throw CodecErrors.library(.lz4, "LZ4F_compressEnd", LZ4Codec.errorName(written))
            }
            try buffer.flush(written, to: sink)
        }

        deinit { LZ4F_freeCompressionContext(context) }
    }

    final class Decompressor: StreamTransform {
        private let sink: any ByteSink
        private let context: OpaquePointer
        private let buffer = CodecBuffer()
        private(set) var position = 0
        /// Whether the input so far ends exactly at the end of a frame.
        private var atFrameEnd = false

        init(sink: any ByteSink) throws(CheckpointError) {
            self.sink = sink
            var context: OpaquePointer?
            let created = LZ4F_createDecompressionContext(&context, clz4_frame_version())
            guard LZ4F_isError(created) == 0, let context else {
                throw CodecErrors.library(.lz4, "LZ4F_createDecompressionContext", LZ4Codec.errorName(created))
            }
            self.context = context
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            guard !bytes.isEmpty else { return }
            var offset = 0
            while true {
                var produced = buffer.capacity
                var consumed = bytes.count - offset
                let hint = LZ4F_decompress(context, buffer.start, &produced, bytes.baseAddress! + offset, &consumed, nil)
                if LZ4F_isError(hint) != 0 {
                    // A frame ended and what follows does not start another.
                    if atFrameEnd { throw CodecErrors.trailingData(.lz4, at: position + offset) }
                    throw CodecErrors.corrupt(.lz4, LZ4Codec.errorName(hint), at: position + offset)
                }
                offset += consumed
                try buffer.flush(produced, to: sink)
                // 0: a frame is complete and fully flushed.
                atFrameEnd = hint == 0
                if offset == bytes.count && produced < buffer.capacity { break }
            }
            position += bytes.count
        }

        func finish() throws(CheckpointError) {
            guard atFrameEnd else { throw CodecErrors.truncated(.lz4, after: position) }
        }

        deinit { LZ4F_freeDecompressionContext(context) }
    }
}
