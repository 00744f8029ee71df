/// How a checkpoint is stored, read from its file name's extension chain right to left:
/// an optional compression, an optional tar container, then the format.
struct SaveTarget: Equatable {
    enum Format: Equatable {
        /// `.safetensors`, no extension, or any extension this library does not know.
        case native
        /// `.pt`: PyTorch's zip format.
        case torch
    }

    var format: Format
    var tar: Bool
    /// The codec named by the last extension (`.gz`, `.zst`, ...; `.tgz` is gzip), if any.
    var compression: CompressionCodec?

    /// Reads the extension chain of the last component of `path`.
    init(path: String) {
        var parts = FilePaths.split(path).name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.count > 1, parts.first == "" { parts.removeFirst() }  // a hidden file's leading dot
        compression = nil
        tar = false
        format = .native
        if parts.count > 1, let codec = CompressionCodec(fileExtension: parts.last!) {
            parts.removeLast()
            compression = codec
        }
        if parts.count > 1, parts.last == "tgz", compression == nil {
            parts.removeLast()
            tar = true
            compression = .gzip
        } else if parts.count > 1, parts.last == "tar" {
            parts.removeLast()
            tar = true
        }
        if parts.count > 1, parts.last == "pt" {
            format = .torch
        }
    }
}
