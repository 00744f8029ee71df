// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-checkpointing",
    products: [
        .library(name: "Checkpointing", targets: ["Checkpointing"]),
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
            ]
        ),
        .target(
            name: "CheckpointCLI",
            dependencies: [
                "Checkpointing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(name: "ckpt", dependencies: ["CheckpointCLI"]),
        // Shared by the test targets: temporary folders, fixtures, and Python as a cross-check.
        .target(
            name: "CheckpointingTestSupport",
            dependencies: ["Checkpointing", .product(name: "Crypto", package: "swift-crypto")],
            path: "Tests/Support"
        ),
        .testTarget(
            name: "CheckpointingTests",
            dependencies: [
                "Checkpointing",
                "CheckpointingTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "BigInt", package: "BigInt"),
            ]
        ),
        .testTarget(
            name: "CheckpointCLITests",
            dependencies: ["CheckpointCLI", "Checkpointing", "CheckpointingTestSupport"]
        ),
    ]
)

// S3 object storage: a module of its own on AsyncHTTPClient, so the core builds and
// works without it. Kept in one block so it merges cleanly with changes to the lists above.
package.dependencies += [
    .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
]
package.products += [.library(name: "CheckpointingS3", targets: ["CheckpointingS3"])]
package.targets += [
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
        ]
    ),
    .testTarget(
        name: "CheckpointingS3Tests",
        dependencies: [
            "CheckpointingS3", "Checkpointing", "CheckpointCLI", "CheckpointingTestSupport",
            .product(name: "Crypto", package: "swift-crypto"),
        ]
    ),
]
package.targets.first { $0.name == "CheckpointCLI" }?.dependencies.append("CheckpointingS3")

// Open MPI process group: a module of its own over Debian's libopenmpi-dev, so the
// core builds and works without it. `mpi-worker` is a test-only program that the MPI tests start
// under `mpirun`. Kept in one block so it merges cleanly with changes to the lists above.
package.products += [.library(name: "CheckpointingMPI", targets: ["CheckpointingMPI"])]
package.targets += [
    .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
    .target(
        name: "CheckpointingMPI",
        dependencies: ["Checkpointing", "CMPI", .product(name: "Logging", package: "swift-log")]
    ),
    .executableTarget(
        name: "mpi-worker",
        dependencies: [
            "CheckpointingMPI", "Checkpointing", "CheckpointingTestSupport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ],
        path: "Tests/MPIWorker"
    ),
    .testTarget(
        name: "CheckpointingMPITests",
        dependencies: ["mpi-worker", "CheckpointingMPI", "Checkpointing", "CheckpointingTestSupport"]
    ),
]
// `ckpt convert --sharded` and `ckpt bench --sharded` run under mpirun.
package.targets.first { $0.name == "CheckpointCLI" }?.dependencies.append("CheckpointingMPI")

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + [
        .swiftLanguageMode(.v6),
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("InternalImportsByDefault"),
        .enableUpcomingFeature("MemberImportVisibility"),
    ]
}
