import Foundation

/// PyTorch's zip format (`torch.save`, default since torch 1.6; Composer's format): a zip
/// archive holding a protocol-2 pickle of the tree (`data.pkl`) and one record of raw bytes
/// per tensor storage (its layout is in the DocC article "The formats on disk").
///
/// Reading maps the file, checks the zip structure, and runs the safe ``Unpickler``; tensors
/// that are contiguous views of their storage stay in the mapping. Writing produces what
/// `torch.load(weights_only=True)` accepts and Composer resumes from, streaming to any sink
/// (the records carry data descriptors, so nothing is patched afterwards), with each storage's
/// CRC-32 computed while it is written.
///
/// What does not survive a round trip through a `.pt` file, by design: durations are rounded
/// to whole microseconds (Python's `timedelta`); the Python types the tree has no case for are
/// read as their nearest tree value (`torch.Size` and `complex` as tuples, `set` as a list,
/// `bytearray` as bytes, `torch.device`, `TorchVersion` and dtypes as strings, numpy arrays as
/// tensors) and written back as such, except numpy's rng key array (see ``Pickler``); an
/// `OrderedDict`'s instance attributes (a state_dict's `_metadata`) are dropped.
enum TorchFormat: CheckpointFormat {
    /// The archive folder of every record, as torch writes it for buffers (and Composer for files).
    static let archiveFolder = "archive"

    struct Layout {
        var zip: ZipPlan
        var pickle: [UInt8]
        var storages: TorchStoragePlan
        /// The small text records, by their index in `zip.records`.
        var texts: [Int: [UInt8]]
        var serializationIDIndex: Int
    }

    static func layout(_ tree: StateValue) throws(CheckpointError) -> Layout {
        let storages = TorchStoragePlan(tree)
        let pickle = try Pickler.pickle(tree, storages: storages, maximumDepth: ReadingLimits.deepestSupportedDepth)
        var entries: [(name: String, size: Int)] = [("data.pkl", pickle.count)]
        var texts: [Int: [UInt8]] = [:]
        for (name, text) in [(".format_version", "1"), (".storage_alignment", "64"), ("byteorder", "little")] {
            texts[entries.count] = Array(text.utf8)
            entries.append((name, text.utf8.count))
        }
        for storage in storages.storages { entries.append(("data/" + storage.key, storage.byteCount)) }
        texts[entries.count] = Array("3\n".utf8)
        entries.append(("version", 2))
        let serializationIDIndex = entries.count
        entries.append((".data/serialization_id", 40))
        let zip = ZipPlan(entries.map { (archiveFolder + "/" + $0.name, $0.size) })
        return Layout(zip: zip, pickle: pickle, storages: storages, texts: texts, serializationIDIndex: serializationIDIndex)
    }

    static func size(of layout: Layout) -> Int { layout.zip.totalSize }

    @discardableResult
    static func write(_ layout: Layout, to sink: any ByteSink) throws(CheckpointError) -> UInt64 {
        let writer = ZipStreamWriter(plan: layout.zip, sink: sink)
        try writer.writeRecord(layout.pickle)
        var storage = 0
        for index in 1..<layout.zip.records.count {
            if let text = layout.texts[index] {
                try writer.writeRecord(text)
            } else if index == layout.serializationIDIndex {
                try writer.writeRecord(serializationID(writer.crcs))
            } else {
                let bytes = layout.storages.storages[storage].bytes
                storage += 1
                try writer.writeRecord { (write) throws(CheckpointError) in try write(bytes) }
            }
        }
        let trailer = try writer.finish()
        return trailer.withUnsafeBytes { TensorChecksum.of(UnsafeRawBufferPointer(rebasing: $0.prefix(layout.zip.centralDirectorySize))) }
    }

    /// 40 digits that identify the file's contents, from the CRC-32s of the records before it:
    /// the same tree gives the same file. torch treats the id as opaque (it only logs it).
    static func serializationID(_ crcs: [UInt32]) -> [UInt8] {
        var first: UInt64 = 0xCBF2_9CE4_8422_2325
        var second: UInt64 = 0x8422_2325_CBF2_9CE4
        for crc in crcs {
            first = (first ^ UInt64(crc)) &* 0x0000_0100_0000_01B3
            second = (second ^ UInt64(crc.byteSwapped)) &* 0x0000_0100_0000_01B3
        }
        func digits(_ value: UInt64) -> String {
            let text = String(value)
            return String(repeating: "0", count: 20 - text.count) + text
        }
        return Array((digits(first) + digits(second)).utf8)
    }

    static func read(_ file: MappedFile) throws(CheckpointError) -> FormatContents {
        try read(file, limits: .standard)
    }

    /// Reads `file` within `limits`; with `deferringCopies`, a tensor that cannot stay in the
    /// mapping (misaligned, strided, big-endian) is copied when first used rather than now.
    static func read(_ file: MappedFile, limits: TorchLimits, deferringCopies: Bool = false) throws(CheckpointError) -> FormatContents {
        do throws(CheckpointError) {
            let archive = try ZipArchive(file, maximumEntries: limits.maximumDirectoryEntries)
            if archive.entry("constants.pkl") != nil {
                throw CheckpointError(
                    .unsupportedFormat,
                    "is a TorchScript archive (torch.jit.save: it holds a constants.pkl record), not a torch.save checkpoint; load it with torch.jit.load and save its state_dict() with torch.save")
            }
            guard let pickle = archive.entry("data.pkl") else {
                throw CheckpointError(
                    .malformed, "is a zip archive without a data.pkl record, so not a torch.save checkpoint")
            }
            var bigEndian = false
            if let order = archive.entry("byteorder") {
                switch String(decoding: archive.bytes(of: order), as: UTF8.self) {
                case "little": break
                case "big": bigEndian = true
                default:
                    throw CheckpointError(.malformed, "the byteorder record says neither \"little\" nor \"big\"", offset: order.dataOffset)
                }
            }
            let storages = TorchStorageReader(archive: archive, bigEndian: bigEndian, limits: limits, deferringCopies: deferringCopies)
            let tree = try Unpickler(
                archive.bytes(of: pickle), fileOffset: pickle.dataOffset, storages: storages, limits: limits
            ).load()
            return FormatContents(
                tree: tree, checksums: [:], metadata: [:], isNative: false, integrityDigest: archive.directoryDigest,
                verifyRecords: { () throws(CheckpointError) in try archive.verifyChecksums() })
        } catch {
            throw error.at(path: file.path)
        }
    }

    /// The message for a file that starts with torch's old `PYTORCH1` magic, or `nil`.
    static func refusal(forPrefix prefix: UnsafeRawBufferPointer) -> String? {
        guard prefix.starts(with: Array("PYTORCH1".utf8)) else { return nil }
        return "is in PyTorch's PYTORCH1 preview format (torch 1.0 to 1.3), which this library does not read; load it with that torch version and save it again with torch.save"
    }
}
