/// What a file is, recognised from its first bytes, never from its name.
public enum FileKind: String, Sendable, CaseIterable {
    /// A safetensors file: this library's native format, or a plain one.
    case safetensors
    /// PyTorch's zip format (what `torch.save` writes).
    case torchZip = "torch-zip"
    /// PyTorch's pre-1.6 pickle stream (`_use_new_zipfile_serialization=False`).
    case torchLegacy = "torch-legacy"
    /// A tar archive.
    case tar
    case gzip, bzip2, xz, lzma, zstd, lz4, lzop
    /// This library's float-split stream (`.fsz`).
    case floatSplit = "float-split"
    /// A PyTorch Distributed Checkpoint folder (``DistributedCheckpoint``): recognised by its
    /// `.metadata`, never sniffed from a file's bytes.
    case distributedCheckpoint = "dcp"

    /// Recognises a file of `fileSize` bytes from its first bytes (512 are enough for a tar header).
    static func sniff(_ bytes: UnsafeRawBufferPointer, fileSize: Int) -> FileKind? {
        func starts(with magic: [UInt8]) -> Bool {
            bytes.count >= magic.count && zip(bytes, magic).allSatisfy { $0 == $1 }
        }
        // A safetensors header length, if the first 8 bytes can be one.
        var safetensorsHeaderLength: Int? {
            guard bytes.count >= 8 else { return nil }
            let length = bytes.loadUnaligned(as: UInt64.self).littleEndian
            return length <= UInt64(SafetensorsHeader.maximumLength) ? Int(length) : nil
        }
        // First the unmistakable case: a plausible length followed by the header's '{' (no other
        // format here has '{' at byte 8), so no header length can pass for another magic number.
        if let length = safetensorsHeaderLength, 8 + length <= fileSize, bytes.count > 8, bytes[8] == UInt8(ascii: "{") {
            return .safetensors
        }
        if starts(with: [0x50, 0x4B, 0x03, 0x04]) || starts(with: [0x50, 0x4B, 0x05, 0x06]) { return .torchZip }
        if starts(with: [0x1F, 0x8B]) { return .gzip }
        if starts(with: Array("BZh".utf8)) { return .bzip2 }
        if starts(with: [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { return .xz }
        if starts(with: [0x28, 0xB5, 0x2F, 0xFD]) { return .zstd }
        if starts(with: [0x04, 0x22, 0x4D, 0x18]) { return .lz4 }
        if starts(with: [0x89, 0x4C, 0x5A, 0x4F, 0x00, 0x0D, 0x0A, 0x1A, 0x0A]) { return .lzop }
        if starts(with: FloatSplitFormat.magic) { return .floatSplit }
        // torch's legacy stream: pickle protocol 2, then the magic number 0x1950a86a20f9469cfc6c.
        if starts(with: [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]) {
            return .torchLegacy
        }
        if bytes.count >= 262, Array(bytes[257..<262]) == Array("ustar".utf8) { return .tar }
        // Any other file with the header's '{' at byte 8, or whose first 8 bytes are a length
        // that fits in it, goes to the safetensors parser, which then says exactly what is
        // wrong with the header (a length past the end, a header that is not JSON, ...).
        if bytes.count > 8, bytes[8] == UInt8(ascii: "{") { return .safetensors }
        if let length = safetensorsHeaderLength, 8 + length <= fileSize { return .safetensors }
        // The legacy "lzma alone" header: properties byte (usually 0x5D), dictionary size, and an
        // uncompressed size that is either known or all ones.
        if bytes.count >= 13, bytes[0] < 225, bytes[1] == 0, bytes[4] <= 0x80 { return .lzma }
        return nil
    }

    /// What the file is, in words, for messages.
    var summary: String {
        switch self {
        case .safetensors: "a safetensors file"
        case .torchZip: "a PyTorch zip checkpoint (torch.save)"
        case .torchLegacy: "a PyTorch checkpoint in the pre-1.6 legacy format"
        case .tar: "a tar archive"
        case .gzip: "a gzip stream"
        case .bzip2: "a bzip2 stream"
        case .xz: "an xz stream"
        case .lzma: "an lzma stream"
        case .zstd: "a zstd stream"
        case .lz4: "an lz4 frame"
        case .lzop: "an lzop file"
        case .floatSplit: "a float-split (.fsz) stream"
        case .distributedCheckpoint: "a PyTorch Distributed Checkpoint folder"
        }
    }
}
