import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bytes of a mapping that are produced when first needed: the chunks of a float-split stream,
/// decoded into the mapped file only when a tensor over them is read.
protocol LazyContents: AnyObject, Sendable {
    /// Makes the bytes `range` of the mapping readable; `false` when they could not be
    /// decoded (``decode(_:)`` then reports why).
    func prepare(_ range: UnsafeRawBufferPointer) -> Bool
    /// Makes the byte ranges readable, decoding what they need on every core.
    func decode(_ ranges: [UnsafeRawBufferPointer]) throws(CheckpointError)
}

/// An opened float-split stream: its index, and its decoded bytes, whose chunks are decoded
/// when first read.
///
/// The decoded bytes are anonymous memory when the machine has room for them (as much as
/// `/dev/shm` has free), each chunk decoded straight into its place, else a temporary file on
/// the disk (`$TMPDIR`) that chunks are written to. Measured on this project's 2-core VM, the
/// kernel spends 0.5 s a GB handing out anonymous memory (its pages allocated a chunk at a
/// time, `MADV_POPULATE_WRITE`) and 0.9 s a GB on a `/dev/shm` file written with `pwrite`:
/// more than the decoding itself. So the memory is taken from ``ReusedMemory`` and given back
/// to it when the last tensor over it goes: a process that loads again decodes into pages it
/// already has.
///
/// Opening reads the trailer and the index and decodes the chunks that hold the first bytes.
/// When they are a safetensors header, the tensors' chunks are left for later: a tensor's
/// chunks are decoded when its bytes are first read, and ``decode(_:)`` decodes many
/// tensors' at once on every core (what a load does with the tensors it keeps, so a
/// weights-only load decodes only the model's chunks). Any other stream (a `.pt`, a tar) is
/// decoded whole at once, since its reader reads it anywhere.
///
/// `@unchecked Sendable`: the chunk states are guarded by `condition`; each chunk's bytes are
/// written by the one thread that claimed it, before it is marked done.
final class FloatSplitArchive: LazyContents, @unchecked Sendable {
    let path: String
    let source: MappedFile
    let index: FloatSplitIndex
    /// The temporary file on the disk, when the bytes are not in memory.
    private let fd: Int32?
    /// Where the decoded bytes live (memory, or a folder on the disk), for messages.
    private let folder: String
    private(set) var base: UnsafeRawPointer?
    /// ``base``, writable, when the bytes are in memory: chunks are decoded straight into it.
    private var writable: UnsafeMutableRawPointer?
    /// Whether that memory's pages must be allocated before a chunk is decoded into them: not
    /// when an earlier file left them (``ReusedMemory``).
    private var allocatesPages = true
    private let condition = NSCondition()
    private var states: [State]
    private var spareWorkspaces: [ChunkWorkspace] = []
    private var reportedFailure = false

    private enum State {
        case pending, decoding, done
        case failed(CheckpointError)
    }

    /// Opens the float-split stream `source` and returns its decoded bytes, named `path` in messages.
    static func open(_ source: MappedFile, limits: ReadingLimits, path: String) throws(CheckpointError) -> MappedFile {
        do throws(CheckpointError) {
            let index = try FloatSplitIndex(parsing: source.bytes)
            try index.check(limits, streamSize: source.bytes.count)
            let size = index.decodedLength
            let inMemory = (SystemCalls.freeSpace(in: AnonymousFile.memoryFolder) ?? 0) > size
            let fd = inMemory ? nil : try Self.createFile(size: size)
            let archive = FloatSplitArchive(
                path: path, source: source, index: index, fd: fd, folder: inMemory ? "memory" : AnonymousFile.diskFolder)
            let decoded: MappedFile
            if let fd {
                decoded = try MappedFile(descriptor: fd, path: path, lazyContents: archive)
            } else {
                decoded = try MappedFile(anonymousMemory: size, path: path, lazyContents: archive)
                archive.writable = decoded.bytes.baseAddress.map(UnsafeMutableRawPointer.init(mutating:))
                archive.allocatesPages = !decoded.isReusedMemory
            }
            archive.base = decoded.bytes.baseAddress
            try archive.decodeHeaderOrAll(decoded)
            return decoded
        } catch {
            throw error.at(path: path)
        }
    }

    private init(path: String, source: MappedFile, index: FloatSplitIndex, fd: Int32?, folder: String) {
        self.path = path
        self.source = source
        self.index = index
        self.fd = fd
        self.folder = folder
        states = Array(repeating: .pending, count: index.entries.count)
    }

    /// The decoded bytes' file on the disk (`$TMPDIR`). Nothing is allocated until chunks are
    /// written into it.
    private static func createFile(size: Int) throws(CheckpointError) -> Int32 {
        let folder = AnonymousFile.diskFolder
        guard let fd = AnonymousFile.create(in: folder) else {
            throw SystemCalls.error("creating a temporary file for decompression", path: folder, errno: errno)
        }
        do {
            try SystemCalls.truncate(fd, to: size, path: folder)
        } catch {
            SystemCalls.release(fd, path: folder)
            throw error
        }
        return fd
    }

    /// Decodes the chunks over the first bytes and, unless they begin a safetensors file, all the rest.
    private func decodeHeaderOrAll(_ decoded: MappedFile) throws(CheckpointError) {
        let bytes = decoded.bytes
        try decodeChunks(Array(index.chunks(overlapping: 0..<min(bytes.count, 512))))
        if bytes.count >= 8 {
            let length = FloatSplitFormat.u64(bytes, 0)
            if length <= UInt64(SafetensorsHeader.maximumLength), 8 + Int(length) <= bytes.count {
                try decodeChunks(Array(index.chunks(overlapping: 0..<(8 + Int(length)))))
                let prefix = UnsafeRawBufferPointer(rebasing: bytes.prefix(512))
                if FileKind.sniff(prefix, fileSize: bytes.count) == .safetensors { return }
            }
        }
        try decodeChunks(Array(index.entries.indices))
    }

    /// Per dtype (`nil`: bytes that are no tensor's), the decoded and the encoded bytes.
    var shares: [CompressionShare] {
        var totals: [UInt8: (Int, Int)] = [:]
        for entry in index.entries {
            let total = totals[entry.dtypeCode] ?? (0, 0)
            totals[entry.dtypeCode] = (total.0 + entry.decodedLength, total.1 + entry.recordLength)
        }
        return totals.keys.sorted().map { code in
            let dtype = FloatSplitFormat.dtype(ofCode: code) ?? nil
            return CompressionShare(dtype: dtype, bytes: totals[code]!.0, compressedBytes: totals[code]!.1)
        }
    }

    /// Whether chunk `number` has been decoded.
    func isDecoded(_ number: Int) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if case .done = states[number] { return true }
        return false
    }

    func prepare(_ range: UnsafeRawBufferPointer) -> Bool {
        do {
            try decode([range])
            return true
        } catch {
            condition.lock()
            let first = !reportedFailure
            reportedFailure = true
            condition.unlock()
            if first { logger.error("\(error)") }
            return false
        }
    }

    func decode(_ ranges: [UnsafeRawBufferPointer]) throws(CheckpointError) {
        guard let base else { return }
        var wanted = Set<Int>()
        for range in ranges where !range.isEmpty {
            guard let start = range.baseAddress else { continue }
            let offset = start - base
            wanted.formUnion(index.chunks(overlapping: offset..<(offset + range.count)))
        }
        try decodeChunks(wanted.sorted())
    }

    /// Decodes the chunks numbered `wanted` that no thread has decoded yet, on every core,
    /// and waits for those another thread is decoding.
    private func decodeChunks(_ wanted: [Int]) throws(CheckpointError) {
        condition.lock()
        var mine: [Int] = []
        var others: [Int] = []
        var failure: CheckpointError?
        for chunk in wanted {
            switch states[chunk] {
            case .pending:
                states[chunk] = .decoding
                mine.append(chunk)
            case .decoding: others.append(chunk)
            case .done: break
            case .failed(let error): failure = failure ?? error
            }
        }
        let workers = min(mine.count, CompressionOptions.defaultThreads)
        var workspaces: [ChunkWorkspace] = []
        while workspaces.count < workers {
            workspaces.append(spareWorkspaces.popLast() ?? ChunkWorkspace(chunkCapacity: index.largestChunk))
        }
        condition.unlock()

        var failures = [CheckpointError?](repeating: nil, count: mine.count)
        if workers > 0 {
            let chunks = mine
            failures.withUnsafeMutableBufferPointer { failures in
                ParallelChunks.run(workers: workers) { worker in
                    for number in stride(from: worker, to: chunks.count, by: workers) {
                        do throws(CheckpointError) {
                            try decodeChunk(chunks[number], workspace: workspaces[worker])
                        } catch {
                            failures[number] = error
                        }
                    }
                }
            }
        }

        condition.lock()
        for (number, chunk) in mine.enumerated() {
            states[chunk] = failures[number].map(State.failed) ?? .done
        }
        spareWorkspaces += workspaces
        condition.broadcast()
        while others.contains(where: { if case .decoding = states[$0] { true } else { false } }) { condition.wait() }
        for chunk in others {
            if case .failed(let error) = states[chunk] { failure = failure ?? error }
        }
        condition.unlock()
        if let failure = failure ?? failures.lazy.compactMap({ $0 }).first { throw failure.at(path: path) }
    }

    /// Decodes one chunk into the workspace and writes it where it belongs in the file.
    private func decodeChunk(_ chunk: Int, workspace: ChunkWorkspace) throws(CheckpointError) {
        let entry = index.entries[chunk]
        let record = UnsafeRawBufferPointer(rebasing: source.bytes[entry.recordRange])
        if let writable {
            let destination = writable + entry.decodedOffset
            if allocatesPages { Self.allocatePages(destination, count: entry.decodedLength) }
            do {
                try ChunkCoding.decode(record, entry: entry, workspace: workspace, into: destination)
            } catch {
                // A damaged chunk reads as zeros, as it does in a file nothing was written to.
                destination.initializeMemory(as: UInt8.self, repeating: 0, count: entry.decodedLength)
                throw error
            }
            return
        }
        // Bytes not in memory are in the file (an empty stream, with neither, has no chunks).
        guard let fd else { return }
        try ChunkCoding.decode(record, entry: entry, workspace: workspace, into: workspace.decoded.baseAddress!)
        let bytes = UnsafeRawBufferPointer(rebasing: workspace.decoded[0..<entry.decodedLength])
        do {
            try SystemCalls.writeAll(fd, bytes, at: entry.decodedOffset, path: folder)
        } catch {
            throw CheckpointError(
                .io,
                "writing the decoded checkpoint to a temporary file in \(folder) failed (\(error.message)); set TMPDIR to a folder with room for the uncompressed checkpoint",
                path: path)
        }
    }

    /// Allocates the memory pages under `count` bytes at `start` in one call rather than a
    /// page fault each (Linux 5.14 and later; elsewhere the faults do it). A hint: memory that
    /// cannot be allocated fails as it would have on the first write.
    private static func allocatePages(_ start: UnsafeMutableRawPointer, count: Int) {
        #if os(Linux)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let aligned = Int(bitPattern: start) / page * page
        guard let first = UnsafeMutableRawPointer(bitPattern: aligned) else { return }
        Syscall.madvise(first, Int(bitPattern: start) - aligned + count, populateWrite)
        #endif
    }

    #if os(Linux)
    /// `MADV_POPULATE_WRITE`, which not every C library's headers define yet.
    private static let populateWrite: Int32 = 23
    #endif

    deinit {
        if let fd { SystemCalls.release(fd, path: folder) }
    }
}

/// How well a float-split file compressed the bytes of one dtype (`ckpt inspect` shows it).
public struct CompressionShare: Sendable, Equatable {
    /// The tensors' dtype; `nil` for bytes that are no tensor's (the safetensors header, or
    /// the whole of a stream that is not safetensors).
    public var dtype: DType?
    /// The bytes before compression.
    public var bytes: Int
    /// The bytes of their chunk records in the file.
    public var compressedBytes: Int

    /// `bytes / compressedBytes`.
    public var ratio: Double { compressedBytes > 0 ? Double(bytes) / Double(compressedBytes) : 0 }
}
