/// The byte layout of a zip archive in torch's style, computed before anything is written.
///
/// Each record gets a local header whose extra field holds, when needed, a zip64 field and then
/// torch's `FB` padding, so that its data starts on a 64-byte boundary; the data; a data
/// descriptor with the CRC-32 and sizes (none for an empty record). Then the central directory,
/// the zip64 end record and locator (always, as torch writes them) and the end record. Knowing
/// every offset in advance gives the file's exact size, and lets the archive stream to a sink
/// that cannot seek (a compressor, an upload): nothing is patched afterwards.
struct ZipPlan {
    struct Record {
        var name: [UInt8]
        var size: Int
        var localHeaderOffset: Int
        /// Whether the local zip64 field holds the sizes (size >= 0xFFFFFFFF) and the offset.
        var zip64Sizes: Bool
        var zip64Offset: Bool
        var padding: Int
        var dataOffset: Int
        var descriptorSize: Int

        var localExtraLength: Int { (zip64Sizes || zip64Offset ? 4 + (zip64Sizes ? 16 : 0) + (zip64Offset ? 8 : 0) : 0) + 4 + padding }
        var end: Int { dataOffset + size + descriptorSize }
        var centralZip64Length: Int {
            zip64Sizes || zip64Offset ? 4 + (zip64Sizes ? 16 : 0) + (zip64Offset ? 8 : 0) : 0
        }
    }

    var records: [Record]
    var centralDirectoryOffset: Int
    var centralDirectorySize: Int
    var totalSize: Int

    /// Lays out records of these names and sizes, in this order. Sizes and offsets at or
    /// above `zip64Threshold` use the zip64 forms (tests lower it to cover them on small files).
    init(_ entries: [(name: String, size: Int)], zip64Threshold: Int = ZipLayout.zip64Threshold) {
        records = []
        records.reserveCapacity(entries.count)
        var cursor = 0
        for (name, size) in entries {
            let nameBytes = Array(name.utf8)
            let zip64Sizes = size >= zip64Threshold
            let zip64Offset = cursor >= zip64Threshold
            // torch's getPadding: where the data would start with an empty FB field.
            var start = cursor + ZipLayout.localHeaderSize + nameBytes.count + 4
            if zip64Sizes || zip64Offset { start += 4 + (zip64Sizes ? 16 : 0) + (zip64Offset ? 8 : 0) }
            let padding = (ZipLayout.alignment - start % ZipLayout.alignment) % ZipLayout.alignment
            let descriptorSize =
                size == 0 ? 0 : (zip64Sizes || zip64Offset ? ZipLayout.descriptorSize64 : ZipLayout.descriptorSize32)
            let record = Record(
                name: nameBytes, size: size, localHeaderOffset: cursor, zip64Sizes: zip64Sizes,
                zip64Offset: zip64Offset, padding: padding, dataOffset: start + padding, descriptorSize: descriptorSize)
            records.append(record)
            cursor = record.end
        }
        centralDirectoryOffset = cursor
        centralDirectorySize = records.reduce(0) { $0 + ZipLayout.centralHeaderSize + $1.name.count + $1.centralZip64Length }
        totalSize = cursor + centralDirectorySize + ZipLayout.zip64EndRecordSize + ZipLayout.zip64LocatorSize
            + ZipLayout.endRecordSize
    }

    func localHeader(_ record: Record) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ZipLayout.localHeaderSize + record.name.count + record.localExtraLength)
        bytes.appendLittleEndian(ZipSignature.localHeader)
        bytes.appendLittleEndian(UInt16(0))  // version needed, as torch writes it
        bytes.appendLittleEndian(record.size == 0 ? ZipLayout.flagsWithoutDescriptor : ZipLayout.flagsWithDescriptor)
        bytes.appendLittleEndian(UInt16(0))  // stored
        bytes.appendLittleEndian(UInt32(0))  // time and date
        bytes.appendLittleEndian(UInt32(0))  // CRC-32 and sizes: in the data descriptor
        bytes.appendLittleEndian(UInt32(0))
        bytes.appendLittleEndian(UInt32(0))
        bytes.appendLittleEndian(UInt16(record.name.count))
        bytes.appendLittleEndian(UInt16(record.localExtraLength))
        bytes += record.name
        if record.zip64Sizes || record.zip64Offset {
            bytes.appendLittleEndian(ZipLayout.zip64ExtraID)
            bytes.appendLittleEndian(UInt16((record.zip64Sizes ? 16 : 0) + (record.zip64Offset ? 8 : 0)))
            if record.zip64Sizes {
                bytes.appendLittleEndian(UInt64(record.size))
                bytes.appendLittleEndian(UInt64(record.size))
            }
            if record.zip64Offset { bytes.appendLittleEndian(UInt64(record.localHeaderOffset)) }
        }
        bytes.appendLittleEndian(ZipLayout.paddingExtraID)
        bytes.appendLittleEndian(UInt16(record.padding))
        bytes += repeatElement(UInt8(ascii: "Z"), count: record.padding)
        return bytes
    }

    func descriptor(_ record: Record, crc: UInt32) -> [UInt8] {
        var bytes: [UInt8] = []
        guard record.descriptorSize > 0 else { return bytes }
        bytes.appendLittleEndian(ZipSignature.dataDescriptor)
        bytes.appendLittleEndian(crc)
        if record.descriptorSize == ZipLayout.descriptorSize64 {
            bytes.appendLittleEndian(UInt64(record.size))
            bytes.appendLittleEndian(UInt64(record.size))
        } else {
            bytes.appendLittleEndian(UInt32(record.size))
            bytes.appendLittleEndian(UInt32(record.size))
        }
        return bytes
    }

    /// The central directory and end records, given each record's CRC-32.
    func trailer(crcs: [UInt32]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(totalSize - centralDirectoryOffset)
        let limit = UInt32(ZipLayout.zip64Threshold)
        for (record, crc) in zip(records, crcs) {
            bytes.appendLittleEndian(ZipSignature.centralHeader)
            bytes.appendLittleEndian(UInt16(0))  // version made by, as torch writes it
            bytes.appendLittleEndian(UInt16(0))  // version needed
            bytes.appendLittleEndian(record.size == 0 ? ZipLayout.flagsWithoutDescriptor : ZipLayout.flagsWithDescriptor)
            bytes.appendLittleEndian(UInt16(0))  // stored
            bytes.appendLittleEndian(UInt32(0))  // time and date
            bytes.appendLittleEndian(crc)
            let size = record.zip64Sizes ? limit : UInt32(record.size)
            bytes.appendLittleEndian(size)
            bytes.appendLittleEndian(size)
            bytes.appendLittleEndian(UInt16(record.name.count))
            bytes.appendLittleEndian(UInt16(record.centralZip64Length))
            bytes.appendLittleEndian(UInt16(0))  // comment
            bytes.appendLittleEndian(UInt16(0))  // disk
            bytes.appendLittleEndian(UInt16(0))  // internal attributes
            bytes.appendLittleEndian(UInt32(0))  // external attributes
            bytes.appendLittleEndian(record.zip64Offset ? limit : UInt32(record.localHeaderOffset))
            bytes += record.name
            if record.centralZip64Length > 0 {
                bytes.appendLittleEndian(ZipLayout.zip64ExtraID)
                bytes.appendLittleEndian(UInt16(record.centralZip64Length - 4))
                if record.zip64Sizes {
                    bytes.appendLittleEndian(UInt64(record.size))
                    bytes.appendLittleEndian(UInt64(record.size))
                }
                if record.zip64Offset { bytes.appendLittleEndian(UInt64(record.localHeaderOffset)) }
            }
        }
        let zip64EndOffset = centralDirectoryOffset + centralDirectorySize
        bytes.appendLittleEndian(ZipSignature.zip64EndRecord)
        bytes.appendLittleEndian(UInt64(ZipLayout.zip64EndRecordSize - 12))
        bytes.appendLittleEndian(UInt16(0x031E))  // made by: Unix, zip 3.0 (as miniz writes it)
        bytes.appendLittleEndian(UInt16(0x002D))  // needs zip 4.5: zip64
        bytes.appendLittleEndian(UInt32(0))
        bytes.appendLittleEndian(UInt32(0))
        bytes.appendLittleEndian(UInt64(records.count))
        bytes.appendLittleEndian(UInt64(records.count))
        bytes.appendLittleEndian(UInt64(centralDirectorySize))
        bytes.appendLittleEndian(UInt64(centralDirectoryOffset))
        bytes.appendLittleEndian(ZipSignature.zip64Locator)
        bytes.appendLittleEndian(UInt32(0))
        bytes.appendLittleEndian(UInt64(zip64EndOffset))
        bytes.appendLittleEndian(UInt32(1))
        bytes.appendLittleEndian(ZipSignature.endRecord)
        bytes.appendLittleEndian(UInt16(0))
        bytes.appendLittleEndian(UInt16(0))
        bytes.appendLittleEndian(UInt16(min(records.count, 0xFFFF)))
        bytes.appendLittleEndian(UInt16(min(records.count, 0xFFFF)))
        bytes.appendLittleEndian(UInt32(min(centralDirectorySize, ZipLayout.zip64Threshold)))
        bytes.appendLittleEndian(UInt32(min(centralDirectoryOffset, ZipLayout.zip64Threshold)))
        bytes.appendLittleEndian(UInt16(0))  // comment
        return bytes
    }
}

/// Streams the records of a ``ZipPlan`` to a sink, computing each record's CRC-32 as its bytes
/// are written.
final class ZipStreamWriter {
    private let plan: ZipPlan
    private let sink: any ByteSink
    private let start: Int
    /// The CRC-32 of each record written so far.
    private(set) var crcs: [UInt32] = []
    private var helper: ConcurrentCRC32?

    /// Records at least this large have their CRC-32 computed on a second thread, chunk by
    /// chunk, while the chunks are written; smaller ones on the writing thread.
    static let concurrentThreshold = 1 << 20
    /// The write (and CRC) granularity: the native writer's, so the two compare like for like.
    static let chunkSize = 4 << 20

    init(plan: ZipPlan, sink: any ByteSink) {
        self.plan = plan
        self.sink = sink
        self.start = sink.position
        crcs.reserveCapacity(plan.records.count)
    }

    deinit { helper?.stop() }

    /// Writes the next record, whose bytes `body` hands out in order as one or more pieces.
    func writeRecord(
        _ body: ((UnsafeRawBufferPointer) throws(CheckpointError) -> Void) throws(CheckpointError) -> Void
    ) throws(CheckpointError) {
        let record = plan.records[crcs.count]
        precondition(sink.position - start == record.localHeaderOffset, "the zip plan and the bytes written disagree")
        try sink.write(plan.localHeader(record))
        var crc: UInt32 = 0
        var written = 0
        try body { (piece) throws(CheckpointError) in
            written += piece.count
            guard written <= record.size else {
                throw CheckpointError(.invalidArgument, "record \"\(String(decoding: record.name, as: UTF8.self))\" grew while it was written")
            }
            crc = try self.write(piece, crc: crc, large: record.size >= Self.concurrentThreshold)
        }
        guard written == record.size else {
            throw CheckpointError(.invalidArgument, "record \"\(String(decoding: record.name, as: UTF8.self))\" shrank while it was written")
        }
        try sink.write(plan.descriptor(record, crc: crc))
        crcs.append(crc)
    }

    /// Writes the next record from an array.
    func writeRecord(_ bytes: [UInt8]) throws(CheckpointError) {
        try rethrowingCheckpointError {
            try bytes.withUnsafeBytes { raw in try writeRecord { (write) throws(CheckpointError) in try write(raw) } }
        }
    }

    /// Writes the central directory and end records, and returns them.
    @discardableResult
    func finish() throws(CheckpointError) -> [UInt8] {
        precondition(crcs.count == plan.records.count, "not every record of the zip plan was written")
        let trailer = plan.trailer(crcs: crcs)
        try sink.write(trailer)
        precondition(sink.position - start == plan.totalSize, "the zip plan and the bytes written disagree")
        return trailer
    }

    private func write(_ bytes: UnsafeRawBufferPointer, crc: UInt32, large: Bool) throws(CheckpointError) -> UInt32 {
        guard large else {
            try sink.write(bytes)
            return CRC32.update(crc, bytes)
        }
        let helper = self.helper ?? ConcurrentCRC32()
        self.helper = helper
        var crc = crc
        try bytes.forEachChunk(ofAtMost: Self.chunkSize) { (chunk) throws(CheckpointError) in
            helper.start(crc, chunk)
            do throws(CheckpointError) {
                try sink.write(chunk)
            } catch {
                _ = helper.finish()
                throw error
            }
            crc = helper.finish()
        }
        return crc
    }
}
