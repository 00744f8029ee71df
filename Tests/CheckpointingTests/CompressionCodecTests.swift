import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// Every codec on its own: round trips, the command-line tools' verdict on what we write, what
/// the tools write read back, and hostile input (truncation, damage, trailing bytes, bombs).
@Suite struct CompressionCodecTests {
    static let codecs = CompressionCodec.allCases

    @Test("round trip of empty, tiny and multi-block inputs split at awkward places", arguments: codecs)
    func roundTrip(codec: CompressionCodec) throws {
        for (index, count) in [0, 1, 1000, 300_001, 3 << 20].enumerated() {
            let input = weightLikeBytes(count: count, seed: UInt64(index))
            let compressed = try compress(input, codec, seed: UInt64(index))
            let output = try decompress(compressed, codec, seed: UInt64(index) + 10)
            #expect(output.count == input.count, "\(codec), \(count) bytes")
            #expect(digest(output) == digest(input), "\(codec), \(count) bytes")
        }
    }

    @Test("the codec's own tool accepts what we write and decompresses it to the same bytes", arguments: CompressionCodec.withTools)
    func toolAcceptsOurStream(codec: CompressionCodec) throws {
        try withTemporaryFolder { folder in
            let input = weightLikeBytes(count: 2 << 20, seed: 3) + [UInt8](repeating: 7, count: 100_000)
            let path = folder + "/data." + codec.fileExtension
            try writeBytes(try compress(input, codec), to: path)
            let test = try runTool(codec.testCommand + [path])
            #expect(test.status == 0, "\(codec.testCommand.joined(separator: " ")) refused our stream: \(test.stderr)")
            let decompressed = try runTool(codec.decompressCommand + [path])
            #expect(decompressed.status == 0, "\(decompressed.stderr)")
            #expect(digest(decompressed.stdout) == digest(input))
        }
    }

    /// The tools' variants: levels, threads (several xz blocks; zstd's multi-threaded frames).
    static let toolVariants: [(CompressionCodec, [String])] =
        CompressionCodec.withTools.map { ($0, []) } + [
            (.gzip, ["-9"]), (.xz, ["-T2", "-0"]), (.zstd, ["-T2", "-19"]), (.lz4, ["-9", "--content-size"]),
            (.lzop, ["-9"]), (.lzop, ["-1"]), (.bzip2, ["-1"]),
        ]

    @Test("we read what the tools write", arguments: toolVariants)
    func weReadToolStreams(codec: CompressionCodec, options: [String]) throws {
        try withTemporaryFolder { folder in
            let input = weightLikeBytes(count: 1 << 20, seed: 4) + Array("tail".utf8)
            let plain = folder + "/plain.bin"
            try writeBytes(input, to: plain)
            let run = try runTool(codec.compressCommand + options, input: plain)
            try #require(run.status == 0, "\(codec.toolName) failed: \(run.stderr)")
            let output = try decompress(run.stdout, codec)
            #expect(digest(output) == digest(input), "\(codec) \(options)")
        }
    }

    @Test("a truncated stream is an error that says so, wherever it is cut", arguments: codecs)
    func truncated(codec: CompressionCodec) throws {
        let compressed = try compress(weightLikeBytes(count: 600_000, seed: 5), codec)
        for cut in [5, compressed.count / 2, compressed.count - 1] {
            let error = expectCheckpointError(.malformed) { _ = try decompress(Array(compressed.prefix(cut)), codec) }
            if let error {
                #expect(
                    error.message.contains("truncated") || error.message.contains("corrupt"),
                    "\(codec) cut at \(cut): \(error.message)")
            }
        }
    }

    @Test(
        "a damaged byte is caught by the codec's checksum",
        arguments: codecs.filter { $0 != .lzma })  // lzma-alone has no checksum: see the next test
    func corrupt(codec: CompressionCodec) throws {
        var compressed = try compress(weightLikeBytes(count: 600_000, seed: 6), codec)
        for position in [compressed.count / 3, compressed.count / 2, compressed.count - 10] {
            compressed[position] ^= 0x10
            expectCheckpointError(.malformed) { _ = try decompress(compressed, codec) }
            compressed[position] ^= 0x10
        }
    }

    @Test("a damaged lzma-alone stream fails or decodes to different bytes (the format's checksums catch the latter)")
    func corruptLZMAAlone() throws {
        let input = weightLikeBytes(count: 600_000, seed: 6)
        var compressed = try compress(input, .lzma)
        compressed[compressed.count / 2] ^= 0x10
        if let output = try? decompress(compressed, .lzma) {
            #expect(digest(output) != digest(input))
        }
    }

    @Test("bytes after the end of a stream that are not another stream are refused", arguments: codecs)
    func trailingGarbage(codec: CompressionCodec) throws {
        let compressed = try compress(weightLikeBytes(count: 10_000, seed: 7), codec)
        // liblzma reads xz streams joined, and reports what follows one as damage, not as extra.
        let expected = codec == .xz ? "corrupt" : "follow the end"
        expectCheckpointError(.malformed, messageContains: [expected]) {
            _ = try decompress(compressed + Array("not another stream!".utf8), codec)
        }
    }

    @Test(
        "streams joined one after another read as their concatenation, as the tools read them",
        // lzma-alone has no framing for this; a float-split stream ends with its index.
        arguments: codecs.filter { $0 != .lzma && $0 != .floatSplit })
    func concatenated(codec: CompressionCodec) throws {
        let first = weightLikeBytes(count: 70_000, seed: 8)
        let second = Array("second part".utf8)
        let joined = try compress(first, codec) + compress(second, codec)
        #expect(digest(try decompress(joined, codec)) == digest(first + second))
    }

    @Test("a decompression bomb stops at the ratio limit, every codec", arguments: codecs)
    func bombStopsAtRatio(codec: CompressionCodec) throws {
        let compressed = try compress([UInt8](repeating: 0, count: 8 << 20), codec)
        let limits = ReadingLimits(maximumExpansionRatio: 50, expansionRatioFloor: 1 << 20)
        let error = expectCheckpointError(.limitExceeded, messageContains: ["expands more than 50-fold"]) {
            _ = try compressed.withUnsafeBytes { raw in
                try Decompression.decompress(raw, codec: codec, limits: limits, path: "bomb")
            }
        }
        #expect(error?.path == "bomb")
    }

    @Test("the default limits stop a zstd bomb (128 MiB of zeros in 4 KB) after 64 MiB")
    func bombWithDefaultLimits() throws {
        let compressed = try compress([UInt8](repeating: 0, count: 128 << 20), .zstd)
        #expect(compressed.count < 20_000)
        expectCheckpointError(.limitExceeded, messageContains: ["decompression bomb"]) {
            _ = try compressed.withUnsafeBytes { raw in
                try Decompression.decompress(raw, codec: .zstd, limits: ReadingLimits(), path: "bomb.zst")
            }
        }
    }

    @Test("the size limit stops a stream that decompresses to more than allowed")
    func sizeLimit() throws {
        let compressed = try compress(weightLikeBytes(count: 3 << 20, seed: 9), .lz4)
        expectCheckpointError(.limitExceeded, messageContains: ["more than 1048576 bytes"]) {
            _ = try compressed.withUnsafeBytes { raw in
                try Decompression.decompress(raw, codec: .lz4, limits: ReadingLimits(maximumDecompressedBytes: 1 << 20), path: "x")
            }
        }
    }

    @Test("a level out of range and a thread count below 1 are refused before anything is written")
    func options() throws {
        let sink = CollectingSink()
        expectCheckpointError(.invalidArgument, messageContains: ["level 42", "accepts"]) {
            _ = try CompressionCodec.zstd.compressor(into: sink, options: CompressionOptions(level: 42))
        }
        expectCheckpointError(.invalidArgument, messageContains: ["thread count"]) {
            _ = try CompressionCodec.xz.compressor(into: sink, options: CompressionOptions(threads: 0))
        }
        #expect(sink.bytes.isEmpty)
    }

    @Test("the lowest, default and a high level, on one or two threads, make valid streams", arguments: codecs)
    func levelsAndThreads(codec: CompressionCodec) throws {
        let input = weightLikeBytes(count: 200_000, seed: 10)
        for level in [codec.levels.lowerBound, codec.defaultLevel, min(codec.levels.upperBound, 6)] {
            for threads in [1, 2] {
                let output = try decompress(try compress(input, codec, options: CompressionOptions(level: level, threads: threads)), codec)
                #expect(digest(output) == digest(input), "\(codec) level \(level), \(threads) threads")
            }
        }
    }

    @Test("file extensions name their codecs")
    func extensions() {
        #expect(CompressionCodec.allCases.map(\.fileExtension) == ["gz", "bz2", "xz", "lzma", "zst", "lz4", "lzo", "fsz"])
        for codec in CompressionCodec.allCases {
            #expect(CompressionCodec(fileExtension: codec.fileExtension) == codec)
        }
        #expect(CompressionCodec(fileExtension: "tar") == nil)
    }
}
