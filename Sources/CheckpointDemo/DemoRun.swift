import BigInt
public import Checkpointing
import CheckpointToolSupport

/// A training run of the demo model: the loop, and its state as a ``TrainingState``.
public struct DemoRun {
    /// The run name of every demo run: its checkpoints are under `FOLDER/demo-run/checkpoints`.
    public static let runName = "demo-run"
    static let batchSize = 32

    let data: DemoData
    let totalBatches: Int
    var model: DemoModel
    var loader: DemoLoader
    /// Where the run stands.
    public private(set) var timestamp = Timestamp()
    /// (batch, loss) at the batches the report shows.
    var losses: [(batch: Int, loss: Float)] = []
    /// Bytes saved with every checkpoint and never read back into training (`ckpt demo-run
    /// --ballast`): they make a save last long enough to be killed in the middle.
    public var ballast: Tensor?
    private let seed: UInt64
    private let reportedBatches: Set<Int>

    /// A run on the demo data set (always the same) whose weights start from `weightsSeed`.
    public init(seed: UInt64, weightsSeed: UInt64? = nil, totalBatches: Int) {
        self.seed = seed
        self.totalBatches = totalBatches
        data = DemoData(samples: 640, seed: seed)
        model = DemoModel(seed: weightsSeed ?? seed &+ 1, totalSteps: totalBatches)
        loader = DemoLoader(sampleCount: data.count, batchSize: Self.batchSize, seed: seed &+ 2)
        reportedBatches = Set([1, totalBatches / 4, totalBatches / 2, 3 * totalBatches / 4, totalBatches])
    }

    var isFinished: Bool { timestamp.batch >= totalBatches }

    /// Trains until `stopAt` batches (or the end), calling the saver's events as Composer does.
    public mutating func train(until stopAt: Int, saver: CheckpointSaver?) throws {
        let start = ContinuousClock.now
        let wallClockBefore = timestamp.totalWct
        while timestamp.batch < min(stopAt, totalBatches) {
            // A checkpoint taken at the last batch of an epoch resumes before the epoch's end.
            if loader.batchInEpoch == loader.batchesPerEpoch { try endEpoch(saver: saver) }
            guard let batch = loader.nextBatch() else { preconditionFailure("the epoch ended above") }
            let loss = model.train(on: batch, data: data)
            timestamp.batch += 1
            timestamp.batchInEpoch += 1
            timestamp.sample += batch.count
            timestamp.sampleInEpoch += batch.count
            timestamp.totalWct = wallClockBefore + (ContinuousClock.now - start)
            if reportedBatches.contains(timestamp.batch) { losses.append((timestamp.batch, loss)) }
            try saver?.batchEnd(state)
            if loader.batchInEpoch == loader.batchesPerEpoch { try endEpoch(saver: saver) }
        }
    }

    /// Ends an epoch whose last batch is done: a run resumed from the checkpoint of that last
    /// batch is otherwise one step behind a run that went on.
    mutating func settle() throws {
        if loader.batchInEpoch == loader.batchesPerEpoch { try endEpoch(saver: nil) }
    }

    private mutating func endEpoch(saver: CheckpointSaver?) throws {
        loader.nextEpoch()
        timestamp.epoch += 1
        timestamp.batchInEpoch = 0
        timestamp.sampleInEpoch = 0
        try saver?.epochEnd(state)
    }

    /// The run's state in Composer's layout.
    public var state: TrainingState {
        var model = StateDict()
        var moments = StateDict()
        for (index, name) in DemoModel.parameterNames.enumerated() {
            let shape = DemoModel.shapes[index]
            model[name] = .tensor(try! Tensor(shape: shape, scalars: self.model.parameters[index]))
            moments[.int(index)] = .dict([
                "step": .tensor(try! Tensor(shape: [], scalars: [Float(self.model.step)])),
                "exp_avg": .tensor(try! Tensor(shape: shape, scalars: self.model.exponentialAverage[index])),
                "exp_avg_sq": .tensor(try! Tensor(shape: shape, scalars: self.model.exponentialAverageSquare[index])),
            ])
        }
        let group: StateValue = .dict([
            "lr": .float(Double(self.model.scheduledLearningRate)), "initial_lr": .float(Double(self.model.learningRate)),
            "betas": .tuple([.float(Double(self.model.betas.0)), .float(Double(self.model.betas.1))]),
            "eps": .float(Double(self.model.epsilon)), "weight_decay": .float(Double(self.model.weightDecay)),
            "params": .list((0..<DemoModel.parameterNames.count).map { .int($0) }),
        ])
        return TrainingState(
            model: model,
            optimizers: ["AdamW": .dict(["state": .dict(moments), "param_groups": .list([group])])],
            schedulers: ["LambdaLR": .dict(["last_epoch": .int(self.model.step), "base_lrs": .list([.float(Double(self.model.learningRate))])])],
            callbacks: ballast.map { ["Ballast": .tensor($0)] } ?? [:],
            timestamp: timestamp,
            rankZeroSeed: Int(seed),
            runName: Self.runName,
            datasetState: ["train": .dict(StateDict(loader.state.map { (StateKey.string($0.key), StateValue.int($0.value)) }))],
            metadata: ["model": "mlp-16-64-3", "optimizer": "AdamW", "total_batches": .int(totalBatches)],
            rng: [.dict(["dropout": .int(BigInt(self.model.dropoutState))])])
    }

    /// Puts the run where `state` says it is.
    public mutating func restore(_ state: TrainingState) throws {
        guard let savedTotal = state.metadata["total_batches"]?.intValue, savedTotal == totalBatches else {
            throw CommandFailure(
                "the folder holds a run of \(state.metadata["total_batches"]?.intValue.map(String.init) ?? "another") batches, not \(totalBatches): its learning-rate schedule differs; use the same --batches or another --folder")
        }
        func floats(_ value: StateValue?, _ what: String) throws -> [Float] {
            guard let tensor = value?.tensorValue else { throw CommandFailure("the checkpoint has no \(what)") }
            return try tensor.scalars(as: Float.self)
        }
        let optimizer = state.optimizers["AdamW"]?.dictValue?["state"]?.dictValue
        for (index, name) in DemoModel.parameterNames.enumerated() {
            model.parameters[index] = try floats(state.model[name], name)
            let moments = optimizer?[.int(index)]?.dictValue
            model.exponentialAverage[index] = try floats(moments?["exp_avg"], "exp_avg of \(name)")
            model.exponentialAverageSquare[index] = try floats(moments?["exp_avg_sq"], "exp_avg_sq of \(name)")
            model.step = Int(try floats(moments?["step"], "step of \(name)")[0])
        }
        guard case .int(let dropout)? = state.rng.first?.dictValue?["dropout"], let dropoutState = UInt64(exactly: dropout),
            let train = state.datasetState["train"]?.dictValue,
            let epoch = train["epoch"]?.intValue, let batchInEpoch = train["batch_in_epoch"]?.intValue,
            let epochSeed = train["epoch_seed"]?.intValue
        else { throw CommandFailure("the checkpoint lacks the loader position or the dropout generator state") }
        model.dropoutState = dropoutState
        loader.restore(epoch: epoch, batchInEpoch: batchInEpoch, epochSeed: UInt64(bitPattern: Int64(epochSeed)))
        timestamp = state.timestamp
    }
}
