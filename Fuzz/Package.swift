// swift-tools-version: 6.1
import Foundation
import PackageDescription

// The libFuzzer harness of swift-checkpointing: one executable whose targets each run one
// parser of untrusted bytes (`scripts/fuzz.sh --list`). It is a package of its own, built only
// by `scripts/fuzz.sh` (with the sanitizers, into `.build-fuzz`), because an executable
// without `main` cannot link in the main package's ordinary build.
//
// The harness reaches the parsers' internal entry points with `@testable import`, which needs
// the modules built with `-enable-testing`: the script passes it.

// A path dependency's identity is its folder's name, whatever the checkout is called.
let mainPackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let mainIdentity = mainPackage.lastPathComponent

let package = Package(
    name: "swift-checkpointing-fuzz",
    dependencies: [
        .package(path: ".."),
        // The main package's own requirement: the seeds build values of any size.
        .package(url: "https://github.com/attaswift/BigInt.git", from: "6.0.1"),
    ],
    targets: [
        // S3's response parsers, compiled from the CheckpointingS3 sources they link to, without
        // the HTTP stack that the rest of that module needs (and that would triple the build).
        .target(name: "S3Responses", dependencies: [.product(name: "Checkpointing", package: mainIdentity)]),
        .executableTarget(
            name: "checkpointing-fuzz",
            dependencies: [
                "S3Responses", .product(name: "Checkpointing", package: mainIdentity),
                .product(name: "BigInt", package: "BigInt"),
            ],
            path: "Sources/CheckpointingFuzz"
        ),
    ]
)

for target in package.targets {
    target.swiftSettings = [
        .swiftLanguageMode(.v6),
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("InternalImportsByDefault"),
        .enableUpcomingFeature("MemberImportVisibility"),
    ]
}
