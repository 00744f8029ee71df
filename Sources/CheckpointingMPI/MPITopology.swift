import Checkpointing
internal import CMPI

/// This process's place in the run as MPI sees it, and the communicator a group uses.
struct MPITopology {
    var communicator: MPI_Comm
    var rank: Int
    var worldSize: Int
    var localRank: Int
    var localWorldSize: Int
    var nodeRank: Int

    /// This process's rank in `MPI_COMM_WORLD` and its size: local calls, no waiting.
    static func world() throws(CheckpointError) -> (rank: Int, size: Int) {
        try MPIRuntime.withLock { _ throws(CheckpointError) in
            var rank: Int32 = 0
            var size: Int32 = 0
            try check(MPI_Comm_rank(cmpi_comm_world(), &rank), "MPI_Comm_rank")
            try check(MPI_Comm_size(cmpi_comm_world(), &size), "MPI_Comm_size")
            return (Int(rank), Int(size))
        }
    }

    /// Duplicates `MPI_COMM_WORLD` for a group and finds this process's node: the processes
    /// that share memory with it (`MPI_COMM_TYPE_SHARED`) are its node, and nodes are numbered
    /// in the order of their lowest rank.
    ///
    /// Collective and blocking: every process of the run must call it.
    static func discover() throws(CheckpointError) -> MPITopology {
        try MPIRuntime.withLock { _ throws(CheckpointError) in
            var duplicate: MPI_Comm? = nil
            try check(MPI_Comm_dup(cmpi_comm_world(), &duplicate), "MPI_Comm_dup")
            guard let communicator = duplicate else {
                throw CheckpointError(.distributed, "MPI_Comm_dup succeeded but gave no communicator")
            }
            try check(MPI_Comm_set_errhandler(communicator, cmpi_errors_return()), "MPI_Comm_set_errhandler")
            var rank: Int32 = 0
            var size: Int32 = 0
            try check(MPI_Comm_rank(communicator, &rank), "MPI_Comm_rank")
            try check(MPI_Comm_size(communicator, &size), "MPI_Comm_size")

            var node: MPI_Comm? = nil
            try check(
                MPI_Comm_split_type(communicator, Int32(MPI_COMM_TYPE_SHARED), rank, cmpi_info_null(), &node),
                "MPI_Comm_split_type")
            defer { MPI_Comm_free(&node) }
            try check(MPI_Comm_set_errhandler(node, cmpi_errors_return()), "MPI_Comm_set_errhandler")
            var localRank: Int32 = 0
            var localSize: Int32 = 0
            try check(MPI_Comm_rank(node, &localRank), "MPI_Comm_rank")
            try check(MPI_Comm_size(node, &localSize), "MPI_Comm_size")

            // Every process learns its node's lowest rank, then every node's.
            var lowest = Int64(rank)
            try check(MPI_Bcast(&lowest, 1, cmpi_int64(), 0, node), "MPI_Bcast")
            var lowestRanks = [Int64](repeating: 0, count: Int(size))
            try check(
                MPI_Allgather(&lowest, 1, cmpi_int64(), &lowestRanks, 1, cmpi_int64(), communicator), "MPI_Allgather")
            let nodeRank = Set(lowestRanks).filter { $0 < lowest }.count

            return MPITopology(
                communicator: communicator, rank: Int(rank), worldSize: Int(size), localRank: Int(localRank),
                localWorldSize: Int(localSize), nodeRank: nodeRank)
        }
    }
}
