public import Checkpointing
import CheckpointToolSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `ckpt bench pt`: the same state saved as `.pt` beside the native save, in the same
/// run, and a `.pt` opened (memory-mapped, nothing but the pickle and the zip directory read)
/// and read back with every record's CRC-32 checked.
public struct TorchBench {
    var state: TrainingState
    var folder: String
    var repetitions: Int

    struct Result: BenchReport {
        var tensorCount: Int
        var tensorBytes: Int
        var nativeBytes: Int
        var torchBytes: Int
        var repeats: Int
        var nativeSave: Double
        var torchSave: Double
        var nativeOpen: Double
        var torchOpen: Double
        var torchReadVerify: Double
        /// Open and verify with the file in the page cache: the CRC-32's own speed.
        var crc: Double

        /// How fast the `.pt` save is beside the native one (1 = as fast; above 1 = faster).
        var torchVersusNative: Double { nativeSave / torchSave }

        func text() -> String {
            var rows = [["step", "time", "throughput"]]
            func row(_ name: String, _ seconds: Double, bytes: Int) { rows.append(timedRow(name, seconds, bytes: bytes)) }
            row("durable save, native", nativeSave, bytes: nativeBytes)
            row("durable save, .pt", torchSave, bytes: torchBytes)
            rows.append(["open (cold), native", String(format: "%.2f ms", nativeOpen * 1000), ""])
            rows.append(["open (cold), .pt", String(format: "%.2f ms", torchOpen * 1000), ""])
            row("open + CRC-verified read (cold), .pt", torchReadVerify, bytes: torchBytes)
            row("open + CRC-verified read (warm), .pt", crc, bytes: torchBytes)
            return """
                GPT-2-small-shaped state: \(tensorCount) tensors, \(Units.bytes(tensorBytes)) of tensor data; \
                native file \(Units.bytes(nativeBytes)), .pt file \(Units.bytes(torchBytes)); median of \(repeats)
                \(Units.table(rows, rightAligned: [1, 2]))
                .pt save speed vs native save: \(String(format: "%.2fx", torchVersusNative))
                """
        }

        func json() -> [String: Any] {
            [
                "format": "pt", "tensor_count": tensorCount, "tensor_bytes": tensorBytes, "native_file_bytes": nativeBytes,
                "pt_file_bytes": torchBytes, "repeats": repeats, "native_save_seconds": nativeSave,
                "pt_save_seconds": torchSave, "pt_vs_native_save": torchVersusNative, "native_open_seconds": nativeOpen,
                "pt_open_seconds": torchOpen, "pt_read_verify_seconds": torchReadVerify, "pt_read_verify_warm_seconds": crc,
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
        let torchPath = folder + "/bench.pt"
        var nativeSave: [Double] = [], torchSave: [Double] = [], nativeOpen: [Double] = [], torchOpen: [Double] = []
        var torchRead: [Double] = [], crc: [Double] = []
        var nativeBytes = 0, torchBytes = 0
        for repetition in 0..<repetitions {
            // Alternate which format goes first, so neither always meets a busier disk.
            for torchFirst in repetition % 2 == 0 ? [false, true] : [true, false] {
                if torchFirst {
                    torchSave.append(try time { try saveCheckpoint(state, filename: torchPath) })
                } else {
                    nativeSave.append(try time { try saveCheckpoint(state, filename: nativePath) })
                }
            }
            // Right after the save the file is in the page cache: this is the CRC-32's own speed.
            crc.append(try time { try CheckpointFile.open(torchPath).verify() })
            for (path, into) in [(nativePath, 0), (torchPath, 1)] {
                dropFromPageCache(path)
                var file: CheckpointFile?
                let seconds = try time { file = try CheckpointFile.open(path) }
                if into == 0 { nativeOpen.append(seconds); nativeBytes = file?.byteCount ?? 0 } else { torchOpen.append(seconds); torchBytes = file?.byteCount ?? 0 }
                file = nil
            }
            dropFromPageCache(torchPath)
            torchRead.append(try time {
                let file = try CheckpointFile.open(torchPath)
                try file.verify()
            })
            try FileManager.default.removeItem(atPath: nativePath)
            try FileManager.default.removeItem(atPath: torchPath)
        }
        return Result(
            tensorCount: tensors.count, tensorBytes: tensors.reduce(0) { $0 + $1.byteCount }, nativeBytes: nativeBytes,
            torchBytes: torchBytes, repeats: repetitions, nativeSave: median(nativeSave), torchSave: median(torchSave),
            nativeOpen: median(nativeOpen), torchOpen: median(torchOpen), torchReadVerify: median(torchRead), crc: median(crc))
    }



}
