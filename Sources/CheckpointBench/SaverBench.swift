public import Checkpointing
import CheckpointToolSupport
import Foundation

/// How long a training loop stalls for a checkpoint: a synchronous save against an
/// asynchronous one, on the bench state (`ckpt bench saver`).
///
/// Two asynchronous cases: tensors the loop owns as Swift values (the snapshot shares them,
/// nothing is copied) and tensors borrowed from buffers the loop keeps overwriting (the
/// snapshot copies them, bounded by the memory budget).
public struct SaverBench {
    struct Result {
        var bytes: Int
        var synchronous: Duration
        var asynchronousOwned: Duration
        /// The first save of a run with borrowed buffers, into the snapshot memory prepared since `fitStart`.
        var asynchronousBorrowedFirst: Duration
        /// Later saves: the snapshot reuses the memory of the one before.
        var asynchronousBorrowed: Duration
        var backgroundWrite: Duration
        /// How long the background preparation of the snapshot memory (borrowed buffers) ran
        /// after `fitStart`, while a training loop would run its first steps.
        var snapshotPreparation: Duration
    }

    let state: TrainingState
    let folder: String

    /// The benchmark, ready to ``run()``.
    public init(state: TrainingState, folder: String) {
        self.state = state
        self.folder = folder
    }

    /// Runs every measurement, removing its files as it goes.
    public func run() throws -> some BenchReport {
        let synchronous = try stalls(of: state, asynchronous: false, subfolder: "sync")
        let owned = try stalls(of: state, asynchronous: true, subfolder: "async-owned")
        let borrowed = try stalls(of: borrowing(state), asynchronous: true, subfolder: "async-borrowed")
        return Result(
            bytes: state.tree.tensors.reduce(0) { $0 + $1.tensor.byteCount }, synchronous: synchronous.second,
            asynchronousOwned: owned.second, asynchronousBorrowedFirst: borrowed.first,
            asynchronousBorrowed: borrowed.second, backgroundWrite: borrowed.writing, snapshotPreparation: borrowed.preparation)
    }

    /// Two saves through one saver (a run's first and a later one): how long the loop waited
    /// for each, and how long the last write took.
    private func stalls(
        of state: TrainingState, asynchronous: Bool, subfolder: String
    ) throws -> (first: Duration, second: Duration, writing: Duration, preparation: Duration) {
        let saver = try CheckpointSaver(options: .init(
            folder: folder + "/" + subfolder, filename: "ba{batch}.safetensors", saveInterval: "1ba",
            checkpointsToKeep: 1, asynchronous: asynchronous, saveOnTermination: false))
        var state = state
        state.timestamp.batch = 0
        let start = ContinuousClock.now
        try saver.fitStart(state)
        // The first steps of training run while the saver prepares in the background.
        try saver.waitForPendingSave()
        let preparation = ContinuousClock.now - start
        var stalls: [Duration] = []
        var writing = Duration.zero
        for batch in 1...2 {
            // The loop's next step runs while the previous save writes; the next save then waits
            // for it, so let it finish first: the stall measured is the snapshot alone.
            try saver.waitForPendingSave()
            let before = try saver.statistics
            state.timestamp.batch = batch
            try saver.batchEnd(state)
            stalls.append(saver.statisticsWithoutWaiting.stall - before.stall)
            try saver.waitForPendingSave()
            writing = try saver.statistics.writing - before.writing
        }
        return (stalls[0], stalls[1], writing, preparation)
    }

    /// The same state with every tensor borrowed from memory the "trainer" owns.
    private func borrowing(_ state: TrainingState) throws -> TrainingState {
        func borrow(_ value: StateValue) throws -> StateValue {
            switch value {
            case .tensor(let tensor):
                let buffer = TrainerBuffer(tensor)
                return .tensor(try Tensor(
                    borrowing: UnsafeRawBufferPointer(buffer.bytes), dtype: tensor.dtype, shape: tensor.shape, owner: buffer))
            case .dict(let dict): return .dict(try dict.mapValues(borrow))
            case .list(let elements): return .list(try elements.map(borrow))
            case .tuple(let elements): return .tuple(try elements.map(borrow))
            default: return value
            }
        }
        return try TrainingState(tree: borrow(state.tree))
    }

    /// A mutable buffer a trainer would update in place.
    private final class TrainerBuffer {
        let bytes: UnsafeMutableRawBufferPointer

        init(_ tensor: Tensor) {
            bytes = .allocate(byteCount: max(tensor.byteCount, 1), alignment: 64)
            tensor.withUnsafeBytes { bytes.copyMemory(from: $0) }
        }

        deinit { bytes.deallocate() }
    }
}

extension SaverBench.Result: BenchReport {
    func text() -> String {
        func ms(_ duration: Duration) -> String { String(format: "%.1f ms", duration.milliseconds) }
        let rows = [
            ["save", "training loop stall", "vs synchronous"],
            ["synchronous", ms(synchronous), "100%"],
            ["asynchronous, owned tensors", ms(asynchronousOwned), percent(asynchronousOwned)],
            ["asynchronous, borrowed buffers, first save", ms(asynchronousBorrowedFirst), percent(asynchronousBorrowedFirst)],
            ["asynchronous, borrowed buffers, later saves", ms(asynchronousBorrowed), percent(asynchronousBorrowed)],
        ]
        return """
            CheckpointSaver on the bench state (\(Units.bytes(bytes)) of tensors), a run's second save unless said; the background write took \(ms(backgroundWrite))
            borrowed buffers: fitStart and the snapshot memory's preparation in the background (before the first save) took \(ms(snapshotPreparation))
            \(Units.table(rows, rightAligned: [1, 2]))
            """
    }

    func json() -> [String: Any] {
        [
            "tensor_bytes": bytes, "sync_stall_seconds": synchronous.seconds,
            "async_owned_stall_seconds": asynchronousOwned.seconds,
            "async_borrowed_first_stall_seconds": asynchronousBorrowedFirst.seconds,
            "async_borrowed_stall_seconds": asynchronousBorrowed.seconds,
            "background_write_seconds": backgroundWrite.seconds,
            "snapshot_preparation_seconds": snapshotPreparation.seconds,
        ]
    }

    private func percent(_ duration: Duration) -> String {
        String(format: "%.1f%%", duration.seconds / synchronous.seconds * 100)
    }
}
