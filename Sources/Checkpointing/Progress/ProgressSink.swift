/// A sink that counts the bytes written through it into a ``CheckpointProgress``, in front of
/// the sink that takes them; overwrites (a header filled in at the end) are not counted.
final class ProgressSink: ByteSink {
    private let next: any ByteSink
    private let progress: CheckpointProgress

    /// `next` behind a counting sink, seekable when `next` is (the native writer checksums in
    /// the same pass as it writes only into a seekable sink).
    static func counting(into next: any ByteSink, _ progress: CheckpointProgress) -> any ByteSink {
        if let seekable = next as? any SeekableByteSink { return SeekableProgressSink(next: seekable, progress: progress) }
        return ProgressSink(next: next, progress: progress)
    }

    private init(next: any ByteSink, progress: CheckpointProgress) {
        self.next = next
        self.progress = progress
    }

    var position: Int { next.position }

    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        try next.write(bytes)
        progress.advance(by: bytes.count)
    }
}

/// ``ProgressSink`` in front of a seekable sink.
final class SeekableProgressSink: SeekableByteSink {
    private let next: any SeekableByteSink
    private let progress: CheckpointProgress

    init(next: any SeekableByteSink, progress: CheckpointProgress) {
        self.next = next
        self.progress = progress
    }

    var position: Int { next.position }

    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        try next.write(bytes)
        progress.advance(by: bytes.count)
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(CheckpointError) {
        try next.write(bytes, at: offset)
    }
}
