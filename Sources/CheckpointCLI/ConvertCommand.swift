import ArgumentParser
import Checkpointing

/// `ckpt convert IN OUT [--weights-only] [--ignore-keys GLOB]... [--sharded] [--timeout SECONDS]`.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Load any supported checkpoint and save it under a new name and format.",
        discussion: """
            OUT is a filename template: its variables ({epoch}, {batch}, {run_name}, {rank}, ...) \
            are filled from IN's timestamp and run name and this process's rank, and its extension \
            chooses the format. Prints each saved path on its own line.

            IN may be a sharded checkpoint (its manifest, or the folder that holds it), read on \
            any number of ranks. Under mpirun -np N, --sharded writes an N-way sharded checkpoint: \
            every tensor split along its first dimension (tensors with fewer rows than ranks go \
            to rank 0), OUT containing {rank}; without it, rank 0 writes one file.
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

    @Option(help: "Seconds a rank waits for the others before failing.")
    var timeout: Double = 1800

    @OptionGroup var decompression: DecompressionFlags

    func run() throws {
        let group = try commandProcessGroup(timeout: timeout)
        let loaded = try loadCheckpointTree(
            input, verifyChecksums: true, decompressionLimits: decompression.limits, shardPlan: sharded ? .splitFirstDimension : .wholeOnRankZero, processGroup: group)
        let state = try? TrainingState(tree: loaded.tree)
        let paths = try saveCheckpoint(
            tree: loaded.tree, filename: output, runName: state?.runName ?? "",
            timestamp: state?.timestamp ?? Timestamp(), weightsOnly: weightsOnly,
            ignoreKeys: ignoreKeys.isEmpty ? nil : .globs(ignoreKeys), sharding: sharded ? loaded.sharding : nil,
            processGroup: group)
        if group.rank == 0 {
            for path in paths { print(path) }
        }
    }
}
