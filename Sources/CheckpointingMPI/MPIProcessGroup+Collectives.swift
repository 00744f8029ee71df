public import Checkpointing
internal import CMPI

extension MPIProcessGroup {
    /// Returns when every process of the group has called it (`MPI_Ibarrier`).
    ///
    /// - Throws: `CheckpointError/Code/distributed` after `timeout` if some process has not
    ///   arrived (the group is then broken), if MPI fails, or if an earlier collective broke the
    ///   group.
    public func barrier(timeout: Duration) throws(CheckpointError) {
        try collective("barrier", timeout: timeout) { call, state throws(CheckpointError) in
            try call.perform("MPI_Ibarrier", buffers: [], state: &state) { communicator, request in
                MPI_Ibarrier(communicator, request)
            }
        }
    }

    /// Every process's `bytes`, indexed by rank, on every process; the payloads may differ in
    /// size, and any may be empty.
    ///
    /// The sizes are all-gathered first (`MPI_Iallgather`), then the payloads
    /// (`MPI_Iallgatherv`), in several rounds when they total more than
    /// ``maximumMessageBytes``.
    ///
    /// - Throws: `CheckpointError/Code/distributed` after `timeout` if some process has not
    ///   arrived (the group is then broken), if MPI fails, or if an earlier collective broke the
    ///   group.
    public func allGather(_ bytes: [UInt8], timeout: Duration) throws(CheckpointError) -> [[UInt8]] {
        try collective("allGather", timeout: timeout) { call, state throws(CheckpointError) in
            let size = MPIBuffer(copying: [Int64(bytes.count)])
            let sizes = MPIBuffer(byteCount: worldSize * MemoryLayout<Int64>.stride)
            try call.perform("MPI_Iallgather", buffers: [size, sizes], state: &state) { communicator, request in
                MPI_Iallgather(size.address(), 1, cmpi_int64(), sizes.address(), 1, cmpi_int64(), communicator, request)
            }
            let counts = sizes.values(of: Int64.self)
            if let bad = counts.firstIndex(where: { $0 < 0 }) {
                throw call.failure("rank \(bad) announced a payload of \(counts[bad]) bytes")
            }
            return try gather(bytes, sizes: counts.map { Int($0) }, call: call, state: &state)
        }
    }

    private func gather(
        _ bytes: [UInt8], sizes: [Int], call: CollectiveCall, state: inout GroupState
    ) throws(CheckpointError) -> [[UInt8]] {
        let plan = GatherPlan(sizes: sizes, maximumMessageBytes: maximumMessageBytes)
        let send = MPIBuffer(copying: bytes)
        let receive = MPIBuffer(byteCount: plan.largestRound)
        var result = sizes.map { size in
            var payload: [UInt8] = []
            payload.reserveCapacity(size)
            return payload
        }
        for round in plan.rounds {
            let counts = MPIBuffer(copying: round.counts)
            let displacements = MPIBuffer(copying: round.displacements)
            let buffers = [send, receive, counts, displacements]
            try call.perform("MPI_Iallgatherv", buffers: buffers, state: &state) { communicator, request in
                MPI_Iallgatherv(
                    send.address(at: round.offset), round.counts[rank], cmpi_byte(), receive.address(),
                    counts.address().assumingMemoryBound(to: Int32.self),
                    displacements.address().assumingMemoryBound(to: Int32.self), cmpi_byte(), communicator, request)
            }
            for source in 0..<worldSize {
                result[source].append(
                    contentsOf: receive.bytes(from: Int(round.displacements[source]), count: Int(round.counts[source])))
            }
        }
        return result
    }

    /// `root`'s `bytes` on every process (the other processes' `bytes` are ignored): the size
    /// first, then the payload (`MPI_Ibcast`), in several parts when it is larger than
    /// ``maximumMessageBytes``.
    ///
    /// - Throws: `CheckpointError/Code/invalidArgument` if `root` is not a rank of the group;
    ///   `CheckpointError/Code/distributed` after `timeout` if some process has not arrived (the
    ///   group is then broken), if MPI fails, or if an earlier collective broke the group.
    public func broadcast(_ bytes: [UInt8], from root: Int, timeout: Duration) throws(CheckpointError) -> [UInt8] {
        guard (0..<worldSize).contains(root) else {
            throw CheckpointError(.invalidArgument, "cannot broadcast from rank \(root): the group has ranks 0..<\(worldSize)")
        }
        return try collective("broadcast", timeout: timeout) { call, state throws(CheckpointError) in
            let size = MPIBuffer(copying: [Int64(rank == root ? bytes.count : 0)])
            try call.perform("MPI_Ibcast", buffers: [size], state: &state) { communicator, request in
                MPI_Ibcast(size.address(), 1, cmpi_int64(), Int32(root), communicator, request)
            }
            let count = size.values(of: Int64.self)[0]
            guard count >= 0 else {
                throw call.failure("rank \(root) announced a payload of \(count) bytes")
            }
            let payload = rank == root ? MPIBuffer(copying: bytes) : MPIBuffer(byteCount: Int(count))
            for offset in stride(from: 0, to: payload.count, by: maximumMessageBytes) {
                let part = Int32(min(maximumMessageBytes, payload.count - offset))
                try call.perform("MPI_Ibcast", buffers: [payload], state: &state) { communicator, request in
                    MPI_Ibcast(payload.address(at: offset), part, cmpi_byte(), Int32(root), communicator, request)
                }
            }
            return Array(payload.bytes(from: 0, count: payload.count))
        }
    }
}
