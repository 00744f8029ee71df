import Foundation

/// The header of a safetensors file, validated by every rule of the reference reader before
/// any offset in it is trusted (listed in the DocC article "The formats on disk").
struct SafetensorsHeader {
    /// One tensor's entry; offsets are relative to the start of the data buffer.
    struct Entry {
        var name: String
        var dtype: DType
        var shape: [Int]
        var begin: Int
        var end: Int
    }

    /// The largest header the reference reader accepts.
    static let maximumLength = 100_000_000

    /// Entries in file order (by offset).
    var entries: [Entry]
    /// `__metadata__`, string to string.
    var metadata: [String: String]
    /// Where the data buffer starts: 8 + the header length.
    var dataStart: Int

    /// Parses and validates the header of the file whose bytes are `bytes`.
    ///
    /// Refuses, with the byte offset where it can: fewer than 8 bytes; a header length over
    /// 100 MB or past the end of the file; a header that is not a UTF-8 JSON object; unknown
    /// dtypes; negative or overflowing shapes; offsets that do not match the shape's size;
    /// tensors that overlap, leave gaps, or run past the end; trailing bytes.
    init(parsing bytes: UnsafeRawBufferPointer, maximumLength: Int = SafetensorsHeader.maximumLength) throws(CheckpointError) {
        guard bytes.count >= 8 else {
            throw CheckpointError(
                .malformed, "the file is \(bytes.count) bytes long, too short for a safetensors header (at least 8)")
        }
        let declared = bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard declared <= UInt64(maximumLength) else {
            throw CheckpointError(
                declared <= UInt64(Self.maximumLength) ? .limitExceeded : .malformed,
                "the header claims \(declared) bytes, over the limit of \(maximumLength) (ReadingLimits.maximumHeaderBytes; ckpt: --max-header-bytes; safetensors itself stops at \(Self.maximumLength)); the file is corrupt or not a safetensors file",
                offset: 0)
        }
        let length = Int(declared)
        guard 8 + length <= bytes.count else {
            throw CheckpointError(
                .malformed,
                "the header claims \(length) bytes but the file has only \(bytes.count - 8) after the length; the file is truncated",
                offset: 0)
        }
        try self.init(json: UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + length)]), dataLength: bytes.count - 8 - length)
    }

    /// Parses the header's JSON alone (`json`, which starts at byte 8 of its file), for a data
    /// buffer of `dataLength` bytes, or one that ends where its last tensor does when `nil`
    /// (a stream whose end has not been seen yet).
    init(json: UnsafeRawBufferPointer, dataLength: Int?) throws(CheckpointError) {
        guard json.count > 0, json[0] == UInt8(ascii: "{") else {
            throw CheckpointError(.malformed, "the header does not start with a JSON object '{'", offset: 8)
        }
        let raw: RawHeader
        do {
            raw = try JSONDecoder().decode(RawHeader.self, from: Data(json))
        } catch {
            throw CheckpointError(
                .malformed, "the header is not a valid safetensors JSON object: \(Self.describe(error))", offset: 8)
        }
        dataStart = 8 + json.count
        metadata = raw.metadata
        let dataLength = dataLength ?? raw.tensors.reduce(0) { Swift.max($0, Int(clamping: $1.1.data_offsets.last ?? 0)) }

        var entries: [Entry] = []
        entries.reserveCapacity(raw.tensors.count)
        for (name, info) in raw.tensors {
            guard let dtype = DType(safetensorsName: info.dtype) else {
                throw CheckpointError(
                    .unsupportedFormat,
                    "tensor \"\(name)\" has dtype \(info.dtype), which this library does not support (supported: \(DType.allCases.map(\.safetensorsName).joined(separator: " ")))")
            }
            guard info.data_offsets.count == 2 else {
                throw CheckpointError(.malformed, "tensor \"\(name)\" must have data_offsets [begin, end]")
            }
            let (begin, end) = (info.data_offsets[0], info.data_offsets[1])
            guard begin <= end, end <= UInt64(dataLength) else {
                throw CheckpointError(
                    .malformed,
                    "tensor \"\(name)\" claims bytes \(begin)..<\(end) of a data buffer of \(dataLength) bytes; the file is truncated or corrupt")
            }
            var shape: [Int] = []
            for dimension in info.shape {
                guard dimension <= UInt64(Int.max) else {
                    throw CheckpointError(.malformed, "tensor \"\(name)\" has an impossible dimension \(dimension)")
                }
                shape.append(Int(dimension))
            }
            let size: Int
            do { size = try Tensor.byteCount(dtype: dtype, shape: shape) } catch {
                throw CheckpointError(.malformed, "tensor \"\(name)\": \(error.message)")
            }
            guard size == Int(end - begin) else {
                throw CheckpointError(
                    .malformed,
                    "tensor \"\(name)\" (\(info.dtype) \(shape)) needs \(size) bytes but its offsets span \(end - begin)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: Int(begin), end: Int(end)))
        }
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var expected = 0
        for (index, entry) in entries.enumerated() {
            if entry.begin < expected {
                throw CheckpointError(
                    .malformed,
                    "tensors \"\(entries[index - 1].name)\" and \"\(entry.name)\" overlap (bytes \(entries[index - 1].begin)..<\(entries[index - 1].end) and \(entry.begin)..<\(entry.end))",
                    offset: dataStart + entry.begin)
            }
            if entry.begin > expected {
                throw CheckpointError(
                    .malformed, "there is a gap of \(entry.begin - expected) bytes before tensor \"\(entry.name)\"",
                    offset: dataStart + expected)
            }
            expected = entry.end
        }
        guard expected == dataLength else {
            throw CheckpointError(
                .malformed,
                "the data buffer holds \(dataLength) bytes but the tensors account for \(expected); the file has trailing bytes",
                offset: dataStart + expected)
        }
        self.entries = entries
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context), DecodingError.typeMismatch(_, let context),
            DecodingError.valueNotFound(_, let context), DecodingError.keyNotFound(_, let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }

    /// The header as JSON, decoded with strict types (a boolean is not a number).
    private struct RawHeader: Decodable {
        struct TensorInfo: Decodable {
            var dtype: String
            var shape: [UInt64]
            var data_offsets: [UInt64]
        }

        var metadata: [String: String] = [:]
        var tensors: [(String, TensorInfo)] = []

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            for key in container.allKeys {
                if key.stringValue == "__metadata__" {
                    metadata = try container.decode([String: String].self, forKey: key)
                } else {
                    tensors.append((key.stringValue, try container.decode(TensorInfo.self, forKey: key)))
                }
            }
        }
    }
}
