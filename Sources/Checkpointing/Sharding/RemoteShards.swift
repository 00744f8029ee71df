import Logging

/// What sharded saves do with shards that may live in an object store.
enum RemoteShards {
    /// What the store shows for an object just uploaded, checked to be there in full: the
    /// ETag a manifest records, and the proof that the commit does not name a missing shard.
    static func confirmUpload(_ location: ObjectLocation, size: Int) throws(CheckpointError) -> ObjectInfo {
        guard let seen = try ObjectStores.store(for: location).info(location), seen.size == size else {
            throw CheckpointError(
                .objectStore, "the store does not show the shard just uploaded in full (\(size) bytes), so it cannot be committed",
                path: location.description)
        }
        return seen
    }

    /// Removes a file of a save that was not committed, local or remote. Only logged when it
    /// fails (the store is gone, say): without a manifest naming it, it is never loaded.
    static func discard(_ path: String) {
        switch StoragePath(path) {
        case .local(let file):
            SystemCalls.discard(file)
        case .remote(let location):
            do {
                try ObjectStores.store(for: location).delete(location)
            } catch {
                logger.warning("could not delete \(path), left by a sharded save that was not committed: \(error)")
            }
        }
    }
}
