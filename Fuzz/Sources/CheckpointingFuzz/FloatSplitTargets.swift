@testable import Checkpointing

/// One chunk record of a float-split stream, decoded alone: the `float-split` codec target
/// reaches the chunks only through an index whose checksum most mutations break, so this one
/// hands the fuzzer's bytes to the chunk decoder directly.
enum FloatSplitTargets {
    /// Chunks up to this size: the index allows 64 MiB, whose buffers would slow every input.
    static let largestChunk = 1 << 20

    static let chunk = FuzzTarget(
        name: "float-split-chunk",
        summary: "ChunkCoding.decode: a float-split chunk record (plane headers, raw, constant, Huffman and zstd planes, the merge, the checksum)",
        seeds: {
            var seeds: [(name: String, bytes: [UInt8])] = []
            for (name, tree) in [("tree", Seeds.tree), ("small", Seeds.smallTree)] {
                let stream = MemorySink()
                FuzzCheck.succeeds("compressing a float-split seed") { () throws(CheckpointError) in
                    let compressor = try CompressionCodec.floatSplit.compressor(into: stream, options: CompressionOptions(threads: 1))
                    try compressor.write(Seeds.native(tree))
                    try compressor.finish()
                }
                let index = FuzzCheck.succeeds("reading a float-split seed's index") { () throws(CheckpointError) in
                    try rethrowingCheckpointError { try stream.bytes.withUnsafeBytes { try FloatSplitIndex(parsing: $0) } }
                }
                for (number, entry) in index.entries.enumerated() {
                    seeds.append(("\(name)-chunk-\(number)", Array(stream.bytes[entry.recordRange])))
                }
            }
            return seeds
        },
        run: { record in
            // The index entry the record's own header describes, within what an index allows
            // (the index is checked before any chunk is decoded).
            guard record.count >= FloatSplitFormat.chunkHeaderSize,
                case .some(let dtype) = FloatSplitFormat.dtype(ofCode: record[0])
            else { return }
            let length = Int(FloatSplitFormat.u32(record, 4))
            let width = FloatSplitFormat.layout(of: dtype)?.width ?? 1
            guard length > 0, length <= largestChunk, length % width == 0 else { return }
            let entry = FloatSplitFormat.IndexEntry(
                decodedOffset: 0, recordOffset: FloatSplitFormat.preambleSize, decodedLength: length,
                recordLength: record.count, dtypeCode: record[0])
            let workspace = ChunkWorkspace(chunkCapacity: length)
            _ = try? ChunkCoding.decode(record, entry: entry, workspace: workspace, into: workspace.decoded.baseAddress!)
        }
    )
}
