/// The zip structures torch's archives use (APPNOTE.TXT), and the values torch writes in them.
enum ZipSignature {
    static let localHeader: UInt32 = 0x0403_4B50
    static let dataDescriptor: UInt32 = 0x0807_4B50
    static let centralHeader: UInt32 = 0x0201_4B50
    static let zip64EndRecord: UInt32 = 0x0606_4B50
    static let zip64Locator: UInt32 = 0x0706_4B50
    static let endRecord: UInt32 = 0x0605_4B50
}

enum ZipLayout {
    static let localHeaderSize = 30
    static let centralHeaderSize = 46
    static let endRecordSize = 22
    static let zip64EndRecordSize = 56
    static let zip64LocatorSize = 20
    static let descriptorSize32 = 16
    static let descriptorSize64 = 24
    /// A 32-bit size or offset field at or above this value moves to the zip64 extra field.
    static let zip64Threshold = 0xFFFF_FFFF
    /// The zip64 extended information extra field.
    static let zip64ExtraID: UInt16 = 0x0001
    /// torch's padding extra field, "FB", whose `Z` bytes put each record's data on a 64-byte boundary.
    static let paddingExtraID: UInt16 = 0x4246
    static let alignment = 64
    /// General-purpose flags: bit 3, sizes and CRC in a data descriptor; bit 11, UTF-8 names.
    static let flagsWithDescriptor: UInt16 = 0x0808
    static let flagsWithoutDescriptor: UInt16 = 0x0800
}
