/// The 512-byte header block of a tar archive (POSIX ustar, with GNU's variants read too).
///
/// Why tar is read and written here rather than through Debian's libarchive (3.6.2), measured on
/// this 2-core machine with a 1.49 GB member in the page cache (a shared machine: figures
/// varied by up to 2x between runs, so ranges over runs):
/// - writing a plain `.tar`, durable: libarchive 1.0-1.5 s, this code 0.9-2.9 s (the same
///   `write`s of the same bytes; the spread is the disk's);
/// - writing `.tar.zst` on 2 threads at level 1: libarchive 1.5-1.8 s for 1,361,625,099 bytes,
///   this code 1.5-2.0 s for 1,361,589,872 (ZstdCodec's window);
/// - reading: libarchive copies every member out (0.2 s for the plain `.tar`, 1.0-1.2 s from
///   `.tar.zst`), while a member of a plain `.tar` here is a slice of the mapping (opening reads
///   only headers) and a `.tar.zst` decompresses into memory and maps in 1.6 s.
/// So no speed to gain, and safety to lose or redo: libarchive's reader hands out links,
/// devices and absolute or `..` paths (its guards apply to extraction to disk only), so every
/// entry would still be vetted here; its Debian build has no liblzo2 (lzop needs its own path
/// anyway), and its gzip, bzip2 and lz4 filters are single-threaded like the libraries used
/// directly. A one-member tar is a few hundred lines with no allocation sized by the input.
enum TarHeader {
    static let blockSize = 512
    /// The largest size the 11 octal digits of the size field hold: 8 GiB - 1.
    static let maximumOctalSize = 0o77777777777
    /// The name field's length; longer names go in a pax header.
    static let nameLength = 100

    /// Member types (`typeflag`).
    enum Kind: UInt8 {
        case file = 0x30  // '0'
        case oldFile = 0x00
        case hardLink = 0x31  // '1'
        case symbolicLink = 0x32  // '2'
        case characterDevice = 0x33  // '3'
        case blockDevice = 0x34  // '4'
        case directory = 0x35  // '5'
        case fifo = 0x36  // '6'
        case contiguousFile = 0x37  // '7'
        case paxGlobal = 0x67  // 'g'
        case pax = 0x78  // 'x'
        case gnuLongName = 0x4C  // 'L'
        case gnuLongLink = 0x4B  // 'K'
    }

    /// A ustar header for a member of `size` bytes named by `name` (at most 100 bytes; longer
    /// names go in a pax header first).
    static func make(name: String, size: Int, kind: Kind, mode: Int = 0o644, mtime: Int) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: blockSize)
        func put(_ text: some Sequence<UInt8>, at offset: Int, length: Int) {
            for (index, byte) in text.prefix(length).enumerated() { block[offset + index] = byte }
        }
        func octal(_ value: Int, at offset: Int, length: Int) {
            // length-1 zero-padded octal digits and a NUL, as POSIX writes them.
            let digits = String(value, radix: 8)
            put(Array((String(repeating: "0", count: max(0, length - 1 - digits.count)) + digits).utf8), at: offset, length: length - 1)
        }
        put(Array(name.utf8), at: 0, length: 100)
        octal(mode, at: 100, length: 8)
        octal(0, at: 108, length: 8)  // uid
        octal(0, at: 116, length: 8)  // gid
        octal(size <= maximumOctalSize ? size : 0, at: 124, length: 12)
        octal(mtime, at: 136, length: 12)
        block[156] = kind.rawValue
        put(Array("ustar".utf8) + [0] + Array("00".utf8), at: 257, length: 8)
        // The checksum is computed with its own field as spaces, then written as 6 octal
        // digits, a NUL and a space.
        put(Array(repeating: UInt8(ascii: " "), count: 8), at: 148, length: 8)
        let sum = block.reduce(0) { $0 + Int($1) }
        let digits = String(sum, radix: 8)
        put(Array((String(repeating: "0", count: 6 - digits.count) + digits).utf8) + [0, UInt8(ascii: " ")], at: 148, length: 8)
        return block
    }

    /// A pax extended header's records (`"%d %s=%s\n"`, the length counting itself).
    static func paxRecords(_ records: [(String, String)]) -> [UInt8] {
        var bytes: [UInt8] = []
        for (key, value) in records {
            let body = " \(key)=\(value)\n"
            let count = body.utf8.count
            // The length counts its own digits: the smallest total that is consistent.
            var total = count + 1
            while total != count + String(total).utf8.count { total += 1 }
            bytes += Array("\(total)\(body)".utf8)
        }
        return bytes
    }

    /// Zero bytes that pad `count` bytes to a whole number of blocks.
    static func padding(after count: Int) -> Int { (blockSize - count % blockSize) % blockSize }

    /// Reads a numeric field: octal ASCII (spaces and NULs around it), or GNU's base-256 for
    /// values too large for octal (first byte 0x80).
    static func number(_ field: UnsafeRawBufferPointer) -> Int? {
        guard let first = field.first else { return nil }
        if first & 0x80 != 0 {
            // Base-256, big-endian; negative values (0xFF) are never valid here.
            guard first == 0x80 else { return nil }
            var value = 0
            for byte in field.dropFirst() {
                guard value <= (Int.max >> 8) else { return nil }
                value = value << 8 | Int(byte)
            }
            return value
        }
        var value = 0
        var seenDigit = false
        var ended = false
        for byte in field {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard !ended, value <= (Int.max >> 3) else { return nil }
                value = value << 3 | Int(byte - UInt8(ascii: "0"))
                seenDigit = true
            case UInt8(ascii: " "), 0:
                if seenDigit { ended = true }
            default:
                return nil
            }
        }
        return value
    }

    /// Whether the header's checksum field matches its bytes (unsigned, or the signed sum some
    /// old tars wrote).
    static func checksumMatches(_ block: UnsafeRawBufferPointer) -> Bool {
        guard let recorded = number(UnsafeRawBufferPointer(rebasing: block[148..<156])) else { return false }
        var unsigned = 0
        var signed = 0
        for (index, byte) in block.enumerated() {
            let value = (148..<156).contains(index) ? UInt8(ascii: " ") : byte
            unsigned += Int(value)
            signed += Int(Int8(bitPattern: value))
        }
        return recorded == unsigned || recorded == signed
    }

    /// A NUL-terminated text field.
    static func text(_ field: UnsafeRawBufferPointer) -> [UInt8] {
        Array(field.prefix { $0 != 0 })
    }
}
