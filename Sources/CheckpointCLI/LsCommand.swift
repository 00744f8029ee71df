import ArgumentParser
import Checkpointing
import Foundation

/// `ckpt ls FOLDER [--json]`: the checkpoints in a folder and which one the latest pointer names.
struct LsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List the checkpoints in a folder, with timestamp, size, format and completeness.",
        discussion: """
            A checkpoint is complete when its structure is intact (add --verify to also check \
            every tensor's checksum). Temporary files of saves in progress or killed are not listed.
            """)

    @Argument(help: "The folder.")
    var folder: String

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Flag(help: "Also verify every tensor's checksum (reads every file whole).")
    var verify = false

    struct Entry {
        var name: String
        var bytes: Int
        var format: String?
        var epoch: Int?
        var batch: Int?
        var complete: Bool
        var problem: String?
        var latest: Bool
    }

    func run() throws {
        let entries = try listing()
        if json {
            let objects: [[String: Any]] = entries.map { entry in
                [
                    "name": entry.name, "bytes": entry.bytes, "format": entry.format ?? NSNull(),
                    "epoch": entry.epoch ?? NSNull(), "batch": entry.batch ?? NSNull(),
                    "complete": entry.complete, "problem": entry.problem ?? NSNull(), "latest": entry.latest,
                ]
            }
            let data = try JSONSerialization.data(
                withJSONObject: ["folder": folder, "checkpoints": objects], options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        var rows = [["checkpoint", "epoch", "batch", "size", "format", "complete", ""]]
        for entry in entries {
            rows.append([
                entry.name, entry.epoch.map(String.init) ?? "-", entry.batch.map(String.init) ?? "-",
                Units.bytes(entry.bytes), entry.format ?? "-", entry.complete ? "yes" : "NO: \(entry.problem ?? "")",
                entry.latest ? "<- latest" : "",
            ])
        }
        print(Units.table(rows, rightAligned: [1, 2, 3]))
    }

    private func listing() throws -> [Entry] {
        let manager = FileManager.default
        var isFolder: ObjCBool = false
        guard manager.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
            throw CheckpointError(.notFound, "is not a folder", path: folder)
        }
        let names = try manager.contentsOfDirectory(atPath: folder).sorted()
        // Every symlink (and pointer file) in the folder counts as a latest pointer.
        var latestTargets = Set<String>()
        for name in names where !name.hasPrefix(".") {
            let path = folder + "/" + name
            if let target = try? manager.destinationOfSymbolicLink(atPath: path) {
                latestTargets.insert((target as NSString).lastPathComponent)
            } else if name.hasSuffix(".pointer"), let data = manager.contents(atPath: path) {
                let target = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                latestTargets.insert((target as NSString).lastPathComponent)
            }
        }
        var entries: [Entry] = []
        for name in names where !name.hasPrefix(".") && !name.hasSuffix(".pointer") {
            let path = folder + "/" + name
            guard (try? manager.destinationOfSymbolicLink(atPath: path)) == nil,
                manager.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue
            else { continue }
            let bytes = (try? manager.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            var entry = Entry(name: name, bytes: bytes, complete: false, latest: latestTargets.contains(name))
            do throws(CheckpointError) {
                let file = try CheckpointFile.open(path)
                entry.format = file.formatName
                if let state = try? TrainingState(tree: file.tree) {
                    entry.epoch = state.timestamp.epoch
                    entry.batch = state.timestamp.batch
                }
                if verify { try file.verify() }
                entry.complete = true
            } catch {
                entry.problem = error.message
            }
            entries.append(entry)
        }
        return entries
    }
}
