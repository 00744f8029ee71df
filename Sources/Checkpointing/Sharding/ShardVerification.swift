extension ShardManifest {
    /// Checks a committed sharded checkpoint as a whole: every shard exists with the size and
    /// digest the manifest recorded, verifies as a checkpoint of its own (every tensor's
    /// checksum, or every torch record's CRC-32), and holds each piece the manifest says it
    /// holds, with that dtype and shape. Reads every byte of every shard.
    ///
    /// - Throws: ``CheckpointError`` naming the first shard and what is wrong with it.
    public func verifyShards(
        manifestPath: String, limits: ReadingLimits = ReadingLimits()
    ) throws(CheckpointError) {
        var pieces: [Int: [(path: String, dtype: DType, shape: [Int])]] = [:]
        for tensor in tensors {
            for piece in tensor.pieces { pieces[piece.rank, default: []].append((tensor.path, tensor.dtype, piece.shape)) }
        }
        for shard in shards {
            try CancellationFlag.current?.check("verifying shards", path: manifestPath)
            let path = shardPath(rank: shard.rank, manifestPath: manifestPath)
            let file = try ShardedLoad.openShard(rank: shard.rank, of: self, manifestPath: manifestPath, limits: limits).file
            try file.verify()
            for piece in pieces[shard.rank] ?? [] {
                guard let tensor = file.tree[path: piece.path]?.tensorValue, tensor.dtype == piece.dtype, tensor.shape == piece.shape
                else {
                    throw CheckpointError(
                        .malformed, "does not hold tensor \"\(piece.path)\" as \(piece.dtype.rawValue) \(piece.shape), as the manifest says",
                        path: path)
                }
            }
        }
    }
}
