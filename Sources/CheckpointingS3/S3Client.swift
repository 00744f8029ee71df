import AsyncHTTPClient
import Checkpointing
import Crypto
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

let logger = Logger(label: "swift-checkpointing.s3")

/// One S3 API call, before signing.
struct S3Operation: Sendable {
    /// The API name for messages: `PutObject`, `ListObjectsV2`, ...
    var name: String
    var method: HTTPMethod
    var bucket: String
    /// `nil` for a call on the bucket itself.
    var key: String?
    var query: [(name: String, value: String)] = []
    var headers: [(name: String, value: String)] = []
    var body: ByteBuffer?
    /// The most response-body bytes accepted (a GET of a range expects exactly its length).
    var responseLimit = 1 << 20
    /// Statuses returned to the caller instead of thrown (404 for "is it there?").
    var passThrough: Set<UInt> = []
    /// The exact body length a successful answer must have (a ranged GET); a shorter or longer
    /// body is a truncated transfer, retried like a dropped connection.
    var expectedLength: Int?
    /// Attempts for this call when fewer than the policy's are wanted (cleanup after a failure).
    var maxAttempts: Int?

    var location: ObjectLocation { ObjectLocation(scheme: "s3", bucket: bucket, key: key ?? "") }

    /// Whether an answer with `status` goes back to the caller: a 2xx, or one in ``passThrough``.
    func returns(_ status: UInt) -> Bool { (200..<300).contains(status) || passThrough.contains(status) }
}

/// An S3 response with its whole body.
struct S3Response: Sendable {
    var status: UInt
    var headers: HTTPHeaders
    var body: ByteBuffer

    var bytes: [UInt8] { Array(body.readableBytesView) }

    /// A header's value, with the quotes S3 puts around ETags removed.
    func header(_ name: String) -> String? {
        headers.first(name: name).map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
    }
}

/// Sends S3 API calls: signs them, retries what may succeed on a second try, and turns every
/// failure into a `CheckpointError` a person can act on.
///
/// The client is asynchronous through and through: requests are AsyncHTTPClient's, awaited;
/// retries wait with `Task.sleep`; parallel parts are child tasks; file reads and writes run on
/// NIO's blocking thread pool. A cancelled task stops at its next request or wait, throwing
/// `.cancelled`. The synchronous API (``ObjectStore``'s) runs the same code through
/// ``blocking(_:)``.
final class S3Client: Sendable {
    let configuration: S3Configuration
    let endpoint: S3Endpoint
    let signer: SigV4
    /// What this client has transferred (the process's total is ``ObjectStores/transfers``).
    let transfers = TransferStatistics()
    private let http: HTTPClientOwner

    init(configuration: S3Configuration) throws(CheckpointError) {
        self.configuration = configuration
        endpoint = try configuration.resolvedEndpoint()
        signer = SigV4(credentials: configuration.credentials, region: configuration.region)
        var settings = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(
                connect: .nanoseconds(Int64(configuration.connectTimeout.nanoseconds)),
                read: .nanoseconds(Int64(configuration.readTimeout.nanoseconds))),
            connectionPool: .init(
                idleTimeout: .seconds(60),
                concurrentHTTP1ConnectionsPerHostSoftLimit: max(8, configuration.maxConcurrency + 2)),
            decompression: .disabled)
        settings.httpVersion = .http1Only
        http = HTTPClientOwner(HTTPClient(eventLoopGroupProvider: .singleton, configuration: settings))
    }

    /// Closes the connections; calls made afterwards fail.
    func shutdown() { http.shutdown() }

    // MARK: Sending

    /// The threads that the tasks of ``blocking(_:)`` run on: never the cooperative pool's, so
    /// a synchronous call from one of its threads cannot wait on itself. The tasks only await
    /// (their file work runs on NIO's thread pool), so a few threads serve every transfer.
    static let bridgeExecutor = BlockingWorkPool(
        threadCount: max(2, ProcessInfo.processInfo.activeProcessorCount), name: "Checkpointing S3")

    /// Runs `operation` in a task of its own and blocks the calling thread until it is done:
    /// how the synchronous API calls the asynchronous one. The caller's progress reporter goes
    /// with it, and so does its cancellation: when the library's `async` entry points run a
    /// save or load through the blocking forms, cancelling their task cancels this one (a
    /// transfer in flight stops at once, a multipart upload is aborted).
    ///
    /// The task runs on ``bridgeExecutor``, not the cooperative pool, and the HTTP work on
    /// AsyncHTTPClient's event loops, so blocking is safe from any thread but an event loop's
    /// (whose I/O the task may need).
    func blocking<Value: Sendable>(
        _ operation: @escaping @Sendable () async throws(CheckpointError) -> Value
    ) throws(CheckpointError) -> Value {
        guard MultiThreadedEventLoopGroup.currentEventLoop == nil else {
            throw CheckpointError(
                .invalidArgument,
                "the synchronous S3 calls block, so they must not be made on an event loop's thread; use the async ones")
        }
        let progress = CheckpointProgress.current
        let outcome = Mutex<Result<Value, CheckpointError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let task = Task(executorPreference: Self.bridgeExecutor) {
            let result = await CheckpointProgress.$current.withValue(progress) { () async -> Result<Value, CheckpointError> in
                do throws(CheckpointError) {
                    return .success(try await operation())
                } catch {
                    return .failure(error)
                }
            }
            outcome.withLock { $0 = result }
            done.signal()
        }
        let cancellation = CancellationFlag.current?.onCancel { task.cancel() }
        defer { cancellation?.remove() }
        done.wait()
        // The task stored its outcome before it signalled.
        return try outcome.withLock { $0 ?? .failure(CheckpointError(.invalidState, "an S3 call ended without an outcome")) }.get()
    }

    /// Sends `operation`, retrying timeouts, connection errors and 5xx answers.
    ///
    /// - Returns: The response of a 2xx answer, or of one in `operation.passThrough`.
    /// - Throws: `CheckpointError` naming the object and saying what to do; `.cancelled` when
    ///   the task is cancelled before an answer is in.
    func send(_ operation: S3Operation) async throws(CheckpointError) -> S3Response {
        let payloadHash = payloadHash(of: operation)
        let started = ContinuousClock.now
        let maxAttempts = min(operation.maxAttempts ?? .max, configuration.retry.maxAttempts)
        var attempt = 1
        while true {
            try Self.checkCancellation(operation)
            let outcome = await execute(operation, payloadHash: payloadHash)
            // An answer that arrived is returned even if the task was cancelled meanwhile: a
            // PUT or a CompleteMultipartUpload the server carried out must not be reported as
            // not done. A failure of a cancelled task is its cancellation (task.cancel() cut
            // the request, or it is not retried).
            switch outcome {
            case .success(let response) where operation.returns(response.status): break
            default: try Self.checkCancellation(operation)
            }
            let retry: String
            switch outcome {
            case .success(let response):
                if operation.returns(response.status) {
                    if let embedded = Self.embeddedError(in: response) {
                        guard embedded.isRetryable, attempt < maxAttempts else {
                            throw error(for: embedded, operation, attempts: attempt)
                        }
                        retry = embedded.summary
                    } else {
                        return response
                    }
                } else {
                    let failure = S3Failure(response: response)
                    guard failure.isRetryable, attempt < maxAttempts else {
                        throw error(for: failure, operation, attempts: attempt)
                    }
                    retry = failure.summary
                }
            case .failure(let transport):
                guard transport.isRetryable, attempt < maxAttempts else {
                    throw error(for: transport, operation, attempts: attempt, since: started)
                }
                retry = transport.summary
            }
            let delay = configuration.retry.delay(after: attempt)
            logger.debug(
                "retrying \(operation.name) \(operation.location) after \(retry) (attempt \(attempt + 1) of \(maxAttempts), in \(delay))")
            do {
                try await Task.sleep(for: delay)
            } catch {
                throw Self.cancelled(operation)
            }
            attempt += 1
        }
    }

    /// Throws `.cancelled` when the current task is cancelled.
    static func checkCancellation(_ operation: S3Operation) throws(CheckpointError) {
        if Task.isCancelled { throw cancelled(operation) }
    }

    static func cancelled(_ operation: S3Operation) -> CheckpointError {
        CheckpointError(
            .cancelled, "\(operation.name) was cancelled: its task was cancelled before the server's answer was in",
            path: operation.location.description)
    }

    /// One attempt: sign now, send, collect the response.
    private func execute(_ operation: S3Operation, payloadHash: String) async -> Result<S3Response, TransportFailure> {
        let signed = signer.sign(request(for: operation), payloadHash: payloadHash, date: Date())
        let request: HTTPClient.Request
        do {
            var headers = HTTPHeaders()
            for (name, value) in signed.headers { headers.add(name: name, value: value) }
            headers.replaceOrAdd(name: "Host", value: signed.host)
            request = try HTTPClient.Request(
                url: signed.url, method: operation.method, headers: headers, body: operation.body.map { .byteBuffer($0) })
        } catch {
            return .failure(TransportFailure(error: error, isRetryable: false))
        }
        let counters = [transfers, ObjectStores.transfers]
        let collector = ResponseCollector(limit: operation.responseLimit, expectedLength: operation.expectedLength, counters: counters)
        for counter in counters { counter.didSendRequest() }
        let task = http.client.execute(request: request, delegate: collector, logger: logger)
        do {
            let response = try await withTaskCancellationHandler {
                try await task.futureResult.get()
            } onCancel: {
                task.cancel()
            }
            for counter in counters { counter.didUpload(operation.body?.readableBytes ?? 0) }
            return .success(response)
        } catch let error as ResponseCollector.TooLarge {
            return .failure(TransportFailure(error: error, isRetryable: false))
        } catch {
            return .failure(TransportFailure(error: error, isRetryable: Self.isRetryable(error)))
        }
    }

    /// The HTTP request for `operation`: path-style on a custom endpoint, virtual-hosted on AWS.
    func request(for operation: S3Operation) -> S3HTTPRequest {
        var host = endpoint.authority
        var path = ""
        let virtual: Bool
        switch configuration.addressing {
        case .path: virtual = false
        case .virtualHosted: virtual = true
        case .automatic: virtual = !endpoint.isCustom && S3Endpoint.isVirtualHostable(operation.bucket)
        }
        if virtual {
            host = operation.bucket + "." + host
        } else {
            path = "/" + SigV4.uriEncode(operation.bucket, keepSlash: false)
        }
        if let key = operation.key {
            path += "/" + SigV4.uriEncode(key, keepSlash: true)
        } else if virtual {
            path = "/"
        }
        var headers = operation.headers
        if let body = operation.body {
            headers.append(("Content-Length", String(body.readableBytes)))
        }
        return S3HTTPRequest(
            method: operation.method.rawValue, scheme: endpoint.scheme, host: host, encodedPath: path,
            query: operation.query, headers: headers)
    }

    /// SHA-256 of the body over plain HTTP; over HTTPS a body goes unhashed, as botocore sends
    /// it, and its integrity rests on TLS and the signed `Content-MD5` every upload carries.
    private func payloadHash(of operation: S3Operation) -> String {
        guard let body = operation.body, body.readableBytes > 0 else { return SigV4.emptyPayloadHash }
        if endpoint.scheme == "https" { return SigV4.unsignedPayload }
        return body.withUnsafeReadableBytes { SigV4.hex(SHA256.hash(data: $0)) }
    }

    /// Whether a failure without an HTTP answer may go away: timeouts and connection errors may,
    /// a malformed URL or a refused configuration may not.
    static func isRetryable(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError {
            let permanent: [HTTPClientError] = [
                .invalidURL, .emptyHost, .emptyScheme, .alreadyShutdown, .cancelled, .identityCodingIncorrectlyPresent,
                .bodyLengthMismatch, .traceRequestWithBody,
                .invalidRedirectConfiguration, .invalidHTTPVersionConfiguration,
            ]
            return !permanent.contains(error)
        }
        return true
    }

    /// An error S3 sends with status 200 (CompleteMultipartUpload may fail after its headers).
    private static func embeddedError(in response: S3Response) -> S3Failure? {
        guard response.status == 200, response.body.readableBytes > 0,
            response.body.readableBytesView.starts(with: Array("<?xml".utf8)) || response.body.readableBytesView.first == UInt8(ascii: "<"),
            let root = S3XML.parse(response.bytes), root.name == "Error"
        else { return nil }
        return S3Failure(status: 500, code: root.value("Code"), message: root.value("Message"), region: root.value("Region"))
    }

    // MARK: Errors

    /// The error for a request the server answered with a failure.
    func error(for failure: S3Failure, _ operation: S3Operation, attempts: Int) -> CheckpointError {
        let location = operation.location.description
        let what = operation.key == nil ? "bucket \"\(operation.bucket)\"" : "object"
        let credentials = configuration.credentials
        let code = failure.code ?? ""
        switch (failure.status, code) {
        case (_, "InvalidAccessKeyId"):
            return CheckpointError(
                .badCredentials,
                "bad credentials: the server does not know \(credentials) (InvalidAccessKeyId); check AWS_ACCESS_KEY_ID or the profile's aws_access_key_id",
                path: location)
        case (_, "SignatureDoesNotMatch"):
            return CheckpointError(
                .badCredentials,
                "bad credentials: the secret key does not match \(credentials) (SignatureDoesNotMatch); check AWS_SECRET_ACCESS_KEY or the profile's aws_secret_access_key",
                path: location)
        case (_, "ExpiredToken"), (_, "InvalidToken"), (_, "TokenRefreshRequired"):
            return CheckpointError(
                .badCredentials,
                "bad credentials: the session token of \(credentials) has expired or is invalid (\(code)); get fresh credentials",
                path: location)
        case (_, "RequestTimeTooSkewed"):
            return CheckpointError(
                .badCredentials,
                "this machine's clock is too far from the server's to sign requests (RequestTimeTooSkewed); set the clock right (NTP)",
                path: location)
        case (403, _):
            return CheckpointError(
                .permissionDenied,
                "permission denied (403 \(code.isEmpty ? "Forbidden" : code)) for \(operation.name) on this \(what) with \(credentials); check the bucket policy and the IAM permissions for \(Self.permission(for: operation.name))",
                path: location)
        case (_, "NoSuchBucket"):
            return CheckpointError(
                .notFound, "the bucket \"\(operation.bucket)\" does not exist at \(endpoint); check the URL, the endpoint and the region",
                path: location)
        case (_, "NoSuchKey"), (404, ""):
            return CheckpointError(.notFound, "no such object in bucket \"\(operation.bucket)\"", path: location)
        case (412, _), (_, "PreconditionFailed"):
            return CheckpointError(
                .objectStore,
                "the object changed while it was being read (412 PreconditionFailed: it no longer has the ETag it had when the read began); it was replaced meanwhile: load again",
                path: location)
        case (_, "NoSuchUpload"):
            return CheckpointError(
                .objectStore, "the multipart upload was aborted or has expired (NoSuchUpload); save again", path: location)
        case (_, "PermanentRedirect"), (301, _),
            (_, "AuthorizationHeaderMalformed") where failure.region != nil:
            let region = failure.region.map { "region \($0)" } ?? "another region"
            return CheckpointError(
                .objectStore,
                "the bucket \"\(operation.bucket)\" is in \(region), not \(configuration.region); set AWS_REGION\(failure.region.map { "=\($0)" } ?? "")",
                path: location)
        case (500..<600, _), (_, "RequestTimeout"):
            return CheckpointError(
                .objectStore,
                "the S3 server at \(endpoint) failed \(operation.name) with \(failure.summary) after \(Self.attempts(attempts)); try again later",
                path: location)
        default:
            return CheckpointError(.objectStore, "\(operation.name) failed: \(failure.summary)", path: location)
        }
    }

    /// The error for a request that got no answer.
    func error(for failure: TransportFailure, _ operation: S3Operation, attempts: Int, since start: ContinuousClock.Instant) -> CheckpointError {
        let location = operation.location.description
        if let truncated = failure.error as? ResponseCollector.Truncated {
            return CheckpointError(
                .objectStore,
                "the download is truncated: \(truncated) (after \(Self.attempts(attempts))); nothing was loaded from it",
                path: location)
        }
        guard failure.isRetryable else {
            return CheckpointError(
                .objectStore, "\(operation.name) failed: \(failure.summary)", path: location,
                underlying: failure.error)
        }
        let elapsed = String(format: "%.1f s", (ContinuousClock.now - start).seconds)
        let advice = "check S3_ENDPOINT_URL / AWS_ENDPOINT_URL, the network, and that the server is running"
        if failure.isConnectFailure {
            return CheckpointError(
                .unreachable,
                "cannot reach the S3 endpoint \(endpoint) (\(failure.summary)) after \(Self.attempts(attempts)) over \(elapsed); \(advice)",
                path: location)
        }
        return CheckpointError(
            .unreachable,
            "lost the connection to the S3 endpoint \(endpoint) during \(operation.name) (\(failure.summary)) after \(Self.attempts(attempts)) over \(elapsed); \(advice)",
            path: location)
    }

    private static func attempts(_ count: Int) -> String { count == 1 ? "1 attempt" : "\(count) attempts" }

    /// The IAM action an operation needs, for the advice of a permission error.
    static func permission(for operation: String) -> String {
        switch operation {
        case "GetObject", "HeadObject": "s3:GetObject"
        case "ListObjectsV2", "HeadBucket": "s3:ListBucket"
        case "DeleteObject": "s3:DeleteObject"
        case "AbortMultipartUpload": "s3:AbortMultipartUpload"
        default: "s3:PutObject"
        }
    }
}

/// A failure answer from S3: its status and the code and message of its XML body.
struct S3Failure: Sendable {
    var status: UInt
    var code: String?
    var message: String?
    /// The bucket's region, when the server says the request went to the wrong one.
    var region: String?

    init(status: UInt, code: String?, message: String?, region: String?) {
        self.status = status
        self.code = code
        self.message = message
        self.region = region
    }

    init(response: S3Response) {
        let root = response.body.readableBytes > 0 ? S3XML.parse(response.bytes) : nil
        self.init(
            status: response.status, code: root?.value("Code"), message: root?.value("Message"),
            region: root?.value("Region") ?? response.headers.first(name: "x-amz-bucket-region"))
    }

    /// 5xx answers (S3's `SlowDown` among them) and S3's own timeout; never another 4xx.
    var isRetryable: Bool { status >= 500 || code == "RequestTimeout" }

    /// `503 SlowDown: Please reduce your request rate`, on one line.
    var summary: String {
        var text = "\(status)"
        if let code { text += " \(code)" }
        if let message, !message.isEmpty {
            text += ": " + message.split(whereSeparator: \.isNewline).joined(separator: " ")
        }
        return text
    }
}

/// A request that got no HTTP answer.
struct TransportFailure: Error, Sendable {
    var error: any Error
    var isRetryable: Bool

    /// Whether no connection was made at all (so the endpoint is unreachable, not just slow).
    var isConnectFailure: Bool {
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        let text = String(describing: error).lowercased()
        return text.contains("connection refused") || text.contains("connectionrefused") || text.contains("econnrefused")
            || text.contains("connect timeout") || text.contains("connecttimeout")
            || text.contains("no such host") || text.contains("name or service not known") || text.contains("unknown host")
            || text.contains("connectionerror") || text.contains("resolution")
    }

    /// A short description: `connection refused`, `read timed out`, ...
    var summary: String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connect timed out"
            case .readTimeout: return "read timed out"
            case .writeTimeout: return "write timed out"
            case .remoteConnectionClosed: return "connection closed by the server"
            case .deadlineExceeded: return "deadline exceeded"
            default: return "\(error)"
            }
        }
        if let error = error as? HTTPParserError, error == .invalidEOFState {
            return "the connection closed before the whole answer arrived"
        }
        if let error = error as? ResponseCollector.TooLarge { return error.description }
        if let error = error as? ResponseCollector.Truncated { return "truncated answer: \(error)" }
        let text = String(describing: error)
        if text.lowercased().contains("refused") { return "connection refused" }
        if text.lowercased().contains("reset") { return "connection reset" }
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// Collects a response and its body, refusing bodies larger than a limit.
///
/// `@unchecked Sendable`: AsyncHTTPClient calls a delegate's methods one at a time on the
/// request's event loop, and the collected response is read only through the task's future,
/// after the last of them.
final class ResponseCollector: HTTPClientResponseDelegate, @unchecked Sendable {
    typealias Response = S3Response

    struct TooLarge: Error, CustomStringConvertible {
        var limit: Int
        var description: String { "the server sent more than the \(limit) bytes expected" }
    }

    /// A successful answer whose body is not the length asked for.
    struct Truncated: Error, CustomStringConvertible {
        var expected: Int
        var received: Int
        var description: String { "\(received) of \(expected) bytes arrived" }
    }

    /// The most bytes of an error answer's body accepted.
    static let errorBodyLimit = 64 << 10

    private var limit: Int
    private let expectedLength: Int?
    /// Where the bytes received are counted.
    private let counters: [TransferStatistics]
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()

    init(limit: Int, expectedLength: Int?, counters: [TransferStatistics] = []) {
        self.limit = max(limit, expectedLength ?? 0)
        self.expectedLength = expectedLength
        self.counters = counters
    }

    func didReceiveHead(task: HTTPClient.Task<S3Response>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        self.head = head
        // The limit is the size of the data asked for; an error's XML body may be longer than a
        // small range (an 8-byte read answered by 503 SlowDown), and must arrive whole to be
        // retried or reported.
        if !(200..<300).contains(head.status.code) { limit = max(limit, Self.errorBodyLimit) }
        if let length = head.headers.first(name: "content-length").flatMap(Int.init), length <= limit {
            body.reserveCapacity(length)
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<S3Response>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        guard body.readableBytes + buffer.readableBytes <= limit else {
            return task.eventLoop.makeFailedFuture(TooLarge(limit: limit))
        }
        for counter in counters { counter.didDownload(buffer.readableBytes) }
        var buffer = buffer
        body.writeBuffer(&buffer)
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<S3Response>) throws -> S3Response {
        let status = head?.status.code ?? 0
        if let expectedLength, (200..<300).contains(status), body.readableBytes != expectedLength {
            throw Truncated(expected: expectedLength, received: body.readableBytes)
        }
        return S3Response(status: status, headers: head?.headers ?? [:], body: body)
    }
}

/// Owns an `HTTPClient` and shuts it down when no longer used, so dropping a store never
/// leaves a client running (AsyncHTTPClient requires an explicit shutdown).
final class HTTPClientOwner: Sendable {
    let client: HTTPClient
    private let isShutDown = Mutex(false)

    init(_ client: HTTPClient) { self.client = client }

    func shutdown() {
        let already = isShutDown.withLock { state in
            defer { state = true }
            return state
        }
        // The callback form neither blocks nor needs this thread; the client stays alive until done.
        if !already { client.shutdown { _ in } }
    }

    deinit { shutdown() }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var nanoseconds: Double { seconds * 1e9 }
}
