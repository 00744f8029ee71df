import CheckpointToolSupport

/// A synthetic classification set: points around three random centres in 16 dimensions.
struct DemoData {
    static let features = 16
    static let classes = 3

    let inputs: [Float]  // samples × features, row-major
    let labels: [Int]
    var count: Int { labels.count }

    init(samples: Int, seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let centres = (0..<(Self.classes * Self.features)).map { _ in random.uniform() * 4 - 2 }
        var inputs: [Float] = []
        var labels: [Int] = []
        inputs.reserveCapacity(samples * Self.features)
        for _ in 0..<samples {
            let label = Int(random.next() % UInt64(Self.classes))
            labels.append(label)
            for feature in 0..<Self.features {
                inputs.append(centres[label * Self.features + feature] + random.normal() * 1.2)
            }
        }
        self.inputs = inputs
        self.labels = labels
    }
}

/// A shuffling data loader whose position is part of the checkpoint: the epoch, the batch
/// within it, and the generator state the epoch's order was drawn from.
struct DemoLoader {
    let batchSize: Int
    let sampleCount: Int
    /// The generator state at the start of the current epoch.
    private(set) var epochSeed: UInt64
    private(set) var epoch = 0
    private(set) var batchInEpoch = 0
    private var order: [Int] = []

    init(sampleCount: Int, batchSize: Int, seed: UInt64) {
        self.sampleCount = sampleCount
        self.batchSize = batchSize
        epochSeed = seed
        order = Self.shuffled(count: sampleCount, seed: seed)
    }

    /// Batches per epoch (the last partial batch is dropped).
    var batchesPerEpoch: Int { sampleCount / batchSize }

    /// The sample indices of the next batch; `nil` at the end of an epoch (then call `nextEpoch`).
    mutating func nextBatch() -> ArraySlice<Int>? {
        guard batchInEpoch < batchesPerEpoch else { return nil }
        defer { batchInEpoch += 1 }
        return order[(batchInEpoch * batchSize)..<((batchInEpoch + 1) * batchSize)]
    }

    /// Starts the next epoch with a new order drawn from the loader's generator.
    mutating func nextEpoch() {
        var random = SplitMix64(seed: epochSeed)
        epochSeed = random.next()
        epoch += 1
        batchInEpoch = 0
        order = Self.shuffled(count: sampleCount, seed: epochSeed)
    }

    private static func shuffled(count: Int, seed: UInt64) -> [Int] {
        var random = SplitMix64(seed: seed)
        var order = Array(0..<count)
        for index in stride(from: count - 1, to: 0, by: -1) {
            order.swapAt(index, Int(random.next() % UInt64(index + 1)))
        }
        return order
    }

    /// The loader's state for the checkpoint's `dataset_state`.
    var state: [String: Int] {
        ["epoch": epoch, "batch_in_epoch": batchInEpoch, "epoch_seed": Int(bitPattern: UInt(epochSeed))]
    }

    /// Restores a position saved by ``state``.
    mutating func restore(epoch: Int, batchInEpoch: Int, epochSeed: UInt64) {
        self.epoch = epoch
        self.batchInEpoch = batchInEpoch
        self.epochSeed = epochSeed
        order = Self.shuffled(count: sampleCount, seed: epochSeed)
    }
}

extension SplitMix64 {
    /// A float in [0, 1).
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }

    /// A standard normal float (Box-Muller).
    mutating func normal() -> Float {
        let u = max(uniform(), 1e-7)
        let v = uniform()
        return (-2 * logf(u)).squareRoot() * cosf(2 * .pi * v)
    }
}

#if canImport(Glibc)
import Glibc
import CheckpointToolSupport
#endif
