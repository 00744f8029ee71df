// swift-tools-version: 6.1
import PackageDescription

/// Every Swift target's settings: Swift 6 with the upcoming features the code is written for.
let swift6: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "swift-checkpointing",
    products: [
        .library(name: "Checkpointing", targets: ["Checkpointing"]),
        .library(name: "CheckpointingS3", targets: ["CheckpointingS3"]),
        .library(name: "CheckpointingMPI", targets: ["CheckpointingMPI"]),
        .executable(name: "ckpt", targets: ["ckpt"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/attaswift/BigInt.git", from: "6.0.1"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        // `swift package generate-documentation`: the DocC catalogs of the library's modules.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin.git", from: "1.5.0"),
        // CheckpointingS3: HTTP on AsyncHTTPClient and SwiftNIO.
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // XXH3-64 from Debian's libxxhash-dev: the per-tensor checksum of the native format.
        .systemLibrary(
            name: "CXXHash",
            pkgConfig: "libxxhash",
            providers: [.apt(["libxxhash-dev"])]
        ),
        // zlib from Debian's zlib1g-dev: CRC-32 for zip entries, and the gzip codec.
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // CRC-32 for zip records from Intel's ISA-L (Debian's libisal-dev): 2.7x zlib's speed here.
        .systemLibrary(name: "CISAL", pkgConfig: "libisal", providers: [.apt(["libisal-dev"])]),
        // The other codecs, each from Debian's own library.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CLZMA", pkgConfig: "liblzma", providers: [.apt(["liblzma-dev"])]),
        // Debian's libbz2-dev ships no pkg-config file.
        .systemLibrary(name: "CBZip2", providers: [.apt(["libbz2-dev"])]),
        .systemLibrary(name: "CLZO", pkgConfig: "lzo2", providers: [.apt(["liblzo2-dev"])]),
        .target(
            name: "Checkpointing",
            dependencies: [
                "CXXHash",
                "CISAL",
                "CZlib",
                "CZstd",
                "CLZ4",
                "CLZMA",
                "CBZip2",
                "CLZO",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "BigInt", package: "BigInt"),
            ],
            swiftSettings: swift6
        ),
        // S3 object storage: a module of its own on AsyncHTTPClient, so the core builds and
        // works without it.
        .target(
            name: "CheckpointingS3",
            dependencies: [
                "Checkpointing",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swift6
        ),
        // Open MPI process group: a module of its own over Debian's libopenmpi-dev, so the core
        // builds and works without it.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .target(
            name: "CheckpointingMPI",
            dependencies: ["Checkpointing", "CMPI", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swift6
        ),

        // The `ckpt` tool: the commands as a library (`CheckpointCLI`, which the tests run
        // in-process), the benchmarks and the demo beside them, and `main`.
        .target(
            name: "CheckpointToolSupport",
            dependencies: ["Checkpointing"],
            swiftSettings: swift6
        ),
        .target(
            name: "CheckpointBench",
            dependencies: ["Checkpointing", "CheckpointingS3", "CheckpointToolSupport"],
            swiftSettings: swift6
        ),
        .target(
            name: "CheckpointDemo",
            dependencies: [
                "Checkpointing",
                "CheckpointToolSupport",
                .product(name: "BigInt", package: "BigInt"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swift6
        ),
        .target(
            name: "CheckpointCLI",
            dependencies: [
                "Checkpointing",
                // s3:// paths in every command.
                "CheckpointingS3",
                // `ckpt convert --sharded` and `ckpt bench sharded` run under mpirun.
                "CheckpointingMPI",
                "CheckpointToolSupport",
                "CheckpointBench",
                "CheckpointDemo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swift6
        ),
        .executableTarget(name: "ckpt", dependencies: ["CheckpointCLI"], swiftSettings: swift6),

        // Shared by the test targets: temporary folders, fixtures, and Python as a cross-check.
        .target(
            name: "CheckpointingTestSupport",
            dependencies: ["Checkpointing", .product(name: "Crypto", package: "swift-crypto")],
            path: "Tests/Support",
            swiftSettings: swift6
        ),
        // A test-only program that the MPI tests start under `mpirun`.
        .executableTarget(
            name: "mpi-worker",
            dependencies: [
                "CheckpointingMPI", "Checkpointing", "CheckpointingS3", "CheckpointingTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tests/MPIWorker",
            swiftSettings: swift6
        ),
        .testTarget(
            name: "CheckpointingTests",
            dependencies: [
                "Checkpointing",
                "CheckpointingTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "BigInt", package: "BigInt"),
            ],
            swiftSettings: swift6
        ),
        .testTarget(
            name: "CheckpointingS3Tests",
            dependencies: [
                "CheckpointingS3", "Checkpointing", "CheckpointCLI", "CheckpointingTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swift6
        ),
        .testTarget(
            name: "CheckpointingMPITests",
            dependencies: ["mpi-worker", "CheckpointingMPI", "Checkpointing", "CheckpointingTestSupport"],
            swiftSettings: swift6
        ),
        .testTarget(
            name: "CheckpointCLITests",
            dependencies: [
                "CheckpointCLI", "CheckpointDemo", "Checkpointing", "CheckpointingTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swift6
        ),
    ]
)
