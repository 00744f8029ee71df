#if canImport(Glibc)
import Glibc
#endif

/// A process's place in a run, read from its launcher's environment: torchrun,
/// Open MPI, SLURM or PMI.
///
/// Several launchers may set their variables at once (`srun` under SLURM with PMI, `mpirun`
/// inside an allocation); they must agree, or ``detect(from:)`` refuses to guess.
public struct LaunchEnvironment: Sendable, Equatable {
    public var rank: Int
    public var worldSize: Int
    public var localRank: Int
    public var localWorldSize: Int
    public var nodeRank: Int

    public init(rank: Int = 0, worldSize: Int = 1, localRank: Int = 0, localWorldSize: Int = 1, nodeRank: Int = 0) {
        self.rank = rank
        self.worldSize = worldSize
        self.localRank = localRank
        self.localWorldSize = localWorldSize
        self.nodeRank = nodeRank
    }

    /// The variables each launcher sets, for each field.
    private static var sources: [(launcher: String, fields: [(WritableKeyPath<LaunchEnvironment, Int>, String)])] { [
        ("torchrun", [(\.rank, "RANK"), (\.worldSize, "WORLD_SIZE"), (\.localRank, "LOCAL_RANK"),
                      (\.localWorldSize, "LOCAL_WORLD_SIZE"), (\.nodeRank, "GROUP_RANK"), (\.nodeRank, "NODE_RANK")]),
        ("Open MPI", [(\.rank, "OMPI_COMM_WORLD_RANK"), (\.worldSize, "OMPI_COMM_WORLD_SIZE"),
                      // Not OMPI_COMM_WORLD_NODE_RANK: despite its name, that is the process's index
                      // on its node, not the node's index; Open MPI sets no node index.
                      (\.localRank, "OMPI_COMM_WORLD_LOCAL_RANK"), (\.localWorldSize, "OMPI_COMM_WORLD_LOCAL_SIZE")]),
        ("SLURM", [(\.rank, "SLURM_PROCID"), (\.worldSize, "SLURM_NTASKS"), (\.localRank, "SLURM_LOCALID"),
                   (\.nodeRank, "SLURM_NODEID")]),
        ("PMI", [(\.rank, "PMI_RANK"), (\.worldSize, "PMI_SIZE")]),
    ] }

    /// Reads the launcher variables from `environment` (the process's own by default).
    ///
    /// With no launcher variables, this is a run of one process. A value that is not a
    /// non-negative integer, a rank outside the world, or two launchers (or two variables of one
    /// launcher) that give one field different values are errors naming the variables.
    public static func detect(from environment: [String: String] = ProcessEnvironment.current) throws(CheckpointError) -> LaunchEnvironment {
        var result = LaunchEnvironment()
        var seen: [PartialKeyPath<LaunchEnvironment>: (name: String, value: Int)] = [:]
        for (launcher, fields) in sources {
            for (field, name) in fields {
                guard let text = environment[name] else { continue }
                guard let value = Int(text.trimmingCharacters(in: " \t\n")), value >= 0 else {
                    throw CheckpointError(.distributed, "\(name)=\(text) (set by \(launcher)) is not a non-negative integer")
                }
                if let earlier = seen[field], earlier.value != value {
                    throw CheckpointError(
                        .distributed,
                        "the launcher environment contradicts itself: \(earlier.name)=\(earlier.value) but \(name)=\(value); unset the stale variables")
                }
                seen[field] = (name, value)
                result[keyPath: field] = value
            }
        }
        guard result.rank < result.worldSize else {
            throw CheckpointError(.distributed, "rank \(result.rank) is not below the world size \(result.worldSize)")
        }
        if seen[\LaunchEnvironment.localWorldSize] == nil {
            // SLURM and PMI give no local world size: a local rank implies at least that many.
            result.localWorldSize = max(result.localWorldSize, result.localRank + 1)
        }
        guard result.localRank < result.localWorldSize else {
            throw CheckpointError(
                .distributed, "local rank \(result.localRank) is not below the local world size \(result.localWorldSize)")
        }
        return result
    }
}

/// The process's environment variables.
public enum ProcessEnvironment {
    public static var current: [String: String] {
        var result: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        return result
    }
}

extension String {
    fileprivate func trimmingCharacters(in characters: String) -> Substring {
        var text = Substring(self)
        while let first = text.first, characters.contains(first) { text.removeFirst() }
        while let last = text.last, characters.contains(last) { text.removeLast() }
        return text
    }
}
