/// A pool can also run tasks: `Task(executorPreference: pool) { ... }` runs the task's code on
/// the pool's threads instead of the cooperative pool's.
///
/// The synchronous API of an asynchronous implementation (the S3 client's) blocks its caller
/// until a task is done. Were that task's code to run on the cooperative pool, a caller on one
/// of its threads would wait for a thread it may itself be holding (the pool has one per core);
/// on a pool of its own, the task never waits for its caller. The code run this way must not
/// block the pool's threads in turn: it awaits, and does its blocking file work elsewhere.
extension BlockingWorkPool: TaskExecutor {
    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        submit { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
