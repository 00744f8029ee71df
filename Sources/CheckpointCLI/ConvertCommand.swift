import ArgumentParser
import Checkpointing
import Foundation

/// `ckpt convert IN OUT [--weights-only] [--ignore-keys GLOB]... [--sharded] [--format hf|dcp] [--timeout SECONDS] [--json]`.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Load any supported checkpoint and save it under a new name and format.",
        discussion: """
            OUT is a filename template: its variables ({epoch}, {batch}, {run_name}, {rank}, ...) \
            are filled from IN's timestamp and run name and this process's rank, and its extension \
            chooses the format. Prints each saved path on its own line.

            IN may be a sharded checkpoint (its manifest, or the folder that holds it) or a PyTorch \
            Distributed Checkpoint (DCP) folder, read on any number of ranks. Under mpirun -np N, --sharded writes an N-way sharded checkpoint: \
            every tensor split along its first dimension (tensors with fewer rows than ranks go \
            to rank 0), OUT containing {rank}; without it, rank 0 writes one file.

            IN may be a Hugging Face sharded checkpoint (its folder or index). --format hf writes \
            one: OUT is a folder (or an index path ending in .safetensors.index.json, which \
            implies --format hf) that gets model-0000k-of-0000n.safetensors shards of at most \
            --max-shard-size bytes of tensors each (default 5GB, decimal as Hugging Face counts) \
            and the index, written last. It holds IN's model (state/model of a training \
            checkpoint, named by the model's keys), or every tensor of any other checkpoint.

            --format dcp writes a DCP folder named OUT (which torch.distributed.checkpoint.load \
            reads): __0_0.distcp and .metadata; with --sharded under mpirun -np N, every rank \
            writes its rows to __<rank>_0.distcp and rank 0 the .metadata once all have written.

            IN and OUT may be in an object store (s3://bucket/prefix/...): every rank uploads \
            its own shard and rank 0 uploads the manifest last, so the nodes need no shared \
            disk; a sharded IN is read with ranged requests, each rank fetching only the index \
            of each shard it needs and the pieces that overlap its part (compressed shards are \
            downloaded whole). --json prints the saved paths and the bytes every rank downloaded.
            """)

    @Argument(help: "The checkpoint to read.")
    var input: String

    @Argument(help: "The filename template to save to.")
    var output: String

    @Flag(help: "Keep only the model (with integrations and metadata), as a weights-only checkpoint.")
    var weightsOnly = false

    @Option(help: "Leave out the parts whose flattened path matches this glob (repeatable).")
    var ignoreKeys: [String] = []

    @Flag(help: "Write a sharded checkpoint, one shard per rank (run under mpirun -np N).")
    var sharded = false

    @Option(help: "hf: write a Hugging Face sharded checkpoint into the folder OUT; dcp: a PyTorch Distributed Checkpoint folder.")
    var format: ConvertFormat?

    @Option(help: "With --format hf: the largest shard, as 5GB, 500MB, 40KB (decimal), 2GiB or a byte count.")
    var maxShardSize: String?

    @Option(help: "Seconds a rank waits for the others before failing.")
    var timeout: Double = 1800

    @Flag(help: "Print one JSON object: the saved paths, and the bytes downloaded and uploaded, in all and by rank.")
    var json = false

    @OptionGroup var progress: ProgressOptions

    @OptionGroup var limits: ReadingLimitsFlags

    /// What `--format` takes.
    enum ConvertFormat: String, ExpressibleByArgument, CaseIterable {
        case hf
        case dcp
    }

    /// Whether OUT is written as a Hugging Face sharded checkpoint.
    var writesHuggingFace: Bool { format == .hf || (format == nil && output.hasSuffix(HuggingFaceSharded.indexSuffix)) }

    func validate() throws {
        if maxShardSize != nil, !writesHuggingFace {
            throw ValidationError("--max-shard-size goes with --format hf (or an OUT ending in \(HuggingFaceSharded.indexSuffix))")
        }
        if writesHuggingFace, sharded {
            throw ValidationError("--sharded and --format hf exclude each other: a Hugging Face checkpoint is written whole, by rank 0")
        }
        if let maxShardSize {
            do {
                _ = try HuggingFaceSharded.parseSize(maxShardSize)
            } catch {
                throw ValidationError(error.message)
            }
        }
    }

    func run() throws {
        let before = ObjectStores.transfers.snapshot
        let group = try commandProcessGroup(timeout: timeout)
        var saveFormat = SaveFormat.file
        var plan: ShardPlan = sharded ? .splitFirstDimension : .wholeOnRankZero
        if writesHuggingFace {
            saveFormat = .huggingFaceSharded(
                maxShardSize: try maxShardSize.map(HuggingFaceSharded.parseSize) ?? HuggingFaceSharded.defaultMaxShardSize)
        } else if format == .dcp {
            saveFormat = .distributedCheckpoint
            // DCP stores a tuple whole: the tensors in tuples must not be split.
            if sharded { plan = .splitFirstDimension(forDistributedCheckpointOf: try structure(of: input)) }
        }
        let loaded = try loadCheckpointTree(
            input, verifyChecksums: true, limits: limits.readingLimits, shardPlan: plan, processGroup: group)
        let state = try? TrainingState(tree: loaded.tree)
        let paths = try saveCheckpoint(
            tree: loaded.tree, filename: output, format: saveFormat, runName: state?.runName ?? "",
            timestamp: state?.timestamp ?? Timestamp(), weightsOnly: weightsOnly,
            ignoreKeys: ignoreKeys.isEmpty ? nil : .globs(ignoreKeys), limits: limits.readingLimits,
            sharding: sharded ? loaded.sharding : nil, processGroup: group)
        if group.rank == 0, writesHuggingFace, let dropped = Self.partsLeftOut(of: loaded.tree) {
            printError("note: a Hugging Face checkpoint holds the model's tensors only; \(dropped) of \(input) are not in it")
        }
        if json {
            let transferred = ObjectStores.transfers.snapshot - before
            let everyone = try group.allGather(
                Array("\(transferred.bytesDownloaded) \(transferred.bytesUploaded)".utf8), timeout: group.collectiveTimeout
            ).map { String(decoding: $0, as: UTF8.self).split(separator: " ").compactMap { Int($0) } }
            guard group.rank == 0 else { return }
            let downloaded = everyone.map { $0.first ?? 0 }
            let uploaded = everyone.map { $0.last ?? 0 }
            let object: [String: Any] = [
                "paths": paths, "world_size": group.worldSize,
                "bytes_downloaded": downloaded.reduce(0, +), "bytes_downloaded_by_rank": downloaded,
                "bytes_uploaded": uploaded.reduce(0, +), "bytes_uploaded_by_rank": uploaded,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else if group.rank == 0 {
            for path in paths { print(path) }
        }
    }

    /// The tree of `path` for its structure, without reading its tensors: the file (or DCP
    /// folder) opened, or rank 0's shard of a sharded checkpoint.
    private func structure(of path: String) throws -> StateValue {
        if let manifestPath = try ShardManifest.locate(path) {
            let manifest = try ShardManifest.read(manifestPath)
            return try CheckpointFile.open(manifest.shardPath(rank: 0, manifestPath: manifestPath), limits: limits.readingLimits).tree
        }
        return try CheckpointFile.open(path, limits: limits.readingLimits).tree
    }

    /// The parts of a training checkpoint besides its model that hold something (dicts and
    /// lists that are not empty), which a Hugging Face checkpoint leaves out, in words; `nil`
    /// when there are none or the tree is no training checkpoint.
    static func partsLeftOut(of tree: StateValue) -> String? {
        guard let state = tree.dictValue?["state"]?.dictValue else { return nil }
        var parts: [String] = []
        for (key, value) in state where key != "model" {
            if let dict = value.dictValue, !dict.isEmpty { parts.append("state/\(key)") }
            if let elements = value.elements, !elements.isEmpty { parts.append("state/\(key)") }
        }
        if let rng = tree.dictValue?["rng"]?.elements, !rng.isEmpty { parts.append("rng") }
        guard !parts.isEmpty else { return nil }
        return parts.prefix(6).joined(separator: ", ") + (parts.count > 6 ? " and \(parts.count - 6) more" : "")
    }
}
