@testable import Checkpointing

/// A Hugging Face index (`model.safetensors.index.json`) and the JSON reader under it.
enum HuggingFaceTargets {
    static let index = FuzzTarget(
        name: "hf-index",
        summary: "HuggingFaceIndex over OrderedJSON: the weight map, shard names, the commit record; an accepted index must write and read back the same",
        fixtures: ["sharded/hf/*/model.safetensors.index.json"],
        seeds: {
            let index = HuggingFaceIndex(
                weightMap: [("layers.0.q_proj.weight", "model-00001-of-00002.safetensors"), ("lm_head.weight", "model-00002-of-00002.safetensors")],
                totalSize: 246_144,
                record: .init(shards: [
                    .init(name: "model-00001-of-00002.safetensors", byteCount: 123_072, headerDigest: 0x0123_4567_89AB_CDEF),
                    .init(name: "model-00002-of-00002.safetensors", byteCount: 123_072, headerDigest: 0xFEDC_BA98_7654_3210),
                ]))
            return [("index.json", Array(index.json().utf8)), ("escapes.json", Array(#"{"weight_map": {"a\u00e9\n\"": "x/y.safetensors"}, "metadata": {"total_size": 1e3}}"#.utf8))]
        },
        run: { bytes in
            guard let index = try? HuggingFaceIndex(parsing: bytes) else { return }
            // What this library would write for the index it read reads back as the same.
            let written = Array(index.json().utf8)
            let reread = FuzzCheck.succeeds("reading the index as json() writes it") { () throws(CheckpointError) in
                try rethrowingCheckpointError { try written.withUnsafeBytes { try HuggingFaceIndex(parsing: $0) } }
            }
            FuzzCheck.expect(
                reread.weightMap.elementsEqual(index.weightMap, by: { $0.tensor == $1.tensor && $0.shard == $1.shard }) && reread.totalSize == index.totalSize
                    && reread.record?.shards.map(\.name) == index.record?.shards.map(\.name)
                    && reread.record?.shards.map(\.byteCount) == index.record?.shards.map(\.byteCount)
                    && reread.record?.shards.map(\.headerDigest) == index.record?.shards.map(\.headerDigest),
                "the index written back reads as the same index")
        }
    )
}
