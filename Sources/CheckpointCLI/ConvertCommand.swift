import ArgumentParser
import Checkpointing
import Foundation

/// `ckpt convert IN OUT [--weights-only] [--ignore-keys GLOB]... [--sharded] [--timeout SECONDS] [--json]`.
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

    @Option(help: "Seconds a rank waits for the others before failing.")
    var timeout: Double = 1800

    @Flag(help: "Print one JSON object: the saved paths, and the bytes downloaded and uploaded, in all and by rank.")
    var json = false

    @OptionGroup var decompression: DecompressionFlags

    func run() throws {
        let before = ObjectStores.transfers.snapshot
        let group = try commandProcessGroup(timeout: timeout)
        let loaded = try loadCheckpointTree(
            input, verifyChecksums: true, decompressionLimits: decompression.limits, shardPlan: sharded ? .splitFirstDimension : .wholeOnRankZero, processGroup: group)
        let state = try? TrainingState(tree: loaded.tree)
        let paths = try saveCheckpoint(
            tree: loaded.tree, filename: output, runName: state?.runName ?? "",
            timestamp: state?.timestamp ?? Timestamp(), weightsOnly: weightsOnly,
            ignoreKeys: ignoreKeys.isEmpty ? nil : .globs(ignoreKeys), sharding: sharded ? loaded.sharding : nil,
            processGroup: group)
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
}
