import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// A sink that keeps everything written to it.
final class CollectingSink: ByteSink {
    var bytes: [UInt8] = []
    var position: Int { bytes.count }
    func write(_ chunk: UnsafeRawBufferPointer) throws(CheckpointError) { bytes.append(contentsOf: chunk) }
}

/// The tools' own names and options for each codec.
extension CompressionCodec {
    /// The codecs with a command-line tool of their own: all but this library's float-split.
    static var withTools: [CompressionCodec] { allCases.filter { $0 != .floatSplit } }

    /// `tool -t FILE`: the tool's integrity test.
    var testCommand: [String] {
        switch self {
        case .zstd: ["zstd", "-q", "-t"]
        default: [toolName, "-t"]
        }
    }

    /// `tool -c`: compress standard input to standard output.
    var compressCommand: [String] {
        switch self {
        case .zstd: ["zstd", "-q", "-c"]
        default: [toolName, "-c"]
        }
    }

    /// `tool -dc FILE`: decompress to standard output.
    var decompressCommand: [String] {
        switch self {
        case .zstd: ["zstd", "-q", "-dc"]
        default: [toolName, "-dc"]
        }
    }
}

/// Bytes that compress somewhat, like weights: floats with random mantissas near a scale.
func weightLikeBytes(count: Int, seed: UInt64) -> [UInt8] {
    var random = SplitMix64(seed: seed)
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset + 4 <= raw.count {
            let value = (Float(random.next() >> 40) / Float(1 << 23) - 1) * 0.02
            raw.storeBytes(of: value, toByteOffset: offset, as: Float.self)
            offset += 4
        }
    }
    return bytes
}

/// `bytes` compressed with `codec`, written in pieces of varying size.
func compress(_ bytes: [UInt8], _ codec: CompressionCodec, options: CompressionOptions = CompressionOptions(), seed: UInt64 = 1)
    throws -> [UInt8]
{
    let sink = CollectingSink()
    let compressor = try codec.compressor(into: sink, options: options)
    try feed(bytes, to: compressor, seed: seed)
    try compressor.finish()
    return sink.bytes
}

/// `bytes` decompressed with `codec`, fed in pieces of varying size.
func decompress(_ bytes: [UInt8], _ codec: CompressionCodec, seed: UInt64 = 2) throws -> [UInt8] {
    let sink = CollectingSink()
    let decompressor = try codec.decompressor(into: sink)
    try feed(bytes, to: decompressor, seed: seed)
    try decompressor.finish()
    return sink.bytes
}

/// Writes `bytes` to `sink` in pieces of 1 byte to 300 KB, so every codec sees input split at
/// awkward places (inside headers, across blocks).
func feed(_ bytes: [UInt8], to sink: any ByteSink, seed: UInt64) throws {
    var random = SplitMix64(seed: seed)
    var offset = 0
    try bytes.withUnsafeBytes { raw in
        while offset < raw.count {
            let limit = random.next() % 4 == 0 ? 16 : 300_000
            let count = min(raw.count - offset, 1 + Int(random.next() % UInt64(limit)))
            try sink.write(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + count)]))
            offset += count
        }
    }
}

/// The SHA-256 of bytes, for comparing large buffers without printing them.
func digest(_ bytes: [UInt8]) -> String { sha256Hex(bytes) }
