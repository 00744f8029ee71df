import CheckpointingTestSupport
import Foundation
import Synchronization
import Testing

@testable import Checkpointing

#if canImport(Glibc)
import Glibc
#endif

/// SIGTERMs the test's own handler has seen.
private let testHandlerCalls = Atomic<Int>(0)

/// The program's own SIGTERM handler, which a saver must keep calling and give back.
private let testHandler: @convention(c) (Int32) -> Void = { _ in
    testHandlerCalls.add(1, ordering: .relaxed)
}

/// A saver changes the process's SIGTERM handling only when asked, chains to the handler that
/// was there, and the last saver to end gives it back. Serialized: the disposition is the
/// process's.
@Suite(.serialized) struct TerminationSignalTests {
    static func current() -> sigaction {
        var action = sigaction()
        sigaction(SIGTERM, nil, &action)
        return action
    }

    static func address(_ action: sigaction) -> UInt {
        action.__sigaction_handler.sa_handler.map { UInt(bitPattern: unsafeBitCast($0, to: UnsafeRawPointer.self)) } ?? 0
    }

    static var testHandlerAddress: UInt { UInt(bitPattern: unsafeBitCast(testHandler, to: UnsafeRawPointer.self)) }

    /// Installs `handler` (nil: SIG_DFL) for the body, then puts back what was there.
    static func withDisposition<R>(_ handler: (@convention(c) (Int32) -> Void)?, _ body: () throws -> R) throws -> R {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = handler
        sigemptyset(&action.sa_mask)
        var saved = sigaction()
        try #require(sigaction(SIGTERM, &action, &saved) == 0)
        defer { sigaction(SIGTERM, &saved, nil) }
        return try body()
    }

    /// Sends SIGTERM to a thread that accepts it (the test's own thread, a Dispatch worker,
    /// blocks it) and returns once the handlers have run.
    static func deliverSIGTERM() {
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGTERM)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            raise(SIGTERM)
            done.signal()
        }
        thread.start()
        done.wait()
    }

    static func options(_ folder: String, on: Bool = true) -> CheckpointSaver.Options {
        CheckpointSaver.Options(folder: folder, filename: "ba{batch}.safetensors", saveInterval: "100ba", saveOnTermination: on)
    }

    @Test func aSaverLeavesSignalsAloneUnlessAsked() throws {
        try withTemporaryFolder { folder in
            try Self.withDisposition(testHandler) {
                let saver = try CheckpointSaver(options: .init(folder: folder))
                try saver.fitStart(SaverTests.state(batch: 0))
                #expect(Self.address(Self.current()) == Self.testHandlerAddress)
                #expect(!TerminationSignal.isOurs(Self.current()))
            }
        }
    }

    /// The saver's handler records the signal and calls the program's; the next batch end
    /// saves and throws `.terminated`, and from then on SIGTERM is the program's again.
    @Test func theHandlerChainsAndIsGivenBackAfterTheSave() throws {
        try withTemporaryFolder { folder in
            try Self.withDisposition(testHandler) {
                let saver = try CheckpointSaver(options: Self.options(folder))
                #expect(TerminationSignal.isOurs(Self.current()))
                try saver.fitStart(SaverTests.state(batch: 0))
                let before = testHandlerCalls.load(ordering: .relaxed)
                Self.deliverSIGTERM()
                #expect(testHandlerCalls.load(ordering: .relaxed) == before + 1)
                let error = #expect(throws: CheckpointError.self) { try saver.batchEnd(SaverTests.state(batch: 3, value: 3)) }
                #expect(error?.code == .terminated)
                #expect(try loadCheckpoint(folder + "/ba3.safetensors").model == SaverTests.state(batch: 3, value: 3).model)
                #expect(Self.address(Self.current()) == Self.testHandlerAddress)
                #expect(!TerminationSignal.isPending)
            }
        }
    }

    /// Two savers share the handler: the first to end leaves it, the last gives SIGTERM back,
    /// whether it ends with fitEnd, close() or its release.
    @Test func theLastSaverToEndRestoresThePreviousHandler() throws {
        try withTemporaryFolder { folder in
            try Self.withDisposition(testHandler) {
                var first: CheckpointSaver? = try CheckpointSaver(options: Self.options(folder + "/a"))
                let second = try CheckpointSaver(options: Self.options(folder + "/b"))
                try first?.fitStart(SaverTests.state(batch: 0))
                try second.fitStart(SaverTests.state(batch: 0))
                try second.fitEnd(SaverTests.state(batch: 1))
                #expect(TerminationSignal.isOurs(Self.current()))
                first = nil
                #expect(Self.address(Self.current()) == Self.testHandlerAddress)

                // A saver started again takes the handler again; close() gives it back.
                var state = SaverTests.state(batch: 0)
                try second.autoresume(into: &state)
                #expect(TerminationSignal.isOurs(Self.current()))
                try second.close()
                #expect(Self.address(Self.current()) == Self.testHandlerAddress)
                try second.close()
                #expect(Self.address(Self.current()) == Self.testHandlerAddress)
            }
        }
    }

    /// A handler installed over the saver's by the program is not overwritten when the saver
    /// ends.
    @Test func aHandlerInstalledLaterIsLeftInPlace() throws {
        try withTemporaryFolder { folder in
            try Self.withDisposition(nil) {
                let saver = try CheckpointSaver(options: Self.options(folder))
                #expect(TerminationSignal.isOurs(Self.current()))
                var mine = sigaction()
                mine.__sigaction_handler.sa_handler = testHandler
                sigemptyset(&mine.sa_mask)
                sigaction(SIGTERM, &mine, nil)
                try saver.close()
                #expect(Self.address(Self.current()) == Self.testHandlerAddress)
            }
        }
    }

    /// With the default disposition before it, a SIGTERM no saver acted on is not swallowed:
    /// when the last saver ends, the default disposition comes back and the signal is sent
    /// again, so the process ends as it would have without the saver. (In a child process.)
    @Test func aSignalNoSaverActedOnStillEndsTheProcess() async {
        await #expect(processExitsWith: .signal(SIGTERM)) {
            signal(SIGTERM, SIG_DFL)
            let saver = try CheckpointSaver(options: TerminationSignalTests.options("/nonexistent-ckpt-exit-test"))
            try saver.fitStart(SaverTests.state(batch: 0))
            kill(getpid(), SIGTERM)
            let deadline = ContinuousClock.now + .seconds(20)
            while !TerminationSignal.isPending && ContinuousClock.now < deadline { usleep(1000) }
            // Held back so far; giving SIGTERM back ends the process.
            try saver.close()
            usleep(5_000_000)
        }
    }
}
