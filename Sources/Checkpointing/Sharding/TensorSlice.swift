/// The part of a global tensor that one rank holds: a box given by its offset and shape in
/// every dimension.
public struct TensorSlice: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The shape of the whole tensor.
    public var globalShape: [Int]
    /// Where the box starts, one entry per dimension.
    public var offset: [Int]
    /// The box's size, one entry per dimension: the shape of the tensor this rank holds.
    public var shape: [Int]

    public init(globalShape: [Int], offset: [Int], shape: [Int]) {
        self.globalShape = globalShape
        self.offset = offset
        self.shape = shape
    }

    /// The whole of a tensor of `shape`.
    public static func whole(_ shape: [Int]) -> TensorSlice {
        TensorSlice(globalShape: shape, offset: shape.map { _ in 0 }, shape: shape)
    }

    /// Rows `rows` of a tensor of `globalShape` (a slice along the first dimension).
    public static func rows(_ rows: Range<Int>, of globalShape: [Int]) -> TensorSlice {
        var offset = globalShape.map { _ in 0 }
        var shape = globalShape
        if !globalShape.isEmpty {
            offset[0] = rows.lowerBound
            shape[0] = rows.count
        }
        return TensorSlice(globalShape: globalShape, offset: offset, shape: shape)
    }

    /// Whether the box covers the whole tensor.
    public var isWhole: Bool { shape == globalShape && offset.allSatisfy { $0 == 0 } }

    /// The number of elements in the box.
    public var elementCount: Int { shape.reduce(1, *) }

    /// Why this slice is not a box inside its tensor, or `nil` when it is.
    func problem() -> String? {
        guard offset.count == globalShape.count, shape.count == globalShape.count else {
            return "has \(offset.count) offsets and \(shape.count) sizes for a tensor of \(globalShape.count) dimensions"
        }
        for dimension in globalShape.indices {
            let (start, size, total) = (offset[dimension], shape[dimension], globalShape[dimension])
            guard total >= 0, start >= 0, size >= 0, start <= total, size <= total - start else {
                return "dimension \(dimension): offset \(start) + size \(size) is outside 0...\(total)"
            }
        }
        return nil
    }

    /// The box where this slice and `other` overlap, or `nil` when they share no element.
    func intersection(_ other: TensorSlice) -> TensorSlice? {
        var offset: [Int] = []
        var shape: [Int] = []
        for dimension in globalShape.indices {
            let start = max(self.offset[dimension], other.offset[dimension])
            let end = min(self.offset[dimension] + self.shape[dimension], other.offset[dimension] + other.shape[dimension])
            guard end > start else { return nil }
            offset.append(start)
            shape.append(end - start)
        }
        return TensorSlice(globalShape: globalShape, offset: offset, shape: shape)
    }

    public var description: String {
        let ranges = globalShape.indices.map { "\(offset[$0])..<\(offset[$0] + shape[$0])" }
        return "[\(ranges.joined(separator: ", "))] of \(globalShape)"
    }
}

/// What each rank's tensors are in a sharded save: for a tensor that is part of a larger
/// one, which part (its ``TensorSlice``) by flattened path; a tensor not listed is whole.
///
/// Ranks may hold the same whole tensor (a replicated parameter); any one copy is loaded.
public struct Sharding: Sendable {
    /// The slice of each partial tensor, by flattened path (`state/model/layer.weight`).
    public var slices: [String: TensorSlice]

    public init(slices: [String: TensorSlice] = [:]) {
        self.slices = slices
    }
}

/// Which part of every tensor each rank gets when a sharded checkpoint is loaded.
///
/// The plan is a function of the tensor's flattened path, its global shape, the rank and the
/// world size. A rank that gets `nil` for a tensor does not hold it: the tensor is left out
/// of that rank's state (an element of a list becomes `none`, so indices keep their meaning).
public struct ShardPlan: Sendable {
    /// The slice `rank` of `worldSize` gets of the tensor at `path`, or `nil` for none.
    public let slice: @Sendable (_ path: String, _ globalShape: [Int], _ rank: Int, _ worldSize: Int) -> TensorSlice?
    /// Set for ``asSaved``, which ``slice`` cannot express: it depends on the manifest.
    let keepsSavedPieces: Bool

    public init(_ slice: @escaping @Sendable (_ path: String, _ globalShape: [Int], _ rank: Int, _ worldSize: Int) -> TensorSlice?) {
        self.slice = slice
        keepsSavedPieces = false
    }

    private init(keepingSavedPieces: Void) {
        slice = { _, _, _, _ in nil }
        keepsSavedPieces = true
    }

    /// Every rank gets exactly the pieces it saved: a resume on as many ranks as saved the
    /// checkpoint (what ``CheckpointSaver`` uses). A different world size is an error.
    public static let asSaved = ShardPlan(keepingSavedPieces: ())

    /// Every rank gets every tensor whole (a replicated model, or a load on one process).
    public static let whole = ShardPlan { _, shape, _, _ in .whole(shape) }

    /// Rank 0 gets every tensor whole and the other ranks none: what a save that only rank 0
    /// writes needs.
    public static let wholeOnRankZero = ShardPlan { _, shape, rank, _ in rank == 0 ? .whole(shape) : nil }

    /// Every tensor split along its first dimension into `worldSize` runs of rows, as even as
    /// possible (the first `rows % worldSize` ranks get one row more); a tensor with fewer rows
    /// than ranks, or with no dimensions, goes whole to rank 0. On one rank this is ``whole``.
    /// `ckpt convert --sharded` writes this layout.
    public static let splitFirstDimension = ShardPlan { _, shape, rank, worldSize in
        guard let range = rowRange(shape: shape, rank: rank, worldSize: worldSize) else {
            return rank == 0 ? .whole(shape) : nil
        }
        return .rows(range, of: shape)
    }

    /// The rows `rank` gets under ``splitFirstDimension``, or `nil` when the tensor is too small
    /// to split (then it goes whole to rank 0).
    static func rowRange(shape: [Int], rank: Int, worldSize: Int) -> Range<Int>? {
        guard let rows = shape.first, worldSize > 1, rows >= worldSize else { return nil }
        let (base, extra) = rows.quotientAndRemainder(dividingBy: worldSize)
        let start = rank * base + min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }
}
