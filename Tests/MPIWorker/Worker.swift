import Foundation

/// What every scenario gets: its settings, and the rank's output.
struct Worker {
    /// The collective timeout of the scenarios that expect one.
    var timeout: Duration
    var variant: String?
    /// The folder of the scenarios that save or load.
    var folder: String = ""
    /// The size of the scenario state, in MiB.
    var megabytes: Int = 4
    /// The s3:// prefix of the scenarios that use an object store.
    var url: String = ""
    /// The rank and world size as `mpirun` set them, for output before a group exists.
    let launchRank: Int
    let launchSize: Int

    init(timeout: Duration, variant: String?) {
        self.timeout = timeout
        self.variant = variant
        let environment = ProcessInfo.processInfo.environment
        launchRank = environment["OMPI_COMM_WORLD_RANK"].flatMap { Int($0) } ?? -1
        launchSize = environment["OMPI_COMM_WORLD_SIZE"].flatMap { Int($0) } ?? -1
    }

    /// Prints `rank R: text` to standard output, in one write so that ranks' lines never mix.
    func report(_ text: String) {
        FileHandle.standardOutput.write(Data("rank \(launchRank): \(text)\n".utf8))
    }

    /// Prints `rank R: FAILED: message` to standard output and standard error, and exits 1
    /// at once: MPI is not finalized, because the other ranks may never get that far, and
    /// `mpirun` ends the job when a rank exits non-zero.
    func fail(_ message: String) -> Never {
        let line = Data("rank \(launchRank): FAILED: \(message)\n".utf8)
        FileHandle.standardOutput.write(line)
        FileHandle.standardError.write(line)
        _exit(1)
    }

    /// Throws a ``WorkerFailure`` with `message` unless `condition` holds.
    func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        guard condition else { throw WorkerFailure(message()) }
    }
}
