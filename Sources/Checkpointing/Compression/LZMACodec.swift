internal import CLZMA

/// The legacy "lzma alone" format (`lzma`, `xz --format=lzma`) over liblzma: a 13-byte header
/// (properties, dictionary size, and an unknown uncompressed size), then one LZMA stream with
/// an end marker. The format has no blocks, so it compresses on one thread.
///
/// Composer's `.lzma` files are usually xz inside; those are recognised by their magic number
/// and read by ``XZCodec``.
enum LZMACodec: StreamCodec {
    static func compressor(into sink: any ByteSink, level: Int, threads: Int) throws(CheckpointError) -> any StreamTransform {
        try LibLZMATransform(codec: .lzma, sink: sink, decoding: false) { stream in
            var options = lzma_options_lzma()
            guard lzma_lzma_preset(&options, UInt32(level)) == 0 else { return LZMA_OPTIONS_ERROR }
            return lzma_alone_encoder(stream, &options)
        }
    }

    static func decompressor(into sink: any ByteSink) throws(CheckpointError) -> any StreamTransform {
        try LibLZMATransform(codec: .lzma, sink: sink, decoding: true) { stream in
            lzma_alone_decoder(stream, LibLZMATransform.memoryLimit)
        }
    }
}
