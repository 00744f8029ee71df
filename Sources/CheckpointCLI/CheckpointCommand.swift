public import ArgumentParser

/// The `ckpt` command: inspect, verify, convert and benchmark checkpoints.
public struct CheckpointCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ckpt",
        abstract: "Save, load, inspect and convert machine-learning training checkpoints.",
        subcommands: []
    )

    public init() {}
}
