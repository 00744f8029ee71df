import BigInt

/// Durations as Python's `datetime.timedelta(days, seconds, microseconds)`, which is how
/// Composer stores the timestamp's wall-clock fields.
///
/// A timedelta counts whole microseconds: writing rounds a ``Duration`` to the nearest
/// microsecond (ties to even, as `timedelta` itself rounds), so sub-microsecond parts, which a
/// `ContinuousClock` measurement has, do not survive a `.pt` file. Its range is ±999,999,999
/// days; a longer duration is refused.
enum TimedeltaCoding {
    static let maximumDays = 999_999_999
    private static let microsecondsPerDay = BigInt(86_400_000_000)
    private static let attosecondsPerMicrosecond = BigInt(1_000_000_000_000)

    /// The duration of `timedelta(days, seconds, microseconds)`.
    static func duration(days: BigInt, seconds: BigInt, microseconds: BigInt) throws(CheckpointError) -> Duration {
        let total = days * microsecondsPerDay + seconds * 1_000_000 + microseconds
        let (wholeSeconds, rest) = floorDivide(total, BigInt(1_000_000))
        guard let secondsComponent = Int64(exactly: wholeSeconds) else {
            throw CheckpointError(.malformed, "a timedelta of \(days) days is out of range")
        }
        return Duration(secondsComponent: secondsComponent, attosecondsComponent: Int64(rest) * 1_000_000_000_000)
    }

    /// `(days, seconds, microseconds)` as Python normalizes them: `0 <= seconds < 86400`,
    /// `0 <= microseconds < 1_000_000`, the sign in `days`.
    static func components(_ duration: Duration) throws(CheckpointError) -> (days: Int, seconds: Int, microseconds: Int) {
        let (seconds, attoseconds) = duration.components
        let total = BigInt(seconds) * 1_000_000_000_000_000_000 + BigInt(attoseconds)
        var (microseconds, remainder) = floorDivide(total, attosecondsPerMicrosecond)
        let twice = remainder * 2
        if twice > attosecondsPerMicrosecond || (twice == attosecondsPerMicrosecond && microseconds.isOdd) {
            microseconds += 1
        }
        let (days, inDay) = floorDivide(microseconds, microsecondsPerDay)
        guard let dayCount = Int(exactly: days), abs(dayCount) <= maximumDays else {
            throw CheckpointError(
                .invalidArgument,
                "the duration \(duration) is longer than Python's timedelta can hold (999999999 days), so it cannot be saved in a .pt file")
        }
        let inDayValue = Int(inDay)
        return (dayCount, inDayValue / 1_000_000, inDayValue % 1_000_000)
    }

    /// Division rounding toward negative infinity, with a remainder in `0..<divisor`.
    private static func floorDivide(_ value: BigInt, _ divisor: BigInt) -> (BigInt, BigInt) {
        var (quotient, remainder) = value.quotientAndRemainder(dividingBy: divisor)
        if remainder < 0 {
            quotient -= 1
            remainder += divisor
        }
        return (quotient, remainder)
    }
}

extension BigInt {
    fileprivate var isOdd: Bool { self % 2 != 0 }
}
