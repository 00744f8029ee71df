import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// Inputs the fuzzer (`scripts/fuzz.sh`) found that crashed a parser or broke one of its
/// properties, reduced to their essence, each with the behaviour that is right instead.
@Suite struct FuzzRegressionTests {
    private static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    /// Target `zip`: a zip64 end locator less than 56 bytes into the file (the size of the
    /// record it points to) made the reader compute a negative offset and trap ("Negative value
    /// is not representable") on a 46-byte file, instead of refusing it.
    @Test func aZip64LocatorNearTheStartOfTheFileIsRefused() throws {
        var bytes: [UInt8] = [0x50, 0x4B, 0x03, 0x04]  // a local header's signature: sniffed as a torch zip
        bytes += Self.littleEndian(ZipSignature.zip64Locator)  // at offset 4
        bytes += Self.littleEndian(UInt32(0)) + Self.littleEndian(UInt64(0)) + Self.littleEndian(UInt32(1))
        bytes += Self.littleEndian(ZipSignature.endRecord)  // at offset 24, with every count and size zip64
        bytes += Self.littleEndian(UInt16(0)) + Self.littleEndian(UInt16(0))
        bytes += Self.littleEndian(UInt16.max) + Self.littleEndian(UInt16.max)
        bytes += Self.littleEndian(UInt32.max) + Self.littleEndian(UInt32.max) + Self.littleEndian(UInt16(0))
        #expect(bytes.count == 46)
        try withTemporaryFolder { folder in
            // Not named .pt: the temporary folder checks every .pt left in it with Python.
            let path = folder + "/tiny.bin"
            try writeBytes(bytes, to: path)
            expectCheckpointError(.malformed, messageContains: ["zip64 end record", "outside the file"]) {
                _ = try CheckpointFile.open(path)
            }
        }
    }

    /// Target `zstd`: libzstd's one-pass and streaming decoders disagree on a frame that
    /// declares no content and whose only block is a zero-length run: the stream below (two
    /// empty frames, one of 64 KiB of zeros, then that frame) decodes whole, as `zstd -d`
    /// decodes it, and is refused as malformed in pieces. Whichever way it arrives, the library
    /// either gives exactly the bytes its frames describe or refuses it: never other bytes.
    @Test func aZstdStreamThatOnlyOneDecoderAcceptsNeverDecodesToOtherBytes() throws {
        let stream = try #require(Data(base64Encoded: "KLUv/TAAAQAAKLUv/TAAAQAAKLUv/QRgTQAACAABAPx/dCcEpBVX8Si1L/0wAAMAACg="))
        let expected = [UInt8](repeating: 0, count: 65536)
        let whole = try stream.withUnsafeBytes { raw in
            try Decompression.decompress(raw, codec: .zstd, limits: ReadingLimits(), path: "found.zst")
        }
        #expect(Array(whole.bytes) == expected)
        for seed: UInt64 in 1...20 {
            do {
                #expect(try decompress(Array(stream), .zstd, seed: seed) == expected, "seed \(seed)")
            } catch let error as CheckpointError {
                #expect(error.code == .malformed, "seed \(seed): \(error)")
            }
        }
    }

    /// Target `filename-template`: a `/` fill (`{epoch:/>5}`, valid in Python) rendered
    /// `ep////3`, which the saver's search for a run's checkpoints (`couldHaveRendered`, which
    /// matches a field within one path component) could never find again, so autoresume and
    /// retention missed every checkpoint the template named. It is refused when the template is
    /// made; any other fill still works and is found.
    @Test func aSlashFillIsRefusedAndOtherFillsAreFound() throws {
        expectCheckpointError(.invalidTemplate, messageContains: ["Fill character '/'", "{epoch:/>5}"]) {
            _ = try FilenameTemplate("ep{epoch:/>5}.pt")
        }
        let template = try FilenameTemplate("ep{epoch:->5}-{run_name:.>8}.pt")
        let name = template.render(FilenameValues(runName: "run", epoch: 3))
        #expect(name == "ep----3-.....run.pt")
        #expect(template.couldHaveRendered(name))
    }

    /// Target `filename-template`: a template with many fields between a few literals made
    /// `couldHaveRendered`'s regular expression backtrack for seconds and then give up, so a
    /// saver would not have recognised its own checkpoints. The matcher is linear now.
    @Test func aTemplateWithManyFieldsRecognisesItsRenderingsQuickly() throws {
        let separator = String(repeating: "\u{FFFD}", count: 12)
        let repeated: String = "{token:}o_in{token:,}" + separator + "{sample_in_epoch}"
        let pattern = "en:t" + String(repeating: repeated, count: 12) + ".pt"
        let template = try FilenameTemplate(pattern)
        let values = FilenameValues(runName: "run", sample: 1 << 40, sampleInEpoch: 3, token: -(1 << 62))
        let name = template.render(values)
        let start = ContinuousClock.now
        #expect(template.couldHaveRendered(name))
        #expect(template.couldHaveRendered(name, known: Set(FilenameTemplate.Variable.allCases), values: values))
        #expect(!template.couldHaveRendered(name + "x"))
        #expect(!template.couldHaveRendered("x" + name))
        #expect(!template.couldHaveRendered("a/" + name))
        #expect(ContinuousClock.now - start < .seconds(1))

        // The fuzzer's input itself, with the harness's extreme values.
        let found = try FilenameTemplate(String(decoding: try #require(Data(base64Encoded: Self.manyFieldsTemplate)), as: UTF8.self))
        let extremes = FilenameValues(
            runName: "ünï côdé ☃ run", rank: .max, localRank: .min, worldSize: -1, localWorldSize: 7, nodeRank: 12,
            epoch: 0, batch: 123_456_789, batchInEpoch: -42, sample: 1 << 40, sampleInEpoch: 3, token: -(1 << 62),
            tokenInEpoch: 5, totalWct: .nan, epochWct: -.infinity, batchWct: -0.0)
        #expect(found.couldHaveRendered(found.render(extremes)))
    }

    private static let manyFieldsTemplate = "ZW46dO5yYWx9fecpc2FtcGxlX2lue3Rva2VuOn1vAQAAb3h7dG9rZW46fS17dG9rZW46LH3//////////////////v////////////////97dG9rZW46fW9faW57dG9rZW46fW8BAABveHt0b2tlbjp9LXt0b2tlbjosff///////////////////////////////////3t0b2tlbjp9b19pbnt0b2tlbjp9bwH////////////////////////////////////+////////////AAAAbv////////////////7//////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////3t0b2tlbjp9b19pbnt0b2tlbjp9bwEAAG94e3Rva2VuOn0te3Rva2VuOix9////////////////e3Rva2VuOn1vX2lue3Rva2VuOn1vAZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkQAAb3h7dG9rZW46fS17dG9rZW46LH3///////////////////////////////////97dG9rZW46LH0="

    /// The matcher's rules: a field matches any run of bytes but `/` (empty too), literals
    /// match exactly, and a known field matches only its rendering.
    @Test func couldHaveRenderedMatchesFieldsWithinOnePathComponent() throws {
        let template = try FilenameTemplate("{run_name}/ep{epoch}-{batch}ba.pt")
        #expect(template.couldHaveRendered("run/ep1-2ba.pt"))
        #expect(template.couldHaveRendered("/ep-ba.pt"))
        #expect(template.couldHaveRendered("r/ep1-2-3ba.pt"))
        #expect(!template.couldHaveRendered("a/b/ep1-2ba.pt"))
        #expect(!template.couldHaveRendered("run/ep1/2ba.pt"))
        #expect(!template.couldHaveRendered("run/ep12ba.pt"))
        #expect(!template.couldHaveRendered("run/ep1-2ba.pt.tmp"))
        let known: Set<FilenameTemplate.Variable> = [.runName, .epoch]
        #expect(template.couldHaveRendered("run/ep1-77ba.pt", known: known, values: FilenameValues(runName: "run", epoch: 1)))
        #expect(!template.couldHaveRendered("run/ep2-77ba.pt", known: known, values: FilenameValues(runName: "run", epoch: 1)))
        #expect(!template.couldHaveRendered("other/ep1-77ba.pt", known: known, values: FilenameValues(runName: "run", epoch: 1)))
    }
}
