import ArgumentParser
import Checkpointing

/// `ckpt convert IN OUT [--weights-only] [--ignore-keys GLOB]...`.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Load any supported checkpoint and save it under a new name and format.",
        discussion: """
            OUT is a filename template: its variables ({epoch}, {batch}, {run_name}, {rank}, ...) \
            are filled from IN's timestamp and run name and this process's rank, and its extension \
            chooses the format. Prints each saved path on its own line.
            """)

    @Argument(help: "The checkpoint to read.")
    var input: String

    @Argument(help: "The filename template to save to.")
    var output: String

    @Flag(help: "Keep only the model (with integrations and metadata), as a weights-only checkpoint.")
    var weightsOnly = false

    @Option(help: "Leave out the parts whose flattened path matches this glob (repeatable).")
    var ignoreKeys: [String] = []

    func run() throws {
        let file = try CheckpointFile.open(input)
        try file.verify()
        let state = try? TrainingState(tree: file.tree)
        let paths = try saveCheckpoint(
            tree: file.tree, filename: output, runName: state?.runName ?? "",
            timestamp: state?.timestamp ?? Timestamp(), weightsOnly: weightsOnly,
            ignoreKeys: ignoreKeys.isEmpty ? nil : .globs(ignoreKeys))
        for path in paths { print(path) }
    }
}
