import Dispatch

/// Runs chunk work on several threads: the float-split codec's encoder and decoder.
enum ParallelChunks {
    /// Calls `work(worker)` for workers `0..<workers`, each on its own thread (the calling
    /// thread among them), and returns when all have finished.
    ///
    /// `work` captures what is not `Sendable` (workspaces, output buffers): each worker touches
    /// only its own workspace and its own chunks' slots, and nothing outlives the call.
    static func run(workers: Int, _ work: (Int) -> Void) {
        guard workers > 1 else {
            if workers == 1 { work(0) }
            return
        }
        withoutActuallyEscaping(work) { work in
            let shared = UncheckedWork(work: work)
            DispatchQueue.concurrentPerform(iterations: workers) { shared.work($0) }
        }
    }

    private struct UncheckedWork: @unchecked Sendable {
        let work: (Int) -> Void
    }
}
