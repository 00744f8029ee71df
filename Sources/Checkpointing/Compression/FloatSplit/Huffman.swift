/// Canonical Huffman codes over bytes, at most 11 bits long, in four interleaved streams: how
/// the float-split codec stores an exponent plane.
///
/// Measured on a trained fp32 model's exponents in 1 MiB chunks: these codes take 2.63 bits a
/// symbol (their entropy is 2.59), where zstd level 1 on the same plane takes 2.91 and decodes
/// several times slower. Four streams let the decoder follow four independent chains of table
/// lookups at once.
///
/// The payload (see the FloatSplitFormat article): `u8 S-1`, the code lengths of symbols
/// `0..<S` as 4-bit nibbles (low nibble first), the byte lengths of streams 0-2 as `u32`, then
/// the four streams. Stream `s` holds symbols `[s*q, min(n, (s+1)*q))`, `q = ceil(n/4)`. Codes
/// are assigned canonically (by length, then symbol, as DEFLATE does) and packed as DEFLATE
/// packs them: into bytes from the least significant bit, each code from its most significant bit.
struct HuffmanCode {
    static let maximumLength = 11
    static let tableSize = 1 << maximumLength
    static let streamCount = 4

    /// Code length per symbol; 0 for a symbol that does not occur.
    private(set) var lengths: [UInt8]

    /// Codes for the symbols counted in `histogram` (256 counts, at least two non-zero).
    init(histogram: UnsafePointer<UInt32>) {
        var symbols: [(count: UInt64, symbol: Int)] = []
        for symbol in 0..<256 where histogram[symbol] > 0 {
            symbols.append((UInt64(histogram[symbol]), symbol))
        }
        lengths = [UInt8](repeating: 0, count: 256)
        precondition(symbols.count >= 2, "a Huffman code needs two symbols")
        symbols.sort { ($0.count, $0.symbol) < ($1.count, $1.symbol) }
        // Two queues over the sorted leaves and the merged nodes (whose weights come out in
        // order): node i's parent always has a larger index, so depths follow in one pass back.
        let leafCount = symbols.count
        let nodeCount = 2 * leafCount - 1
        var weight = [UInt64](repeating: 0, count: nodeCount)
        var parent = [Int](repeating: 0, count: nodeCount)
        for (index, leaf) in symbols.enumerated() { weight[index] = leaf.count }
        var nextLeaf = 0
        var nextNode = leafCount
        for node in leafCount..<nodeCount {
            var children = (0, 0)
            for pick in 0..<2 {
                let takeLeaf = nextLeaf < leafCount && (nextNode >= node || weight[nextLeaf] <= weight[nextNode])
                let child = takeLeaf ? nextLeaf : nextNode
                if takeLeaf { nextLeaf += 1 } else { nextNode += 1 }
                if pick == 0 { children.0 = child } else { children.1 = child }
            }
            weight[node] = weight[children.0] + weight[children.1]
            parent[children.0] = node
            parent[children.1] = node
        }
        var depth = [Int](repeating: 0, count: nodeCount)
        for node in stride(from: nodeCount - 2, through: 0, by: -1) { depth[node] = depth[parent[node]] + 1 }
        var bits = (0..<leafCount).map { depth[$0] }
        Self.limit(&bits, counts: symbols.map(\.count))
        for (index, leaf) in symbols.enumerated() { lengths[leaf.symbol] = UInt8(bits[index]) }
    }

    /// Code lengths read from a payload (already checked).
    private init(lengths: [UInt8]) { self.lengths = lengths }

    /// Caps `lengths` (of leaves sorted by ascending count) at ``maximumLength`` and restores
    /// Kraft's inequality by lengthening the least frequent short codes, then spends any slack
    /// on shortening the most frequent ones.
    private static func limit(_ lengths: inout [Int], counts: [UInt64]) {
        let limit = maximumLength
        guard lengths.contains(where: { $0 > limit }) else { return }
        for index in lengths.indices where lengths[index] > limit { lengths[index] = limit }
        // In units of 2^-limit.
        var kraft = lengths.reduce(0) { $0 + (1 << (limit - $1)) }
        let budget = 1 << limit
        while kraft > budget {
            // The longest code still below the limit, least frequent first (leaves are in
            // ascending count order): lengthening it costs the fewest bits.
            var best = -1
            for index in lengths.indices where lengths[index] < limit {
                if best < 0 || lengths[index] > lengths[best] { best = index }
            }
            kraft -= 1 << (limit - lengths[best] - 1)
            lengths[best] += 1
        }
        for index in lengths.indices.reversed() {
            while lengths[index] > 1, kraft + (1 << (limit - lengths[index])) <= budget {
                kraft += 1 << (limit - lengths[index])
                lengths[index] -= 1
            }
        }
    }

    /// The bits the symbols counted in `histogram` take with this code.
    func payloadBits(histogram: UnsafePointer<UInt32>) -> Int {
        var total = 0
        for symbol in 0..<256 { total += Int(histogram[symbol]) * Int(lengths[symbol]) }
        return total
    }

    /// Symbols covered by the stored lengths: up to the last one that occurs.
    private var storedSymbolCount: Int { (lengths.lastIndex { $0 != 0 } ?? 0) + 1 }

    /// An upper bound on the payload for `histogram` (the streams' last bytes rounded up).
    func payloadBound(histogram: UnsafePointer<UInt32>) -> Int {
        1 + (storedSymbolCount + 1) / 2 + 4 * (Self.streamCount - 1) + (payloadBits(histogram: histogram) + 7) / 8 + Self.streamCount
    }

    /// Canonical codes, bit-reversed for LSB-first packing: `code | length << 16`.
    private func packedCodes() -> [UInt32] {
        var countOfLength = [Int](repeating: 0, count: Self.maximumLength + 1)
        for length in lengths where length > 0 { countOfLength[Int(length)] += 1 }
        var next = [UInt32](repeating: 0, count: Self.maximumLength + 2)
        var code: UInt32 = 0
        for length in 1...Self.maximumLength {
            code = (code + UInt32(countOfLength[length - 1])) << 1
            next[length] = code
        }
        var codes = [UInt32](repeating: 0, count: 256)
        for symbol in 0..<256 {
            let length = Int(lengths[symbol])
            guard length > 0 else { continue }
            let canonical = next[length]
            next[length] += 1
            var reversed: UInt32 = 0
            for bit in 0..<length where canonical & (1 << bit) != 0 { reversed |= 1 << (length - 1 - bit) }
            codes[symbol] = reversed | UInt32(length) << 16
        }
        return codes
    }

    /// Writes the payload for `symbols` to `output` and returns its length; `capacity`, the
    /// bytes writable at `output`, is at least ``payloadBound(histogram:)`` of their histogram.
    func encode(_ symbols: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let stored = storedSymbolCount
        var cursor = output
        cursor.storeBytes(of: UInt8(stored - 1), as: UInt8.self)
        cursor += 1
        for pair in stride(from: 0, to: stored, by: 2) {
            let high = pair + 1 < stored ? lengths[pair + 1] : 0
            cursor.storeBytes(of: lengths[pair] | high << 4, as: UInt8.self)
            cursor += 1
        }
        let lengthsAt = cursor
        cursor += 4 * (Self.streamCount - 1)
        let codes = packedCodes()
        let count = symbols.count
        let quarter = (count + Self.streamCount - 1) / Self.streamCount
        // The last byte a whole 8-byte store may start at.
        let lastStore = output + capacity - 8
        codes.withUnsafeBufferPointer { codes in
            let codes = codes.baseAddress.unsafelyUnwrapped
            let input = symbols.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) }
            for stream in 0..<Self.streamCount {
                let start = min(count, stream * quarter)
                let end = min(count, start + quarter)
                let streamStart = cursor
                var accumulator: UInt64 = 0
                var pending = 0
                var index = start
                // Five codes of at most 11 bits on top of the at most 7 bits a flush leaves
                // fit one 64-bit word, which is stored whole; its complete bytes are kept and
                // the partial last one stays in the word. No test per code for a full word:
                // measured on a trained fp32 model, the encoder's share of a save's CPU fell
                // from 23% to 13%, the payload the same bit for bit.
                while index &+ 5 <= end, cursor <= lastStore {
                    for offset in 0..<5 {
                        let code = codes[Int(input.unsafelyUnwrapped[index &+ offset])]
                        accumulator |= UInt64(code & 0xFFFF) &<< UInt64(pending)
                        pending &+= Int(code &>> 16)
                    }
                    cursor.storeBytes(of: accumulator.littleEndian, as: UInt64.self)
                    let whole = pending & ~7
                    cursor += whole &>> 3
                    accumulator &>>= UInt64(whole)
                    pending &= 7
                    index &+= 5
                }
                while index < end {
                    let code = codes[Int(input.unsafelyUnwrapped[index])]
                    accumulator |= UInt64(code & 0xFFFF) &<< UInt64(pending)
                    pending &+= Int(code &>> 16)
                    while pending >= 8 {
                        cursor.storeBytes(of: UInt8(truncatingIfNeeded: accumulator), as: UInt8.self)
                        cursor += 1
                        accumulator &>>= 8
                        pending &-= 8
                    }
                    index &+= 1
                }
                if pending > 0 {
                    cursor.storeBytes(of: UInt8(truncatingIfNeeded: accumulator), as: UInt8.self)
                    cursor += 1
                }
                if stream < Self.streamCount - 1 {
                    (lengthsAt + 4 * stream).storeBytes(of: UInt32(cursor - streamStart).littleEndian, as: UInt32.self)
                }
            }
        }
        return cursor - output
    }

    /// Decodes a payload of `count` symbols into `output`; `false` when the payload is not a
    /// valid one (bad lengths, streams that do not add up, a code that is not assigned).
    static func decode(_ payload: UnsafeRawBufferPointer, count: Int, into output: UnsafeMutablePointer<UInt8>) -> Bool {
        guard let base = payload.baseAddress, payload.count >= 1 else { return false }
        let stored = Int(payload[0]) + 1
        let tableBytes = (stored + 1) / 2
        let headerBytes = 1 + tableBytes + 4 * (streamCount - 1)
        guard payload.count >= headerBytes else { return false }
        var lengths = [UInt8](repeating: 0, count: 256)
        for symbol in 0..<stored {
            let byte = payload[1 + symbol / 2]
            lengths[symbol] = symbol % 2 == 0 ? byte & 0x0F : byte >> 4
            guard lengths[symbol] <= maximumLength else { return false }
        }
        guard let table = decodingTable(lengths) else { return false }
        var starts = [Int](repeating: 0, count: streamCount + 1)
        starts[0] = headerBytes
        for stream in 0..<(streamCount - 1) {
            let length = Int(UInt32(littleEndian: (base + 1 + tableBytes + 4 * stream).loadUnaligned(as: UInt32.self)))
            starts[stream + 1] = starts[stream] + length
            guard starts[stream + 1] <= payload.count else { return false }
        }
        starts[streamCount] = payload.count
        let quarter = (count + streamCount - 1) / streamCount
        let multi = multiSymbolTable(table)
        return table.withUnsafeBufferPointer { table in
            multi.withUnsafeBufferPointer { multi in
                func stream(_ number: Int) -> BitStream {
                    BitStream(
                        base: base + starts[number], length: starts[number + 1] - starts[number],
                        output: output + min(count, number * quarter),
                        count: min(count, number * quarter + quarter) - min(count, number * quarter))
                }
                return decodeStreams(
                    stream(0), stream(1), stream(2), stream(3), table: table.baseAddress!, multi: multi.baseAddress!)
            }
        }
    }

    /// The lookup table: entry `i` is the symbol whose code is the low bits of `i`, with its
    /// length in bits 8-11, or ``invalidEntry`` for bits that begin no code.
    static func decodingTable(_ lengths: [UInt8]) -> [UInt16]? {
        var kraft = 0
        for length in lengths where length > 0 { kraft += 1 << (maximumLength - Int(length)) }
        guard kraft <= tableSize, kraft > 0 else { return nil }
        let code = HuffmanCode(lengths: lengths)
        let codes = code.packedCodes()
        var table = [UInt16](repeating: invalidEntry, count: tableSize)
        for symbol in 0..<256 where lengths[symbol] > 0 {
            let length = Int(lengths[symbol])
            let entry = UInt16(symbol) | UInt16(length) << 8
            var index = Int(codes[symbol] & 0xFFFF)
            while index < tableSize {
                table[index] = entry
                index += 1 << length
            }
        }
        return table
    }

    /// Marks bits that begin no code (possible only in a code with Kraft sum below 1); it
    /// consumes one bit, so decoding stays bounded, and fails the payload.
    static let invalidEntry: UInt16 = 0x8000 | 1 << 8

    /// Symbols a ``multiSymbolTable(_:)`` entry decodes at most.
    static let symbolsPerEntry = 4
    /// The flag of a multi-symbol entry whose first symbol is ``invalidEntry``.
    static let invalidMultiEntry: UInt64 = 1 << 63

    /// The lookup table that decodes up to ``symbolsPerEntry`` symbols at once: entry `i` holds
    /// the symbols whose codes follow one another in the low ``maximumLength`` bits of `i` (in
    /// bytes 0-3), their number (byte 4) and their bits (byte 5), and ``invalidMultiEntry`` when
    /// `i` begins no code.
    ///
    /// Exponents take 2-3 bits a symbol, so one lookup yields 3-4 of them where the
    /// one-symbol table yields one: the lookups, a chain each of them waits on, are what
    /// decoding costs.
    static func multiSymbolTable(_ table: [UInt16]) -> [UInt64] {
        var multi = [UInt64](repeating: 0, count: tableSize)
        for index in 0..<tableSize {
            var symbols: UInt64 = 0
            var decoded = 0
            var bits = 0
            var flags: UInt64 = 0
            while decoded < symbolsPerEntry {
                let entry = table[(index >> bits) & (tableSize - 1)]
                let length = Int((entry >> 8) & 0x0F)
                if entry & 0x8000 != 0 {
                    // Only as the first symbol: later ones are left to the next lookup, which reports them.
                    if decoded == 0 { (symbols, decoded, bits, flags) = (0, 1, 1, invalidMultiEntry) }
                    break
                }
                guard bits + length <= maximumLength else { break }
                symbols |= UInt64(entry & 0xFF) << UInt64(8 * decoded)
                decoded += 1
                bits += length
            }
            multi[index] = symbols | UInt64(decoded) << 32 | UInt64(bits) << 40 | flags
        }
        return multi
    }

    /// One stream being decoded.
    struct BitStream {
        let base: UnsafeRawPointer
        let length: Int
        let output: UnsafeMutablePointer<UInt8>
        let count: Int
        /// Bits consumed.
        var position = 0
        /// Symbols decoded.
        var done = 0

        init(base: UnsafeRawPointer, length: Int, output: UnsafeMutablePointer<UInt8>, count: Int) {
            self.base = base
            self.length = length
            self.output = output
            self.count = count
        }

        /// Lookups of one 64-bit load: 5 codes of at most 11 bits fit in the 57 bits left after the shift.
        static let lookupsPerLoad = 5
        /// The most bytes and symbols one ``decodeMany(_:)`` advances by.
        static let bytesPerLoad = (lookupsPerLoad * HuffmanCode.maximumLength + 7) / 8
        static let symbolsPerLoad = lookupsPerLoad * HuffmanCode.symbolsPerEntry

        /// How many ``decodeMany(_:)`` calls in a row can load 8 bytes within the stream and
        /// store 4 bytes within the output, without checking in between.
        @inline(__always) var safeLoads: Int {
            let bytesLeft = length &- 8 &- (position &>> 3)
            let symbolsLeft = count &- Self.symbolsPerLoad &- done
            guard bytesLeft >= 0, symbolsLeft >= 0 else { return 0 }
            return Swift.min(bytesLeft / Self.bytesPerLoad, symbolsLeft / Self.symbolsPerLoad) &+ 1
        }

        /// 5 lookups of the multi-symbol table from one 64-bit load, each storing 4 bytes (of
        /// which the entry's count are symbols, the rest overwritten by the next store);
        /// returns the OR of the entries used.
        @inline(__always) mutating func decodeMany(_ table: UnsafePointer<UInt64>) -> UInt64 {
            var word = UInt64(littleEndian: (base + (position &>> 3)).loadUnaligned(as: UInt64.self)) &>> UInt64(position & 7)
            var seen: UInt64 = 0
            var consumed = 0
            var at = done
            let raw = UnsafeMutableRawPointer(output)
            for _ in 0..<Self.lookupsPerLoad {
                let entry = table[Int(truncatingIfNeeded: word & UInt64(HuffmanCode.tableSize - 1))]
                raw.storeBytes(of: UInt32(truncatingIfNeeded: entry).littleEndian, toByteOffset: at, as: UInt32.self)
                let bits = Int(truncatingIfNeeded: (entry &>> 40) & 0xFF)
                at &+= Int(truncatingIfNeeded: (entry &>> 32) & 0xFF)
                word &>>= UInt64(truncatingIfNeeded: bits)
                consumed &+= bits
                seen |= entry
            }
            position &+= consumed
            done = at
            return seen
        }

        /// One symbol, reading byte by byte (no load past the stream's end).
        mutating func decodeOne(_ table: UnsafePointer<UInt16>) -> UInt16 {
            var word: UInt64 = 0
            let first = position >> 3
            for byte in 0..<3 where first + byte < length {
                word |= UInt64(base.load(fromByteOffset: first + byte, as: UInt8.self)) << UInt64(8 * byte)
            }
            word >>= UInt64(position & 7)
            let entry = table[Int(truncatingIfNeeded: word & UInt64(HuffmanCode.tableSize - 1))]
            output[done] = UInt8(truncatingIfNeeded: entry)
            position += Int(truncatingIfNeeded: (entry >> 8) & 0x0F)
            done += 1
            return entry
        }

        /// Whether the stream was used exactly: every symbol decoded within it, no whole byte left over.
        var endsCleanly: Bool { position <= 8 * length && (position + 7) >> 3 == length }
    }

    /// Decodes the four streams in lockstep while all can take the fast path, then each to its end.
    private static func decodeStreams(
        _ s0: BitStream, _ s1: BitStream, _ s2: BitStream, _ s3: BitStream, table: UnsafePointer<UInt16>,
        multi: UnsafePointer<UInt64>
    ) -> Bool {
        var (s0, s1, s2, s3) = (s0, s1, s2, s3)
        var seen: UInt64 = 0
        while true {
            let loads = min(s0.safeLoads, s1.safeLoads, s2.safeLoads, s3.safeLoads)
            guard loads > 0 else { break }
            for _ in 0..<loads {
                seen |= s0.decodeMany(multi)
                seen |= s1.decodeMany(multi)
                seen |= s2.decodeMany(multi)
                seen |= s3.decodeMany(multi)
            }
        }
        var valid = seen & invalidMultiEntry == 0
        valid = finish(&s0, table, multi) && valid
        valid = finish(&s1, table, multi) && valid
        valid = finish(&s2, table, multi) && valid
        valid = finish(&s3, table, multi) && valid
        return valid && s0.endsCleanly && s1.endsCleanly && s2.endsCleanly && s3.endsCleanly
    }

    /// Decodes the rest of one stream; `false` when it met bits that begin no code or ran out.
    private static func finish(_ stream: inout BitStream, _ table: UnsafePointer<UInt16>, _ multi: UnsafePointer<UInt64>) -> Bool {
        var seen: UInt16 = 0
        var seenMulti: UInt64 = 0
        while stream.safeLoads > 0 { seenMulti |= stream.decodeMany(multi) }
        // A damaged stream runs out of bits early: stop once it is past its end.
        while stream.done < stream.count && stream.position <= 8 * stream.length { seen |= stream.decodeOne(table) }
        return stream.done == stream.count && seen & 0x8000 == 0 && seenMulti & invalidMultiEntry == 0
    }
}
