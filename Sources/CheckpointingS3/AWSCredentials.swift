public import Checkpointing
import Foundation

/// AWS credentials: an access key, its secret, and a session token for temporary credentials.
///
/// Its description names the key's source and only the ends of the key ID; the secret and the
/// token never appear in a description, a log line or an error.
public struct AWSCredentials: Sendable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// Where they came from, for messages: `environment`, `profile "ci" in ~/.aws/credentials`.
    public var source: String

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, source: String = "code") {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.source = source
    }

    /// The key ID with its middle hidden (`AKIA…MPLE`): enough to tell keys apart in a message.
    public var redactedKeyID: String {
        accessKeyID.count > 8 ? "\(accessKeyID.prefix(4))…\(accessKeyID.suffix(4))" : "…"
    }

    public var description: String { "access key \(redactedKeyID) from \(source)" }
}

/// The AWS settings of this process: environment variables first, then the shared
/// `~/.aws/credentials` and `~/.aws/config` files (the profile named by `AWS_PROFILE`, else
/// `default`), as the AWS CLI reads them.
///
/// Supported: static keys and session tokens (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, or `aws_access_key_id`... in a profile), the region (`AWS_REGION`,
/// `AWS_DEFAULT_REGION`, `region`), the endpoint (`S3_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`,
/// `AWS_ENDPOINT_URL`, or `endpoint_url` in the profile or its `s3` section), the addressing style
/// (`addressing_style` in the profile's `s3` section) and `AWS_MAX_ATTEMPTS` / `max_attempts`.
/// Not supported: SSO, `credential_process`, role assumption and instance metadata.
public struct AWSEnvironment: Sendable {
    public var variables: [String: String]
    /// The user's home folder, where `.aws/` is looked for.
    public var home: String

    /// This process's environment variables and home folder.
    public init() {
        self.init(variables: ProcessInfo.processInfo.environment, home: FileManager.default.homeDirectoryForCurrentUser.path)
    }

    public init(variables: [String: String], home: String) {
        self.variables = variables
        self.home = home
    }

    /// The profile: `AWS_PROFILE`, else `AWS_DEFAULT_PROFILE`, else `default`.
    public var profile: String {
        nonEmpty("AWS_PROFILE") ?? nonEmpty("AWS_DEFAULT_PROFILE") ?? "default"
    }

    var credentialsFile: String { nonEmpty("AWS_SHARED_CREDENTIALS_FILE") ?? home + "/.aws/credentials" }
    var configFile: String { nonEmpty("AWS_CONFIG_FILE") ?? home + "/.aws/config" }

    /// The credentials, or an error that says where they were looked for.
    public func credentials() throws(CheckpointError) -> AWSCredentials {
        if let key = nonEmpty("AWS_ACCESS_KEY_ID") {
            guard let secret = nonEmpty("AWS_SECRET_ACCESS_KEY") else {
                throw CheckpointError(
                    .badCredentials, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both, or neither to use a profile")
            }
            return AWSCredentials(
                accessKeyID: key, secretAccessKey: secret,
                sessionToken: nonEmpty("AWS_SESSION_TOKEN") ?? nonEmpty("AWS_SECURITY_TOKEN"), source: "the environment")
        }
        let sources: [(String, [String: String])] = [
            (credentialsFile, try Self.section(profile, in: credentialsFile, configStyle: false)),
            (configFile, try Self.section(profile, in: configFile, configStyle: true)),
        ]
        for (file, settings) in sources {
            guard let key = settings["aws_access_key_id"], !key.isEmpty else { continue }
            guard let secret = settings["aws_secret_access_key"], !secret.isEmpty else {
                throw CheckpointError(
                    .badCredentials, "profile \"\(profile)\" has aws_access_key_id but no aws_secret_access_key", path: file)
            }
            return AWSCredentials(
                accessKeyID: key, secretAccessKey: secret, sessionToken: settings["aws_session_token"],
                source: "profile \"\(profile)\" in \(file)")
        }
        throw CheckpointError(
            .badCredentials,
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put a profile in \(credentialsFile) (profile \"\(profile)\"; AWS_PROFILE picks another)")
    }

    /// The region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, else `us-east-1`.
    public func region() throws(CheckpointError) -> String {
        if let region = nonEmpty("AWS_REGION") ?? nonEmpty("AWS_DEFAULT_REGION") { return region }
        return try configSetting("region") ?? "us-east-1"
    }

    /// A custom endpoint, if one is set: `S3_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`,
    /// `AWS_ENDPOINT_URL`, or `endpoint_url` in the profile's `s3` section or the profile.
    public func endpoint() throws(CheckpointError) -> String? {
        if let url = nonEmpty("S3_ENDPOINT_URL") ?? nonEmpty("AWS_ENDPOINT_URL_S3") ?? nonEmpty("AWS_ENDPOINT_URL") {
            return url
        }
        if let url = try configSetting("s3.endpoint_url") { return url }
        return try configSetting("endpoint_url")
    }

    /// `path`, `virtual` or `auto` from the profile's `s3` section, if set.
    public func addressingStyle() throws(CheckpointError) -> String? {
        try configSetting("s3.addressing_style")
    }

    /// `AWS_MAX_ATTEMPTS` or the profile's `max_attempts`, if set.
    public func maxAttempts() throws(CheckpointError) -> Int? {
        if let text = nonEmpty("AWS_MAX_ATTEMPTS") {
            guard let value = Int(text), value >= 1 else {
                throw CheckpointError(.invalidArgument, "AWS_MAX_ATTEMPTS must be a whole number of at least 1, not \"\(text)\"")
            }
            return value
        }
        return try configSetting("max_attempts").flatMap { Int($0) }
    }

    private func configSetting(_ key: String) throws(CheckpointError) -> String? {
        try Self.section(profile, in: configFile, configStyle: true)[key]
    }

    private func nonEmpty(_ name: String) -> String? {
        guard let value = variables[name], !value.isEmpty else { return nil }
        return value
    }

    /// The settings of one profile in an AWS INI file; empty when the file or section is missing.
    ///
    /// In the config file a profile's section is `[profile NAME]` (`[default]` for the default);
    /// in the credentials file it is `[NAME]`. A key with an empty value followed by indented
    /// lines is a sub-section: `s3 =` then `  addressing_style = path` gives `s3.addressing_style`.
    static func section(_ profile: String, in file: String, configStyle: Bool) throws(CheckpointError) -> [String: String] {
        let data: [UInt8]
        do {
            data = try SystemCalls.readFile(file, limit: 16 << 20)
        } catch where error.code == .notFound {
            return [:]
        } catch {
            throw CheckpointError(.io, "cannot read the AWS settings file: \(error.message)", path: file, underlying: error.underlying)
        }
        let wanted = configStyle && profile != "default" ? "profile \(profile)" : profile
        return parseSection(wanted, text: String(decoding: data, as: UTF8.self))
    }

    static func parseSection(_ wanted: String, text: String) -> [String: String] {
        var settings: [String: String] = [:]
        var inSection = false
        var parent: String?
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                let name = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                inSection = name.split(whereSeparator: \.isWhitespace).joined(separator: " ") == wanted
                parent = nil
                continue
            }
            guard inSection, let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            let indented = rawLine.first?.isWhitespace == true
            if indented, let parent {
                settings[parent + "." + key] = value
            } else if value.isEmpty {
                parent = key
            } else {
                parent = nil
                settings[key] = value
            }
        }
        return settings
    }
}
