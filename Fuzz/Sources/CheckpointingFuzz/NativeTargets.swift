@testable import Checkpointing

/// The safetensors header and the native format's tree around it.
enum NativeTargets {
    static let safetensorsHeader = FuzzTarget(
        name: "safetensors-header",
        summary: "SafetensorsHeader(parsing:): the length prefix, the JSON header, dtypes, shapes, offsets",
        fixtures: ["safetensors/*.safetensors", "sharded/hf/*/model-00001-of-*.safetensors"],
        seeds: {
            [
                ("native", Seeds.native(Seeds.tree)), ("small", Seeds.native(Seeds.smallTree)),
                ("empty-header", Seeds.safetensors(header: "{}")),
                ("metadata-only", Seeds.safetensors(header: #"{"__metadata__":{"format":"pt"}}"#)),
            ]
        },
        run: { bytes in
            guard let header = try? SafetensorsHeader(parsing: bytes) else { return }
            // The reader slices the mapping with these offsets: they must tile the data exactly.
            var end = header.dataStart
            for entry in header.entries {
                FuzzCheck.expect(header.dataStart + entry.begin == end, "tensor \"\(entry.name)\" starts where the previous ends")
                FuzzCheck.expect(entry.begin <= entry.end, "tensor \"\(entry.name)\" has begin <= end")
                end = header.dataStart + entry.end
            }
            FuzzCheck.expect(end == bytes.count, "the tensors end where the file ends")
        }
    )

    private static let input = InputFile(name: "fuzz-input.safetensors")
    private static let again = InputFile(name: "fuzz-resaved.safetensors")

    static let nativeFile = FuzzTarget(
        name: "native-file",
        summary: "NativeFormat.read: the header, then the tree and checksum table in its metadata; what it reads must save and read back identically",
        fixtures: ["safetensors/*.safetensors", "sharded/hf/*/model-00001-of-*.safetensors"],
        seeds: { [("native", Seeds.native(Seeds.tree)), ("small", Seeds.native(Seeds.smallTree))] },
        run: { bytes in
            guard let contents = try? NativeFormat.read(input.map(bytes)) else { return }
            // A tree this library loaded must save again, and load back as the same tree: a
            // checkpoint that resumes but cannot be checkpointed again fails hours later.
            let resaved = MemorySink()
            FuzzCheck.succeeds("saving the tree read from a safetensors file") { () throws(CheckpointError) in
                try NativeFormat.write(try NativeFormat.layout(contents.tree), to: resaved)
            }
            let reread = FuzzCheck.succeeds("reading the resaved file") { () throws(CheckpointError) in
                try NativeFormat.read(again.map(resaved.bytes))
            }
            FuzzCheck.expect(reread.tree == contents.tree, "the resaved file reads back as the same tree")
        }
    )
}
