import ArgumentParser
import Checkpointing
import Foundation

/// `ckpt diff A B [--json] [--limit N]`: what differs between two checkpoints.
struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Show what differs between two checkpoints, part by part and tensor by tensor.",
        discussion: """
            A and B may be of any format, compression or container, sharded (a folder or \
            manifest), Hugging Face sharded (a folder or index) or s3://; they are read whole \
            and verified. Tensors are compared bit for \
            bit; for a tensor that differs, the count of differing elements and the largest \
            numeric difference are shown. Exit codes: 0 the checkpoints are identical; 2 they \
            differ (the differences are on standard output); 1 one could not be read.
            """)

    @Argument(help: "The first checkpoint (A).")
    var first: String

    @Argument(help: "The second checkpoint (B).")
    var second: String

    @Flag(help: "Print one JSON object instead of lines.")
    var json = false

    @Option(help: "Show at most this many differences (all are counted).")
    var limit: Int = 100

    @OptionGroup var limits: ReadingLimitsFlags

    /// The exit status when the checkpoints differ.
    static let differ: Int32 = 2

    func validate() throws {
        guard limit >= 0 else { throw ValidationError("--limit must not be negative") }
    }

    func run() throws {
        let a = try loadCheckpointTree(first, limits: limits.readingLimits, shardPlan: .whole).tree
        let b = try loadCheckpointTree(second, limits: limits.readingLimits, shardPlan: .whole).tree
        let diff = CheckpointDiff(a, b)
        let shown = diff.differences.prefix(limit)
        if json {
            let object: [String: Any] = [
                "identical": diff.differences.isEmpty, "difference_count": diff.differences.count,
                "tensors_compared": diff.tensorsCompared, "values_compared": diff.valuesCompared,
                "differences": shown.map { ["path": $0.path, "kind": $0.kind.rawValue, "detail": $0.detail] },
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else {
            for difference in shown {
                let mark = switch difference.kind {
                case .onlyInFirst: "-"
                case .onlyInSecond: "+"
                case .changed: "~"
                }
                print("\(mark) \(difference.path): \(difference.kind == .changed ? "" : "\(difference.kind.rawValue), ")\(difference.detail)")
            }
            if diff.differences.count > shown.count { print("... and \(diff.differences.count - shown.count) more") }
            print(
                diff.differences.isEmpty
                    ? "identical: \(diff.tensorsCompared) tensors and \(diff.valuesCompared) other values"
                    : "\(diff.differences.count) difference\(diff.differences.count == 1 ? "" : "s") (compared \(diff.tensorsCompared) tensors and \(diff.valuesCompared) other values)"
            )
        }
        if !diff.differences.isEmpty { throw ExitCode(Self.differ) }
    }
}
