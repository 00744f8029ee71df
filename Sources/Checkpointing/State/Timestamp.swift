/// Where a training run is: Composer's `Timestamp`, all 14 fields.
public struct Timestamp: Sendable, Hashable {
    public var iteration = 0
    public var epoch = 0
    public var batch = 0
    public var sample = 0
    public var token = 0
    public var epochInIteration = 0
    public var tokenInIteration = 0
    public var batchInEpoch = 0
    public var sampleInEpoch = 0
    public var tokenInEpoch = 0
    /// Wall-clock time since training started.
    public var totalWct: Duration = .zero
    public var iterationWct: Duration = .zero
    public var epochWct: Duration = .zero
    public var batchWct: Duration = .zero

    /// A timestamp; every field not given is zero.
    public init(
        iteration: Int = 0, epoch: Int = 0, batch: Int = 0, sample: Int = 0, token: Int = 0,
        epochInIteration: Int = 0, tokenInIteration: Int = 0, batchInEpoch: Int = 0,
        sampleInEpoch: Int = 0, tokenInEpoch: Int = 0, totalWct: Duration = .zero,
        iterationWct: Duration = .zero, epochWct: Duration = .zero, batchWct: Duration = .zero
    ) {
        self.iteration = iteration
        self.epoch = epoch
        self.batch = batch
        self.sample = sample
        self.token = token
        self.epochInIteration = epochInIteration
        self.tokenInIteration = tokenInIteration
        self.batchInEpoch = batchInEpoch
        self.sampleInEpoch = sampleInEpoch
        self.tokenInEpoch = tokenInEpoch
        self.totalWct = totalWct
        self.iterationWct = iterationWct
        self.epochWct = epochWct
        self.batchWct = batchWct
    }

    private static var counterFields: [(String, WritableKeyPath<Timestamp, Int>)] { [
        ("iteration", \.iteration), ("epoch", \.epoch), ("batch", \.batch), ("sample", \.sample),
        ("token", \.token), ("epoch_in_iteration", \.epochInIteration),
        ("token_in_iteration", \.tokenInIteration), ("batch_in_epoch", \.batchInEpoch),
        ("sample_in_epoch", \.sampleInEpoch), ("token_in_epoch", \.tokenInEpoch),
    ] }
    private static var durationFields: [(String, WritableKeyPath<Timestamp, Duration>)] { [
        ("total_wct", \.totalWct), ("iteration_wct", \.iterationWct), ("epoch_wct", \.epochWct),
        ("batch_wct", \.batchWct),
    ] }

    /// The timestamp as Composer's `Timestamp.state_dict()` lays it out, field names in snake case.
    public var composerTree: StateDict {
        var dict = StateDict()
        for (name, field) in Self.counterFields { dict[name] = .int(self[keyPath: field]) }
        for (name, field) in Self.durationFields { dict[name] = .duration(self[keyPath: field]) }
        return dict
    }

    /// Reads a timestamp from Composer's layout.
    ///
    /// Every field must be present with its type: a checkpoint that silently resumes at
    /// batch 0 would be worse than one that refuses to load.
    public init(composerTree dict: StateDict) throws(CheckpointError) {
        for (name, field) in Self.counterFields {
            guard let value = dict[name]?.intValue else {
                throw CheckpointError(.invalidState, "timestamp field \"\(name)\" is missing or not an integer")
            }
            self[keyPath: field] = value
        }
        for (name, field) in Self.durationFields {
            switch dict[name] {
            case .duration(let value)?: self[keyPath: field] = value
            // Older Composer versions stored wall-clock fields as float seconds.
            case .float(let seconds)?: self[keyPath: field] = .seconds(seconds)
            default:
                throw CheckpointError(.invalidState, "timestamp field \"\(name)\" is missing or not a duration")
            }
        }
    }
}

extension Duration {
    /// The duration in seconds, as a float (the template's `{total_wct}`).
    var secondsValue: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
