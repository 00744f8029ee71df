import Checkpointing
import CheckpointingTestSupport
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import CheckpointingS3

/// SigV4 written by hand against botocore's `S3SigV4Auth`, the reference: the same
/// requests, the same keys and the same instant must give the same `Authorization` header.
@Suite struct SigV4Tests {
    struct Case {
        var name: String
        var endpoint = "http://127.0.0.1:9000"
        var region = "us-east-1"
        var addressing = S3Configuration.Addressing.path
        var method: HTTPMethod = .GET
        var bucket = "my-bucket"
        var key: String? = "run/ep1-ba100.safetensors"
        var query: [(name: String, value: String)] = []
        var headers: [(name: String, value: String)] = []
        var body: [UInt8]?
        var unsigned = false
        var token: String?
    }

    static let cases: [Case] = [
        Case(name: "GET, empty payload"),
        Case(name: "key with spaces, unicode and reserved characters",
             key: "dir with spaces/ünïcödé €/a+b=c&d?e#f%g~h!i'j(k)l*m,n;o:p@q$r[s]t//u.safetensors"),
        Case(name: "ListObjectsV2 with special characters in prefix and token", key: nil,
             query: [("list-type", "2"), ("prefix", "a b/ü+=&?/"), ("delimiter", "/"), ("encoding-type", "url"),
                     ("max-keys", "7"), ("continuation-token", "1/AbC+dEf==~")]),
        Case(name: "PUT with a hashed body and metadata", method: .PUT,
             headers: [("Content-MD5", "XrY7u+Ae7tCTyyK7j1rNww=="), ("Content-Type", "application/octet-stream"),
                       ("x-amz-meta-checkpoint-part-size", "16777216")],
             body: Array("hello world".utf8)),
        Case(name: "PUT over HTTPS with UNSIGNED-PAYLOAD", endpoint: "https://s3.us-east-1.amazonaws.com", method: .PUT,
             headers: [("Content-MD5", "XrY7u+Ae7tCTyyK7j1rNww==")], body: Array(repeating: 0xAB, count: 4096), unsigned: true),
        Case(name: "CreateMultipartUpload (?uploads, no value)", method: .POST, query: [("uploads", "")],
             headers: [("Content-Type", "application/octet-stream")]),
        Case(name: "UploadPart with an upload id that needs encoding", method: .PUT,
             query: [("partNumber", "12"), ("uploadId", "VXBsb2FkIElE+/=.~_-")], body: Array(repeating: 7, count: 1000)),
        Case(name: "HEAD with a session token", method: .HEAD, token: "FwoGZXIvYXdzEJr//////////wEaDOy+session/token=="),
        Case(name: "ranged GET with If-Match and a header full of spaces",
             headers: [("Range", "bytes=0-1048575"), ("If-Match", "\"0123456789abcdef0123456789abcdef-32\""),
                       ("x-amz-meta-note", "  several   spaces\there  ")]),
        Case(name: "virtual-hosted bucket in another region", endpoint: "https://s3.eu-west-1.amazonaws.com",
             region: "eu-west-1", addressing: .virtualHosted, key: "a/b c.safetensors"),
        Case(name: "DELETE", method: .DELETE, key: "old/ep0-ba1.safetensors"),
        Case(name: "empty query value and an empty body on POST", method: .POST, query: [("uploadId", "abc"), ("x", "")],
             body: []),
    ]

    /// The botocore side: builds each request from its raw bucket, key and parameters (so
    /// botocore does its own percent-encoding) and signs it at a fixed instant.
    static let botocoreScript = """
        import base64, datetime, json, sys, types
        from unittest import mock
        import botocore.auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        from botocore.utils import percent_encode
        out = []
        for case in json.loads(sys.argv[1]):
            credentials = Credentials(case["access_key"], case["secret_key"], case["token"])
            auth = botocore.auth.S3SigV4Auth(credentials, "s3", case["region"])
            scheme, host = case["endpoint"].split("://")
            if case["virtual"]:
                url = f"{scheme}://{case['bucket']}.{host}/"
            else:
                url = f"{scheme}://{host}/{percent_encode(case['bucket'], safe='')}"
                if case["key"] is not None:
                    url += "/"
            if case["key"] is not None:
                url += percent_encode(case["key"], safe="/~")
            body = base64.b64decode(case["body"]) if case["body"] is not None else None
            request = AWSRequest(method=case["method"], url=url, headers=dict(case["headers"]), data=body)
            request.params = [tuple(pair) for pair in case["query"]]
            if case["unsigned"]:
                request.context["client_config"] = types.SimpleNamespace(s3={"payload_signing_enabled": False})
            instant = datetime.datetime(2026, 3, 14, 15, 9, 26)
            with mock.patch("botocore.auth.get_current_datetime", return_value=instant):
                auth.add_auth(request)
            out.append({"authorization": request.headers["Authorization"],
                        "sha256": request.headers["X-Amz-Content-SHA256"], "date": request.headers["X-Amz-Date"]})
        print(json.dumps(out))
        """

    @Test func signaturesEqualBotocores() throws {
        guard pythonCanImport("botocore") else {
            Issue.record("botocore is not installed: run scripts/install-dependencies.sh --test")
            return
        }
        let instant = Date(timeIntervalSince1970: 1_773_500_966)  // 2026-03-14T15:09:26Z
        var ours: [(authorization: String, sha256: String, date: String)] = []
        var inputs: [[String: Any]] = []
        for testCase in Self.cases {
            let credentials = AWSCredentials(
                accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                sessionToken: testCase.token)
            let client = try S3Client(configuration: S3Configuration(
                endpoint: testCase.endpoint, region: testCase.region, credentials: credentials,
                addressing: testCase.addressing))
            defer { client.shutdown() }
            let operation = S3Operation(
                name: testCase.name, method: testCase.method, bucket: testCase.bucket, key: testCase.key,
                query: testCase.query, headers: testCase.headers, body: testCase.body.map { ByteBuffer(bytes: $0) })
            let request = client.request(for: operation)
            let payloadHash = testCase.unsigned
                ? SigV4.unsignedPayload : SigV4.hex(SHA256.hash(data: testCase.body ?? []))
            let signed = client.signer.sign(request, payloadHash: payloadHash, date: instant)
            func header(_ name: String) -> String { signed.headers.first { $0.name == name }?.value ?? "" }
            ours.append((header("Authorization"), header("X-Amz-Content-SHA256"), header("X-Amz-Date")))
            inputs.append([
                "endpoint": testCase.endpoint, "region": testCase.region, "virtual": testCase.addressing == .virtualHosted,
                "method": testCase.method.rawValue, "bucket": testCase.bucket, "key": testCase.key as Any? ?? NSNull(),
                "query": testCase.query.map { [$0.name, $0.value] },
                // The headers the client sends, Content-Length included; botocore adds Host itself.
                "headers": request.headers.map { [$0.name, $0.value] },
                "body": testCase.body.map { Data($0).base64EncodedString() } as Any? ?? NSNull(),
                "unsigned": testCase.unsigned, "access_key": credentials.accessKeyID,
                "secret_key": credentials.secretAccessKey, "token": testCase.token as Any? ?? NSNull(),
            ])
        }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: inputs), as: UTF8.self)
        let output = try runPython(Self.botocoreScript, [json])
        let theirs = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: String]])
        try #require(theirs.count == Self.cases.count)
        for (index, testCase) in Self.cases.enumerated() {
            #expect(ours[index].authorization == theirs[index]["authorization"], "\(testCase.name)")
            #expect(ours[index].sha256 == theirs[index]["sha256"], "\(testCase.name)")
            #expect(ours[index].date == theirs[index]["date"], "\(testCase.name)")
        }
        #expect(ours.allSatisfy { $0.authorization.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260314/") })
    }

    /// AWS's own published example (the GET Object example of the S3 SigV4 documentation).
    @Test func awsDocumentationExample() {
        let signer = SigV4(
            credentials: AWSCredentials(
                accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            region: "us-east-1")
        let request = S3HTTPRequest(
            method: "GET", scheme: "https", host: "examplebucket.s3.amazonaws.com", encodedPath: "/test.txt", query: [],
            headers: [("Range", "bytes=0-9")])
        let signed = signer.sign(request, payloadHash: SigV4.emptyPayloadHash, date: Date(timeIntervalSince1970: 1_369_353_600))
        let authorization = signed.headers.first { $0.name == "Authorization" }?.value
        #expect(
            authorization
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func uriEncodingKeepsOnlyUnreservedCharacters() {
        #expect(SigV4.uriEncode("a b/c+d~e_f.g-h", keepSlash: true) == "a%20b/c%2Bd~e_f.g-h")
        #expect(SigV4.uriEncode("a/b=c", keepSlash: false) == "a%2Fb%3Dc")
        #expect(SigV4.uriEncode("ü€", keepSlash: false) == "%C3%BC%E2%82%AC")
    }
}
