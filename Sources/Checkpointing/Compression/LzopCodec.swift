internal import CLZO
internal import CZlib

/// The `lzop` file format over liblzo2's LZO1X-1.
///
/// No library writes lzop's container, so it is written here by hand (its layout is in the DocC article "The formats on disk"), with
/// the header rules checked against lzop 1.04's reader: magic, a big-endian header (version,
/// library version, version needed to extract, method, level, flags, mode, mtime, name) whose
/// Adler-32 (or CRC-32, with flag `F_H_CRC32`) covers every header byte after the magic, then
/// blocks of (uncompressed size, compressed size, checksums, data) ending with a zero size.
/// A block that does not shrink is stored as is, with equal sizes. `lzop -t` accepts the
/// result (the tests run it). Single-threaded: lzop's blocks could be spread over threads, but
/// LZO1X-1 already compresses faster than a disk writes.
enum LzopCodec: StreamCodec {
    static let magic: [UInt8] = [0x89, 0x4C, 0x5A, 0x4F, 0x00, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Header flags (lzop's `F_*`).
    enum Flag {
        static let adler32Data: UInt32 = 0x0001
        static let adler32Compressed: UInt32 = 0x0002
        static let extraField: UInt32 = 0x0040
        static let crc32Data: UInt32 = 0x0100
        static let crc32Compressed: UInt32 = 0x0200
        static let filter: UInt32 = 0x0800
        static let headerCRC32: UInt32 = 0x1000
        /// Flags lzop 1.04 does not define: a file with any of them needs a newer reader.
        static let reserved: UInt32 = 0x000F_C000
        static let unixOS: UInt32 = 0x0300_0000
    }

    /// lzop's methods: LZO1X-1, LZO1X-1(15) and LZO1X-999 all decompress with LZO1X.
    static let readableMethods: Set<UInt8> = [1, 2, 3]
    /// The block size lzop writes.
    static let blockSize = 256 << 10
    /// The largest block lzop reads: a bigger size is a damaged (or hostile) header.
    static let maximumBlockSize = 64 << 20
    /// The version lzop 1.04 writes and reads up to.
    static let version: UInt16 = 0x1040

    /// `lzo_init` checks that the library matches its header; once per process.
    private static let libraryReady: Bool = clzo_init() == LZO_E_OK

    static func compressor(into sink: any ByteSink, level: Int, threads: Int) throws(CheckpointError) -> any StreamTransform {
        try Compressor(sink: sink)
    }

    static func decompressor(into sink: any ByteSink) throws(CheckpointError) -> any StreamTransform {
        try Decompressor(sink: sink)
    }

    private static func checkLibrary() throws(CheckpointError) {
        guard libraryReady else {
            throw CodecErrors.library(.lzop, "lzo_init", "liblzo2 does not match the header it was built against")
        }
    }

    static func adler32(_ bytes: UnsafeRawBufferPointer, _ start: UInt32 = 1) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return start }
        return UInt32(CZlib.adler32(uLong(start), base.assumingMemoryBound(to: Bytef.self), uInt(bytes.count)))
    }

    static func crc32(_ bytes: UnsafeRawBufferPointer, _ start: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return start }
        return UInt32(CZlib.crc32(uLong(start), base.assumingMemoryBound(to: Bytef.self), uInt(bytes.count)))
    }

    final class Compressor: StreamTransform {
        private let sink: any ByteSink
        /// Input waiting for a full block.
        private let block = CodecBuffer(capacity: LzopCodec.blockSize)
        private var blockCount = 0
        private let output = CodecBuffer(capacity: 12 + LzopCodec.blockSize + LzopCodec.blockSize / 16 + 64 + 3)
        private let workMemory: UnsafeMutableRawPointer
        private(set) var position = 0

        init(sink: any ByteSink) throws(CheckpointError) {
            try LzopCodec.checkLibrary()
            self.sink = sink
            workMemory = UnsafeMutableRawPointer.allocate(byteCount: Int(clzo1x_1_work_memory_size()), alignment: 64)
            var header: [UInt8] = []
            header.appendBigEndian(LzopCodec.version)
            header.appendBigEndian(UInt16(truncatingIfNeeded: lzo_version()))
            header.appendBigEndian(UInt16(0x0940))  // version needed to extract: no filter, no CRC-32 header
            header.append(1)  // method: LZO1X-1
            header.append(5)  // level: what lzop records for LZO1X-1 (-2 to -6)
            header.appendBigEndian(Flag.adler32Data | Flag.adler32Compressed | Flag.unixOS)
            header.appendBigEndian(UInt32(0o100644))  // mode: a regular file, rw-r--r--
            header.appendBigEndian(UInt32(0))  // mtime, low and high: unknown, as zlib's gzip header
            header.appendBigEndian(UInt32(0))
            header.append(0)  // no name: `lzop -d` names the output after the file
            let checksum = header.withUnsafeBytes { LzopCodec.adler32($0) }
            header.appendBigEndian(checksum)
            try sink.write(LzopCodec.magic + header)
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            var offset = 0
            while offset < bytes.count {
                if blockCount == 0 && bytes.count - offset >= LzopCodec.blockSize {
                    // A whole block in the input: compress it where it is.
                    try compressBlock(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + LzopCodec.blockSize)]))
                    offset += LzopCodec.blockSize
                    continue
                }
                let count = min(LzopCodec.blockSize - blockCount, bytes.count - offset)
                (block.start + blockCount).copyMemory(from: bytes.baseAddress! + offset, byteCount: count)
                blockCount += count
                offset += count
                if blockCount == LzopCodec.blockSize {
                    try compressBlock(UnsafeRawBufferPointer(start: block.start, count: blockCount))
                    blockCount = 0
                }
            }
            position += bytes.count
        }

        func finish() throws(CheckpointError) {
            if blockCount > 0 {
                try compressBlock(UnsafeRawBufferPointer(start: block.start, count: blockCount))
                blockCount = 0
            }
            try sink.write([0, 0, 0, 0])
        }

        private func compressBlock(_ data: UnsafeRawBufferPointer) throws(CheckpointError) {
            let headerSize = 16
            var compressedCount: lzo_uint = 0
            let result = lzo1x_1_compress(
                data.baseAddress!.assumingMemoryBound(to: UInt8.self), lzo_uint(data.count),
                (output.start + headerSize).assumingMemoryBound(to: UInt8.self), &compressedCount, workMemory)
            guard result == LZO_E_OK else {
                throw CodecErrors.library(.lzop, "lzo1x_1_compress", "error \(result)")
            }
            let stored = Int(compressedCount) >= data.count
            let payload = stored ? data : UnsafeRawBufferPointer(start: output.start + headerSize, count: Int(compressedCount))
            var header: [UInt8] = []
            header.reserveCapacity(headerSize)
            header.appendBigEndian(UInt32(data.count))
            header.appendBigEndian(UInt32(payload.count))
            header.appendBigEndian(LzopCodec.adler32(data))
            if !stored { header.appendBigEndian(LzopCodec.adler32(payload)) }
            if stored {
                try sink.write(header)
                try sink.write(data)
            } else {
                // The header goes right before the compressed bytes: one write per block.
                let start = output.start + headerSize - header.count
                header.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: header.count) }
                try sink.write(UnsafeRawBufferPointer(start: start, count: header.count + payload.count))
            }
        }

        deinit { workMemory.deallocate() }
    }

    /// Parses an lzop file as it arrives: each step says how many bytes it needs next, and
    /// those bytes are handed over in one piece (straight from the input when they are all
    /// there, else gathered in `pending`), so memory stays bounded by one block.
    final class Decompressor: StreamTransform {
        private enum Step {
            /// Magic, version, library version, version needed, method, level, flags.
            case lead
            /// Filter (when flagged), mode, mtime, name length.
            case fields
            /// Name, then the header checksum.
            case name(length: Int)
            case extraLength
            case extra(length: Int)
            case blockSize
            case compressedSize(uncompressed: Int)
            case checksums(uncompressed: Int, compressed: Int)
            case data(uncompressed: Int, compressed: Int, dataChecksum: UInt32?, compressedChecksum: UInt32?)
            /// After the end marker: only another lzop file may follow.
            case end

            var need: Int {
                switch self {
                case .lead: 21
                case .fields: 13
                case .name(let length): length + 4
                case .extraLength: 4
                case .extra(let length): length + 4
                case .blockSize: 4
                case .compressedSize: 4
                case .checksums: 0
                case .data(_, let compressed, _, _): compressed
                case .end: 9
                }
            }
        }

        private let sink: any ByteSink
        private var step = Step.lead
        private var pending: [UInt8] = []
        private var flags: UInt32 = 0
        private var headerAdler: UInt32 = 1
        private var headerCRC: UInt32 = 0
        private var output = CodecBuffer(capacity: LzopCodec.blockSize)
        /// Input offset of the step being parsed, for messages.
        private var stepOffset = 0
        private(set) var position = 0

        init(sink: any ByteSink) throws(CheckpointError) {
            try LzopCodec.checkLibrary()
            self.sink = sink
        }

        private var checksumBytes: (data: Int, compressed: Int) {
            let data = (flags & Flag.adler32Data != 0 ? 4 : 0) + (flags & Flag.crc32Data != 0 ? 4 : 0)
            let compressed = (flags & Flag.adler32Compressed != 0 ? 4 : 0) + (flags & Flag.crc32Compressed != 0 ? 4 : 0)
            return (data, compressed)
        }

        private func need(for step: Step) -> Int {
            if case .checksums(let uncompressed, let compressed) = step {
                let sizes = checksumBytes
                return sizes.data + (compressed < uncompressed ? sizes.compressed : 0)
            }
            return step.need
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
            var offset = 0
            while offset < bytes.count || need(for: step) == 0 {
                let need = need(for: step)
                if pending.isEmpty && bytes.count - offset >= need {
                    let piece = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + need)])
                    offset += need
                    try advance(piece, endingAt: position + offset)
                    continue
                }
                let count = min(need - pending.count, bytes.count - offset)
                pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]))
                offset += count
                if pending.count == need {
                    let gathered = pending
                    pending.removeAll(keepingCapacity: true)
                    let end = position + offset
                    try rethrowingCheckpointError { try gathered.withUnsafeBytes { try advance($0, endingAt: end) } }
                }
            }
            position += bytes.count
        }

        func finish() throws(CheckpointError) {
            guard case .end = step, pending.isEmpty else {
                throw CodecErrors.truncated(.lzop, after: position)
            }
        }

        private func corrupt(_ detail: String) -> CheckpointError {
            CodecErrors.corrupt(.lzop, detail, at: stepOffset)
        }

        /// Consumes the bytes the current step needs and moves to the next step.
        private func advance(_ piece: UnsafeRawBufferPointer, endingAt end: Int) throws(CheckpointError) {
            stepOffset = end - piece.count
            var reader = BigEndianReader(piece)
            switch step {
            case .lead, .end:
                guard piece.prefix(9).elementsEqual(LzopCodec.magic) else {
                    if case .end = step { throw CodecErrors.trailingData(.lzop, at: stepOffset) }
                    throw corrupt("bad magic number")
                }
                if case .end = step {
                    // Another lzop file follows: read its header.
                    pending = Array(piece)
                    step = .lead
                    return
                }
                let fields = UnsafeRawBufferPointer(rebasing: piece[9...])
                headerAdler = LzopCodec.adler32(fields)
                headerCRC = LzopCodec.crc32(fields)
                reader.skip(9)
                let version = reader.u16()
                _ = reader.u16()  // library version
                let needed = reader.u16()
                let method = reader.u8()
                _ = reader.u8()  // level
                flags = reader.u32()
                guard version >= 0x0940 else {
                    throw CheckpointError(
                        .unsupportedFormat,
                        "the lzop file was written by lzop older than 0.94 (1997), whose header this library does not read; decompress it with lzop -d")
                }
                guard needed <= LzopCodec.version else {
                    throw CheckpointError(
                        .unsupportedFormat,
                        "the lzop file needs lzop \(String(needed, radix: 16)) to extract; this library reads what lzop 1.04 reads")
                }
                guard LzopCodec.readableMethods.contains(method) else {
                    throw corrupt("unknown compression method \(method)")
                }
                guard flags & Flag.reserved == 0 else { throw corrupt("unknown header flags 0x\(String(flags, radix: 16))") }
                guard flags & Flag.filter == 0 else {
                    throw CheckpointError(
                        .unsupportedFormat,
                        "the lzop file uses a filter (lzop -F), which this library does not undo; decompress it with lzop -d")
                }
                step = .fields
            case .fields:
                headerAdler = LzopCodec.adler32(piece, headerAdler)
                headerCRC = LzopCodec.crc32(piece, headerCRC)
                step = .name(length: Int(piece[piece.count - 1]))
            case .name(let length):
                let name = UnsafeRawBufferPointer(rebasing: piece[..<length])
                headerAdler = LzopCodec.adler32(name, headerAdler)
                headerCRC = LzopCodec.crc32(name, headerCRC)
                reader.skip(length)
                let recorded = reader.u32()
                let expected = flags & Flag.headerCRC32 != 0 ? headerCRC : headerAdler
                guard recorded == expected else { throw corrupt("the header checksum does not match") }
                step = flags & Flag.extraField != 0 ? .extraLength : .blockSize
            case .extraLength:
                let length = Int(reader.u32())
                // lzop never writes an extra field; a large one is damage.
                guard length <= 1 << 16 else { throw corrupt("an extra header field of \(length) bytes") }
                headerAdler = LzopCodec.adler32(piece)
                headerCRC = LzopCodec.crc32(piece)
                step = .extra(length: length)
            case .extra(let length):
                let field = UnsafeRawBufferPointer(rebasing: piece[..<length])
                let expected = flags & Flag.headerCRC32 != 0 ? LzopCodec.crc32(field, headerCRC) : LzopCodec.adler32(field, headerAdler)
                reader.skip(length)
                guard reader.u32() == expected else { throw corrupt("the extra header field's checksum does not match") }
                step = .blockSize
            case .blockSize:
                let uncompressed = Int(reader.u32())
                if uncompressed == 0 {
                    step = .end
                    return
                }
                guard uncompressed <= LzopCodec.maximumBlockSize else {
                    throw corrupt("a block claims \(uncompressed) bytes, more than lzop's limit of \(LzopCodec.maximumBlockSize)")
                }
                step = .compressedSize(uncompressed: uncompressed)
            case .compressedSize(let uncompressed):
                let compressed = Int(reader.u32())
                guard compressed > 0, compressed <= uncompressed else {
                    throw corrupt("a block's compressed size (\(compressed)) is not between 1 and its size (\(uncompressed))")
                }
                step = .checksums(uncompressed: uncompressed, compressed: compressed)
            case .checksums(let uncompressed, let compressed):
                // Adler-32 and CRC-32 may both be present; lzop checks the Adler-32 when both are.
                let sizes = checksumBytes
                var dataChecksum: UInt32?
                var compressedChecksum: UInt32?
                if sizes.data > 0 {
                    dataChecksum = reader.u32()
                    if sizes.data == 8 { _ = reader.u32() }
                }
                if compressed < uncompressed && sizes.compressed > 0 {
                    compressedChecksum = reader.u32()
                    if sizes.compressed == 8 { _ = reader.u32() }
                }
                step = .data(
                    uncompressed: uncompressed, compressed: compressed, dataChecksum: dataChecksum,
                    compressedChecksum: compressedChecksum)
            case .data(let uncompressed, let compressed, let dataChecksum, let compressedChecksum):
                try decodeBlock(
                    piece, uncompressed: uncompressed, stored: compressed == uncompressed, dataChecksum: dataChecksum,
                    compressedChecksum: compressedChecksum)
                step = .blockSize
            }
        }

        private func checksum(_ bytes: UnsafeRawBufferPointer, adler: Bool) -> UInt32 {
            adler ? LzopCodec.adler32(bytes) : LzopCodec.crc32(bytes)
        }

        private func decodeBlock(
            _ piece: UnsafeRawBufferPointer, uncompressed: Int, stored: Bool, dataChecksum: UInt32?, compressedChecksum: UInt32?
        ) throws(CheckpointError) {
            if let compressedChecksum,
                checksum(piece, adler: flags & Flag.adler32Compressed != 0) != compressedChecksum
            {
                throw corrupt("a block's compressed bytes do not match their checksum")
            }
            var data = piece
            if !stored {
                if output.capacity < uncompressed { output = CodecBuffer(capacity: uncompressed) }
                var produced = lzo_uint(uncompressed)
                let result = lzo1x_decompress_safe(
                    piece.baseAddress!.assumingMemoryBound(to: UInt8.self), lzo_uint(piece.count),
                    output.start.assumingMemoryBound(to: UInt8.self), &produced, nil)
                guard result == LZO_E_OK, Int(produced) == uncompressed else {
                    throw corrupt("a block does not decompress (LZO error \(result))")
                }
                data = UnsafeRawBufferPointer(start: output.start, count: uncompressed)
            }
            if let dataChecksum, checksum(data, adler: flags & Flag.adler32Data != 0) != dataChecksum {
                throw corrupt("a block's data does not match its checksum")
            }
            try sink.write(data)
        }
    }
}

/// Reads big-endian integers from bytes whose length was checked first.
struct BigEndianReader {
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func skip(_ count: Int) { offset += count }

    mutating func u8() -> UInt8 {
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16() -> UInt16 { UInt16(u8()) << 8 | UInt16(u8()) }

    mutating func u32() -> UInt32 { UInt32(u16()) << 16 | UInt32(u16()) }
}

extension [UInt8] {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}
