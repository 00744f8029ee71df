import Checkpointing
import CheckpointingMPI
import Foundation
import Synchronization

/// Generous: healthy ranks on a loaded machine may take a while to reach a collective.
private let healthyTimeout = Duration.seconds(120)

/// `collectives`: the group's place matches `mpirun`'s, and barrier, all-gather (payloads of
/// different sizes, one empty, one of a few MB) and broadcast (from every root) give every
/// rank the right bytes, in one MPI operation per step and in many (a 1 MiB message limit).
func runCollectives(_ worker: Worker) throws -> Outcome {
    let group = try MPIProcessGroup()
    try checkPlace(of: group, worker)
    try group.barrier(timeout: healthyTimeout)
    try checkAllGather(group, worker)
    try checkBroadcast(group, worker)

    let chunked = try MPIProcessGroup(maximumMessageBytes: 1 << 20)
    try checkAllGather(chunked, worker)
    try checkBroadcast(chunked, worker)
    try checkConcurrentGroups(group, chunked, worker)
    try group.barrier(timeout: healthyTimeout)
    worker.report("collectives passed (rank \(group.rank) of \(group.worldSize), local rank \(group.localRank) of \(group.localWorldSize), node \(group.nodeRank))")
    return .passed
}

/// The bytes rank `rank` contributes: sizes 0, 1, a few MB, then smaller, each rank's distinct.
func payload(of rank: Int) -> [UInt8] {
    payloads.withLock { payloads in
        if let known = payloads[rank] { return known }
        let sizes = [0, 1, 3_000_017, 500_009, 65_536, 7]
        let size = sizes[rank % sizes.count] + rank / sizes.count
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            for index in 0..<size { buffer[index] = UInt8(truncatingIfNeeded: index &* 31 &+ rank &* 101 &+ (index >> 8)) }
            count = size
        }
        payloads[rank] = bytes
        return bytes
    }
}

/// Each rank's payload, made once: the checks compare against them many times.
private let payloads = Mutex<[Int: [UInt8]]>([:])

private func checkPlace(of group: MPIProcessGroup, _ worker: Worker) throws {
    let environment = ProcessInfo.processInfo.environment
    let expected = ["OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"]
        .map { environment[$0].flatMap { Int($0) } }
    let actual = [group.rank, group.worldSize, group.localRank, group.localWorldSize]
    try worker.expect(expected == actual, "rank, size, local rank, local size are \(actual); mpirun set \(expected)")
    // mpirun's processes all run on this machine: one node.
    try worker.expect(group.nodeRank == 0, "node rank \(group.nodeRank) on a single node")
    try worker.expect(group.collectiveTimeout == .seconds(1800), "default timeout \(group.collectiveTimeout)")
}

private func checkAllGather(_ group: MPIProcessGroup, _ worker: Worker) throws {
    let gathered = try group.allGather(payload(of: group.rank), timeout: healthyTimeout)
    try worker.expect(gathered.count == group.worldSize, "allGather returned \(gathered.count) payloads")
    for (rank, bytes) in gathered.enumerated() {
        try worker.expect(
            bytes == payload(of: rank),
            "allGather (limit \(group.maximumMessageBytes)) gave \(bytes.count) bytes for rank \(rank), not its \(payload(of: rank).count)")
    }
    let empty = try group.allGather([], timeout: healthyTimeout)
    try worker.expect(empty == Array(repeating: [], count: group.worldSize), "allGather of empty payloads gave \(empty.map(\.count))")
}

private func checkBroadcast(_ group: MPIProcessGroup, _ worker: Worker) throws {
    for root in 0..<group.worldSize {
        // The other ranks' bytes, of another size, must be ignored.
        let mine = group.rank == root ? payload(of: root) : [0xEE, 0xEE]
        let received = try group.broadcast(mine, from: root, timeout: healthyTimeout)
        try worker.expect(
            received == payload(of: root),
            "broadcast from \(root) (limit \(group.maximumMessageBytes)) gave \(received.count) bytes, not \(payload(of: root).count)")
    }
    do {
        _ = try group.broadcast([1], from: group.worldSize, timeout: healthyTimeout)
        throw WorkerFailure("broadcast from rank \(group.worldSize) was accepted")
    } catch let error as CheckpointError {
        try worker.expect(error.code == .invalidArgument, "broadcast from a rank outside the group: \(error)")
    }
}

/// A save's collectives may run on a background thread while another group is in use.
private func checkConcurrentGroups(_ first: MPIProcessGroup, _ second: MPIProcessGroup, _ worker: Worker) throws {
    let done = DispatchSemaphore(value: 0)
    Thread {
        defer { done.signal() }
        do {
            let gathered = try first.allGather(payload(of: first.rank), timeout: healthyTimeout)
            if gathered != (0..<first.worldSize).map(payload(of:)) { worker.fail("a background allGather gave wrong bytes") }
        } catch {
            worker.fail("a background allGather failed: \(error)")
        }
    }.start()
    for root in 0..<second.worldSize {
        let received = try second.broadcast(payload(of: root), from: root, timeout: healthyTimeout)
        try worker.expect(received == payload(of: root), "broadcast beside a background allGather gave wrong bytes")
    }
    done.wait()
}
