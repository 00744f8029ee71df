import Checkpointing
import Testing

@testable import CheckpointingMPI

/// How all-gathers larger than one MPI message are split (no MPI needed: the plan is arithmetic).
@Suite struct GatherPlanTests {
    @Test func smallPayloadsTakeOneRound() {
        let plan = GatherPlan(sizes: [10, 0, 5], maximumMessageBytes: 1 << 30)
        #expect(plan.rounds == [.init(offset: 0, counts: [10, 0, 5], displacements: [0, 10, 10], total: 15)])
    }

    @Test func emptyPayloadsTakeNoRound() {
        #expect(GatherPlan(sizes: [0, 0, 0], maximumMessageBytes: 100).rounds.isEmpty)
    }

    /// Payloads of several GB, whose offsets overflow MPI's `int` displacements.
    @Test(arguments: [
        ([3_000_000_000, 1, 2_500_000_000, 0], Int(Int32.max)),
        ([5_000_000_000], Int(Int32.max)),
        ([1_000, 999, 1_001, 0, 7], 1_000),
        ([17, 3], 1),
    ])
    func everyByteIsSentOnceWithinTheLimits(sizes: [Int], limit: Int) {
        let plan = GatherPlan(sizes: sizes, maximumMessageBytes: limit)
        var sent = [Int](repeating: 0, count: sizes.count)
        for round in plan.rounds {
            #expect(round.total <= max(limit, sizes.count))
            #expect(round.total == round.counts.reduce(0) { $0 + Int($1) })
            for rank in sizes.indices {
                // Each round continues every payload where the previous one stopped.
                #expect(round.counts[rank] == 0 || round.offset == sent[rank])
                #expect(Int(round.displacements[rank]) == round.counts[..<rank].reduce(0) { $0 + Int($1) })
                sent[rank] += Int(round.counts[rank])
            }
        }
        #expect(sent == sizes)
        #expect(plan.largestRound <= max(limit, sizes.count))
    }

    @Test(arguments: [(Duration.seconds(-1), 1 << 20), (.seconds(1), 0), (.seconds(1), Int(Int32.max) + 1)])
    func invalidSettingsAreRefusedBeforeMPIStarts(timeout: Duration, maximumMessageBytes: Int) {
        let error = #expect(throws: CheckpointError.self) {
            try MPIProcessGroup(timeout: timeout, maximumMessageBytes: maximumMessageBytes)
        }
        #expect(error?.code == .invalidArgument)
    }
}
