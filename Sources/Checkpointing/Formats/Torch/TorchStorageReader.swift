/// One storage record (`data/<key>`) of a torch file: raw bytes in the mapping, shared by every
/// tensor that views it.
final class TorchStorage {
    let key: String
    let bytes: UnsafeRawBufferPointer
    /// The dtype of a typed storage (`torch.FloatStorage`); `nil` for `UntypedStorage`, whose
    /// tensors say their dtype themselves (`_rebuild_tensor_v3`).
    let dtype: DType?

    init(key: String, bytes: UnsafeRawBufferPointer, dtype: DType?) {
        self.key = key
        self.bytes = bytes
        self.dtype = dtype
    }
}

/// Rebuilds tensors from the storages of a torch file: storage, offset, size and stride, as
/// `torch._utils._rebuild_tensor` does.
///
/// A contiguous view in the file's byte order, aligned for its dtype, is a slice of the
/// mapping (no copy); any other view is gathered into memory the tensor owns, within the
/// limit on materialized bytes: at once, or when the tensor is first used if the reader
/// defers copies (a DCP folder, whose archives lie at any offset, so that opening it stays a
/// read of headers).
final class TorchStorageReader {
    let archive: ZipArchive
    let bigEndian: Bool
    private let deferringCopies: Bool
    private var storages: [String: TorchStorage] = [:]
    private var materializedBudget: Int

    init(archive: ZipArchive, bigEndian: Bool, limits: TorchLimits, deferringCopies: Bool = false) {
        self.archive = archive
        self.bigEndian = bigEndian
        self.deferringCopies = deferringCopies
        let file = archive.file.bytes.count
        let (scaled, overflow) = file.multipliedReportingOverflow(by: limits.maximumMaterializedBytesPerFileByte)
        materializedBudget = overflow ? Int.max : scaled &+ limits.maximumMaterializedBytesBase
    }

    /// The storage a persistent id names: `("storage", class, key, location, numel)`.
    ///
    /// The same key always gives the same storage, so views of it share it.
    func storage(key: String, dtype: DType?, className: String, numel: Int) throws(CheckpointError) -> TorchStorage {
        let elementSize = dtype?.byteSize ?? 1
        if let known = storages[key] {
            guard known.dtype == dtype, known.bytes.count == numel &* elementSize else {
                throw CheckpointError(
                    .malformed, "storage \"\(key)\" is declared twice with different types or sizes")
            }
            return known
        }
        guard let entry = archive.entry("data/\(key)") else {
            throw CheckpointError(
                .malformed, "the pickle refers to storage \"\(key)\" but the archive has no record data/\(key)")
        }
        let (expected, overflow) = numel.multipliedReportingOverflow(by: elementSize)
        guard numel >= 0, !overflow, expected == entry.size else {
            throw CheckpointError(
                .malformed,
                "storage \"\(key)\" is declared as \(numel) elements of \(className) (\(numel) × \(elementSize) bytes) but its record holds \(entry.size) bytes",
                offset: entry.dataOffset)
        }
        let storage = TorchStorage(key: key, bytes: archive.bytes(of: entry), dtype: dtype)
        storages[key] = storage
        return storage
    }

    /// The tensor `storage[offset]` viewed with `size` and `stride` (in elements of `dtype`).
    func tensor(
        storage: TorchStorage, dtype: DType, offset: Int, size: [Int], stride: [Int]
    ) throws(CheckpointError) -> Tensor {
        guard size.count == stride.count else {
            throw CheckpointError(.malformed, "a tensor has \(size.count) sizes but \(stride.count) strides")
        }
        guard offset >= 0, size.allSatisfy({ $0 >= 0 }), stride.allSatisfy({ $0 >= 0 }) else {
            throw CheckpointError(
                .malformed, "a tensor of storage \"\(storage.key)\" has a negative offset, size or stride (offset \(offset), size \(size), stride \(stride))")
        }
        let elementSize = dtype.byteSize
        let byteCount: Int
        do {
            byteCount = try Tensor.byteCount(dtype: dtype, shape: size)
        } catch {
            throw CheckpointError(.malformed, "a tensor of storage \"\(storage.key)\" has an impossible shape \(size)")
        }
        if byteCount == 0 {
            return Tensor(dtype: dtype, shape: size, buffer: TensorBuffer.allocate(byteCount: 0))
        }
        // The furthest element the view reaches must lie inside the storage.
        var last = offset
        for (dimension, step) in zip(size, stride) {
            let (reach, overflow1) = (dimension - 1).multipliedReportingOverflow(by: step)
            let (sum, overflow2) = last.addingReportingOverflow(reach)
            guard !overflow1, !overflow2 else {
                throw CheckpointError(.malformed, "a tensor of storage \"\(storage.key)\" has strides too large to address")
            }
            last = sum
        }
        let (end, overflow) = (last + 1).multipliedReportingOverflow(by: elementSize)
        guard !overflow, end <= storage.bytes.count else {
            throw CheckpointError(
                .malformed,
                "a \(dtype.rawValue) tensor of shape \(size) at offset \(offset) with strides \(stride) reaches past the end of storage \"\(storage.key)\" (\(storage.bytes.count) bytes)")
        }
        var contiguous = true
        var expected = 1
        for (dimension, step) in zip(size, stride).reversed() where dimension != 1 {
            if step != expected { contiguous = false }
            expected *= dimension
        }
        let start = offset * elementSize
        let swaps = bigEndian && Self.swapUnit(dtype) > 1
        if contiguous && !swaps, Int(bitPattern: storage.bytes.baseAddress! + start) % elementSize == 0 {
            let slice = UnsafeRawBufferPointer(rebasing: storage.bytes[start..<(start + byteCount)])
            return Tensor(dtype: dtype, shape: size, buffer: TensorBuffer(mapped: slice, mapping: archive.file))
        }
        guard byteCount <= materializedBudget else {
            throw CheckpointError(
                .malformed,
                "a \(dtype.rawValue) view of shape \(size) of storage \"\(storage.key)\" would need \(byteCount) bytes of memory, beyond the limit for this file; a file this small cannot justify it")
        }
        materializedBudget -= byteCount
        let unit = swaps ? Self.swapUnit(dtype) : 1
        if deferringCopies, let base = storage.bytes.baseAddress {
            let address = UInt(bitPattern: base), mapping = archive.file
            let buffer = TensorBuffer(deferredByteCount: byteCount) { destination in
                withExtendedLifetime(mapping) {
                    guard let source = UnsafeRawPointer(bitPattern: address), let target = destination.baseAddress else { return }
                    Self.gather(from: source, offset: offset, size: size, stride: stride, elementSize: elementSize, into: target)
                    Self.swapBytes(target, count: byteCount, unit: unit)
                }
            }
            return Tensor(dtype: dtype, shape: size, buffer: buffer)
        }
        let buffer = TensorBuffer.allocate(byteCount: byteCount)
        let destination = UnsafeMutableRawPointer(mutating: buffer.bytes.baseAddress!)
        Self.gather(
            from: storage.bytes.baseAddress!, offset: offset, size: size, stride: stride, elementSize: elementSize,
            into: destination)
        Self.swapBytes(destination, count: byteCount, unit: unit)
        return Tensor(dtype: dtype, shape: size, buffer: buffer)
    }

    /// Charges `bytes` of memory allocated for a value the mapping cannot hold (a numpy array).
    func chargeMaterialized(_ bytes: Int, what: String) throws(CheckpointError) {
        guard bytes <= materializedBudget else {
            throw CheckpointError(.malformed, "\(what) would need \(bytes) bytes of memory, beyond the limit for this file")
        }
        materializedBudget -= bytes
    }

    /// Copies the elements of a strided view into row-major order.
    static func gather(
        from base: UnsafeRawPointer, offset: Int, size: [Int], stride: [Int], elementSize: Int,
        into destination: UnsafeMutableRawPointer
    ) {
        let rank = size.count
        guard rank > 0 else {
            destination.copyMemory(from: base + offset * elementSize, byteCount: elementSize)
            return
        }
        let inner = size[rank - 1]
        let innerStride = stride[rank - 1]
        var index = [Int](repeating: 0, count: rank)
        var written = 0
        while true {
            var position = offset
            for dimension in 0..<(rank - 1) { position += index[dimension] * stride[dimension] }
            if innerStride == 1 {
                destination.advanced(by: written).copyMemory(
                    from: base + position * elementSize, byteCount: inner * elementSize)
                written += inner * elementSize
            } else {
                for element in 0..<inner {
                    destination.advanced(by: written).copyMemory(
                        from: base + (position + element * innerStride) * elementSize, byteCount: elementSize)
                    written += elementSize
                }
            }
            // Advance the outer index like an odometer.
            var dimension = rank - 2
            while dimension >= 0 {
                index[dimension] += 1
                if index[dimension] < size[dimension] { break }
                index[dimension] = 0
                dimension -= 1
            }
            if dimension < 0 { return }
        }
    }

    /// The unit whose bytes a big-endian file stores reversed (complex numbers: each half).
    static func swapUnit(_ dtype: DType) -> Int { dtype == .complex64 ? 4 : dtype.byteSize }

    static func swapBytes(_ bytes: UnsafeMutableRawPointer, count: Int, unit: Int) {
        guard unit > 1 else { return }
        let raw = bytes.assumingMemoryBound(to: UInt8.self)
        var start = 0
        while start + unit <= count {
            var low = start, high = start + unit - 1
            while low < high {
                let byte = raw[low]
                raw[low] = raw[high]
                raw[high] = byte
                low += 1
                high -= 1
            }
            start += unit
        }
    }
}
