import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A PyTorch Distributed Checkpoint (DCP) folder: what `torch.distributed.checkpoint.save`
/// writes, and the layout of Composer's sharded (FSDP) checkpoints.
///
/// The folder holds `.metadata`, a pickle of DCP's dataclasses that lists every entry of the
/// saved state dict, and data files (`__<rank>_<n>.distcp`, one per writing rank), each a run
/// of `torch.save` archives: one per tensor chunk (a box of a global tensor) and one per value
/// that is not a tensor. The checkpoint exists once `.metadata` does: DCP writes it last.
///
/// Opening reads `.metadata` alone (through the safe unpickler, which accepts DCP's
/// dataclasses as plain data and refuses any other global) and checks it against the data
/// files' sizes; no data is read. ``CheckpointFile/open(_:)-7qhys``, ``loadCheckpoint(_:into:weightsOnly:strict:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:progress:)-9jr1y``
/// and ``loadCheckpointTree(_:verifyChecksums:limits:shardPlan:processGroup:progress:)-29crs``
/// take the folder (or its `.metadata`) wherever they take a checkpoint. See the DocC article
/// "PyTorch Distributed Checkpoints" for how DCP's dotted names map to the tree.
public struct DistributedCheckpoint: Sendable {
    /// A data file of the folder.
    public struct DataFile: Sendable, Equatable {
        /// Its name in the folder (`__0_0.distcp`).
        public var name: String
        /// Its size in bytes.
        public var size: Int
    }

    /// One chunk of a tensor: the box of the global tensor it holds, and where its archive is.
    public struct Chunk: Sendable, Equatable {
        /// The part of the global tensor the chunk holds.
        public var box: TensorSlice
        /// The data file that holds the chunk's archive.
        public var file: String
        /// Where the archive starts in the file.
        public var offset: Int
        /// The archive's length in bytes.
        public var length: Int
    }

    /// A tensor of the checkpoint.
    public struct TensorEntry: Sendable, Equatable {
        /// Its flattened path in the tree (`model/embed.weight`).
        public var path: String
        /// DCP's name for it (`model.embed.weight`).
        public var fqn: String
        /// The element type.
        public var dtype: DType
        /// The global shape.
        public var shape: [Int]
        /// The chunks, which tile the global tensor.
        public var chunks: [Chunk]
    }

    /// The folder.
    public let folder: String
    /// The data files `.metadata` refers to, by name.
    public let files: [DataFile]
    /// Every tensor, in `.metadata` order.
    public let tensors: [TensorEntry]
    /// How many entries are values other than tensors.
    public let valueCount: Int
    /// The id DCP gave the save, when recorded.
    public let saveID: String?
    let metadata: DCPMetadata
    /// The size of `.metadata` in bytes.
    let metadataSize: Int
    /// XXH3-64 of `.metadata`.
    let metadataDigest: UInt64

    /// The name of the file that commits a DCP checkpoint.
    public static let metadataName = ".metadata"
    /// The extension of DCP's data files.
    public static let dataFileExtension = ".distcp"
    /// `.metadata` files larger than this are refused (one of a model with a million chunks is
    /// about 300 MB).
    static let maximumMetadataSize = 1 << 30

    /// The folder of the DCP checkpoint `path` names, or `nil` when it names none.
    ///
    /// `path` may be the folder or its `.metadata`. A folder with data files (`*.distcp`) but no
    /// `.metadata` is an error: the save that wrote them never committed.
    public static func locate(_ path: String) throws(CheckpointError) -> String? {
        guard case .local(let local) = StoragePath(path) else { return nil }
        if FilePaths.split(local).name == metadataName, try SystemCalls.isFolder(local) == false {
            return FilePaths.split(local).folder
        }
        guard try SystemCalls.isFolder(local) == true else { return nil }
        if try SystemCalls.isFolder(FilePaths.join(local, metadataName)) == false { return local }
        let data = try SystemCalls.folderEntries(local).filter { $0.hasSuffix(dataFileExtension) }.sorted()
        guard data.isEmpty else {
            throw CheckpointError(
                .notFound,
                "holds DCP data files (\(data.prefix(3).joined(separator: ", "))\(data.count > 3 ? ", ..." : "")) but no .metadata: the save that wrote them never committed (DCP writes .metadata last), so there is no checkpoint to read",
                path: path)
        }
        return nil
    }

    /// Opens the DCP checkpoint at `path` (the folder or its `.metadata`): reads and checks
    /// `.metadata`, and checks every location it gives against the data files' sizes.
    ///
    /// - Throws: ``CheckpointError``: `.notFound` (no `.metadata`, or a data file it lists is
    ///   missing); `.malformed` (a damaged `.metadata`, chunks that overlap or leave a gap, a
    ///   location past the end of its file); `.disallowedGlobal` (a `.metadata` naming a class
    ///   that is not DCP's); `.unsupportedFormat` (a dtype or storage layout this library lacks).
    public static func open(_ path: String) throws(CheckpointError) -> DistributedCheckpoint {
        guard let folder = try locate(path) else {
            throw CheckpointError(.notFound, "is not a DCP checkpoint: no \(metadataName) in it", path: path)
        }
        let metadataPath = FilePaths.join(folder, metadataName)
        let mapped: MappedFile
        do {
            mapped = try MappedFile(path: metadataPath)
        } catch where error.code == .notFound {
            throw CheckpointError(.notFound, "the DCP checkpoint has no \(metadataName)", path: metadataPath)
        }
        guard mapped.bytes.count <= maximumMetadataSize else {
            throw CheckpointError(
                .limitExceeded, "is \(mapped.bytes.count) bytes, more than the \(maximumMetadataSize) a DCP .metadata may have here",
                path: metadataPath)
        }
        let metadata: DCPMetadata
        do {
            metadata = try DCPMetadata.read(mapped.bytes)
        } catch {
            throw error.at(path: metadataPath)
        }
        var files: [DataFile] = []
        var sizes: [String: Int] = [:]
        for name in metadata.files {
            let filePath = FilePaths.join(folder, name)
            let size: Int
            do {
                let fd = try SystemCalls.open(filePath, O_RDONLY | O_CLOEXEC)
                defer { SystemCalls.release(fd, path: filePath) }
                size = try SystemCalls.fileSize(fd, path: filePath)
            } catch where error.code == .notFound {
                throw CheckpointError(
                    .notFound, "the data file \(name), which \(metadataName) lists, is missing: the checkpoint is incomplete",
                    path: filePath)
            }
            sizes[name] = size
            files.append(DataFile(name: name, size: size))
        }
        for fqn in metadata.fqns {
            for location in metadata.locations(of: fqn) where location.offset + location.length > sizes[location.file, default: 0] {
                throw CheckpointError(
                    .malformed,
                    "\(metadataName) places \"\(fqn)\" at bytes \(location.offset)..<\(location.offset + location.length) of \(location.file), past the end of that file (\(sizes[location.file, default: 0]) bytes): the file is truncated or is not the one the \(metadataName) describes",
                    path: FilePaths.join(folder, location.file))
            }
        }
        var tensors: [TensorEntry] = []
        var values = 0
        for fqn in metadata.fqns {
            switch metadata.items[fqn] {
            case .tensor(let tensor):
                tensors.append(
                    TensorEntry(
                        path: DCPKeyPaths.statePath(DCPKeyPaths.keyPath(of: fqn, in: metadata)), fqn: fqn, dtype: tensor.dtype,
                        shape: tensor.shape,
                        chunks: tensor.chunks.map {
                            Chunk(box: $0.box, file: $0.location.file, offset: $0.location.offset, length: $0.location.length)
                        }))
            case .value: values += 1
            case nil: break
            }
        }
        return DistributedCheckpoint(
            folder: folder, files: files, tensors: tensors, valueCount: values, saveID: metadata.saveID, metadata: metadata,
            metadataSize: mapped.bytes.count, metadataDigest: TensorChecksum.of(mapped.bytes))
    }

    /// The total size of `.metadata` and the data files.
    public var byteCount: Int { files.reduce(metadataSize) { $0 + $1.size } }

    /// Checks every archive the checkpoint holds: its zip structure, that it holds what
    /// `.metadata` says (a tensor chunk of the recorded dtype and box, or a value), and every
    /// record against its CRC-32. A full read of every data file. DCP records no checksums of
    /// its own, so the CRC-32s of the archives are all there is to check.
    ///
    /// - Throws: ``CheckpointError`` naming the first damaged entry, its file and offset.
    public func verify() throws(CheckpointError) {
        let reader = DCPReader(self, deferringCopies: true)
        var checks: [@Sendable () throws(CheckpointError) -> Void] = []
        try reader.prefetchingHeaders(of: metadata.locations) { () throws(CheckpointError) in
            for fqn in metadata.fqns {
                switch metadata.items[fqn] {
                case .tensor(let tensor):
                    for index in tensor.chunks.indices { checks.append(try reader.chunk(fqn, index).verifyRecords) }
                case .value:
                    checks.append(try reader.value(fqn).verifyRecords)
                case nil:
                    break
                }
            }
        }
        for file in reader.mappedFiles { file.adviseSequentialRead() }
        let cancellation = CancellationFlag.current
        for check in checks {
            try cancellation?.check("verifying", path: folder)
            try check()
        }
    }
}

extension DCPMetadata {
    /// The locations of one entry.
    func locations(of fqn: String) -> [Location] {
        switch items[fqn] {
        case .tensor(let tensor): tensor.chunks.map(\.location)
        case .value(let location): [location]
        case nil: []
        }
    }
}
