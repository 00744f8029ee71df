extension CheckpointFile {
    /// Opens a DCP folder as one checkpoint: its tree rebuilt from the key paths of
    /// `.metadata`, every value read, every chunk's archive read in place (its zip directory
    /// and pickle, no tensor data). A tensor saved as one aligned chunk is that chunk's mapping;
    /// one saved in several chunks, or misaligned, is assembled when first used. ``verify(progress:)``
    /// checks every archive's CRC-32s.
    static func open(distributedCheckpoint folder: String) throws(CheckpointError) -> CheckpointFile {
        let checkpoint = try DistributedCheckpoint.open(folder)
        let metadata = checkpoint.metadata
        let reader = DCPReader(checkpoint, deferringCopies: true)
        var leaves: [String: StateValue] = [:]
        var checks: [@Sendable () throws(CheckpointError) -> Void] = []
        try reader.prefetchingHeaders(of: metadata.locations) { () throws(CheckpointError) in
            for fqn in metadata.fqns {
                switch metadata.items[fqn] {
                case .tensor(let tensor):
                    let item = try reader.tensor(fqn, box: .whole(tensor.shape), deferred: true)
                    leaves[fqn] = .tensor(item.value)
                    checks.append(item.verifyRecords)
                case .value:
                    let item = try reader.value(fqn)
                    leaves[fqn] = item.value
                    checks.append(item.verifyRecords)
                case nil:
                    break
                }
            }
        }
        let tree: StateValue
        do {
            tree = try DCPKeyPaths.tree(of: metadata, leaves: leaves)
        } catch {
            throw error.at(path: FilePaths.join(checkpoint.folder, DistributedCheckpoint.metadataName))
        }
        let verify = checks
        let files = reader.mappedFiles
        var file = CheckpointFile(
            path: checkpoint.folder, kind: .distributedCheckpoint, isNative: false, tree: tree, metadata: [:],
            byteCount: checkpoint.byteCount, checksums: [:], integrityDigest: checkpoint.metadataDigest,
            verifyRecords: { () throws(CheckpointError) in
                // The checks read every archive in file order: let the kernel read ahead.
                for data in files { data.adviseSequentialRead() }
                for check in verify { try check() }
            })
        file.distributedCheckpoint = checkpoint
        return file
    }
}
