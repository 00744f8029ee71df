/// How a checkpoint is stored, read from its file name's extension chain right to left
/// (SPEC §2.6): an optional compression, an optional tar container, then the format.
struct SaveTarget: Equatable {
    enum Format: Equatable {
        /// `.safetensors`, no extension, or any extension this library does not know.
        case native
        /// `.pt`: PyTorch's zip format.
        case torch
    }

    var format: Format
    var tar: Bool
    /// The compression extension without its dot (`gz`, `zst`, ...), if any.
    var compression: String?

    static let compressionExtensions: Set<String> = ["gz", "bz2", "xz", "lzma", "zst", "lz4", "lzo"]

    /// Reads the extension chain of the last component of `path`.
    init(path: String) {
        var parts = FilePaths.split(path).name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.count > 1, parts.first == "" { parts.removeFirst() }  // a hidden file's leading dot
        compression = nil
        tar = false
        format = .native
        if parts.count > 1, Self.compressionExtensions.contains(parts.last!) {
            compression = parts.removeLast()
        }
        if parts.count > 1, parts.last == "tgz", compression == nil {
            parts.removeLast()
            tar = true
            compression = "gz"
        } else if parts.count > 1, parts.last == "tar" {
            parts.removeLast()
            tar = true
        }
        if parts.count > 1, parts.last == "pt" {
            format = .torch
        }
    }

    /// Refuses, before anything is written, a target this build cannot produce.
    func checkSupported(path: String) throws(CheckpointError) {
        var missing: [String] = []
        if format == .torch { missing.append("the PyTorch format (.pt)") }
        if tar { missing.append("tar containers") }
        if let compression { missing.append("compression (.\(compression))") }
        guard missing.isEmpty else {
            throw CheckpointError(
                .unsupportedFormat,
                "this build of swift-checkpointing cannot save \(missing.joined(separator: " or ")) yet; name the file with .safetensors or no extension to save in the native format",
                path: path)
        }
    }
}
