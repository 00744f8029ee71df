/// The training state of a run, with Composer's fields.
///
/// Convert it to and from the checkpoint tree with ``tree`` and ``init(tree:)``; the tree is
/// what every checkpoint format stores:
/// ```
/// { "state": { "model", "optimizers", "schedulers", "algorithms", "callbacks", "scaler",
///              "timestamp": {"Timestamp": {...}}, "rank_zero_seed", "run_name",
///              "dataset_state", "integrations", "metadata", ... },
///   "rng": [ one entry per rank ] }
/// ```
public struct TrainingState: Sendable, Equatable {
    /// The model's parameters and buffers by name (`"fc1.weight"`).
    public var model: StateDict
    /// Optimizer states by class name (`"AdamW"`), each with torch's `state` and `param_groups`.
    public var optimizers: StateDict
    /// Learning-rate scheduler states by name.
    public var schedulers: StateDict
    /// Algorithm states, in order.
    public var algorithms: [StateValue]
    /// Callback states by name.
    public var callbacks: StateDict
    /// Gradient-scaler state.
    public var scaler: StateDict
    /// Where the run is.
    public var timestamp: Timestamp
    /// The seed of rank 0, from which every rank's seed derives.
    public var rankZeroSeed: Int
    /// The run's name (`{run_name}` in file names).
    public var runName: String
    /// The data loaders' states (`"train"`, `"eval"`): where in the data the run is.
    public var datasetState: StateDict
    /// Integration states (Hugging Face and others).
    public var integrations: StateDict
    /// Free-form metadata (versions, precision, world size).
    public var metadata: StateDict
    /// Random-number-generator states, one entry per rank.
    public var rng: [StateValue]
    /// Entries under `"state"` that are none of the above, kept so a round trip loses nothing.
    public var extra: StateDict

    /// A training state; every field not given is empty.
    public init(
        model: StateDict = [:], optimizers: StateDict = [:], schedulers: StateDict = [:],
        algorithms: [StateValue] = [], callbacks: StateDict = [:], scaler: StateDict = [:],
        timestamp: Timestamp = Timestamp(), rankZeroSeed: Int = 0, runName: String = "",
        datasetState: StateDict = [:], integrations: StateDict = [:], metadata: StateDict = [:],
        rng: [StateValue] = [], extra: StateDict = [:]
    ) {
        self.model = model
        self.optimizers = optimizers
        self.schedulers = schedulers
        self.algorithms = algorithms
        self.callbacks = callbacks
        self.scaler = scaler
        self.timestamp = timestamp
        self.rankZeroSeed = rankZeroSeed
        self.runName = runName
        self.datasetState = datasetState
        self.integrations = integrations
        self.metadata = metadata
        self.rng = rng
        self.extra = extra
    }

    /// The keys of `"state"` in Composer's order.
    static let stateKeys = [
        "model", "optimizers", "schedulers", "algorithms", "callbacks", "scaler", "timestamp",
        "rank_zero_seed", "run_name", "dataset_state", "integrations", "metadata",
    ]

    /// The checkpoint tree in Composer's layout.
    public var tree: StateValue {
        var state: StateDict = [
            "model": .dict(model),
            "optimizers": .dict(optimizers),
            "schedulers": .dict(schedulers),
            "algorithms": .list(algorithms),
            "callbacks": .dict(callbacks),
            "scaler": .dict(scaler),
            "timestamp": .dict(["Timestamp": .dict(timestamp.composerTree)]),
            "rank_zero_seed": .int(rankZeroSeed),
            "run_name": .string(runName),
            "dataset_state": .dict(datasetState),
            "integrations": .dict(integrations),
            "metadata": .dict(metadata),
        ]
        for (key, value) in extra { state[key] = value }
        return .dict(["state": .dict(state), "rng": .list(rng)])
    }

    /// Reads a training state from a checkpoint tree in Composer's layout.
    ///
    /// Fields a weights-only checkpoint leaves out are empty; `"timestamp"`, when present,
    /// must be complete. A field of the wrong kind is an error that names it.
    public init(tree: StateValue) throws(CheckpointError) {
        guard let root = tree.dictValue, let state = root["state"]?.dictValue else {
            throw CheckpointError(
                .invalidState,
                "the checkpoint has no \"state\" dictionary at its root, so it is not a training checkpoint; "
                    + "read it as a plain tree with CheckpointReader instead")
        }
        func dict(_ key: String) throws(CheckpointError) -> StateDict {
            switch state[key] {
            case nil, .none?: return [:]
            case .dict(let value)?: return value
            case let other?:
                throw CheckpointError(.invalidState, "state/\(key) is a \(other.kindName), expected a dict")
            }
        }
        self.init()
        model = try dict("model")
        optimizers = try dict("optimizers")
        schedulers = try dict("schedulers")
        callbacks = try dict("callbacks")
        scaler = try dict("scaler")
        datasetState = try dict("dataset_state")
        integrations = try dict("integrations")
        metadata = try dict("metadata")
        switch state["algorithms"] {
        case nil, .none?: algorithms = []
        case let value?:
            guard let elements = value.elements else {
                throw CheckpointError(.invalidState, "state/algorithms is a \(value.kindName), expected a list")
            }
            algorithms = elements
        }
        if let timestampTree = state["timestamp"] {
            guard let wrapped = timestampTree.dictValue?["Timestamp"]?.dictValue else {
                throw CheckpointError(.invalidState, "state/timestamp has no \"Timestamp\" dictionary")
            }
            timestamp = try Timestamp(composerTree: wrapped)
        }
        if let seed = state["rank_zero_seed"] {
            guard let value = seed.intValue else {
                throw CheckpointError(.invalidState, "state/rank_zero_seed is a \(seed.kindName), expected an int")
            }
            rankZeroSeed = value
        }
        if let name = state["run_name"] {
            guard let value = name.stringValue else {
                throw CheckpointError(.invalidState, "state/run_name is a \(name.kindName), expected a string")
            }
            runName = value
        }
        switch root["rng"] {
        case nil, .none?: rng = []
        case let value?:
            guard let elements = value.elements else {
                throw CheckpointError(.invalidState, "rng is a \(value.kindName), expected a list")
            }
            rng = elements
        }
        for (key, value) in state {
            if case .string(let name) = key, Self.stateKeys.contains(name) { continue }
            extra[key] = value
        }
    }
}
