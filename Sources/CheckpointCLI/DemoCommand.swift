import ArgumentParser
import Checkpointing
import Foundation

/// `ckpt demo`: a short real workflow with the library, end to end.
///
/// It builds a small model's training state in memory, saves it every few batches through a
/// filename template, inspects and verifies the newest file, and resumes from it into a fresh
/// state, checking that every tensor and value came back bit-identical. Exit 0 only then.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Save a small run's checkpoints, inspect, verify and resume from them.")

    @Option(help: "Folder for the run's checkpoints.")
    var folder = "ckpt-demo"

    @Option(help: "Batches to run; a checkpoint is saved every 2 batches.")
    var batches = 6

    func validate() throws {
        guard batches >= 2 else { throw ValidationError("--batches must be at least 2") }
    }

    func run() throws {
        var state = try SyntheticState.gpt2Small(scale: 0.002, seed: 7)
        state.runName = "demo-run"
        state.timestamp = Timestamp()
        let template = folder + "/{run_name}/ep{epoch}-ba{batch:04d}-rank{rank}.safetensors"
        var saved: [String] = []
        let start = ContinuousClock.now
        for batch in 1...batches {
            state.timestamp.batch = batch
            state.timestamp.batchInEpoch = batch
            state.timestamp.sample = batch * 16
            state.timestamp.totalWct = .milliseconds(250 * batch)
            if batch % 2 == 0 {
                saved += try saveCheckpoint(state, filename: template)
                print("batch \(batch): saved \(saved.last!)")
            }
        }
        let saveTime = ContinuousClock.now - start
        let newest = saved.last!
        print("")
        print(try InspectReport(path: newest, hashes: false).text().split(separator: "\n").prefix(6).joined(separator: "\n"))
        try CheckpointFile.open(newest).verify()
        print("verify: all checksums match")

        var resumed = TrainingState(model: state.model.mapValues { _ in .none })
        for key in state.model.keys { resumed.model[key] = state.model[key] }
        let result = try loadCheckpoint(newest, into: &resumed)
        guard resumed == state else {
            throw CleanExit.message("resumed state differs from the saved one")
        }
        print(
            "resume: \(resumed.model.count) model tensors, optimizer state, timestamp (batch \(resumed.timestamp.batch)) and rng restored bit-identical from \(result.path)"
        )
        print("saved \(saved.count) checkpoints in \(saveTime)")
    }
}
