import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// The extension chain end to end: every name saves, the tools accept the file,
/// it loads back by magic number with the same values, and what the tools make loads too.
@Suite struct CompressionSaveLoadTests {
    /// A file name and what it must turn into.
    struct Chain: CustomTestStringConvertible, Sendable {
        var name: String
        var layers: [ContainerLayer]
        var format: FileKind
        var testDescription: String { name }

        var codec: CompressionCodec? {
            for case .compressed(let codec) in layers { return codec }
            return nil
        }
        var isTar: Bool { layers.contains { if case .tar = $0 { true } else { false } } }
    }

    static let native = ContainerLayer.tar(member: "checkpoint.safetensors")
    static let torch = ContainerLayer.tar(member: "composer_states.pt")

    static let chains: [Chain] =
        CompressionCodec.allCases.flatMap { codec in
            [
                Chain(name: "x.safetensors.\(codec.fileExtension)", layers: [.compressed(codec)], format: .safetensors),
                Chain(name: "x.pt.\(codec.fileExtension)", layers: [.compressed(codec)], format: .torchZip),
                Chain(name: "x.tar.\(codec.fileExtension)", layers: [.compressed(codec), native], format: .safetensors),
            ]
        } + [
            Chain(name: "x.gz", layers: [.compressed(.gzip)], format: .safetensors),
            Chain(name: "x.tar", layers: [native], format: .safetensors),
            Chain(name: "x.safetensors.tar", layers: [native], format: .safetensors),
            Chain(name: "x.pt.tar", layers: [torch], format: .torchZip),
            Chain(name: "x.tgz", layers: [.compressed(.gzip), native], format: .safetensors),
            Chain(name: "x.pt.tar.zst", layers: [.compressed(.zstd), torch], format: .torchZip),
        ]

    @Test("every extension chain saves, passes its tool's test, and loads back the same state", arguments: chains)
    func saveAndLoad(chain: Chain) throws {
        let state = composerLikeState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/" + chain.name)[0]
            #expect(try folderContents(folder) == [chain.name], "only the file, no temporary left")

            // The tools' verdict: the codec's own test, then tar's listing of what it holds.
            var archive = path
            if let codec = chain.codec, codec == .floatSplit {
                // No tool of its own: our decoder, which gives back the exact bytes.
                archive = folder + "/decompressed"
                try decompressFile(path, to: archive)
            } else if let codec = chain.codec {
                let test = try runTool(codec.testCommand + [path])
                #expect(test.status == 0, "\(codec.testCommand.joined(separator: " ")) refused \(chain.name): \(test.stderr)")
                archive = folder + "/decompressed"
                try writeBytes(try runTool(codec.decompressCommand + [path]).stdout, to: archive)
            }
            if chain.isTar {
                let listing = try runTool(["tar", "-tf", archive])
                #expect(listing.status == 0, "tar -tf refused \(chain.name): \(listing.stderr)")
                let member = chain.format == .torchZip ? "composer_states.pt" : "checkpoint.safetensors"
                #expect(String(decoding: listing.stdout, as: UTF8.self) == member + "\n")
            }
            if archive != path { try FileManager.default.removeItem(atPath: archive) }

            let file = try CheckpointFile.open(path)
            #expect(file.kind == chain.layers[0].fileKind)
            #expect(file.formatKind == chain.format)
            #expect(file.layers == chain.layers)
            #expect(file.compression == chain.codec)
            #expect(file.byteCount == (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int))
            try file.verify()
            // The same state saved plainly in the same format is the reference (the torch
            // format's own round trip is the torch tests' business).
            let plain = try saveCheckpoint(state, filename: folder + (chain.format == .torchZip ? "/plain.pt" : "/plain.safetensors"))[0]
            let same = try loadCheckpoint(path) == loadCheckpoint(plain)
            #expect(same, "\(chain.name) loads back a different state from the plain file")
            if chain.format == .safetensors {
                let sameAsSaved = try loadCheckpoint(path) == state
                #expect(sameAsSaved, "\(chain.name) loads back a different state")
            }
        }
    }

    /// How each tool is asked to make a tar of a given codec.
    static let tarFlags: [CompressionCodec: [String]] = [
        .gzip: ["-z"], .bzip2: ["-j"], .xz: ["-J"], .lzma: ["--lzma"], .zstd: ["--zstd"], .lzop: ["--lzop"],
        .lz4: ["-I", "lz4"],
    ]

    @Test("files the tools make load: every codec around a native file, and tars made by GNU tar", arguments: CompressionCodec.withTools)
    func toolMadeFilesLoad(codec: CompressionCodec) throws {
        let state = composerLikeState(seed: 11)
        try withTemporaryFolder { folder in
            let plain = try saveCheckpoint(state, filename: folder + "/checkpoint.safetensors")[0]
            let compressed = plain + "." + codec.fileExtension
            let run = try runTool(codec.compressCommand, input: plain)
            try #require(run.status == 0, "\(run.stderr)")
            try writeBytes(run.stdout, to: compressed)
            let sameCompressed = try loadCheckpoint(compressed) == state
            #expect(sameCompressed, "\(codec.toolName) -c output loads differently")

            // Named whatever: the codec is read from the bytes (Composer's .tar.lzma holds xz).
            let archive = folder + "/made-by-tar.tar.lzma"
            let tar = try runTool(["tar", "-c"] + Self.tarFlags[codec]! + ["-f", archive, "-C", folder, "checkpoint.safetensors"])
            try #require(tar.status == 0, "\(tar.stderr)")
            let file = try CheckpointFile.open(archive)
            // GNU tar's --lzma, like Composer's .tar.lzma, writes xz.
            #expect(file.layers == [.compressed(codec == .lzma ? .xz : codec), Self.native])
            let sameArchived = try loadCheckpoint(archive) == state
            #expect(sameArchived, "tar \(Self.tarFlags[codec]!) output loads differently")
            try FileManager.default.removeItem(atPath: compressed)
            try FileManager.default.removeItem(atPath: archive)
        }
    }

    @Test("level and threads reach the codec; a bad level fails before anything is left on disk")
    func compressionOptions() throws {
        let state = composerLikeState()
        try withTemporaryFolder { folder in
            let fast = try saveCheckpoint(
                state, filename: folder + "/fast.safetensors.xz", compression: CompressionOptions(level: 0, threads: 1))[0]
            let strong = try saveCheckpoint(
                state, filename: folder + "/strong.safetensors.xz", compression: CompressionOptions(level: 6, threads: 2))[0]
            #expect(try loadCheckpoint(fast) == loadCheckpoint(strong))
            #expect(try readBytes(fast) != readBytes(strong), "the level changes the stream")
            expectCheckpointError(.invalidArgument, messageContains: ["level 99"]) {
                try saveCheckpoint(state, filename: folder + "/bad.zst", compression: CompressionOptions(level: 99))
            }
            #expect(try folderContents(folder) == ["fast.safetensors.xz", "strong.safetensors.xz"])
        }
    }

    @Test("a truncated or damaged compressed checkpoint is refused, naming the file")
    func damagedFiles() throws {
        let state = composerLikeState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/x.safetensors.zst")[0]
            let bytes = try readBytes(path)
            try writeBytes(Array(bytes.prefix(bytes.count / 2)), to: folder + "/cut.zst")
            let cut = expectCheckpointError(.malformed, messageContains: ["truncated"]) {
                _ = try CheckpointFile.open(folder + "/cut.zst")
            }
            #expect(cut?.path == folder + "/cut.zst")
            var damaged = bytes
            damaged[bytes.count / 2] ^= 0x40
            try writeBytes(damaged, to: folder + "/damaged.zst")
            expectCheckpointError(.malformed, messageContains: ["corrupt"]) { _ = try loadCheckpoint(folder + "/damaged.zst") }

            // lzma-alone has no checksum of its own: the native format's checksums catch the damage.
            let lzma = try saveCheckpoint(state, filename: folder + "/x.safetensors.lzma")[0]
            var lzmaBytes = try readBytes(lzma)
            lzmaBytes[lzmaBytes.count - 200] ^= 0x01
            try writeBytes(lzmaBytes, to: lzma)
            #expect(throws: CheckpointError.self) { _ = try loadCheckpoint(lzma) }
        }
    }

    @Test("a compressed bomb is stopped by the limits; raising them loads it")
    func bomb() throws {
        // A checkpoint that is almost all zeros: 32 MiB of them compress ~1000-fold.
        let zeros = try Tensor(dtype: .float32, shape: [8 << 20]) { _ in }
        let state = TrainingState(model: ["w": .tensor(zeros)])
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/zeros.safetensors.zst")[0]
            let strict = ReadingLimits(maximumExpansionRatio: 100, expansionRatioFloor: 1 << 20)
            expectCheckpointError(.limitExceeded, messageContains: ["100-fold"]) {
                _ = try CheckpointFile.open(path, limits: strict)
            }
            expectCheckpointError(.limitExceeded, messageContains: ["more than 1000 bytes"]) {
                _ = try CheckpointFile.open(path, limits: ReadingLimits(maximumDecompressedBytes: 1000))
            }
            let file = try CheckpointFile.open(path, limits: ReadingLimits(maximumExpansionRatio: 1 << 30))
            #expect(file.tree.tensors.first?.tensor.byteCount == 32 << 20)
        }
    }

    @Test("a checkpoint of zeros past the default limits loads with raised ones, and autoresume says so instead of falling back")
    func zeroHeavyCheckpointsLoadWithRaisedLimits() throws {
        // 96 MiB of zeros compress about 30000-fold: past the default 1000-fold limit.
        let zeros = try Tensor(dtype: .float32, shape: [24 << 20]) { _ in }
        let raised = ReadingLimits(maximumExpansionRatio: 1 << 30)
        try withTemporaryFolder { folder in
            // An older checkpoint of random weights, which the default limits load.
            var rng = SplitMix64(seed: 4)
            let noise = try Tensor(dtype: .float32, shape: [24 << 20]) { bytes in
                for index in stride(from: 0, to: bytes.count, by: 8) { bytes.storeBytes(of: rng.next(), toByteOffset: index, as: UInt64.self) }
            }
            var state = TrainingState(model: ["w": .tensor(noise)], runName: "zeros")
            state.timestamp.batch = 1
            try saveCheckpoint(state, filename: folder + "/ba{batch}.safetensors.zst")
            state.model["w"] = .tensor(zeros)
            state.timestamp.batch = 2
            let path = try saveCheckpoint(state, filename: folder + "/ba{batch}.safetensors.zst")[0]
            expectCheckpointError(.limitExceeded, messageContains: ["maximumExpansionRatio"]) { _ = try loadCheckpoint(path) }
            #expect(try loadCheckpoint(path, limits: raised).model["w"]?.tensorValue == zeros)

            // The saver must not resume the older checkpoint as if the newer were damaged.
            var resumed = TrainingState(model: ["w": .tensor(zeros)], runName: "zeros")
            let strict = try CheckpointSaver(options: .init(folder: folder, filename: "ba{batch}.safetensors.zst", saveOnTermination: false))
            expectCheckpointError(.limitExceeded) { try strict.autoresume(into: &resumed) }
            #expect(resumed.timestamp.batch == 0, "nothing was loaded")
            let lenient = try CheckpointSaver(options: .init(
                folder: folder, filename: "ba{batch}.safetensors.zst", saveOnTermination: false, readingLimits: raised))
            try lenient.autoresume(into: &resumed)
            #expect(resumed.timestamp.batch == 2)
        }
    }

    @Test("a decompression that outgrows memory moves to disk with what it has written")
    func spillToDisk() throws {
        let file = try AnonymousFile()
        let first = weightLikeBytes(count: 3 << 20, seed: 20)
        let second = weightLikeBytes(count: 1 << 20, seed: 21)
        try first.withUnsafeBytes { try file.write($0) }
        try file.moveToDisk()
        #expect(file.folder != AnonymousFile.memoryFolder)
        try second.withUnsafeBytes { try file.write($0) }
        let mapped = try file.map(path: "spilled")
        #expect(mapped.bytes.count == first.count + second.count)
        #expect(digest(Array(mapped.bytes)) == digest(first + second))
    }

    @Test("streams nested deeper than a checkpoint ever is are refused (no endless unwrapping)")
    func nesting() throws {
        try withTemporaryFolder { folder in
            var bytes = try readBytes(try saveCheckpoint(composerLikeState(), filename: folder + "/x.safetensors")[0])
            for _ in 0..<5 { bytes = try compress(bytes, .gzip) }
            try writeBytes(bytes, to: folder + "/deep.gz")
            expectCheckpointError(.limitExceeded, messageContains: ["nested more than 4"]) {
                _ = try CheckpointFile.open(folder + "/deep.gz")
            }
        }
    }

    /// A tar of native checkpoints under the given member names.
    static func tar(_ names: [String], in folder: String) throws -> String {
        let checkpoint = try readBytes(try saveCheckpoint(composerLikeState(), filename: folder + "/source.safetensors")[0])
        try FileManager.default.removeItem(atPath: folder + "/source.safetensors")
        var bytes: [UInt8] = []
        for name in names {
            bytes += TarHeader.make(name: name, size: checkpoint.count, kind: .file, mtime: 0)
            bytes += checkpoint + [UInt8](repeating: 0, count: TarHeader.padding(after: checkpoint.count))
        }
        let path = folder + "/archive.tar"
        try writeBytes(bytes + [UInt8](repeating: 0, count: 1024), to: path)
        return path
    }

    @Test("hostile tars are refused when loading, and nothing is written outside the folder")
    func hostileTars() throws {
        try withTemporaryFolder { parent in
            let folder = parent + "/target"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
            for name in ["../evil.safetensors", "/tmp/evil-\(UUID().uuidString).safetensors"] {
                let path = try Self.tar([name], in: folder)
                let error = expectCheckpointError(.malformed, messageContains: [name]) { _ = try loadCheckpoint(path) }
                #expect(error?.path == path)
                try FileManager.default.removeItem(atPath: path)
            }
            #expect(try folderContents(parent) == ["target"])
            #expect(try folderContents(folder).isEmpty)
            #expect(!FileManager.default.fileExists(atPath: "/tmp/evil.safetensors"))

            let ambiguous = try Self.tar(["a.safetensors", "b.safetensors"], in: folder)
            expectCheckpointError(.malformed, messageContains: ["ambiguous", "\"a.safetensors\""]) {
                _ = try CheckpointFile.open(ambiguous)
            }
            let twice = try Self.tar(["checkpoint.safetensors", "./checkpoint.safetensors"], in: folder)
            expectCheckpointError(.malformed, messageContains: ["more than one checkpoint member"]) {
                _ = try CheckpointFile.open(twice)
            }
            // A single file under any name is the checkpoint.
            let single = try Self.tar(["weights/any-name.bin"], in: folder)
            #expect(try CheckpointFile.open(single).layers == [.tar(member: "weights/any-name.bin")])
        }
    }
}
