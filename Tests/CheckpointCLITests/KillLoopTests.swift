import CheckpointDemo
import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A preemptible run, for real: `ckpt demo-run` (the demo's training with a saver keeping 3
/// checkpoints and 1 MB of ballast per checkpoint, so saves take a while) is SIGKILLed at 50
/// random moments and started again each time, then run once to a clean end.
///
/// Every run that resumed must have resumed from the newest checkpoint in the folder, with a
/// state bit-identical to an uninterrupted run's at that batch (compared by digest); the clean
/// run must end bit-identical too, and leave exactly 3 checkpoints, a ledger naming them, the
/// latest pointer on the newest, and no temporary file. The kill moments come from a seed that
/// is printed; `CKPT_KILL_LOOP_SEED=N` replays them.
@Suite struct KillLoopTests {
    static let kills = 50
    static let keep = 3
    /// The schedule's length: never reached, so every run but the last is killed.
    static let totalBatches = 1_000_000
    /// Kills land uniformly in this window after the start (microseconds): in a run's start-up,
    /// its resume and reconciliation, and its saves.
    static let window: UInt64 = 700_000

    @Test(arguments: [false, true])
    func killedAtRandomMomentsItResumesBitExactlyAndKeepsTheCount(asynchronous: Bool) throws {
        let mode = asynchronous ? "asynchronous" : "synchronous"
        let seed = ProcessInfo.processInfo.environment["CKPT_KILL_LOOP_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        print("kill loop (\(mode) saves): seed \(seed); CKPT_KILL_LOOP_SEED=\(seed) replays it")
        var random = CheckpointingTestSupport.SplitMix64(seed: seed &+ (asynchronous ? 1 : 0))
        try withTemporaryFolder { folder in
            let checkpoints = folder + "/demo-run/checkpoints"
            var arguments = [
                "demo-run", "--folder", folder, "--batches", "\(Self.totalBatches)", "--save-every", "2", "--keep", "\(Self.keep)",
                "--ballast", "\(1 << 20)",
            ]
            if asynchronous { arguments.append("--asynchronous") }
            var reference = ReferenceRun(totalBatches: Self.totalBatches)
            var tally = Tally()

            for run in 0..<Self.kills {
                let before = try Self.committed(in: checkpoints)
                tally.noteBefore(before, ledger: Self.ledger(in: checkpoints), temporaries: try Self.temporaries(in: checkpoints))
                let out = Pipe(), err = Pipe()
                let child = try CLI.start(arguments, stdout: out, stderr: err)
                usleep(UInt32(random.next() % Self.window))
                kill(child.processIdentifier, SIGKILL)
                let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                child.waitUntilExit()
                try #require(
                    child.terminationReason == .uncaughtSignal && child.terminationStatus == SIGKILL,
                    "run \(run) (seed \(seed)) ended by itself, status \(child.terminationStatus): \(errors)")
                try Self.checkStart(of: output, before: before, reference: &reference, tally: &tally, run: run, seed: seed)
                tally.kills += 1
            }

            // One clean run to a few batches past the newest checkpoint.
            let before = try Self.committed(in: checkpoints)
            tally.noteBefore(before, ledger: Self.ledger(in: checkpoints), temporaries: try Self.temporaries(in: checkpoints))
            let stop = (before.last?.batch ?? 0) + 5
            let final = try CLI.runProcess(arguments + ["--until", "\(stop)"])
            try #require(final.status == 0, "the clean run failed: \(final.stderr)")
            try Self.checkStart(of: final.stdout, before: before, reference: &reference, tally: &tally, run: Self.kills, seed: seed)
            let finished = try #require(Self.field(after: "finished at batch ", in: final.stdout))
            let parts = finished.split(separator: " ")
            #expect(parts.count == 3 && Int(parts[0]) == stop)
            #expect(parts.last.map(String.init) == (try reference.digest(at: stop)), "the clean run's final state differs (seed \(seed))")

            let after = try Self.committed(in: checkpoints)
            #expect(after.count == Self.keep, "\(after.map(\.name)) (seed \(seed))")
            #expect(try Self.temporaries(in: checkpoints).isEmpty)
            #expect(Self.ledger(in: checkpoints) == after.map(\.name))
            let latest = try FileManager.default.destinationOfSymbolicLink(atPath: checkpoints + "/latest-rank0")
            #expect(latest == after.last?.name)
            print(
                "kill loop (\(mode) saves): \(tally.kills) kills, \(tally.resumes) resumes checked bit-exact, \(tally.freshStarts) fresh starts; "
                    + "\(tally.startsWithStrays) starts found checkpoints the ledger lacked (\(tally.strays) in all) and \(tally.startsWithTemporaries) found temporaries (\(tally.temporaries) in all); "
                    + "checkpoints in the folder before reconciling: at most \(tally.mostBefore), after: at most \(tally.mostAfter); "
                    + "final: \(after.count) checkpoints, newest batch \(after.last?.batch ?? 0), no temporaries")
        }
    }

    /// Checks what a run printed about its start: a resume from the newest checkpoint with the
    /// reference state there, or a fresh start in an empty folder; and the count after
    /// reconciliation.
    static func checkStart(
        of output: String, before: [(name: String, batch: Int)], reference: inout ReferenceRun, tally: inout Tally, run: Int, seed: UInt64
    ) throws {
        if let resumed = field(after: "resumed from ", in: output) {
            // "PATH at batch B digest D"
            let parts = resumed.split(separator: " ")
            try #require(parts.count == 6, "\(resumed)")
            let batch = try #require(Int(parts[3]))
            #expect(URL(fileURLWithPath: String(parts[0])).lastPathComponent == before.last?.name, "run \(run) (seed \(seed)) resumed from \(parts[0]); the newest was \(before.last?.name ?? "none")")
            #expect(batch == before.last?.batch)
            #expect(String(parts[5]) == (try reference.digest(at: batch)), "run \(run) (seed \(seed)) resumed at batch \(batch) with a state that differs")
            tally.resumes += 1
        } else if let fresh = field(after: "fresh start digest ", in: output) {
            #expect(before.isEmpty, "run \(run) (seed \(seed)) started afresh beside \(before.map(\.name))")
            #expect(fresh == (try reference.digest(at: 0)))
            tally.freshStarts += 1
        }
        if let count = field(after: "checkpoints after autoresume: ", in: output).flatMap({ Int($0) }) {
            #expect(count <= keep, "run \(run) (seed \(seed)) kept \(count) checkpoints after reconciling")
            tally.mostAfter = max(tally.mostAfter, count)
        }
    }

    /// The rest of the first line that starts with `prefix`.
    static func field(after prefix: String, in output: String) -> String? {
        output.split(separator: "\n").first { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    /// The committed checkpoints, oldest first.
    static func committed(in folder: String) throws -> [(name: String, batch: Int)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.compactMap { name -> (String, Int)? in
            guard !name.hasPrefix("."), name.hasSuffix(".safetensors"), let range = name.range(of: "-ba") else { return nil }
            return Int(name[range.upperBound...].prefix { $0.isNumber }).map { (name, $0) }
        }.sorted { $0.1 < $1.1 }
    }

    static func temporaries(in folder: String) throws -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasPrefix(".") && ($0.contains(".partial-") || $0.contains(".link-")) }
    }

    /// The saver's ledger, as stored.
    static func ledger(in folder: String) -> [String] {
        guard let data = FileManager.default.contents(atPath: folder + "/.checkpoints-rank0.json"),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return [] }
        return object["checkpoints"] as? [String] ?? []
    }
}

/// The uninterrupted run the resumed ones are compared with: its digest at each batch.
struct ReferenceRun {
    private var run: DemoRun
    private var digests: [Int: String] = [:]

    init(totalBatches: Int) {
        run = DemoRun(seed: 2026, totalBatches: totalBatches)
    }

    mutating func digest(at batch: Int) throws -> String {
        if digests.isEmpty { digests[0] = try run.digest }
        while run.timestamp.batch < batch {
            try run.train(until: run.timestamp.batch + 1, saver: nil)
            digests[run.timestamp.batch] = try run.digest
        }
        return digests[batch] ?? ""
    }
}

/// What the kill loop saw.
struct Tally {
    var kills = 0
    var resumes = 0
    var freshStarts = 0
    var startsWithStrays = 0
    var strays = 0
    var startsWithTemporaries = 0
    var temporaries = 0
    var mostBefore = 0
    var mostAfter = 0

    /// Notes the folder before a start: checkpoints the ledger lacks, temporaries.
    mutating func noteBefore(_ committed: [(name: String, batch: Int)], ledger: [String], temporaries found: [String]) {
        mostBefore = max(mostBefore, committed.count)
        let unlisted = committed.filter { !ledger.contains($0.name) }.count
        if unlisted > 0 { startsWithStrays += 1 }
        strays += unlisted
        if !found.isEmpty { startsWithTemporaries += 1 }
        temporaries += found.count
    }
}
