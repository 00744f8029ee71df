import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Anonymous mappings that outlive the decoded checkpoint they held, so the next one decodes
/// into pages the kernel has already handed out.
///
/// The kernel's cost of fresh anonymous memory (a page fault, a zeroed page, a page-table entry
/// for every 4 KB; 0.5 s a GB on this project's 2-core VM) is more than decoding a float-split
/// stream takes. A process that loads checkpoints again and again (an evaluation loop, a job
/// that resumes in-process) pays it once: a mapping given back is kept, its pages released with
/// `MADV_FREE`, which lets the kernel take them whenever it needs memory yet leaves them mapped
/// otherwise, so writing them again costs no fault. The kernel treats them as free: they are the
/// first it reclaims and a memory limit is never hit because of them, though until reclaimed
/// they show in the process's resident size.
///
/// What a reused mapping held before is never read: the float-split archive writes every chunk
/// (or zeros, for a chunk that fails) before a reader can see it.
package final class ReusedMemory: Sendable {
    /// The process's mappings, which every decode uses.
    package static let shared = ReusedMemory()

    /// Where a mapping made now is taken from and given back to: ``shared``, unless a test
    /// gives one of its own.
    @TaskLocal static var current = shared

    /// The mappings kept, the most recently given: a loop that holds one checkpoint while it
    /// loads the next needs two.
    static let maximumKept = 2

    init() {}

    private struct Mapping: @unchecked Sendable {
        var base: UnsafeMutableRawPointer
        var size: Int
    }

    private let kept = Mutex<[Mapping]>([])

    private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// `size` bytes rounded up to whole pages, as a mapping of them takes.
    static func mappedSize(_ size: Int) -> Int { (size + pageSize - 1) / pageSize * pageSize }

    /// `size` (above 0) bytes of writable memory: a kept mapping, its tail beyond `size` unmapped,
    /// when one is large enough (`reused`), else a new one, zeroed. The contents of a kept
    /// mapping are whatever was last written to it, or zeros.
    func take(size: Int, path: String) throws(CheckpointError) -> (base: UnsafeMutableRawPointer, reused: Bool) {
        let needed = Self.mappedSize(size)
        let reused = kept.withLock { kept -> Mapping? in
            let fits = kept.indices.filter { kept[$0].size >= needed }
            guard let best = fits.min(by: { kept[$0].size < kept[$1].size }) else { return nil }
            return kept.remove(at: best)
        }
        if let reused {
            if reused.size > needed { Syscall.munmap(reused.base + needed, reused.size - needed, path: path) }
            return (reused.base, true)
        }
        return (try SystemCalls.mapMemory(size: size, path: path), false)
    }

    /// Keeps the mapping of `size` bytes at `base` (from ``take(size:path:)``) for the next
    /// ``take(size:path:)``, or unmaps it when its pages cannot be released or
    /// ``maximumKept`` are kept already (then the oldest goes).
    func give(_ base: UnsafeMutableRawPointer, size: Int, path: String) {
        let mapping = Mapping(base: base, size: Self.mappedSize(size))
        guard Syscall.madvise(base, mapping.size, MADV_FREE, path: path) == 0 else {
            Syscall.munmap(base, mapping.size, path: path)
            return
        }
        let dropped = kept.withLock { kept -> Mapping? in
            kept.append(mapping)
            return kept.count > Self.maximumKept ? kept.removeFirst() : nil
        }
        if let dropped { Syscall.munmap(dropped.base, dropped.size, path: path) }
    }

    /// Unmaps every kept mapping, so the next decode gets fresh memory (the benchmark's first
    /// decode; a process that is done loading).
    package func releaseAll() {
        let all = kept.withLock { kept in
            defer { kept = [] }
            return kept
        }
        for mapping in all { Syscall.munmap(mapping.base, mapping.size, path: "kept decode memory") }
    }

    deinit { releaseAll() }

    /// The sizes of the mappings kept, oldest first, for tests.
    var keptSizes: [Int] { kept.withLock { $0.map(\.size) } }
}
