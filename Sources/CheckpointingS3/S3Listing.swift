import Checkpointing
import Foundation

/// One page of a ListObjectsV2 answer, read from its XML.
///
/// Kept apart from the request code, with nothing but Foundation and the XML reader under it,
/// so the fuzz harness (`Fuzz/`) compiles it without the HTTP stack.
struct S3ListingPage {
    var objects: [ObjectInfo]
    /// The common prefixes (the "folders" under a delimiter), decoded.
    var prefixes: [String]
    /// The continuation token of the next page; `nil` on the last page.
    var next: String?

    /// Reads the answer to a listing of `bucket`; `location` names the request in errors.
    ///
    /// Entries without a key or a size are skipped; keys and prefixes are URL-decoded when the
    /// answer says `EncodingType` `url`.
    ///
    /// - Throws: `.objectStore` when the answer is not a listing, or is truncated without a
    ///   continuation token (following it would loop or stop early).
    init(parsing bytes: [UInt8], bucket: String, location: String) throws(CheckpointError) {
        guard let root = S3XML.parse(bytes), root.name == "ListBucketResult" else {
            throw CheckpointError(.objectStore, "the server's answer to ListObjectsV2 is not a listing", path: location)
        }
        let encoded = root.value("EncodingType") == "url"
        func decoded(_ text: String) -> String { encoded ? Self.urlDecode(text) : text }
        objects = root.all("Contents").compactMap { entry -> ObjectInfo? in
            guard let key = entry.value("Key"), let size = entry.value("Size").flatMap(Int.init) else { return nil }
            return ObjectInfo(
                location: ObjectLocation(scheme: "s3", bucket: bucket, key: decoded(key)), size: size,
                etag: entry.value("ETag")?.trimmingCharacters(in: CharacterSet(charactersIn: "\"")),
                lastModified: entry.value("LastModified").flatMap(Self.isoDate))
        }
        prefixes = root.all("CommonPrefixes").compactMap { $0.value("Prefix").map(decoded) }
        let truncated = root.value("IsTruncated") == "true"
        next = root.value("NextContinuationToken")
        if truncated && next == nil {
            throw CheckpointError(
                .objectStore, "the server's listing is truncated but gives no continuation token", path: location)
        }
        if !truncated { next = nil }
    }

    /// S3's `encoding-type=url` keys: `+` is a space, `%XX` a byte (as botocore decodes them).
    static func urlDecode(_ text: String) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), utf8.count >= 2,
                let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func isoDate(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }
}
