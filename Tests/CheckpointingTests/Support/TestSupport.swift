import BigInt
import Crypto
import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

// MARK: - Temporary folders

/// Runs `body` with a fresh, empty temporary folder that is removed when `body` returns or throws.
///
/// A closure rather than an object with a `deinit`: ARC may release an object right after its
/// last use, which would delete the folder while the test still reads files in it.
/// The names in `folder`, sorted; hidden files (such as a leftover `.NAME.partial-...`) included.
func folderContents(_ folder: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
}

func fileExists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

func readBytes(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func hexString(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// An `Int` from a JSONSerialization number (an `NSNumber` on Linux).
func jsonInt(_ value: Any?) -> Int? {
    if let int = value as? Int { return int }
    if let number = value as? NSNumber { return number.intValue }
    return nil
}

// MARK: - Reading a safetensors header without the library

/// A safetensors file's layout, read with plain Foundation so tests do not trust the code
/// they check: the u64 header length, the JSON header, and each tensor's data offsets.
struct SafetensorsLayout {
    struct Entry {
        var name: String
        var dtype: String
        var shape: [Int]
        var begin: Int
        var end: Int
    }

    var headerLength: Int
    var fileSize: Int
    var entries: [String: Entry]
    var metadata: [String: String]

    /// Where the data buffer starts in the file.
    var dataStart: Int { 8 + headerLength }

    init(path: String) throws {
        let bytes = try readBytes(path)
        try #require(bytes.count >= 8)
        var length: UInt64 = 0
        for index in (0..<8).reversed() { length = length << 8 | UInt64(bytes[index]) }
        headerLength = Int(length)
        fileSize = bytes.count
        try #require(8 + headerLength <= bytes.count)
        let json = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)]))
        let header = try #require(json as? [String: Any])
        metadata = (header["__metadata__"] as? [String: String]) ?? [:]
        entries = [:]
        for (name, value) in header where name != "__metadata__" {
            let info = try #require(value as? [String: Any])
            let offsets = try #require(info["data_offsets"] as? [Any]).compactMap(jsonInt)
            try #require(offsets.count == 2)
            entries[name] = Entry(
                name: name, dtype: try #require(info["dtype"] as? String),
                shape: try #require(info["shape"] as? [Any]).compactMap(jsonInt),
                begin: offsets[0], end: offsets[1])
        }
    }
}

// MARK: - Errors

/// Runs `body`, which must throw a ``CheckpointError`` with `code`, and returns the error.
@discardableResult
func expectCheckpointError(
    _ code: CheckpointError.Code, messageContains fragments: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> CheckpointError? {
    do {
        try body()
        Issue.record("expected a CheckpointError(\(code)), but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as CheckpointError {
        #expect(error.code == code, "wrong code; error: \(error)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(
                error.message.localizedCaseInsensitiveContains(fragment),
                "the message should mention \"\(fragment)\": \(error.message)", sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected a CheckpointError(\(code)), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

// MARK: - Random trees

/// Random checkpoint trees for property tests, driven by a seed.
///
/// They hold every dtype (random bytes, NaN patterns included), 0-dim and empty tensors, deep
/// nesting (about 30 levels on some seeds), integer keys (negative too), non-ASCII keys, keys
/// with `/` and `\`, integers far beyond 64 bits, every special float, durations, bytes,
/// tuples, empty containers and strings with quotes, newlines and control characters.
///
/// Never generated: a dict holding both the integer key N and the string key "N" (their
/// flattened paths collide, which the writer refuses), and `""` or `"__metadata__"` as a key
/// of the root (the first flattens to an empty path component at the root, the second is
/// reserved by safetensors).
struct RandomTree {
    private var rng: SplitMix64
    private var budget: Int
    private let maximumDepth: Int
    private let deepChainLength: Int?

    init(seed: UInt64) {
        rng = SplitMix64(seed: seed)
        budget = 60 + Int(rng.next() % 80)
        maximumDepth = 2 + Int(rng.next() % 4)
        deepChainLength = rng.next() % 3 == 0 ? 26 + Int(rng.next() % 5) : nil
    }

    /// A random tree whose root is a dict.
    static func make(seed: UInt64) -> StateValue {
        var generator = RandomTree(seed: seed)
        return generator.root()
    }

    /// One tensor of every dtype in several shapes: `[2, 3]`, 0-dim, `[0]` and `[3, 0]`.
    static func everyDType(seed: UInt64 = 1) -> StateValue {
        var generator = RandomTree(seed: seed)
        var dict = StateDict()
        for dtype in DType.allCases {
            dict[.string(dtype.rawValue)] = .tensor(generator.tensor(dtype: dtype, shape: [2, 3], nanAt: 1))
            dict[.string("scalar/" + dtype.rawValue)] = .tensor(generator.tensor(dtype: dtype, shape: []))
            dict[.string("empty." + dtype.rawValue)] = .tensor(generator.tensor(dtype: dtype, shape: [0]))
            dict[.string("empty2d." + dtype.rawValue)] = .tensor(generator.tensor(dtype: dtype, shape: [3, 0]))
        }
        return .dict(dict)
    }

    /// Every awkward scalar, each once, in one dict.
    static var edgeCases: StateValue {
        var dict = StateDict()
        let scalars: [StateValue] =
            specialStrings.map { .string($0) } + specialInts.map { .int($0) } + specialFloats.map { .float($0) }
            + specialDurations.map { .duration($0) }
        for (index, value) in (scalars
            + [.bool(true), .bool(false), .none, .bytes([]), .bytes(Array(0...255)), .list([]), .tuple([]),
               .dict([:]), .tuple([.none]), .list([.list([.list([])])])]).enumerated()
        {
            dict[.int(index - 20)] = value
        }
        return .dict(dict)
    }

    mutating func root() -> StateValue {
        var dict = dictionary(depth: 0, isRoot: true)
        if let deepChainLength {
            var used = Set(dict.keys.map(\.description))
            dict[uniqueKey(isRoot: true, used: &used)] = chain(levels: deepChainLength)
        }
        return .dict(dict)
    }

    // MARK: Values

    private mutating func value(depth: Int) -> StateValue {
        budget -= 1
        let roll = rng.next() % 100
        if roll < 40, depth < maximumDepth, budget > 0 {
            switch rng.next() % 3 {
            case 0: return .dict(dictionary(depth: depth + 1, isRoot: false))
            case 1: return .list(elements(depth: depth + 1))
            default: return .tuple(elements(depth: depth + 1))
            }
        }
        if roll < 65 { return .tensor(tensor()) }
        return scalar()
    }

    private mutating func dictionary(depth: Int, isRoot: Bool) -> StateDict {
        let count = isRoot ? 4 + Int(rng.next() % 9) : Int(rng.next() % 6)
        var dict = StateDict()
        var used = Set<String>()
        for _ in 0..<count {
            dict[uniqueKey(isRoot: isRoot, used: &used)] = value(depth: depth)
        }
        return dict
    }

    private mutating func elements(depth: Int) -> [StateValue] {
        (0..<Int(rng.next() % 5)).map { _ in value(depth: depth) }
    }

    /// A chain of `levels` nested dicts, lists and tuples ending in a tensor or a scalar.
    private mutating func chain(levels: Int) -> StateValue {
        var node: StateValue = rng.next() % 2 == 0 ? .tensor(tensor()) : scalar()
        for level in 0..<levels {
            switch rng.next() % 3 {
            case 0:
                let key: StateKey = level % 2 == 0 ? .int(level - 10) : .string(pick(Self.specialKeys))
                node = .dict(StateDict([(key, node)]))
            case 1: node = .list([.none, node])
            default: node = .tuple([node])
            }
        }
        return node
    }

    private mutating func scalar() -> StateValue {
        switch rng.next() % 8 {
        case 0: return .string(randomString())
        case 1: return .int(pick(Self.specialInts) + (rng.next() % 2 == 0 ? 0 : BigInt(Int64(bitPattern: rng.next()))))
        case 2: return .float(rng.next() % 2 == 0 ? pick(Self.specialFloats) : Double(bitPattern: rng.next()))
        case 3: return .bool(rng.next() % 2 == 0)
        case 4: return .none
        case 5: return .bytes((0..<Int(rng.next() % 24)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        case 6:
            if rng.next() % 2 == 0 { return .duration(pick(Self.specialDurations)) }
            return .duration(
                Duration(
                    secondsComponent: Int64(bitPattern: rng.next()) >> 20,
                    attosecondsComponent: Int64(bitPattern: rng.next()) % 1_000_000_000_000_000_000))
        default: return .string(pick(Self.specialStrings))
        }
    }

    // MARK: Tensors

    private static let shapes: [[Int]] = [[], [0], [3, 0], [0, 5], [1], [7], [2, 3], [4, 1, 2], [1, 1, 1, 1], [16]]

    mutating func tensor() -> Tensor {
        let dtype = pick(DType.allCases)
        let shape = pick(Self.shapes)
        let elements = shape.reduce(1, *)
        return tensor(dtype: dtype, shape: shape, nanAt: elements > 0 && rng.next() % 2 == 0 ? Int(rng.next() % UInt64(elements)) : nil)
    }

    /// Random bytes (0 or 1 for bool), with a NaN bit pattern at element `nanAt` for float dtypes.
    mutating func tensor(dtype: DType, shape: [Int], nanAt: Int? = nil) -> Tensor {
        let count = shape.reduce(1, *) * dtype.byteSize
        var bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        if dtype == .bool { bytes = bytes.map { $0 & 1 } }
        if let nanAt, nanAt * dtype.byteSize < count, let patterns = Self.nanPatterns[dtype] {
            let pattern = pick(patterns)
            for byte in 0..<dtype.byteSize {
                bytes[nanAt * dtype.byteSize + byte] = UInt8(truncatingIfNeeded: pattern >> (8 * UInt64(byte)))
            }
        }
        return try! Tensor(dtype: dtype, shape: shape, bytes: bytes)  // sizes computed above
    }

    /// Little-endian NaN encodings (quiet, signalling, negative, with payloads).
    private static let nanPatterns: [DType: [UInt64]] = [
        .float16: [0x7E00, 0x7E01, 0xFFFF, 0x7C01],
        .bfloat16: [0x7FC0, 0x7FC1, 0xFF81, 0xFFFF],
        .float32: [0x7FC0_0000, 0x7FC0_0001, 0xFFFF_FFFF, 0x7F80_0001],
        .float64: [0x7FF8_0000_0000_0000, 0x7FF0_0000_0000_0001, 0xFFF8_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF],
        .float8_e4m3fn: [0x7F, 0xFF],
        .float8_e5m2: [0x7E, 0xFF, 0x7D],
        .complex64: [0x7FC0_0001_7FC0_0000, 0xFFFF_FFFF_0000_0000],
    ]

    // MARK: Keys and scalars

    static let specialKeys: [String] = [
        "é", "✓", "🙂", "中文", "日本語", "👩‍👩‍👧", "a/b", "/", "\\", "a\\b", "x/\\y", "//", "\\/", "trailing\\",
        "with space", "quote\"d", "new\nline", "tab\t", "\u{0}nul", "fc1.weight", "layer0.bias", "-", "0x10", "07",
        "+5", "1.5", "state", "model", "*", "?", "[x]",
    ]

    static let specialStrings: [String] = [
        "", "plain", "quote\"s", "'single'", "back\\slash", "new\nline", "cr\r\nlf", "tab\there",
        "\u{0}\u{1}\u{7}\u{1B}\u{1F}\u{7F}", "é✓🙂中文", "\u{2028}\u{2029}", "\u{FEFF}bom", "👩‍👩‍👧‍👦",
        "{\"json\": [1, 2]}", "</script>", String(repeating: "long", count: 300),
    ]

    static let specialInts: [BigInt] = [
        0, 1, -1, 255, -129, BigInt(Int64.max), BigInt(Int64.min), BigInt(UInt64.max),
        BigInt(1) << 70, -(BigInt(1) << 70), BigInt(1) << 200, -(BigInt(1) << 200), (BigInt(1) << 64) - 1,
    ]

    static let specialFloats: [Double] = [
        0.0, -0.0, 1.0, -1.5, 0.1, 1e-8, .infinity, -.infinity, .nan, -.nan, .signalingNaN,
        Double(bitPattern: 0x7FF0_0000_0000_0001), Double(bitPattern: 0xFFF8_0000_0000_BEEF),
        .leastNonzeroMagnitude, -.leastNormalMagnitude, .greatestFiniteMagnitude, .pi, 1e300, 123456789012345680,
    ]

    static let specialDurations: [Duration] = [
        .zero, .seconds(1), .milliseconds(-1500), .nanoseconds(1), .seconds(86_400 * 365),
        Duration(secondsComponent: 0, attosecondsComponent: 1), Duration(secondsComponent: -3, attosecondsComponent: -7),
        .seconds(Int64.max / 2), .seconds(Int64.min / 2),
    ]

    private mutating func uniqueKey(isRoot: Bool, used: inout Set<String>) -> StateKey {
        while true {
            let key: StateKey
            switch rng.next() % 10 {
            case 0..<3:
                key = .int(rng.next() % 3 == 0 ? Int(Int32(truncatingIfNeeded: rng.next())) : Int(rng.next() % 12) - 3)
            case 3..<6:
                key = .string("p\(rng.next() % 50).\(pick(["weight", "bias", "exp_avg", "step"]))")
            default:
                key = .string(pick(Self.specialKeys) + (rng.next() % 3 == 0 ? "\(rng.next() % 9)" : ""))
            }
            let text = key.description
            if isRoot && (text.isEmpty || text == "__metadata__") { continue }
            if used.insert(text).inserted { return key }
        }
    }

    private mutating func randomString() -> String {
        let scalars: [UnicodeScalar] = (0..<Int(rng.next() % 20)).compactMap { _ in
            switch rng.next() % 4 {
            case 0: UnicodeScalar(UInt32(rng.next() % 0x20))
            case 1: UnicodeScalar(UInt32(0x20 + rng.next() % 0x5F))
            case 2: UnicodeScalar(UInt32(0xA0 + rng.next() % 0xD700))
            default: UnicodeScalar(UInt32(0x1F300 + rng.next() % 0x300))
            }
        }
        return String(String.UnicodeScalarView(scalars))
    }

    private mutating func pick<T>(_ choices: [T]) -> T { choices[Int(rng.next() % UInt64(choices.count))] }
}

// MARK: - A Composer-like training state

/// A training state shaped like what Composer saves after a short AdamW run.
func composerLikeState(seed: UInt64 = 7) -> TrainingState {
    var generator = RandomTree(seed: seed)
    func f32(_ shape: [Int]) -> StateValue { .tensor(generator.tensor(dtype: .float32, shape: shape)) }
    let model: StateDict = [
        "fc1.weight": f32([8, 4]), "fc1.bias": f32([8]), "fc2.weight": f32([3, 8]), "fc2.bias": f32([3]),
        "bn.running_mean": f32([8]),
        "bn.num_batches_tracked": .tensor(try! Tensor(shape: [], scalars: [Int64(4)])),
    ]
    var perParameter = StateDict()
    for (index, shape) in [[8, 4], [8], [3, 8], [3]].enumerated() {
        perParameter[.int(index)] = .dict([
            "step": .tensor(try! Tensor(shape: [], scalars: [Float(4)])),
            "exp_avg": f32(shape), "exp_avg_sq": f32(shape),
        ])
    }
    let paramGroup: StateValue = [
        "lr": 0.001, "betas": .tuple([0.9, 0.999]), "eps": 1e-8, "weight_decay": 0.01, "amsgrad": false,
        "foreach": .none, "maximize": false, "capturable": false, "differentiable": false, "fused": .none,
        "initial_lr": 0.001, "params": [0, 1, 2, 3],
    ]
    let timestamp = Timestamp(
        iteration: 0, epoch: 1, batch: 4, sample: 64, token: 0, epochInIteration: 1, tokenInIteration: 0,
        batchInEpoch: 0, sampleInEpoch: 0, tokenInEpoch: 0, totalWct: .milliseconds(1234),
        iterationWct: .milliseconds(1234), epochWct: .microseconds(1_000_001), batchWct: .nanoseconds(987_654_321))
    let rng: StateValue = [
        "python": .tuple([3, .tuple([2_147_483_648, 12345, 624]), .none]),
        "numpy": [.tuple(["MT19937", .tensor(generator.tensor(dtype: .uint32, shape: [624])), 624, 0, 0.0])],
        "torch": .tensor(generator.tensor(dtype: .uint8, shape: [5056])),
    ]
    return TrainingState(
        model: model,
        optimizers: ["AdamW": ["state": .dict(perParameter), "param_groups": [paramGroup]]],
        schedulers: ["LambdaLR": ["base_lrs": [0.001], "last_epoch": 4, "_step_count": 5, "_last_lr": [0.001]]],
        algorithms: [],
        callbacks: ["SpeedMonitor": ["total_eval_wct": 0.0]],
        scaler: [:],
        timestamp: timestamp,
        rankZeroSeed: 42,
        runName: "fixture-run",
        datasetState: ["train": .none, "eval": [:]],
        integrations: [:],
        metadata: ["composer_env_info": ["composer_version": "0.32.1", "world_size": 1], "precision": "amp_fp16"],
        rng: [rng])
}
