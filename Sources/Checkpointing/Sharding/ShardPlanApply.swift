extension ShardPlan {
    /// Cuts a whole tree into the part `rank` of `worldSize` holds under this plan, and the
    /// ``Sharding`` that describes it, ready for a sharded save: how `ckpt convert --sharded`
    /// turns one checkpoint into N shards.
    ///
    /// Values that are not tensors are kept on every rank. A tensor the plan gives this rank
    /// none of is left out. A run of rows is a view of the original bytes (no copy); any other
    /// box is copied.
    public func apply(to tree: StateValue, rank: Int, worldSize: Int) throws(CheckpointError) -> (tree: StateValue, sharding: Sharding) {
        var slices: [String: TensorSlice] = [:]
        let cut = try rethrowingCheckpointError {
            try tree.mappingTensors { path, tensor in
                guard let box = slice(path, tensor.shape, rank, worldSize) else { return nil }
                guard box.globalShape == tensor.shape else {
                    throw CheckpointError(
                        .invalidArgument, "the shard plan gave \"\(path)\" the global shape \(box.globalShape), but it is \(tensor.shape)")
                }
                if let problem = box.problem() {
                    throw CheckpointError(.invalidArgument, "the shard plan's slice of \"\(path)\" \(problem)")
                }
                guard !box.isWhole else { return tensor }
                slices[path] = box
                return try tensor.cut(to: box)
            } ?? .none
        }
        return (cut, Sharding(slices: slices))
    }
}

extension Tensor {
    /// The elements of `box` (a box of this whole tensor) as a tensor of `box.shape`.
    func cut(to box: TensorSlice) throws(CheckpointError) -> Tensor {
        let rowsOnly = box.shape.indices.dropFirst().allSatisfy { box.shape[$0] == shape[$0] }
        let rowBytes = shape.dropFirst().reduce(dtype.byteSize, *)
        if rowsOnly, let firstRow = box.offset.first {
            let start = firstRow * rowBytes
            let bytes = UnsafeRawBufferPointer(rebasing: buffer.bytes[start..<(start + box.shape[0] * rowBytes)])
            return Tensor(dtype: dtype, shape: box.shape, buffer: TensorBuffer(borrowing: bytes, owner: buffer))
        }
        let copy = TensorBuffer.allocate(byteCount: try Tensor.byteCount(dtype: dtype, shape: box.shape), zeroed: false)
        SliceCopy.copy(
            box, from: buffer.bytes, source: .whole(shape), to: UnsafeMutableRawBufferPointer(mutating: copy.bytes), destination: box,
            elementSize: dtype.byteSize)
        return Tensor(dtype: dtype, shape: box.shape, buffer: copy)
    }
}
