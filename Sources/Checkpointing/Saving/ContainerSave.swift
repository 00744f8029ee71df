extension CheckpointFormat {
    /// Writes `tree` to `path` as its extension chain says (SPEC §2.6): in this format, inside
    /// a tar archive when the name says `.tar` or `.tgz`, compressed when it ends in a codec's
    /// extension; atomically and durably.
    ///
    /// One streaming pass: the format writes into the tar writer, which writes into the
    /// compressor, which writes into the file. Nothing is held in memory but the codec's
    /// buffers. Behind a compressor the sink is not seekable, so the native format checksums
    /// its tensors before writing them rather than while.
    ///
    /// - Returns: The file's size, and for a tar (whose bytes are written strictly in order)
    ///   the XXH3-64 of the whole file, computed as the bytes go out.
    @discardableResult
    static func save(_ tree: StateValue, to path: String, compression options: CompressionOptions) throws(CheckpointError) -> SavedFile {
        let target = SaveTarget(path: path)
        let layout = try layout(tree)
        let formatSize = size(of: layout)
        let member = target.format.tarMemberName
        let archiveSize = target.tar ? TarWriter.archivedSize(name: member, size: formatSize) + TarWriter.endSize : formatSize
        // A compressed size is not known in advance, so the free-space check is left to the
        // writes (a full disk still fails cleanly: the write is atomic).
        let file = try AtomicFileWriter(path: path, expectedSize: target.compression == nil ? archiveSize : nil)
        do {
            // A tar is written in order, so the whole file can be hashed on its way out.
            let hashing = target.tar ? HashingSink(next: file) : nil
            let bottom: any ByteSink = hashing ?? file
            var sink: any ByteSink = bottom
            var compressor: (any StreamTransform)?
            if let codec = target.compression {
                let stream = try codec.compressor(into: bottom, options: options)
                compressor = stream
                sink = stream
            }
            if target.tar {
                let tar = TarWriter(sink: sink)
                try tar.writeMember(name: member, size: formatSize) { memberSink throws(CheckpointError) in
                    try write(layout, to: memberSink)
                }
                try tar.finish()
            } else {
                try write(layout, to: sink)
            }
            try compressor?.finish()
            try file.commit()
            return SavedFile(path: path, byteCount: bottom.position, checksum: hashing?.checksum)
        } catch {
            file.abort()
            throw error.at(path: path)
        }
    }
}

/// What a save wrote.
struct SavedFile {
    var path: String
    var byteCount: Int
    /// XXH3-64 of the whole file, when it was computed (tar files).
    var checksum: UInt64?
}

/// Passes bytes on to the next sink and hashes them (XXH3-64) on the way.
final class HashingSink: ByteSink {
    private let next: any ByteSink
    private let hash = StreamingChecksum()

    init(next: any ByteSink) { self.next = next }

    var position: Int { next.position }

    /// Hashes and passes on 4 MiB at a time: each chunk is still in cache when it is written,
    /// and the file sees writes of the size its writeback hints are tuned for.
    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        var offset = 0
        while offset < bytes.count {
            let chunk = UnsafeRawBufferPointer(rebasing: bytes[offset..<min(bytes.count, offset + NativeFormat.chunkSize)])
            hash.update(chunk)
            try next.write(chunk)
            offset += chunk.count
        }
    }

    /// The hash of every byte written so far.
    var checksum: UInt64 { hash.value }
}
