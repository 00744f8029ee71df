import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

// Every expected string below was produced by CPython 3.11 with
// `python3 -c "print('<pattern>'.format(**values))"`.

@Suite("FilenameTemplate")
struct FilenameTemplateTests {
    /// Values whose renderings all differ, so that a field reading the wrong variable shows.
    static let values = FilenameValues(
        runName: "my-run", rank: 5, localRank: 1, worldSize: 8, localWorldSize: 4, nodeRank: 2,
        epoch: 7, batch: 1234, batchInEpoch: 34, sample: 43210, sampleInEpoch: 1088, token: 1_234_567,
        tokenInEpoch: 98765, totalWct: 3725.0246, epochWct: 12.0, batchWct: 1e-05)

    static let eachVariable: [(FilenameTemplate.Variable, String)] = [
        (.runName, "my-run"), (.rank, "5"), (.localRank, "1"), (.worldSize, "8"), (.localWorldSize, "4"),
        (.nodeRank, "2"), (.epoch, "7"), (.batch, "1234"), (.batchInEpoch, "34"), (.sample, "43210"),
        (.sampleInEpoch, "1088"), (.token, "1234567"), (.tokenInEpoch, "98765"), (.totalWct, "3725.0246"),
        (.epochWct, "12.0"), (.batchWct, "1e-05"),
    ]

    @Test("Every variable renders as Python's str() of its value", arguments: FilenameTemplateTests.eachVariable)
    func rendersVariable(_ variable: FilenameTemplate.Variable, _ expected: String) throws {
        let template = try FilenameTemplate("{\(variable.rawValue)}")
        #expect(template.render(Self.values) == expected)
        #expect(template.variables == [variable])
    }

    @Test func variableTableCoversEveryVariable() {
        #expect(Set(Self.eachVariable.map(\.0)) == Set(FilenameTemplate.Variable.allCases))
    }

    @Test func rendersComposerDefault() throws {
        let template = try FilenameTemplate("ep{epoch}-ba{batch}-rank{rank}.pt")
        #expect(template.render(Self.values) == "ep7-ba1234-rank5.pt")
        #expect(template.render(FilenameValues()) == "ep0-ba0-rank0.pt")
    }

    @Test("Format specs render as CPython's", arguments: [
        ("{epoch:03d}", "007"),
        ("{batch:06d}", "001234"),
        ("{total_wct:.1f}", "3725.0"),
        ("{rank:>4}", "   5"),
        ("{run_name:_<10}", "my-run____"),
        ("{token:,}", "1,234,567"),
        ("{sample:x}", "a8ca"),
        ("{sample:#x}", "0xa8ca"),
        ("{epoch:+d}", "+7"),
        ("{total_wct:e}", "3.725025e+03"),
        ("{total_wct:g}", "3725.02"),
        ("{total_wct:%}", "372502.460000%"),
        ("{epoch:=+8}", "+      7"),
        ("{run_name:.3}", "my-"),
        ("{{literal}}", "{literal}"),
        ("{local_rank}{{{node_rank}}}", "1{2}"),
        ("{run_name}/checkpoints/ep{epoch}.pt", "my-run/checkpoints/ep7.pt"),
        ("{token:_}", "1_234_567"),
        ("{token:012,}", "0,001,234,567"),
        ("{sample:#_b}", "0b1010_1000_1100_1010"),
        ("{sample:_X}", "A8CA"),
        ("{sample:#o}", "0o124312"),
        ("{batch_in_epoch:#b}", "0b100010"),
        ("{epoch: d}", " 7"),
        ("{epoch:<05}", "70000"),
        ("{epoch:^7}", "   7   "),
        ("{world_size:0}", "8"),
        ("{sample_in_epoch:x<+8}", "+1088xxx"),
        ("{run_name:*^12}", "***my-run***"),
        ("{run_name:08}", "my-run00"),
        ("{run_name:>10.2}", "        my"),
        ("{epoch_wct:.3}", "12.0"),
        ("{epoch_wct:#g}", "12.0000"),
        ("{epoch_wct:.0f}", "12"),
        ("{epoch_wct:#.0f}", "12."),
        ("{batch:e}", "1.234000e+03"),
        ("{batch:.2%}", "123400.00%"),
        ("{batch_wct:.3}", "1e-05"),
        ("{batch_wct:.2e}", "1.00e-05"),
        ("{batch_wct:G}", "1E-05"),
        ("{total_wct:012,.2f}", "0,003,725.02"),
        ("{total_wct:+.3F}", "+3725.025"),
        ("{total_wct:n}", "3725.02"),
        ("{total_wct:★>12.1f}", "★★★★★★3725.0"),
        ("{total_wct:.10}", "3725.0246"),
    ])
    func rendersSpec(_ pattern: String, _ expected: String) throws {
        #expect(try FilenameTemplate(pattern).render(Self.values) == expected)
    }

    @Test("Negative, extreme and non-finite values render as CPython's", arguments: [
        ("{epoch:08}", FilenameValues(epoch: -7), "-0000007"),
        ("{epoch:x}", FilenameValues(epoch: -255), "-ff"),
        ("{epoch:#X}", FilenameValues(epoch: -255), "-0XFF"),
        ("{epoch:+,}", FilenameValues(epoch: -1_234_567), "-1,234,567"),
        ("{epoch:,}", FilenameValues(epoch: .min), "-9,223,372,036,854,775,808"),
        ("{epoch:#b}", FilenameValues(epoch: .max), "0b" + String(repeating: "1", count: 63)),
        ("{total_wct}", FilenameValues(totalWct: -0.0), "-0.0"),
        ("{total_wct:z}", FilenameValues(totalWct: -0.0), "0.0"),
        ("{total_wct:z.2f}", FilenameValues(totalWct: -0.001), "0.00"),
        ("{total_wct:.2f}", FilenameValues(totalWct: -0.001), "-0.00"),
        ("{total_wct}", FilenameValues(totalWct: .infinity), "inf"),
        ("{total_wct:+.2f}", FilenameValues(totalWct: -.infinity), "-inf"),
        ("{total_wct:z}", FilenameValues(totalWct: -.infinity), "-inf"),
        ("{total_wct:F}", FilenameValues(totalWct: .nan), "NAN"),
        ("{total_wct:08}", FilenameValues(totalWct: .infinity), "00000inf"),
        ("{total_wct:%}", FilenameValues(totalWct: .infinity), "inf%"),
        ("{total_wct:z6%}", FilenameValues(totalWct: -3e307), " -inf%"),
        ("{total_wct:,.0f}", FilenameValues(totalWct: 1e22), "10,000,000,000,000,000,000,000"),
        ("{total_wct:.0f}", FilenameValues(totalWct: 2.5), "2"),
        ("{total_wct:.0f}", FilenameValues(totalWct: 3.5), "4"),
        ("{total_wct:.2f}", FilenameValues(totalWct: 1.005), "1.00"),
        ("{total_wct:.1e}", FilenameValues(totalWct: 1e300), "1.0e+300"),
        ("{total_wct:e}", FilenameValues(totalWct: .leastNonzeroMagnitude), "4.940656e-324"),
        ("{total_wct:.3}", FilenameValues(totalWct: 123.0), "1.23e+02"),
        ("{total_wct:.3g}", FilenameValues(totalWct: 123.0), "123"),
        ("{total_wct:#}", FilenameValues(totalWct: 1e16), "1.e+16"),
    ])
    func rendersEdgeValue(_ pattern: String, _ values: FilenameValues, _ expected: String) throws {
        #expect(try FilenameTemplate(pattern).render(values) == expected)
    }

    @Test("A float without a spec renders as Python's repr", arguments: [
        (0.024579, "0.024579"), (12.0, "12.0"), (1e-05, "1e-05"), (1e-4, "0.0001"), (1e16, "1e+16"),
        (9_999_999_999_999_998.0, "9999999999999998.0"), (123_456_789_012_345_678.0, "1.2345678901234568e+17"),
        (0.1 + 0.2, "0.30000000000000004"), (1.0 / 3, "0.3333333333333333"), (100.0, "100.0"),
        (1e22, "1e+22"), (2.5e-7, "2.5e-07"), (0.0, "0.0"), (-0.0, "-0.0"), (.leastNonzeroMagnitude, "5e-324"),
        (.greatestFiniteMagnitude, "1.7976931348623157e+308"), (-.infinity, "-inf"), (.nan, "nan"),
    ])
    func rendersFloatLikeRepr(_ seconds: Double, _ expected: String) throws {
        #expect(try FilenameTemplate("{total_wct}").render(FilenameValues(totalWct: seconds)) == expected)
    }

    @Test("Invalid patterns are refused at creation, naming the problem", arguments: [
        ("{epoch:q}", "Unknown format code 'q' for object of type 'int'"),
        ("{run_name:d}", "Unknown format code 'd' for object of type 'str'"),
        ("{total_wct:d}", "Unknown format code 'd' for object of type 'float'"),
        ("{epoch:.2d}", "Precision not allowed in integer format specifier"),
        ("{epoch:.2}", "Precision not allowed in integer format specifier"),
        ("{epoch:3dd}", "Invalid format specifier"),
        ("{epoch:.}", "Format specifier missing precision"),
        ("{epoch:,_}", "Cannot specify both ',' and '_'."),
        ("{run_name:,}", "Cannot specify ',' with 's'."),
        ("{sample:,x}", "Cannot specify ',' with 'x'."),
        ("{run_name:+}", "Sign not allowed in string format specifier"),
        ("{run_name:=9}", "'=' alignment not allowed in string format specifier"),
        ("{run_name:#}", "Alternate form (#) not allowed in string format specifier"),
        ("{epoch:z}", "Negative zero coercion (z) not allowed in integer format specifier"),
        ("{epoch:c}", "Format code 'c' is not supported"),
        ("{epoch:5000}", "larger than 4096"),
        ("ep{epoch", "'{' without a matching '}'"),
        ("ep}", "single '}'"),
        ("ep{epoch}}", "single '}'"),
        ("{}", "positional field {}"),
        ("{0}", "positional field {0}"),
        ("{epoch.x}", "attribute or index access in {epoch.x}"),
        ("{rank[0]}", "attribute or index access in {rank[0]}"),
        ("{run_name!r}", "conversions such as !r are not supported"),
        ("{epoch:{width}}", "fields cannot be nested"),
    ])
    func refusesInvalidPattern(_ pattern: String, _ problem: String) {
        let error = #expect(throws: CheckpointError.self) { try FilenameTemplate(pattern) }
        #expect(error?.code == .invalidTemplate)
        #expect(error?.message.contains(problem) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("template \"\(pattern)\"") == true, "\(error?.message ?? "")")
    }

    @Test func unknownVariableListsTheKnownOnes() {
        let error = #expect(throws: CheckpointError.self) { try FilenameTemplate("ep{epochs}.pt") }
        #expect(error?.message == """
            unknown variable {epochs} in template "ep{epochs}.pt"; known variables: run_name, rank, \
            local_rank, world_size, local_world_size, node_rank, epoch, batch, batch_in_epoch, sample, \
            sample_in_epoch, token, token_in_epoch, total_wct, epoch_wct, batch_wct
            """)
    }

    @Test func refusesVariablesOutsideTheAllowedOnes() throws {
        let error = #expect(throws: CheckpointError.self) {
            try FilenameTemplate("ep{epoch}-rank{rank}", allowedVariables: [.rank, .runName])
        }
        #expect(error?.code == .invalidTemplate)
        #expect(error?.message == """
            variable {epoch} is not allowed in template "ep{epoch}-rank{rank}"; allowed variables: run_name, rank
            """)
        #expect(try FilenameTemplate("{run_name}-rank{rank}", allowedVariables: [.rank, .runName])
            .render(Self.values) == "my-run-rank5")
    }

    @Test func reportsItsPatternAndVariables() throws {
        let pattern = "{run_name}/ep{epoch:03d}-ba{batch}-{epoch}.pt"
        let template = try FilenameTemplate(pattern)
        #expect(template.pattern == pattern)
        #expect(template.description == pattern)
        #expect(template.variables == [.runName, .epoch, .batch])
        #expect(template.contains(.epoch))
        #expect(!template.contains(.rank))
        #expect(try FilenameTemplate("{{rank}}").variables.isEmpty)
        #expect(try FilenameTemplate(pattern) == template)
        #expect(try FilenameTemplate("ep{epoch}") != template)
    }

    @Test func pathsRefuseAnEmptyRunNameAndANameThatIsOnlyAnExtension() throws {
        var values = Self.values
        values.runName = ""
        for pattern in ["{run_name}.pt", "{run_name}/checkpoints/ep{epoch}.pt", "ep{epoch}-{run_name}"] {
            let error = #expect(throws: CheckpointError.self) { try FilenameTemplate(pattern).renderPath(values) }
            #expect(error?.code == .invalidTemplate)
            #expect(error?.message.contains("{run_name} in template \"\(pattern)\" expands to nothing") == true, "\(String(describing: error))")
            #expect(error?.message.contains("TrainingState.runName") == true)
        }
        let folder = #expect(throws: CheckpointError.self) {
            try FilenameTemplate("{run_name}/checkpoints").renderPath(values, isFolder: true)
        }
        #expect(folder?.code == .invalidTemplate)
        for pattern in [".pt", "out/.safetensors", "out/.tar.gz", "ckpts/"] {
            let error = #expect(throws: CheckpointError.self) { try FilenameTemplate(pattern).renderPath(values) }
            #expect(error?.code == .invalidTemplate, "\(pattern)")
        }
        // A run name that fills the field, a folder path, and an empty name padded by its spec are fine.
        values.runName = "r"
        #expect(try FilenameTemplate("{run_name}/ep{epoch}.pt").renderPath(values) == "r/ep\(values.epoch).pt")
        #expect(try FilenameTemplate("{run_name}/checkpoints").renderPath(values, isFolder: true) == "r/checkpoints")
        values.runName = ""
        #expect(try FilenameTemplate("x{run_name:>2}.pt").renderPath(values) == "x  .pt")
    }

    @Test(
        "Random specs and values agree with python3",
        arguments: (0..<40).map(FilenameTemplateTests.RandomCase.init(seed:)))
    func agreesWithPython(_ randomCase: RandomCase) throws {
        let python = try Python.format(randomCase.pattern, randomCase.values)
        if let refusal = python.refusal {
            let error = #expect(throws: CheckpointError.self, "python3 refused: \(refusal)") {
                try FilenameTemplate(randomCase.pattern)
            }
            #expect(error?.code == .invalidTemplate)
        } else {
            #expect(try FilenameTemplate(randomCase.pattern).render(randomCase.values) == python.output)
        }
    }
}

// Helpers are nested so that their names cannot clash with the shared test support.
extension FilenameTemplateTests {
    /// A random field, `{variable:spec}`, and random values; the same seed always gives the same case.
    struct RandomCase: Sendable, CustomTestStringConvertible {
        var pattern: String
        var values: FilenameValues
        private var variable: FilenameTemplate.Variable

        var testDescription: String { "\(pattern) with \(variable.rawValue)=\(Python.argument(values[variable]))" }

        init(seed: UInt64) {
            var random = SeededGenerator(state: seed)
            variable = random.pick(FilenameTemplate.Variable.allCases)
            let types = switch variable.kind {
            case .string: ["", "s"]
            case .integer: ["", "b", "d", "o", "x", "X", "n", "e", "E", "f", "F", "g", "G", "%"]
            case .float: ["", "e", "E", "f", "F", "g", "G", "n", "%"]
            }
            // Mostly well-formed specs, so that most cases compare output rather than refusals.
            var spec = ""
            if random.chance(0.3) {
                if random.chance(0.5) { spec.append(random.pick("*0_é:x")) }
                spec.append(random.pick("<>^="))
            }
            if random.chance(0.25) { spec.append(random.pick("+- ")) }
            if random.chance(0.1) { spec += "z" }
            if random.chance(0.2) { spec += "#" }
            if random.chance(0.25) { spec += "0" }
            if random.chance(0.5) { spec += String(Int.random(in: 0...20, using: &random)) }
            if random.chance(0.2) { spec.append(random.pick(",_")) }
            if random.chance(0.35) { spec += "." + String(Int.random(in: 0...12, using: &random)) }
            spec += random.chance(0.9) ? random.pick(types) : String(random.pick("bdoxXneEfFgG%s"))
            pattern = "{\(variable.rawValue)\(spec.isEmpty ? "" : ":")\(spec)}"

            values = FilenameValues(
                runName: random.pick(["", "run", "my-run-42", "ünïcødé", "a b"]),
                rank: random.integer(), localRank: random.integer(), worldSize: random.integer(),
                localWorldSize: random.integer(), nodeRank: random.integer(), epoch: random.integer(),
                batch: random.integer(), batchInEpoch: random.integer(), sample: random.integer(),
                sampleInEpoch: random.integer(), token: random.integer(), tokenInEpoch: random.integer(),
                totalWct: random.seconds(), epochWct: random.seconds(), batchWct: random.seconds())
        }
    }

    /// A seedable generator, so that a failing case can be replayed.
    struct SeededGenerator: RandomNumberGenerator {
        var base: SplitMix64

        init(state: UInt64) { base = SplitMix64(seed: state) }

        mutating func next() -> UInt64 { base.next() }

        mutating func chance(_ probability: Double) -> Bool {
            Double.random(in: 0..<1, using: &self) < probability
        }

        mutating func pick<Options: Collection>(_ options: Options) -> Options.Element {
            options[options.index(options.startIndex, offsetBy: Int.random(in: 0..<options.count, using: &self))]
        }

        /// Small, large and negative counters alike.
        mutating func integer() -> Int {
            let magnitude = pick([10, 1000, 10_000_000, 1_000_000_000_000_000_000])
            return Int.random(in: -magnitude...magnitude, using: &self)
        }

        /// Durations of every scale, with zeros, whole numbers and non-finite values among them.
        mutating func seconds() -> Double {
            switch Int.random(in: 0..<10, using: &self) {
            case 0: pick([0, -0.0, .infinity, -.infinity, .nan, 1e16, 1e-4, 2.5])
            case 1: Double(Int.random(in: -1_000_000...1_000_000, using: &self))
            default: (chance(0.3) ? -1 : 1) * pow(10, Double.random(in: -8...20, using: &self))
            }
        }
    }

    /// Runs CPython's `str.format`, the reference the templates must match.
    enum Python {
        private static let script = """
            import sys
            pattern, *pairs = sys.argv[1:]
            values = {}
            for pair in pairs:
                name, text = pair.split("=", 1)
                values[name] = text if name == "run_name" else float(text) if name.endswith("_wct") else int(text)
            try:
                print(pattern.format(**values), end="")
            except ValueError as error:
                sys.exit(f"ValueError: {error}")
            """

        /// Python's rendering of `pattern`, or the reason Python refused it.
        static func format(_ pattern: String, _ values: FilenameValues) throws -> (output: String, refusal: String?) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-X", "utf8", "-c", script, pattern]
                + FilenameTemplate.Variable.allCases.map { "\($0.rawValue)=\(argument(values[$0]))" }
            let output = Pipe()
            let errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            try #require(process.terminationStatus != 127, "python3 is not on PATH: \(errorText)")
            try #require(process.terminationStatus == 0 || errorText.hasPrefix("ValueError"), "\(errorText)")
            return (text, process.terminationStatus == 0 ? nil : errorText)
        }

        /// A value as Python's `int()` or `float()` reads it back exactly.
        static func argument(_ value: FormatSpec.Value) -> String {
            switch value {
            case .string(let text): text
            case .integer(let number): String(number)
            case .float(let number): String(number)
            }
        }
    }
}
