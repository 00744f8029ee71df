/// How ``saveCheckpoint(_:filename:format:weightsOnly:ignoreKeys:compression:limits:sharding:processGroup:progress:)-80tki``
/// stores a checkpoint.
public enum SaveFormat: Sendable, Equatable {
    /// One file, whose name's extension chain chooses the format (this library's native
    /// safetensors, or PyTorch's zip for `.pt`), a tar container and a compression. The default.
    case file
    /// A Hugging Face sharded checkpoint: the file name is a folder (or an index path ending in
    /// `.safetensors.index.json`) that gets `model-00001-of-0000N.safetensors` shards of at most
    /// `maxShardSize` bytes of tensor data each (a larger tensor gets a shard of its own) and
    /// `model.safetensors.index.json`, written last. It holds the model's tensors only (a
    /// training state's `state/model`), named as Hugging Face names them; see
    /// <doc:HuggingFaceCheckpoints>. Parse a size such as `"5GB"` with ``HuggingFaceSharded/parseSize(_:)``.
    case huggingFaceSharded(maxShardSize: Int = HuggingFaceSharded.defaultMaxShardSize)
    /// A PyTorch Distributed Checkpoint (DCP) folder: the file name is the folder (it may not
    /// contain `{rank}`), which gets a `__<rank>_0.distcp` data file per writing rank (rank 0's
    /// alone without `sharding`; every rank's with it) and `.metadata`, written last by rank 0
    /// once every rank has written. `torch.distributed.checkpoint.load` and `dcp_to_torch_save`
    /// read it; see <doc:PyTorchDistributedCheckpoints>. The whole tree is saved, flattened as DCP's
    /// default planner flattens a state dict: integer dict keys become strings, and empty dicts
    /// are not saved.
    case distributedCheckpoint
}
