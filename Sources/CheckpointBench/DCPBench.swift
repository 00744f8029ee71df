public import Checkpointing
import CheckpointToolSupport
import Foundation

/// `ckpt bench dcp`: the same state saved as a PyTorch Distributed Checkpoint folder
/// (one process: `__0_0.distcp` and `.metadata`) beside the native save, in the same run; the
/// folder opened cold (`.metadata` alone, then as a whole checkpoint: every archive's zip
/// directory and pickle, no tensor data) and read back with every archive's CRC-32 checked,
/// beside the native open and checksum-verified read.
public struct DCPBench {
    var state: TrainingState
    var folder: String
    var repetitions: Int

    struct Result: BenchReport {
        var tensorCount: Int
        var tensorBytes: Int
        var nativeBytes: Int
        var dcpBytes: Int
        var repeats: Int
        var nativeSave: Double
        var dcpSave: Double
        var nativeOpen: Double
        var dcpMetadataOpen: Double
        var dcpOpen: Double
        var nativeReadVerify: Double
        var dcpReadVerify: Double

        func text() -> String {
            var rows = [["step", "time", "throughput"]]
            func row(_ name: String, _ seconds: Double, bytes: Int) { rows.append(timedRow(name, seconds, bytes: bytes)) }
            func milliseconds(_ name: String, _ seconds: Double) { rows.append([name, String(format: "%.2f ms", seconds * 1000), ""]) }
            row("durable save, native", nativeSave, bytes: nativeBytes)
            row("durable save, dcp", dcpSave, bytes: dcpBytes)
            milliseconds("open (cold), native", nativeOpen)
            milliseconds("open .metadata only (cold), dcp", dcpMetadataOpen)
            milliseconds("open (cold), dcp", dcpOpen)
            row("open + verified read (cold), native", nativeReadVerify, bytes: nativeBytes)
            row("open + CRC-verified read (cold), dcp", dcpReadVerify, bytes: dcpBytes)
            return """
                GPT-2-small-shaped state: \(tensorCount) tensors, \(Units.bytes(tensorBytes)) of tensor data; \
                native file \(Units.bytes(nativeBytes)), DCP folder \(Units.bytes(dcpBytes)); median of \(repeats)
                \(Units.table(rows, rightAligned: [1, 2]))
                """
        }

        func json() -> [String: Any] {
            [
                "format": "dcp", "tensor_count": tensorCount, "tensor_bytes": tensorBytes, "native_file_bytes": nativeBytes,
                "dcp_bytes": dcpBytes, "repeats": repeats, "native_save_seconds": nativeSave, "dcp_save_seconds": dcpSave,
                "native_open_seconds": nativeOpen, "dcp_metadata_open_seconds": dcpMetadataOpen, "dcp_open_seconds": dcpOpen,
                "native_read_verify_seconds": nativeReadVerify, "dcp_read_verify_seconds": dcpReadVerify,
            ]
        }
    }

    /// The benchmark, ready to ``run()``.
    public init(state: TrainingState, folder: String, repetitions: Int) {
        self.state = state
        self.folder = folder
        self.repetitions = repetitions
    }

    /// Runs every measurement, removing its files as it goes.
    public func run() throws -> some BenchReport {
        let tensors = state.tree.tensors.map(\.tensor)
        let nativePath = folder + "/bench.safetensors"
        let dcpFolder = folder + "/bench-dcp"
        var nativeSave: [Double] = [], dcpSave: [Double] = [], nativeOpen: [Double] = [], dcpMetadataOpen: [Double] = []
        var dcpOpen: [Double] = [], nativeRead: [Double] = [], dcpRead: [Double] = []
        var nativeBytes = 0, dcpBytes = 0
        func dropFolder() {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dcpFolder)) ?? [] {
                dropFromPageCache(dcpFolder + "/" + name)
            }
        }
        for repetition in 0..<repetitions {
            // Alternate which format goes first, so neither always meets a busier disk.
            for dcpFirst in repetition % 2 == 0 ? [false, true] : [true, false] {
                if dcpFirst {
                    dcpSave.append(try time { try saveCheckpoint(state, filename: dcpFolder, format: .distributedCheckpoint) })
                } else {
                    nativeSave.append(try time { try saveCheckpoint(state, filename: nativePath) })
                }
            }
            dropFromPageCache(nativePath)
            var file: CheckpointFile?
            nativeOpen.append(try time { file = try CheckpointFile.open(nativePath) })
            nativeBytes = file?.byteCount ?? 0
            dropFolder()
            dcpMetadataOpen.append(try time { _ = try DistributedCheckpoint.open(dcpFolder) })
            dropFolder()
            dcpOpen.append(try time { file = try CheckpointFile.open(dcpFolder) })
            dcpBytes = file?.byteCount ?? 0
            file = nil
            dropFromPageCache(nativePath)
            nativeRead.append(try time { try CheckpointFile.open(nativePath).verify() })
            dropFolder()
            dcpRead.append(try time { try CheckpointFile.open(dcpFolder).verify() })
            try FileManager.default.removeItem(atPath: nativePath)
            try FileManager.default.removeItem(atPath: dcpFolder)
        }
        return Result(
            tensorCount: tensors.count, tensorBytes: tensors.reduce(0) { $0 + $1.byteCount }, nativeBytes: nativeBytes,
            dcpBytes: dcpBytes, repeats: repetitions, nativeSave: median(nativeSave), dcpSave: median(dcpSave),
            nativeOpen: median(nativeOpen), dcpMetadataOpen: median(dcpMetadataOpen), dcpOpen: median(dcpOpen),
            nativeReadVerify: median(nativeRead), dcpReadVerify: median(dcpRead))
    }
}
