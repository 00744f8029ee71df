import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import CheckpointingS3

/// A full disk under the staging folder, injected through the system-call seam: a save to S3 is
/// staged locally before the upload, and a load downloads to a staging file first.
extension S3FaultTests {
    /// Faults only for the staging files of `name` (other tests stage into the same folder).
    static func stagingFault(_ kind: Syscall.Kind, of name: String, _ infix: String) -> SyscallFaults.Fault {
        .init(kind, call: 1, errno: ENOSPC, paths: { $0.contains("/.\(name).\(infix)-") })
    }

    static func leftovers(of name: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: ObjectStores.stagingFolder).filter { $0.contains(name) }
    }

    @Test func aFullDiskWhileStagingADownloadFailsClearlyAndLeavesNothing() throws {
        try withBucket { _, bucket in
            let name = "staged-\(UUID().uuidString).safetensors"
            let url = "s3://\(bucket)/\(name)"
            let state = try smallState()
            try saveCheckpoint(state, filename: url)
            let (result, trace) = SyscallFaults.run(
                under: ObjectStores.stagingFolder, failing: [Self.stagingFault(.pwrite, of: name, "download")]
            ) { try loadCheckpoint(url) }
            #expect(trace.injected.count == 1)
            guard case .failure(let thrown) = result else {
                Issue.record("the load succeeded although the staging disk was full")
                return
            }
            let error = try #require(thrown as? CheckpointError)
            #expect(error.code == .io)
            #expect(error.path == url)
            #expect(error.message.contains("the disk is full"), "\(error.message)")
            #expect(error.message.contains("CHECKPOINTING_STAGING_DIR"), "\(error.message)")
            #expect(try Self.leftovers(of: name).isEmpty)
            // With room again, the same object loads.
            #expect(tensorDigests(try loadCheckpoint(url).tree) == tensorDigests(state.tree))
        }
    }

    @Test func aFullDiskWhileStagingAnUploadFailsClearlyAndUploadsNothing() throws {
        try withBucket { store, bucket in
            let name = "staged-\(UUID().uuidString).safetensors"
            let url = "s3://\(bucket)/\(name)"
            let (result, trace) = SyscallFaults.run(
                under: ObjectStores.stagingFolder, failing: [Self.stagingFault(.write, of: name, "partial")]
            ) { try saveCheckpoint(try smallState(), filename: url) }
            #expect(trace.injected.count == 1)
            guard case .failure(let thrown) = result else {
                Issue.record("the save succeeded although the staging disk was full")
                return
            }
            let error = try #require(thrown as? CheckpointError)
            #expect(error.code == .io)
            #expect(error.path == url)
            #expect(error.message.contains("the disk is full") && error.message.contains("not saved"), "\(error.message)")
            #expect(try store.info(ObjectLocation(url)!) == nil)
            #expect(try Self.leftovers(of: name).isEmpty)
        }
    }
}
