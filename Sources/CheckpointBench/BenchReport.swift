import Foundation

/// A benchmark's figures, printable as a table or as JSON.
public protocol BenchReport {
    /// The figures for people: a line saying what was measured, then a table.
    func text() -> String
    /// The figures for programs: plain JSON values (numbers in seconds and bytes).
    func json() -> [String: Any]
}

extension BenchReport {
    /// The report as ``text()``, or as one line of JSON with sorted keys.
    public func rendered(asJSON: Bool) throws -> String {
        guard asJSON else { return text() }
        let data = try JSONSerialization.data(withJSONObject: json(), options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
