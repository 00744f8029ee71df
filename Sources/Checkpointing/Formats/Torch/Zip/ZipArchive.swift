#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A zip archive as torch writes it, read from a memory-mapped file (its layout is in the DocC
/// article "The formats on disk").
///
/// Sizes and offsets come from the central directory (zip64 where needed), never from local
/// headers or data descriptors; every offset and length is checked against the file before it
/// is used, entries may not overlap, and a record's bytes are handed out as a slice of the
/// mapping, without copying. Every entry is `<archive>/<record>`, where `<archive>` is any
/// single folder name, taken from the first entry.
final class ZipArchive: Sendable {
    struct Entry: Sendable {
        /// The name without the archive folder: `data.pkl`, `data/0`, `version`.
        var record: String
        var localHeaderOffset: Int
        var dataOffset: Int
        var size: Int
        var crc32: UInt32
    }

    let file: MappedFile
    /// The archive folder every entry sits in (`archive`, or the saved file's base name).
    let folder: String
    /// The entries in central-directory order.
    let entries: [Entry]
    private let index: [String: Int]
    /// XXH3-64 of the central directory, which holds every record's CRC-32.
    let directoryDigest: UInt64

    /// Far beyond any checkpoint (one entry per storage), small enough to bound the work.
    static let maximumEntries = 1 << 22

    init(_ file: MappedFile, maximumEntries: Int = ZipArchive.maximumEntries) throws(CheckpointError) {
        self.file = file
        let bytes = file.bytes
        let (directory, central) = try Self.centralRecords(bytes, maximumEntries: maximumEntries)
        directoryDigest = TensorChecksum.of(UnsafeRawBufferPointer(rebasing: bytes[directory.offset..<(directory.offset + directory.size)]))
        var entries: [Entry] = []
        entries.reserveCapacity(directory.count)
        var folder: String?
        var index: [String: Int] = [:]
        Self.prefetchLocalHeaders(bytes, central.map(\.localOffset), below: directory.offset)
        for found in central {
            let (name, entryOffset) = (found.name, found.entryOffset)
            let entry = try Self.locate(
                name: name, nameBytes: found.nameBytes, localOffset: found.localOffset, size: found.size, crc: found.crc,
                directoryOffset: directory.offset, bytes: bytes, entryOffset: entryOffset)
            // The archive folder is the first entry's; entries outside it are not records (torch
            // ignores them too), but their bounds were checked all the same.
            if folder == nil {
                guard let slash = name.firstIndex(of: "/"), slash != name.startIndex else {
                    throw CheckpointError(
                        .malformed, "the first zip entry \"\(name)\" is not inside an archive folder (\"archive/...\"), so this is not a torch checkpoint",
                        offset: entryOffset)
                }
                folder = String(name[..<slash])
            }
            var record = entry
            if let folder, name.hasPrefix(folder + "/") {
                record.record = String(name.dropFirst(folder.count + 1))
                guard index[record.record] == nil else {
                    throw CheckpointError(.malformed, "the zip archive holds record \"\(record.record)\" twice", offset: entryOffset)
                }
                index[record.record] = entries.count
                entries.append(record)
            }
        }
        try Self.checkNoOverlap(entries)
        self.folder = folder ?? "archive"
        self.entries = entries
        self.index = index
    }

    /// The entry of a record (`data.pkl`, `data/3`), if the archive holds it.
    func entry(_ record: String) -> Entry? { index[record].map { entries[$0] } }

    /// A record's bytes, in the mapping.
    func bytes(of entry: Entry) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[entry.dataOffset..<(entry.dataOffset + entry.size)])
    }

    /// Checks every record against the CRC-32 in the central directory (a full read of the
    /// file), on every core; the error names the first damaged record in the directory's order.
    func verifyChecksums() throws(CheckpointError) {
        let progress = CheckpointProgress.current
        let failure = ParallelChecks.firstFailure(sizes: entries.map(\.size), path: file.path) { index -> CheckpointError? in
            let entry = entries[index]
            let actual = CRC32.checksum(bytes(of: entry))
            progress?.advance(by: entry.size)
            guard actual != entry.crc32 else { return nil }
            return CheckpointError(
                .checksumMismatch,
                "record \"\(entry.record)\" is corrupt: its CRC-32 is \(Self.hex(actual)) but \(Self.hex(entry.crc32)) was recorded when it was saved; restore the file from another copy or resume from an earlier checkpoint",
                offset: entry.dataOffset)
        }
        if let failure { throw failure }
    }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    // MARK: Parsing

    /// One entry of the central directory, before its local header is read.
    struct CentralRecord {
        var name: String
        var nameBytes: UnsafeRawBufferPointer
        var localOffset: UInt64
        var size: UInt64
        var crc: UInt32
        /// Where the entry is in the central directory, for messages.
        var entryOffset: Int
    }

    /// The central directory's place and its entries, checked; reads only the end records and
    /// the directory itself (what a ranged read of an archive in an object store fetches first).
    static func centralRecords(
        _ bytes: UnsafeRawBufferPointer, maximumEntries: Int = ZipArchive.maximumEntries
    ) throws(CheckpointError) -> (directory: (offset: Int, size: Int, count: Int), records: [CentralRecord]) {
        let directory = try centralDirectory(bytes, maximumEntries: maximumEntries)
        var reader = ByteReader(
            UnsafeRawBufferPointer(rebasing: bytes[directory.offset..<(directory.offset + directory.size)]),
            fileOffset: directory.offset, what: "the zip central directory")
        var central: [CentralRecord] = []
        central.reserveCapacity(directory.count)
        for _ in 0..<directory.count {
            let entryOffset = reader.offset
            guard try reader.read(UInt32.self) == ZipSignature.centralHeader else {
                throw CheckpointError(.malformed, "a zip central directory entry has a bad signature", offset: entryOffset)
            }
            try reader.skip(4)  // versions
            let flags = try reader.read(UInt16.self)
            let method = try reader.read(UInt16.self)
            try reader.skip(4)  // time, date
            let crc = try reader.read(UInt32.self)
            var compressedSize = UInt64(try reader.read(UInt32.self))
            var size = UInt64(try reader.read(UInt32.self))
            let nameLength = Int(try reader.read(UInt16.self))
            let extraLength = Int(try reader.read(UInt16.self))
            let commentLength = Int(try reader.read(UInt16.self))
            let disk = try reader.read(UInt16.self)
            try reader.skip(6)  // attributes
            var localOffset = UInt64(try reader.read(UInt32.self))
            let nameBytes = try reader.read(count: nameLength)
            guard let name = String(validating: nameBytes, as: UTF8.self) else {
                throw CheckpointError(.malformed, "a zip entry's name is not valid UTF-8", offset: entryOffset)
            }
            var extra = ByteReader(try reader.read(count: extraLength), fileOffset: reader.offset - extraLength, what: "the extra field of zip entry \"\(name)\"")
            try reader.skip(commentLength)
            guard flags & 1 == 0 else {
                throw CheckpointError(.unsupportedFormat, "zip entry \"\(name)\" is encrypted", offset: entryOffset)
            }
            guard method == 0 else {
                throw CheckpointError(
                    .unsupportedFormat,
                    "zip entry \"\(name)\" is compressed (method \(method)); torch stores every record uncompressed, so this file was rewritten by another zip tool: extract it and save it again with torch.save",
                    offset: entryOffset)
            }
            // The zip64 extra field holds, in this order, each field whose 32-bit value is all ones.
            while !extra.isAtEnd {
                let id = try extra.read(UInt16.self)
                let length = Int(try extra.read(UInt16.self))
                var field = ByteReader(try extra.read(count: length), fileOffset: extra.offset - length, what: "the zip64 field of zip entry \"\(name)\"")
                guard id == ZipLayout.zip64ExtraID else { continue }
                if size == UInt64(ZipLayout.zip64Threshold) { size = try field.read(UInt64.self) }
                if compressedSize == UInt64(ZipLayout.zip64Threshold) { compressedSize = try field.read(UInt64.self) }
                if localOffset == UInt64(ZipLayout.zip64Threshold) { localOffset = try field.read(UInt64.self) }
            }
            guard disk == 0 || disk == 0xFFFF else {
                throw CheckpointError(.unsupportedFormat, "zip entry \"\(name)\" is on another disk of a split archive", offset: entryOffset)
            }
            guard compressedSize == size else {
                throw CheckpointError(
                    .malformed, "zip entry \"\(name)\" is stored but its compressed size (\(compressedSize)) differs from its size (\(size))",
                    offset: entryOffset)
            }
            central.append(CentralRecord(name: name, nameBytes: nameBytes, localOffset: localOffset, size: size, crc: crc, entryOffset: entryOffset))
        }
        return (directory, central)
    }

    /// Finds the end records and returns where the central directory is and how many entries it holds.
    static func centralDirectory(
        _ bytes: UnsafeRawBufferPointer, maximumEntries: Int = ZipArchive.maximumEntries
    ) throws(CheckpointError) -> (offset: Int, size: Int, count: Int) {
        guard bytes.count >= ZipLayout.endRecordSize else {
            throw CheckpointError(.malformed, "the zip archive is truncated: it is too short to hold an end of central directory record")
        }
        // The end record is the last 22 bytes plus a comment of at most 65535 bytes.
        var end: Int?
        var candidate = bytes.count - ZipLayout.endRecordSize
        let lowest = max(0, candidate - 0xFFFF)
        while candidate >= lowest {
            if bytes.littleEndian(at: candidate, as: UInt32.self) == ZipSignature.endRecord,
                Int(bytes.littleEndian(at: candidate + 20, as: UInt16.self)) == bytes.count - candidate - ZipLayout.endRecordSize
            {
                end = candidate
                break
            }
            candidate -= 1
        }
        guard let end else {
            throw CheckpointError(
                .malformed, "the zip archive has no end of central directory record: the file is truncated or not a zip archive")
        }
        var record = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[end..<(end + ZipLayout.endRecordSize)]), fileOffset: end, what: "the zip end record")
        try record.skip(4)
        let disk = try record.read(UInt16.self)
        let directoryDisk = try record.read(UInt16.self)
        let countOnDisk = try record.read(UInt16.self)
        var count = UInt64(try record.read(UInt16.self))
        var size = UInt64(try record.read(UInt32.self))
        var offset = UInt64(try record.read(UInt32.self))
        var limit = end  // the central directory ends before this offset

        let locator = end - ZipLayout.zip64LocatorSize
        if locator >= 0, bytes.littleEndian(at: locator, as: UInt32.self) == ZipSignature.zip64Locator {
            var reader = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[locator..<end]), fileOffset: locator, what: "the zip64 end locator")
            try reader.skip(4)
            let recordDisk = try reader.read(UInt32.self)
            let recordOffset = try reader.read(UInt64.self)
            let disks = try reader.read(UInt32.self)
            guard recordDisk == 0, disks <= 1 else {
                throw CheckpointError(.unsupportedFormat, "the zip archive is split across several disks", offset: locator)
            }
            // A locator too near the start of the file leaves no room for the record it points to.
            guard locator >= ZipLayout.zip64EndRecordSize, recordOffset <= UInt64(locator - ZipLayout.zip64EndRecordSize) else {
                throw CheckpointError(
                    .malformed, "the zip64 end record offset \(recordOffset) points outside the file", offset: locator)
            }
            let start = Int(recordOffset)
            var zip64 = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[start..<locator]), fileOffset: start, what: "the zip64 end record")
            guard try zip64.read(UInt32.self) == ZipSignature.zip64EndRecord else {
                throw CheckpointError(.malformed, "the zip64 end record has a bad signature", offset: start)
            }
            let recordSize = try zip64.read(UInt64.self)
            guard recordSize >= 44, recordSize <= UInt64(locator - start - 12) else {
                throw CheckpointError(.malformed, "the zip64 end record claims a size of \(recordSize) bytes", offset: start)
            }
            try zip64.skip(4)  // versions
            let zip64Disk = try zip64.read(UInt32.self)
            let zip64DirectoryDisk = try zip64.read(UInt32.self)
            let zip64CountOnDisk = try zip64.read(UInt64.self)
            count = try zip64.read(UInt64.self)
            size = try zip64.read(UInt64.self)
            offset = try zip64.read(UInt64.self)
            guard zip64Disk == 0, zip64DirectoryDisk == 0, zip64CountOnDisk == count else {
                throw CheckpointError(.unsupportedFormat, "the zip archive is split across several disks", offset: start)
            }
            limit = start
        } else {
            guard disk == 0, directoryDisk == 0, UInt64(countOnDisk) == count else {
                throw CheckpointError(.unsupportedFormat, "the zip archive is split across several disks", offset: end)
            }
            if count == 0xFFFF || size == UInt64(ZipLayout.zip64Threshold) || offset == UInt64(ZipLayout.zip64Threshold) {
                throw CheckpointError(
                    .malformed, "the zip end record needs zip64 values but the zip64 end locator is missing", offset: end)
            }
        }
        guard offset <= UInt64(limit), size <= UInt64(limit) - offset else {
            throw CheckpointError(
                .malformed,
                "the zip central directory (offset \(offset), \(size) bytes) reaches past the end records at \(limit): the file is truncated or damaged",
                offset: end)
        }
        guard count <= UInt64(maximumEntries) else {
            throw CheckpointError(
                .limitExceeded,
                "the zip archive claims \(count) entries, more than the limit of \(maximumEntries) (ReadingLimits.maximumDirectoryEntries; ckpt: --max-zip-entries)",
                offset: end)
        }
        guard count * UInt64(ZipLayout.centralHeaderSize) <= size else {
            throw CheckpointError(
                .malformed, "the zip central directory claims \(count) entries but has room for only \(size / UInt64(ZipLayout.centralHeaderSize))",
                offset: end)
        }
        return (Int(offset), Int(size), Int(count))
    }

    /// Reads an entry's local header and returns where its data is, checked against the file.
    private static func locate(
        name: String, nameBytes: UnsafeRawBufferPointer, localOffset: UInt64, size: UInt64, crc: UInt32,
        directoryOffset: Int, bytes: UnsafeRawBufferPointer, entryOffset: Int
    ) throws(CheckpointError) -> Entry {
        guard localOffset <= UInt64(directoryOffset), UInt64(directoryOffset) - localOffset >= UInt64(ZipLayout.localHeaderSize) else {
            throw CheckpointError(
                .malformed, "zip entry \"\(name)\" has its local header at offset \(localOffset), outside the file's entries",
                offset: entryOffset)
        }
        let start = Int(localOffset)
        guard bytes.littleEndian(at: start, as: UInt32.self) == ZipSignature.localHeader else {
            throw CheckpointError(.malformed, "zip entry \"\(name)\" has no local header at offset \(start)", offset: entryOffset)
        }
        let localNameLength = Int(bytes.littleEndian(at: start + 26, as: UInt16.self))
        let localExtraLength = Int(bytes.littleEndian(at: start + 28, as: UInt16.self))
        let dataOffset = start + ZipLayout.localHeaderSize + localNameLength + localExtraLength
        guard dataOffset <= directoryOffset, size <= UInt64(directoryOffset - dataOffset) else {
            throw CheckpointError(
                .malformed,
                "zip entry \"\(name)\" claims \(size) bytes at offset \(dataOffset), past the start of the central directory at \(directoryOffset): the file is truncated or damaged",
                offset: entryOffset)
        }
        guard localNameLength == nameBytes.count,
            memcmp(bytes.baseAddress! + start + ZipLayout.localHeaderSize, nameBytes.baseAddress!, nameBytes.count) == 0
        else {
            throw CheckpointError(
                .malformed, "zip entry \"\(name)\" has a different name in its local header", offset: start)
        }
        return Entry(record: name, localHeaderOffset: start, dataOffset: dataOffset, size: Int(size), crc32: crc)
    }

    /// Asks the kernel to read every local header's page at once, before they are read one by one.
    ///
    /// The headers lie just before each record's data, spread over the whole file: read in turn,
    /// each is a synchronous disk read (and the default read-around fetches 128 KiB for it), which
    /// made opening a cold 1.5 GB file take half a second. Queued together they cost about one.
    private static func prefetchLocalHeaders(_ bytes: UnsafeRawBufferPointer, _ offsets: [UInt64], below limit: Int) {
        guard let base = bytes.baseAddress, offsets.count > 1 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let mapping = UnsafeMutableRawPointer(mutating: base)
        // No read-around while the headers are touched; normal read-ahead again afterwards.
        Syscall.madvise(mapping, bytes.count, MADV_RANDOM)
        var lastPage = -1
        for offset in offsets.sorted() where offset < UInt64(limit) {
            let start = Int(offset) / page * page
            guard start != lastPage else { continue }
            lastPage = start
            Syscall.madvise(mapping + start, min(2 * page, bytes.count - start), MADV_WILLNEED)
        }
        for offset in offsets where offset < UInt64(limit) {
            _ = bytes.load(fromByteOffset: Int(offset), as: UInt8.self)
        }
        Syscall.madvise(mapping, bytes.count, MADV_NORMAL)
    }

    /// Entries may not share bytes: a record's data ends before the next local header.
    private static func checkNoOverlap(_ entries: [Entry]) throws(CheckpointError) {
        let ordered = entries.sorted { $0.localHeaderOffset < $1.localHeaderOffset }
        for (previous, next) in zip(ordered, ordered.dropFirst()) where next.localHeaderOffset < previous.dataOffset + previous.size {
            throw CheckpointError(
                .malformed, "zip entries \"\(previous.record)\" and \"\(next.record)\" overlap", offset: next.localHeaderOffset)
        }
    }
}
