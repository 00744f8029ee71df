/// When the ``CheckpointSaver`` saves, as Composer's `save_interval`.
public enum SaveInterval: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    /// Every `time` of training (`"1ep"`, `"500ba"`, `"0.25dur"`, ...).
    case every(TrainingTime)
    /// Whenever the closure says so, at batch and epoch ends.
    case custom(@Sendable (_ timestamp: Timestamp, _ event: TrainingEvent) -> Bool)

    /// A time string; an invalid one traps, so use ``parse(_:)`` for strings from users.
    public init(stringLiteral value: String) {
        do { self = .every(try TrainingTime(parsing: value)) } catch { preconditionFailure("\(error)") }
    }

    /// An integer is a number of epochs, as in Composer.
    public init(integerLiteral value: Int) { self = .every(TrainingTime(Double(value), .epoch)) }

    /// Parses a time string from a user.
    public static func parse(_ text: String) throws(CheckpointError) -> SaveInterval {
        .every(try TrainingTime(parsing: text))
    }

    /// The event at which this interval is checked: epoch intervals at epoch ends, the rest at
    /// batch ends (Composer's `EPOCH_CHECKPOINT` and `BATCH_CHECKPOINT`).
    var event: TrainingEvent? {
        guard case .every(let time) = self else { return nil }
        return time.unit == .epoch ? .epochEnd : .batchEnd
    }
}

/// A point in a training loop where the saver may act.
public enum TrainingEvent: Sendable, Hashable {
    case batchEnd
    case epochEnd
    case fitEnd
}

/// Composer's interval rule: save when a multiple of the interval was crossed since the last
/// event, at the interval's event; and once at the end of training, unless that batch was just
/// saved (so no double save when an interval and the end coincide).
struct IntervalSchedule {
    let interval: SaveInterval
    /// The training length, needed for `dur` intervals.
    let maxDuration: TrainingTime?
    private(set) var previous: Timestamp
    private(set) var lastSavedBatch: Int?

    init(interval: SaveInterval, maxDuration: TrainingTime?, start: Timestamp) throws(CheckpointError) {
        if case .every(let time) = interval, time.unit == .duration {
            guard let maxDuration, maxDuration.unit != .duration else {
                throw CheckpointError(
                    .invalidArgument, "a save interval in dur (\(time)) needs the training's maxDuration in another unit")
            }
        }
        self.interval = interval
        self.maxDuration = maxDuration
        self.previous = start
    }

    /// Whether to save at `event` with the run at `timestamp`; advances the schedule.
    mutating func shouldSave(at event: TrainingEvent, timestamp: Timestamp) -> Bool {
        defer { previous = timestamp }
        if event == .fitEnd { return timestamp.batch != lastSavedBatch }
        let due: Bool
        switch interval {
        case .custom(let decide):
            due = decide(timestamp, event)
        case .every(let time):
            guard event == interval.event else { return false }
            due = crossed(time, from: previous, to: timestamp)
        }
        return due
    }

    /// Records that the checkpoint of this batch was saved.
    mutating func didSave(at timestamp: Timestamp) { lastSavedBatch = timestamp.batch }

    /// Whether `floor(count / interval)` changed between two timestamps.
    private func crossed(_ time: TrainingTime, from before: Timestamp, to after: Timestamp) -> Bool {
        let (old, new): (Double, Double)
        if time.unit == .duration, let maxDuration {
            // Fractions of the training length.
            old = (maxDuration.count(in: before) ?? 0) / maxDuration.value
            new = (maxDuration.count(in: after) ?? 0) / maxDuration.value
        } else {
            old = time.count(in: before) ?? 0
            new = time.count(in: after) ?? 0
        }
        return (old / time.value).rounded(.down) != (new / time.value).rounded(.down)
    }
}
