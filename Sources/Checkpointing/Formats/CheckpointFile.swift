/// An opened checkpoint file: its kind, its tree, and what is needed to verify it.
///
/// Opening maps the file and reads only its header: tensors in the tree point into the mapping
/// and are read from disk when used. Checksums are verified by ``verify(progress:)-8jpej`` (which
/// ``loadCheckpoint(_:into:weightsOnly:strict:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:progress:)-9jr1y`` calls),
/// not by opening.
public struct CheckpointFile: Sendable {
    /// The path the file was opened from.
    public let path: String
    /// What the file is: its outermost layer (a zstd stream for `x.pt.zst`, a gzip stream for
    /// `x.tar.gz`); ``formatKind`` says what the checkpoint inside is.
    public internal(set) var kind: FileKind
    /// Whether the file carries this library's tree and checksums (a native file), rather than
    /// being a plain safetensors file whose root holds its tensors by name.
    public let isNative: Bool
    /// The checkpoint tree; tensors are memory-mapped.
    public let tree: StateValue
    /// The safetensors `__metadata__`, as stored.
    public let metadata: [String: String]
    /// The size of the file in bytes (as stored: compressed, for a compressed file).
    public internal(set) var byteCount: Int
    let checksums: [String: UInt64]
    /// XXH3-64 of the innermost file's index (see ``FormatContents/integrityDigest``).
    let integrityDigest: UInt64
    /// Checks the format's own records (a torch file's CRC-32s); see ``verify(progress:)``.
    var verifyRecords: (@Sendable () throws(CheckpointError) -> Void)? = nil
    /// The compression and tar layers around the checkpoint, outermost first; empty for a
    /// plain file.
    public internal(set) var layers: [ContainerLayer] = []
    /// What the checkpoint inside the layers is, when there are layers.
    var innerKind: FileKind? = nil
    /// The float-split stream the tensors are decoded from, for a `.fsz` file.
    var floatSplit: FloatSplitArchive? = nil

    /// For a float-split (`.fsz`) file, how well each dtype compressed (`ckpt inspect` shows
    /// it); empty for other files.
    public var compressionShares: [CompressionShare] { floatSplit?.shares ?? [] }

    /// For a Hugging Face sharded checkpoint (opened from its folder or index), its shards and
    /// where each tensor is; ``path`` is then the index and ``kind`` `.safetensors`.
    public internal(set) var huggingFaceShards: HuggingFaceShards? = nil
    /// For a DCP folder, its metadata: data files, and every tensor's chunks.
    public internal(set) var distributedCheckpoint: DistributedCheckpoint? = nil

    /// What the checkpoint inside any layers is: ``kind`` itself for a plain file.
    public var formatKind: FileKind { innerKind ?? kind }

    /// The compression of the file, if it is compressed (`ckpt inspect` shows it).
    public var compression: CompressionCodec? {
        for case .compressed(let codec) in layers { return codec }
        return nil
    }

    /// Opens the checkpoint at `path`, recognising its format from its bytes; a PyTorch
    /// Distributed Checkpoint folder (or its `.metadata`) opens as one checkpoint too.
    ///
    /// A Hugging Face sharded checkpoint opens as one: its folder, or its index
    /// (`model.safetensors.index.json`), with every shard mapped and the index checked against
    /// the shards' headers (see <doc:HuggingFaceCheckpoints>).
    ///
    /// Compressed streams and tar archives around it are opened first, whatever the name
    /// says: a compressed file is decompressed (within the default ``ReadingLimits``)
    /// into an anonymous temporary file that is then mapped. A float-split (`.fsz`) file is
    /// opened by its index: only its header is decoded, and each tensor's chunks are decoded
    /// when the tensor is first read, or all at once on every core by ``decode(tensorsWhere:)``.
    ///
    /// - Throws: ``CheckpointError``: `.notFound`; `.malformed` for a damaged file;
    ///   `.unsupportedFormat` for a kind of file this build does not read, naming what it is;
    ///   `.limitExceeded` for a decompression bomb, a tree nested too deep, or another bound of
    ///   ``ReadingLimits`` passed.
    public static func open(_ path: String) throws(CheckpointError) -> CheckpointFile {
        try open(path, limits: ReadingLimits())
    }

    /// Opens the checkpoint at `path` as ``open(_:)-7qhys`` does, within `limits` (raise them for a
    /// checkpoint that compresses extremely well, say).
    public static func open(_ path: String, limits: ReadingLimits) throws(CheckpointError) -> CheckpointFile {
        let opened: CheckpointFile
        if let folder = try DistributedCheckpoint.locate(path) {
            opened = try open(distributedCheckpoint: folder)
        } else if let index = try HuggingFaceReader.locateIndex(path) {
            opened = try HuggingFaceReader.open(indexAt: index)
        } else {
            return try open(mapped: try MappedFile(path: path), path: path, limits: limits)
        }
        try limits.checkDepth(of: opened.tree, path: opened.path)
        return opened
    }

    /// Opens the checkpoint whose bytes `outer` maps, named `path` in messages.
    static func open(mapped outer: MappedFile, path: String, limits: ReadingLimits) throws(CheckpointError) -> CheckpointFile {
        let (file, layers) = try ContainerStack.unwrap(outer, path: path, limits: limits)
        var opened = try read(file, path: path, limits: limits)
        try limits.checkDepth(of: opened.tree, path: path)
        opened.floatSplit = file.lazyContents as? FloatSplitArchive
        if let first = layers.first {
            opened.innerKind = opened.kind
            opened.kind = first.fileKind
            opened.byteCount = outer.bytes.count
            opened.layers = layers
        }
        return opened
    }

    /// Reads the checkpoint format of `file` (the innermost layer of `path`).
    private static func read(_ file: MappedFile, path: String, limits: ReadingLimits) throws(CheckpointError) -> CheckpointFile {
        let prefix = UnsafeRawBufferPointer(rebasing: file.bytes.prefix(512))
        guard let kind = FileKind.sniff(prefix, fileSize: file.bytes.count) else {
            if let refusal = TorchFormat.refusal(forPrefix: prefix) {
                throw CheckpointError(.unsupportedFormat, refusal, path: path)
            }
            throw CheckpointError(
                .unsupportedFormat,
                "is not a checkpoint this library recognises (neither safetensors, a PyTorch zip, a tar archive nor a compressed stream)",
                path: path)
        }
        switch kind {
        case .safetensors:
            let contents = try NativeFormat.read(file, limits: limits)
            return CheckpointFile(
                path: path, kind: kind, isNative: contents.isNative, tree: contents.tree,
                metadata: contents.metadata, byteCount: file.bytes.count, checksums: contents.checksums,
                integrityDigest: contents.integrityDigest)
        case .torchZip:
            let contents = try TorchFormat.read(file, limits: TorchLimits(limits))
            return CheckpointFile(
                path: path, kind: kind, isNative: false, tree: contents.tree, metadata: contents.metadata,
                byteCount: file.bytes.count, checksums: contents.checksums, integrityDigest: contents.integrityDigest,
                verifyRecords: contents.verifyRecords)
        case .torchLegacy:
            throw CheckpointError(
                .unsupportedFormat,
                "is \(kind.summary), which this library does not read; load it in Python and save it again with torch.save (the zip format, default since torch 1.6)",
                path: path)
        default:
            throw CheckpointError(
                .unsupportedFormat,
                "is \(kind.summary), which this build of swift-checkpointing cannot read yet; convert it to safetensors first",
                path: path)
        }
    }

    /// The format name for reports: `native`, `safetensors`, `hf-sharded`, ...
    public var formatName: String {
        if huggingFaceShards != nil { return "hf-sharded" }
        return switch formatKind {
        case .safetensors: isNative ? "native" : "safetensors"
        case .torchZip: "torch"
        default: formatKind.rawValue
        }
    }

    /// Whether checksums are recorded: per tensor (native files) or per record (CRC-32, torch files).
    public var hasChecksums: Bool { !checksums.isEmpty || verifyRecords != nil }

    /// Checks every tensor against its recorded checksum; in a torch file, every record against
    /// its CRC-32 (a full read, as the native checks are, which a resume pays for anyway when it
    /// uses the tensors).
    ///
    /// Tensors are checked on every core; the error names the first damaged one in tree
    /// order, as a check of one tensor after another would.
    ///
    /// - Parameter progress: Reports the bytes checked (phase `verifying`; a compressed
    ///   file's decompression was reported when it was opened).
    /// - Throws: ``CheckpointError`` (`.checksumMismatch`) naming the first damaged tensor or record.
    public func verify(progress: CheckpointProgress? = nil) throws(CheckpointError) {
        try CheckpointProgress.reporting(to: progress) { () throws(CheckpointError) in try verify(tensorsWhere: { _ in true }) }
    }

    /// ``verify(progress:)`` for the tensors whose flattened paths `include` accepts; a torch file's
    /// records, which have no per-tensor checksums, are all checked.
    func verify(tensorsWhere include: (String) -> Bool) throws(CheckpointError) {
        let progress = CheckpointProgress.current
        if let progress {
            progress.begin("verifying", totalBytes: tree.tensors.reduce(0) { include($1.path) ? $0 + $1.tensor.byteCount : $0 })
        }
        defer { progress?.finish() }
        do {
            try verifyRecords?()
        } catch {
            throw error.at(path: path)
        }
        try decode(tensorsWhere: include)
        guard !checksums.isEmpty else { return }
        var tensors: [(name: String, tensor: Tensor)] = []
        tree.forEachTensor { name, tensor in
            if include(name) { tensors.append((name, tensor)) }
        }
        let failure = ParallelChecks.firstFailure(sizes: tensors.map(\.tensor.byteCount), path: path) { index in
            defer { progress?.advance(by: tensors[index].tensor.byteCount) }
            return verify(tensors[index].tensor, named: tensors[index].name)
        }
        if let failure { throw failure }
    }

    /// Decodes now, on every core, the tensors whose flattened paths `include` accepts, in a
    /// file whose tensors are decoded when first read (a float-split `.fsz` file); does
    /// nothing for other files.
    ///
    /// Loads call it for the tensors they keep, so damage is reported as an error: a tensor
    /// read directly whose chunk fails to decode reads as zeros (and the failure is logged).
    ///
    /// - Throws: ``CheckpointError``: `.malformed` for a damaged chunk (each records the
    ///   XXH3-64 of its decoded bytes), `.io` when the temporary file of decoded bytes has no room.
    public func decode(tensorsWhere include: (String) -> Bool) throws(CheckpointError) {
        var ranges: [UnsafeRawBufferPointer] = []
        var contents: (any LazyContents)?
        tree.forEachTensor { name, tensor in
            guard include(name), let view = tensor.buffer.encodedView else { return }
            ranges.append(view.bytes)
            contents = view.contents
        }
        try contents?.decode(ranges)
    }

    /// Checks one tensor of this file against its recorded checksum; `nil` when it matches.
    func verify(_ tensor: Tensor, named name: String) -> CheckpointError? {
        guard let recorded = checksums[name] else {
            return CheckpointError(.malformed, "tensor \"\(name)\" has no recorded checksum", path: path)
        }
        let actual = tensor.withUnsafeBytes(TensorChecksum.of)
        guard actual != recorded else { return nil }
        return CheckpointError(
            .checksumMismatch,
            "tensor \"\(name)\" is corrupt: its bytes hash to \(TensorChecksum.hex(actual)) but \(TensorChecksum.hex(recorded)) was recorded when it was saved; restore the file from another copy or resume from an earlier checkpoint",
            path: huggingFaceShards?.shardPath(ofTensor: name) ?? path)
    }
}
