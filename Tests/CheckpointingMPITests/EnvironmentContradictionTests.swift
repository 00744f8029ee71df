import Testing

extension MPIProcessGroupTests {
    /// The launcher environment against MPI: a launcher environment that contradicts MPI is refused when the
    /// group is created, with an error that says which values disagree.
    @Suite struct EnvironmentContradictionTests {
        @Test(arguments: [
            // torchrun's variables of an earlier launch beside mpirun's.
            ("stale-torchrun", "the launcher environment contradicts itself: RANK="),
            // No mpirun variables, and another launcher's world size.
            ("foreign-launcher", "processes but MPI_COMM_WORLD says rank"),
        ])
        func aContradictingEnvironmentIsRefused(variant: String, message: String) throws {
            let run = try MPILauncher.run(["env-contradiction", "--variant", variant], processes: 3)
            #expect(run.status == 4, "\(run.transcript)")
            let refusals = run.lines.values.flatMap { $0 }.filter { $0.hasPrefix("refused: ") }
            #expect(!refusals.isEmpty, "\(run.transcript)")
            #expect(refusals.allSatisfy { $0.contains(message) }, "\(run.transcript)")
            #expect(!run.stdout.contains("FAILED"), "\(run.transcript)")
        }
    }
}
