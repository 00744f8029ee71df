import Checkpointing
import CheckpointingTestSupport
import Foundation
import Synchronization
import Testing

@testable import CheckpointingS3

/// Uploads and downloads report their progress: every byte, part by part.
@Suite(.motoServer) struct S3ProgressTests {
    @Test func aSaveReportsItsUploadAndALoadItsDownload() throws {
        let updates = Mutex([CheckpointProgress.Update]())
        let progress = CheckpointProgress(interval: .zero) { update in updates.withLock { $0.append(update) } }
        var random = SplitMix64(seed: 11)
        // 12 MB: three parts of 5 MiB or less each way.
        let floats = (0..<3_000_000).map { _ in Float(random.next() % 10_000) }
        let state = TrainingState(model: ["w": .tensor(try Tensor(shape: [3_000_000], scalars: floats))])
        try withBucket { store, bucket in
            let url = "s3://\(bucket)/progress/a.safetensors"
            try saveCheckpoint(state, filename: url, progress: progress)
            let size = try #require(try store.info(ObjectLocation(url)!)?.size)
            var finished = updates.withLock { $0.filter(\.isFinished) }
            #expect(finished.map(\.phase) == ["saving", "uploading"])
            #expect(finished.last == .init(phase: "uploading", completedBytes: size, totalBytes: size, isFinished: true))
            let uploads = updates.withLock { $0.filter { $0.phase == "uploading" && !$0.isFinished } }
            #expect(uploads.count >= 3, "the start and a report per part: \(uploads)")

            updates.withLock { $0 = [] }
            _ = try loadCheckpoint(url, progress: progress)
            finished = updates.withLock { $0.filter(\.isFinished) }
            #expect(finished.first == .init(phase: "downloading", completedBytes: size, totalBytes: size, isFinished: true))
            #expect(finished.map(\.phase) == ["downloading", "verifying"])
        }
    }
}
