import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

#if canImport(Glibc)
import Glibc
#endif

/// Errors cross ranks whole: code, message, path, offset, errno and the rank that threw them.
/// The MPI tests prove the same across real processes (`RankErrorMPITests`).
@Suite struct RankErrorTests {
    @Test func aRecordRoundTripsEveryField() throws {
        var thrown = SystemCalls.error("reading", path: "/ckpt/rank3.tar", errno: EIO)
        thrown.offset = 4096
        let sent = RankError(thrown, rank: 3)
        let received = try RankError.decode(sent.encoded, from: 3).error
        #expect(received.code == .io)
        #expect(received.message == thrown.message)
        #expect(received.path == "/ckpt/rank3.tar")
        #expect(received.offset == 4096)
        #expect(received.rank == 3)
        #expect(received.systemErrno == EIO)
        #expect(received.description == "rank 3: " + thrown.description)
        // Relayed again by rank 0, it still names rank 3.
        #expect(RankError(received, rank: 0).rank == 3)
    }

    @Test func anUnderlyingErrorThatIsNotAnErrnoKeepsItsDescription() throws {
        struct HTTPFailure: Error, CustomStringConvertible { var description: String { "HTTP 503 SlowDown" } }
        let sent = RankError(CheckpointError(.objectStore, "the store failed", underlying: HTTPFailure()), rank: 1)
        let received = try RankError.decode(sent.encoded, from: 1).error
        #expect(received.systemErrno == nil)
        #expect(received.description.hasSuffix("[HTTP 503 SlowDown]"), "\(received)")
    }

    @Test func theLowestFailedRankIsThrownAndTheOthersListed() throws {
        let reports: [RankError?] = [
            nil, RankError(CheckpointError(.io, "write failed", path: "/a"), rank: 1), nil,
            RankError(CheckpointError(.notFound, "gone", path: "/b"), rank: 3),
        ]
        let error = try #require(RankError.combined(reports, outcome: "not committed"))
        #expect(error.code == .io && error.rank == 1 && error.path == "/a")
        #expect(error.message == "write failed (not committed; 1 other rank failed too: rank 3: /b: gone)", "\(error.message)")
        #expect(RankError.combined([nil, nil], outcome: "x") == nil)
    }

    @Test func garbageFromAnotherRankIsADistributedError() {
        expectCheckpointError(.distributed, messageContains: ["rank 2", "same build"]) {
            _ = try RankError.decode(Array("not json".utf8), from: 2)
        }
    }

    /// Rank 0 saves alone and its disk is full: every other rank throws rank 0's error, with
    /// its code, path and errno, not a `.distributed` string.
    @Test func rankZerosFullDiskReachesEveryRankWhole() throws {
        try withTemporaryFolder { folder in
            let state = composerLikeState(seed: 3)
            let (outcome, _) = SyscallFaults.run(
                under: folder, failing: [.init(.write, calls: { _ in true }, errno: ENOSPC), .init(.pwrite, calls: { _ in true }, errno: ENOSPC)]
            ) {
                ThreadWorld.run(size: 3) { group in try saveCheckpoint(state, filename: folder + "/ep{epoch}.safetensors", processGroup: group) }
            }
            let results = try outcome.get()
            for (rank, result) in results.enumerated() {
                let error = try #require(result.failureAsCheckpointError, "rank \(rank) must fail")
                #expect(error.code == .io && error.systemErrno == ENOSPC, "\(error)")
                #expect(error.path == folder + "/ep\(state.timestamp.epoch).safetensors", "\(error)")
                #expect(error.rank == (rank == 0 ? nil : 0), "\(error)")
            }
        }
    }
}
