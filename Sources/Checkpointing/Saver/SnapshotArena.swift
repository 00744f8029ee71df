#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Memory for the snapshots of asynchronous saves, prepared ahead and reused from one save to
/// the next.
///
/// A snapshot copies the tensors the training loop lends (borrowed buffers it will overwrite).
/// Copying into fresh memory costs a page fault per page: measured here, 1.5 GB copied into
/// fresh memory in 0.65-1.7 s, into memory already faulted in at 0.1-0.3 s. So the saver has
/// the arena allocate and fault in the buffers in the background when training starts
/// (``prepare(_:)``), before the first save needs them, and the arena keeps each snapshot's
/// buffers and copies into them when the sizes match, which they do from one save to the next
/// of the same run: every save stalls for a copy only, made on every core.
///
/// `@unchecked Sendable`: the buffers are written only by ``prepare(_:)`` and ``snapshot(_:)``,
/// which the saver runs one after the other: preparation is background work that a save waits
/// for, as it waits for the previous background save (the only reader of a snapshot).
final class SnapshotArena: @unchecked Sendable {
    private var buffers: [UnsafeMutableRawBufferPointer] = []

    /// Pieces of this many bytes are the unit of the parallel copy.
    private static let copyPiece = 4 << 20

    /// The bytes of `tree`'s borrowed tensors, in the order ``snapshot(_:)`` copies them.
    static func borrowedByteCounts(_ tree: StateValue) -> [Int] {
        var counts: [Int] = []
        func walk(_ value: StateValue) {
            switch value {
            case .tensor(let tensor) where tensor.storage == .borrowed: counts.append(tensor.byteCount)
            case .dict(let dict): for (_, element) in dict { walk(element) }
            case .list(let elements), .tuple(let elements): for element in elements { walk(element) }
            default: break
            }
        }
        walk(tree)
        return counts
    }

    /// Allocates the buffers of a snapshot of borrowed tensors of `byteCounts` bytes (see
    /// ``borrowedByteCounts(_:)``) and touches every page, so the snapshot's copy faults none in.
    func prepare(_ byteCounts: [Int]) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        for (index, count) in byteCounts.enumerated() {
            let buffer = buffer(at: index, byteCount: count)
            guard let base = buffer.baseAddress else { continue }
            for offset in stride(from: 0, to: buffer.count, by: page) { base.storeBytes(of: 0, toByteOffset: offset, as: UInt8.self) }
        }
        trim(to: byteCounts.count)
    }

    /// A copy of `tree` in which every borrowed tensor lives in the arena's memory; owned and
    /// mapped tensors are immutable and are shared, not copied.
    func snapshot(_ tree: StateValue) throws(CheckpointError) -> StateValue {
        var next = 0
        var copies: [(from: UnsafeRawBufferPointer, to: UnsafeMutableRawPointer)] = []
        func copy(_ value: StateValue) throws(CheckpointError) -> StateValue {
            switch value {
            case .tensor(let tensor) where tensor.storage == .borrowed:
                let buffer = buffer(at: next, byteCount: tensor.byteCount)
                next += 1
                // Borrowed bytes stay valid until the save returns: the copy runs below.
                tensor.withUnsafeBytes { copies.append(($0, buffer.baseAddress!)) }
                return .tensor(try Tensor(
                    borrowing: UnsafeRawBufferPointer(rebasing: buffer[0..<tensor.byteCount]), dtype: tensor.dtype,
                    shape: tensor.shape, owner: self))
            case .dict(let dict):
                var result = StateDict()
                for (key, element) in dict { result[key] = try copy(element) }
                return .dict(result)
            case .list(let elements):
                var result: [StateValue] = []
                for element in elements { result.append(try copy(element)) }
                return .list(result)
            case .tuple(let elements):
                var result: [StateValue] = []
                for element in elements { result.append(try copy(element)) }
                return .tuple(result)
            default:
                return value
            }
        }
        let result = try copy(tree)
        Self.copyInParallel(copies)
        trim(to: next)
        return result
    }

    /// Copies every source to its destination in pieces spread over every core.
    private static func copyInParallel(_ copies: [(from: UnsafeRawBufferPointer, to: UnsafeMutableRawPointer)]) {
        var pieces: [(from: UnsafeRawPointer, to: UnsafeMutableRawPointer, count: Int)] = []
        for copy in copies {
            guard let source = copy.from.baseAddress else { continue }
            for offset in stride(from: 0, to: copy.from.count, by: copyPiece) {
                pieces.append((source + offset, copy.to + offset, min(copyPiece, copy.from.count - offset)))
            }
        }
        let next = Atomic<Int>(0)
        ParallelChunks.run(workers: min(CompressionOptions.defaultThreads, pieces.count)) { _ in
            while true {
                let number = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard number < pieces.count else { return }
                let piece = pieces[number]
                piece.to.copyMemory(from: piece.from, byteCount: piece.count)
            }
        }
    }

    /// Buffers past the first `count` belong to a larger earlier state: lets them go.
    private func trim(to count: Int) {
        while buffers.count > count { buffers.removeLast().deallocate() }
    }

    private func buffer(at index: Int, byteCount: Int) -> UnsafeMutableRawBufferPointer {
        if index < buffers.count {
            if buffers[index].count == max(byteCount, 1) { return buffers[index] }
            buffers[index].deallocate()
            buffers[index] = .allocate(byteCount: max(byteCount, 1), alignment: 64)
        } else {
            buffers.append(.allocate(byteCount: max(byteCount, 1), alignment: 64))
        }
        return buffers[index]
    }

    deinit {
        for buffer in buffers { buffer.deallocate() }
    }
}
