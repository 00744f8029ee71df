import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

@testable import CheckpointingS3

/// moto with IAM authentication switched on: it recomputes every request's signature with
/// botocore and applies the users' policies. A `writer` may do anything in S3; a `reader` may
/// only get and list.
struct MotoWithIAM: SuiteTrait, TestScoping {
    struct Context: Sendable {
        var server: LoopbackServer
        var writer: AWSCredentials
        var reader: AWSCredentials
    }

    @TaskLocal static var context: Context?

    static let bucket = "guarded"

    /// Creates the users and the bucket while moto does not check, then turns checking on.
    static let setupScript = """
        import json, sys, urllib.request
        import boto3
        endpoint = sys.argv[1]
        settings = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
        iam = boto3.client("iam", **settings)
        boto3.client("s3", **settings).create_bucket(Bucket="guarded")
        keys = {}
        for user, actions in [("writer", ["s3:*"]), ("reader", ["s3:GetObject", "s3:ListBucket"])]:
            iam.create_user(UserName=user)
            policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
            iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = [key["AccessKeyId"], key["SecretAccessKey"]]
        urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}))
        print(json.dumps(keys))
        """

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let server = try MotoServer.start()
        defer { server.stop() }
        let output = try runPython(Self.setupScript, [server.endpoint])
        let keys = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: [String]])
        let writer = try #require(keys["writer"]), reader = try #require(keys["reader"])
        let context = Context(
            server: server,
            writer: AWSCredentials(accessKeyID: writer[0], secretAccessKey: writer[1], source: "the writer's test key"),
            reader: AWSCredentials(accessKeyID: reader[0], secretAccessKey: reader[1], source: "the reader's test key"))
        try await Self.$context.withValue(context) { try await function() }
    }
}

extension Trait where Self == MotoWithIAM {
    static var motoWithIAM: Self { MotoWithIAM() }
}

@Suite(.motoWithIAM, .serialized) struct S3AuthTests {
    /// Runs `body` with `credentials` sent to the guarded bucket under a prefix of its own.
    func with<R>(_ credentials: AWSCredentials, partSize: Int = 5 << 20, _ body: (S3ObjectStore, String) throws -> R) throws -> R {
        let context = try #require(MotoWithIAM.context)
        let store = try makeStore(endpoint: context.server.endpoint, credentials: credentials, partSize: partSize)
        defer { store.shutdown() }
        ObjectStores.register(store, for: "s3://\(MotoWithIAM.bucket)")
        defer { ObjectStores.unregister(prefix: "s3://\(MotoWithIAM.bucket)") }
        return try body(store, "s3://\(MotoWithIAM.bucket)/\(UUID().uuidString.prefix(8))")
    }

    /// Every kind of request this module makes passes a server that checks its signature.
    @Test func signedRequestsPassAServerThatChecksSignatures() throws {
        let writer = try #require(MotoWithIAM.context).writer
        try with(writer) { store, prefix in
            var state = try smallState(batch: 2)
            state.model["big"] = .tensor(try Tensor(dtype: .uint8, shape: [11 << 20]) { bytes in
                for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: index &* 31) }
            })
            try saveCheckpoint(state, filename: "\(prefix)/ba{batch}.safetensors")
            #expect(store.transferReports.last?.parts == 3)
            #expect(try loadCheckpoint("\(prefix)/ba2.safetensors").timestamp.batch == 2)
            // A prefix without "/": moto's signature check mishandles "/" in query values, and
            // refuses boto3's own ListObjectsV2 with Prefix="a/" just the same.
            #expect(try store.list(ObjectLocation(prefix)!, delimiter: nil).objects.count == 1)
            try store.delete(ObjectLocation("\(prefix)/ba2.safetensors")!)
            #expect(try store.info(ObjectLocation("\(prefix)/ba2.safetensors")!) == nil)
        }
    }

    @Test func aRefusedWriteIsPermissionDeniedNeverNotFound() throws {
        let context = try #require(MotoWithIAM.context)
        try with(context.reader) { _, prefix in
            let failure = #expect(throws: CheckpointError.self) {
                try saveCheckpoint(try smallState(), filename: "\(prefix)/ba7.safetensors")
            }
            #expect(failure?.code == .permissionDenied)
            #expect(failure?.message.hasPrefix("permission denied (403 AccessDenied) for PutObject") == true)
            #expect(failure?.message.contains("s3:PutObject") == true)
            #expect(failure?.message.contains("not found") == false)
            #expect(failure?.message.contains(context.reader.secretAccessKey) == false)
        }
        // The same refusal through ckpt: one line on standard error, exit status 1.
        let folder = try TemporaryFolder()
        try saveCheckpoint(try smallState(), filename: folder.file("local.safetensors"))
        let run = try CKPT.run(
            ["convert", folder.file("local.safetensors"), "s3://\(MotoWithIAM.bucket)/cli/ba7.safetensors"],
            endpoint: context.server.endpoint,
            extraEnvironment: ["AWS_ACCESS_KEY_ID": context.reader.accessKeyID, "AWS_SECRET_ACCESS_KEY": context.reader.secretAccessKey])
        #expect(run.status == 1)
        #expect(run.stderr.hasPrefix("Error: s3://\(MotoWithIAM.bucket)/cli/ba7.safetensors: permission denied (403 AccessDenied)"))
        #expect(run.stderr.filter { $0 == "\n" }.count == 1)
    }

    @Test func unknownKeysAndWrongSecretsAreBadCredentials() throws {
        let writer = try #require(MotoWithIAM.context).writer
        let unknown = AWSCredentials(accessKeyID: "AKIAUNKNOWNUNKNOWN00", secretAccessKey: "whatever", source: "a test")
        try with(unknown) { _, prefix in
            let failure = #expect(throws: CheckpointError.self) { try saveCheckpoint(try smallState(), filename: "\(prefix)/a.safetensors") }
            #expect(failure?.code == .badCredentials)
            #expect(failure?.message.contains("(InvalidAccessKeyId)") == true)
            #expect(failure?.message.contains("AKIA…WN00 from a test") == true)
        }
        let wrongSecret = AWSCredentials(accessKeyID: writer.accessKeyID, secretAccessKey: "not-the-secret", source: "a test")
        try with(wrongSecret) { _, prefix in
            let failure = #expect(throws: CheckpointError.self) { try loadCheckpoint("\(prefix)/a.safetensors") }
            #expect(failure?.code == .badCredentials)
            #expect(failure?.message.contains("(SignatureDoesNotMatch)") == true)
            #expect(failure?.message.contains("not-the-secret") == false)
        }
    }
}
