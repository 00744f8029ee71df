import CheckpointToolSupport
#if canImport(Glibc)
import Glibc
#endif

/// A two-layer perceptron (16 → 64 → 3, ReLU, dropout) trained with AdamW, in plain Swift.
///
/// Small enough to train in a blink, real enough that resuming is only bit-identical when every
/// part of the state comes back: weights, AdamW moments and step, the learning-rate schedule's
/// position, the loader's position and the dropout generator.
struct DemoModel {
    static let hidden = 64
    static let parameterNames = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    static let shapes: [[Int]] = [[hidden, DemoData.features], [hidden], [DemoData.classes, hidden], [DemoData.classes]]

    /// Parameters in `parameterNames` order, each row-major.
    var parameters: [[Float]]
    var exponentialAverage: [[Float]]
    var exponentialAverageSquare: [[Float]]
    var step = 0
    /// The dropout generator's state.
    var dropoutState: UInt64

    let learningRate: Float = 0.01
    let betas: (Float, Float) = (0.9, 0.999)
    let epsilon: Float = 1e-8
    let weightDecay: Float = 0.01
    let dropout: Float = 0.1
    let warmupSteps = 10
    let totalSteps: Int

    init(seed: UInt64, totalSteps: Int) {
        var random = SplitMix64(seed: seed)
        parameters = Self.shapes.map { shape in
            let fanIn = Float(shape.count == 2 ? shape[1] : shape[0])
            let bound = 1 / fanIn.squareRoot()
            return (0..<shape.reduce(1, *)).map { _ in (random.uniform() * 2 - 1) * bound }
        }
        exponentialAverage = parameters.map { Array(repeating: 0, count: $0.count) }
        exponentialAverageSquare = exponentialAverage
        dropoutState = random.next()
        self.totalSteps = totalSteps
    }

    /// Linear warm-up, then cosine decay to a tenth.
    var scheduledLearningRate: Float {
        if step < warmupSteps { return learningRate * Float(step + 1) / Float(warmupSteps) }
        let progress = Float(step - warmupSteps) / Float(max(1, totalSteps - warmupSteps))
        return learningRate * (0.1 + 0.9 * 0.5 * (1 + cosf(.pi * min(progress, 1))))
    }

    /// One AdamW step on a batch; returns the mean cross-entropy loss before the step.
    mutating func train(on batch: ArraySlice<Int>, data: DemoData) -> Float {
        let (w1, b1, w2, b2) = (parameters[0], parameters[1], parameters[2], parameters[3])
        var gradients = parameters.map { Array(repeating: Float(0), count: $0.count) }
        var random = SplitMix64(seed: dropoutState)
        var loss: Float = 0
        let scale = 1 / Float(batch.count)
        for sample in batch {
            let x = data.inputs[(sample * DemoData.features)..<((sample + 1) * DemoData.features)]
            var hidden = [Float](repeating: 0, count: Self.hidden)
            var mask = [Float](repeating: 0, count: Self.hidden)
            for unit in 0..<Self.hidden {
                var sum = b1[unit]
                for (feature, value) in x.enumerated() { sum += w1[unit * DemoData.features + feature] * value }
                mask[unit] = sum > 0 && random.uniform() >= dropout ? 1 / (1 - dropout) : 0
                hidden[unit] = sum * mask[unit]
            }
            var logits = [Float](repeating: 0, count: DemoData.classes)
            for out in 0..<DemoData.classes {
                var sum = b2[out]
                for unit in 0..<Self.hidden { sum += w2[out * Self.hidden + unit] * hidden[unit] }
                logits[out] = sum
            }
            let top = logits.max()!
            let exps = logits.map { expf($0 - top) }
            let total = exps.reduce(0, +)
            let label = data.labels[sample]
            loss += (logf(total) - (logits[label] - top)) * scale
            let dLogits = exps.enumerated().map { ($1 / total - ($0 == label ? 1 : 0)) * scale }
            var dHidden = [Float](repeating: 0, count: Self.hidden)
            for out in 0..<DemoData.classes {
                gradients[3][out] += dLogits[out]
                for unit in 0..<Self.hidden {
                    gradients[2][out * Self.hidden + unit] += dLogits[out] * hidden[unit]
                    dHidden[unit] += dLogits[out] * w2[out * Self.hidden + unit]
                }
            }
            for unit in 0..<Self.hidden where mask[unit] != 0 {
                let g = dHidden[unit] * mask[unit]
                gradients[1][unit] += g
                for (feature, value) in x.enumerated() { gradients[0][unit * DemoData.features + feature] += g * value }
            }
        }
        dropoutState = random.next()
        applyAdamW(gradients)
        return loss
    }

    private mutating func applyAdamW(_ gradients: [[Float]]) {
        step += 1
        let rate = scheduledLearningRate
        let correction1 = 1 - powf(betas.0, Float(step))
        let correction2 = 1 - powf(betas.1, Float(step))
        for index in parameters.indices {
            for element in parameters[index].indices {
                let g = gradients[index][element]
                exponentialAverage[index][element] = betas.0 * exponentialAverage[index][element] + (1 - betas.0) * g
                exponentialAverageSquare[index][element] =
                    betas.1 * exponentialAverageSquare[index][element] + (1 - betas.1) * g * g
                let m = exponentialAverage[index][element] / correction1
                let v = exponentialAverageSquare[index][element] / correction2
                parameters[index][element] -= rate * (m / (v.squareRoot() + epsilon) + weightDecay * parameters[index][element])
            }
        }
    }
}
