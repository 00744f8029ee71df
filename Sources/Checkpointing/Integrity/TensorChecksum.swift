internal import CXXHash

/// The per-tensor checksum of the native format: XXH3-64 (Debian's libxxhash).
///
/// Why XXH3-64: it is computed in the same pass as the write, so it must cost far less than
/// the write itself. Measured on this project's 2-core x86-64 machines over 1.5 GB held in
/// memory: XXH3-64 hashes at about 20 GB/s per core (0.08 s for the bench state), while the
/// durable write of the same bytes takes over a second; a table-driven CRC32C without SSE4.2
/// runs near 1-2 GB/s and would have added most of a second. SHA-256 (for `ckpt inspect
/// --hashes`) runs near 1.5 GB/s and is kept for interop, not for every save.
/// 64 bits catch corruption (not tampering) with a miss rate of 2^-64 per tensor.
struct TensorChecksum: Sendable {
    /// The recorded form: 16 lowercase hex digits (fixed width, which the writer relies on).
    static let width = 16
    /// The algorithm's name in the file's metadata.
    static let algorithm = "xxh3-64"

    /// The checksum of `bytes`.
    static func of(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        XXH3_64bits(bytes.baseAddress, bytes.count)
    }

    /// The checksum of `bytes` in recorded form.
    static func hex(of bytes: UnsafeRawBufferPointer) -> String { hex(of(bytes)) }

    /// A checksum in recorded form.
    static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: width - digits.count) + digits
    }
}

/// XXH3-64 over bytes that arrive in pieces, so the writer can hash each chunk right before
/// writing it, while it is still in cache.
final class StreamingChecksum {
    private let state: OpaquePointer

    init() {
        // XXH3_createState only fails when malloc does.
        state = XXH3_createState()!
        XXH3_64bits_reset(state)
    }

    func reset() { XXH3_64bits_reset(state) }

    func update(_ bytes: UnsafeRawBufferPointer) {
        XXH3_64bits_update(state, bytes.baseAddress, bytes.count)
    }

    var value: UInt64 { XXH3_64bits_digest(state) }

    deinit { XXH3_freeState(state) }
}
