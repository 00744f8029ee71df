/// How an all-gather of payloads of `sizes` bytes (indexed by rank) is split into
/// `MPI_Iallgatherv` rounds.
///
/// MPI 3 counts and displacements are C `int`s, and very large messages are where MPI
/// libraries and networks are least tested: each round moves at most `maximumMessageBytes` in
/// total, every rank sending up to an equal share of it, until every payload is through.
/// Every rank computes the same plan from the same all-gathered sizes.
struct GatherPlan: Equatable {
    /// One `MPI_Iallgatherv`.
    struct Round: Equatable {
        /// Where in each rank's payload this round's part starts.
        var offset: Int
        /// The bytes each rank sends in this round.
        var counts: [Int32]
        /// Where each rank's part lands in the round's receive buffer.
        var displacements: [Int32]
        /// The size of the round's receive buffer.
        var total: Int
    }

    var rounds: [Round]

    /// The largest receive buffer of any round (the first round's).
    var largestRound: Int { rounds.map(\.total).max() ?? 0 }

    /// `sizes` must be non-negative, `maximumMessageBytes` between 1 and `Int32.max`.
    init(sizes: [Int], maximumMessageBytes: Int) {
        let share = max(1, maximumMessageBytes / max(sizes.count, 1))
        let largest = sizes.max() ?? 0
        rounds = stride(from: 0, to: largest, by: share).map { offset in
            let counts = sizes.map { Int32(min(max($0 - offset, 0), share)) }
            var displacements: [Int32] = []
            var total = 0
            for count in counts {
                displacements.append(Int32(total))
                total += Int(count)
            }
            return Round(offset: offset, counts: counts, displacements: displacements, total: total)
        }
    }
}
