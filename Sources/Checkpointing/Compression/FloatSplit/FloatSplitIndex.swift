/// The index of a float-split stream, read from its trailer and checked against the stream
/// before anything is allocated for it: every chunk record lies inside the stream, the records
/// follow each other from the preamble to the index, and the chunks cover the decoded bytes
/// once each, in order.
struct FloatSplitIndex {
    var entries: [FloatSplitFormat.IndexEntry]
    /// The size of the decoded stream.
    var decodedLength: Int
    /// The largest chunk's decoded length.
    var largestChunk: Int

    /// Reads the index of `stream`, a whole float-split stream.
    init(parsing stream: UnsafeRawBufferPointer) throws(CheckpointError) {
        let size = stream.count
        let minimum = FloatSplitFormat.preambleSize + FloatSplitFormat.trailerSize
        guard size >= minimum else {
            throw CheckpointError(
                .malformed,
                "the float-split (.fsz) stream is \(size) bytes long, shorter than its preamble and trailer (\(minimum)); the file is truncated (an interrupted copy or download?)",
                offset: size)
        }
        guard Array(stream[0..<8]) == FloatSplitFormat.magic else {
            throw FloatSplitFormat.corrupt("it does not start with the float-split magic number", at: 0)
        }
        guard stream[8] == FloatSplitFormat.version else {
            throw CheckpointError(
                .unsupportedFormat,
                "the file is float-split (.fsz) version \(stream[8]); this library reads version \(FloatSplitFormat.version): upgrade swift-checkpointing",
                offset: 8)
        }
        let trailerStart = size - FloatSplitFormat.trailerSize
        guard Array(stream[(size - 8)..<size]) == FloatSplitFormat.magic else {
            throw CheckpointError(
                .malformed,
                "the float-split (.fsz) stream does not end with its trailer: the file is truncated (an interrupted copy or download?), or other bytes follow the end of the stream",
                offset: size)
        }
        let indexOffset = FloatSplitFormat.u64(stream, trailerStart)
        let count = FloatSplitFormat.u64(stream, trailerStart + 8)
        let declaredLength = FloatSplitFormat.u64(stream, trailerStart + 16)
        let recordedChecksum = FloatSplitFormat.u64(stream, trailerStart + 24)
        let entrySize = UInt64(FloatSplitFormat.indexEntrySize)
        guard indexOffset >= UInt64(FloatSplitFormat.preambleSize), indexOffset <= UInt64(trailerStart),
            count <= (UInt64(trailerStart) - indexOffset) / entrySize,
            indexOffset + count * entrySize == UInt64(trailerStart)
        else {
            throw FloatSplitFormat.corrupt(
                "its trailer places an index of \(count) chunks at offset \(indexOffset), which does not end where the trailer starts (\(trailerStart))",
                at: trailerStart)
        }
        let indexBytes = UnsafeRawBufferPointer(rebasing: stream[Int(indexOffset)..<trailerStart])
        let actualChecksum = TensorChecksum.of(indexBytes)
        guard actualChecksum == recordedChecksum else {
            throw FloatSplitFormat.corrupt(
                "its index hashes to \(TensorChecksum.hex(actualChecksum)), not the \(TensorChecksum.hex(recordedChecksum)) its trailer records",
                at: Int(indexOffset))
        }
        var entries: [FloatSplitFormat.IndexEntry] = []
        entries.reserveCapacity(Int(count))
        var decoded = 0
        var recordEnd = FloatSplitFormat.preambleSize
        var largest = 0
        for number in 0..<Int(count) {
            let at = number * FloatSplitFormat.indexEntrySize
            let entry = FloatSplitFormat.IndexEntry(
                decodedOffset: Int(clamping: FloatSplitFormat.u64(indexBytes, at)),
                recordOffset: Int(clamping: FloatSplitFormat.u64(indexBytes, at + 8)),
                decodedLength: Int(FloatSplitFormat.u32(indexBytes, at + 16)),
                recordLength: Int(FloatSplitFormat.u32(indexBytes, at + 20)),
                dtypeCode: indexBytes[at + 24])
            let entryOffset = Int(indexOffset) + at
            guard entry.decodedOffset == decoded, entry.recordOffset == recordEnd else {
                throw FloatSplitFormat.corrupt(
                    "index entry \(number) places its chunk at decoded offset \(entry.decodedOffset) and record offset \(entry.recordOffset), not right after the previous chunk (\(decoded), \(recordEnd))",
                    at: entryOffset)
            }
            guard entry.decodedLength > 0, entry.decodedLength <= FloatSplitFormat.maximumChunkSize else {
                throw FloatSplitFormat.corrupt(
                    "index entry \(number) claims a chunk of \(entry.decodedLength) bytes (a chunk holds 1 to \(FloatSplitFormat.maximumChunkSize))",
                    at: entryOffset)
            }
            guard case .some(let dtype) = FloatSplitFormat.dtype(ofCode: entry.dtypeCode) else {
                throw FloatSplitFormat.corrupt("index entry \(number) has an unknown dtype code \(entry.dtypeCode)", at: entryOffset)
            }
            let width = FloatSplitFormat.layout(of: dtype)?.width ?? 1
            guard entry.decodedLength % width == 0 else {
                throw FloatSplitFormat.corrupt(
                    "index entry \(number) holds \(entry.decodedLength) bytes of \(dtype?.rawValue ?? "?"), not whole elements", at: entryOffset)
            }
            guard entry.recordLength >= FloatSplitFormat.chunkHeaderSize, entry.recordLength <= Int(indexOffset) - recordEnd else {
                throw FloatSplitFormat.corrupt(
                    "index entry \(number) claims a record of \(entry.recordLength) bytes at offset \(entry.recordOffset), past the start of the index (\(indexOffset))",
                    at: entryOffset)
            }
            entries.append(entry)
            decoded += entry.decodedLength
            recordEnd += entry.recordLength
            largest = max(largest, entry.decodedLength)
        }
        guard recordEnd == Int(indexOffset) else {
            throw FloatSplitFormat.corrupt(
                "the chunk records end at offset \(recordEnd) but the index starts at \(indexOffset)", at: recordEnd)
        }
        guard UInt64(decoded) == declaredLength else {
            throw FloatSplitFormat.corrupt(
                "the trailer declares \(declaredLength) decoded bytes but the chunks hold \(decoded)", at: trailerStart + 16)
        }
        self.entries = entries
        decodedLength = decoded
        largestChunk = largest
    }

    /// Refuses a stream whose decoded size exceeds `limits` (what stops a decompression bomb
    /// before a byte is decoded).
    func check(_ limits: ReadingLimits, streamSize: Int) throws(CheckpointError) {
        if decodedLength > limits.maximumDecompressedBytes {
            throw CheckpointError(
                .limitExceeded,
                "the float-split (.fsz) stream decodes to \(decodedLength) bytes, more than the limit of \(limits.maximumDecompressedBytes) (ReadingLimits.maximumDecompressedBytes; ckpt: --max-decompressed-bytes); raise it if the checkpoint really is that large")
        }
        if decodedLength > limits.expansionRatioFloor, decodedLength / max(streamSize, 1) > limits.maximumExpansionRatio {
            throw CheckpointError(
                .limitExceeded,
                "the float-split (.fsz) stream expands more than \(limits.maximumExpansionRatio)-fold (\(streamSize) bytes to \(decodedLength)): a decompression bomb, or a checkpoint of almost nothing but zeros; raise ReadingLimits.maximumExpansionRatio (ckpt: --max-expansion) to load it anyway")
        }
    }

    /// The chunks that hold any of the decoded bytes `range`.
    func chunks(overlapping range: Range<Int>) -> Range<Int> {
        guard !range.isEmpty else { return 0..<0 }
        var low = 0, high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].decodedRange.upperBound <= range.lowerBound { low = middle + 1 } else { high = middle }
        }
        var end = low
        while end < entries.count && entries[end].decodedOffset < range.upperBound { end += 1 }
        return low..<end
    }
}
