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
}
