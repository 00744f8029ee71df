/// The pickle opcodes this library reads: those torch's weights-only unpickler accepts
/// (protocol 2 and the few others it knows), which are the ones it writes for `.pt` files, and
/// the four protocol-4 opcodes that only a DCP `.metadata` may use (``PickleVocabulary``).
enum PickleOpcode: UInt8 {
    case proto = 0x80
    case stop = 0x2E  // .
    case mark = 0x28  // (
    case binInt = 0x4A  // J: i32
    case binInt1 = 0x4B  // K: u8
    case binInt2 = 0x4D  // M: u16
    case long1 = 0x8A  // n bytes of two's complement
    case binFloat = 0x47  // G: big-endian double
    case newTrue = 0x88
    case newFalse = 0x89
    case none = 0x4E  // N
    case binUnicode = 0x58  // X: u32 length, UTF-8
    case shortBinString = 0x55  // U: u8 length
    case emptyTuple = 0x29  // )
    case tuple1 = 0x85
    case tuple2 = 0x86
    case tuple3 = 0x87
    case tuple = 0x74  // t
    case emptyList = 0x5D  // ]
    case append = 0x61  // a
    case appends = 0x65  // e
    case emptyDict = 0x7D  // }
    case setItem = 0x73  // s
    case setItems = 0x75  // u
    case emptySet = 0x8F
    case global = 0x63  // c
    case reduce = 0x52  // R
    case build = 0x62  // b
    case newObj = 0x81
    case binPersId = 0x51  // Q
    case binPut = 0x71  // q
    case longBinPut = 0x72  // r
    case binGet = 0x68  // h
    case longBinGet = 0x6A  // j
    // Protocol 4, in a DCP `.metadata` only.
    case frame = 0x95  // u64 length of the frame that follows
    case stackGlobal = 0x93  // module and name from the stack
    case shortBinUnicode = 0x8C  // u8 length, UTF-8
    case memoize = 0x94  // store the top of the stack at the next memo index

    /// Whether only a DCP `.metadata` may use the opcode.
    var isProtocolFour: Bool {
        switch self {
        case .frame, .stackGlobal, .shortBinUnicode, .memoize: true
        default: false
        }
    }
}

/// Names of the opcodes torch refuses, for messages ("opcode 0x95 (FRAME) is not allowed").
enum PickleOpcodeNames {
    static let refused: [UInt8: String] = [
        0x95: "FRAME", 0x93: "STACK_GLOBAL", 0x8C: "SHORT_BINUNICODE", 0x42: "BINBYTES", 0x43: "SHORT_BINBYTES",
        0x8E: "BINBYTES8", 0x8D: "BINUNICODE8", 0x94: "MEMOIZE", 0x8B: "LONG4", 0x90: "ADDITEMS", 0x91: "FROZENSET",
        0x92: "NEWOBJ_EX", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER", 0x69: "INST",
        0x6F: "OBJ", 0x50: "PERSID", 0x49: "INT", 0x4C: "LONG", 0x46: "FLOAT", 0x53: "STRING", 0x54: "BINSTRING",
        0x56: "UNICODE", 0x67: "GET", 0x70: "PUT", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x6C: "LIST",
        0x64: "DICT", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
    ]
}
