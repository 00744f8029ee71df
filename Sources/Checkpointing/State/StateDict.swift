public import OrderedCollections

/// An ordered dictionary of the value tree, keyed by strings or integers.
///
/// Order is kept, as Python's `dict` and torch's `state_dict` keep it, so a checkpoint
/// written, read and written again lists its entries in the same order.
public struct StateDict: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    /// The entries, in order.
    public var entries: OrderedDictionary<StateKey, StateValue>

    /// An empty dictionary.
    public init() { entries = [:] }

    /// A dictionary of `entries`, in order; a later duplicate key replaces an earlier one.
    public init(_ entries: some Sequence<(StateKey, StateValue)>) {
        self.entries = OrderedDictionary(entries, uniquingKeysWith: { _, last in last })
    }

    public init(dictionaryLiteral elements: (StateKey, StateValue)...) { self.init(elements) }

    /// The value for `key`; setting `nil` removes the entry.
    public subscript(key: StateKey) -> StateValue? {
        get { entries[key] }
        set { entries[key] = newValue }
    }

    /// The value for a string key; setting `nil` removes the entry.
    public subscript(key: String) -> StateValue? {
        get { entries[.string(key)] }
        set { entries[.string(key)] = newValue }
    }

    /// The keys, in order.
    public var keys: OrderedSet<StateKey> { entries.keys }
    /// The number of entries.
    public var count: Int { entries.count }
    /// Whether there are no entries.
    public var isEmpty: Bool { entries.isEmpty }

    /// Removes and returns the value for `key`.
    @discardableResult
    public mutating func removeValue(forKey key: StateKey) -> StateValue? {
        entries.removeValue(forKey: key)
    }

    /// A dictionary with the same keys and transformed values.
    public func mapValues(_ transform: (StateValue) throws -> StateValue) rethrows -> StateDict {
        var copy = self
        for index in copy.entries.values.indices {
            copy.entries.values[index] = try transform(copy.entries.values[index])
        }
        return copy
    }

    public func makeIterator() -> some IteratorProtocol<(key: StateKey, value: StateValue)> {
        entries.lazy.map { (key: $0.key, value: $0.value) }.makeIterator()
    }
}
