/// Writes a float-split stream: reads the safetensors header as it streams past, cuts each
/// tensor into chunks of whole elements, and encodes the chunks on `threads` cores, writing
/// them in order, then the index and the trailer.
///
/// A stream that does not start with a safetensors header (a `.pt`, a tar) is cut into chunks
/// of bytes, each compressed with zstd: lossless whatever it is given. Chunks that lie whole in
/// one `write` are encoded straight from the caller's memory before `write` returns; smaller
/// ones are copied and encoded in batches, so a writer of small pieces still uses every core.
final class FloatSplitCompressor: StreamTransform {
    private let sink: any ByteSink
    private let level: Int
    private let threads: Int
    private let chunkSize: Int
    /// Bytes accepted.
    private(set) var position = 0
    /// Stream bytes written to the sink.
    private var written = 0
    /// Input bytes assigned to chunks so far (behind ``position`` while the header is held).
    private var planned = 0
    private var index: [FloatSplitFormat.IndexEntry] = []
    /// What each byte range of the input is; `nil` until the header has been read.
    private var plan: Plan?
    /// The first bytes, held until the plan is known.
    private var held: [UInt8] = []
    /// A chunk whose bytes arrive over several writes.
    private var pending: Job?
    /// Chunks complete and waiting to be encoded, in stream order.
    private var jobs: [Job] = []
    private var workspaces: [ChunkWorkspace] = []
    private var outputs: [UnsafeMutableRawBufferPointer] = []
    private var spareBuffers: [UnsafeMutableRawBufferPointer] = []

    /// Chunks at least this large are encoded from the caller's memory; smaller ones are copied.
    private var borrowThreshold: Int { chunkSize / 4 }
    /// The most chunks encoded at once, bounding the output held before it is written.
    private var batchLimit: Int { 4 * threads }

    init(sink: any ByteSink, level: Int, threads: Int, chunkSize: Int = FloatSplitFormat.chunkSize) {
        self.sink = sink
        self.level = level
        self.threads = threads
        self.chunkSize = chunkSize
    }

    /// A chunk: its offset in the input, its bytes (the caller's or a buffer of ours), its dtype.
    private struct Job {
        var start: Int
        var length: Int
        var dtype: DType?
        var borrowed: UnsafeRawBufferPointer?
        var owned: UnsafeMutableRawBufferPointer?
        var filled = 0

        var bytes: UnsafeRawBufferPointer {
            borrowed ?? UnsafeRawBufferPointer(rebasing: owned![0..<length])
        }
    }

    /// The input's byte ranges: the header and each tensor, in order; past the last, bytes.
    private struct Plan {
        var segments: [(range: Range<Int>, dtype: DType?)]
        var cursor = 0

        /// The next chunk at `offset`: up to `chunkSize` bytes of one segment.
        mutating func chunk(at offset: Int, chunkSize: Int) -> (length: Int, dtype: DType?) {
            while cursor < segments.count && segments[cursor].range.upperBound <= offset { cursor += 1 }
            guard cursor < segments.count else { return (chunkSize, nil) }
            let segment = segments[cursor]
            if offset < segment.range.lowerBound { return (min(chunkSize, segment.range.lowerBound - offset), nil) }
            return (min(chunkSize, segment.range.upperBound - offset), segment.dtype)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        guard !bytes.isEmpty else { return }
        var rest = bytes
        if plan == nil {
            while plan == nil && !rest.isEmpty {
                let take = min(heldBytesNeeded - held.count, rest.count)
                held.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[0..<take]))
                rest = UnsafeRawBufferPointer(rebasing: rest[take...])
                if held.count == heldBytesNeeded { decidePlan() }
            }
            if plan != nil { try replayHeld() }
        }
        try consume(rest)
        position += bytes.count
        try encodeJobs(all: jobs.contains { $0.borrowed != nil } || jobs.count >= 2 * threads)
    }

    func finish() throws(CheckpointError) {
        if plan == nil {
            plan = Plan(segments: [])
            try replayHeld()
        }
        if var last = pending {
            // A stream that ends inside a tensor: its last bytes are not whole elements.
            last.length = last.filled
            last.dtype = nil
            jobs.append(last)
            pending = nil
        }
        try encodeJobs(all: true)
        try writePreambleIfNeeded()
        var table = [UInt8](repeating: 0, count: index.count * FloatSplitFormat.indexEntrySize + FloatSplitFormat.trailerSize)
        let indexOffset = written
        table.withUnsafeMutableBytes { raw in
            for (number, entry) in index.enumerated() {
                entry.write(to: raw.baseAddress! + number * FloatSplitFormat.indexEntrySize)
            }
            let indexBytes = UnsafeRawBufferPointer(rebasing: raw[0..<(index.count * FloatSplitFormat.indexEntrySize)])
            let trailer = raw.baseAddress! + indexBytes.count
            trailer.storeBytes(of: UInt64(indexOffset).littleEndian, toByteOffset: 0, as: UInt64.self)
            trailer.storeBytes(of: UInt64(index.count).littleEndian, toByteOffset: 8, as: UInt64.self)
            trailer.storeBytes(of: UInt64(planned).littleEndian, toByteOffset: 16, as: UInt64.self)
            trailer.storeBytes(of: TensorChecksum.of(indexBytes).littleEndian, toByteOffset: 24, as: UInt64.self)
            for (offset, byte) in FloatSplitFormat.magic.enumerated() { trailer.storeBytes(of: byte, toByteOffset: 32 + offset, as: UInt8.self) }
        }
        try sink.write(table)
        written += table.count
    }

    /// The bytes to hold before the plan can be decided: the length prefix, then the header
    /// (none when the prefix cannot be a header's length).
    private var heldBytesNeeded: Int {
        guard held.count >= 8 else { return 8 }
        let length = held.withUnsafeBytes { FloatSplitFormat.u64($0, 0) }
        return length <= UInt64(SafetensorsHeader.maximumLength) ? 8 + Int(length) : 8
    }

    /// Reads the held bytes: the length prefix (a plausible header length, or the stream is
    /// not safetensors), then the header, whose tensors become the plan's segments.
    private func decidePlan() {
        if held.count == 8 {
            let length = held.withUnsafeBytes { FloatSplitFormat.u64($0, 0) }
            if length == 0 || length > UInt64(SafetensorsHeader.maximumLength) { plan = Plan(segments: []) }
            return
        }
        let header = held.withUnsafeBytes { raw in
            try? SafetensorsHeader(json: UnsafeRawBufferPointer(rebasing: raw[8...]), dataLength: nil)
        }
        guard let header else {
            plan = Plan(segments: [])
            return
        }
        var segments: [(range: Range<Int>, dtype: DType?)] = [(0..<header.dataStart, nil)]
        for entry in header.entries where entry.end > entry.begin {
            segments.append(((header.dataStart + entry.begin)..<(header.dataStart + entry.end), entry.dtype))
        }
        plan = Plan(segments: segments)
    }

    /// Passes the held bytes on as input, once the plan is known.
    private func replayHeld() throws(CheckpointError) {
        let bytes = held
        held = []
        try rethrowingCheckpointError { try bytes.withUnsafeBytes { try consume($0) } }
    }

    /// Assigns `bytes` to chunks: whole large chunks are borrowed, the rest copied.
    private func consume(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        var offset = 0
        while offset < bytes.count {
            if var chunk = pending {
                let take = min(chunk.length - chunk.filled, bytes.count - offset)
                (chunk.owned!.baseAddress! + chunk.filled).copyMemory(from: bytes.baseAddress! + offset, byteCount: take)
                chunk.filled += take
                offset += take
                planned += take
                if chunk.filled == chunk.length {
                    jobs.append(chunk)
                    pending = nil
                } else {
                    pending = chunk
                }
            } else {
                let (length, dtype) = plan!.chunk(at: planned, chunkSize: chunkSize)
                if bytes.count - offset >= length && length >= borrowThreshold {
                    jobs.append(Job(
                        start: planned, length: length, dtype: dtype,
                        borrowed: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)])))
                    offset += length
                    planned += length
                } else {
                    pending = Job(start: planned, length: length, dtype: dtype, owned: takeBuffer())
                }
            }
            if jobs.count >= batchLimit { try encodeJobs(all: true) }
        }
    }

    private func takeBuffer() -> UnsafeMutableRawBufferPointer {
        spareBuffers.popLast() ?? .allocate(byteCount: chunkSize, alignment: 64)
    }

    private func writePreambleIfNeeded() throws(CheckpointError) {
        guard written == 0 else { return }
        try sink.write(FloatSplitFormat.magic + [FloatSplitFormat.version] + [UInt8](repeating: 0, count: 7))
        written = FloatSplitFormat.preambleSize
    }

    /// Encodes the waiting chunks on up to `threads` cores and writes them in order; with
    /// `all` false, only once enough are waiting to keep every core busy.
    private func encodeJobs(all: Bool) throws(CheckpointError) {
        guard !jobs.isEmpty, all || jobs.count >= 2 * threads else { return }
        try writePreambleIfNeeded()
        let workers = min(threads, jobs.count)
        while workspaces.count < workers { workspaces.append(ChunkWorkspace(chunkCapacity: chunkSize)) }
        let capacity = ChunkCoding.recordBound(length: chunkSize, dtype: .float64)
        while outputs.count < jobs.count { outputs.append(.allocate(byteCount: capacity, alignment: 64)) }
        let records = UnsafeMutableBufferPointer<Range<Int>>.allocate(capacity: jobs.count)
        defer { records.deallocate() }
        var failures = [CheckpointError?](repeating: nil, count: workers)
        let batch = jobs
        let level = level
        let (spaces, buffers) = (workspaces, outputs)
        failures.withUnsafeMutableBufferPointer { failures in
            ParallelChunks.run(workers: workers) { worker in
                var number = worker
                while number < batch.count {
                    let job = batch[number]
                    do throws(CheckpointError) {
                        records[number] = try ChunkCoding.encode(
                            job.bytes, dtype: job.dtype, level: level, workspace: spaces[worker], into: buffers[number].baseAddress!)
                    } catch {
                        failures[worker] = error
                        return
                    }
                    number += workers
                }
            }
        }
        if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
        for (number, job) in batch.enumerated() {
            let record = UnsafeRawBufferPointer(rebasing: outputs[number][records[number]])
            try sink.write(record)
            index.append(FloatSplitFormat.IndexEntry(
                decodedOffset: job.start, recordOffset: written, decodedLength: job.length, recordLength: record.count,
                dtypeCode: FloatSplitFormat.code(of: job.dtype)))
            written += record.count
            if let owned = job.owned { spareBuffers.append(owned) }
        }
        jobs.removeAll(keepingCapacity: true)
    }

    deinit {
        for buffer in outputs + spareBuffers { buffer.deallocate() }
        pending?.owned?.deallocate()
        for job in jobs { job.owned?.deallocate() }
    }
}
