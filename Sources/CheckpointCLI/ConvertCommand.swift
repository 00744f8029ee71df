import ArgumentParser
import Checkpointing

/// `ckpt convert IN OUT [--weights-only] [--ignore-keys GLOB]... [--sharded] [--format dcp] [--timeout SECONDS]`.
struct ConvertCommand: ParsableCommand {
    /// A layout OUT's extension cannot name.
    enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
        /// A PyTorch Distributed Checkpoint folder.
        case dcp
    }

    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Load any supported checkpoint and save it under a new name and format.",
        discussion: """
            OUT is a filename template: its variables ({epoch}, {batch}, {run_name}, {rank}, ...) \
            are filled from IN's timestamp and run name and this process's rank, and its extension \
            chooses the format. Prints each saved path on its own line.

            IN may be a sharded checkpoint (its manifest, or the folder that holds it) or a PyTorch \
            Distributed Checkpoint (DCP) folder, read on any number of ranks. Under mpirun -np N, \
            --sharded writes an N-way sharded checkpoint: every tensor split along its first \
            dimension (tensors with fewer rows than ranks go to rank 0), OUT containing {rank}; \
            without it, rank 0 writes one file.

            --format dcp writes a DCP folder named OUT (which torch.distributed.checkpoint.load \
            reads): __0_0.distcp and .metadata; with --sharded under mpirun -np N, every rank \
            writes its rows to __<rank>_0.distcp and rank 0 the .metadata once all have written.
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

    @Option(help: "Write this layout instead of the one OUT's extension names: dcp (a PyTorch Distributed Checkpoint folder).")
    var format: OutputFormat?

    @Option(help: "Seconds a rank waits for the others before failing.")
    var timeout: Double = 1800

    @OptionGroup var decompression: DecompressionFlags

    func run() throws {
        let group = try commandProcessGroup(timeout: timeout)
        var plan: ShardPlan = sharded ? .splitFirstDimension : .wholeOnRankZero
        if sharded && format == .dcp {
            // DCP stores a tuple whole: the tensors in tuples must not be split.
            plan = .splitFirstDimension(forDistributedCheckpointOf: try structure(of: input))
        }
        let loaded = try loadCheckpointTree(
            input, verifyChecksums: true, decompressionLimits: decompression.limits, shardPlan: plan, processGroup: group)
        let state = try? TrainingState(tree: loaded.tree)
        if format == .dcp {
            let folder = try saveDistributedCheckpoint(
                tree: loaded.tree, folder: output, runName: state?.runName ?? "", timestamp: state?.timestamp ?? Timestamp(),
                weightsOnly: weightsOnly, ignoreKeys: ignoreKeys.isEmpty ? nil : .globs(ignoreKeys),
                sharding: sharded ? loaded.sharding : nil, processGroup: group)
            if group.rank == 0 { print(folder) }
            return
        }
        let paths = try saveCheckpoint(
            tree: loaded.tree, filename: output, runName: state?.runName ?? "",
            timestamp: state?.timestamp ?? Timestamp(), weightsOnly: weightsOnly,
            ignoreKeys: ignoreKeys.isEmpty ? nil : .globs(ignoreKeys), sharding: sharded ? loaded.sharding : nil,
            processGroup: group)
        if group.rank == 0 {
            for path in paths { print(path) }
        }
    }

    /// The tree of `path` for its structure, without reading its tensors: the file (or DCP
    /// folder) opened, or rank 0's shard of a sharded checkpoint.
    private func structure(of path: String) throws -> StateValue {
        if try DistributedCheckpoint.locate(path) == nil, let manifestPath = try ShardManifest.locate(path) {
            let manifest = try ShardManifest.read(manifestPath)
            return try CheckpointFile.open(manifest.shardPath(rank: 0, manifestPath: manifestPath), decompressionLimits: decompression.limits).tree
        }
        return try CheckpointFile.open(path, decompressionLimits: decompression.limits).tree
    }
}
