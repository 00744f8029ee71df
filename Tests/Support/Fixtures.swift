public import Foundation
import Testing

/// The interop fixtures in `Tests/Fixtures`: files written by the real peers (torch, safetensors,
/// Composer, huggingface_hub), described by their `expected.json`. Read in place, never edited.
public enum Fixtures {
    /// `Tests/Support/Fixtures.swift` is three levels below the package root.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // Support
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()  // package root

    public static let folder: String = packageRoot.appendingPathComponent("Tests/Fixtures").standardizedFileURL.path

    /// The absolute path of a fixture, given relative to the fixtures folder (`safetensors/x`).
    public static func path(_ relative: String) -> String { folder + "/" + relative }

    /// `expected.json`'s description of one fixture.
    public static func expected(_ relative: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path("expected.json")))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let files = try #require(root["files"] as? [String: Any])
        return try #require(files[relative] as? [String: Any], "expected.json describes no \(relative)")
    }
}
