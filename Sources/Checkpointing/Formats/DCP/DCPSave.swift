import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Saves `tree` as a PyTorch Distributed Checkpoint (DCP) folder: what
/// ``saveCheckpoint(tree:filename:format:runName:timestamp:weightsOnly:ignoreKeys:compression:limits:sharding:processGroup:progress:)``
/// does for ``SaveFormat/distributedCheckpoint``. Returns the folder, on every rank.
///
/// The folder gets one data file per writing rank, `__<rank>_0.distcp`, a run of `torch.save`
/// archives (one per tensor chunk and one per other value, each starting on a 64-byte
/// boundary so that a reader can map tensors in place), and `.metadata`, written last by rank
/// 0, once every rank has reported its file written: a folder without `.metadata` holds no
/// checkpoint. Writing over an existing DCP folder first removes its `.metadata` (and data
/// files this save does not write), so the folder never pairs an old `.metadata` with new data.
///
/// Without `sharding`, rank 0 writes the whole tree alone and the other ranks wait. With it,
/// every rank contributes its tree: a tensor whose flattened path `sharding` lists is that box
/// of a global tensor, any other tensor is whole; the boxes of every tensor must tile it. A
/// tensor several ranks hold whole is written once, by the rank with the fewest bytes to write
/// so far; a value that is not a tensor, by the lowest rank that holds it.
func saveDistributedCheckpoint(
    _ tree: StateValue, template: FilenameTemplate, values: FilenameValues, weightsOnly: Bool, ignoreKeys: IgnoreKeys?,
    limits: ReadingLimits, sharding: Sharding?, processGroup: any ProcessGroup
) throws(CheckpointError) -> String {
    for variable in [FilenameTemplate.Variable.rank, .localRank, .nodeRank] where template.contains(variable) {
        throw CheckpointError(
            .invalidTemplate,
            "a DCP checkpoint is one folder that every rank writes into, so its name cannot contain {\(variable.rawValue)}: \"\(template.pattern)\"")
    }
    let rendered = try template.renderPath(values, isFolder: true)
    guard case .local = StoragePath(rendered) else {
        throw CheckpointError(
            .invalidArgument,
            "DCP checkpoints are written to a local or shared file system; save to a folder there (or save the native format to object storage)",
            path: rendered)
    }
    var contributed: StateValue?
    if sharding != nil || processGroup.rank == 0 {
        var selected = weightsOnly ? try weightsOnlyTree(tree) : tree
        if let ignoreKeys {
            for pattern in try ignoreKeys.apply(to: &selected) {
                logger.warning("ignore-keys pattern \"\(pattern)\" matched nothing in the checkpoint being saved")
            }
        }
        contributed = selected
    }
    try DCPSave(folder: rendered, processGroup: processGroup, limits: limits).save(contributed, sharding: sharding)
    return rendered
}

/// A DCP save, in four collectives bounded by the group's timeout:
/// 1. every rank flattens its tree and shares what it holds (FQN, key path, dtype, box, size);
///    every rank then checks the whole the same way (one kind, dtype and shape per FQN, boxes
///    that tile each tensor) and assigns each distinct piece to one of the ranks holding it (a
///    value to the lowest, a replicated box to the one with the least to write); any problem,
///    and no rank writes anything;
/// 2. rank 0 removes an existing `.metadata` (and stale data files) and tells the others;
/// 3. every rank writes its data file atomically and durably and shares where each piece is;
/// 4. rank 0 writes `.metadata` once every rank has succeeded, and tells the others. A rank
///    that fails or dies leaves no `.metadata`; the others fail with its error or a timeout.
struct DCPSave {
    let folder: String
    let group: any ProcessGroup
    /// The nesting depth a rank's tree may have: checked while planning, so every rank learns of
    /// a tree too deep before any writes.
    let limits: ReadingLimits

    init(folder: String, processGroup: any ProcessGroup, limits: ReadingLimits = ReadingLimits()) {
        self.folder = folder
        group = processGroup
        self.limits = limits
    }

    /// The archives start on multiples of this, so tensors can be mapped in place.
    static let alignment = 64

    /// What a rank holds, shared before writing.
    private struct Plan: Codable {
        struct Item: Codable {
            var fqn: String
            var path: [ManifestKey]
            /// For a tensor: its dtype and box.
            var dtype: DType?
            var box: TensorSlice?
            /// The size of its archive.
            var bytes: Int
        }
        var folder: String
        var items: [Item] = []
        var error: RankError?
    }

    /// Where a rank wrote each piece, shared after writing.
    private struct Report: Codable {
        struct Piece: Codable {
            var unit: Int
            var offset: Int
            var length: Int
        }
        var pieces: [Piece] = []
        var error: RankError?
    }

    /// One piece to write: a value, or one distinct box of a tensor.
    private struct Unit {
        var fqn: String
        var box: TensorSlice?
        var writer: Int
    }

    /// An entry of the whole checkpoint.
    private struct Entry {
        var fqn: String
        var path: [DCPKey]
        var dtype: DType?
        var shape: [Int]
        /// The units of its pieces, in order.
        var units: [Int] = []
    }

    /// Saves this rank's `tree` (`nil` when it contributes nothing: a save without `sharding`
    /// on a rank other than 0). With `sharding`, every rank writes a data file, empty if it was
    /// assigned nothing (as DCP does); without, only rank 0 does.
    func save(_ tree: StateValue?, sharding: Sharding?) throws(CheckpointError) {
        let timeout = group.collectiveTimeout
        let writesFile = sharding != nil || group.rank == 0
        let dataName = "__\(group.rank)_0" + DistributedCheckpoint.dataFileExtension

        // 1. What every rank holds, and who writes what.
        var plan = Plan(folder: folder)
        var local: [String: (value: StateValue, layout: TorchFormat.Layout)] = [:]
        var problem: CheckpointError?
        do throws(CheckpointError) {
            if let tree {
                try limits.checkDepth(of: tree)
                (plan.items, local) = try items(of: tree, sharding: sharding ?? Sharding())
            }
        } catch {
            plan.error = RankError(error, rank: group.rank)
            problem = error
        }
        let plans = try group.allGather(encode(plan), timeout: timeout).enumerated().map { (rank, bytes) throws(CheckpointError) in
            try decode(Plan.self, bytes, from: rank)
        }
        if let problem { throw problem }
        let (entries, units) = try assign(plans)
        let mine = units.indices.filter { units[$0].writer == group.rank }

        // 2. No old .metadata may describe the new data files.
        var cleared = RankOutcome.success()
        var clearingFailure: CheckpointError?
        if group.rank == 0 {
            do throws(CheckpointError) {
                try removeStaleFiles(keepingRanks: sharding != nil ? plans.count : 1)
            } catch {
                clearingFailure = error
                cleared = RankOutcome.failure(error, rank: 0)
            }
        }
        let clearing = try group.broadcast(cleared, from: 0, timeout: timeout)
        do throws(CheckpointError) {
            _ = try RankOutcome.payload(of: clearing, from: 0)
        } catch {
            var refused = clearingFailure ?? error
            refused.message += " (the DCP save was not started: rank 0 could not clear the folder)"
            throw refused
        }

        // 3. Every rank writes its data file; a failure is reported, not thrown: the others wait for it.
        let dataPath = FilePaths.join(folder, dataName)
        var report = Report()
        var failure: CheckpointError?
        do throws(CheckpointError) {
            if writesFile { report.pieces = try write(mine.map { ($0, units[$0]) }, local: local, to: dataPath) }
        } catch {
            report.error = RankError(error, rank: group.rank)
            failure = error
        }
        let reports = try group.allGather(encode(report), timeout: timeout).enumerated().map { (rank, bytes) throws(CheckpointError) in
            try decode(Report.self, bytes, from: rank)
        }

        // 4. Rank 0 commits.
        var outcome = RankOutcome.success()
        var decided: CheckpointError?
        if group.rank == 0 {
            do throws(CheckpointError) {
                if let failed = RankError.combined(
                    reports.map(\.error), outcome: "not every rank wrote its data file; the DCP checkpoint was not committed")
                {
                    throw failed
                }
                let pickle = try metadata(entries: entries, units: units, reports: reports)
                try writeFileAtomically(pickle, to: FilePaths.join(folder, DistributedCheckpoint.metadataName))
            } catch {
                decided = error
                outcome = RankOutcome.failure(error, rank: 0)
            }
        }
        let shared = try group.broadcast(outcome, from: 0, timeout: timeout)
        do throws(CheckpointError) {
            _ = try RankOutcome.payload(of: shared, from: 0)
        } catch {
            // Known not committed: this rank's data file is garbage.
            if writesFile, report.error == nil { SystemCalls.discard(dataPath) }
            throw failure ?? decided ?? error
        }
        logger.debug("saved DCP checkpoint", metadata: ["folder": "\(folder)", "file": "\(dataName)"])
    }

    // MARK: 1. Planning

    /// This rank's leaves, and each one's archive laid out, keyed by FQN.
    private func items(
        of tree: StateValue, sharding: Sharding
    ) throws(CheckpointError) -> ([Plan.Item], [String: (value: StateValue, layout: TorchFormat.Layout)]) {
        let entries = try DCPKeyPaths.flatten(tree)
        var items: [Plan.Item] = []
        var local: [String: (value: StateValue, layout: TorchFormat.Layout)] = [:]
        var unused = Set(sharding.slices.keys)
        for entry in entries {
            let path = entry.path.map { key in
                switch key {
                case .name(let name): ManifestKey.string(name)
                case .index(let index): ManifestKey.int(index)
                }
            }
            let layout = try TorchFormat.layout(entry.value)
            local[entry.fqn] = (entry.value, layout)
            var item = Plan.Item(fqn: entry.fqn, path: path, bytes: TorchFormat.size(of: layout))
            if case .tensor(let tensor) = entry.value {
                unused.remove(entry.statePath)
                let box = sharding.slices[entry.statePath] ?? .whole(tensor.shape)
                if let problem = box.problem() {
                    throw CheckpointError(.invalidArgument, "the slice of \"\(entry.statePath)\" \(problem)")
                }
                guard box.shape == tensor.shape else {
                    throw CheckpointError(
                        .invalidArgument, "tensor \"\(entry.statePath)\" has shape \(tensor.shape) but its slice says \(box.shape)")
                }
                item.dtype = tensor.dtype
                item.box = box
            }
            items.append(item)
        }
        for entry in entries where entry.value.tensorValue == nil {
            let inside = unused.filter { $0.hasPrefix(entry.statePath + "/") }.sorted()
            guard let first = inside.first else { continue }
            throw CheckpointError(
                .invalidArgument,
                "tensor \"\(first)\" is a box of a larger tensor, but it lies inside \"\(entry.statePath)\", which DCP stores whole as one value (a tuple, or a list of values): give every rank all of it (ShardPlan.splitFirstDimension(forDistributedCheckpointOf:) cuts a tree that way)")
        }
        guard unused.isEmpty else {
            throw CheckpointError(
                .invalidArgument,
                "the sharding names paths that hold no tensor: \(unused.sorted().prefix(10).joined(separator: ", "))")
        }
        return (items, local)
    }

    /// The whole checkpoint from every rank's plan, checked, and each distinct piece assigned
    /// to the holder with the fewest bytes assigned so far (the lowest rank on a tie). Every
    /// rank computes the same result from the same plans.
    private func assign(_ plans: [Plan]) throws(CheckpointError) -> ([Entry], [Unit]) {
        if let refused = RankError.combined(plans.map(\.error), outcome: "the DCP save was refused before any rank wrote") {
            throw refused
        }
        var problems: [String] = []
        for (rank, plan) in plans.enumerated() where plan.folder != plans[0].folder {
            problems.append("rank \(rank) would write into \(plan.folder), rank 0 into \(plans[0].folder)")
        }
        guard problems.isEmpty else {
            throw CheckpointError(.invalidArgument, "the DCP save was refused before writing: " + problems.joined(separator: "; "), path: folder)
        }
        var entries: [Entry] = []
        var entryIndex: [String: Int] = [:]
        var units: [Unit] = []
        var holders: [[Int]] = []
        var sizes: [Int] = []
        var unitIndex: [String: [TensorSlice?: Int]] = [:]
        for (rank, plan) in plans.enumerated() {
            for item in plan.items {
                let path = item.path.map { key -> DCPKey in
                    switch key {
                    case .string(let name): .name(name)
                    case .int(let index): .index(index)
                    }
                }
                let shape = item.box?.globalShape ?? []
                let position: Int
                if let index = entryIndex[item.fqn] {
                    position = index
                    let known = entries[index]
                    guard known.path == path, known.dtype == item.dtype, known.shape == shape else {
                        throw CheckpointError(
                            .invalidArgument,
                            "the DCP save was refused before writing: ranks disagree on \"\(item.fqn)\": \(describe(known.dtype, known.shape, known.path)) on one rank, \(describe(item.dtype, shape, path)) on rank \(rank)",
                            path: folder)
                    }
                } else {
                    position = entries.count
                    entryIndex[item.fqn] = position
                    entries.append(Entry(fqn: item.fqn, path: path, dtype: item.dtype, shape: shape))
                }
                if let unit = unitIndex[item.fqn]?[item.box] {
                    holders[unit].append(rank)
                } else {
                    unitIndex[item.fqn, default: [:]][item.box] = units.count
                    entries[position].units.append(units.count)
                    units.append(Unit(fqn: item.fqn, box: item.box, writer: rank))
                    holders.append([rank])
                    sizes.append(item.bytes)
                }
            }
        }
        for entry in entries where entry.dtype != nil {
            let boxes = entry.units.compactMap { units[$0].box }
            if let problem = TensorSlice.tilingProblem(boxes, of: entry.shape) {
                throw CheckpointError(
                    .invalidArgument, "the DCP save was refused before writing: the ranks' boxes of tensor \"\(entry.fqn)\" \(entry.shape) do not make it up: \(problem)",
                    path: folder)
            }
        }
        var load = [Int](repeating: 0, count: plans.count)
        for index in units.indices {
            // A value is the lowest holder's (ranks normally hold the same); a replicated box,
            // the same bytes on every holder, goes to the one with the least to write.
            let writer =
                units[index].box == nil
                ? holders[index].min() ?? 0 : holders[index].min { load[$0] != load[$1] ? load[$0] < load[$1] : $0 < $1 } ?? 0
            units[index].writer = writer
            load[writer] += sizes[index]
        }
        return (entries, units)
    }

    private func describe(_ dtype: DType?, _ shape: [Int], _ path: [DCPKey]) -> String {
        let what = dtype.map { "a \($0.rawValue) tensor \(shape)" } ?? "a value"
        return "\(what) at key path \(path.map(\.description))"
    }

    // MARK: 2. Clearing

    /// Removes the folder's `.metadata` first (from then on it holds no checkpoint), then the
    /// data files of ranks this save does not have, which nothing could read any more.
    private func removeStaleFiles(keepingRanks worldSize: Int) throws(CheckpointError) {
        guard try SystemCalls.isFolder(folder) == true else { return }
        try SystemCalls.unlink(FilePaths.join(folder, DistributedCheckpoint.metadataName))
        for name in try SystemCalls.folderEntries(folder) where name.hasSuffix(DistributedCheckpoint.dataFileExtension) {
            let parts = name.dropFirst(2).dropLast(DistributedCheckpoint.dataFileExtension.count).split(separator: "_")
            guard name.hasPrefix("__"), parts.count == 2, let rank = Int(parts[0]), let index = Int(parts[1]) else { continue }
            if rank >= worldSize || index != 0 { try SystemCalls.unlink(FilePaths.join(folder, name)) }
        }
        try SystemCalls.fsyncDirectory(folder)
    }

    // MARK: 3. Writing

    /// Writes `units` (this rank's) to one data file, each archive on a 64-byte boundary, and
    /// returns where each went.
    private func write(
        _ units: [(index: Int, unit: Unit)], local: [String: (value: StateValue, layout: TorchFormat.Layout)], to path: String
    ) throws(CheckpointError) -> [Report.Piece] {
        var pieces: [Report.Piece] = []
        var layouts: [TorchFormat.Layout] = []
        var end = 0
        for (index, unit) in units {
            guard let held = local[unit.fqn] else {
                throw CheckpointError(.invalidState, "this rank was assigned \"\(unit.fqn)\", which it does not hold")
            }
            let start = (end + Self.alignment - 1) / Self.alignment * Self.alignment
            let length = TorchFormat.size(of: held.layout)
            pieces.append(Report.Piece(unit: index, offset: start, length: length))
            layouts.append(held.layout)
            end = start + length
        }
        let file = try AtomicFileWriter(path: path, expectedSize: end)
        let progress = CheckpointProgress.current
        progress?.begin("saving", totalBytes: end)
        defer { progress?.finish() }
        let sink = progress.map { ProgressSink.counting(into: file, $0) } ?? file
        do {
            let zeros = [UInt8](repeating: 0, count: Self.alignment)
            for (piece, layout) in zip(pieces, layouts) {
                try sink.write(Array(zeros.prefix(piece.offset - sink.position)))
                try TorchFormat.write(layout, to: sink)
            }
            try file.commit()
        } catch {
            file.abort()
            throw error.at(path: path)
        }
        return pieces
    }

    // MARK: 4. Committing

    /// The `.metadata` of every entry, each piece at the place its writer reported.
    private func metadata(entries: [Entry], units: [Unit], reports: [Report]) throws(CheckpointError) -> [UInt8] {
        var locations = [DCPMetadata.Location?](repeating: nil, count: units.count)
        for (rank, report) in reports.enumerated() {
            for piece in report.pieces where units.indices.contains(piece.unit) && units[piece.unit].writer == rank {
                locations[piece.unit] = DCPMetadata.Location(file: "__\(rank)_0" + DistributedCheckpoint.dataFileExtension, offset: piece.offset, length: piece.length)
            }
        }
        var described: [(fqn: String, path: [DCPKey], entry: DCPMetadataPickler.Entry)] = []
        for entry in entries {
            var placed: [(box: TensorSlice, location: DCPMetadata.Location)] = []
            for unit in entry.units {
                guard let location = locations[unit] else {
                    throw CheckpointError(.distributed, "rank \(units[unit].writer) did not report where it wrote \"\(entry.fqn)\"")
                }
                placed.append((units[unit].box ?? .whole([]), location))
            }
            if let dtype = entry.dtype {
                described.append((entry.fqn, entry.path, .tensor(dtype: dtype, shape: entry.shape, chunks: placed)))
            } else if let only = placed.first {
                described.append((entry.fqn, entry.path, .value(only.location)))
            }
        }
        return DCPMetadataPickler.pickle(described, checkpointID: folder, saveID: UUID().uuidString.lowercased())
    }

    // MARK: Messages

    private func encode(_ value: some Encodable) throws(CheckpointError) -> [UInt8] {
        do { return Array(try JSONEncoder().encode(value)) } catch {
            throw CheckpointError(.distributed, "cannot encode a message to the other ranks: \(error)")
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], from rank: Int) throws(CheckpointError) -> T {
        do { return try JSONDecoder().decode(type, from: Data(bytes)) } catch {
            throw CheckpointError(.distributed, "rank \(rank) sent a message this rank cannot read (\(error)); do all ranks run the same build?")
        }
    }
}
