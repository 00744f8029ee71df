import ArgumentParser

/// `mpi-worker SCENARIO`: one process of a multi-process test, started by the MPI tests under
/// `mpirun`. Every rank prints its result as a line `rank R: ...` and exits with the
/// scenario's code (``Outcome``); a failed check prints `rank R: FAILED: ...` and exits 1.
@main
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpi-worker", abstract: "Runs one multi-process test scenario; start it under mpirun.")

    @Argument(help: "The scenario: \(Scenario.allCases.map(\.rawValue).joined(separator: ", ")).")
    var scenario: Scenario

    @Option(help: "The collective timeout, in seconds, of the scenarios that expect one.")
    var timeout: Double = 3

    @Option(help: "The variant of a scenario that has several (env-contradiction: stale-torchrun, foreign-launcher).")
    var variant: String?

    @Option(help: "The folder of the scenarios that save or load.")
    var folder: String = ""

    @Option(help: "The size of the state the sharded scenarios save, in MiB.")
    var megabytes: Int = 4

    @Option(help: "The s3:// prefix of the scenarios that save to or load from an object store.")
    var url: String = ""

    func run() throws {
        var worker = Worker(timeout: .milliseconds(Int64(timeout * 1000)), variant: variant)
        worker.folder = folder
        worker.megabytes = megabytes
        worker.url = url
        let outcome: Outcome
        do {
            outcome = try scenario.run(worker)
        } catch let failure as WorkerFailure {
            worker.fail(failure.message)
        } catch {
            worker.fail("unexpected error: \(error)")
        }
        throw ExitCode(outcome.rawValue)
    }
}
