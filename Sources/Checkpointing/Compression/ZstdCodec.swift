internal import CZstd

/// zstd over libzstd, with `ZSTD_c_nbWorkers` worker threads: the calling thread only hands
/// input to the workers and passes their output on, so serialising the checkpoint overlaps
/// with compressing it. Frames carry a content checksum, as the `zstd` tool writes them.
enum ZstdCodec: StreamCodec {
    static func compressor(into sink: any ByteSink, level: Int, threads: Int) throws(CheckpointError) -> any StreamTransform {
        try Compressor(sink: sink, level: level, threads: threads)
    }

    static func decompressor(into sink: any ByteSink) throws(CheckpointError) -> any StreamTransform {
        try Decompressor(sink: sink)
    }

    private static func errorName(_ code: Int) -> String {
        String(cString: ZSTD_getErrorName(code))
    }

    final class Compressor: StreamTransform {
        private let sink: any ByteSink
        private let context: OpaquePointer
        private let buffer = CodecBuffer()
        private(set) var position = 0

        init(sink: any ByteSink, level: Int, threads: Int) throws(CheckpointError) {
            self.sink = sink
            guard let context = ZSTD_createCCtx() else {
                throw CodecErrors.library(.zstd, "ZSTD_createCCtx", "out of memory")
            }
            self.context = context
            var parameters: [(ZSTD_cParameter, Int32)] = [(ZSTD_c_compressionLevel, Int32(level)), (ZSTD_c_checksumFlag, 1)]
            if level <= 2 {
                // Level 3's 2 MiB window on the fast levels: measured on float weights, level 1
                // with it compresses as well as level 3 (the zstd tool's default, Composer's)
                // at level 1's speed; the window costs the decoder 2 MiB.
                parameters.append((ZSTD_c_windowLog, 21))
            }
            // One worker already moves compression off the calling thread; n use n cores.
            parameters.append((ZSTD_c_nbWorkers, Int32(threads)))
            for (parameter, value) in parameters {
                let result = ZSTD_CCtx_setParameter(context, parameter, value)
                if ZSTD_isError(result) != 0 {
                    // A libzstd built without threads refuses workers: compress on this thread.
                    guard parameter == ZSTD_c_nbWorkers else {
                        throw CodecErrors.library(.zstd, "setting compression parameters", ZstdCodec.errorName(result))
                    }
                }
            }
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            guard !bytes.isEmpty else { return }
            var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
            while input.pos < input.size {
                try compress(&input, ZSTD_e_continue)
            }
            position += bytes.count
        }

        func finish() throws(CheckpointError) {
            var input = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
            while try compress(&input, ZSTD_e_end) != 0 {}
        }

        /// One call: returns what libzstd says is left to flush.
        @discardableResult
        private func compress(_ input: inout ZSTD_inBuffer, _ directive: ZSTD_EndDirective) throws(CheckpointError) -> Int {
            var output = ZSTD_outBuffer(dst: buffer.start, size: buffer.capacity, pos: 0)
            let remaining = ZSTD_compressStream2(context, &output, &input, directive)
            if ZSTD_isError(remaining) != 0 {
                throw CodecErrors.library(.zstd, "compressing", ZstdCodec.errorName(remaining))
            }
            try buffer.flush(output.pos, to: sink)
            return remaining
        }

        deinit { ZSTD_freeCCtx(context) }
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
            guard let context = ZSTD_createDCtx() else {
                throw CodecErrors.library(.zstd, "ZSTD_createDCtx", "out of memory")
            }
            // libzstd's default window limit (128 MiB, what `zstd -d` accepts without --long)
            // bounds the decoder's memory.
            self.context = context
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            guard !bytes.isEmpty else { return }
            var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
            while true {
                var output = ZSTD_outBuffer(dst: buffer.start, size: buffer.capacity, pos: 0)
                let hint = ZSTD_decompressStream(context, &output, &input)
                if ZSTD_isError(hint) != 0 {
                    let code = ZSTD_getErrorCode(hint)
                    if code == ZSTD_error_frameParameter_windowTooLarge {
                        throw CodecErrors.memoryLimit(.zstd, "its window is larger than 128 MiB")
                    }
                    if code == ZSTD_error_prefix_unknown && atFrameEnd {
                        throw CodecErrors.trailingData(.zstd, at: position + input.pos)
                    }
                    throw CodecErrors.corrupt(.zstd, ZstdCodec.errorName(hint), at: position + input.pos)
                }
                try buffer.flush(output.pos, to: sink)
                // 0: a frame is complete and fully flushed.
                atFrameEnd = hint == 0
                if input.pos == input.size && output.pos < output.size { break }
            }
            position += bytes.count
        }

        func finish() throws(CheckpointError) {
            guard atFrameEnd else { throw CodecErrors.truncated(.zstd, after: position) }
        }

        deinit { ZSTD_freeDCtx(context) }
    }
}
