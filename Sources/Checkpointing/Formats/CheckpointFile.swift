/// An opened checkpoint file: its kind, its tree, and what is needed to verify it.
///
/// Opening maps the file and reads only its header: tensors in the tree point into the mapping
/// and are read from disk when used. Checksums are verified by ``verify()`` (which
/// ``loadCheckpoint(_:into:weightsOnly:strict:ignoreKeys:verifyChecksums:processGroup:)`` calls),
/// not by opening.
public struct CheckpointFile: Sendable {
    /// The path the file was opened from.
    public let path: String
    /// What the file is.
    public let kind: FileKind
    /// Whether the file carries this library's tree and checksums (a native file), rather than
    /// being a plain safetensors file whose root holds its tensors by name.
    public let isNative: Bool
    /// The checkpoint tree; tensors are memory-mapped.
    public let tree: StateValue
    /// The safetensors `__metadata__`, as stored.
    public let metadata: [String: String]
    /// The size of the file in bytes.
    public let byteCount: Int
    let checksums: [String: UInt64]

    /// Opens the checkpoint at `path`, recognising its format from its bytes.
    ///
    /// - Throws: ``CheckpointError``: `.notFound`; `.malformed` for a damaged file;
    ///   `.unsupportedFormat` for a kind of file this build does not read, naming what it is.
    public static func open(_ path: String) throws(CheckpointError) -> CheckpointFile {
        let file = try MappedFile(path: path)
        let prefix = UnsafeRawBufferPointer(rebasing: file.bytes.prefix(512))
        guard let kind = FileKind.sniff(prefix, fileSize: file.bytes.count) else {
            throw CheckpointError(
                .unsupportedFormat,
                "is not a checkpoint this library recognises (neither safetensors, a PyTorch zip, a tar archive nor a compressed stream)",
                path: path)
        }
        switch kind {
        case .safetensors:
            let contents = try NativeFormat.read(file)
            return CheckpointFile(
                path: path, kind: kind, isNative: contents.isNative, tree: contents.tree,
                metadata: contents.metadata, byteCount: file.bytes.count, checksums: contents.checksums)
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

    /// The format name for reports: `native`, `safetensors`, ...
    public var formatName: String {
        switch kind {
        case .safetensors: isNative ? "native" : "safetensors"
        default: kind.rawValue
        }
    }

    /// Whether tensor checksums are recorded (native files).
    public var hasChecksums: Bool { !checksums.isEmpty }

    /// Checks every tensor against its recorded checksum.
    ///
    /// - Throws: ``CheckpointError`` (`.checksumMismatch`) naming the first damaged tensor.
    public func verify() throws(CheckpointError) {
        guard hasChecksums else { return }
        var failure: CheckpointError?
        tree.forEachTensor { name, tensor in
            guard failure == nil else { return }
            failure = verify(tensor, named: name)
        }
        if let failure { throw failure }
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
            path: path)
    }
}
