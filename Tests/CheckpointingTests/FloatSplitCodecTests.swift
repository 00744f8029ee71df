import CheckpointingTestSupport
import Foundation
import PropertyBased
import Testing

@testable import Checkpointing

/// The float-split codec (`.fsz`): bit-exact round trips of every dtype and of random trees,
/// per-tensor decoding, and hostile streams refused clearly. Every `.safetensors.fsz` a test
/// leaves in its folder is decoded and read by Python's `safetensors` (``TemporaryFolder``).
@Suite struct FloatSplitCodecTests {
    /// Trained-looking values: normal with a spread of 0.02, as weights are.
    static func weights(_ dtype: DType, count: Int, seed: UInt64) -> Tensor {
        var random = SplitMix64(seed: seed)
        func normal() -> Double {
            let u = Double(random.next() >> 11 | 1) / Double(1 << 53), v = Double(random.next() >> 11) / Double(1 << 53)
            return 0.02 * (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * dtype.byteSize)
        for _ in 0..<count {
            let value = normal()
            switch dtype {
            case .float32: withUnsafeBytes(of: Float(value).bitPattern.littleEndian) { bytes += $0 }
            case .float64: withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
            case .bfloat16: withUnsafeBytes(of: UInt16(truncatingIfNeeded: Float(value).bitPattern >> 16).littleEndian) { bytes += $0 }
            case .float16: withUnsafeBytes(of: Float16(value).bitPattern.littleEndian) { bytes += $0 }
            default: bytes += (0..<dtype.byteSize).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            }
        }
        return try! Tensor(dtype: dtype, shape: [count], bytes: bytes)  // count * byteSize bytes
    }

    /// Bit patterns every float dtype must keep: zeros of both signs, infinities, NaNs with
    /// payloads, the smallest and largest subnormals, the extremes of the normals.
    static let specialPatterns: [DType: [UInt64]] = [
        .float32: [0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0001, 0xFFBF_FFFF, 0x7F80_0001, 1, 0x807F_FFFF, 0x0080_0000, 0x7F7F_FFFF, 0x3F80_0000],
        .bfloat16: [0, 0x8000, 0x7F80, 0xFF80, 0x7FC1, 0xFF81, 0x7F81, 1, 0x807F, 0x0080, 0x7F7F, 0x3F80],
        .float16: [0, 0x8000, 0x7C00, 0xFC00, 0x7E01, 0xFC01, 1, 0x83FF, 0x0400, 0x7BFF, 0x3C00],
        .float64: [0, 1 << 63, 0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000, 0x7FF8_0000_0000_0001, 0x7FF0_0000_0000_0001, 1, 0x800F_FFFF_FFFF_FFFF, 0x7FEF_FFFF_FFFF_FFFF],
        .float8_e4m3fn: Array(0...255),
        .float8_e5m2: Array(0...255),
        .complex64: [0x7FC0_0001_8000_0000, 0x0000_0001_7F80_0000],
    ]

    static func specials(_ dtype: DType) -> Tensor {
        let patterns = specialPatterns[dtype]!
        var bytes: [UInt8] = []
        for pattern in patterns {
            for byte in 0..<dtype.byteSize { bytes.append(UInt8(truncatingIfNeeded: pattern >> (8 * UInt64(byte)))) }
        }
        return try! Tensor(dtype: dtype, shape: [patterns.count], bytes: bytes)
    }

    /// Every dtype in every awkward shape, special values, and tensors of several chunks.
    static func everyDTypeTree() -> StateValue {
        guard case .dict(var dict) = RandomTree.everyDType(seed: 3) else { return .none }
        for dtype in specialPatterns.keys { dict[.string("special." + dtype.rawValue)] = .tensor(specials(dtype)) }
        let large: [(DType, Int)] = [
            (.float32, 700_000), (.bfloat16, 1_200_000), (.float16, 600_000), (.float64, 200_000), (.float8_e4m3fn, 1_500_000),
            (.float8_e5m2, 40_000), (.complex64, 150_000), (.int64, 200_000),
        ]
        for (number, (dtype, count)) in large.enumerated() {
            dict[.string("large." + dtype.rawValue)] = .tensor(weights(dtype, count: count, seed: UInt64(number)))
        }
        return .dict(dict)
    }

    @Test("every dtype comes back bit for bit: NaN payloads, infinities, subnormals, -0, empty and multi-chunk tensors")
    func everyDTypeRoundTrips() throws {
        let tree = Self.everyDTypeTree()
        try withTemporaryFolder { folder in
            let encoded = try saveCheckpoint(tree: tree, filename: folder + "/x.safetensors.fsz")[0]
            let plain = try saveCheckpoint(tree: tree, filename: folder + "/x.safetensors")[0]
            let file = try CheckpointFile.open(encoded)
            #expect(file.kind == .floatSplit)
            #expect(file.formatKind == .safetensors)
            #expect(file.layers == [.compressed(.floatSplit)])
            #expect(file.compression == .floatSplit)
            try file.verify()
            #expect(file.tree == tree)
            // The stream decodes to the very bytes of the plain file.
            try decompressFile(encoded, to: folder + "/decoded.safetensors")
            #expect(try readBytes(folder + "/decoded.safetensors") == readBytes(plain))
            #expect(try readBytes(encoded).count < readBytes(plain).count)
        }
    }

    @Test func randomTreesRoundTripBitExactly() async {
        await propertyCheck(count: 25, input: Gen.uint64()) { seed in
            let tree = RandomTree.make(seed: seed)
            try withTemporaryFolder { folder in
                let encoded = try saveCheckpoint(tree: tree, filename: folder + "/x.safetensors.fsz")[0]
                let plain = try saveCheckpoint(tree: tree, filename: folder + "/x.safetensors")[0]
                let file = try CheckpointFile.open(encoded)
                try file.verify()
                #expect(file.tree == tree, "seed \(seed)")
                let decoded = try decompress(try readBytes(encoded), .floatSplit)
                #expect(decoded == (try readBytes(plain)), "seed \(seed)")
            }
        }
    }

    @Test("the output does not depend on the thread count or on how the input is cut into writes")
    func deterministic() throws {
        let tree = Self.everyDTypeTree()
        try withTemporaryFolder { folder in
            let plain = try readBytes(try saveCheckpoint(tree: tree, filename: folder + "/x.safetensors")[0])
            let reference = try compress(plain, .floatSplit, options: CompressionOptions(threads: 1), seed: 1)
            for (threads, seed) in [(2, 2), (3, 3), (5, 4)] as [(Int, UInt64)] {
                #expect(try compress(plain, .floatSplit, options: CompressionOptions(threads: threads), seed: seed) == reference)
            }
            #expect(try decompress(reference, .floatSplit) == plain)
        }
    }

    /// The methods of every plane of a stream, with each chunk's dtype.
    static func methods(_ stream: [UInt8]) throws -> Set<String> {
        try stream.withUnsafeBytes { raw in
            var found = Set<String>()
            for entry in try FloatSplitIndex(parsing: raw).entries {
                let planes = Int(raw[entry.recordOffset + 1])
                for plane in 0..<planes {
                    let method = raw[entry.recordOffset + FloatSplitFormat.chunkHeaderSize + FloatSplitFormat.planeHeaderSize * plane]
                    let dtype = FloatSplitFormat.dtype(ofCode: entry.dtypeCode).flatMap { $0?.rawValue } ?? "bytes"
                    found.insert("\(dtype) plane \(plane): \(FloatSplitFormat.Method(rawValue: method).map { "\($0)" } ?? "?")")
                }
            }
            return found
        }
    }

    @Test("each plane takes the coding that fits it: Huffman exponents, raw mantissas, constant and zstd planes")
    func planeMethods() throws {
        var sparse = [UInt8](repeating: 0, count: 4 * 300_000)
        var random = SplitMix64(seed: 5)
        for index in stride(from: 0, to: sparse.count, by: 4) {
            sparse[index + 3] = 0x3C  // exponents 120-121: a few values
            if random.next() % 100 == 0 { sparse[index] = UInt8(truncatingIfNeeded: random.next()) }
        }
        let tree: StateValue = .dict([
            "weights": .tensor(Self.weights(.float32, count: 300_000, seed: 1)),
            "zeros": .tensor(try Tensor(dtype: .float32, shape: [300_000], bytes: [UInt8](repeating: 0, count: 1_200_000))),
            "sparse": .tensor(try Tensor(dtype: .float32, shape: [300_000], bytes: sparse)),
        ])
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(tree: tree, filename: folder + "/x.safetensors.fsz")[0]
            let found = try Self.methods(try readBytes(path))
            #expect(found.contains("float32 plane 0: huffman"), "\(found)")
            #expect(found.contains("float32 plane 3: raw"), "\(found)")
            #expect(found.contains("float32 plane 1: constant"), "\(found)")
            #expect(found.contains("float32 plane 3: zstd"), "\(found)")
            #expect(found.contains("bytes plane 0: zstd"), "\(found)")
            #expect(try CheckpointFile.open(path).tree == tree)
        }
    }

    @Test("a record written in place, after its raw planes were cut into their places, is the record written from the start",
          arguments: [DType.float32, .bfloat16, .float16, .float64, .float8_e4m3fn, .complex64])
    func inPlaceRecordsEqualContiguousOnes(dtype: DType) throws {
        // Trained-looking weights (raw mantissas: the in-place path), zeros and specials (coded
        // mantissas: the contiguous path), and chunks of one element and of a megabyte.
        let count = (1 << 20) / dtype.byteSize
        let inputs = [Self.weights(dtype, count: count, seed: 9), Self.weights(dtype, count: 1, seed: 10), Self.specials(dtype),
                      try Tensor(dtype: dtype, shape: [4096], bytes: [UInt8](repeating: 0, count: 4096 * dtype.byteSize))]
        let workspace = ChunkWorkspace(chunkCapacity: 1 << 20)
        let capacity = ChunkCoding.recordBound(length: 1 << 20, dtype: .float64)
        let inPlace = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 64)
        let contiguous = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 64)
        defer { inPlace.deallocate(); contiguous.deallocate() }
        var starts = Set<Bool>()
        for tensor in inputs {
            try tensor.withUnsafeBytes { (bytes) throws(CheckpointError) in
                let record = try ChunkCoding.encode(bytes, dtype: dtype, level: 1, workspace: workspace, into: inPlace.baseAddress!)
                let length = try ChunkCoding.encodeContiguous(bytes, dtype: dtype, level: 1, workspace: workspace, into: contiguous.baseAddress!)
                #expect(Array(inPlace[record]) == Array(contiguous[0..<length]), "\(dtype), \(tensor.shape)")
                starts.insert(record.lowerBound > 0)
            }
        }
        // Both paths were taken: weights' exponents code smaller in place, zeros' mantissas do
        // not stay raw. (fp64's second byte plane holds exponent bits, never noise; these
        // complex64 values are random bytes, whose exponents do not code smaller.)
        #expect(starts == ([.float64, .complex64].contains(dtype) ? [false] : [true, false]), "\(dtype)")
    }

    @Test("trained-looking weights shrink more than zstd level 1 makes them: exponents are coded, mantissas kept")
    func ratio() throws {
        let tree: StateValue = .dict([
            "f32": .tensor(Self.weights(.float32, count: 1 << 20, seed: 8)),
            "bf16": .tensor(Self.weights(.bfloat16, count: 1 << 20, seed: 9)),
        ])
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(tree: tree, filename: folder + "/x.safetensors.fsz")[0]
            let shares = try CheckpointFile.open(path).compressionShares
            let f32 = try #require(shares.first { $0.dtype == .float32 })
            let bf16 = try #require(shares.first { $0.dtype == .bfloat16 })
            #expect(f32.bytes == 4 << 20 && bf16.bytes == 2 << 20)
            #expect(shares.contains { $0.dtype == nil })
            // Normal values of one spread: their exponents' entropy is 2.54 bits, so fp32 goes
            // from 32 bits to about 26.6 and bf16 from 16 to about 10.6 (zstd -1: 1.09x, 1.28x).
            #expect(f32.ratio > 1.19 && f32.ratio < 1.22, "\(f32.ratio)")
            #expect(bf16.ratio > 1.48 && bf16.ratio < 1.54, "\(bf16.ratio)")
        }
    }

    // MARK: Decoding what is needed

    /// A training state whose optimizer moments are large enough to take chunks of their own.
    static func trainingState() -> TrainingState {
        var state = composerLikeState(seed: 21)
        state.model["embedding"] = .tensor(weights(.bfloat16, count: 700_000, seed: 2))
        state.optimizers["Adam"] = .dict(["state": .dict(["embedding": .dict([
            "exp_avg": .tensor(weights(.float32, count: 700_000, seed: 3)),
            "exp_avg_sq": .tensor(weights(.float32, count: 700_000, seed: 4)),
        ])])])
        return state
    }

    /// The chunk numbers that hold the tensors whose paths `include` accepts.
    static func chunks(of file: CheckpointFile, where include: (String) -> Bool) throws -> Set<Int> {
        let archive = try #require(file.floatSplit)
        var chunks = Set<Int>()
        for (path, tensor) in file.tree.tensors where include(path) {
            let view = try #require(tensor.buffer.encodedView)
            let start = view.bytes.baseAddress! - archive.base!
            chunks.formUnion(archive.index.chunks(overlapping: start..<(start + view.bytes.count)))
        }
        return chunks
    }

    @Test("opening decodes only the header; a tensor read decodes its chunks; decode(tensorsWhere:) decodes only those asked for")
    func decodesOnlyWhatIsRead() throws {
        let state = Self.trainingState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/x.safetensors.fsz")[0]
            let file = try CheckpointFile.open(path)
            let archive = try #require(file.floatSplit)
            let header = Set(archive.index.chunks(overlapping: 0..<512))
            #expect(Set(archive.index.entries.indices.filter(archive.isDecoded)) == header)

            let embedding = try #require(file.tree[path: "state/model/embedding"]?.tensorValue)
            #expect(embedding == state.model["embedding"]?.tensorValue)
            let embeddingChunks = try Self.chunks(of: file) { $0 == "state/model/embedding" }
            #expect(embeddingChunks.count >= 2)
            #expect(Set(archive.index.entries.indices.filter(archive.isDecoded)) == header.union(embeddingChunks))

            try file.decode { $0.hasPrefix("state/model/") }
            let model = try Self.chunks(of: file) { $0.hasPrefix("state/model/") }
            let optimizer = try Self.chunks(of: file) { $0.hasPrefix("state/optimizers/") }
            #expect(optimizer.count >= 4)
            #expect(Set(archive.index.entries.indices.filter(archive.isDecoded)) == header.union(model))
            try file.verify()
            #expect(archive.index.entries.indices.allSatisfy(archive.isDecoded))
        }
    }

    /// Flips a byte in the middle of the record of the first chunk of `tensor`.
    static func damageChunk(of tensor: String, in path: String, writingTo damaged: String) throws {
        let file = try CheckpointFile.open(path)
        let chunk = try #require(try chunks(of: file) { $0 == tensor }.min())
        let entry = try #require(file.floatSplit).index.entries[chunk]
        var bytes = try readBytes(path)
        bytes[entry.recordOffset + entry.recordLength / 2] ^= 0x20
        try writeBytes(bytes, to: damaged)
    }

    @Test("a weights-only load touches only the model's chunks: damage elsewhere fails the full load alone")
    func weightsOnlyLoadDecodesOnlyTheModel() throws {
        let state = Self.trainingState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/x.safetensors.fsz")[0]
            let damaged = folder + "/damaged-optimizer.fsz"
            try Self.damageChunk(of: "state/optimizers/Adam/state/embedding/exp_avg_sq", in: path, writingTo: damaged)

            var target = TrainingState(model: state.model)
            try loadCheckpoint(damaged, into: &target, weightsOnly: true)
            #expect(target.model == state.model)
            let unverified = try loadCheckpoint(damaged, weightsOnly: true, verifyChecksums: false)
            #expect(unverified.model == state.model)

            let error = expectCheckpointError(.malformed, messageContains: ["chunk decodes to bytes that hash"]) {
                _ = try loadCheckpoint(damaged)
            }
            #expect(error?.path == damaged)
            // Without verification the damage is still found: a load decodes what it returns.
            expectCheckpointError(.malformed) { _ = try loadCheckpoint(damaged, verifyChecksums: false) }
            #expect(try loadCheckpoint(path) == state)
        }
    }

    @Test("a damaged model chunk fails a weights-only load, and ckpt-style conversion")
    func damagedModelChunk() throws {
        let state = Self.trainingState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/x.safetensors.fsz")[0]
            let damaged = folder + "/damaged-model.fsz"
            try Self.damageChunk(of: "state/model/embedding", in: path, writingTo: damaged)
            expectCheckpointError(.malformed) { _ = try loadCheckpoint(damaged, weightsOnly: true) }
            expectCheckpointError(.malformed) { _ = try loadCheckpointTree(damaged, verifyChecksums: false) }
        }
    }

    @Test("CheckpointSaver saves .fsz checkpoints asynchronously and a new run resumes from the newest")
    func saverResumesFromFloatSplitFiles() throws {
        try withTemporaryFolder { folder in
            func state(batch: Int) -> TrainingState {
                var state = Self.trainingState()
                state.timestamp = Timestamp(epoch: 0, batch: batch)
                return state
            }
            let options = CheckpointSaver.Options(
                folder: folder, filename: "ba{batch}.safetensors.fsz", saveInterval: "1ba", checkpointsToKeep: 2, asynchronous: true,
                saveOnTermination: false)
            let saver = try CheckpointSaver(options: options)
            try saver.fitStart(state(batch: 0))
            for batch in 1...3 { try saver.batchEnd(state(batch: batch)) }
            try saver.fitEnd(state(batch: 3))
            #expect(try folderContents(folder).filter { $0.hasPrefix("ba") } == ["ba2.safetensors.fsz", "ba3.safetensors.fsz"])

            var resumed = state(batch: 0)
            let result = try #require(try CheckpointSaver(options: options).autoresume(into: &resumed))
            #expect(result.path.hasSuffix("ba3.safetensors.fsz"))
            #expect(resumed == state(batch: 3))
        }
    }

    // MARK: Hostile streams

    /// A valid stream of a small training state, and the plain file's size.
    static func validStream() throws -> [UInt8] {
        try withTemporaryFolder { folder in
            try readBytes(try saveCheckpoint(trainingState(), filename: folder + "/x.safetensors.fsz")[0])
        }
    }

    /// Opens `bytes` written to a file (named so the cross-check leaves it alone) and returns the error.
    @discardableResult
    static func refusal(
        _ bytes: [UInt8], _ code: CheckpointError.Code, _ fragments: [String], limits: ReadingLimits = ReadingLimits(),
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> CheckpointError? {
        try withTemporaryFolder { folder in
            let path = folder + "/hostile.fsz"
            try writeBytes(bytes, to: path)
            let error = expectCheckpointError(code, messageContains: fragments, sourceLocation: sourceLocation) {
                let file = try CheckpointFile.open(path, limits: limits)
                try file.verify()
            }
            #expect(error?.path == path, sourceLocation: sourceLocation)
            return error
        }
    }

    /// Rewrites the index checksum in the trailer after the index was changed on purpose.
    static func resealIndex(_ bytes: inout [UInt8]) {
        let trailer = bytes.count - FloatSplitFormat.trailerSize
        let indexOffset = bytes.withUnsafeBytes { Int(FloatSplitFormat.u64($0, trailer)) }
        let checksum = bytes.withUnsafeBytes { TensorChecksum.of(UnsafeRawBufferPointer(rebasing: $0[indexOffset..<trailer])) }
        withUnsafeBytes(of: checksum.littleEndian) { bytes.replaceSubrange((trailer + 24)..<(trailer + 32), with: $0) }
    }

    static func indexEntryOffset(_ bytes: [UInt8], _ number: Int) -> Int {
        let trailer = bytes.count - FloatSplitFormat.trailerSize
        return bytes.withUnsafeBytes { Int(FloatSplitFormat.u64($0, trailer)) } + number * FloatSplitFormat.indexEntrySize
    }

    @Test("a truncated stream is refused as truncated wherever it is cut")
    func truncated() throws {
        let stream = try Self.validStream()
        // Any cut that keeps the magic number (a shorter file is not recognised as a stream at all).
        for cut in [8, 40, stream.count / 2, stream.count - 41, stream.count - 1] {
            try Self.refusal(Array(stream.prefix(cut)), .malformed, ["truncated"])
        }
    }

    @Test("a damaged index, an index that does not add up, and chunk lengths past the end are refused")
    func badIndex() throws {
        let stream = try Self.validStream()
        var flipped = stream
        flipped[Self.indexEntryOffset(stream, 1) + 3] ^= 1
        try Self.refusal(flipped, .malformed, ["index hashes to"])

        var pastEnd = stream
        let second = Self.indexEntryOffset(stream, 1)
        pastEnd.replaceSubrange((second + 20)..<(second + 24), with: [0xFF, 0xFF, 0xFF, 0x0F])
        Self.resealIndex(&pastEnd)
        try Self.refusal(pastEnd, .malformed, ["past the start of the index"])

        var huge = stream
        huge.replaceSubrange((second + 16)..<(second + 20), with: [0, 0, 0, 0x10])
        Self.resealIndex(&huge)
        try Self.refusal(huge, .malformed, ["claims a chunk of 268435456 bytes"])

        var moved = stream
        moved[second] ^= 0x40
        Self.resealIndex(&moved)
        try Self.refusal(moved, .malformed, ["not right after the previous chunk"])

        var count = stream
        count[count.count - FloatSplitFormat.trailerSize + 8] &+= 1
        try Self.refusal(count, .malformed, ["does not end where the trailer starts"])

        var declared = stream
        declared[declared.count - FloatSplitFormat.trailerSize + 16] &+= 8
        try Self.refusal(declared, .malformed, ["declares"])
    }

    @Test("a plane whose length runs past its chunk, a bad method and a record that contradicts the index are refused")
    func badRecords() throws {
        let stream = try Self.validStream()
        let index = try stream.withUnsafeBytes { try FloatSplitIndex(parsing: $0) }
        let float = try #require(index.entries.first { $0.dtypeCode == FloatSplitFormat.code(of: .float32) && $0.decodedLength > 100_000 })
        let plane = float.recordOffset + FloatSplitFormat.chunkHeaderSize

        var long = stream
        long.replaceSubrange((plane + 4)..<(plane + 8), with: [0xFF, 0xFF, 0xFF, 0x7F])
        try Self.refusal(long, .malformed, ["past the end of its chunk"])

        var method = stream
        method[plane] = 9
        try Self.refusal(method, .malformed, ["unknown method 9"])

        var dtype = stream
        dtype[float.recordOffset] = FloatSplitFormat.code(of: .bfloat16)
        try Self.refusal(dtype, .malformed, ["does not match the index"])

        // Every code length 1: more codes than a prefix code can have (Kraft's sum above 1).
        var kraft = stream
        #expect(kraft[plane] == FloatSplitFormat.Method.huffman.rawValue)
        let payload = float.recordOffset + FloatSplitFormat.chunkHeaderSize + 4 * FloatSplitFormat.planeHeaderSize
        let symbols = Int(kraft[payload]) + 1
        for byte in 0..<((symbols + 1) / 2) { kraft[payload + 1 + byte] = 0x11 }
        try Self.refusal(kraft, .malformed, ["Huffman-coded plane does not decode"])
    }

    @Test("a stream that decodes past the limits is refused before anything is decoded")
    func limits() throws {
        let stream = try Self.validStream()
        let error = try Self.refusal(stream, .limitExceeded, ["more than the limit of 4096"], limits: ReadingLimits(maximumDecompressedBytes: 4096))
        #expect(error?.message.contains("--max-decompressed-bytes") == true)

        let zeros: StateValue = .dict(["zeros": .tensor(try Tensor(dtype: .float32, shape: [4 << 20], bytes: [UInt8](repeating: 0, count: 16 << 20)))])
        let bomb = try withTemporaryFolder { folder in
            try readBytes(try saveCheckpoint(tree: zeros, filename: folder + "/zeros.safetensors.fsz")[0])
        }
        #expect(bomb.count < 30_000)
        try Self.refusal(bomb, .limitExceeded, ["expands more than 100-fold"], limits: ReadingLimits(maximumExpansionRatio: 100, expansionRatioFloor: 1 << 20))
    }

    @Test("a stream of a later version is refused with what to do")
    func laterVersion() throws {
        var stream = try Self.validStream()
        stream[8] = 2
        try Self.refusal(stream, .unsupportedFormat, ["version 2", "upgrade"])
    }

    @Test("a .pt and a tar through the codec round trip, decoded whole")
    func otherStreams() throws {
        let state = composerLikeState(seed: 4)
        try withTemporaryFolder { folder in
            for name in ["x.pt.fsz", "x.tar.fsz"] {
                let path = try saveCheckpoint(state, filename: folder + "/" + name)[0]
                let file = try CheckpointFile.open(path)
                #expect(file.kind == .floatSplit)
                #expect(file.compressionShares.allSatisfy { $0.dtype == nil })
                try file.verify()
                let plain = try saveCheckpoint(state, filename: folder + "/" + name.dropLast(4))[0]
                #expect(try loadCheckpoint(path) == loadCheckpoint(plain))
            }
        }
    }
}
