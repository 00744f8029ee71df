/// One fuzz target: a parser of untrusted bytes, run on each input the fuzzer makes.
///
/// `run` must return for every input: a parser may throw (a `CheckpointError` is the right
/// answer to bad bytes), never trap, leak, hang or allocate past its limits. Where a parser has
/// a property that must hold for every input it accepts (a member's bytes lie inside the
/// archive, a split stream decodes as the whole one does), `run` checks it with ``FuzzCheck``,
/// whose failure is a crash the fuzzer reports like any other.
///
/// `@unchecked Sendable`: libFuzzer runs every input on one thread.
struct FuzzTarget: @unchecked Sendable {
    /// The name `scripts/fuzz.sh` takes (`pickle`, `zstd`, ...).
    var name: String
    /// What the target feeds its input to, for `scripts/fuzz.sh --list`.
    var summary: String
    /// The largest single allocation (MiB) an input may cause: the parser's own bound (a
    /// decoder's memory limit, a codec's window) plus its fixed buffers. `scripts/fuzz.sh`
    /// passes it to libFuzzer as `-malloc_limit_mb`.
    var mallocLimitMB = 64
    /// Fixtures (paths under `Tests/Fixtures`, `*` matching any name in one folder) whose bytes,
    /// after `fromFixture`, start the corpus.
    var fixtures: [String] = []
    /// Turns a fixture's bytes into an input of this target (`nil`: not usable).
    var fromFixture: ([UInt8]) -> [UInt8]? = { $0 }
    /// Inputs written by this library's own writers, named.
    var seeds: () -> [(name: String, bytes: [UInt8])] = { [] }
    /// Runs the parser on one input.
    var run: (UnsafeRawBufferPointer) -> Void
}

/// Every target, in the order `scripts/fuzz.sh` runs them.
///
/// To add one: write a `static let` in a file of its own beside the others, with its fixtures
/// (paths under `Tests/Fixtures`), and list it here; the script finds it by name.
enum FuzzTargets {
    static let all: [FuzzTarget] = [
        NativeTargets.safetensorsHeader,
        NativeTargets.nativeFile,
        TorchTargets.pickle,
        TorchTargets.zip,
        TorchTargets.torchFile,
        ArchiveTargets.tar,
    ] + CompressionTargets.all + [
        FloatSplitTargets.chunk,
        HuggingFaceTargets.index,
        DCPTargets.metadata,
        ShardingTargets.shardManifest,
        NamingTargets.filenameTemplate,
        S3Targets.s3XML,
    ]

    static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }
}
