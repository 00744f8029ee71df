extension ShardPlan {
    /// ``splitFirstDimension`` for a tree that is to be saved as a DCP checkpoint: rows split
    /// evenly over the ranks, except the tensors DCP stores inside a value (a tuple, which DCP
    /// never splits into entries, such as numpy's rng state), which every rank gets whole, so
    /// that every rank holds the same value.
    ///
    /// `tree` gives the structure (which tensors sit in tuples); its tensors are not read.
    public static func splitFirstDimension(forDistributedCheckpointOf tree: StateValue) -> ShardPlan {
        let inValues = DCPKeyPaths.tensorsInsideValues(tree)
        return ShardPlan { path, shape, rank, worldSize in
            inValues.contains(path) ? .whole(shape) : ShardPlan.splitFirstDimension.slice(path, shape, rank, worldSize)
        }
    }
}

extension DCPKeyPaths {
    /// The flattened paths of the tensors DCP stores inside a value rather than as entries of
    /// their own: those in tuples (or in a tuple's lists and dicts).
    static func tensorsInsideValues(_ tree: StateValue) -> Set<String> {
        var paths = Set<String>()
        func visit(_ value: StateValue, statePath: String?) {
            switch value {
            case .dict(let dict):
                for (key, child) in dict { visit(child, statePath: StatePath.join(statePath, key.pathComponent)) }
            case .list(let elements) where !isLeaf(value):
                for (index, child) in elements.enumerated() { visit(child, statePath: StatePath.join(statePath, String(index))) }
            case .tensor:
                break
            default:
                value.forEachTensor { inner, _ in paths.insert(StatePath.join(statePath, inner)) }
            }
        }
        visit(tree, statePath: nil)
        return paths
    }
}
