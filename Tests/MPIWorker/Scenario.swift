import ArgumentParser

/// The scenarios `mpi-worker` runs; each lives in a file of its own.
enum Scenario: String, CaseIterable, ExpressibleByArgument {
    /// Barrier, all-gather and broadcast between healthy ranks give the right bytes.
    case collectives
    /// Rank 1 skips a barrier: the others time out.
    case timeout
    /// Rank 2 SIGKILLs itself before a barrier: the others time out.
    case killedRank = "killed-rank"
    /// A launcher environment that contradicts MPI is refused.
    case envContradiction = "env-contradiction"

    func run(_ worker: Worker) throws -> Outcome {
        switch self {
        case .collectives: try runCollectives(worker)
        case .timeout: try runTimeout(worker)
        case .killedRank: try runKilledRank(worker)
        case .envContradiction: try runEnvironmentContradiction(worker)
        }
    }
}

/// How a rank's run of a scenario ended, as its exit code.
enum Outcome: Int32 {
    /// Every check passed.
    case passed = 0
    /// A collective timed out, as the scenario expects.
    case timedOut = 3
    /// Creating the group was refused, as the scenario expects.
    case refused = 4
}

/// A check that did not hold: the rank prints it and exits 1.
struct WorkerFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
