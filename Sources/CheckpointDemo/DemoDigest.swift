import Checkpointing
import Crypto
import Foundation

extension DemoRun {
    /// A SHA-256 of everything training depends on, with the epoch ended when the run stands
    /// at its last batch (as ``settle()`` does): the weights, AdamW moments and step, the
    /// dropout generator, the loader's position and the timestamp's counters; not wall-clock
    /// time. Two runs at the same point have the same digest only when every bit of that
    /// state is the same, so comparing digests checks a resume without storing states.
    public var digest: String {
        get throws {
            var settled = self
            try settled.settle()
            var hash = SHA256()
            func add(_ values: [Float]) { values.withUnsafeBytes { hash.update(bufferPointer: $0) } }
            func add(_ value: Int) { withUnsafeBytes(of: Int64(value).littleEndian) { hash.update(bufferPointer: $0) } }
            for index in settled.model.parameters.indices {
                add(settled.model.parameters[index])
                add(settled.model.exponentialAverage[index])
                add(settled.model.exponentialAverageSquare[index])
            }
            add(settled.model.step)
            add(Int(bitPattern: UInt(settled.model.dropoutState)))
            for key in settled.loader.state.keys.sorted() { add(settled.loader.state[key] ?? 0) }
            let time = settled.timestamp
            for counter in [time.epoch, time.batch, time.sample, time.batchInEpoch, time.sampleInEpoch] { add(counter) }
            return hash.finalize().map { String(format: "%02x", $0) }.joined()
        }
    }
}
