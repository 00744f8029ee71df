import ArgumentParser

/// The scenarios `mpi-worker` runs; each lives in a file of its own.
enum Scenario: String, CaseIterable, ExpressibleByArgument {
    /// Barrier, all-gather and broadcast between healthy ranks give the right bytes.
    case collectives
    /// Rank 1 skips a barrier: the others time out.
    case timeout
    /// Rank 2 SIGKILLs itself before a barrier: the others time out.
    case killedRank = "killed-rank"
    /// A launcher environment that contradicts MPI is refused.
    case envContradiction = "env-contradiction"
    /// Every rank saves its rows of the scenario state, sharded, into `--folder`.
    case shardedSave = "sharded-save"
    /// Every rank loads its rows of the sharded checkpoint in `--folder`, then every tensor whole.
    case shardedLoad = "sharded-load"
    /// Every rank saves sharded into `--folder`; the last rank's writes fail with `ENOSPC`.
    case shardedSaveFault = "sharded-save-fault"
    /// A sharded CheckpointSaver saves at batch 4; rank 2 SIGKILLs itself while writing its
    /// batch-8 shard; the others must time out.
    case shardedSaverKilled = "sharded-saver-killed"
    /// A sharded CheckpointSaver trains 8 batches saving every 4, in the background with
    /// `--variant async`, so the collectives run on the saver's thread.
    case shardedSaverTrain = "sharded-saver-train"
    /// A sharded CheckpointSaver autoresumes from `--folder`; every rank reports the batch.
    case shardedSaverResume = "sharded-saver-resume"
    /// Every rank uploads its rows of the scenario state, sharded, to `--url`.
    case s3ShardedSave = "s3-sharded-save"
    /// Every rank loads its rows of the sharded checkpoint at `--url` with ranged reads.
    case s3ShardedLoad = "s3-sharded-load"
    /// A sharded CheckpointSaver with a remote folder (`--url`) saves 8 times in the background.
    case s3ShardedSaverTrain = "s3-sharded-saver-train"
    /// A sharded CheckpointSaver with an empty local folder autoresumes from `--url`.
    case s3ShardedSaverResume = "s3-sharded-saver-resume"
    /// A sharded CheckpointSaver uploading to `--url`; rank 2 SIGKILLs itself mid-upload of its
    /// batch-8 shard; the others must time out.
    case s3ShardedSaverKilled = "s3-sharded-saver-killed"

    func run(_ worker: Worker) throws -> Outcome {
        switch self {
        case .collectives: try runCollectives(worker)
        case .timeout: try runTimeout(worker)
        case .killedRank: try runKilledRank(worker)
        case .envContradiction: try runEnvironmentContradiction(worker)
        case .shardedSave: try runShardedSave(worker)
        case .shardedLoad: try runShardedLoad(worker)
        case .shardedSaveFault: try runShardedSaveFault(worker)
        case .shardedSaverKilled: try runShardedSaverKilled(worker)
        case .shardedSaverTrain: try runShardedSaverTrain(worker)
        case .shardedSaverResume: try runShardedSaverResume(worker)
        case .s3ShardedSave: try runS3ShardedSave(worker)
        case .s3ShardedLoad: try runS3ShardedLoad(worker)
        case .s3ShardedSaverTrain: try runS3ShardedSaverTrain(worker)
        case .s3ShardedSaverResume: try runS3ShardedSaverResume(worker)
        case .s3ShardedSaverKilled: try runS3ShardedSaverKilled(worker)
        }
    }
}

/// How a rank's run of a scenario ended, as its exit code.
enum Outcome: Int32 {
    /// Every check passed.
    case passed = 0
    /// A collective timed out, as the scenario expects.
    case timedOut = 3
    /// Creating the group was refused, as the scenario expects.
    case refused = 4
}

/// A check that did not hold: the rank prints it and exits 1.
struct WorkerFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
