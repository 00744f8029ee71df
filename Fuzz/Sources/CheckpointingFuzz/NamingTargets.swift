@testable import Checkpointing

/// Filename templates: Composer's `str.format` language.
enum NamingTargets {
    /// Values to render with: a fresh run's, and extremes of every type.
    static let values = [
        FilenameValues(),
        FilenameValues(
            runName: "ünï côdé ☃ run", rank: .max, localRank: .min, worldSize: -1, localWorldSize: 7, nodeRank: 12,
            epoch: 0, batch: 123_456_789, batchInEpoch: -42, sample: 1 << 40, sampleInEpoch: 3, token: -(1 << 62),
            tokenInEpoch: 5, totalWct: .nan, epochWct: -.infinity, batchWct: -0.0),
        FilenameValues(totalWct: 1e300, epochWct: .leastNonzeroMagnitude, batchWct: 123.456_789),
    ]

    static let filenameTemplate = FuzzTarget(
        name: "filename-template",
        summary: "FilenameTemplate and FormatSpec: the pattern, render and renderPath; every rendering must be recognised by couldHaveRendered",
        seeds: {
            [
                "ep{epoch}-ba{batch}-rank{rank}.pt", "{run_name}/checkpoints/ep{epoch:03d}-ba{batch:06d}.safetensors",
                "{total_wct:.1f}-{epoch_wct:+012.3e}-{batch_wct:%}", "{{literal}}-{sample_in_epoch:_x}-{token:,}",
                "{run_name:*^20.5}-{rank:#b}-{local_rank:=+8}", "latest-rank{rank}.pt.tar.gz",
                "{node_rank: >4o}/{world_size:z}/{epoch:c}/{batch:!r}",
            ].enumerated().map { ("pattern-\($0.offset)", Array($0.element.utf8)) }
        },
        run: { bytes in
            let pattern = String(decoding: bytes, as: UTF8.self)
            guard let template = try? FilenameTemplate(pattern) else { return }
            for values in values {
                let name = template.render(values)
                if let path = try? template.renderPath(values) {
                    FuzzCheck.expect(path == name, "renderPath gives what render gives, when it accepts: \"\(path)\", \"\(name)\"")
                }
                // How the saver finds the checkpoints an earlier run left: it must recognise
                // every name the template renders, knowing the values or not.
                FuzzCheck.expect(
                    template.couldHaveRendered(name, known: Set(FilenameTemplate.Variable.allCases), values: values),
                    "template \"\(pattern)\" recognises its rendering \"\(name)\" with every value known")
                FuzzCheck.expect(
                    template.couldHaveRendered(name), "template \"\(pattern)\" recognises its rendering \"\(name)\" with no value known")
            }
        }
    )
}
