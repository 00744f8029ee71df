public import Checkpointing
import Foundation

/// Where and how to reach S3 (or an S3-compatible store), and how hard to push it.
public struct S3Configuration: Sendable {
    /// Path-style (`https://host/bucket/key`) or virtual-hosted (`https://bucket.host/key`) URLs.
    public enum Addressing: String, Sendable {
        /// Virtual-hosted on AWS when the bucket name allows it; path-style on a custom endpoint.
        case automatic = "auto"
        case path
        case virtualHosted = "virtual"
    }

    /// How failed requests are retried: timeouts, connection errors and 5xx answers only, with
    /// exponential backoff and jitter (each wait is between half and all of
    /// `baseDelay * 2^(attempt-1)`, capped at `maxDelay`).
    public struct RetryPolicy: Sendable {
        /// Attempts in all, the first one included.
        public var maxAttempts: Int
        public var baseDelay: Duration
        public var maxDelay: Duration

        public init(maxAttempts: Int = 5, baseDelay: Duration = .milliseconds(250), maxDelay: Duration = .seconds(20)) {
            self.maxAttempts = max(1, maxAttempts)
            self.baseDelay = baseDelay
            self.maxDelay = maxDelay
        }

        /// The wait before attempt `attempt + 1`.
        func delay(after attempt: Int) -> Duration {
            let ceiling = min(maxDelay, baseDelay * (1 << min(attempt - 1, 30)))
            return ceiling / 2 + ceiling / 2 * Double.random(in: 0...1)
        }
    }

    /// A custom endpoint such as `http://127.0.0.1:9000` (MinIO, moto, Ceph, R2, ...); `nil` for AWS.
    public var endpoint: String?
    public var region: String
    public var credentials: AWSCredentials
    public var addressing: Addressing
    /// The size of each part of a multipart upload and of each ranged GET of a download. Objects
    /// up to this size go up in one request. (AWS needs at least 5 MiB; a larger part is used
    /// when an object would otherwise need more than 10,000 parts.)
    public var partSize: Int
    /// The most parts uploaded or ranges downloaded at once.
    public var maxConcurrency: Int
    /// The most bytes of part buffers held at once by an upload: parts in flight are at most
    /// `memoryBudget / partSize` (and at least one).
    public var memoryBudget: Int
    public var retry: RetryPolicy
    /// How long to wait for a connection.
    public var connectTimeout: Duration
    /// How long a request may go without receiving a byte.
    public var readTimeout: Duration
    /// Keys per page when listing (S3's maximum is 1,000).
    public var listPageSize: Int

    public init(
        endpoint: String? = nil, region: String = "us-east-1", credentials: AWSCredentials,
        addressing: Addressing = .automatic, partSize: Int = 16 << 20, maxConcurrency: Int = 8,
        memoryBudget: Int = 256 << 20, retry: RetryPolicy = RetryPolicy(), connectTimeout: Duration = .seconds(10),
        readTimeout: Duration = .seconds(60), listPageSize: Int = 1000
    ) {
        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials
        self.addressing = addressing
        self.partSize = partSize
        self.maxConcurrency = maxConcurrency
        self.memoryBudget = memoryBudget
        self.retry = retry
        self.connectTimeout = connectTimeout
        self.readTimeout = readTimeout
        self.listPageSize = listPageSize
    }

    /// The configuration the AWS CLI would use in this environment (see ``AWSEnvironment``),
    /// with the AWS CLI's `s3` settings of the profile for parts and concurrency
    /// (`multipart_chunksize`, `max_concurrent_requests`).
    public static func fromEnvironment(_ environment: AWSEnvironment = AWSEnvironment()) throws(CheckpointError) -> S3Configuration {
        var configuration = S3Configuration(
            endpoint: try environment.endpoint(), region: try environment.region(),
            credentials: try environment.credentials())
        if let style = try environment.addressingStyle() {
            guard let addressing = Addressing(rawValue: style) else {
                throw CheckpointError(.invalidArgument, "addressing_style must be auto, path or virtual, not \"\(style)\"")
            }
            configuration.addressing = addressing
        }
        if let attempts = try environment.maxAttempts() { configuration.retry.maxAttempts = attempts }
        let profile = try AWSEnvironment.section(environment.profile, in: environment.configFile, configStyle: true)
        if let text = profile["s3.multipart_chunksize"], let size = parseSize(text) { configuration.partSize = size }
        if let text = profile["s3.max_concurrent_requests"], let count = Int(text), count > 0 {
            configuration.maxConcurrency = count
        }
        _ = try configuration.resolvedEndpoint()
        return configuration
    }

    /// `8MB`, `16MiB`, `1GB` or a byte count, as the AWS CLI writes sizes (`MB` meaning MiB).
    static func parseSize(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).uppercased()
        let units: [(String, Int)] = [("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30), ("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30), ("B", 1)]
        for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
            return Int(trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)).map { $0 * factor }
        }
        return Int(trimmed)
    }

    /// The endpoint as parts, checked.
    func resolvedEndpoint() throws(CheckpointError) -> S3Endpoint {
        guard let endpoint else {
            return S3Endpoint(scheme: "https", host: "s3.\(region).amazonaws.com", port: nil, isCustom: false)
        }
        guard let url = URL(string: endpoint), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = url.host, !host.isEmpty, url.path.isEmpty || url.path == "/"
        else {
            throw CheckpointError(
                .invalidArgument,
                "the S3 endpoint must look like http://host:port or https://host (no path), not \"\(endpoint)\"; check S3_ENDPOINT_URL / AWS_ENDPOINT_URL")
        }
        return S3Endpoint(scheme: scheme, host: host, port: url.port, isCustom: true)
    }
}

/// The parts of an endpoint URL.
struct S3Endpoint: Sendable, CustomStringConvertible {
    var scheme: String
    var host: String
    var port: Int?
    var isCustom: Bool

    /// `host` or `host:port` when the port is not the scheme's default: the `Host` header.
    var authority: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        guard let port, port != (scheme == "https" ? 443 : 80) else { return bracketed }
        return "\(bracketed):\(port)"
    }

    var description: String { "\(scheme)://\(authority)" }

    /// Whether `bucket` can be a host name label under TLS (no dots, DNS-safe).
    static func isVirtualHostable(_ bucket: String) -> Bool {
        (3...63).contains(bucket.count) && !bucket.contains(".")
            && bucket.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }
            && bucket.first != "-" && bucket.last != "-"
    }
}
