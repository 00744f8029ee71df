import OrderedCollections

/// How a checkpoint tree maps to DCP's flat state dict, both ways.
///
/// DCP's default planner flattens a nested state dict into one level: each leaf gets an FQN,
/// its key path joined by dots (`optim.param_groups.0.lr`), and `planner_data` records the
/// path itself (`("optim", "param_groups", 0, "lr")`). A dict key is recorded as its string
/// (`str(key)`); a list index as an integer. Dots inside keys make FQNs ambiguous
/// (`model.embed.weight` can be `model` → `embed.weight`), so the tree is rebuilt from the
/// paths, never by splitting FQNs.
enum DCPKeyPaths {
    /// A leaf of the flattened tree.
    struct Entry {
        var fqn: String
        var path: [DCPKey]
        /// The leaf's flattened path in the tree (`state/model/fc.weight`).
        var statePath: String
        var value: StateValue
    }

    /// The most keys in one path: deeper than any state dict, shallow enough for recursion.
    static let maximumDepth = ReadingLimits.deepestSupportedDepth

    // MARK: Flattening (writing)

    /// The leaves of `tree` as DCP's default planner flattens a nested state dict (torch 2.4
    /// and later): dicts are walked; a list is walked when it holds a tensor, a dict or a list
    /// that is walked, else it is one leaf; every other value (a tuple too) is one leaf.
    ///
    /// An empty dict has no leaves, so it is not saved, as DCP does not save it: an entry DCP
    /// would not make, even an empty dict, makes `torch.distributed.checkpoint.load` take the
    /// checkpoint for one of torch 2.3 and read it under that version's names.
    ///
    /// - Throws: ``CheckpointError`` (`.invalidArgument`) when the root is not a dict, the tree
    ///   nests deeper than ``maximumDepth``, or two leaves flatten to one FQN (keys containing
    ///   dots: `{"a.b": x, "a": {"b": y}}`), which DCP cannot tell apart.
    static func flatten(_ tree: StateValue) throws(CheckpointError) -> [Entry] {
        guard case .dict(let root) = tree else {
            throw CheckpointError(.invalidArgument, "a DCP checkpoint's root is a dict of named entries; this tree's root is a \(tree.kindName)")
        }
        var entries: [Entry] = []
        var seen: [String: String] = [:]
        var path: [DCPKey] = []
        func visit(_ value: StateValue, statePath: String) throws(CheckpointError) {
            guard path.count <= maximumDepth else {
                throw ReadingLimits(maximumDepth: maximumDepth).depthExceeded(at: statePath)
            }
            switch value {
            case .dict(let dict):
                for (key, child) in dict {
                    path.append(.name(key.description))
                    try visit(child, statePath: StatePath.join(statePath, key.pathComponent))
                    path.removeLast()
                }
                return
            case .list(let elements) where !isLeaf(value):
                for (index, child) in elements.enumerated() {
                    path.append(.index(index))
                    try visit(child, statePath: StatePath.join(statePath, String(index)))
                    path.removeLast()
                }
                return
            default:
                break
            }
            let fqn = DCPKey.fqn(path)
            if let other = seen[fqn] {
                throw CheckpointError(
                    .invalidArgument,
                    "\"\(other)\" and \"\(statePath)\" both flatten to the DCP name \"\(fqn)\" (DCP joins keys with dots), so a DCP checkpoint cannot hold both; rename one of the keys")
            }
            seen[fqn] = statePath
            entries.append(Entry(fqn: fqn, path: path, statePath: statePath, value: value))
        }
        for (key, child) in root {
            path = [.name(key.description)]
            try visit(child, statePath: key.pathComponent)
        }
        return entries
    }

    /// Whether DCP stores `value` whole rather than walking into it (torch's `_is_terminal`).
    static func isLeaf(_ value: StateValue) -> Bool {
        switch value {
        case .dict: return false
        case .list(let elements):
            for element in elements {
                switch element {
                case .tensor, .dict: return false
                case .list where !isLeaf(element): return false
                default: continue
                }
            }
            return true
        default: return true
        }
    }

    // MARK: Rebuilding (reading)

    /// The flattened path in the tree of a key path (`state/model/fc.weight`).
    static func statePath(_ path: [DCPKey]) -> String {
        var result: String?
        for key in path {
            switch key {
            case .name(let name): result = StatePath.join(result, StatePath.escape(name))
            case .index(let index): result = StatePath.join(result, String(index))
            }
        }
        return result ?? ""
    }

    /// The key path of each FQN of `metadata`: its `planner_data` path, or the FQN as one key
    /// at the root when it has none (a checkpoint saved without flattening).
    static func keyPath(of fqn: String, in metadata: DCPMetadata) -> [DCPKey] {
        metadata.keyPaths?[fqn] ?? [.name(fqn)]
    }

    /// The tree of `metadata`'s entries, each placed at its key path, as torch's
    /// `unflatten_state_dict` places them: a string key makes a dict, an integer a list, and
    /// list slots no entry fills are `none`. `leaves` gives each FQN's value; an FQN it leaves
    /// out creates the containers on its path but no value (a tensor another rank loads).
    ///
    /// - Throws: ``CheckpointError`` (`.malformed`) when two paths claim the same place, or one
    ///   runs through the other's value, or a level is a dict for one path and a list for
    ///   another: the `.metadata` does not describe one tree.
    static func tree(of metadata: DCPMetadata, leaves: [String: StateValue]) throws(CheckpointError) -> StateValue {
        var builder = TreeBuilder(slotLimit: metadata.listSlotLimit)
        for fqn in metadata.fqns {
            try builder.insert(leaves[fqn], at: keyPath(of: fqn, in: metadata), fqn: fqn)
        }
        return builder.root.value
    }

    private struct TreeBuilder {
        final class Container {
            let isList: Bool
            /// The FQN whose path made it, for messages.
            let madeBy: String
            var named = OrderedDictionary<String, Slot>()
            var indexed: [Slot?] = []

            init(isList: Bool, madeBy: String) {
                self.isList = isList
                self.madeBy = madeBy
            }

            var value: StateValue {
                if isList { return .list(indexed.map { $0?.value ?? .none }) }
                // An absent entry of a dict is left out; of a list, it keeps its index as `none`.
                return .dict(StateDict(named.compactMap { key, slot in
                    if case .absent = slot { return nil }
                    return (StateKey.string(key), slot.value)
                }))
            }
        }

        enum Slot {
            case container(Container)
            case leaf(StateValue, fqn: String)
            /// A place an entry claims without a value here.
            case absent(fqn: String)

            var value: StateValue {
                switch self {
                case .container(let container): container.value
                case .leaf(let value, _): value
                case .absent: .none
                }
            }

            var fqn: String {
                switch self {
                case .container(let container): container.madeBy
                case .leaf(_, let fqn), .absent(let fqn): fqn
                }
            }
        }

        let root = Container(isList: false, madeBy: "")
        var slotsLeft: Int

        init(slotLimit: Int) { slotsLeft = slotLimit }

        mutating func insert(_ value: StateValue?, at path: [DCPKey], fqn: String) throws(CheckpointError) {
            guard !path.isEmpty, path.count <= DCPKeyPaths.maximumDepth else {
                throw CheckpointError(.malformed, "the .metadata gives \"\(fqn)\" a key path of \(path.count) keys")
            }
            var current = root
            for (position, key) in path.enumerated() {
                let isLast = position == path.count - 1
                let existing: Slot?
                switch key {
                case .name(let name):
                    guard !current.isList else { throw conflict(fqn, current.madeBy, "a list where it needs a dict") }
                    existing = current.named[name]
                case .index(let index):
                    guard current.isList else { throw conflict(fqn, current.madeBy, "a dict where it needs a list") }
                    if index >= current.indexed.count {
                        let added = index + 1 - current.indexed.count
                        guard added <= slotsLeft else {
                            throw CheckpointError(
                                .malformed, "the .metadata gives \"\(fqn)\" the list index \(index), far beyond what the checkpoint holds")
                        }
                        slotsLeft -= added
                        current.indexed += repeatElement(nil, count: added)
                    }
                    existing = current.indexed[index]
                }
                let slot: Slot
                if isLast {
                    if let existing { throw conflict(fqn, existing.fqn, "the same place") }
                    slot = value.map { .leaf($0, fqn: fqn) } ?? .absent(fqn: fqn)
                } else {
                    switch existing {
                    case .container(let container)?:
                        current = container
                        continue
                    case .leaf(_, let other)?, .absent(let other)?:
                        throw conflict(fqn, other, "a value where it needs a container")
                    case nil:
                        let container = Container(isList: path[position + 1].isIndex, madeBy: fqn)
                        slot = .container(container)
                    }
                }
                switch key {
                case .name(let name): current.named[name] = slot
                case .index(let index): current.indexed[index] = slot
                }
                if case .container(let container) = slot { current = container }
            }
        }

        private func conflict(_ fqn: String, _ other: String, _ what: String) -> CheckpointError {
            CheckpointError(
                .malformed,
                "the .metadata's key paths (planner_data) for \"\(fqn)\" and \"\(other)\" do not fit one tree: the path of \"\(fqn)\" meets \(what)")
        }
    }
}

extension DCPKey {
    var isIndex: Bool { if case .index = self { true } else { false } }
}
