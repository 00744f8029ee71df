import Checkpointing
import Foundation

/// How long a training loop stalls for a checkpoint: a synchronous save against an
/// asynchronous one, on the bench state (`ckpt bench --saver`).
///
/// Two asynchronous cases: tensors the loop owns as Swift values (the snapshot shares them,
/// nothing is copied) and tensors borrowed from buffers the loop keeps overwriting (the
/// snapshot copies them, bounded by the memory budget).
struct SaverBench {
    struct Result {
        var bytes: Int
        var synchronous: Duration
        var asynchronousOwned: Duration
        var asynchronousBorrowed: Duration
        var backgroundWrite: Duration
    }

    let state: TrainingState
    let folder: String

    func run() throws -> Result {
        let synchronous = try stall(of: state, asynchronous: false, subfolder: "sync")
        let owned = try stall(of: state, asynchronous: true, subfolder: "async-owned")
        let borrowed = try stall(of: borrowing(state), asynchronous: true, subfolder: "async-borrowed")
        return Result(
            bytes: state.tree.tensors.reduce(0) { $0 + $1.tensor.byteCount }, synchronous: synchronous.stall,
            asynchronousOwned: owned.stall, asynchronousBorrowed: borrowed.stall, backgroundWrite: borrowed.writing)
    }

    /// One save through a saver; the statistics say how long the loop waited.
    private func stall(of state: TrainingState, asynchronous: Bool, subfolder: String) throws -> CheckpointSaver.Statistics {
        let saver = try CheckpointSaver(options: .init(
            folder: folder + "/" + subfolder, filename: "ba{batch}.safetensors", saveInterval: "1ba",
            asynchronous: asynchronous, saveOnTermination: false))
        var state = state
        state.timestamp.batch = 0
        try saver.fitStart(state)
        state.timestamp.batch = 1
        try saver.batchEnd(state)
        try saver.waitForPendingSave()
        return try saver.statistics
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

extension SaverBench.Result {
    func text() -> String {
        func ms(_ duration: Duration) -> String { String(format: "%.1f ms", duration.milliseconds) }
        let rows = [
            ["save", "training loop stall", "vs synchronous"],
            ["synchronous", ms(synchronous), "100%"],
            ["asynchronous, owned tensors", ms(asynchronousOwned), percent(asynchronousOwned)],
            ["asynchronous, borrowed buffers", ms(asynchronousBorrowed), percent(asynchronousBorrowed)],
        ]
        return """
            CheckpointSaver on the bench state (\(Units.bytes(bytes)) of tensors); the background write took \(ms(backgroundWrite))
            \(Units.table(rows, rightAligned: [1, 2]))
            """
    }

    func json() -> [String: Any] {
        [
            "tensor_bytes": bytes, "sync_stall_seconds": synchronous.seconds,
            "async_owned_stall_seconds": asynchronousOwned.seconds,
            "async_borrowed_stall_seconds": asynchronousBorrowed.seconds,
            "background_write_seconds": backgroundWrite.seconds,
        ]
    }

    private func percent(_ duration: Duration) -> String {
        String(format: "%.1f%%", duration.seconds / synchronous.seconds * 100)
    }
}
