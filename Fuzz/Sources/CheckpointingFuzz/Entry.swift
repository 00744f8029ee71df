#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// libFuzzer's entry points. libFuzzer owns `main` and its flags, so the harness is steered by
/// the environment, read once before the first input:
///
/// - `CHECKPOINTING_FUZZ_TARGET=NAME`: the target to fuzz;
/// - `CHECKPOINTING_FUZZ_LIST=1`: print every target (`name`, malloc limit in MiB, summary,
///   tab-separated) and exit;
/// - `CHECKPOINTING_FUZZ_SEEDS=FOLDER` (with `CHECKPOINTING_FUZZ_FIXTURES=Tests/Fixtures`): write
///   the target's seed inputs into FOLDER and exit.
///
/// `scripts/fuzz.sh` sets them; see its header for running a target by hand.
nonisolated(unsafe) private var selected: FuzzTarget?

private func environment(_ name: String) -> String? {
    getenv(name).map { String(cString: $0) }
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    if environment("CHECKPOINTING_FUZZ_LIST") != nil {
        for target in FuzzTargets.all { print("\(target.name)\t\(target.mallocLimitMB)\t\(target.summary)") }
        exit(0)
    }
    guard let name = environment("CHECKPOINTING_FUZZ_TARGET"), let target = FuzzTargets.named(name) else {
        let names = FuzzTargets.all.map(\.name).joined(separator: " ")
        FileHandle.standardError.write(Data("checkpointing-fuzz: set CHECKPOINTING_FUZZ_TARGET to one of: \(names)\n".utf8))
        exit(64)
    }
    if let folder = environment("CHECKPOINTING_FUZZ_SEEDS") {
        let count = SeedWriter.write(target, to: folder, fixtures: environment("CHECKPOINTING_FUZZ_FIXTURES"))
        print("\(target.name): \(count) seeds in \(folder)")
        exit(0)
    }
    // Whatever the target builds once and keeps (its seeds, fixed archives, the lazy globals
    // its parser initialises on first use) is built now, out of LeakSanitizer's sight.
    Sanitizers.ignoringLeaks {
        target.run(UnsafeRawBufferPointer(start: nil, count: 0))
        for seed in target.seeds() { seed.bytes.withUnsafeBytes(target.run) }
    }
    selected = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selected?.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
