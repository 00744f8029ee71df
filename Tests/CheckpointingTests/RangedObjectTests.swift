import CheckpointingTestSupport
import Foundation
import Synchronization
import Testing

@testable import Checkpointing

/// An object store in memory that records every ranged read and sets how ranged loads split
/// their reads, to check that ``RangedObject`` follows the store's settings.
private final class RecordingStore: ObjectStore {
    let object: [UInt8]
    let rangedReads: (pieceSize: Int, parallelRequests: Int)
    let reads = Mutex<[Range<Int>]>([])
    let inFlight = Atomic<Int>(0)
    let mostInFlight = Atomic<Int>(0)

    init(object: [UInt8], pieceSize: Int, parallelRequests: Int) {
        self.object = object
        rangedReads = (pieceSize, parallelRequests)
    }

    func upload(file path: String, to location: ObjectLocation) throws(CheckpointError) -> ObjectInfo {
        throw CheckpointError(.unsupportedFormat, "read-only")
    }
    func download(_ location: ObjectLocation, to path: String) throws(CheckpointError) -> ObjectInfo {
        throw CheckpointError(.unsupportedFormat, "read-only")
    }
    func info(_ location: ObjectLocation) throws(CheckpointError) -> ObjectInfo? {
        ObjectInfo(location: location, size: object.count, etag: "tag")
    }
    func list(_ prefix: ObjectLocation, delimiter: String?) throws(CheckpointError) -> ObjectListing {
        ObjectListing(objects: [], commonPrefixes: [])
    }
    func read(_ location: ObjectLocation, range: Range<Int>?) throws(CheckpointError) -> [UInt8] {
        let range = range ?? 0..<object.count
        let now = inFlight.add(1, ordering: .relaxed).newValue
        mostInFlight.max(now, ordering: .relaxed)
        defer { inFlight.subtract(1, ordering: .relaxed) }
        usleep(2000)
        reads.withLock { $0.append(range) }
        return Array(object[range])
    }
    func write(_ bytes: [UInt8], to location: ObjectLocation) throws(CheckpointError) {}
    func delete(_ location: ObjectLocation) throws(CheckpointError) {}
}

@Suite struct RangedObjectTests {
    @Test(arguments: [(pieceSize: 1000, parallelRequests: 1), (pieceSize: 4096, parallelRequests: 3)])
    func rangedReadsFollowTheStoresPieceSizeAndConcurrency(setting: (pieceSize: Int, parallelRequests: Int)) throws {
        let prefix = "s3://ranged-\(UUID().uuidString.lowercased())"
        let object = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let store = RecordingStore(object: object, pieceSize: setting.pieceSize, parallelRequests: setting.parallelRequests)
        ObjectStores.register(store, for: prefix)
        defer { ObjectStores.unregister(prefix: prefix) }

        let location = try #require(ObjectLocation("\(prefix)/object"))
        let (ranged, mapping) = try RangedObject.open(location)
        try ranged.fetch([100..<20_100, 30_000..<30_010])

        let reads = store.reads.withLock { $0 }.sorted { $0.lowerBound < $1.lowerBound }
        #expect(reads.allSatisfy { $0.count <= setting.pieceSize })
        #expect(reads.reduce(0) { $0 + $1.count } == 20_010)
        #expect(reads.first?.lowerBound == 100 && reads.last?.upperBound == 30_010)
        #expect(store.mostInFlight.load(ordering: .relaxed) <= setting.parallelRequests)
        #expect(Array(mapping.bytes[100..<20_100]) == Array(object[100..<20_100]))
        #expect(Array(mapping.bytes[30_000..<30_010]) == Array(object[30_000..<30_010]))
    }

    /// A ranged fetch reports the bytes it fetches as they arrive, and stops at the next piece
    /// once its `async` call's task is cancelled (the pieces in flight finish).
    @Test func rangedReadsReportTheirBytesAndStopWhenCancelled() throws {
        let prefix = "s3://ranged-\(UUID().uuidString.lowercased())"
        let object = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let store = RecordingStore(object: object, pieceSize: 1000, parallelRequests: 1)
        ObjectStores.register(store, for: prefix)
        defer { ObjectStores.unregister(prefix: prefix) }
        let location = try #require(ObjectLocation("\(prefix)/object"))

        let updates = Mutex([CheckpointProgress.Update]())
        let progress = CheckpointProgress(interval: .zero) { update in updates.withLock { $0.append(update) } }
        let (ranged, _) = try RangedObject.open(location)
        try ranged.fetch([0..<10_000], progress: progress)
        // Already here: nothing more to fetch, no phase.
        try ranged.fetch([2_000..<3_000], progress: progress)
        let reported = updates.withLock { $0 }
        #expect(reported.filter(\.isFinished) == [.init(phase: "downloading", completedBytes: 10_000, totalBytes: 10_000, isFinished: true)])
        #expect(reported.map(\.completedBytes) == [0] + (1...10).map { $0 * 1000 } + [10_000])

        let flag = CancellationFlag()
        let cancelling = CheckpointProgress(interval: .zero) { update in
            if update.completedBytes > 0 { flag.cancel() }
        }
        store.reads.withLock { $0.removeAll() }
        do {
            try CancellationFlag.$current.withValue(flag) {
                try ranged.fetch([20_000..<40_000], progress: cancelling)
            }
            Issue.record("a cancelled fetch went on to its end")
        } catch {
            #expect((error as? CheckpointError)?.code == .cancelled)
        }
        #expect(store.reads.withLock { $0 }.count == 1, "one request, then the cancellation was seen")
    }

    /// A weights-only load from an object store fetches the model's tensors in pieces: it
    /// reports `downloading` over the bytes fetched, then `verifying` over the tensors.
    @Test func aRangedLoadReportsDownloadingThenVerifying() throws {
        try withTemporaryFolder { folder in
            var state = try ProgressTests.state(megabytes: 2)
            state.optimizers["Adam"] = .dict(["moments": .tensor(try Tensor(shape: [100_000], scalars: [Float](repeating: 1, count: 100_000)))])
            let path = try saveCheckpoint(state, filename: folder + "/a.safetensors")[0]
            let prefix = "s3://ranged-\(UUID().uuidString.lowercased())"
            let store = RecordingStore(object: try readBytes(path), pieceSize: 256 << 10, parallelRequests: 3)
            ObjectStores.register(store, for: prefix)
            defer { ObjectStores.unregister(prefix: prefix) }

            let recorder = ProgressTests.Recorder()
            let loaded = try loadCheckpoint("\(prefix)/a.safetensors", weightsOnly: true, progress: recorder.reporter())
            #expect(loaded.model == state.model)
            let modelBytes = ProgressTests.tensorBytes(TrainingState(model: state.model))
            let finished = recorder.finished
            #expect(finished.map(\.phase) == ["downloading", "verifying"], "\(finished)")
            // The model's bytes that the probes for the index (its first and last bytes, fetched
            // before, unreported) did not bring, and not the optimizer's 400 kB.
            let downloaded = try #require(finished.first)
            let probes = 2 * RangedCheckpoint.probeBytes
            #expect(downloaded.totalBytes >= modelBytes - probes, "\(downloaded)")
            #expect(downloaded.totalBytes <= modelBytes + 2 * RangedObject.mergeGap, "\(downloaded)")
            #expect(downloaded.completedBytes == downloaded.totalBytes)
            #expect(finished.last == .init(phase: "verifying", completedBytes: modelBytes, totalBytes: modelBytes, isFinished: true))
        }
    }
}
