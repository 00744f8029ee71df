/// Explicit limits on what reading a torch file may cost: every count and length
/// read from the file is checked against the bytes that remain and against these. Those a
/// user sets come from ``ReadingLimits``; the others scale with the file.
struct TorchLimits: Sendable {
    /// Nesting of containers in the pickle (and of its MARKs): the deepest tree any format
    /// holds, plus the few levels a tensor's rebuild call adds below its place in the tree.
    /// It keeps the recursive conversion far from the end of any thread's stack; the tree it
    /// gives is then held to ``ReadingLimits/maximumDepth``, as every format's is.
    var maximumDepth = ReadingLimits.deepestSupportedDepth + 16
    /// Memo entries (one per BINPUT).
    var maximumMemoEntries = 1 << 22
    /// Entries of the zip archive's central directory.
    var maximumDirectoryEntries = 1 << 22
    /// Nodes of the value tree once shared references are expanded: `perPickleByte` per byte of
    /// `data.pkl` plus `base`. A real pickle costs a byte or more per node; a hostile one that
    /// references one list from two places at each of 60 levels would expand to 2^60.
    var maximumNodesPerPickleByte = 16
    var maximumNodesBase = 1_000_000
    /// Bytes allocated for tensors that cannot stay in the mapping (non-contiguous views,
    /// big-endian storages, numpy arrays): `perFileByte` per byte of the file plus `base`.
    /// A view can legitimately be larger than its storage (stride 0), but not unboundedly.
    var maximumMaterializedBytesPerFileByte = 2
    var maximumMaterializedBytesBase = 64 << 20
    /// Length of a GLOBAL's module or name line.
    var maximumGlobalLength = 1024

    static let standard = TorchLimits()

    /// The standard limits, with those ``ReadingLimits`` sets.
    init(_ reading: ReadingLimits) {
        maximumMemoEntries = reading.maximumMemoEntries
        maximumDirectoryEntries = reading.maximumDirectoryEntries
    }

    init() {}
}
