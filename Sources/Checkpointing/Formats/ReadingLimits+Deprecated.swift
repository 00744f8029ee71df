// The names of the decompression limits before they joined ``ReadingLimits``, kept so that
// code written against them still compiles, with a warning that names the replacement.

@available(*, deprecated, renamed: "ReadingLimits")
public typealias DecompressionLimits = ReadingLimits

extension ReadingLimits {
    @available(*, deprecated, renamed: "maximumDecompressedBytes")
    public var maximumBytes: Int {
        get { maximumDecompressedBytes }
        set { maximumDecompressedBytes = newValue }
    }

    @available(*, deprecated, renamed: "maximumExpansionRatio")
    public var maximumRatio: Int {
        get { maximumExpansionRatio }
        set { maximumExpansionRatio = newValue }
    }

    @available(*, deprecated, renamed: "expansionRatioFloor")
    public var ratioFloor: Int {
        get { expansionRatioFloor }
        set { expansionRatioFloor = newValue }
    }

    @available(*, deprecated, renamed: "init(maximumDecompressedBytes:maximumExpansionRatio:expansionRatioFloor:)")
    @_disfavoredOverload
    public init(maximumBytes: Int = 1 << 40, maximumRatio: Int = 1000, ratioFloor: Int = 64 << 20) {
        self.init(maximumDecompressedBytes: maximumBytes, maximumExpansionRatio: maximumRatio, expansionRatioFloor: ratioFloor)
    }
}

@available(*, deprecated, renamed: "loadCheckpoint(_:into:weightsOnly:strict:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:)")
@discardableResult
public func loadCheckpoint(
    _ path: String, into state: inout TrainingState, weightsOnly: Bool = false, strict: Bool = true, ignoreKeys: IgnoreKeys? = nil,
    verifyChecksums: Bool = true, decompressionLimits: ReadingLimits, shardPlan: ShardPlan = .splitFirstDimension,
    processGroup: any ProcessGroup = SingleProcessGroup()
) throws(CheckpointError) -> LoadResult {
    try loadCheckpoint(
        path, into: &state, weightsOnly: weightsOnly, strict: strict, ignoreKeys: ignoreKeys, verifyChecksums: verifyChecksums,
        limits: decompressionLimits, shardPlan: shardPlan, processGroup: processGroup)
}

@available(*, deprecated, renamed: "loadCheckpoint(_:weightsOnly:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:)")
public func loadCheckpoint(
    _ path: String, weightsOnly: Bool = false, ignoreKeys: IgnoreKeys? = nil, verifyChecksums: Bool = true,
    decompressionLimits: ReadingLimits, shardPlan: ShardPlan = .splitFirstDimension, processGroup: any ProcessGroup = SingleProcessGroup()
) throws(CheckpointError) -> TrainingState {
    try loadCheckpoint(
        path, weightsOnly: weightsOnly, ignoreKeys: ignoreKeys, verifyChecksums: verifyChecksums, limits: decompressionLimits,
        shardPlan: shardPlan, processGroup: processGroup)
}

@available(*, deprecated, renamed: "loadCheckpointTree(_:verifyChecksums:limits:shardPlan:processGroup:)")
public func loadCheckpointTree(
    _ path: String, verifyChecksums: Bool = true, decompressionLimits: ReadingLimits, shardPlan: ShardPlan = .splitFirstDimension,
    processGroup: any ProcessGroup = SingleProcessGroup()
) throws(CheckpointError) -> LoadedTree {
    try loadCheckpointTree(path, verifyChecksums: verifyChecksums, limits: decompressionLimits, shardPlan: shardPlan, processGroup: processGroup)
}

extension CheckpointFile {
    @available(*, deprecated, renamed: "open(_:limits:)")
    public static func open(_ path: String, decompressionLimits: ReadingLimits) throws(CheckpointError) -> CheckpointFile {
        try open(path, limits: decompressionLimits)
    }
}

extension CheckpointSaver.Options {
    @available(*, deprecated, renamed: "readingLimits")
    public var decompressionLimits: ReadingLimits {
        get { readingLimits }
        set { readingLimits = newValue }
    }
}

extension ShardManifest {
    @available(*, deprecated, renamed: "verifyShards(manifestPath:limits:)")
    public func verifyShards(manifestPath: String, decompressionLimits: ReadingLimits) throws(CheckpointError) {
        try verifyShards(manifestPath: manifestPath, limits: decompressionLimits)
    }
}

@available(*, deprecated, renamed: "decompressFile(_:to:limits:)")
public func decompressFile(_ input: String, to output: String, decompressionLimits: ReadingLimits) throws(CheckpointError) {
    try decompressFile(input, to: output, limits: decompressionLimits)
}
