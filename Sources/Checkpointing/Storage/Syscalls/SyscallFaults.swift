import Synchronization

/// Makes chosen system calls fail, so tests can prove what a full disk, a failing device or an
/// interrupted call does to a save or a load. For the package's tests only: not part of the
/// library's public API.
///
/// A test runs its code inside ``run(under:failing:_:)``, which records every call
/// ``Syscall`` makes on a path inside `scope` (the test's own temporary folder) and fails
/// those its faults choose, with the errno they give: "the 3rd `write` fails with `ENOSPC`",
/// "every `fsync` of the folder fails with `EIO`". Calls on other paths are neither counted nor
/// failed, so tests that run at the same time, in other folders, never see each other's faults;
/// the calls of the worker threads a save starts are caught like the calling thread's.
///
/// When no test is running one, each system call pays one atomic load for it.
package enum SyscallFaults {
    /// Which calls fail, and how.
    package struct Fault: Sendable {
        package var kind: Syscall.Kind
        package var errno: Int32
        /// Chooses calls by their number among the calls this fault matches, counted from 1.
        package var calls: @Sendable (Int) -> Bool
        /// Which paths the fault concerns, within the scope of the run.
        package var paths: @Sendable (String) -> Bool

        /// The `call`-th call of `kind` (counted from 1, among those on matching paths) fails
        /// with `errno`.
        package init(
            _ kind: Syscall.Kind, call: Int, errno: Int32, paths: @escaping @Sendable (String) -> Bool = { _ in true }
        ) {
            self.init(kind, calls: { $0 == call }, errno: errno, paths: paths)
        }

        /// The calls of `kind` whose number `calls` accepts fail with `errno`.
        package init(
            _ kind: Syscall.Kind, calls: @escaping @Sendable (Int) -> Bool, errno: Int32,
            paths: @escaping @Sendable (String) -> Bool = { _ in true }
        ) {
            self.kind = kind
            self.errno = errno
            self.calls = calls
            self.paths = paths
        }
    }

    /// One call seen during a run.
    package struct Call: Sendable, Hashable, CustomStringConvertible {
        package var kind: Syscall.Kind
        package var path: String
        /// The errno injected into it, or `nil` when it went to the system.
        package var injected: Int32?

        package var description: String { "\(kind)(\(path))" + (injected.map { " -> errno \($0)" } ?? "") }
    }

    /// The calls of a run, in the order they were made (worker threads interleave).
    package struct Trace: Sendable {
        package var calls: [Call]

        /// How many calls of `kind` were made, failed ones included.
        package func count(_ kind: Syscall.Kind) -> Int { calls.count { $0.kind == kind } }

        /// The calls that were failed.
        package var injected: [Call] { calls.filter { $0.injected != nil } }
    }

    /// Runs `body` with `faults` injected into the calls it makes on paths inside `scope` (a
    /// folder, or a file), and returns what `body` returned or threw and every call on those
    /// paths.
    package static func run<R>(
        under scope: String, failing faults: [Fault] = [], _ body: () throws -> R
    ) -> (result: Result<R, any Error>, trace: Trace) {
        let id = sessions.withLock { state in
            state.nextID += 1
            state.sessions.append(Session(id: state.nextID, scope: scope, faults: faults))
            return state.nextID
        }
        active.add(1, ordering: .sequentiallyConsistent)
        let result = Result { try body() }
        active.subtract(1, ordering: .sequentiallyConsistent)
        let session = sessions.withLock { state in
            state.sessions.remove(at: state.sessions.firstIndex { $0.id == id }!)
        }
        return (result, Trace(calls: session.calls))
    }

    /// Whether any run is under way: the only cost of the seam to calls outside tests.
    @inline(__always)
    static var isActive: Bool { active.load(ordering: .acquiring) > 0 }

    /// Records a call in every run whose scope holds `path`, and returns the errno to fail it
    /// with, if any run's faults choose it.
    static func intercept(_ kind: Syscall.Kind, path: String) -> Int32? {
        sessions.withLock { state in
            var code: Int32?
            for index in state.sessions.indices where state.sessions[index].covers(path) {
                let injected = state.sessions[index].record(kind, path: path)
                code = code ?? injected
            }
            return code
        }
    }

    private struct Session {
        let id: Int
        let folder: String
        let faults: [Fault]
        /// For each fault, the calls it has matched so far.
        var matched: [Int]
        var calls: [Call] = []

        init(id: Int, scope: String, faults: [Fault]) {
            self.id = id
            var folder = scope
            while folder.count > 1 && folder.hasSuffix("/") { folder.removeLast() }
            self.folder = folder
            self.faults = faults
            matched = Array(repeating: 0, count: faults.count)
        }

        func covers(_ path: String) -> Bool {
            path == folder || path.hasPrefix(folder == "/" ? folder : folder + "/")
        }

        mutating func record(_ kind: Syscall.Kind, path: String) -> Int32? {
            var code: Int32?
            for index in faults.indices where faults[index].kind == kind && faults[index].paths(path) {
                matched[index] += 1
                if code == nil && faults[index].calls(matched[index]) { code = faults[index].errno }
            }
            calls.append(Call(kind: kind, path: path, injected: code))
            return code
        }
    }

    private struct State {
        var sessions: [Session] = []
        var nextID = 0
    }

    private static let sessions = Mutex(State())
    private static let active = Atomic<Int>(0)
}
