import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

@testable import CheckpointingS3

/// Sharded checkpoints in an object store with no shared disk, ranks as threads
/// of this process (the MPI tests run the same across real processes): uploads committed by a
/// manifest, loads that fetch only the pieces they need, and the faults of a multi-node run.
@Suite(.motoServer) struct ShardedS3Tests {
    /// The whole state at `batch`: rows that split unevenly, a tensor too small to split, and an
    /// optimizer state as large as the model; about `rows` KiB of each.
    static func fullState(batch: Int, rows: Int = 1025, seed: UInt64 = 0) throws -> TrainingState {
        var random = SplitMix64(seed: UInt64(batch) &* 31 &+ seed)
        func values(_ count: Int) -> [Float] { (0..<count).map { _ in Float(random.next() % 100_000) / 7 } }
        var state = TrainingState(runName: "sharded-s3")
        state.model["emb.weight"] = .tensor(try Tensor(shape: [rows, 256], scalars: values(rows * 256)))
        state.model["layer.bias"] = .tensor(try Tensor(shape: [3], scalars: [1, 2, Float(batch)]))
        state.optimizers["AdamW"] = [
            "state": [0: ["exp_avg": .tensor(try Tensor(shape: [rows, 256], scalars: values(rows * 256)))]],
            "param_groups": [["lr": 0.01, "params": [0]]],
        ]
        state.timestamp = Timestamp(epoch: 1, batch: batch, sample: batch * 8)
        return state
    }

    /// `rank`'s rows of the state at `batch`, and what they are.
    static func part(batch: Int, rank: Int, worldSize: Int, rows: Int = 1025, seed: UInt64 = 0) throws -> (TrainingState, Sharding) {
        let (tree, sharding) = try ShardPlan.splitFirstDimension.apply(
            to: fullState(batch: batch, rows: rows, seed: seed).tree, rank: rank, worldSize: worldSize)
        return (try TrainingState(tree: tree), sharding)
    }

    /// Saves the state at `batch` sharded on `worldSize` ranks with `template`; returns every rank's paths.
    @discardableResult
    static func saveSharded(_ template: String, batch: Int, worldSize: Int, rows: Int = 1025, seed: UInt64 = 0) throws -> [[String]] {
        try ThreadWorld.run(size: worldSize) { group in
            let (state, sharding) = try part(batch: batch, rank: group.rank, worldSize: worldSize, rows: rows, seed: seed)
            return try saveCheckpoint(state, filename: template, sharding: sharding, processGroup: group)
        }.map { try $0.get() }
    }

    static func tensorBytes(_ tree: StateValue) -> Int { tree.tensors.reduce(0) { $0 + $1.tensor.byteCount } }

    /// Native shards, and torch ones (`.pt.tar`: the zip's central directory and local headers
    /// are the index, and a tensor is fetched and checked through its whole record).
    @Test(arguments: ["", ".pt"])
    func savedByFourRanksLoadsOnTwoFetchingOnlyTheirPiecesAndTheIndexes(format: String) throws {
        try withBucket { store, bucket in
            let paths = try Self.saveSharded("s3://\(bucket)/run/ep{epoch}-ba{batch}-rank{rank}\(format)", batch: 4, worldSize: 4)
            let expected = (0..<4).map { "s3://\(bucket)/run/ep1-ba4-rank\($0)\(format).tar" }
            #expect(paths == Array(repeating: expected, count: 4), "every rank gets every rank's object URL")
            let manifestURL = expected[0] + ShardManifest.suffix
            let manifest = try ShardManifest.read(manifestURL)
            #expect(manifest.shards.map(\.path) == (0..<4).map { "ep1-ba4-rank\($0)\(format).tar" })
            for (shard, url) in zip(manifest.shards, expected) {
                let info = try #require(try store.info(ObjectLocation(url)!))
                #expect(info.size == shard.size && info.etag == shard.etag && shard.etag != nil)
            }
            #expect(try store.list(ObjectLocation("s3://\(bucket)/run/")!, delimiter: nil).objects.count == 5, "four shards and a manifest, nothing staged")

            let before = store.transfers.snapshot
            let loaded = try ThreadWorld.run(size: 2) { group in
                try loadCheckpoint(manifestURL, processGroup: group)
            }.map { try $0.get() }
            let downloaded = (store.transfers.snapshot - before).bytesDownloaded
            for rank in 0..<2 {
                let rows = try Self.part(batch: 4, rank: rank, worldSize: 2).0
                #expect(loaded[rank].tree == rows.tree, "rank \(rank)'s rows, bit for bit")
            }
            // The two ranks need every tensor once; beyond that only the shards' indexes (what
            // is not tensor data: tar headers, safetensors headers, end blocks), each read by at
            // most both ranks, and the manifest, read by both.
            let needed = Self.tensorBytes(try Self.fullState(batch: 4).tree)
            let indexes = manifest.shards.reduce(0) { $0 + $1.size } - needed
            let manifestBytes = try #require(try store.info(ObjectLocation(manifestURL)!)).size
            #expect(downloaded >= needed)
            #expect(downloaded <= needed * 11 / 10 + 2 * indexes + 2 * manifestBytes, "downloaded \(downloaded) for \(needed) needed")
        }
    }

    @Test func ckptReadsAShardedCheckpointInTheStoreAndReportsTheBytesItDownloaded() throws {
        try withBucket { store, bucket in
            try Self.saveSharded("s3://\(bucket)/c/ba{batch}-rank{rank}", batch: 2, worldSize: 3, rows: 257)
            let endpoint = try #require(store.configuration.endpoint)
            let manifestURL = "s3://\(bucket)/c/ba2-rank0.tar" + ShardManifest.suffix
            let shardBytes = try ShardManifest.read(manifestURL).shards.reduce(0) { $0 + $1.size }

            let inspect = try CKPT.run(["inspect", manifestURL, "--json"], endpoint: endpoint)
            #expect(inspect.status == 0, "\(inspect.stderr)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
            #expect(report["format"] as? String == "sharded native, 3 ranks")
            #expect((report["shards"] as? [Any])?.count == 3)
            #expect(report["tar_member"] as? String == "checkpoint.safetensors")
            let inspected = try #require(report["bytes_downloaded"] as? Int)
            #expect(inspected > 0 && inspected < shardBytes / 3, "inspect reads the manifest and rank 0's index: \(inspected)")

            let verify = try CKPT.run(["verify", manifestURL, "--json"], endpoint: endpoint)
            #expect(verify.status == 0, "\(verify.stderr)")
            let verified = try #require(try JSONSerialization.jsonObject(with: Data(verify.stdout.utf8)) as? [String: Any])
            #expect(verified["ok"] as? Bool == true && verified["shards"] as? Int == 3)
            #expect((verified["bytes_downloaded"] as? Int ?? 0) >= shardBytes, "verify reads every byte")

            let ls = try CKPT.run(["ls", "s3://\(bucket)/c/", "--json"], endpoint: endpoint)
            #expect(ls.status == 0, "\(ls.stderr)")
            let listing = try #require(try JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as? [String: Any])
            let rows = try #require(listing["checkpoints"] as? [[String: Any]])
            #expect(rows.map { $0["name"] as? String } == ["ba2-rank0.tar" + ShardManifest.suffix], "one row, shards not listed")
            #expect(rows.first?["complete"] as? Bool == true && rows.first?["format"] as? String == "sharded x3")
            #expect(rows.first?["bytes"] as? Int == shardBytes)
            #expect(listing["bytes_downloaded"] as? Int != nil)

            let folder = try TemporaryFolder()
            let convert = try CKPT.run(["convert", manifestURL, folder.file("whole.safetensors"), "--json"], endpoint: endpoint)
            #expect(convert.status == 0, "\(convert.stderr)")
            let converted = try #require(try JSONSerialization.jsonObject(with: Data(convert.stdout.utf8)) as? [String: Any])
            #expect(converted["paths"] as? [String] == [folder.file("whole.safetensors")])
            #expect((converted["bytes_downloaded_by_rank"] as? [Int])?.count == 1)
            #expect(try loadCheckpoint(folder.file("whole.safetensors")).tree == Self.fullState(batch: 2, rows: 257).tree)
        }
    }

    @Test(arguments: ["safetensors", "pt"])
    func weightsOnlyLoadOfAFileFetchesItsIndexAndTheModelAlone(format: String) throws {
        try withBucket { store, bucket in
            let state = try Self.fullState(batch: 3)
            let url = "s3://\(bucket)/w/ck.\(format)"
            try saveCheckpoint(state, filename: url)
            let size = try #require(try store.info(ObjectLocation(url)!)).size

            let before = store.transfers.snapshot
            let weights = try loadCheckpoint(url, weightsOnly: true)
            let downloaded = (store.transfers.snapshot - before).bytesDownloaded
            #expect(weights.model == state.model)
            let model = Self.tensorBytes(.dict(state.model))
            #expect(downloaded >= model && downloaded < model + 64 << 10, "\(downloaded) bytes for \(model) of model in a \(size)-byte file")

            // A file opened from its index fetches a tensor when it is first read.
            let indexed = try CheckpointFile.openIndex(url, limits: ReadingLimits())
            let exp = try #require(indexed.tree[path: "state/optimizers/AdamW/state/0/exp_avg"]?.tensorValue)
            #expect(exp == state.optimizers["AdamW"]?.dictValue?["state"]?.dictValue?[0]?.dictValue?["exp_avg"]?.tensorValue)

            // A damaged model tensor is caught by its checksum (or its record's CRC-32).
            var bytes = try store.read(ObjectLocation(url)!, range: nil)
            let index = try #require(bytes.indices.reversed().first { bytes[$0] != 0 && $0 < size / 4 })
            bytes[index] ^= 0x40
            try store.write(bytes, to: ObjectLocation(url)!)
            let damaged = #expect(throws: CheckpointError.self) { try loadCheckpoint(url, weightsOnly: true) }
            #expect(damaged?.code == .checksumMismatch, "\(String(describing: damaged))")
            #expect(damaged?.path == url)
        }
    }

    @Test func aShardReplacedByAnotherOfTheSameSizeFailsTheLoadNamingItsDigest() throws {
        try withBucket { store, bucket in
            try Self.saveSharded("s3://\(bucket)/a/rank{rank}", batch: 5, worldSize: 2, rows: 64)
            try Self.saveSharded("s3://\(bucket)/b/rank{rank}", batch: 5, worldSize: 2, rows: 64, seed: 99)
            let original = ObjectLocation("s3://\(bucket)/a/rank1.tar")!
            let other = try store.read(ObjectLocation("s3://\(bucket)/b/rank1.tar")!, range: nil)
            #expect(try other.count == store.info(original)?.size, "the impostor has the same size")
            try store.write(other, to: original)

            let manifest = try ShardManifest.read("s3://\(bucket)/a/rank0.tar" + ShardManifest.suffix)
            let failure = #expect(throws: CheckpointError.self) {
                try loadCheckpoint("s3://\(bucket)/a/rank0.tar" + ShardManifest.suffix)
            }
            #expect(failure?.code == .checksumMismatch)
            #expect(failure?.path == original.description)
            #expect(failure?.message.contains("the manifest recorded digest \(manifest.shards[1].digest)") == true, "\(String(describing: failure))")
        }
    }

    @Test func aForbiddenUploadIsPermissionDeniedOnThatRankAndDistributedOnTheOthers() throws {
        try withBucket { store, bucket in
            let forbidden = try startPython(ForbiddenS3.script, [], name: "forbidden")
            defer { forbidden.stop() }
            let refusing = try makeStore(endpoint: forbidden.endpoint)
            defer { refusing.shutdown() }
            ObjectStores.register(refusing, for: "s3://\(bucket)/run/rank2")
            defer { ObjectStores.unregister(prefix: "s3://\(bucket)/run/rank2") }

            let outcomes = ThreadWorld.run(size: 4) { group in
                let (state, sharding) = try Self.part(batch: 1, rank: group.rank, worldSize: 4, rows: 64)
                return try saveCheckpoint(state, filename: "s3://\(bucket)/run/rank{rank}/ep{epoch}", sharding: sharding, processGroup: group)
            }
            for (rank, outcome) in outcomes.enumerated() {
                let error = try #require(outcome.failure as? CheckpointError, "rank \(rank) must fail")
                // Every rank throws rank 2's 403, whole: the others learn it was rank 2's.
                #expect(error.code == .permissionDenied, "\(error)")
                #expect(error.path == "s3://\(bucket)/run/rank2/ep1.tar")
                #expect(error.rank == (rank == 2 ? nil : 2), "\(error)")
                if rank != 2 {
                    #expect(error.message.contains("not every rank wrote its shard; the sharded checkpoint was not committed"), "\(error)")
                }
            }
            #expect(try store.list(ObjectLocation("s3://\(bucket)/run/")!, delimiter: nil).objects.isEmpty, "no manifest, and the other ranks' shards deleted")
        }
    }

    /// Options of a sharded saver whose ranks each have their own local and remote folder.
    static func saverOptions(
        local: String, remote: String, sharding: Sharding, group: any ProcessGroup, keep: Int = -1, interval: SaveInterval = "2ba"
    ) -> CheckpointSaver.Options {
        CheckpointSaver.Options(
            folder: local + "/rank{rank}", filename: "ba{batch}-rank{rank}", saveInterval: interval, checkpointsToKeep: keep,
            remoteFolder: remote, saveOnTermination: false, sharding: sharding, processGroup: group)
    }

    /// Autoresumes on `worldSize` ranks from `remote` with empty local folders; returns each
    /// rank's batch and whether its state is exactly its rows of that batch.
    static func autoresumeOnFreshNodes(remote: String, worldSize: Int, rows: Int) throws -> [(batch: Int?, exact: Bool)] {
        try withTemporaryFolder { fresh in
            try ThreadWorld.run(size: worldSize) { group in
                let (empty, sharding) = try part(batch: 0, rank: group.rank, worldSize: worldSize, rows: rows)
                var state = empty
                let saver = try CheckpointSaver(options: saverOptions(local: fresh, remote: remote, sharding: sharding, group: group))
                guard try saver.autoresume(into: &state) != nil else { return (nil, false) }
                let batch = state.timestamp.batch
                return (batch, try state.tree == part(batch: batch, rank: group.rank, worldSize: worldSize, rows: rows).0.tree)
            }.map { try $0.get() }
        }
    }

    @Test func serverStoppedWhileRankTwoUploadsCommitsNothingAndThePreviousCheckpointStaysLatest() throws {
        let moto = try #require(MotoSuite.server)
        try withBucket { store, bucket in
            let proxy = try startPython(TCPProxy.script, [String(moto.port), String(48 << 10)], name: "proxy")
            defer { proxy.stop() }
            let viaProxy = try makeStore(endpoint: proxy.endpoint, maxAttempts: 3)
            defer { viaProxy.shutdown() }
            defer { ObjectStores.unregister(prefix: "s3://\(bucket)/saver/rank2") }
            let remote = "s3://\(bucket)/saver/rank{rank}"
            let folder = try TemporaryFolder()
            let local = folder.path

            let outcomes = ThreadWorld.run(size: 4) { group in
                let sharding = try Self.part(batch: 0, rank: group.rank, worldSize: 4, rows: 257).1
                let saver = try CheckpointSaver(options: Self.saverOptions(local: local, remote: remote, sharding: sharding, group: group))
                try saver.fitStart(try Self.part(batch: 0, rank: group.rank, worldSize: 4, rows: 257).0)
                for batch in 1...2 { try saver.batchEnd(try Self.part(batch: batch, rank: group.rank, worldSize: 4, rows: 257).0) }
                // From now on rank 2 reaches the store through a proxy that stops mid-upload.
                if group.rank == 2 { ObjectStores.register(viaProxy, for: "s3://\(bucket)/saver/rank2") }
                for batch in 3...4 { try saver.batchEnd(try Self.part(batch: batch, rank: group.rank, worldSize: 4, rows: 257).0) }
            }
            for (rank, outcome) in outcomes.enumerated() {
                let error = try #require(outcome.failure as? CheckpointError, "rank \(rank) must fail")
                #expect(error.code == .unreachable && error.message.contains(proxy.endpoint), "\(error)")
                #expect(error.rank == (rank == 2 ? nil : 2), "\(error)")
            }
            #expect(proxy.log.contains("proxy: stopping after"))
            let pointer = try store.read(ObjectLocation("s3://\(bucket)/saver/rank0/latest-rank0.symlink")!, range: nil)
            #expect(String(decoding: pointer, as: UTF8.self) == "saver/rank0/ba2-rank0.tar" + ShardManifest.suffix)
            let names = try store.list(ObjectLocation("s3://\(bucket)/saver/")!, delimiter: nil).objects.map(\.location.key)
            #expect(!names.contains { $0.contains("ba4") }, "no batch-4 manifest, and the shards uploaded deleted: \(names)")
            #expect(names.filter { $0.hasSuffix(ShardManifest.suffix) } == ["saver/rank0/ba2-rank0.tar" + ShardManifest.suffix])

            ObjectStores.unregister(prefix: "s3://\(bucket)/saver/rank2")
            let resumed = try Self.autoresumeOnFreshNodes(remote: remote, worldSize: 4, rows: 257)
            #expect(resumed.map(\.batch) == [2, 2, 2, 2] && resumed.allSatisfy(\.exact), "\(resumed)")
        }
    }

    @Test func aDeletedShardShowsTheCheckpointIncompleteAndAutoresumeFallsBack() throws {
        try withBucket { store, bucket in
            let remote = "s3://\(bucket)/up"
            let folder = try TemporaryFolder()
            let local = folder.path
            let before = store.transfers.snapshot
            let statistics = try ThreadWorld.run(size: 3) { group in
                let sharding = try Self.part(batch: 0, rank: group.rank, worldSize: 3, rows: 257).1
                // Nothing kept locally: every shard goes straight to the store.
                let saver = try CheckpointSaver(options: Self.saverOptions(
                    local: local, remote: remote, sharding: sharding, group: group, keep: 0))
                try saver.fitStart(try Self.part(batch: 0, rank: group.rank, worldSize: 3, rows: 257).0)
                for batch in 1...4 { try saver.batchEnd(try Self.part(batch: batch, rank: group.rank, worldSize: 3, rows: 257).0) }
                try saver.fitEnd(try Self.part(batch: 4, rank: group.rank, worldSize: 3, rows: 257).0)
                return try saver.statistics
            }.map { try $0.get() }
            #expect(statistics.allSatisfy { $0.saves == 2 && $0.bytesWritten > 0 }, "\(statistics)")
            #expect((store.transfers.snapshot - before).bytesUploaded > statistics.reduce(0) { $0 + $1.bytesWritten })
            let localFiles = FileManager.default.enumerator(atPath: local)?.allObjects.compactMap { $0 as? String } ?? []
            #expect(!localFiles.contains { $0.hasSuffix(".tar") || $0.hasSuffix(ShardManifest.suffix) }, "no local copies: \(localFiles)")

            try store.delete(ObjectLocation("\(remote)/ba4-rank1.tar")!)
            let ls = try CKPT.run(["ls", remote + "/", "--json"], endpoint: try #require(store.configuration.endpoint))
            #expect(ls.status == 0, "\(ls.stderr)")
            let listing = try #require(try JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as? [String: Any])
            let rows = try #require(listing["checkpoints"] as? [[String: Any]])
            #expect(rows.map { $0["name"] as? String } == ["ba2-rank0.tar" + ShardManifest.suffix, "ba4-rank0.tar" + ShardManifest.suffix])
            #expect(rows.map { $0["complete"] as? Bool } == [true, false])
            #expect(rows.map { $0["latest"] as? Bool } == [false, true])
            #expect((rows.last?["problem"] as? String)?.contains("rank 1's shard is missing") == true)

            let resumed = try Self.autoresumeOnFreshNodes(remote: remote, worldSize: 3, rows: 257)
            #expect(resumed.map(\.batch) == [2, 2, 2] && resumed.allSatisfy(\.exact), "\(resumed)")
        }
    }
}

extension Result {
    /// The error of a failure, or `nil`.
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
