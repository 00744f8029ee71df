import BigInt
import OrderedCollections

/// A value on the unpickler's stack or in its memo.
///
/// Python's lists, dicts and tuples are objects that several places may reference (the memo
/// hands the same object out again), and lists and dicts change after they are created; they
/// are classes here so those references behave as in Python. The finished tree is built from
/// them once unpickling is done (``PickleTreeBuilder``).
indirect enum PickleValue {
    /// A value that is final as soon as it exists: strings, numbers, bytes, tensors, ...
    case value(StateValue)
    case list(PickleList)
    case dict(PickleDict)
    case tuple(PickleTuple)
    case global(PickleGlobal)
    case storage(TorchStorage)
    case numpyArray(NumpyArray)
    case numpyDType(NumpyDType)
    /// An object of one of DCP's dataclasses (a `.metadata` only).
    case object(PickleObject)

    /// What the value is, for messages.
    var kindName: String {
        switch self {
        case .value(let value): value.kindName
        case .list: "list"
        case .dict: "dict"
        case .tuple: "tuple"
        case .global(let global): global.qualifiedName
        case .storage: "storage"
        case .numpyArray: "numpy.ndarray"
        case .numpyDType: "numpy.dtype"
        case .object(let object): object.type.rawValue
        }
    }

    var stringValue: String? { if case .value(.string(let string)) = self { string } else { nil } }
    var integerValue: BigInt? { if case .value(.int(let integer)) = self { integer } else { nil } }
    var intValue: Int? { integerValue.flatMap { Int(exactly: $0) } }
    var tupleItems: [PickleValue]? { if case .tuple(let tuple) = self { tuple.items } else { nil } }
}

final class PickleList {
    var items: [PickleValue] = []
}

final class PickleDict {
    var entries = OrderedDictionary<StateKey, PickleValue>()
    /// Entries keyed by an object (a DCP `.metadata`'s `storage_data`, keyed by `MetadataIndex`),
    /// in order.
    var objectKeyed: [(key: PickleObject, value: PickleValue)] = []
}

final class PickleTuple {
    private(set) var items: [PickleValue]
    init(_ items: [PickleValue]) { self.items = items }
    func removeAll() { items = [] }
}

/// Every container a pickle creates, so they can be emptied one by one when unpickling ends.
///
/// Without it, releasing a hostile pickle's list nested 100,000 levels deep would recurse once
/// per level and overflow the stack, and a list that contains itself would never be freed.
final class PickleContainers {
    private var objects: [AnyObject] = []

    func register<T: AnyObject>(_ object: T) -> T {
        objects.append(object)
        return object
    }

    func releaseAll() {
        for object in objects {
            switch object {
            case let list as PickleList: list.items = []
            case let dict as PickleDict:
                dict.entries = [:]
                dict.objectKeyed = []
            case let tuple as PickleTuple: tuple.removeAll()
            case let object as PickleObject: object.state = nil
            default: break
            }
        }
        objects = []
    }
}

/// Builds the finished value tree from the unpickler's objects.
///
/// Each object is converted once, however often it is referenced, so a hostile pickle that
/// references one object from two places at every level costs linear time; the size of the
/// tree once those references are expanded, its depth and any cycle are checked as it goes.
struct PickleTreeBuilder {
    private var converted: [ObjectIdentifier: (value: StateValue, nodes: Int, height: Int)] = [:]
    private var inProgress: Set<ObjectIdentifier> = []
    let maximumNodes: Int
    let maximumDepth: Int

    init(maximumNodes: Int, maximumDepth: Int) {
        self.maximumNodes = maximumNodes
        self.maximumDepth = maximumDepth
    }

    mutating func build(_ value: PickleValue) throws(CheckpointError) -> StateValue {
        let (tree, nodes, height) = try convert(value, depth: 0)
        guard nodes <= maximumNodes else { throw tooLarge() }
        guard height <= maximumDepth else { throw tooDeep() }
        return tree
    }

    private func tooLarge() -> CheckpointError {
        CheckpointError(
            .malformed,
            "the pickle's value tree expands to more than \(maximumNodes) nodes through shared references, far more than its size justifies")
    }

    private func tooDeep() -> CheckpointError {
        CheckpointError(.malformed, "the pickle's value tree is nested more than \(maximumDepth) levels deep")
    }

    /// The tree of `value`, its node count and its height.
    private mutating func convert(
        _ value: PickleValue, depth: Int
    ) throws(CheckpointError) -> (StateValue, Int, Int) {
        guard depth <= maximumDepth else { throw tooDeep() }
        let object: AnyObject
        switch value {
        case .value(let leaf): return (leaf, 1, 0)
        case .list(let list): object = list
        case .dict(let dict): object = dict
        case .tuple(let tuple): object = tuple
        case .numpyArray(let array):
            guard let tensor = array.tensor else {
                throw CheckpointError(.malformed, "the pickle holds a numpy array that was never given its contents (BUILD)")
            }
            return (.tensor(tensor), 1, 0)
        case .numpyDType(let dtype): return (.string(dtype.description), 1, 0)
        case .global(.torchDType(let name, _)): return (.string("torch." + name), 1, 0)
        case .global(let global):
            throw CheckpointError(
                .unsupportedFormat, "the pickle stores the Python object \(global.qualifiedName) itself as a value, which a checkpoint tree cannot hold")
        case .object(let object):
            throw CheckpointError(
                .unsupportedFormat, "the pickle stores a \(object.type.rawValue) object, which a checkpoint tree cannot hold")
        case .storage(let storage):
            throw CheckpointError(
                .unsupportedFormat,
                "the pickle stores storage \"\(storage.key)\" on its own rather than inside a tensor; this library reads tensors, not bare storages")
        }
        let id = ObjectIdentifier(object)
        if let done = converted[id] {
            guard depth + done.height <= maximumDepth else { throw tooDeep() }
            return done
        }
        guard inProgress.insert(id).inserted else {
            throw CheckpointError(.malformed, "the pickle holds a \(value.kindName) that contains itself; a checkpoint tree cannot")
        }
        defer { inProgress.remove(id) }
        var nodes = 1
        var height = 0
        func add(_ child: (StateValue, Int, Int)) throws(CheckpointError) -> StateValue {
            let (sum, overflow) = nodes.addingReportingOverflow(child.1)
            guard !overflow, sum <= maximumNodes else { throw tooLarge() }
            nodes = sum
            height = max(height, child.2 + 1)
            return child.0
        }
        let result: StateValue
        switch value {
        case .list(let list):
            var elements: [StateValue] = []
            elements.reserveCapacity(list.items.count)
            for item in list.items { elements.append(try add(try convert(item, depth: depth + 1))) }
            result = .list(elements)
        case .tuple(let tuple):
            var elements: [StateValue] = []
            elements.reserveCapacity(tuple.items.count)
            for item in tuple.items { elements.append(try add(try convert(item, depth: depth + 1))) }
            result = .tuple(elements)
        case .dict(let dict):
            var entries = OrderedDictionary<StateKey, StateValue>(minimumCapacity: dict.entries.count)
            for (key, item) in dict.entries { entries[key] = try add(try convert(item, depth: depth + 1)) }
            var tree = StateDict()
            tree.entries = entries
            result = .dict(tree)
        default:
            preconditionFailure("handled above")
        }
        converted[id] = (result, nodes, height)
        return (result, nodes, height)
    }
}
