/// An amount of training in one unit, as Composer writes it: `1ep`, `500ba`, `2048sp`,
/// `1000000tok`, `600sec`, `0.25dur`.
public struct TrainingTime: Sendable, Hashable, CustomStringConvertible {
    /// The unit of a ``TrainingTime``.
    public enum Unit: String, Sendable, CaseIterable {
        case epoch = "ep"
        case batch = "ba"
        case sample = "sp"
        case token = "tok"
        /// Wall-clock seconds of training.
        case second = "sec"
        /// A fraction of the whole training duration.
        case duration = "dur"
    }

    public var value: Double
    public var unit: Unit

    public init(_ value: Double, _ unit: Unit) {
        self.value = value
        self.unit = unit
    }

    /// Parses Composer's time string.
    ///
    /// - Throws: ``CheckpointError`` (`.invalidArgument`) for an unknown unit, a missing or
    ///   non-positive value, or a fraction in a unit that counts whole things (`1.5ba`).
    public init(parsing text: String) throws(CheckpointError) {
        let trimmed = text.trimmingSpaces
        guard let unitStart = trimmed.firstIndex(where: { $0.isLetter }),
            let unit = Unit(rawValue: String(trimmed[unitStart...]).lowercased())
        else {
            throw CheckpointError(
                .invalidArgument,
                "\"\(text)\" is not a training time; write a number and a unit: \(Unit.allCases.map { "1" + $0.rawValue }.joined(separator: ", "))")
        }
        guard let value = Double(trimmed[..<unitStart]), value.isFinite, value > 0 else {
            throw CheckpointError(.invalidArgument, "\"\(text)\" needs a positive number before its unit")
        }
        if [.epoch, .batch, .sample, .token].contains(unit), value.rounded() != value {
            throw CheckpointError(.invalidArgument, "\"\(text)\": \(unit.rawValue) counts whole units")
        }
        self.init(value, unit)
    }

    public var description: String {
        let number = value.rounded() == value && abs(value) < 1e15 ? String(Int(value)) : String(value)
        return number + unit.rawValue
    }

    /// How much of `unit` the timestamp has trained (`second` in wall-clock seconds).
    func count(in timestamp: Timestamp) -> Double? {
        switch unit {
        case .epoch: Double(timestamp.epoch)
        case .batch: Double(timestamp.batch)
        case .sample: Double(timestamp.sample)
        case .token: Double(timestamp.token)
        case .second: timestamp.totalWct.secondsValue
        case .duration: nil
        }
    }
}

extension String {
    fileprivate var trimmingSpaces: Substring {
        var text = Substring(self)
        while text.first?.isWhitespace == true { text.removeFirst() }
        while text.last?.isWhitespace == true { text.removeLast() }
        return text
    }
}
