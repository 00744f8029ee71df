import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// Composer's own files (written by Composer 0.32.1 through its command-line-tool pipes and
/// Python's tarfile) load with the same values as its plain `.pt`, each recognised by its
/// bytes: its `.tar.lzma` holds xz, its tars have a root folder entry.
@Suite struct CompressionFixtureTests {
    struct Fixture: CustomTestStringConvertible, Sendable {
        var name: String
        var layers: [ContainerLayer]
        var testDescription: String { name }
    }

    static let member = ContainerLayer.tar(member: "composer_states.pt")

    static let fixtures: [Fixture] = [
        Fixture(name: "ep1-ba4-rank0", layers: []),
        Fixture(name: "ep1-ba4-rank0.pt.bz2", layers: [.compressed(.bzip2)]),
        Fixture(name: "ep1-ba4-rank0.pt.gz", layers: [.compressed(.gzip)]),
        Fixture(name: "ep1-ba4-rank0.pt.lz4", layers: [.compressed(.lz4)]),
        Fixture(name: "ep1-ba4-rank0.pt.lzma", layers: [.compressed(.lzma)]),
        Fixture(name: "ep1-ba4-rank0.pt.lzo", layers: [.compressed(.lzop)]),
        Fixture(name: "ep1-ba4-rank0.pt.xz", layers: [.compressed(.xz)]),
        Fixture(name: "ep1-ba4-rank0.pt.zst", layers: [.compressed(.zstd)]),
        Fixture(name: "ep1-ba4-rank0.tar", layers: [member]),
        Fixture(name: "ep1-ba4-rank0.tar.bz2", layers: [.compressed(.bzip2), member]),
        Fixture(name: "ep1-ba4-rank0.tar.gz", layers: [.compressed(.gzip), member]),
        Fixture(name: "ep1-ba4-rank0.tar.lzma", layers: [.compressed(.xz), member]),
        Fixture(name: "ep1-ba4-rank0.tgz", layers: [.compressed(.gzip), member]),
    ]

    @Test("the fixture list covers every compressed and tar file in the folder")
    func coversTheFolder() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Fixtures.path("composer"))
            .filter { $0.hasPrefix("ep1-ba4-rank0") && $0 != "ep1-ba4-rank0.pt" }
        #expect(names.sorted() == Self.fixtures.map(\.name).sorted())
    }

    @Test("each loads with the same values as the plain .pt", arguments: fixtures)
    func loadsLikeThePlainFile(fixture: Fixture) throws {
        let path = Fixtures.path("composer/" + fixture.name)
        let plain = try CheckpointFile.open(Fixtures.path("composer/ep1-ba4-rank0.pt"))
        let file = try CheckpointFile.open(path)
        #expect(file.layers == fixture.layers)
        #expect(file.formatKind == .torchZip)
        #expect(file.kind == (fixture.layers.first?.fileKind ?? .torchZip))
        try file.verify()
        let sameTree = file.tree == plain.tree
        #expect(sameTree, "\(fixture.name) holds a different tree from the plain .pt")
        let tensors = file.tree.tensors.map { "\($0.path) \($0.tensor.withUnsafeBytes { sha256Hex($0) })" }
        let plainTensors = plain.tree.tensors.map { "\($0.path) \($0.tensor.withUnsafeBytes { sha256Hex($0) })" }
        #expect(tensors == plainTensors)
        #expect(!tensors.isEmpty)
        let state = try loadCheckpoint(path)
        #expect(state.runName == "fixture-run")
        #expect(state.timestamp.batch == 4)
    }
}
