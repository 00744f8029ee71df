@testable import Checkpointing

/// PyTorch's zip format: the zip directory, the pickle machine, and the two together.
enum TorchTargets {
    /// The library's limits with smaller budgets, so that an input reaches them in
    /// milliseconds; the checks are the same code.
    static let limits: TorchLimits = {
        var limits = TorchLimits.standard
        limits.maximumNodesBase = 100_000
        limits.maximumMaterializedBytesBase = 4 << 20
        return limits
    }()

    static let torchFixtures = ["torch/*.pt", "composer/*.pt", "composer/ep1-ba4-rank0", "composer/fixture-run/*.pt"]

    private static let input = InputFile(name: "fuzz-input.pt")
    private static let again = InputFile(name: "fuzz-resaved.pt")

    /// The storages the pickle target's tensors refer to: those of the seed tree, whose
    /// pickle is a seed, so the fuzzer starts from references that resolve.
    private static let storageArchive: ZipArchive = {
        let file = InputFile(name: "fuzz-storages.pt").map(Seeds.torch(Seeds.tree))
        return FuzzCheck.succeeds("opening the storage archive") { () throws(CheckpointError) in try ZipArchive(file) }
    }()

    static let pickle = FuzzTarget(
        name: "pickle",
        summary: "Unpickler: data.pkl's opcodes, memo, globals and tensor rebuilds (storages from a fixed archive); what it reads must round-trip through a .pt",
        fixtures: torchFixtures,
        fromFixture: Seeds.pickle(ofTorchFile:),
        seeds: {
            [Seeds.tree, Seeds.smallTree].enumerated().compactMap { index, tree in
                Seeds.pickle(ofTorchFile: Seeds.torch(tree)).map { ("tree-\(index).pkl", $0) }
            }
        },
        run: { bytes in
            let storages = TorchStorageReader(archive: storageArchive, bigEndian: false, limits: limits)
            guard let tree = try? Unpickler(bytes, fileOffset: 0, storages: storages, limits: limits).load() else { return }
            checkRoundTrip(tree)
        }
    )

    static let zip = FuzzTarget(
        name: "zip",
        summary: "ZipArchive: end records, zip64, the central directory, local headers, record bounds and CRC-32s",
        fixtures: torchFixtures,
        seeds: { [("tree.pt", Seeds.torch(Seeds.tree)), ("small.pt", Seeds.torch(Seeds.smallTree))] },
        run: { bytes in
            let file = input.map(bytes)
            guard let archive = try? ZipArchive(file) else { return }
            // Records are handed out as slices of the mapping: each must lie inside the file.
            for entry in archive.entries {
                FuzzCheck.expect(
                    entry.dataOffset >= 0 && entry.size >= 0 && entry.dataOffset <= bytes.count - entry.size,
                    "record \"\(entry.record)\" (\(entry.size) bytes at \(entry.dataOffset)) lies inside the \(bytes.count)-byte file")
            }
            _ = try? archive.verifyChecksums()
        }
    )

    static let torchFile = FuzzTarget(
        name: "torch-file",
        summary: "TorchFormat.read: a whole .pt (zip, byteorder, pickle, storages and views); what it reads must round-trip",
        fixtures: torchFixtures,
        seeds: { [("tree.pt", Seeds.torch(Seeds.tree)), ("small.pt", Seeds.torch(Seeds.smallTree))] },
        run: { bytes in
            guard let contents = try? TorchFormat.read(input.map(bytes), limits: limits) else { return }
            _ = try? contents.verifyRecords?()
            checkRoundTrip(contents.tree)
        }
    )

    /// A tree read from a torch file must save as one and read back the same (durations are
    /// already whole microseconds, the only rounding the format does). The unpickler's own
    /// depth bound sits above ``ReadingLimits/maximumDepth``, which every load then applies to
    /// the tree, as the library's readers do here first: a deeper tree is never loaded, so it
    /// need not save.
    private static func checkRoundTrip(_ tree: StateValue) {
        guard (try? ReadingLimits().checkDepth(of: tree)) != nil else { return }
        let resaved = MemorySink()
        FuzzCheck.succeeds("saving the tree read from a pickle as a .pt") { () throws(CheckpointError) in
            try TorchFormat.write(try TorchFormat.layout(tree), to: resaved)
        }
        let reread = FuzzCheck.succeeds("reading the resaved .pt") { () throws(CheckpointError) in
            try TorchFormat.read(again.map(resaved.bytes), limits: limits)
        }
        FuzzCheck.expect(reread.tree == tree, "the resaved .pt reads back as the same tree")
    }
}
