
/// Loading a DCP checkpoint on any number of ranks: DCP's chunks are boxes of global tensors,
/// so the ``ShardPlan`` that reshards this library's own sharded checkpoints reshards them too.
///
/// Every rank reads `.metadata` and every value that is not a tensor; for each tensor it asks
/// the plan for its box, and reads only the archives of the chunks that overlap it (a box that
/// is exactly one chunk is that chunk's mapping, when aligned). With `verifyChecksums`, each
/// archive read is checked against its CRC-32s (DCP records no other checksums).
///
/// The reporter in scope gets one phase, `loading`, over the bytes of the archives the rank
/// reads, counted as each entry is read (and checked).
enum DCPLoad {
    static func read(
        folder: String, plan: ShardPlan, verifyChecksums: Bool, processGroup group: any ProcessGroup
    ) throws(CheckpointError) -> (tree: StateValue, sharding: Sharding) {
        let progress = CheckpointProgress.current
        // The record checks report into the reporter in scope; they count into this phase here.
        return try CheckpointProgress.withoutReporting { () throws(CheckpointError) in
            try read(folder: folder, plan: plan, verifyChecksums: verifyChecksums, processGroup: group, progress: progress)
        }
    }

    private static func read(
        folder: String, plan: ShardPlan, verifyChecksums: Bool, processGroup group: any ProcessGroup,
        progress: CheckpointProgress?
    ) throws(CheckpointError) -> (tree: StateValue, sharding: Sharding) {
        let checkpoint = try DistributedCheckpoint.open(folder)
        let metadata = checkpoint.metadata
        let reader = DCPReader(checkpoint, deferringCopies: false)
        let saved = plan.keepsSavedPieces ? try SavedPieces(checkpoint, worldSize: group.worldSize) : nil
        var leaves: [String: StateValue] = [:]
        var slices: [String: TensorSlice] = [:]
        var boxes: [String: TensorSlice] = [:]
        var needed: [DCPMetadata.Location] = []
        // The bytes of the archives each entry reads.
        var byteCounts: [String: Int] = [:]
        for fqn in metadata.fqns {
            let before = needed.count
            defer { byteCounts[fqn] = needed[before...].reduce(0) { $0 + $1.length } }
            switch metadata.items[fqn] {
            case .value(let location):
                needed.append(location)
            case .tensor(let tensor):
                let path = DCPKeyPaths.statePath(DCPKeyPaths.keyPath(of: fqn, in: metadata))
                let wanted: TensorSlice?
                if let saved {
                    wanted = try saved.box(of: fqn, tensor, rank: group.rank)
                } else {
                    wanted = plan.slice(path, tensor.shape, group.rank, group.worldSize)
                }
                guard let box = wanted else { continue }
                guard box.globalShape == tensor.shape else {
                    throw CheckpointError(
                        .invalidArgument, "the shard plan gave tensor \"\(path)\" the global shape \(box.globalShape), but it is \(tensor.shape)",
                        path: folder)
                }
                if let problem = box.problem() {
                    throw CheckpointError(.invalidArgument, "the shard plan's slice of \"\(path)\" \(problem)", path: folder)
                }
                if !box.isWhole { slices[path] = box }
                boxes[fqn] = box
                // The chunks the box overlaps (an empty box is one chunk, or none).
                needed += tensor.chunks.filter { $0.box.intersection(box) != nil || $0.box == box }.map(\.location)
            case nil:
                break
            }
        }
        progress?.begin("loading", totalBytes: needed.reduce(0) { $0 + $1.length })
        defer { progress?.finish() }
        let cancellation = CancellationFlag.current
        try reader.prefetchingHeaders(of: needed) { () throws(CheckpointError) in
            for fqn in metadata.fqns {
                try cancellation?.check("loading", path: folder)
                switch metadata.items[fqn] {
                case .value:
                    let item = try reader.value(fqn)
                    if verifyChecksums { try item.verifyRecords() }
                    leaves[fqn] = item.value
                case .tensor:
                    guard let box = boxes[fqn] else { continue }
                    let item = try reader.tensor(fqn, box: box, deferred: false)
                    if verifyChecksums { try item.verifyRecords() }
                    leaves[fqn] = .tensor(item.value)
                case nil:
                    break
                }
                progress?.advance(by: byteCounts[fqn] ?? 0)
            }
        }
        do {
            return (try DCPKeyPaths.tree(of: metadata, leaves: leaves), Sharding(slices: slices))
        } catch {
            throw error.at(path: FilePaths.join(folder, DistributedCheckpoint.metadataName))
        }
    }

    /// What each rank saved, for ``ShardPlan/asSaved``: DCP's data files are named after the
    /// rank that wrote them (`__<rank>_<n>.distcp`), so a rank gets back the chunks in its files.
    private struct SavedPieces {
        /// The rank that wrote each data file.
        let rankOfFile: [String: Int]

        init(_ checkpoint: DistributedCheckpoint, worldSize: Int) throws(CheckpointError) {
            var ranks: [String: Int] = [:]
            for file in checkpoint.files {
                guard let rank = Self.writerRank(file.name) else {
                    throw CheckpointError(
                        .invalidArgument,
                        "its data file \(file.name) is not named after a rank (__<rank>_<n>.distcp), so which rank saved what is unknown; load with a plan that reshards (such as .splitFirstDimension)",
                        path: checkpoint.folder)
                }
                ranks[file.name] = rank
            }
            // Ranks that wrote nothing still leave an empty data file.
            let present = try SystemCalls.folderEntries(checkpoint.folder).compactMap(Self.writerRank)
            let savedWorldSize = (Array(ranks.values) + present).reduce(0) { max($0, $1 + 1) }
            guard savedWorldSize == worldSize else {
                throw CheckpointError(
                    .distributed,
                    "was saved by \(savedWorldSize) ranks and this run has \(worldSize): each rank cannot get back what it saved; resume on \(savedWorldSize) ranks, or load with a shard plan that reshards (such as .splitFirstDimension)",
                    path: checkpoint.folder)
            }
            rankOfFile = ranks
        }

        /// The rank in a data file's name `__<rank>_<n>.distcp`.
        static func writerRank(_ name: String) -> Int? {
            guard name.hasPrefix("__"), name.hasSuffix(DistributedCheckpoint.dataFileExtension) else { return nil }
            let parts = name.dropFirst(2).dropLast(DistributedCheckpoint.dataFileExtension.count).split(separator: "_")
            guard parts.count == 2, let rank = Int(parts[0]), Int(parts[1]) != nil, rank >= 0 else { return nil }
            return rank
        }

        /// The box of `tensor` that `rank` saved, or `nil` when it saved none.
        func box(of fqn: String, _ tensor: DCPMetadata.TensorItem, rank: Int) throws(CheckpointError) -> TensorSlice? {
            let mine = tensor.chunks.filter { rankOfFile[$0.location.file] == rank }
            guard mine.count <= 1 else {
                throw CheckpointError(
                    .invalidArgument,
                    "rank \(rank) saved \(mine.count) chunks of \"\(fqn)\", which one tensor of that rank cannot hold; load with a plan that reshards (such as .splitFirstDimension)")
            }
            return mine.first?.box
        }
    }
}
