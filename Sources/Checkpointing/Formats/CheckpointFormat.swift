/// A file format that stores a whole checkpoint tree: the seam where each format plugs into
/// saving (``SaveTarget``) and loading (``CheckpointFile/open(_:)``).
protocol CheckpointFormat {
    /// A tree prepared for writing, which knows the exact size of the file it makes.
    associatedtype Layout

    /// Prepares `tree` for writing; every check that can fail before a byte is written fails here.
    static func layout(_ tree: StateValue) throws(CheckpointError) -> Layout
    /// The size of the file `layout` makes, for the free-space check before writing.
    static func size(of layout: Layout) -> Int
    /// Writes the file to `sink`, which may be a local file, a compressor or an upload, and
    /// returns its ``FormatContents/integrityDigest``.
    @discardableResult
    static func write(_ layout: Layout, to sink: any ByteSink) throws(CheckpointError) -> UInt64
    /// Reads a file of this format; tensors stay in the mapping.
    static func read(_ file: MappedFile) throws(CheckpointError) -> FormatContents
}

/// What reading a checkpoint file gives.
struct FormatContents {
    var tree: StateValue
    /// Recorded checksums by flattened path; empty when the format records none.
    var checksums: [String: UInt64]
    /// Free-form metadata stored with the file.
    var metadata: [String: String]
    /// Whether the file carries a whole checkpoint tree, rather than only named tensors.
    var isNative: Bool
    /// XXH3-64 of the file's index, which holds a checksum of everything else: the
    /// safetensors header (with every tensor's checksum and the tree's), or the zip central
    /// directory (with every record's CRC-32). It identifies the file's contents at the cost
    /// of reading its index, which a sharded checkpoint's manifest uses to tie each shard.
    var integrityDigest: UInt64
    /// Checks what the format records beyond per-tensor checksums (a torch file: the CRC-32
    /// of every record); `nil` when it records nothing else.
    var verifyRecords: (@Sendable () throws(CheckpointError) -> Void)? = nil
}

extension CheckpointFormat {
    /// Writes `tree` to `path` in this format (inside the tar and compression its extension
    /// chain names, with the default options), atomically and durably.
    static func save(_ tree: StateValue, to path: String) throws(CheckpointError) {
        try save(tree, to: path, compression: CompressionOptions())
    }
}
