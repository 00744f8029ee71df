/// The element type of a ``Tensor``.
///
/// The raw values are torch's spellings (`float32`, `bfloat16`, `float8_e4m3fn`), which is also
/// how `ckpt inspect --json` prints them.
public enum DType: String, CaseIterable, Sendable, Hashable, Codable {
    case bool
    case uint8
    case int8
    case int16
    case int32
    case int64
    case uint16
    case uint32
    case uint64
    case float16
    case bfloat16
    case float32
    case float64
    case float8_e4m3fn
    case float8_e5m2
    case complex64

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .bool, .uint8, .int8, .float8_e4m3fn, .float8_e5m2: 1
        case .int16, .uint16, .float16, .bfloat16: 2
        case .int32, .uint32, .float32: 4
        case .int64, .uint64, .float64, .complex64: 8
        }
    }

    /// The dtype string of the safetensors header (`F32`, `BF16`, `F8_E4M3`, ...).
    public var safetensorsName: String {
        switch self {
        case .bool: "BOOL"
        case .uint8: "U8"
        case .int8: "I8"
        case .int16: "I16"
        case .int32: "I32"
        case .int64: "I64"
        case .uint16: "U16"
        case .uint32: "U32"
        case .uint64: "U64"
        case .float16: "F16"
        case .bfloat16: "BF16"
        case .float32: "F32"
        case .float64: "F64"
        case .float8_e4m3fn: "F8_E4M3"
        case .float8_e5m2: "F8_E5M2"
        case .complex64: "C64"
        }
    }

    /// The dtype for a safetensors header string, or `nil` for one this library does not know.
    public init?(safetensorsName: String) {
        guard let match = DType.allCases.first(where: { $0.safetensorsName == safetensorsName }) else {
            return nil
        }
        self = match
    }
}
