import Checkpointing
import CheckpointToolSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Seconds `body` took.
func time(_ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    try body()
    return (ContinuousClock.now - start).seconds
}

/// The median of some timings (the upper one of an even count).
func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// A table row for a timed step: its name, time and throughput.
func timedRow(_ name: String, _ seconds: Double, bytes: Int) -> [String] {
    [name, String(format: "%.3f s", seconds), Units.rate(bytes: bytes, seconds: seconds)]
}

/// A timed step's row with a fourth cell: how many times faster than `baseline` seconds it
/// is, or empty for no comparison.
func timedRow(_ name: String, _ seconds: Double, bytes: Int, against baseline: Double?) -> [String] {
    timedRow(name, seconds, bytes: bytes) + [baseline.map { String(format: "%.2fx", $0 / seconds) } ?? ""]
}

/// The disk's limit for these bytes: write them from the same memory, then fsync.
func rawWrite(_ tensors: [Tensor], to path: String) throws {
    let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw CommandFailure("cannot create \(path)") }
    defer { close(fd) }
    for tensor in tensors {
        try tensor.withUnsafeBytes { bytes in
            var done = 0
            while done < bytes.count {
                // The same 4 MiB writes as the save, so the comparison is like for like.
                let written = write(fd, bytes.baseAddress! + done, min(bytes.count - done, 4 << 20))
                guard written > 0 else { throw CommandFailure("write to \(path) failed: errno \(errno)") }
                done += written
            }
        }
    }
    guard fsync(fd) == 0 else { throw CommandFailure("fsync of \(path) failed: errno \(errno)") }
}

/// The disk's limit without the page cache: the same bytes copied into an aligned 8 MiB buffer
/// and written with `O_DIRECT`, the last partial block the ordinary way, then fsync; `false`
/// where direct I/O is refused or unknown.
func rawDirectWrite(_ tensors: [Tensor], to path: String) throws -> Bool {
    guard let flag = directFlag else { return false }
    let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw CommandFailure("cannot create \(path)") }
    defer { close(fd) }
    let direct = Glibc.open(path, O_WRONLY | O_CLOEXEC | flag)
    guard direct >= 0 else { return false }
    defer { close(direct) }
    let size = 8 << 20, block = 4096
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: block)
    defer { buffer.deallocate() }
    var filled = 0, offset = 0
    func flush(_ count: Int, through descriptor: Int32) throws {
        guard count > 0 else { return }
        guard pwrite(descriptor, buffer.baseAddress!, count, off_t(offset)) == count else {
            throw CommandFailure("write to \(path) failed: errno \(errno)")
        }
        offset += count
    }
    for tensor in tensors {
        try tensor.withUnsafeBytes { bytes in
            var done = 0
            while done < bytes.count {
                let take = min(size - filled, bytes.count - done)
                (buffer.baseAddress! + filled).copyMemory(from: bytes.baseAddress! + done, byteCount: take)
                (filled, done) = (filled + take, done + take)
                if filled == size {
                    try flush(size, through: direct)
                    filled = 0
                }
            }
        }
    }
    let whole = filled / block * block
    try flush(whole, through: direct)
    if filled > whole {
        buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + whole, byteCount: filled - whole)
        try flush(filled - whole, through: fd)
    }
    guard fsync(fd) == 0 else { throw CommandFailure("fsync of \(path) failed: errno \(errno)") }
    return true
}

/// Linux's `O_DIRECT`, which Swift does not import (glibc defines it for `_GNU_SOURCE` only)
/// and whose value depends on the architecture; `nil` elsewhere.
private var directFlag: Int32? {
    #if os(Linux) && (arch(x86_64) || arch(i386))
    0o40000
    #elseif os(Linux) && (arch(arm64) || arch(arm))
    0o200000
    #else
    nil
    #endif
}

/// Evicts a file's (clean) pages, so the next read comes from the disk.
func dropFromPageCache(_ path: String) {
    let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
    close(fd)
}
