import Crypto
import Foundation

// AWS Signature Version 4, written by hand: no S3 or AWS SDK package is available to this
// project (only AsyncHTTPClient and swift-crypto), so this file implements the published
// algorithm. The tests compare its signatures with botocore's for the same requests.

/// An HTTP request to S3 before it is sent: what SigV4 signs.
struct S3HTTPRequest: Sendable {
    var method: String
    /// `http` or `https`.
    var scheme: String
    /// The host, and `:port` when the port is not the scheme's default: the `Host` header.
    var host: String
    /// The path, already percent-encoded as it goes on the wire (`/bucket/my%20key`).
    var encodedPath: String
    /// Query parameters, not encoded. A parameter without a value (`?uploads`) has value `""`.
    var query: [(name: String, value: String)]
    /// Headers to send and sign, besides `Host` and the ones signing adds.
    var headers: [(name: String, value: String)]

    /// The query string as sent: each name and value percent-encoded, in the given order.
    var encodedQuery: String {
        query.map { pair in
            let name = SigV4.uriEncode(pair.name, keepSlash: false)
            // `?uploads` goes out bare, as S3's documentation writes it; it is signed as `uploads=`.
            return pair.value.isEmpty ? name : name + "=" + SigV4.uriEncode(pair.value, keepSlash: false)
        }.joined(separator: "&")
    }

    var url: String {
        scheme + "://" + host + encodedPath + (query.isEmpty ? "" : "?" + encodedQuery)
    }
}

/// SigV4 signing for S3 (`AWS4-HMAC-SHA256`, header-based, as botocore's `S3SigV4Auth` does).
struct SigV4: Sendable {
    var credentials: AWSCredentials
    var region: String
    var service = "s3"

    /// The payload hash of a request whose body is not hashed (allowed over HTTPS).
    static let unsignedPayload = "UNSIGNED-PAYLOAD"
    static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// Headers that proxies may change or that carry no meaning for S3; never signed (botocore's list).
    static let unsignedHeaders: Set<String> = [
        "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
    ]

    /// Signs `request`: returns it with `X-Amz-Date`, `X-Amz-Content-SHA256`, the session token
    /// (if any) and `Authorization` added.
    ///
    /// - Parameter payloadHash: the hex SHA-256 of the body, or ``unsignedPayload``.
    func sign(_ request: S3HTTPRequest, payloadHash: String, date: Date) -> S3HTTPRequest {
        var signed = request
        let timestamp = Self.timestamp(date)
        signed.headers.removeAll {
            ["authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"].contains($0.name.lowercased())
        }
        signed.headers.append(("X-Amz-Date", timestamp))
        if let token = credentials.sessionToken { signed.headers.append(("X-Amz-Security-Token", token)) }
        signed.headers.append(("X-Amz-Content-SHA256", payloadHash))

        let (canonicalHeaders, signedHeaderNames) = Self.canonicalHeaders(signed)
        let canonicalRequest = [
            request.method.uppercased(), request.encodedPath.isEmpty ? "/" : request.encodedPath,
            Self.canonicalQuery(request.query), canonicalHeaders + "\n", signedHeaderNames, payloadHash,
        ].joined(separator: "\n")
        let scope = "\(timestamp.prefix(8))/\(region)/\(service)/aws4_request"
        let stringToSign = [
            "AWS4-HMAC-SHA256", timestamp, scope, Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8))),
        ].joined(separator: "\n")
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: signingKey(day: String(timestamp.prefix(8)))))
        signed.headers.append((
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaderNames), Signature=\(signature)"
        ))
        return signed
    }

    /// The key for one day, region and service: HMAC chained from `AWS4` + the secret.
    func signingKey(day: String) -> SymmetricKey {
        var key = SymmetricKey(data: Data("AWS4\(credentials.secretAccessKey)".utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return key
    }

    /// `Host` and every header but the unsigned ones: lowercased names, sorted, values trimmed
    /// with inner runs of spaces collapsed, repeated headers joined by commas.
    static func canonicalHeaders(_ request: S3HTTPRequest) -> (canonical: String, signedNames: String) {
        var values: [String: [String]] = ["host": [request.host]]
        for (name, value) in request.headers {
            let lower = name.lowercased()
            guard !unsignedHeaders.contains(lower) else { continue }
            if lower == "host" {
                values["host"] = [value]
            } else {
                values[lower, default: []].append(value.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " "))
            }
        }
        let names = values.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let canonical = names.map { "\($0):\(values[$0]!.joined(separator: ","))" }.joined(separator: "\n")
        return (canonical, names.joined(separator: ";"))
    }

    /// Each name and value percent-encoded, pairs sorted by encoded name then value.
    static func canonicalQuery(_ query: [(name: String, value: String)]) -> String {
        query.map { (uriEncode($0.name, keepSlash: false), uriEncode($0.value, keepSlash: false)) }
            .sorted { lhs, rhs in
                lhs.0 != rhs.0
                    ? Array(lhs.0.utf8).lexicographicallyPrecedes(Array(rhs.0.utf8))
                    : Array(lhs.1.utf8).lexicographicallyPrecedes(Array(rhs.1.utf8))
            }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// RFC 3986 percent-encoding of UTF-8 bytes: `A-Z a-z 0-9 - _ . ~` stay, and `/` when asked.
    static func uriEncode(_ text: String, keepSlash: Bool) -> String {
        var encoded = ""
        encoded.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                encoded.append("/")
            default:
                encoded += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return encoded
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    static func timestamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { String(value).leftPadded(to: 2) }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        var text = ""
        for byte in bytes { text += String(byte, radix: 16).leftPadded(to: 2) }
        return text
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
