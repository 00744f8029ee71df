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
}
