extension CheckpointFile {
    /// Unmaps the memory that decoded float-split (`.fsz`) checkpoints leave for the next one.
    ///
    /// When the last tensor of a decoded `.fsz` file is released, its memory is kept (at most the
    /// two most recent mappings, their pages released to the kernel with `MADV_FREE`) so that the
    /// next `.fsz` load in the process decodes into pages it already has instead of paying the
    /// kernel for fresh ones. The kernel reclaims those pages whenever it needs the room, but
    /// until it does they count in the process's resident size. Call this when the process is
    /// done loading checkpoints (after the last resume of a job, between phases of an evaluation
    /// loop) to give the address space back at once. Tensors still alive keep their own memory;
    /// it is never unmapped under them.
    public static func releaseKeptDecodeMemory() {
        ReusedMemory.current.releaseAll()
    }
}
