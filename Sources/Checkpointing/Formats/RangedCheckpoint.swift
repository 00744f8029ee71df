import Synchronization

/// A checkpoint in an object store opened from its index alone, whose tensors are fetched with
/// ranged GETs only when asked for (the DocC article "Object storage", "Reading only what a
/// load needs").
///
/// Opening fetches the object's first and last 16 KiB, then what the format needs to describe
/// the checkpoint: the tar headers around a tar member; a safetensors header whole; a torch
/// file's end records, central directory, local headers and small records (`data.pkl`,
/// `byteorder`, ...), never its storages. The existing parsers then read those bytes from a
/// sparse mapping of the object (``RangedObject``). ``fetch(_:verify:)`` brings the bytes of
/// the tensors a load uses and checks each one: against its XXH3-64 in a native file, against
/// its record's CRC-32 in a torch file (whose records are fetched whole).
///
/// Only uncompressed checkpoints can be read this way: a compressed stream cannot be entered
/// midway, so ``open(_:limits:)`` returns `nil` for one (and for the rare layouts
/// it cannot locate from the ends: a tar whose checkpoint is not its last member, a torch file
/// with views its reader must copy), and the caller downloads the object whole.
///
/// A tensor of ``file`` whose bytes were not fetched is fetched when first read (unchecked:
/// the loads fetch and check what they use through ``fetch(_:verify:)``).
package final class RangedCheckpoint: Sendable {
    /// The checkpoint, opened from the fetched index.
    package let file: CheckpointFile
    let object: RangedObject
    let mapping: MappedFile
    /// A torch file's records at their offsets in the object, to check fetched tensors against
    /// their CRC-32s; `nil` for a native file.
    private let records: [ZipArchive.Entry]?
    /// The records checked so far, by offset.
    private let checkedRecords = Mutex<Set<Int>>([])

    /// The bytes fetched from each end of the object first: the tar header and a small
    /// safetensors header at the start, a tar's end blocks and a zip's end records at the end.
    /// Small, because a resharding load opens many shards and needs little of each.
    static let probeBytes = 16 << 10

    private init(file: CheckpointFile, object: RangedObject, mapping: MappedFile, records: [ZipArchive.Entry]?) {
        self.file = file
        self.object = object
        self.mapping = mapping
        self.records = records
    }

    /// Opens the checkpoint at `location` from its index, or returns `nil` when it cannot be
    /// read in pieces (download it whole then).
    ///
    /// - Throws: `.notFound` for a missing object, the store's errors, and the parsers' errors
    ///   for a damaged index.
    package static func open(
        _ location: ObjectLocation, limits: ReadingLimits = ReadingLimits()
    ) throws(CheckpointError) -> RangedCheckpoint? {
        let (object, mapping) = try RangedObject.open(location)
        let size = object.size
        let head = 0..<min(size, probeBytes)
        let tail = max(head.upperBound, size - probeBytes)..<size
        try object.fetch([head, tail])
        let bytes = mapping.bytes
        var inner = 0..<size
        guard var kind = FileKind.sniff(prefix(of: bytes, inner), fileSize: size) else { return nil }
        if kind == .tar {
            // The reader touches only headers: a header it reads outside the fetched ends
            // reads as zeros and ends the archive early, which the check below catches.
            guard let members = try? TarReader.members(of: bytes), let last = members.last else { return nil }
            let end = last.dataOffset + last.size + TarHeader.padding(after: last.size)
            guard end >= tail.lowerBound || head.upperBound == tail.lowerBound else { return nil }
            let member = try ContainerStack.checkpointMember(of: mapping, path: location.description)
            inner = member.dataOffset..<(member.dataOffset + member.size)
            try object.fetch([inner.lowerBound..<min(inner.upperBound, inner.lowerBound + 512)])
            guard let innerKind = FileKind.sniff(prefix(of: bytes, inner), fileSize: inner.count) else { return nil }
            kind = innerKind
        }
        var records: [ZipArchive.Entry]?
        switch kind {
        case .safetensors:
            guard inner.count >= 8 else { return nil }
            let length = bytes.loadUnaligned(fromByteOffset: inner.lowerBound, as: UInt64.self).littleEndian
            guard length <= UInt64(SafetensorsHeader.maximumLength), 8 + Int(length) <= inner.count else { return nil }
            try object.fetch([inner.lowerBound..<(inner.lowerBound + 8 + Int(length))])
        case .torchZip:
            guard let found = try torchRecords(object, mapping, inner: inner) else { return nil }
            records = found
        default:
            return nil
        }
        let file = try CheckpointFile.open(mapped: mapping, path: location.description, limits: limits)
        if records != nil {
            // A view torch's reader had to copy was copied from bytes not fetched.
            var copied = false
            file.tree.forEachTensor { _, tensor in copied = copied || (tensor.byteCount > 0 && tensor.storage != .mapped) }
            if copied { return nil }
        }
        return RangedCheckpoint(file: file, object: object, mapping: mapping, records: records)
    }

    /// Fetches the bytes of `tensors` (tensors of ``file``'s tree, by flattened path), in
    /// parallel, and with `verify` checks every one of them. The reporter in scope, if any, gets
    /// a `downloading` phase over the bytes fetched, then a `verifying` phase over the bytes
    /// checked (the tensors', or a torch file's whole records').
    ///
    /// - Throws: `.checksumMismatch` naming the first tensor or record whose bytes do not match
    ///   what was recorded, or the store's errors.
    package func fetch(_ tensors: [(path: String, tensor: Tensor)], verify: Bool) throws(CheckpointError) {
        // Their bytes as they are in the mapping: reading them through the buffer would fetch them one by one.
        var ranges = tensors.map { object.range(of: $0.tensor.buffer.encodedView?.bytes ?? UnsafeRawBufferPointer(start: nil, count: 0)) }
        var wholeRecords: [ZipArchive.Entry] = []
        if let records {
            // A torch tensor is checked through its whole record.
            for range in ranges where !range.isEmpty {
                guard let record = Self.record(containing: range, in: records) else {
                    throw CheckpointError(.malformed, "a tensor lies outside every record of the archive", path: file.path)
                }
                wholeRecords.append(record)
            }
            ranges = wholeRecords.map { $0.dataOffset..<($0.dataOffset + $0.size) }
        }
        let progress = CheckpointProgress.current
        try object.fetch(ranges, progress: progress)
        guard verify else { return }
        if records != nil {
            progress?.begin("verifying", totalBytes: wholeRecords.reduce(0) { $0 + $1.size })
            defer { progress?.finish() }
            try check(wholeRecords, progress: progress)
            return
        }
        progress?.begin("verifying", totalBytes: tensors.reduce(0) { $0 + $1.tensor.byteCount })
        defer { progress?.finish() }
        let cancellation = CancellationFlag.current
        for (path, tensor) in tensors {
            try cancellation?.check("verifying", path: file.path)
            if let failure = file.verify(tensor, named: path) { throw failure }
            progress?.advance(by: tensor.byteCount)
        }
    }

    /// Checks records (fetched) against their CRC-32s, each once.
    private func check(_ entries: [ZipArchive.Entry], progress: CheckpointProgress?) throws(CheckpointError) {
        let cancellation = CancellationFlag.current
        for entry in entries {
            if checkedRecords.withLock({ !$0.contains(entry.dataOffset) }) {
                try cancellation?.check("verifying", path: file.path)
                try Self.checkCRC(entry, in: mapping, path: file.path)
                checkedRecords.withLock { _ = $0.insert(entry.dataOffset) }
            }
            progress?.advance(by: entry.size)
        }
    }

    private static func checkCRC(_ entry: ZipArchive.Entry, in mapping: MappedFile, path: String) throws(CheckpointError) {
        let actual = CRC32.checksum(UnsafeRawBufferPointer(rebasing: mapping.bytes[entry.dataOffset..<(entry.dataOffset + entry.size)]))
        guard actual == entry.crc32 else {
            throw CheckpointError(
                .checksumMismatch,
                "record \"\(entry.record)\" is corrupt: its CRC-32 is \(ZipArchive.hex(actual)) but \(ZipArchive.hex(entry.crc32)) was recorded when it was saved; restore the file from another copy or resume from an earlier checkpoint",
                path: path, offset: entry.dataOffset)
        }
    }

    /// The record whose data holds `range`, by binary search over records sorted by offset.
    private static func record(containing range: Range<Int>, in records: [ZipArchive.Entry]) -> ZipArchive.Entry? {
        var low = 0
        var high = records.count
        while low < high {
            let middle = (low + high) / 2
            if records[middle].dataOffset <= range.lowerBound { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        let candidate = records[low - 1]
        return range.upperBound <= candidate.dataOffset + candidate.size ? candidate : nil
    }

    /// Fetches a torch zip's index (at `inner` in the object) and its small records, and returns
    /// its records at their offsets in the object, sorted; `nil` when the end records lie
    /// outside the last ``probeBytes`` (then the whole object is read instead).
    private static func torchRecords(
        _ object: RangedObject, _ mapping: MappedFile, inner: Range<Int>
    ) throws(CheckpointError) -> [ZipArchive.Entry]? {
        let base = inner.lowerBound
        let member = UnsafeRawBufferPointer(rebasing: mapping.bytes[inner])
        // The end records are in the probe unless a long comment pushes them back: then in
        // the largest window a comment allows.
        var found = try? ZipArchive.centralDirectory(member)
        if found == nil {
            let endWindow = 0xFFFF + ZipLayout.endRecordSize + ZipLayout.zip64LocatorSize + ZipLayout.zip64EndRecordSize
            try object.fetch([max(base, inner.upperBound - endWindow)..<inner.upperBound])
            found = try? ZipArchive.centralDirectory(member)
        }
        guard let directory = found else { return nil }
        try object.fetch([(base + directory.offset)..<(base + directory.offset + directory.size)])
        let (_, central) = try ZipArchive.centralRecords(member)
        try object.fetch(central.compactMap { record in
            guard record.localOffset < UInt64(inner.count) else { return nil }
            let start = base + Int(record.localOffset)
            return start..<(start + ZipLayout.localHeaderSize + record.nameBytes.count)
        })
        let archive = try ZipArchive(MappedFile(slice: inner, of: mapping, path: object.location.description))
        let entries = archive.entries.map { entry in
            var shifted = entry
            shifted.dataOffset += base
            shifted.localHeaderOffset += base
            return shifted
        }
        // What torch's reader reads when it opens the file: every record but the storages.
        let small = entries.filter { !$0.record.hasPrefix("data/") }
        try object.fetch(small.map { $0.dataOffset..<($0.dataOffset + $0.size) })
        for entry in small { try checkCRC(entry, in: mapping, path: object.location.description) }
        return entries.sorted { $0.dataOffset < $1.dataOffset }
    }

    /// The first bytes of `range` of `bytes`, for recognising a file.
    private static func prefix(of bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[range.lowerBound..<min(range.upperBound, range.lowerBound + 512)])
    }
}

extension CheckpointFile {
    /// Opens `path` to describe it (its tree's structure, metadata and layers): an uncompressed
    /// checkpoint in an object store is read from its index alone (``RangedCheckpoint``; a
    /// tensor read later is fetched then), anything else is opened as
    /// ``open(_:limits:)`` does.
    package static func openIndex(_ path: String, limits: ReadingLimits) throws(CheckpointError) -> CheckpointFile {
        if case .remote(let location) = StoragePath(path),
            let ranged = try RangedCheckpoint.open(location, limits: limits)
        {
            return ranged.file
        }
        return try open(path, limits: limits)
    }
}
