import ArgumentParser
import CheckpointBench
import Checkpointing

/// `ckpt bench save` (the default): the native format against the disk's own limit.
struct SaveBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "save",
        abstract: "Time a durable save, an open and a verified read beside a raw write + fsync and dd.",
        discussion: """
            Each save is set beside a raw write of the same tensor bytes from the same memory with \
            fsync, and beside `dd ... conv=fsync` of as many bytes, in the same run, so the figures \
            say how close the save comes to the disk's limit.
            """)

    @OptionGroup var bench: BenchOptions

    func run() throws {
        try bench.withFolder { folder in
            try bench.report(try NativeBench(state: try bench.state(), folder: folder, repetitions: bench.repetitions).run())
        }
    }
}

/// `ckpt bench pt`: PyTorch's `.pt` beside the native format.
struct TorchBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pt",
        abstract: "Set a .pt file's save, open and CRC-verified read beside the native file's.")

    @OptionGroup var bench: BenchOptions

    func run() throws {
        try bench.withFolder { folder in
            try bench.report(try TorchBench(state: try bench.state(), folder: folder, repetitions: bench.repetitions).run())
        }
    }
}

/// `ckpt bench hf [--max-shard-size SIZE]`: a Hugging Face sharded folder beside the native file.
struct HuggingFaceBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hf",
        abstract: "Set a Hugging Face sharded folder's save, open and verified read beside the native file's.")

    @OptionGroup var bench: BenchOptions

    @Option(help: "The largest shard (default 500MB, so the state makes several shards).")
    var maxShardSize: String = "500MB"

    func validate() throws {
        do {
            _ = try HuggingFaceSharded.parseSize(maxShardSize)
        } catch {
            throw ValidationError(error.message)
        }
    }

    func run() throws {
        let size = try HuggingFaceSharded.parseSize(maxShardSize)
        try bench.withFolder { folder in
            try bench.report(
                try HuggingFaceBench(state: try bench.state(), folder: folder, repetitions: bench.repetitions, maxShardSize: size).run())
        }
    }
}

/// `ckpt bench dcp`: a PyTorch Distributed Checkpoint folder beside the native file.
struct DCPBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dcp",
        abstract: "Set a DCP folder's save, open and CRC-verified read beside the native file's.")

    @OptionGroup var bench: BenchOptions

    func run() throws {
        try bench.withFolder { folder in
            try bench.report(try DCPBench(state: try bench.state(), folder: folder, repetitions: bench.repetitions).run())
        }
    }
}
