internal import CZstd
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One thread's scratch memory for encoding or decoding chunks, reused from chunk to chunk.
final class ChunkWorkspace {
    /// The planes of one chunk, one after the other.
    let planes: UnsafeMutableRawBufferPointer
    /// Four interleaved histograms of 256 counts (so consecutive equal bytes do not wait on each other).
    let histograms: UnsafeMutablePointer<UInt32>
    /// Where zstd writes before its output is known to be the smallest.
    let zstdOutput: UnsafeMutableRawBufferPointer
    /// A decoded chunk before it is written out (reading a stream).
    let decoded: UnsafeMutableRawBufferPointer
    private var zstdCompression: OpaquePointer?
    private var zstdDecompression: OpaquePointer?

    init(chunkCapacity: Int) {
        planes = .allocate(byteCount: max(chunkCapacity, 1), alignment: 64)
        histograms = .allocate(capacity: 4 * 256)
        zstdOutput = .allocate(byteCount: ZSTD_compressBound(max(chunkCapacity, 1)), alignment: 64)
        decoded = .allocate(byteCount: max(chunkCapacity, 1), alignment: 64)
    }

    func compressionContext() throws(CheckpointError) -> OpaquePointer {
        if let zstdCompression { return zstdCompression }
        guard let context = ZSTD_createCCtx() else { throw CodecErrors.library(.floatSplit, "ZSTD_createCCtx", "out of memory") }
        zstdCompression = context
        return context
    }

    func decompressionContext() throws(CheckpointError) -> OpaquePointer {
        if let zstdDecompression { return zstdDecompression }
        guard let context = ZSTD_createDCtx() else { throw CodecErrors.library(.floatSplit, "ZSTD_createDCtx", "out of memory") }
        zstdDecompression = context
        return context
    }

    /// Counts the bytes of `plane` into the first 256 histogram entries.
    func count(_ plane: UnsafeRawBufferPointer) {
        histograms.initialize(repeating: 0, count: 4 * 256)
        guard let base = plane.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let count = plane.count
        var index = 0
        while index + 4 <= count {
            histograms[Int(base[index])] &+= 1
            histograms[256 + Int(base[index + 1])] &+= 1
            histograms[512 + Int(base[index + 2])] &+= 1
            histograms[768 + Int(base[index + 3])] &+= 1
            index += 4
        }
        while index < count {
            histograms[Int(base[index])] &+= 1
            index += 1
        }
        for symbol in 0..<256 {
            histograms[symbol] = histograms[symbol] &+ histograms[256 + symbol] &+ histograms[512 + symbol] &+ histograms[768 + symbol]
        }
    }

    deinit {
        planes.deallocate()
        histograms.deallocate()
        zstdOutput.deallocate()
        decoded.deallocate()
        ZSTD_freeCCtx(zstdCompression)
        ZSTD_freeDCtx(zstdDecompression)
    }
}

/// Encoding and decoding one chunk record (see ``FloatSplitFormat``).
enum ChunkCoding {
    /// The most bytes the record of a chunk of `length` bytes of `dtype` takes: every plane
    /// is stored raw at worst.
    static func recordBound(length: Int, dtype: DType?) -> Int {
        FloatSplitFormat.chunkHeaderSize + FloatSplitFormat.planeHeaderSize * (FloatSplitFormat.layout(of: dtype)?.width ?? 1) + length
    }

    /// Writes the record of `bytes` (whole elements of `dtype`) in `output` (at least
    /// ``recordBound(length:dtype:)`` bytes) and returns where in `output` it lies.
    ///
    /// In trained weights every plane but the exponent's is noise, stored raw. So the planes
    /// are first cut straight into the places they take in a record whose planes are all raw;
    /// when the mantissa planes are raw indeed, only the coded exponent plane is written
    /// again, just before them, and the record starts as many bytes into `output` as its
    /// coding saved. That spares copying the raw planes, most of the chunk (measured: 8% of
    /// the encoding's CPU). Otherwise the record is written from the start of `output`
    /// (``encodeContiguous(_:dtype:level:workspace:into:)``). Both give the same bytes.
    static func encode(
        _ bytes: UnsafeRawBufferPointer, dtype: DType?, level: Int, workspace: ChunkWorkspace, into output: UnsafeMutableRawPointer
    ) throws(CheckpointError) -> Range<Int> {
        guard let layout = FloatSplitFormat.layout(of: dtype), let input = bytes.baseAddress else {
            return 0..<(try encodeContiguous(bytes, dtype: dtype, level: level, workspace: workspace, into: output))
        }
        let width = layout.width, count = bytes.count / width
        let start = FloatSplitFormat.chunkHeaderSize + FloatSplitFormat.planeHeaderSize * width
        let planes = (output + start).assumingMemoryBound(to: UInt8.self)
        layout.split(input, count: count, into: planes)
        func plane(_ number: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: planes + number * count, count: count) }
        guard (1..<width).allSatisfy({ isNoise(plane($0), workspace: workspace) }) else {
            return 0..<(try encodeContiguous(bytes, dtype: dtype, level: level, workspace: workspace, into: output))
        }
        // The exponent plane coded into the workspace, then put right before the raw planes.
        let scratch = workspace.planes.baseAddress!
        let (method, length) = try encodePlane(plane(0), isExponent: true, level: level, workspace: workspace, into: scratch)
        let record = output + (count - length)
        (record + start).copyMemory(from: scratch, byteCount: length)
        writeHeader(bytes, dtype: dtype, planeCount: width, at: record)
        let headers = record + FloatSplitFormat.chunkHeaderSize
        for number in 0..<width {
            let header = headers + FloatSplitFormat.planeHeaderSize * number
            header.storeBytes(of: UInt32((number == 0 ? method : .raw).rawValue).littleEndian, as: UInt32.self)
            header.storeBytes(of: UInt32(number == 0 ? length : count).littleEndian, toByteOffset: 4, as: UInt32.self)
        }
        return (count - length)..<(start + width * count)
    }

    /// The chunk header of the record of `bytes` at `record`.
    private static func writeHeader(_ bytes: UnsafeRawBufferPointer, dtype: DType?, planeCount: Int, at record: UnsafeMutableRawPointer) {
        record.storeBytes(of: FloatSplitFormat.code(of: dtype), toByteOffset: 0, as: UInt8.self)
        record.storeBytes(of: UInt8(planeCount), toByteOffset: 1, as: UInt8.self)
        record.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        record.storeBytes(of: UInt32(bytes.count).littleEndian, toByteOffset: 4, as: UInt32.self)
        record.storeBytes(of: TensorChecksum.of(bytes).littleEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// Writes the record of `bytes` (whole elements of `dtype`) from the start of `output` (at
    /// least ``recordBound(length:dtype:)`` bytes), each plane cut into the workspace first,
    /// and returns its length.
    static func encodeContiguous(
        _ bytes: UnsafeRawBufferPointer, dtype: DType?, level: Int, workspace: ChunkWorkspace, into output: UnsafeMutableRawPointer
    ) throws(CheckpointError) -> Int {
        let layout = FloatSplitFormat.layout(of: dtype)
        let planeCount = layout?.width ?? 1
        writeHeader(bytes, dtype: dtype, planeCount: planeCount, at: output)
        let headers = output + FloatSplitFormat.chunkHeaderSize
        var cursor = headers + FloatSplitFormat.planeHeaderSize * planeCount
        func record(_ plane: Int, _ method: FloatSplitFormat.Method, _ length: Int) {
            let header = headers + FloatSplitFormat.planeHeaderSize * plane
            header.storeBytes(of: UInt32(method.rawValue).littleEndian, as: UInt32.self)
            header.storeBytes(of: UInt32(length).littleEndian, toByteOffset: 4, as: UInt32.self)
            cursor += length
        }
        guard let layout else {
            let (method, length) = try encodeBytes(bytes, level: level, workspace: workspace, into: cursor)
            record(0, method, length)
            return cursor - output
        }
        let count = bytes.count / layout.width
        let planes = workspace.planes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        if let input = bytes.baseAddress { layout.split(input, count: count, into: planes) }
        for plane in 0..<planeCount {
            let (method, length) = try encodePlane(
                UnsafeRawBufferPointer(start: planes + plane * count, count: count), isExponent: plane == 0, level: level,
                workspace: workspace, into: cursor)
            record(plane, method, length)
        }
        return cursor - output
    }

    /// The general codec: zstd, or the bytes raw when zstd does not shrink them.
    private static func encodeBytes(
        _ bytes: UnsafeRawBufferPointer, level: Int, workspace: ChunkWorkspace, into output: UnsafeMutableRawPointer
    ) throws(CheckpointError) -> (FloatSplitFormat.Method, Int) {
        if let length = try zstd(bytes, level: level, workspace: workspace), length < bytes.count {
            output.copyMemory(from: workspace.zstdOutput.baseAddress!, byteCount: length)
            return (.zstd, length)
        }
        if let base = bytes.baseAddress { output.copyMemory(from: base, byteCount: bytes.count) }
        return (.raw, bytes.count)
    }

    /// The smallest of the plane's encodings that are worth their decoding: Huffman when it
    /// saves at least 1/64 of the plane, zstd when Huffman's 1 bit a symbol is the floor.
    private static func encodePlane(
        _ plane: UnsafeRawBufferPointer, isExponent: Bool, level: Int, workspace: ChunkWorkspace, into output: UnsafeMutableRawPointer
    ) throws(CheckpointError) -> (FloatSplitFormat.Method, Int) {
        let count = plane.count
        func raw() -> (FloatSplitFormat.Method, Int) {
            if count > 0 { output.copyMemory(from: plane.baseAddress!, byteCount: count) }
            return (.raw, count)
        }
        guard count > 0, isExponent || !isNoise(plane, workspace: workspace) else { return raw() }
        workspace.count(plane)
        let histogram = workspace.histograms
        var distinct = 0
        for symbol in 0..<256 where histogram[symbol] > 0 { distinct += 1 }
        if distinct == 1 {
            output.storeBytes(of: plane[0], as: UInt8.self)
            return (.constant, 1)
        }
        let code = HuffmanCode(histogram: histogram)
        let huffmanBound = code.payloadBound(histogram: histogram)
        var best: (FloatSplitFormat.Method, Int) = (.raw, count)
        if huffmanBound < count - count / 64 { best = (.huffman, huffmanBound) }
        if huffmanBound < count * 3 / 16, let length = try zstd(plane, level: level, workspace: workspace), length < best.1 {
            output.copyMemory(from: workspace.zstdOutput.baseAddress!, byteCount: length)
            return (.zstd, length)
        }
        switch best.0 {
        case .huffman: return (.huffman, code.encode(plane, into: output, capacity: huffmanBound))
        default: return raw()
        }
    }

    /// Whether a mantissa plane is noise, stored raw: in trained weights they are, and a sample
    /// says so without counting them all.
    private static func isNoise(_ plane: UnsafeRawBufferPointer, workspace: ChunkWorkspace) -> Bool {
        sampledEntropy(plane, workspace: workspace) >= 7.8
    }

    /// Entropy in bits a byte of up to 64 runs of 256 bytes spread over the plane.
    private static func sampledEntropy(_ plane: UnsafeRawBufferPointer, workspace: ChunkWorkspace) -> Double {
        let runs = 64, run = 256
        guard plane.count > runs * run * 2 else {
            workspace.count(plane)
            return entropy(workspace.histograms, total: plane.count)
        }
        let sample = UnsafeMutableRawBufferPointer(rebasing: workspace.zstdOutput[0..<(runs * run)])
        let step = (plane.count - run) / (runs - 1)
        for index in 0..<runs {
            UnsafeMutableRawBufferPointer(rebasing: sample[(index * run)..<((index + 1) * run)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: plane[(index * step)..<(index * step + run)]))
        }
        workspace.count(UnsafeRawBufferPointer(sample))
        return entropy(workspace.histograms, total: runs * run)
    }

    private static func entropy(_ histogram: UnsafePointer<UInt32>, total: Int) -> Double {
        var bits = 0.0
        for symbol in 0..<256 where histogram[symbol] > 0 {
            let p = Double(histogram[symbol]) / Double(total)
            bits -= p * log2(p)
        }
        return bits
    }

    /// `bytes` as one zstd frame in the workspace, `nil` when zstd cannot help.
    private static func zstd(_ bytes: UnsafeRawBufferPointer, level: Int, workspace: ChunkWorkspace) throws(CheckpointError) -> Int? {
        guard !bytes.isEmpty else { return nil }
        let context = try workspace.compressionContext()
        let result = ZSTD_compressCCtx(
            context, workspace.zstdOutput.baseAddress, workspace.zstdOutput.count, bytes.baseAddress, bytes.count, Int32(level))
        guard ZSTD_isError(result) == 0 else {
            throw CodecErrors.library(.floatSplit, "compressing a chunk with zstd", String(cString: ZSTD_getErrorName(result)))
        }
        return result
    }

    /// Decodes the record of `entry` (bytes `record` of the stream, starting at stream offset
    /// `entry.recordOffset`) into `output` (`entry.decodedLength` bytes), checking everything
    /// the record says against the index and the checksum of the result.
    static func decode(
        _ record: UnsafeRawBufferPointer, entry: FloatSplitFormat.IndexEntry, workspace: ChunkWorkspace,
        into output: UnsafeMutableRawPointer
    ) throws(CheckpointError) {
        let at = entry.recordOffset
        guard record.count >= FloatSplitFormat.chunkHeaderSize else {
            throw FloatSplitFormat.corrupt("a chunk record of \(record.count) bytes is shorter than its header", at: at)
        }
        let dtypeCode = record[0]
        guard dtypeCode == entry.dtypeCode, case .some(let dtype) = FloatSplitFormat.dtype(ofCode: dtypeCode) else {
            throw FloatSplitFormat.corrupt("the chunk's dtype code \(dtypeCode) does not match the index's \(entry.dtypeCode)", at: at)
        }
        let layout = FloatSplitFormat.layout(of: dtype)
        let planeCount = Int(record[1])
        let decodedLength = Int(FloatSplitFormat.u32(record, 4))
        guard planeCount == (layout?.width ?? 1), decodedLength == entry.decodedLength else {
            throw FloatSplitFormat.corrupt(
                "the chunk header (\(planeCount) planes, \(decodedLength) bytes) does not match the index (\(entry.decodedLength) bytes of dtype code \(dtypeCode))",
                at: at)
        }
        let recorded = FloatSplitFormat.u64(record, 8)
        var payloadOffset = FloatSplitFormat.chunkHeaderSize + FloatSplitFormat.planeHeaderSize * planeCount
        guard record.count >= payloadOffset else {
            throw FloatSplitFormat.corrupt("the chunk's plane headers run past its record", at: at)
        }
        let count = decodedLength / (layout?.width ?? 1)
        let planes = layout == nil ? output.assumingMemoryBound(to: UInt8.self) : workspace.planes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        guard layout == nil || workspace.planes.count >= decodedLength else {
            throw FloatSplitFormat.corrupt("a chunk of \(decodedLength) bytes is larger than the index allows", at: at)
        }
        // Raw planes are merged from the record itself, without a copy.
        var sources: [UnsafePointer<UInt8>] = []
        for plane in 0..<planeCount {
            let header = FloatSplitFormat.chunkHeaderSize + FloatSplitFormat.planeHeaderSize * plane
            let methodCode = record[header]
            let length = Int(FloatSplitFormat.u32(record, header + 4))
            guard let method = FloatSplitFormat.Method(rawValue: methodCode) else {
                throw FloatSplitFormat.corrupt("plane \(plane) has an unknown method \(methodCode)", at: at + header)
            }
            guard length <= record.count - payloadOffset else {
                throw FloatSplitFormat.corrupt("plane \(plane) claims \(length) bytes, past the end of its chunk", at: at + header)
            }
            let payload = UnsafeRawBufferPointer(rebasing: record[payloadOffset..<(payloadOffset + length)])
            if layout != nil, method == .raw, length == count, let base = payload.baseAddress {
                sources.append(base.assumingMemoryBound(to: UInt8.self))
            } else {
                try decodePlane(payload, method: method, count: count, workspace: workspace, into: planes + plane * count, at: at + payloadOffset)
                sources.append(planes + plane * count)
            }
            payloadOffset += length
        }
        guard payloadOffset == record.count else {
            throw FloatSplitFormat.corrupt("the chunk's planes end \(record.count - payloadOffset) bytes before its record does", at: at)
        }
        layout?.merge(sources, count: count, into: output)
        let actual = TensorChecksum.of(UnsafeRawBufferPointer(start: output, count: decodedLength))
        guard actual == recorded else {
            throw FloatSplitFormat.corrupt(
                "a chunk decodes to bytes that hash to \(TensorChecksum.hex(actual)), not the \(TensorChecksum.hex(recorded)) it records", at: at)
        }
    }

    private static func decodePlane(
        _ payload: UnsafeRawBufferPointer, method: FloatSplitFormat.Method, count: Int, workspace: ChunkWorkspace,
        into output: UnsafeMutablePointer<UInt8>, at offset: Int
    ) throws(CheckpointError) {
        switch method {
        case .raw:
            guard payload.count == count else {
                throw FloatSplitFormat.corrupt("a raw plane holds \(payload.count) bytes, not \(count)", at: offset)
            }
            if count > 0 { UnsafeMutableRawPointer(output).copyMemory(from: payload.baseAddress!, byteCount: count) }
        case .constant:
            guard payload.count == 1 else { throw FloatSplitFormat.corrupt("a constant plane is not 1 byte", at: offset) }
            output.initialize(repeating: payload[0], count: count)
        case .huffman:
            guard HuffmanCode.decode(payload, count: count, into: output) else {
                throw FloatSplitFormat.corrupt("a Huffman-coded plane does not decode", at: offset)
            }
        case .zstd:
            let size = ZSTD_getFrameContentSize(payload.baseAddress, payload.count)
            guard size == UInt64(count) else {
                throw FloatSplitFormat.corrupt("a zstd plane does not declare the plane's \(count) bytes", at: offset)
            }
            let context = try workspace.decompressionContext()
            let result = ZSTD_decompressDCtx(context, output, count, payload.baseAddress, payload.count)
            guard ZSTD_isError(result) == 0, result == count else {
                throw FloatSplitFormat.corrupt("a zstd plane does not decode (\(ZSTD_isError(result) != 0 ? String(cString: ZSTD_getErrorName(result)) : "\(result) bytes"))", at: offset)
            }
        }
    }
}
