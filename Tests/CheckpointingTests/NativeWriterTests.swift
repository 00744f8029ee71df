import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// The two write paths of the native format: a seekable file (checksums computed while
/// writing, header filled in last) and a plain stream (checksums first), which compressors and
/// uploads will use. Both must produce the same bytes.
@Suite struct NativeWriterTests {
    final class MemorySink: ByteSink {
        var bytes: [UInt8] = []
        var position: Int { bytes.count }
        func write(_ chunk: UnsafeRawBufferPointer) throws(CheckpointError) { bytes.append(contentsOf: chunk) }
    }

    static func tree() throws -> StateValue {
        [
            "state": [
                "model": [
                    "a/b": .tensor(try Tensor(shape: [3], scalars: [UInt8(1), 2, 3])),
                    "big": .tensor(try Tensor(dtype: .float32, shape: [NativeFormat.chunkSize / 4 + 5]) { bytes in
                        for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: index &* 31) }
                    }),
                    "half": .tensor(try Tensor(shape: [2], scalars: [Int16(-1), 7])),
                ],
                "run_name": "stream",
            ],
            "rng": [],
        ]
    }

    @Test func streamAndFileWritesAreByteIdentical() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("native-writer-\(UUID())")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("x.safetensors").path
        let tree = try Self.tree()
        try NativeFormat.save(tree, to: path)

        let sink = MemorySink()
        try NativeFormat.write(try NativeFormat.layout(tree), to: sink)
        let onDisk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(sink.bytes.count == onDisk.count)
        let firstDifference = sink.bytes.indices.first { $0 >= onDisk.count || sink.bytes[$0] != onDisk[$0] }
        #expect(firstDifference == nil, "stream and file differ from byte \(firstDifference ?? -1)")

        let file = try CheckpointFile.open(path)
        try file.verify()
        #expect(file.tree == tree)
    }

    @Test func headerIsPaddedAndEveryTensorAlignedToItsElementSize() throws {
        let layout = try NativeFormat.layout(try Self.tree())
        #expect((8 + layout.headerLength) % 8 == 0)
        for entry in layout.tensors {
            #expect((8 + layout.headerLength + entry.begin) % entry.tensor.dtype.byteSize == 0, "\(entry.path)")
        }
        // Largest elements first, then by name.
        #expect(layout.tensors.map(\.path) == ["state/model/big", "state/model/half", "state/model/a\\/b"])
    }
}

@Suite struct TreeDepthTests {
    static func nested(_ depth: Int) -> StateValue {
        var node: StateValue = .tensor(try! Tensor(shape: [1], scalars: [Float(1)]))
        for level in 0..<depth { node = level % 2 == 0 ? .dict(["k": node]) : .list([node]) }
        return node
    }

    @Test func theDeepestAllowedTreeRoundTrips() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("depth-\(UUID())")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("deep.safetensors").path
        let tree = Self.nested(TreeCoding.maximumDepth)
        try NativeFormat.save(tree, to: path)
        // Deeper than the default reading limit: it opens with the limit raised that far.
        #expect(throws: CheckpointError.self) { try CheckpointFile.open(path) }
        #expect(try CheckpointFile.open(path, limits: ReadingLimits(maximumDepth: TreeCoding.maximumDepth)).tree == tree)
    }

    @Test func aDeeperTreeIsRefusedBeforeWriting() throws {
        #expect {
            try NativeFormat.layout(Self.nested(TreeCoding.maximumDepth + 1))
        } throws: { error in
            (error as? CheckpointError)?.code == .limitExceeded
                && (error as? CheckpointError)?.message.contains("nested more than") == true
        }
    }
}

extension TreeDepthTests {
    /// A hostile file whose tree nests deeper than any writer makes: refused, not recursed into.
    @Test func aTooDeepTreeInAFileIsRefused() throws {
        let depth = TreeCoding.maximumDepth + 5
        let tree = String(repeating: #"{"list":["#, count: depth) + #"{"none":null}"# + String(repeating: "]}", count: depth)
        let metadata = [
            "format": "pt", "checkpoint_format": NativeFormat.formatName,
            "checkpoint_format_version": NativeFormat.version, "checksum_algorithm": "xxh3-64",
            "checksums": "{}", "tree": tree, "tree_checksum": TensorChecksum.hex(of: tree),
        ]
        var header = Array(try JSONSerialization.data(withJSONObject: ["__metadata__": metadata]))
        header += Array(repeating: UInt8(ascii: " "), count: (8 - header.count % 8) % 8)
        let length = UInt64(header.count)
        let bytes = (0..<8).map { UInt8(truncatingIfNeeded: length >> ($0 * 8)) } + header
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("deep-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: path) }
        try Data(bytes).write(to: path)
        #expect {
            try CheckpointFile.open(path.path)
        } throws: { error in
            (error as? CheckpointError)?.code == .limitExceeded
                && (error as? CheckpointError)?.message.contains("nested more than \(ReadingLimits().maximumDepth) levels") == true
        }
    }
}
