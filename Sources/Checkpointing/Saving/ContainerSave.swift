extension CheckpointFormat {
    /// Writes `tree` to `path` as its extension chain says: in this format, inside
    /// a tar archive when the name says `.tar` or `.tgz`, compressed when it ends in a codec's
    /// extension; atomically and durably.
    ///
    /// One streaming pass: the format writes into the tar writer, which writes into the
    /// compressor, which writes into the file. Nothing is held in memory but the codec's
    /// buffers. Behind a compressor the sink is not seekable, so the native format checksums
    /// its tensors before writing them rather than while.
    ///
    /// - Returns: The file's size and its format's ``FormatContents/integrityDigest``.
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
            var sink: any ByteSink = file
            var compressor: (any StreamTransform)?
            if let codec = target.compression {
                let stream = try codec.compressor(into: file, options: options)
                compressor = stream
                sink = stream
                if let cancellation = CancellationFlag.current {
                    sink = CancellationCheckingSink(next: sink, cancellation: cancellation, path: path)
                }
            }
            let progress = CheckpointProgress.current
            progress?.begin("saving", totalBytes: archiveSize)
            defer { progress?.finish() }
            if let progress { sink = ProgressSink.counting(into: sink, progress) }
            var digest: UInt64 = 0
            if target.tar {
                let tar = TarWriter(sink: sink)
                try tar.writeMember(name: member, size: formatSize) { memberSink throws(CheckpointError) in
                    digest = try write(layout, to: memberSink)
                }
                try tar.finish()
            } else {
                digest = try write(layout, to: sink)
            }
            try compressor?.finish()
            // Before the commit, which uploads a file bound for an object store: a phase of its own.
            progress?.finish()
            try file.commit()
            return SavedFile(path: path, byteCount: file.position, digest: digest)
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
    /// The format's ``FormatContents/integrityDigest``.
    var digest: UInt64
}
