#if canImport(Glibc)
import Glibc
#endif
import BigInt
import Foundation

@testable import Checkpointing

/// Inputs made by this library's own writers: every value kind of the tree, every dtype, and
/// each container, small enough for the fuzzer to mutate quickly.
enum Seeds {
    /// A checkpoint tree with every kind of value, nested as Composer nests its state.
    static let tree: StateValue = {
        func tensor(_ dtype: DType, _ shape: [Int]) -> StateValue {
            let count = shape.reduce(dtype.byteSize, *)
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            do {
                return .tensor(try Tensor(dtype: dtype, shape: shape, bytes: bytes))
            } catch {
                fatalError("the seed tensor \(dtype) \(shape) is invalid: \(error)")
            }
        }
        let model: StateValue = [
            "fc1.weight": tensor(.float32, [2, 3]),
            "fc1.bias": tensor(.float16, [3]),
            "embedding": tensor(.bfloat16, [2, 2]),
            "mask": tensor(.bool, [4]),
            "positions": tensor(.int64, [2]),
            "bytes": tensor(.uint8, [3]),
            "low": tensor(.float8_e4m3fn, [2]),
            "empty": tensor(.float32, [0, 4]),
            "scalar": tensor(.float64, []),
        ]
        let adam: StateValue = [
            "state": .dict([0: ["step": 3, "exp_avg": tensor(.float32, [2, 3])], 1: ["step": 3]]),
            "param_groups": [["lr": 0.001, "betas": .tuple([0.9, 0.999]), "params": [0, 1], "amsgrad": false]],
        ]
        let misc: StateValue = [
            "none": .none,
            "text": "ünïcödé/with/slashes",
            "nan": .float(Double(bitPattern: 0x7FF8_0000_0000_0001)),
            "negative_zero": .float(-0.0),
            "infinity": .float(.infinity),
            "huge": .int(BigInt(1) << 100),
            "negative": .int(-(BigInt(1) << 70)),
            "pair": .tuple([1, "a"]),
            "nested": [[[]], [:]],
            "rng": .bytes(Array(0..<16)),
        ]
        return [
            "state": [
                "model": model,
                "optimizers": ["AdamW": adam],
                "timestamp": ["epoch": 3, "batch": 1200, "total_wct": .duration(.seconds(93) + .microseconds(250))],
                "run_name": "fuzz-seed",
                "misc": misc,
            ],
            "rng": [["python": .tuple([3, [1, 2, 3], .none]), "numpy": .tuple(["MT19937", tensor(.uint32, [4]), 2, 0, 0.0])]],
        ]
    }()

    /// A small tree: a model of one tensor.
    static let smallTree: StateValue = {
        do {
            return ["state": ["model": ["w": .tensor(try Tensor(shape: [2], scalars: [Float(1.5), -2]))]]]
        } catch {
            fatalError("the small seed tree is invalid: \(error)")
        }
    }()

    /// `tree` in the native format.
    static func native(_ tree: StateValue) -> [UInt8] {
        let sink = MemorySink()
        FuzzCheck.succeeds("writing a native seed") { () throws(CheckpointError) in
            try NativeFormat.write(try NativeFormat.layout(tree), to: sink)
        }
        return sink.bytes
    }

    /// `tree` in torch's zip format.
    static func torch(_ tree: StateValue) -> [UInt8] {
        let sink = MemorySink()
        FuzzCheck.succeeds("writing a torch seed") { () throws(CheckpointError) in
            try TorchFormat.write(try TorchFormat.layout(tree), to: sink)
        }
        return sink.bytes
    }

    /// The pickle (`data.pkl`) of a torch file, or `nil` when it is not one.
    static func pickle(ofTorchFile bytes: [UInt8]) -> [UInt8]? {
        let file = InputFile(name: "seed.pt").map(bytes)
        guard let archive = try? ZipArchive(file), let entry = archive.entry("data.pkl") else { return nil }
        return Array(archive.bytes(of: entry))
    }

    /// A safetensors file with no tensors and the given header.
    static func safetensors(header: String) -> [UInt8] {
        var bytes = Array(header.utf8)
        var length = UInt64(bytes.count).littleEndian
        bytes.insert(contentsOf: withUnsafeBytes(of: &length) { Array($0) }, at: 0)
        return bytes
    }
}

/// Writes a target's seeds into a folder, one file each.
enum SeedWriter {
    /// Returns how many files were written.
    static func write(_ target: FuzzTarget, to folder: String, fixtures: String?) -> Int {
        var seeds = target.seeds().map { (name: "library-" + $0.name, bytes: $0.bytes) }
        if let fixtures {
            for pattern in target.fixtures {
                for path in expand(FilePaths.join(fixtures, pattern)) {
                    guard let bytes = FileManager.default.contents(atPath: path).map(Array.init),
                        let input = target.fromFixture(bytes)
                    else { continue }
                    let relative = String(path.dropFirst(fixtures.count)).split(separator: "/").joined(separator: "_")
                    seeds.append(("fixture-" + relative, input))
                }
            }
        }
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for seed in seeds {
                try Data(seed.bytes).write(to: URL(fileURLWithPath: FilePaths.join(folder, seed.name)))
            }
        } catch {
            fatalError("cannot write the seeds of \(target.name) to \(folder): \(error)")
        }
        return seeds.count
    }

    /// The files a pattern with `*` components names, sorted.
    private static func expand(_ pattern: String) -> [String] {
        var matches = glob_t()
        defer { globfree(&matches) }
        guard glob(pattern, 0, nil, &matches) == 0 else { return [] }
        return (0..<Int(matches.gl_pathc)).compactMap { index in
            matches.gl_pathv[index].map { String(cString: $0) }
        }
    }
}
