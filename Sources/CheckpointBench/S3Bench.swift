public import Checkpointing
import CheckpointToolSupport
import CheckpointingS3
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `ckpt bench s3 s3://bucket/prefix`: upload and download throughput of the bench state to
/// an S3 endpoint (from S3_ENDPOINT_URL / AWS_ENDPOINT_URL and the usual credentials), with the
/// parts in flight and the process's peak memory.
public struct S3Bench {
    /// Makes the bench state; called twice, so the transfers are measured without it in memory.
    var makeState: () throws -> TrainingState
    var prefix: ObjectLocation
    var repetitions: Int
    var partSize: Int?
    var concurrency: Int?
    var folder: String

    struct Result: BenchReport {
        var fileBytes: Int
        var partSize: Int
        var parts: Int
        var uploadInFlight: Int
        var downloadInFlight: Int
        var verified: Bool
        var upload: Double
        var download: Double
        var save: Double
        var load: Double
        /// The most the resident set grew above its level before the transfers, during them.
        var transferMemory: Int
        var peakRSS: Int
        var repeats: Int

        func text() -> String {
            var rows = [["step", "time", "throughput"]]
            func row(_ name: String, _ seconds: Double) { rows.append(timedRow(name, seconds, bytes: fileBytes)) }
            row("upload (multipart)", upload)
            row("download (ranged GETs, verified)", download)
            row("saveCheckpoint to s3:// (write + upload)", save)
            row("loadCheckpoint from s3:// (download + open + verify)", load)
            return """
                \(Units.bytes(fileBytes)) checkpoint; \(parts) parts of \(Units.bytes(partSize)), \(uploadInFlight) in flight up, \
                \(downloadInFlight) down; ETag verified: \(verified ? "yes" : "no"); median of \(repeats)
                \(Units.table(rows, rightAligned: [1, 2]))
                memory during upload and download (peak RSS above the level before them): \(Units.bytes(transferMemory))
                peak memory of the whole run (max RSS, state and mapped files included): \(Units.bytes(peakRSS))
                """
        }

        func json() -> [String: Any] {
            [
                "file_bytes": fileBytes, "part_size": partSize, "parts": parts, "upload_parts_in_flight": uploadInFlight,
                "download_parts_in_flight": downloadInFlight, "etag_verified": verified, "upload_seconds": upload,
                "download_seconds": download, "save_seconds": save, "load_seconds": load, "peak_rss_bytes": peakRSS,
                "transfer_memory_bytes": transferMemory,
                "repeats": repeats,
            ]
        }
    }

    /// The benchmark, ready to ``run()``.
    public init(makeState: @escaping () throws -> TrainingState, prefix: ObjectLocation, repetitions: Int, partSize: Int?, concurrency: Int?, folder: String) {
        self.makeState = makeState
        self.prefix = prefix
        self.repetitions = repetitions
        self.partSize = partSize
        self.concurrency = concurrency
        self.folder = folder
    }

    /// Runs every measurement, removing its files as it goes.
    public func run() throws -> some BenchReport {
        var configuration = try S3Configuration.fromEnvironment()
        if let partSize { configuration.partSize = partSize }
        if let concurrency { configuration.maxConcurrency = concurrency }
        let store = try S3ObjectStore(configuration: configuration)
        defer { store.shutdown() }
        let scope = "s3://\(prefix.bucket)"
        ObjectStores.register(store, for: scope)
        defer { ObjectStores.unregister(prefix: scope) }

        let local = folder + "/bench.safetensors"
        try saveCheckpoint(try makeState(), filename: local)
        defer { try? FileManager.default.removeItem(atPath: local) }
        let object = prefix.appending("bench-\(getpid()).safetensors")
        let downloaded = folder + "/downloaded.safetensors"
        defer { try? store.delete(object) }

        var upload: [Double] = [], download: [Double] = [], save: [Double] = [], load: [Double] = []
        var uploadReport: S3TransferReport?
        var downloadReport: S3TransferReport?
        let baseline = Self.memory("VmRSS")
        Self.resetPeakMemory()
        for _ in 0..<repetitions {
            try store.upload(file: local, to: object)
            uploadReport = store.transferReports.last
            upload.append(uploadReport?.seconds ?? 0)
            try store.download(object, to: downloaded)
            downloadReport = store.transferReports.last
            download.append(downloadReport?.seconds ?? 0)
            try? FileManager.default.removeItem(atPath: downloaded)
        }
        let transferMemory = max(0, Self.memory("VmHWM") - baseline)

        let state = try makeState()
        for _ in 0..<repetitions {
            let start = ContinuousClock.now
            try saveCheckpoint(state, filename: object.description)
            save.append((ContinuousClock.now - start).seconds)
            let loadStart = ContinuousClock.now
            _ = try loadCheckpoint(object.description)
            load.append((ContinuousClock.now - loadStart).seconds)
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Result(
            fileBytes: uploadReport?.bytes ?? 0, partSize: uploadReport?.partSize ?? 0, parts: uploadReport?.parts ?? 0,
            uploadInFlight: uploadReport?.partsInFlight ?? 0, downloadInFlight: downloadReport?.partsInFlight ?? 0,
            verified: (uploadReport?.verifiedAgainstETag ?? false) && (downloadReport?.verifiedAgainstETag ?? false),
            upload: median(upload), download: median(download), save: median(save), load: median(load),
            transferMemory: transferMemory, peakRSS: usage.ru_maxrss * 1024, repeats: repetitions)
    }

    /// A `/proc/self/status` figure in bytes (`VmRSS`, `VmHWM`).
    static func memory(_ field: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
            let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else { return 0 }
        return kilobytes * 1024
    }

    /// Restarts the kernel's peak-RSS counter (`VmHWM`) from the current RSS.
    static func resetPeakMemory() {
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
    }
}
