#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the archives of a DCP checkpoint: each data file is mapped once, when first needed,
/// and each archive is read in place with the torch reader (its zip directory and pickle;
/// tensors stay in the mapping).
///
/// A DCP writer places archives back to back at any offset, so a tensor's bytes are aligned
/// for its dtype only by chance; a misaligned one is copied, at once or, with
/// `deferringCopies`, when first used.
final class DCPReader {
    let checkpoint: DistributedCheckpoint
    private let deferringCopies: Bool
    private var mappings: [String: MappedFile] = [:]

    /// An archive read: what it holds, and the check of its records' CRC-32s.
    struct Item<Value> {
        var value: Value
        var verifyRecords: @Sendable () throws(CheckpointError) -> Void
    }

    init(_ checkpoint: DistributedCheckpoint, deferringCopies: Bool) {
        self.checkpoint = checkpoint
        self.deferringCopies = deferringCopies
    }

    private var metadata: DCPMetadata { checkpoint.metadata }

    /// The data files mapped so far.
    var mappedFiles: [MappedFile] { Array(mappings.values) }

    /// Runs `body`, which reads the archives at `locations`, after asking the kernel for the
    /// pages that reading them touches (each archive's first and last pages: its first records
    /// and its zip directory) all at once, without read-around.
    ///
    /// Read one by one, each archive costs a few synchronous disk reads, and the default
    /// read-around fetches 128 KiB for each: opening a cold 1.5 GB DCP folder of 584 archives
    /// took 1.7 s that way. Queued together, the reads overlap.
    func prefetchingHeaders<T>(
        of locations: [DCPMetadata.Location], _ body: () throws(CheckpointError) -> T
    ) throws(CheckpointError) -> T {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var advised: [MappedFile] = []
        for (name, inFile) in Dictionary(grouping: locations, by: \.file) {
            let file = try mapping(name)
            guard let base = file.bytes.baseAddress, Int(bitPattern: base) % page == 0 else { continue }
            let mapping = UnsafeMutableRawPointer(mutating: base)
            Syscall.madvise(mapping, file.bytes.count, MADV_RANDOM, path: file.path)
            advised.append(file)
            for location in inFile where location.offset + location.length <= file.bytes.count {
                // Two pages from each end: the first records, and the zip directory and end records.
                let end = location.offset + location.length
                let head = location.offset / page * page
                Syscall.madvise(mapping + head, min(end, location.offset + 2 * page) - head, MADV_WILLNEED, path: file.path)
                let tail = max(location.offset, end - 2 * page) / page * page
                Syscall.madvise(mapping + tail, end - tail, MADV_WILLNEED, path: file.path)
            }
        }
        defer {
            for file in advised {
                if let base = file.bytes.baseAddress {
                    Syscall.madvise(UnsafeMutableRawPointer(mutating: base), file.bytes.count, MADV_NORMAL, path: file.path)
                }
            }
        }
        return try body()
    }

    /// Chunk `index` of tensor `fqn`, checked against the dtype and box `.metadata` gives it.
    func chunk(_ fqn: String, _ index: Int) throws(CheckpointError) -> Item<Tensor> {
        guard case .tensor(let tensor) = metadata.items[fqn], tensor.chunks.indices.contains(index) else {
            throw CheckpointError(.invalidArgument, "the DCP checkpoint has no chunk \(index) of \"\(fqn)\"", path: checkpoint.folder)
        }
        let chunk = tensor.chunks[index]
        let item = try archive(chunk.location, of: fqn)
        guard case .tensor(let value) = item.value, value.dtype == tensor.dtype, value.shape == chunk.box.shape else {
            throw failure(
                "it holds \(item.value.tensorValue.map { "a \($0.dtype.rawValue) tensor \($0.shape)" } ?? "a \(item.value.kindName)"), not the \(tensor.dtype.rawValue) chunk \(chunk.box.shape) the .metadata describes",
                at: chunk.location, of: fqn, offset: nil)
        }
        return Item(value: value, verifyRecords: item.verifyRecords)
    }

    /// The value `fqn` (an entry that is not a tensor).
    func value(_ fqn: String) throws(CheckpointError) -> Item<StateValue> {
        guard case .value(let location) = metadata.items[fqn] else {
            throw CheckpointError(.invalidArgument, "the DCP checkpoint has no value \"\(fqn)\"", path: checkpoint.folder)
        }
        return try archive(location, of: fqn)
    }

    /// The box `box` of tensor `fqn`: a chunk's own tensor when the box is exactly one chunk,
    /// else assembled from the chunks that overlap it, reading no other chunk (at once, or when
    /// first used with `deferred`). Returns the CRC checks of the archives it read.
    func tensor(
        _ fqn: String, box: TensorSlice, deferred: Bool
    ) throws(CheckpointError) -> Item<Tensor> {
        guard case .tensor(let tensor) = metadata.items[fqn] else {
            throw CheckpointError(.invalidArgument, "the DCP checkpoint has no tensor \"\(fqn)\"", path: checkpoint.folder)
        }
        if let exact = tensor.chunks.firstIndex(where: { $0.box == box }) { return try chunk(fqn, exact) }
        var pieces: [(region: TensorSlice, source: TensorSlice, tensor: Tensor)] = []
        var checks: [@Sendable () throws(CheckpointError) -> Void] = []
        for (index, chunk) in tensor.chunks.enumerated() {
            guard let region = chunk.box.intersection(box) else { continue }
            let item = try self.chunk(fqn, index)
            pieces.append((region, chunk.box, item.value))
            checks.append(item.verifyRecords)
        }
        let byteCount = try Tensor.byteCount(dtype: tensor.dtype, shape: box.shape)
        let elementSize = tensor.dtype.byteSize
        let assembled = pieces
        let fill: @Sendable (UnsafeMutableRawBufferPointer) -> Void = { destination in
            for piece in assembled {
                piece.tensor.withUnsafeBytes { bytes in
                    SliceCopy.copy(piece.region, from: bytes, source: piece.source, to: destination, destination: box, elementSize: elementSize)
                }
            }
        }
        let buffer: TensorBuffer
        if deferred {
            buffer = TensorBuffer(deferredByteCount: byteCount, fill: fill)
        } else {
            buffer = TensorBuffer.allocate(byteCount: byteCount, zeroed: false)
            fill(UnsafeMutableRawBufferPointer(mutating: buffer.bytes))
        }
        let verify = checks
        return Item(value: Tensor(dtype: tensor.dtype, shape: box.shape, buffer: buffer)) { () throws(CheckpointError) in
            for check in verify { try check() }
        }
    }

    // MARK: Archives

    /// The archive at `location`, read with the torch reader.
    private func archive(_ location: DCPMetadata.Location, of fqn: String) throws(CheckpointError) -> Item<StateValue> {
        let file = try mapping(location.file)
        guard location.offset + location.length <= file.bytes.count else {
            throw failure(
                "it reaches past the end of the file (\(file.bytes.count) bytes): the file changed since it was opened", at: location, of: fqn,
                offset: nil)
        }
        let slice = MappedFile(slice: location.range, of: file, path: file.path)
        let contents: FormatContents
        do {
            contents = try TorchFormat.read(slice, limits: .standard, deferringCopies: deferringCopies)
        } catch {
            throw failure(error.message, at: location, of: fqn, offset: error.offset, code: error.code)
        }
        let records = contents.verifyRecords
        let folder = checkpoint.folder
        return Item(value: contents.tree) { () throws(CheckpointError) in
            do throws(CheckpointError) {
                try records?()
            } catch {
                throw DCPReader.failure(error.message, at: location, of: fqn, offset: error.offset, code: error.code, folder: folder)
            }
        }
    }

    private func mapping(_ name: String) throws(CheckpointError) -> MappedFile {
        if let known = mappings[name] { return known }
        let path = FilePaths.join(checkpoint.folder, name)
        let file: MappedFile
        do {
            file = try MappedFile(path: path)
        } catch where error.code == .notFound {
            throw CheckpointError(.notFound, "the data file \(name), which .metadata lists, is missing: the checkpoint is incomplete", path: path)
        }
        mappings[name] = file
        return file
    }

    private func failure(
        _ message: String, at location: DCPMetadata.Location, of fqn: String, offset: Int?, code: CheckpointError.Code = .malformed
    ) -> CheckpointError {
        Self.failure(message, at: location, of: fqn, offset: offset, code: code, folder: checkpoint.folder)
    }

    /// An error about the archive of `fqn` at `location`, naming its data file, with `offset`
    /// (inside the archive) turned into an offset in the file.
    static func failure(
        _ message: String, at location: DCPMetadata.Location, of fqn: String, offset: Int?, code: CheckpointError.Code, folder: String
    ) -> CheckpointError {
        CheckpointError(
            code, "the archive of \"\(fqn)\" (bytes \(location.offset)..<\(location.offset + location.length)): \(message)",
            path: FilePaths.join(folder, location.file), offset: offset.map { $0 + location.offset })
    }
}
