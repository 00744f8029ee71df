/// How torch names dtypes and storage classes in a pickle.
enum TorchDTypes {
    /// The legacy typed storage class of each dtype that has one (`torch.FloatStorage`).
    static func storageClass(_ dtype: DType) -> String? {
        switch dtype {
        case .bool: "BoolStorage"
        case .uint8: "ByteStorage"
        case .int8: "CharStorage"
        case .int16: "ShortStorage"
        case .int32: "IntStorage"
        case .int64: "LongStorage"
        case .float16: "HalfStorage"
        case .bfloat16: "BFloat16Storage"
        case .float32: "FloatStorage"
        case .float64: "DoubleStorage"
        case .complex64: "ComplexFloatStorage"
        // Newer dtypes have no typed storage class: `_rebuild_tensor_v3` and `UntypedStorage`.
        case .uint16, .uint32, .uint64, .float8_e4m3fn, .float8_e5m2: nil
        }
    }

    /// Storage classes torch's weights-only loader knows, with the dtype this library reads
    /// them as (`nil`: a dtype this library has no counterpart for).
    static let storageClasses: [String: DType?] = {
        var classes: [String: DType?] = [
            "ComplexDoubleStorage": nil, "QUInt8Storage": nil, "QInt8Storage": nil, "QInt32Storage": nil,
            "QUInt4x2Storage": nil, "QUInt2x4Storage": nil,
        ]
        for dtype in DType.allCases {
            if let name = storageClass(dtype) { classes[name] = dtype }
        }
        return classes
    }()

    /// `torch.<name>` dtype globals torch's weights-only loader knows, with this library's dtype.
    static let dtypes: [String: DType?] = {
        var names: [String: DType?] = [:]
        for dtype in DType.allCases { names[dtype.rawValue] = dtype }
        for other in [
            "complex32", "complex128", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2",
            "qint8", "quint8", "qint32", "quint4x2", "quint2x4", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
        ] {
            names[other] = DType?.none
        }
        for width in 1...7 {
            names["uint\(width)"] = DType?.none
            names["int\(width)"] = DType?.none
        }
        return names
    }()

    /// Dtypes written with `_rebuild_tensor_v3` and `UntypedStorage`, as torch does.
    static func needsVersion3(_ dtype: DType) -> Bool { storageClass(dtype) == nil }
}
