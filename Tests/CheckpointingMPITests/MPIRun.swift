import CheckpointingTestSupport
import Foundation
import Testing

/// What one `mpirun` of `mpi-worker` did.
struct MPIRun {
    /// `mpirun`'s exit status (which, with `--enable-recovery`, is always 0).
    var status: Int32
    var stdout: String
    var stderr: String
    /// How long `mpirun` ran, start to exit.
    var elapsed: Duration

    /// Each rank's `rank R: ...` lines, without the prefix.
    var lines: [Int: [String]] {
        var result: [Int: [String]] = [:]
        for line in stdout.split(separator: "\n") {
            guard line.hasPrefix("rank "), let colon = line.firstIndex(of: ":"),
                let rank = Int(line[line.index(line.startIndex, offsetBy: 5)..<colon])
            else { continue }
            result[rank, default: []].append(String(line[line.index(after: colon)...].drop { $0 == " " }))
        }
        return result
    }

    /// Everything it printed, for failure messages.
    var transcript: String { "mpirun exited with \(status) after \(elapsed)\n--- stdout\n\(stdout)--- stderr\n\(stderr)" }
}

/// Runs `mpi-worker` scenarios under `mpirun`.
enum MPILauncher {
    /// The variables a launcher or an enclosing MPI job sets: left in the environment of a
    /// `swift test` run under `mpirun`, `srun` or `torchrun`, they would make our `mpirun` join
    /// that job, or contradict the ranks it gives.
    static func isLauncherVariable(_ name: String) -> Bool {
        ["OMPI_", "PMIX_", "PMI_", "SLURM_"].contains { name.hasPrefix($0) }
            || ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK"].contains(name)
    }

    /// `mpirun` on `PATH`.
    static func mpirun(in environment: [String: String]) throws -> String {
        let folders = (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
        guard let path = folders.map({ $0 + "/mpirun" }).first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw LaunchFailure("mpirun is not on PATH: install openmpi-bin (scripts/install-dependencies.sh does)")
        }
        return path
    }

    /// The built `mpi-worker`: beside the test runner, in the build products folder.
    static func worker() throws -> String {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("mpi-worker")
        let fallback = Fixtures.packageRoot.appendingPathComponent(".build/debug/mpi-worker")
        guard let path = [beside.path, fallback.path].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw LaunchFailure("mpi-worker is not built beside the tests: run `swift build --build-tests` first")
        }
        return path
    }

    /// The built `ckpt`, beside the test runner.
    static func ckpt() throws -> String {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ckpt")
        let fallback = Fixtures.packageRoot.appendingPathComponent(".build/debug/ckpt")
        guard let path = [beside.path, fallback.path].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw LaunchFailure("ckpt is not built beside the tests: run `swift build --build-tests` first")
        }
        return path
    }

    /// Runs `mpi-worker arguments` (or `program arguments`) on `processes` ranks with `mpirunOptions`, in `environment`
    /// (this process's by default) without its launcher variables, and gives up after
    /// `limit` (the worker's own timeouts are far shorter; this only keeps a hang from
    /// holding up the suite).
    static func run(
        _ arguments: [String], processes: Int, mpirunOptions: [String] = [], program: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment, limit: Duration = .seconds(180)
    ) throws -> MPIRun {
        let clean = environment.filter { !isLauncherVariable($0.key) }
        let command =
            ["-i"] + clean.map { "\($0.key)=\($0.value)" }
            + ["timeout", "--kill-after=10", "\(limit.components.seconds)"]
            + [try mpirun(in: clean), "--allow-run-as-root", "--oversubscribe", "-np", "\(processes)"] + mpirunOptions
            + [try program ?? worker()] + arguments
        let clock = ContinuousClock()
        let start = clock.now
        let run = try runTool(command)
        return MPIRun(
            status: run.status, stdout: String(decoding: run.stdout, as: UTF8.self), stderr: run.stderr,
            elapsed: start.duration(to: clock.now))
    }
}

/// The MPI tests cannot start.
struct LaunchFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
