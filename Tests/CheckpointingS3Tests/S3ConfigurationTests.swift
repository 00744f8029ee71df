import Checkpointing
import CheckpointingTestSupport
import Crypto
import Foundation
import NIOHTTP1
import Testing

@testable import CheckpointingS3

/// Settings as the AWS CLI reads them (environment, then `~/.aws` profiles), URLs, S3's XML,
/// and the rules that need no server.
@Suite struct S3ConfigurationTests {
    /// A home folder with `.aws/credentials` and `.aws/config`.
    static func home(credentials: String, config: String) throws -> TemporaryFolder {
        let folder = try TemporaryFolder()
        try FileManager.default.createDirectory(atPath: folder.file(".aws"), withIntermediateDirectories: true)
        try credentials.write(toFile: folder.file(".aws/credentials"), atomically: true, encoding: .utf8)
        try config.write(toFile: folder.file(".aws/config"), atomically: true, encoding: .utf8)
        return folder
    }

    static let credentialsFile = """
        [default]
        aws_access_key_id = AKIADEFAULTDEFAULT00
        aws_secret_access_key = default-secret

        # a comment
        [ci]
        aws_access_key_id=AKIACICICICICICICI00
        aws_secret_access_key=ci-secret
        aws_session_token = ci-token
        """

    static let configFile = """
        [default]
        region = eu-central-1

        [profile ci]
        region = ap-southeast-2
        max_attempts = 7
        s3 =
          addressing_style = virtual
          endpoint_url = http://127.0.0.1:9000
          multipart_chunksize = 32MB
          max_concurrent_requests = 12
        """

    @Test func environmentVariablesComeFirst() throws {
        let home = try Self.home(credentials: Self.credentialsFile, config: Self.configFile)
        let environment = AWSEnvironment(
            variables: [
                "AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT00000", "AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_SESSION_TOKEN": "tok",
                "AWS_REGION": "us-west-2", "S3_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
                "AWS_MAX_ATTEMPTS": "2",
            ], home: home.path)
        let configuration = try S3Configuration.fromEnvironment(environment)
        #expect(configuration.credentials.accessKeyID == "AKIAENVIRONMENT00000")
        #expect(configuration.credentials.sessionToken == "tok")
        #expect(configuration.region == "us-west-2")
        #expect(configuration.endpoint == "http://127.0.0.1:4566")  // S3_ENDPOINT_URL before AWS_ENDPOINT_URL
        #expect(configuration.retry.maxAttempts == 2)
        let client = try S3Client(configuration: configuration)
        defer { client.shutdown() }
        // A custom endpoint is addressed path-style.
        let request = client.request(for: S3Operation(name: "GetObject", method: .GET, bucket: "b", key: "k/x y"))
        #expect(request.url == "http://127.0.0.1:4566/b/k/x%20y")
    }

    @Test func profilesFromTheSharedFiles() throws {
        let home = try Self.home(credentials: Self.credentialsFile, config: Self.configFile)
        let byDefault = try S3Configuration.fromEnvironment(AWSEnvironment(variables: [:], home: home.path))
        #expect(byDefault.credentials.accessKeyID == "AKIADEFAULTDEFAULT00")
        #expect(byDefault.region == "eu-central-1")
        #expect(byDefault.endpoint == nil)

        let ci = try S3Configuration.fromEnvironment(AWSEnvironment(variables: ["AWS_PROFILE": "ci"], home: home.path))
        #expect(ci.credentials.accessKeyID == "AKIACICICICICICICI00")
        #expect(ci.credentials.secretAccessKey == "ci-secret")
        #expect(ci.credentials.sessionToken == "ci-token")
        #expect(ci.credentials.source.contains("profile \"ci\""))
        #expect(ci.region == "ap-southeast-2")
        #expect(ci.endpoint == "http://127.0.0.1:9000")
        #expect(ci.addressing == .virtualHosted)
        #expect(ci.partSize == 32 << 20)
        #expect(ci.maxConcurrency == 12)
        #expect(ci.retry.maxAttempts == 7)
    }

    @Test func missingCredentialsSayWhereTheyWereLookedFor() throws {
        let home = try Self.home(credentials: "", config: "")
        let failure = #expect(throws: CheckpointError.self) {
            try S3Configuration.fromEnvironment(AWSEnvironment(variables: ["AWS_PROFILE": "nobody"], home: home.path))
        }
        #expect(failure?.code == .badCredentials)
        #expect(failure?.message.contains("AWS_ACCESS_KEY_ID") == true)
        #expect(failure?.message.contains("profile \"nobody\"") == true)
        let half = #expect(throws: CheckpointError.self) {
            try AWSEnvironment(variables: ["AWS_ACCESS_KEY_ID": "AKIA"], home: home.path).credentials()
        }
        #expect(half?.message.contains("AWS_SECRET_ACCESS_KEY is not") == true)
        let endpoint = #expect(throws: CheckpointError.self) {
            try S3Configuration(endpoint: "ftp://somewhere", credentials: testCredentials).resolvedEndpoint()
        }
        #expect(endpoint?.code == .invalidArgument)
    }

    @Test func credentialsNeverShowTheirSecrets() {
        let credentials = AWSCredentials(
            accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG", sessionToken: "session-token",
            source: "the environment")
        #expect(credentials.description == "access key AKIA…MPLE from the environment")
        #expect(!"\(credentials)".contains("wJalr"))
        #expect(!"\(credentials)".contains("session-token"))
    }

    @Test func awsEndpointsAreVirtualHostedWhenTheBucketAllows() throws {
        let client = try S3Client(configuration: S3Configuration(region: "eu-west-1", credentials: testCredentials))
        defer { client.shutdown() }
        #expect(client.request(for: S3Operation(name: "GetObject", method: .GET, bucket: "my-bucket", key: "a b")).url
            == "https://my-bucket.s3.eu-west-1.amazonaws.com/a%20b")
        #expect(client.request(for: S3Operation(name: "GetObject", method: .GET, bucket: "my.dotted.bucket", key: "k")).url
            == "https://s3.eu-west-1.amazonaws.com/my.dotted.bucket/k")
        let list = S3Operation(name: "ListObjectsV2", method: .GET, bucket: "my-bucket", key: nil, query: [("list-type", "2"), ("prefix", "a/b c")])
        #expect(client.request(for: list).url == "https://my-bucket.s3.eu-west-1.amazonaws.com/?list-type=2&prefix=a%2Fb%20c")
    }

    @Test func objectLocationsParseAsS3Writes() {
        let location = ObjectLocation("s3://bucket/run/a//b c.safetensors")
        #expect(location?.bucket == "bucket")
        #expect(location?.key == "run/a//b c.safetensors")
        #expect(location?.name == "b c.safetensors")
        #expect(ObjectLocation("S3://bucket")?.key == "")
        #expect(ObjectLocation("s3://bucket/run")?.appending("ep1.safetensors").description == "s3://bucket/run/ep1.safetensors")
        #expect(ObjectLocation("s3://bucket/run/")?.appending("/x").key == "run/x")
        for local in ["/tmp/x", "relative/x.safetensors", "file:///tmp/x", "s3:/bucket/x", "://x", "s3:///key", "1s3://b/k"] {
            #expect(ObjectLocation(local) == nil, "\(local)")
        }
    }

    @Test func s3XMLIsRead() throws {
        let listing = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
              <IsTruncated>true</IsTruncated><NextContinuationToken>1/a+b==</NextContinuationToken>
              <Contents><Key>a%20b/%C3%BC+%2B.safetensors</Key><Size>12</Size><ETag>&quot;abc&quot;</ETag></Contents>
              <Contents><Key><![CDATA[x&y]]></Key><Size>1</Size></Contents>
              <CommonPrefixes><Prefix>sub/</Prefix></CommonPrefixes>
              <Empty/>
            </ListBucketResult>
            """
        let root = try #require(S3XML.parse(Array(listing.utf8)))
        #expect(root.name == "ListBucketResult")
        #expect(root.value("NextContinuationToken") == "1/a+b==")
        #expect(root.all("Contents").map { $0.value("ETag") } == ["\"abc\"", nil])
        #expect(root.all("Contents").last?.value("Key") == "x&y")
        #expect(S3ListingPage.urlDecode("a%20b/%C3%BC+%2B.safetensors") == "a b/ü +.safetensors")
        #expect(root.child("Empty")?.text == "")
        #expect(S3XML.parse(Array("<Error><Code>NoSuchKey</Code>".utf8)) == nil)
        #expect(S3XML.parse(Array(String(repeating: "<a>", count: 100).utf8)) == nil)
        #expect(S3XML.escape("<a & \"b\">") == "&lt;a &amp; &quot;b&quot;&gt;")
        // Found by fuzzing (target s3-xml): a `<` followed by a combining mark is one Swift
        // Character, which must still be escaped as a `<`.
        let key = "run/x&<\u{33C}tents>"
        #expect(S3XML.parse(Array(("<Key>" + S3XML.escape(key) + "</Key>").utf8))?.text == key)
    }

    @Test func partsGrowPast10000AndTheMultipartETagIsComputed() throws {
        let client = try S3Client(configuration: S3Configuration(endpoint: "http://127.0.0.1:1", credentials: testCredentials, partSize: 8 << 20))
        defer { client.shutdown() }
        #expect(client.partSize(for: 1 << 30) == 8 << 20)
        #expect(client.partSize(for: 200 << 30) == 21 << 20)  // 200 GiB in at most 10,000 parts
        // Two parts "a" and "b": MD5 of their MD5s, then the count.
        #expect(S3Client.multipartETag([Array(Insecure.MD5.hash(data: Array("a".utf8))), Array(Insecure.MD5.hash(data: Array("b".utf8)))])
            == "96e024ba2074fe77e8e965ba43a704be-2")
    }

    @Test func retriesWaitLongerEachTimeWithJitter() {
        let policy = S3Configuration.RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(100), maxDelay: .seconds(1))
        for attempt in 1...6 {
            let ceiling = min(Duration.seconds(1), .milliseconds(100) * (1 << (attempt - 1)))
            let delays = (0..<50).map { _ in policy.delay(after: attempt) }
            #expect(delays.allSatisfy { $0 >= ceiling / 2 && $0 <= ceiling }, "attempt \(attempt)")
            #expect(Set(delays).count > 1, "jitter")
        }
    }
}

