/// The float-split codec as a ``StreamCodec``: what saving writes through, and a decoder of
/// whole streams for callers that want the plain bytes (loading opens the stream with
/// ``FloatSplitArchive`` instead, which decodes only the chunks it needs).
enum FloatSplitCodec: StreamCodec {
    static func compressor(into sink: any ByteSink, level: Int, threads: Int) throws(CheckpointError) -> any StreamTransform {
        FloatSplitCompressor(sink: sink, level: level, threads: threads)
    }

    static func decompressor(into sink: any ByteSink) throws(CheckpointError) -> any StreamTransform {
        try Decompressor(sink: sink)
    }

    /// Holds the stream in an anonymous file (its index is at its end), then decodes its
    /// chunks one by one, in order, into the sink.
    final class Decompressor: StreamTransform {
        private let sink: any ByteSink
        private let held: AnonymousFile
        var position: Int { held.position }

        init(sink: any ByteSink) throws(CheckpointError) {
            self.sink = sink
            held = try AnonymousFile()
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            try held.write(bytes)
        }

        func finish() throws(CheckpointError) {
            let stream = try held.map(path: "the float-split stream")
            let index = try FloatSplitIndex(parsing: stream.bytes)
            let workspace = ChunkWorkspace(chunkCapacity: index.largestChunk)
            for entry in index.entries {
                let record = UnsafeRawBufferPointer(rebasing: stream.bytes[entry.recordRange])
                try ChunkCoding.decode(record, entry: entry, workspace: workspace, into: workspace.decoded.baseAddress!)
                try sink.write(UnsafeRawBufferPointer(rebasing: workspace.decoded[0..<entry.decodedLength]))
            }
        }
    }
}
