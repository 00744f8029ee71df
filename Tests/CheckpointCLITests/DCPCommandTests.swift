import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

/// `ckpt inspect`, `verify`, `convert`, `diff` and `ls` on PyTorch Distributed Checkpoint
/// folders: torch's (the fixtures) and ours (`convert --format dcp`).
@Suite struct DCPCommandTests {
    static func fixture(_ name: String) -> String { Fixtures.path("sharded/dcp/" + name) }

    @Test func inspectShowsTheFormatDataFilesAndEveryTensorsChunks() throws {
        let text = CLI.run(["inspect", Self.fixture("two-ranks")])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("format:    dcp, 2 data files"), "\(text.stdout)")
        #expect(text.stdout.contains("__1_0.distcp"))
        let head = try #require(text.stdout.split(separator: "\n").first { $0.hasPrefix("model/head.weight ") })
        #expect(head.contains("[7, 24]") && head.hasSuffix("2: 0..<4,0..<24 4..<7,0..<24"), "\(head)")

        let json = CLI.run(["inspect", "--json", Self.fixture("two-ranks") + "/.metadata"])
        #expect(json.status == 0, "\(json.stderr)")
        let report = try #require(JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(report["format"] as? String == "dcp, 2 data files")
        #expect((report["shards"] as? [[String: Any]])?.compactMap { $0["path"] as? String } == ["__0_0.distcp", "__1_0.distcp"])
        let tensors = try #require(report["tensors"] as? [[String: Any]])
        let embed = try #require(tensors.first { $0["path"] as? String == "model/embed.weight" })
        let chunks = try #require(embed["chunks"] as? [[String: Any]])
        #expect(chunks.compactMap { ($0["offset"] as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } } == [[0, 0], [15, 0]])
        #expect(chunks.compactMap { $0["file"] as? String } == ["__0_0.distcp", "__1_0.distcp"])
    }

    @Test func verifySaysDCPRecordsNoOtherChecksumsAndNamesADamagedArchive() throws {
        try withTemporaryFolder { folder in
            let ok = CLI.run(["verify", Self.fixture("single")])
            #expect(ok.status == 0, "\(ok.stderr)")
            #expect(ok.stdout.contains("dcp, 1 data file") && ok.stdout.contains("DCP records no other checksums"), "\(ok.stdout)")

            let copy = folder + "/single"
            try FileManager.default.copyItem(atPath: Self.fixture("single"), toPath: copy)
            let checkpoint = try DistributedCheckpoint.open(copy)
            let head = try #require(checkpoint.tensors.first { $0.fqn == "model.head.weight" }?.chunks.first)
            var bytes = try Data(contentsOf: URL(fileURLWithPath: copy + "/" + head.file))
            bytes[head.offset + head.length / 2] ^= 0x08
            try bytes.write(to: URL(fileURLWithPath: copy + "/" + head.file))
            let damaged = CLI.run(["verify", copy])
            #expect(damaged.status == 1)
            #expect(damaged.stderr.contains("model.head.weight") && damaged.stderr.contains("CRC-32"), "\(damaged.stderr)")
        }
    }

    /// torch's DCP → native → our DCP: identical to the original (`diff` exit 0), and our DCP
    /// passes `verify`; a `.pt` converted to DCP and back keeps every value but its empty dicts.
    @Test func convertToAndFromDCPKeepsEveryValue() throws {
        try withTemporaryFolder { folder in
            let native = CLI.run(["convert", Self.fixture("single"), folder + "/single.safetensors"])
            #expect(native.status == 0, "\(native.stderr)")
            let dcp = CLI.run(["convert", "--format", "dcp", folder + "/single.safetensors", folder + "/ours"])
            #expect(dcp.status == 0 && dcp.stdout == folder + "/ours\n", "\(dcp.stderr)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder + "/ours").sorted() == [".metadata", "__0_0.distcp"])

            let diff = CLI.run(["diff", Self.fixture("single"), folder + "/ours"])
            #expect(diff.status == 0 && diff.stdout.hasPrefix("identical: 21 tensors"), "\(diff.stdout)\(diff.stderr)")
            #expect(CLI.run(["verify", folder + "/ours"]).status == 0)

            let composer = Fixtures.path("composer/ep1-ba4-rank0.pt")
            let fromPt = CLI.run(["convert", "--format", "dcp", composer, folder + "/composer/ep{epoch}-ba{batch}"])
            #expect(fromPt.status == 0 && fromPt.stdout == folder + "/composer/ep1-ba4\n", "\(fromPt.stderr)")
            let back = CLI.run(["convert", folder + "/composer/ep1-ba4", folder + "/back.pt"])
            #expect(back.status == 0, "\(back.stderr)")
            // Composer keys its optimizer state by parameter name, so only what DCP cannot hold
            // differs: the empty dicts, which have no leaves to save.
            for other in [folder + "/back.pt", folder + "/composer/ep1-ba4"] {
                let changed = CLI.run(["diff", "--json", composer, other])
                #expect(changed.status == 2, "\(changed.stderr)")
                let report = try #require(JSONSerialization.jsonObject(with: Data(changed.stdout.utf8)) as? [String: Any])
                let differences = try #require(report["differences"] as? [[String: Any]])
                #expect(Set(differences.compactMap { $0["path"] as? String })
                    == ["state/schedulers", "state/callbacks", "state/scaler", "state/dataset_state/eval", "state/integrations"])
                #expect(differences.allSatisfy { $0["kind"] as? String == "only in A" && $0["detail"] as? String == "dict" })
                #expect(report["tensors_compared"] as? Int == 18)
            }
        }
    }

    @Test func lsListsDCPFoldersAsOneRowEachAndAnUnfinishedOneAsIncomplete() throws {
        try withTemporaryFolder { folder in
            let composer = Fixtures.path("composer/ep1-ba4-rank0.pt")
            #expect(CLI.run(["convert", "--format", "dcp", composer, folder + "/ep{epoch}-ba{batch}"]).status == 0)
            try FileManager.default.copyItem(atPath: Self.fixture("two-ranks"), toPath: folder + "/unfinished")
            try FileManager.default.removeItem(atPath: folder + "/unfinished/.metadata")
            try FileManager.default.createDirectory(atPath: folder + "/not-a-checkpoint", withIntermediateDirectories: false)
            let listed = CLI.run(["ls", "--json", "--verify", folder])
            #expect(listed.status == 0, "\(listed.stderr)")
            let object = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any]
            let rows = try #require(object?["checkpoints"] as? [[String: Any]])
            #expect(rows.compactMap { $0["name"] as? String } == ["ep1-ba4", "unfinished"])
            #expect(rows[0]["format"] as? String == "dcp" && rows[0]["complete"] as? Bool == true && rows[0]["batch"] as? Int == 4)
            #expect(rows[1]["complete"] as? Bool == false && (rows[1]["problem"] as? String ?? "").contains("no .metadata"))

            let itself = CLI.run(["ls", "--json", Self.fixture("single")])
            let single = try JSONSerialization.jsonObject(with: Data(itself.stdout.utf8)) as? [String: Any]
            #expect((single?["checkpoints"] as? [[String: Any]])?.first?["format"] as? String == "dcp")
        }
    }

    @Test func benchMeasuresDCPBesideNative() throws {
        let run = CLI.run(["bench", "dcp", "--scale", "0.001", "--repeat", "1", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let report = try #require(JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        #expect(report["format"] as? String == "dcp" && report["tensor_count"] as? Int == 584)
        for key in ["dcp_save_seconds", "dcp_open_seconds", "dcp_metadata_open_seconds", "dcp_read_verify_seconds", "native_open_seconds"] {
            #expect((report[key] as? Double ?? -1) > 0, "\(key)")
        }
        #expect((report["dcp_bytes"] as? Int ?? 0) > (report["tensor_bytes"] as? Int ?? 0))
    }
}
