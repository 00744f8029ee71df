import Foundation
import Testing

@testable import Checkpointing

/// The float-split codec's Huffman coding of exponent planes: the decoder's multi-symbol table
/// decodes exactly what one symbol at a time would, whatever the code's shape.
@Suite struct HuffmanCodeTests {
    /// A generator with a fixed seed, so a failure reproduces.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// `count` symbols drawn from `weights` (symbol `i` with weight `weights[i]`).
    static func symbols(count: Int, weights: [Double], seed: UInt64) -> [UInt8] {
        var generator = Generator(state: seed)
        let total = weights.reduce(0, +)
        var cumulative: [Double] = []
        var sum = 0.0
        for weight in weights {
            sum += weight / total
            cumulative.append(sum)
        }
        return (0..<count).map { _ in
            let u = Double.random(in: 0..<1, using: &generator)
            return UInt8(cumulative.firstIndex { u < $0 } ?? weights.count - 1)
        }
    }

    /// The guard byte one past the payload bound, which the encoder must never write.
    static let guardByte: UInt8 = 0x5A

    /// `symbols` coded with the code their histogram makes: the payload buffer (its bound, then
    /// ``guardByte``) and the length written.
    static func encode(_ symbols: [UInt8]) -> (code: HuffmanCode, payload: [UInt8], length: Int, bound: Int) {
        let histogram = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
        defer { histogram.deallocate() }
        histogram.initialize(repeating: 0, count: 256)
        for symbol in symbols { histogram[Int(symbol)] += 1 }
        let code = HuffmanCode(histogram: histogram)
        let bound = code.payloadBound(histogram: histogram)
        var payload = [UInt8](repeating: 0, count: bound + 1)
        payload[bound] = guardByte
        let length = symbols.withUnsafeBytes { input in
            payload.withUnsafeMutableBytes { code.encode(input, into: $0.baseAddress!, capacity: bound) }
        }
        return (code, payload, length, bound)
    }

    static func roundTrip(_ symbols: [UInt8]) -> [UInt8]? {
        let (_, payload, length, _) = encode(symbols)
        var output = [UInt8](repeating: 0xAA, count: symbols.count)
        let valid = payload.withUnsafeBytes { payload in
            output.withUnsafeMutableBufferPointer { output in
                HuffmanCode.decode(UnsafeRawBufferPointer(rebasing: payload[0..<length]), count: symbols.count, into: output.baseAddress!)
            }
        }
        return valid ? output : nil
    }

    static let shapes: [(name: String, weights: [Double])] = [
        // Trained weights' exponents: a few values around 2^-5, about 2.6 bits each.
        ("exponent-like", (0..<256).map { symbol in symbol >= 100 && symbol <= 127 ? pow(0.55, Double(abs(symbol - 121))) : 0 }),
        ("two symbols", [0.9, 0.1]),
        ("uniform bytes", [Double](repeating: 1, count: 256)),
        // Fibonacci-like weights make the longest codes hit the 11-bit limit.
        ("limited lengths", (0..<40).map { pow(1.618, Double($0)) }),
        ("one frequent symbol", [1000] + [Double](repeating: 1, count: 30)),
    ]

    @Test("every code shape and length decodes to the symbols encoded", arguments: [1, 2, 3, 19, 20, 21, 79, 80, 81, 1000, 1 << 18])
    func roundTrips(count: Int) throws {
        for (number, shape) in Self.shapes.enumerated() {
            var symbols = Self.symbols(count: count, weights: shape.weights, seed: UInt64(count * 31 + number))
            // A code needs two symbols.
            if Set(symbols).count < 2 { symbols += [0, 1] }
            let decoded = try #require(Self.roundTrip(symbols), "\(shape.name), \(count) symbols")
            #expect(decoded == symbols, "\(shape.name), \(count) symbols")
        }
    }

    /// The payload as the format describes it, packed one bit at a time: canonical codes
    /// (by length, then symbol), each from its most significant bit into bytes from their
    /// least significant bit, four streams of `ceil(n/4)` symbols.
    static func referencePayload(_ symbols: [UInt8], lengths: [UInt8]) -> [UInt8] {
        let stored = (lengths.lastIndex { $0 != 0 } ?? 0) + 1
        var payload: [UInt8] = [UInt8(stored - 1)]
        for pair in stride(from: 0, to: stored, by: 2) {
            payload.append(lengths[pair] | (pair + 1 < stored ? lengths[pair + 1] : 0) << 4)
        }
        var codes = [Int](repeating: 0, count: 256)
        var next = 0
        for length in 1...HuffmanCode.maximumLength {
            for symbol in 0..<256 where Int(lengths[symbol]) == length {
                codes[symbol] = next
                next += 1
            }
            next <<= 1
        }
        let quarter = (symbols.count + 3) / 4
        var streams: [[UInt8]] = []
        for stream in 0..<4 {
            var bits: [Bool] = []
            for symbol in symbols[min(symbols.count, stream * quarter)..<min(symbols.count, stream * quarter + quarter)] {
                let length = Int(lengths[Int(symbol)])
                for bit in (0..<length).reversed() { bits.append(codes[Int(symbol)] >> bit & 1 == 1) }
            }
            streams.append(stride(from: 0, to: bits.count, by: 8).map { start in
                (start..<min(bits.count, start + 8)).reduce(UInt8(0)) { byte, at in byte | (bits[at] ? 1 << (at - start) : 0) }
            })
        }
        for stream in streams.prefix(3) { withUnsafeBytes(of: UInt32(stream.count).littleEndian) { payload += $0 } }
        return payload + streams.joined()
    }

    @Test("the encoder writes the payload the format describes, bit for bit", arguments: [1, 5, 19, 20, 21, 41, 1000, 1 << 16])
    func payloadMatchesTheFormat(count: Int) throws {
        for (number, shape) in Self.shapes.enumerated() {
            var symbols = Self.symbols(count: count, weights: shape.weights, seed: UInt64(count * 17 + number))
            if Set(symbols).count < 2 { symbols += [0, 1] }
            let (code, payload, length, bound) = Self.encode(symbols)
            #expect(payload[bound] == Self.guardByte, "\(shape.name), \(symbols.count) symbols")
            #expect(Array(payload[0..<length]) == Self.referencePayload(symbols, lengths: code.lengths), "\(shape.name), \(symbols.count) symbols")
        }
    }

    @Test("a damaged payload never makes the decoder write past its output")
    func damagedPayloads() {
        let symbols = Self.symbols(count: 5000, weights: Self.shapes[0].weights, seed: 7)
        var (_, payload, length, _) = Self.encode(symbols)
        payload.removeSubrange(length...)
        var generator = Generator(state: 99)
        for _ in 0..<300 {
            var damaged = payload
            let offset = Int.random(in: 0..<damaged.count, using: &generator)
            damaged[offset] ^= UInt8.random(in: 1...255, using: &generator)
            // A guard byte after the output: a decoder writing past its end would change it.
            var output = [UInt8](repeating: 0, count: symbols.count + 1)
            output[symbols.count] = 0x5A
            let valid = damaged.withUnsafeBytes { payload in
                output.withUnsafeMutableBufferPointer { HuffmanCode.decode(payload, count: symbols.count, into: $0.baseAddress!) }
            }
            #expect(output[symbols.count] == 0x5A, "damage at byte \(offset) (the payload was \(valid ? "accepted" : "refused"))")
        }
    }
}
