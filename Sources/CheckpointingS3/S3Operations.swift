import Checkpointing
import Crypto
import Foundation
import NIOCore
import NIOHTTP1

/// The S3 API calls this module makes, each one request (with retries).
extension S3Client {
    /// What HEAD says about an object.
    struct Head: Sendable {
        var size: Int
        var etag: String?
        var lastModified: Date?
        /// The part size this module recorded when it uploaded the object in parts.
        var recordedPartSize: Int?
        /// `x-amz-mp-parts-count`, on a HEAD of one part.
        var partsCount: Int?
    }

    /// The metadata key under which multipart uploads record their part size, so a download
    /// can fetch exactly the parts and check each against the ETag.
    static let partSizeMetadata = "x-amz-meta-checkpoint-part-size"

    /// HEAD of an object; `nil` when there is no such key (a missing bucket throws).
    func head(_ location: ObjectLocation, partNumber: Int? = nil) async throws(CheckpointError) -> Head? {
        let operation = S3Operation(
            name: "HeadObject", method: .HEAD, bucket: location.bucket, key: location.key,
            query: partNumber.map { [("partNumber", String($0))] } ?? [], passThrough: [403, 404])
        let response = try await send(operation)
        if response.status == 403 || response.status == 404 {
            // HEAD answers carry no body, so they cannot tell a missing bucket from a missing
            // key, or say why access was refused: one byte of the object can.
            let probe = try await send(S3Operation(
                name: "GetObject", method: .GET, bucket: location.bucket, key: location.key,
                headers: [("Range", "bytes=0-0")], passThrough: [403, 404, 416]))
            let failure = S3Failure(response: probe)
            if probe.status == 404 && (failure.code == nil || failure.code == "NoSuchKey") { return nil }
            if (200..<300).contains(probe.status) || probe.status == 416 {
                throw CheckpointError(
                    .objectStore, "the server answered HEAD with \(response.status) but serves the object", path: location.description)
            }
            throw error(for: failure, operation, attempts: 1)
        }
        guard let size = response.header("content-length").flatMap(Int.init) else {
            throw CheckpointError(.objectStore, "the server's HEAD answer has no Content-Length", path: location.description)
        }
        return Head(
            size: size, etag: response.header("etag"), lastModified: response.header("last-modified").flatMap(Self.httpDate),
            recordedPartSize: response.header(Self.partSizeMetadata).flatMap(Int.init),
            partsCount: response.header("x-amz-mp-parts-count").flatMap(Int.init))
    }

    /// GET of an object or of a range of it; the response's body holds exactly the bytes asked
    /// for, or this throws.
    func get(
        _ location: ObjectLocation, range: Range<Int>? = nil, ifMatch etag: String? = nil, limit: Int
    ) async throws(CheckpointError) -> S3Response {
        var headers: [(name: String, value: String)] = []
        if let range { headers.append(("Range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)")) }
        if let etag { headers.append(("If-Match", "\"\(etag)\"")) }
        return try await send(S3Operation(
            name: "GetObject", method: .GET, bucket: location.bucket, key: location.key, headers: headers,
            responseLimit: limit, expectedLength: range?.count))
    }

    /// PUT of a whole object; returns its ETag, checked against the body's MD5.
    @discardableResult
    func put(_ location: ObjectLocation, body: ByteBuffer, metadata: [String: String] = [:]) async throws(CheckpointError) -> String? {
        let md5 = body.withUnsafeReadableBytes { Data(Insecure.MD5.hash(data: $0)) }
        var headers: [(name: String, value: String)] = [
            ("Content-MD5", md5.base64EncodedString()), ("Content-Type", "application/octet-stream"),
        ]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) { headers.append((key, value)) }
        let response = try await send(S3Operation(
            name: "PutObject", method: .PUT, bucket: location.bucket, key: location.key, headers: headers, body: body))
        let etag = response.header("etag")
        try Self.checkETag(etag, md5: SigV4.hex(md5), what: "the uploaded object", location: location)
        return etag
    }

    /// Fails when an ETag that is an MD5 (32 hex digits) differs from the MD5 the client
    /// computed; other ETags (encrypted objects) are not MD5s and are not compared.
    static func checkETag(_ etag: String?, md5: String, what: String, location: ObjectLocation) throws(CheckpointError) {
        guard let etag, etag.count == 32, etag.allSatisfy(\.isHexDigit) else { return }
        guard etag.lowercased() == md5 else {
            throw CheckpointError(
                .checksumMismatch,
                "the server's ETag for \(what) (\(etag)) is not the MD5 of the bytes sent (\(md5)): they were damaged on the way",
                path: location.description)
        }
    }

    /// One page of ListObjectsV2.
    func listPage(
        bucket: String, prefix: String, delimiter: String?, continuation: String?
    ) async throws(CheckpointError) -> (objects: [ObjectInfo], prefixes: [String], next: String?) {
        var query: [(name: String, value: String)] = [
            ("list-type", "2"), ("prefix", prefix), ("max-keys", String(configuration.listPageSize)), ("encoding-type", "url"),
        ]
        if let delimiter { query.append(("delimiter", delimiter)) }
        if let continuation { query.append(("continuation-token", continuation)) }
        let operation = S3Operation(
            name: "ListObjectsV2", method: .GET, bucket: bucket, key: nil, query: query, responseLimit: 16 << 20)
        let response = try await send(operation)
        let page = try S3ListingPage(parsing: response.bytes, bucket: bucket, location: operation.location.description)
        return (page.objects, page.prefixes, page.next)
    }

    func delete(_ location: ObjectLocation) async throws(CheckpointError) {
        _ = try await send(S3Operation(
            name: "DeleteObject", method: .DELETE, bucket: location.bucket, key: location.key, passThrough: [404]))
    }

    func createMultipartUpload(_ location: ObjectLocation, metadata: [String: String]) async throws(CheckpointError) -> String {
        var headers: [(name: String, value: String)] = [("Content-Type", "application/octet-stream")]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) { headers.append((key, value)) }
        let operation = S3Operation(
            name: "CreateMultipartUpload", method: .POST, bucket: location.bucket, key: location.key,
            query: [("uploads", "")], headers: headers)
        let response = try await send(operation)
        guard let id = S3XML.parse(response.bytes)?.value("UploadId"), !id.isEmpty else {
            throw CheckpointError(.objectStore, "the server did not return an upload id", path: location.description)
        }
        return id
    }

    /// Uploads one part; returns its ETag, checked against the part's MD5.
    func uploadPart(
        _ location: ObjectLocation, uploadID: String, number: Int, body: ByteBuffer, md5: [UInt8]
    ) async throws(CheckpointError) -> String {
        let response = try await send(S3Operation(
            name: "UploadPart", method: .PUT, bucket: location.bucket, key: location.key,
            query: [("partNumber", String(number)), ("uploadId", uploadID)],
            headers: [("Content-MD5", Data(md5).base64EncodedString())], body: body))
        guard let etag = response.header("etag") else {
            throw CheckpointError(.objectStore, "the server returned no ETag for part \(number)", path: location.description)
        }
        try Self.checkETag(etag, md5: SigV4.hex(md5), what: "part \(number)", location: location)
        return etag
    }

    /// Completes a multipart upload; returns the object's ETag.
    func completeMultipartUpload(
        _ location: ObjectLocation, uploadID: String, parts: [(number: Int, etag: String)]
    ) async throws(CheckpointError) -> String? {
        var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for part in parts {
            xml += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\"\(S3XML.escape(part.etag))\"</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let body = ByteBuffer(string: xml)
        let md5 = body.withUnsafeReadableBytes { Data(Insecure.MD5.hash(data: $0)) }
        let response = try await send(S3Operation(
            name: "CompleteMultipartUpload", method: .POST, bucket: location.bucket, key: location.key,
            query: [("uploadId", uploadID)],
            headers: [("Content-MD5", md5.base64EncodedString()), ("Content-Type", "application/xml")], body: body))
        return S3XML.parse(response.bytes)?.value("ETag")?.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }

    func abortMultipartUpload(_ location: ObjectLocation, uploadID: String) async throws(CheckpointError) {
        _ = try await send(S3Operation(
            name: "AbortMultipartUpload", method: .DELETE, bucket: location.bucket, key: location.key,
            query: [("uploadId", uploadID)], passThrough: [404], maxAttempts: 2))
    }

    // MARK: Parsing

    static func httpDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }
}
