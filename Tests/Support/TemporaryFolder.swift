public import Foundation

/// A fresh folder for one test.
///
/// When it goes away, every native checkpoint left in it (a float-split `.safetensors.fsz`
/// one decoded first) is read again by Python's `safetensors` package
/// (``PythonSafetensors/crossCheck(folder:)``), so every native file the tests write is also
/// checked against the reference reader; every `.pt` file is checked by
/// Python's `zipfile` and `pickletools` (``PythonTorchZip/crossCheck(folder:)``) for what
/// `torch.load(weights_only=True)` needs; every Hugging Face sharded checkpoint this library
/// opens is read by Python's `safetensors` shard by shard and its index held against the shards
/// (``PythonHuggingFace/crossCheck(folder:)``); then the folder is removed. (So a test that
/// leaves a deliberately damaged file behind names it otherwise.)
public final class TemporaryFolder {
    public let url: URL
    public var path: String { url.path }

    public init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
    }

    /// The path of `name` inside the folder.
    public func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    deinit {
        PythonSafetensors.crossCheck(folder: path)
        PythonTorchZip.crossCheck(folder: path)
        PythonHuggingFace.crossCheck(folder: path)
        try? FileManager.default.removeItem(at: url)
    }
}

/// Runs `body` with the path of a fresh ``TemporaryFolder``.
public func withTemporaryFolder<R>(_ body: (String) throws -> R) throws -> R {
    let folder = try TemporaryFolder()
    return try withExtendedLifetime(folder) { try body(folder.path) }
}
