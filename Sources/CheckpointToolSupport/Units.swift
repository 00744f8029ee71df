import Foundation

/// Formatting for people: sizes, rates and aligned tables.
public enum Units {
    /// A byte count in decimal units: `1.49 GB`.
    public static func bytes(_ count: Int) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(count)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.2f %@", value, units[unit])
    }

    /// Bytes per second in GB/s, or `-` for no time.
    public static func rate(bytes: Int, seconds: Double) -> String {
        seconds > 0 ? String(format: "%.2f GB/s", Double(bytes) / seconds / 1e9) : "-"
    }

    /// Rows padded into columns; the columns in `rightAligned` are aligned right.
    public static func table(_ rows: [[String]], rightAligned: Set<Int> = []) -> String {
        guard let width = rows.map(\.count).max() else { return "" }
        var widths = Array(repeating: 0, count: width)
        for row in rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        return rows.map { row in
            row.enumerated().map { index, cell in
                let padding = String(repeating: " ", count: widths[index] - cell.count)
                return rightAligned.contains(index) ? padding + cell : cell + padding
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n")
    }
}
