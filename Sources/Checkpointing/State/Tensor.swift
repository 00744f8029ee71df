#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A tensor: a ``DType``, a shape, and little-endian row-major bytes.
///
/// A tensor is an immutable value. Its bytes live in one of three places (``Storage``):
/// memory it owns, memory it borrows from the caller, or a memory-mapped checkpoint file.
/// Reading a tensor never copies its bytes: ``withUnsafeBytes(_:)`` hands out the bytes where
/// they are, and saving writes them straight from there to the file.
public struct Tensor: Sendable, Equatable, CustomStringConvertible {
    /// Where a tensor's bytes live.
    public enum Storage: Sendable, Equatable {
        /// Memory the tensor allocated and frees when the last copy of it goes away.
        case owned
        /// Memory the caller lent; the caller keeps it alive and unchanged.
        case borrowed
        /// Pages of a checkpoint file mapped read-only; read from disk when first touched.
        case mapped
    }

    /// The element type.
    public let dtype: DType
    /// The size of each dimension; `[]` is a 0-dim scalar, any `0` makes the tensor empty.
    public let shape: [Int]
    let buffer: TensorBuffer

    /// Creates a tensor that owns a copy of `bytes`.
    ///
    /// - Throws: ``CheckpointError`` (`.invalidArgument`) when the shape has a negative
    ///   dimension or `bytes` does not hold exactly `shape.product * dtype.byteSize` bytes.
    public init(dtype: DType, shape: [Int], bytes: some Collection<UInt8>) throws(CheckpointError) {
        let count = try Tensor.byteCount(dtype: dtype, shape: shape)
        guard bytes.count == count else {
            throw CheckpointError(
                .invalidArgument,
                "a \(dtype.rawValue) tensor of shape \(shape) needs \(count) bytes, got \(bytes.count)")
        }
        let buffer = TensorBuffer.allocate(byteCount: count, zeroed: false)
        let destination = UnsafeMutableRawBufferPointer(mutating: buffer.bytes)
        let copied: Void? = bytes.withContiguousStorageIfAvailable { source in
            destination.copyMemory(from: UnsafeRawBufferPointer(source))
        }
        if copied == nil { _ = destination.initializeMemory(as: UInt8.self, from: bytes) }
        self.init(dtype: dtype, shape: shape, buffer: buffer)
    }

    /// Creates a tensor that owns new memory, which `body` fills exactly once.
    ///
    /// This is the zero-copy way to build a tensor: write the elements straight into the
    /// buffer. The buffer starts zeroed.
    public init(
        dtype: DType, shape: [Int],
        initializingBytesWith body: (UnsafeMutableRawBufferPointer) throws -> Void
    ) throws {
        let count = try Tensor.byteCount(dtype: dtype, shape: shape)
        let buffer = TensorBuffer.allocate(byteCount: count)
        try body(UnsafeMutableRawBufferPointer(mutating: buffer.bytes))
        self.init(dtype: dtype, shape: shape, buffer: buffer)
    }

    /// Creates a tensor of scalars, owning a copy of them.
    public init<Scalar: TensorScalar>(shape: [Int], scalars: [Scalar]) throws(CheckpointError) {
        let count = try Tensor.byteCount(dtype: Scalar.dtype, shape: shape)
        guard scalars.count * MemoryLayout<Scalar>.stride == count else {
            throw CheckpointError(
                .invalidArgument,
                "a tensor of shape \(shape) holds \(count / Scalar.dtype.byteSize) elements, got \(scalars.count)")
        }
        let buffer = TensorBuffer.allocate(byteCount: count, zeroed: false)
        scalars.withUnsafeBytes { source in
            UnsafeMutableRawBufferPointer(mutating: buffer.bytes).copyMemory(from: source)
        }
        self.init(dtype: Scalar.dtype, shape: shape, buffer: buffer)
    }

    /// Creates a tensor over memory the caller owns, without copying it.
    ///
    /// The caller must keep the memory alive and unchanged for as long as the tensor or any
    /// copy of it is in use (for a save, until `saveCheckpoint` returns). Pass `owner` to have
    /// the tensor keep an object alive that owns the memory.
    public init(
        borrowing bytes: UnsafeRawBufferPointer, dtype: DType, shape: [Int], owner: AnyObject? = nil
    ) throws(CheckpointError) {
        let count = try Tensor.byteCount(dtype: dtype, shape: shape)
        guard bytes.count == count else {
            throw CheckpointError(
                .invalidArgument,
                "a \(dtype.rawValue) tensor of shape \(shape) needs \(count) bytes, got \(bytes.count)")
        }
        self.init(dtype: dtype, shape: shape, buffer: TensorBuffer(borrowing: bytes, owner: owner))
    }

    init(dtype: DType, shape: [Int], buffer: TensorBuffer) {
        self.dtype = dtype
        self.shape = shape
        self.buffer = buffer
    }

    /// Where the bytes live.
    public var storage: Storage { buffer.storage }
    /// The number of elements (1 for a 0-dim tensor).
    public var elementCount: Int { shape.reduce(1, *) }
    /// The number of bytes.
    public var byteCount: Int { buffer.byteCount }

    /// Calls `body` with the tensor's bytes, where they are.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        defer { withExtendedLifetime(buffer) {} }
        return try body(buffer.bytes)
    }

    /// The XXH3-64 of the tensor's bytes: the checksum the native format records for it.
    public var checksum: UInt64 { withUnsafeBytes(TensorChecksum.of) }

    /// The bytes as an array (a copy).
    public var bytes: [UInt8] { Array(buffer.bytes) }

    /// The elements as an array of `Scalar` (a copy).
    ///
    /// - Throws: ``CheckpointError`` (`.invalidArgument`) when `Scalar` does not match ``dtype``.
    public func scalars<Scalar: TensorScalar>(as type: Scalar.Type = Scalar.self) throws(CheckpointError) -> [Scalar] {
        guard Scalar.dtype == dtype else {
            throw CheckpointError(
                .invalidArgument, "cannot read a \(dtype.rawValue) tensor as \(Scalar.self)")
        }
        return withUnsafeBytes { raw in
            [Scalar](unsafeUninitializedCapacity: elementCount) { destination, initialized in
                UnsafeMutableRawBufferPointer(destination).copyMemory(from: raw)
                initialized = elementCount
            }
        }
    }

    /// A tensor with the same value that owns its bytes: a copy unless it owns them already.
    ///
    /// Use it to take a snapshot that later changes to borrowed memory cannot reach.
    public func owningCopy() -> Tensor {
        if storage == .owned { return self }
        let buffer = TensorBuffer.allocate(byteCount: byteCount, zeroed: false)
        withUnsafeBytes { UnsafeMutableRawBufferPointer(mutating: buffer.bytes).copyMemory(from: $0) }
        return Tensor(dtype: dtype, shape: shape, buffer: buffer)
    }

    /// Bitwise equality of dtype, shape and bytes (so NaNs with equal bits are equal).
    public static func == (lhs: Tensor, rhs: Tensor) -> Bool {
        guard lhs.dtype == rhs.dtype, lhs.shape == rhs.shape else { return false }
        return lhs.withUnsafeBytes { a in
            rhs.withUnsafeBytes { b in
                a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
            }
        }
    }

    public var description: String { "Tensor(\(dtype.rawValue), \(shape))" }

    /// The byte size of a tensor, with every dimension and the product checked.
    static func byteCount(dtype: DType, shape: [Int]) throws(CheckpointError) -> Int {
        var count = dtype.byteSize
        for dimension in shape {
            guard dimension >= 0 else {
                throw CheckpointError(.invalidArgument, "tensor shape \(shape) has a negative dimension")
            }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow else {
                throw CheckpointError(.invalidArgument, "tensor shape \(shape) is too large to address")
            }
            count = product
        }
        return count
    }
}

/// A Swift type whose values can be the elements of a ``Tensor``.
public protocol TensorScalar: BitwiseCopyable {
    /// The tensor dtype whose elements have this type's layout.
    static var dtype: DType { get }
}

extension Bool: TensorScalar { public static var dtype: DType { .bool } }
extension UInt8: TensorScalar { public static var dtype: DType { .uint8 } }
extension Int8: TensorScalar { public static var dtype: DType { .int8 } }
extension Int16: TensorScalar { public static var dtype: DType { .int16 } }
extension UInt16: TensorScalar { public static var dtype: DType { .uint16 } }
extension Int32: TensorScalar { public static var dtype: DType { .int32 } }
extension UInt32: TensorScalar { public static var dtype: DType { .uint32 } }
extension Int64: TensorScalar { public static var dtype: DType { .int64 } }
extension UInt64: TensorScalar { public static var dtype: DType { .uint64 } }
extension Float: TensorScalar { public static var dtype: DType { .float32 } }
extension Double: TensorScalar { public static var dtype: DType { .float64 } }

/// The memory behind a tensor.
///
/// `@unchecked Sendable`: the bytes are never written after the initialiser that fills them
/// returns (or, in a mapping with ``MappedFile/lazyContents``, after they are first decoded,
/// which ``bytes`` waits for; or, for deferred bytes, after the fill that runs once under a
/// lock), so sharing them across threads is safe; owned memory is freed in `deinit`, and a
/// mapping is kept alive by `owner`.
final class TensorBuffer: @unchecked Sendable {
    private let storedBytes: UnsafeRawBufferPointer
    let storage: Tensor.Storage
    private let owner: AnyObject?
    /// Set when the bytes are in a mapping that decodes them on first read.
    private let lazy: LazyBytes?
    /// Set when the bytes are made on first use (then `storedBytes` is empty).
    private let deferred: DeferredBytes?

    private init(bytes: UnsafeRawBufferPointer, storage: Tensor.Storage, owner: AnyObject?, lazy: LazyBytes? = nil) {
        storedBytes = bytes
        self.storage = storage
        self.owner = owner
        self.lazy = lazy
        deferred = nil
    }

    /// Bytes that `fill` writes the first time they are used, into memory the buffer owns.
    ///
    /// What a checkpoint folder assembles from several pieces (or copies to align it) is made
    /// this way, so opening the checkpoint reads none of it. `fill` must not fail: everything it
    /// reads was checked before the buffer was made.
    init(deferredByteCount byteCount: Int, fill: @escaping @Sendable (UnsafeMutableRawBufferPointer) -> Void) {
        storedBytes = UnsafeRawBufferPointer(start: nil, count: 0)
        storage = .owned
        owner = nil
        lazy = nil
        deferred = DeferredBytes(count: byteCount, fill: fill)
    }

    /// The bytes, decoded first if they are a float-split stream's and not decoded yet (a
    /// chunk that fails to decode reads as zeros; ``CheckpointFile/decode(tensorsWhere:)``
    /// and every load report the failure), or made first if they are deferred.
    var bytes: UnsafeRawBufferPointer {
        if let deferred { return deferred.bytes }
        lazy?.prepare(storedBytes)
        return storedBytes
    }

    /// The size, without decoding or making anything.
    var byteCount: Int { deferred?.count ?? storedBytes.count }

    /// The bytes as they are, whether or not they are decoded yet, with what decodes them.
    var encodedView: (bytes: UnsafeRawBufferPointer, contents: any LazyContents)? {
        lazy.map { (storedBytes, $0.contents) }
    }

    /// Memory aligned for every dtype, zeroed unless the caller overwrites all of it at once;
    /// large enough to hand out a valid pointer at size 0.
    static func allocate(byteCount: Int, zeroed: Bool = true) -> TensorBuffer {
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        if zeroed { raw.initializeMemory(as: UInt8.self, repeating: 0) }
        return TensorBuffer(
            bytes: UnsafeRawBufferPointer(rebasing: raw[0..<byteCount]), storage: .owned, owner: nil)
    }

    convenience init(borrowing bytes: UnsafeRawBufferPointer, owner: AnyObject?) {
        self.init(bytes: bytes, storage: .borrowed, owner: owner)
    }

    convenience init(mapped bytes: UnsafeRawBufferPointer, mapping: MappedFile) {
        self.init(bytes: bytes, storage: .mapped, owner: mapping, lazy: mapping.lazyContents.map(LazyBytes.init))
    }

    deinit {
        if deferred == nil, storage == .owned, let base = storedBytes.baseAddress {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }
}

/// Bytes made once, on first use, by a fill that cannot fail; the fill (and whatever it holds,
/// such as the mappings it copies from) is released once it has run.
private final class DeferredBytes: Sendable {
    private enum State {
        case pending(@Sendable (UnsafeMutableRawBufferPointer) -> Void)
        case ready(UnsafeMutableRawBufferPointer)
    }

    let count: Int
    private let state: Mutex<State>

    init(count: Int, fill: @escaping @Sendable (UnsafeMutableRawBufferPointer) -> Void) {
        self.count = count
        state = Mutex(.pending(fill))
    }

    var bytes: UnsafeRawBufferPointer {
        let count = count
        let made = state.withLock { state -> UInt in
            switch state {
            case .ready(let bytes):
                return UInt(bitPattern: bytes.baseAddress)
            case .pending(let fill):
                let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 64)
                let used = UnsafeMutableRawBufferPointer(rebasing: bytes[0..<count])
                fill(used)
                state = .ready(used)
                return UInt(bitPattern: used.baseAddress)
            }
        }
        return UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: made), count: count)
    }

    deinit {
        state.withLock { state in
            if case .ready(let bytes) = state { bytes.baseAddress?.deallocate() }
        }
    }
}

/// The decode-on-first-read state of one tensor's bytes.
final class LazyBytes: Sendable {
    let contents: any LazyContents
    private let ready = Atomic<Bool>(false)

    init(_ contents: any LazyContents) { self.contents = contents }

    func prepare(_ bytes: UnsafeRawBufferPointer) {
        guard !ready.load(ordering: .acquiring) else { return }
        if contents.prepare(bytes) { ready.store(true, ordering: .releasing) }
    }
}
