import Testing

extension MPIProcessGroupTests {
    /// A rank that never reaches a collective makes the others throw after the timeout,
    /// instead of hanging.
    @Suite struct TimeoutTests {
        /// The timeout the scenarios use, and how much later than it a rank may report.
        static let timeout = 3.0
        static let slack = 5.0

        /// Each survivor exits 3 once it has reported; Open MPI's `mpirun` ends the job at the
        /// first non-zero exit, so it returns 3, and a survivor slower to print may be stopped
        /// before it does.
        @Test func aRankThatSkipsABarrierTimesTheOthersOut() throws {
            let run = try MPILauncher.run(["timeout", "--timeout", "\(Self.timeout)"], processes: 4)
            #expect(run.status == 3, "\(run.transcript)")
            let lines = run.lines
            #expect(lines[1]?.contains("skipping the barrier") == true, "\(run.transcript)")
            let reports = [0, 2, 3].compactMap { lines[$0]?.first { $0.hasPrefix("timed out after") } }
            #expect(!reports.isEmpty, "no rank reported the timeout:\n\(run.transcript)")
            for report in reports { expectTimeoutReport(report, run) }
            #expect(!run.stdout.contains("FAILED"), "\(run.transcript)")
        }

        /// By default `mpirun` kills every rank as soon as one dies; `--enable-recovery` keeps
        /// the others running, so that what they report is our timeout. (It also makes
        /// `mpirun` exit 0 whatever the ranks' exit codes: the lines are what counts.)
        @Test func aKilledRankTimesTheOthersOut() throws {
            let run = try MPILauncher.run(
                ["killed-rank", "--timeout", "\(Self.timeout)"], processes: 4, mpirunOptions: ["--enable-recovery"])
            let lines = run.lines
            #expect(lines[2]?.contains("killing itself") == true, "\(run.transcript)")
            for rank in [0, 1, 3] {
                guard let report = lines[rank]?.first(where: { $0.hasPrefix("timed out after") }) else {
                    Issue.record("rank \(rank) did not report the timeout:\n\(run.transcript)")
                    continue
                }
                expectTimeoutReport(report, run)
            }
            #expect(!run.stdout.contains("FAILED"), "\(run.transcript)")
            #expect(run.elapsed < .seconds(60), "\(run.transcript)")
        }

        /// The error came after the timeout (not much later), and says what happened.
        private func expectTimeoutReport(_ report: String, _ run: MPIRun, sourceLocation: SourceLocation = #_sourceLocation) {
            let seconds = secondsBeforeTimeout(in: report) ?? -1
            #expect(seconds >= Self.timeout && seconds < Self.timeout + Self.slack, "\(report)", sourceLocation: sourceLocation)
            for phrase in ["MPI barrier", "timed out after 3.0 seconds", "another rank probably died or is stuck"] {
                #expect(report.contains(phrase), "\(report)", sourceLocation: sourceLocation)
            }
        }
    }
}
