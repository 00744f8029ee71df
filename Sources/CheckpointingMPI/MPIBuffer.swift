/// Memory that a nonblocking MPI operation reads or writes until it completes.
///
/// Swift arrays lend their storage only for the length of a closure, and a collective abandoned
/// by a timeout may still write into its buffers whenever the missing rank arrives: so every
/// buffer of a collective is one of these, and a group keeps those of an abandoned collective
/// for the rest of the process.
final class MPIBuffer {
    /// The size of the buffer in bytes.
    let count: Int
    private let base: UnsafeMutableRawPointer

    /// `byteCount` bytes, to be written by MPI.
    init(byteCount: Int) {
        count = byteCount
        // At least one byte, so that even an empty buffer has an address to give MPI.
        base = .allocate(byteCount: max(byteCount, 1), alignment: 16)
    }

    /// A copy of `values`.
    convenience init<T: BitwiseCopyable>(copying values: [T]) {
        self.init(byteCount: values.count * MemoryLayout<T>.stride)
        values.withUnsafeBytes { base.copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(base), byteCount: $0.count) }
    }

    deinit { base.deallocate() }

    /// The address of byte `offset`, for MPI.
    func address(at offset: Int = 0) -> UnsafeMutableRawPointer { base + offset }

    /// The buffer read as values of `T` (after MPI wrote them).
    func values<T: BitwiseCopyable>(of type: T.Type) -> [T] {
        (0..<count / MemoryLayout<T>.stride).map { base.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.stride, as: T.self) }
    }

    /// A view of `count` bytes from `offset` (after MPI wrote them).
    func bytes(from offset: Int, count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + offset, count: count)
    }
}
