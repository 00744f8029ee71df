import ArgumentParser
import CheckpointBench

/// `ckpt bench saver`: the training-loop stall of synchronous and asynchronous saves.
struct SaverBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "saver",
        abstract: "Measure the training-loop stall of CheckpointSaver's synchronous and asynchronous saves.")

    @OptionGroup var bench: BenchOptions

    func run() throws {
        try bench.withFolder { folder in
            try bench.report(try SaverBench(state: try bench.state(), folder: folder).run())
        }
    }
}
