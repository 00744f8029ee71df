import ArgumentParser
import CheckpointBench
import Checkpointing
import Foundation

/// `ckpt bench s3 URL`: upload and download throughput to an object store.
struct S3BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "s3",
        abstract: "Measure upload and download throughput to an s3:// prefix, and saves and loads through it.",
        discussion: "The endpoint and credentials come from the environment (S3_ENDPOINT_URL or AWS_ENDPOINT_URL, the AWS variables).")

    @Argument(help: "The s3://bucket/prefix to write under (everything written is deleted afterwards).")
    var url: String

    @OptionGroup var bench: BenchOptions

    @Option(help: "The part size in MiB (default 16).")
    var partSize: Int?

    @Option(help: "The most parts in flight (default 8).")
    var concurrency: Int?

    func validate() throws {
        if ObjectLocation(url) == nil { throw ValidationError("URL must be an s3://bucket/prefix URL") }
        if let partSize, partSize < 1 { throw ValidationError("--part-size must be at least 1 (MiB)") }
        if let concurrency, concurrency < 1 { throw ValidationError("--concurrency must be at least 1") }
    }

    func run() throws {
        guard let prefix = ObjectLocation(url) else { throw ValidationError("URL must be an s3://bucket/prefix URL") }
        try bench.withFolder { folder in
            try bench.report(
                try S3Bench(
                    makeState: bench.state, prefix: prefix, repetitions: bench.repetitions, partSize: partSize.map { $0 << 20 },
                    concurrency: concurrency, folder: folder
                ).run())
        }
    }
}

/// `mpirun -np N ckpt bench sharded [--s3 URL]`: sharded saves and loads on every rank at once.
struct ShardedBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sharded",
        abstract: "Measure sharded saves and loads on every rank of an mpirun at once, beside every rank's raw write.",
        discussion: """
            Each rank saves its rows of every tensor; rank 0 reports. With --s3, the shards go to and \
            from the store, beside every rank's raw PUT and GET at once, and a reshard onto half \
            the ranks reports the bytes it downloaded.
            """)

    @OptionGroup var bench: BenchOptions

    @Option(help: "Save to and load from this s3:// prefix instead of --folder.")
    var s3: String?

    func validate() throws {
        if let s3, ObjectLocation(s3) == nil { throw ValidationError("--s3 takes an s3://bucket/prefix URL") }
    }

    func run() throws {
        let group = try commandProcessGroup(timeout: 1800)
        // One folder for every rank (rank 0's name): the shards and the manifest go together.
        let name = try group.broadcast(Array(UUID().uuidString.utf8), from: 0, timeout: group.collectiveTimeout)
        try bench.withFolder(named: String(decoding: name, as: UTF8.self)) { folder in
            let state = try bench.state()
            let result: any BenchReport
            if let s3, let prefix = ObjectLocation(s3) {
                result = try ShardedS3Bench(
                    state: state, prefix: prefix, folder: folder, repetitions: bench.repetitions, processGroup: group
                ).run()
            } else {
                result = try ShardedBench(state: state, folder: folder, repetitions: bench.repetitions, processGroup: group).run()
            }
            if group.rank == 0 { try bench.report(result) }
            // No rank removes the folder while another still reads from it.
            try group.barrier(timeout: group.collectiveTimeout)
        }
    }
}
