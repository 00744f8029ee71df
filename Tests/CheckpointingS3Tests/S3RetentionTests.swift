import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

@testable import CheckpointingS3

extension S3StoreTests {
    /// A kill between an upload and the remote list's update leaves an object the list lacks;
    /// a run resumed on another machine adopts it (reading its header from the store), prunes
    /// the remote folder to its count and moves the pointer to it, and leaves another run's
    /// object and one the template could not have made alone.
    @Test func remoteRetentionAdoptsWhatAKillLeftUnrecorded() throws {
        try withBucket { store, bucket in
            let prefix = "s3://\(bucket)/s3-run/checkpoints/"
            func options(_ folder: String) -> CheckpointSaver.Options {
                CheckpointSaver.Options(
                    folder: folder, filename: "ep{epoch}-ba{batch}.safetensors", saveInterval: "1ba", checkpointsToKeep: 1,
                    remoteFolder: "s3://\(bucket)/{run_name}/checkpoints", remoteCheckpointsToKeep: 2)
            }
            func remoteNames() throws -> [String] {
                try store.list(ObjectLocation(prefix)!, delimiter: nil).objects.map(\.location.name)
            }
            let first = try TemporaryFolder()
            let saver = try CheckpointSaver(options: options(first.path))
            try saver.fitStart(try smallState(batch: 0))
            for batch in 1...3 { try saver.batchEnd(try smallState(batch: batch)) }
            try saver.fitEnd(try smallState(batch: 3))

            try saveCheckpoint(try smallState(batch: 4), filename: prefix + "ep1-ba4.safetensors")
            var other = try smallState(batch: 9)
            other.runName = "other-run"
            try saveCheckpoint(other, filename: prefix + "ep1-ba9.safetensors")
            try saveCheckpoint(try smallState(batch: 1), filename: prefix + "ep1-ba1.safetensors.old")

            let second = try TemporaryFolder()
            let resumedSaver = try CheckpointSaver(options: options(second.path))
            var state = try smallState(batch: 0)
            // The pointer still named batch 3: the kill came before it moved.
            #expect(try resumedSaver.autoresume(into: &state)?.path == prefix + "ep1-ba3.safetensors")
            #expect(try remoteNames() == [
                ".checkpoints-rank0.json", "ep1-ba1.safetensors.old", "ep1-ba3.safetensors", "ep1-ba4.safetensors",
                "ep1-ba9.safetensors", "latest-rank0.symlink",
            ])
            let ledger = try JSONDecoder().decode(
                RetentionLedgerFile.self, from: Data(try store.read(ObjectLocation(prefix + ".checkpoints-rank0.json")!, range: nil)))
            #expect(ledger.checkpoints == ["ep1-ba3.safetensors", "ep1-ba4.safetensors"])
            let pointer = try store.read(ObjectLocation(prefix + "latest-rank0.symlink")!, range: nil)
            #expect(String(decoding: pointer, as: UTF8.self) == "s3-run/checkpoints/ep1-ba4.safetensors")
        }
    }
}

/// The saver's remote list, as stored.
private struct RetentionLedgerFile: Decodable {
    var checkpoints: [String]
}
