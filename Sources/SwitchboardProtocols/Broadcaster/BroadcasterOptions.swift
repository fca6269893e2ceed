import SwitchboardJWT

/// Everything the broadcaster protocol is configured with. Every limit has a default, is
/// validated in `validate()`, is counted when hit (`BroadcasterMetrics`) and has a README row
/// (docs-pending/broadcaster.md).
public struct BroadcasterOptions: Sendable {
    /// Routes live under this path: `{base}/websocket`, `{base}/publish`, `{base}/health`.
    public var basePath: String = "/broadcaster"
    /// Verifies client tokens; nil refuses every `auth` (no key configured).
    public var verifier: JWTVerifier?
    /// Keys allowed to publish over REST; empty refuses every REST publish (401).
    public var apiKeys = APIKeySet([])
    /// Largest inbound WebSocket message; over it the connection is closed with 1009. The
    /// reference uses 1 KiB, which a browser with a large JWT can exceed.
    public var maxMessageBytes: Int = 16 << 10
    /// JSON nesting limit for requests and REST bodies (payload included).
    public var maxJSONDepth: Int = 32
    /// Longest channel name (the reference has no limit of its own).
    public var maxChannelBytes: Int = 255
    /// Subscriptions one connection may hold (`FailedPrecondition` beyond).
    public var maxSubscriptionsPerConnection: Int = 1024
    /// Messages in one batch REST publish (400 beyond).
    public var maxBatchMessages: Int = 100
    /// Close connections whose token expired without a refresh.
    public var enforceTokenExpiry: Bool = true
    /// How often each shard looks for expired tokens.
    public var expiryCheckIntervalMilliseconds: Int = 1000
    /// Channels whose owner keeps history, first match wins (none: no history).
    public var history: [BroadcasterHistoryRule] = []
    /// Channel logs (offset, epoch, history) one owner shard keeps; beyond, the least recently
    /// published is forgotten (its next message starts a new epoch).
    public var maxChannelLogsPerShard: Int = 100_000
    /// `Access-Control-Allow-Origin` on the REST publish route.
    public var corsAllowOrigin: String = "*"

    public init() {}

    /// Close codes the broadcaster uses (README table).
    public enum CloseCode {
        /// Inbound message over `maxMessageBytes` (as the reference: its read limit closes with 1009).
        public static let messageTooBig: UInt16 = 1009
        /// The message is not a request (bad JSON, wrong envelope types). The reference closes
        /// without a status code.
        public static let invalidRequest: UInt16 = 4400
        /// The token expired and was not refreshed.
        public static let tokenExpired: UInt16 = 4401
    }

    public var webSocketPath: String { basePath + "/websocket" }
    public var publishPath: String { basePath + "/publish" }
    public var healthPath: String { basePath + "/health" }

    /// A problem with the values, or nil.
    public func validate() -> String? {
        if !basePath.isEmpty && (!basePath.hasPrefix("/") || basePath.hasSuffix("/")) {
            return "broadcaster_base_path must start with / and not end with / (or be empty)"
        }
        if maxMessageBytes < 128 { return "broadcaster_max_message_bytes must be >= 128" }
        if maxJSONDepth < 2 || maxJSONDepth > 1024 { return "broadcaster_max_json_depth must be 2...1024" }
        if maxChannelBytes < 1 { return "broadcaster_max_channel_bytes must be >= 1" }
        if maxSubscriptionsPerConnection < 1 { return "broadcaster_max_subscriptions_per_connection must be >= 1" }
        if maxBatchMessages < 1 { return "broadcaster_max_batch_messages must be >= 1" }
        if expiryCheckIntervalMilliseconds < 10 { return "broadcaster_expiry_check_interval_ms must be >= 10" }
        if maxChannelLogsPerShard < 1 { return "broadcaster_max_channel_logs_per_shard must be >= 1" }
        return nil
    }

    // MARK: - Configuration keys

    /// Configuration-file keys (`SWITCHBOARD_` + upper case in the environment) with their help.
    public static let keys: [(key: String, help: String)] = [
        ("broadcaster_enabled", "Mount the broadcaster protocol (true/false, default false)"),
        ("broadcaster_base_path", "Base path of the routes (default /broadcaster)"),
        ("broadcaster_jwt_secret", "HS256 secret for client tokens (at least 32 bytes unless broadcaster_allow_short_secret)"),
        ("broadcaster_allow_short_secret", "Accept an HS256 secret shorter than 32 bytes (default false; true in compatibility mode)"),
        ("broadcaster_jwt_rs256_public_key_file", "PEM file with an RS256 public key for client tokens"),
        ("broadcaster_jwt_es256_public_key_file", "PEM file with an ES256 (P-256) public key for client tokens"),
        ("broadcaster_jwt_leeway_seconds", "Clock skew tolerated on exp/nbf/iat (default 30)"),
        ("broadcaster_max_token_bytes", "Longest accepted token (default 8192)"),
        ("broadcaster_api_keys", "REST publish API keys, separated by |"),
        ("broadcaster_max_message_bytes", "Largest inbound WebSocket message; closes with 1009 beyond (default 16384)"),
        ("broadcaster_max_json_depth", "JSON nesting limit (default 32)"),
        ("broadcaster_max_channel_bytes", "Longest channel name (default 255)"),
        ("broadcaster_max_subscriptions_per_connection", "Subscriptions per connection (default 1024)"),
        ("broadcaster_max_batch_messages", "Messages in one batch REST publish (default 100)"),
        ("broadcaster_enforce_token_expiry", "Close connections whose token expired with 4401 (default true)"),
        ("broadcaster_expiry_check_interval_ms", "How often shards look for expired tokens (default 1000)"),
        ("broadcaster_history", "History rules PATTERN|MESSAGES|BYTES|AGE_MS separated by commas, e.g. chat:*|100|1048576|60000"),
        ("broadcaster_max_channel_logs_per_shard", "Channel logs an owner shard keeps (default 100000)"),
        ("broadcaster_cors_allow_origin", "Access-Control-Allow-Origin of the publish route (default *)"),
    ]

    /// Reads the keys above from `values` (missing keys keep their defaults). Returns the
    /// options and whether the protocol is enabled. `readFile` loads PEM files.
    public static func parse(_ values: [String: String], readFile: (String) -> String?) throws(BroadcasterConfigurationError)
        -> (options: BroadcasterOptions, enabled: Bool)
    {
        var o = BroadcasterOptions()
        func int(_ key: String) throws(BroadcasterConfigurationError) -> Int? {
            guard let v = values[key] else { return nil }
            guard let i = Int(v) else { throw BroadcasterConfigurationError("\(key): '\(v)' is not an integer") }
            return i
        }
        func bool(_ key: String) throws(BroadcasterConfigurationError) -> Bool? {
            guard let v = values[key] else { return nil }
            switch v {
            case "true", "yes", "1": return true
            case "false", "no", "0": return false
            default: throw BroadcasterConfigurationError("\(key): '\(v)' is not true or false")
            }
        }
        for key in values.keys where key.hasPrefix("broadcaster_") && !keys.contains(where: { $0.key == key }) {
            throw BroadcasterConfigurationError("unknown option '\(key)'")
        }
        let enabled = try bool("broadcaster_enabled") ?? false
        if let v = values["broadcaster_base_path"] { o.basePath = v }
        if let v = try int("broadcaster_max_message_bytes") { o.maxMessageBytes = v }
        if let v = try int("broadcaster_max_json_depth") { o.maxJSONDepth = v }
        if let v = try int("broadcaster_max_channel_bytes") { o.maxChannelBytes = v }
        if let v = try int("broadcaster_max_subscriptions_per_connection") { o.maxSubscriptionsPerConnection = v }
        if let v = try int("broadcaster_max_batch_messages") { o.maxBatchMessages = v }
        if let v = try bool("broadcaster_enforce_token_expiry") { o.enforceTokenExpiry = v }
        if let v = try int("broadcaster_expiry_check_interval_ms") { o.expiryCheckIntervalMilliseconds = v }
        if let v = try int("broadcaster_max_channel_logs_per_shard") { o.maxChannelLogsPerShard = v }
        if let v = values["broadcaster_cors_allow_origin"] { o.corsAllowOrigin = v }
        if let v = values["broadcaster_api_keys"] { o.apiKeys = APIKeySet(splitKeys(v)) }
        if let v = values["broadcaster_history"] { o.history = try parseHistory(v) }

        var jwt = JWTVerifier.Configuration()
        if let v = try int("broadcaster_jwt_leeway_seconds") {
            guard v >= 0 && v <= JWTVerifier.Configuration.maxLeewaySeconds else {
                throw BroadcasterConfigurationError("broadcaster_jwt_leeway_seconds must be 0...86400")
            }
            jwt.leewaySeconds = v
        }
        if let v = try int("broadcaster_max_token_bytes") {
            guard v >= 64 else { throw BroadcasterConfigurationError("broadcaster_max_token_bytes must be >= 64") }
            jwt.maxTokenBytes = v
        }
        let allowShort = try bool("broadcaster_allow_short_secret") ?? false
        var keys: [JWTKey] = []
        if let secret = values["broadcaster_jwt_secret"], !secret.isEmpty {
            do { keys.append(try JWTKey(hmacSecret: Array(secret.utf8), allowShortSecret: allowShort)) } catch {
                throw BroadcasterConfigurationError("broadcaster_jwt_secret: shorter than \(JWTKey.minimumSecretBytes) bytes (set broadcaster_allow_short_secret = true to accept it)")
            }
        }
        for (key, algorithm) in [("broadcaster_jwt_rs256_public_key_file", JWTAlgorithm.rs256), ("broadcaster_jwt_es256_public_key_file", .es256)] {
            guard let path = values[key], !path.isEmpty else { continue }
            guard let pem = readFile(path) else { throw BroadcasterConfigurationError("\(key): cannot read \(path)") }
            do { keys.append(try JWTKey(algorithm: algorithm, publicKeyPEM: pem)) } catch {
                throw BroadcasterConfigurationError("\(key): \(path): \(error)")
            }
        }
        o.verifier = keys.isEmpty ? nil : JWTVerifier(keys: keys, configuration: jwt)
        if let problem = o.validate() { throw BroadcasterConfigurationError(problem) }
        if enabled && o.verifier == nil && o.apiKeys.isEmpty {
            throw BroadcasterConfigurationError("broadcaster_enabled: configure a JWT key or API keys (or both)")
        }
        return (o, enabled)
    }

    /// `broadcaster_*` keys from `SWITCHBOARD_BROADCASTER_*` environment variables.
    public static func values(fromEnvironment environment: [String: String]) -> [String: String] {
        var out: [String: String] = [:]
        for (key, _) in keys {
            if let v = environment["SWITCHBOARD_" + key.uppercased()] { out[key] = v }
        }
        return out
    }

    /// Compatibility mode: the reference's own environment (`PORT` default 8000, `JWT_SECRET`
    /// and `API_KEYS` required, `API_KEYS` split on `|` as its environment library does,
    /// `BASE_PATH` default `/broadcaster`). Short secrets are accepted, as the reference does.
    /// Returns the options and the port.
    public static func referenceCompatible(environment: [String: String]) throws(BroadcasterConfigurationError)
        -> (options: BroadcasterOptions, port: Int)
    {
        guard let secret = environment["JWT_SECRET"], !secret.isEmpty else { throw BroadcasterConfigurationError("JWT_SECRET is required") }
        guard let apiKeys = environment["API_KEYS"], !apiKeys.isEmpty else { throw BroadcasterConfigurationError("API_KEYS is required") }
        var port = 8000
        if let p = environment["PORT"] {
            guard let v = Int(p), v >= 0 && v <= 65_535 else { throw BroadcasterConfigurationError("PORT: '\(p)' is not a port") }
            port = v
        }
        var values = ["broadcaster_enabled": "true", "broadcaster_jwt_secret": secret, "broadcaster_allow_short_secret": "true",
                      "broadcaster_api_keys": apiKeys]
        if let base = environment["BASE_PATH"] { values["broadcaster_base_path"] = base }
        // Switchboard's own variables still refine the compatible defaults.
        values.merge(Self.values(fromEnvironment: environment)) { compatible, _ in compatible }
        let (options, _) = try parse(values, readFile: { _ in nil })
        return (options, port)
    }

    static func splitKeys(_ text: String) -> [String] {
        text.split(separator: "|", omittingEmptySubsequences: true).map(String.init)
    }

    static func parseHistory(_ text: String) throws(BroadcasterConfigurationError) -> [BroadcasterHistoryRule] {
        var rules: [BroadcasterHistoryRule] = []
        for item in text.split(separator: ",") {
            let fields = item.split(separator: "|", omittingEmptySubsequences: false).map { String($0).trimmingSpaces() }
            guard fields.count == 4, !fields[0].isEmpty, let count = Int(fields[1]), let bytes = Int(fields[2]), let age = Int(fields[3]),
                  count >= 0, bytes >= 0, age >= 0 else {
                throw BroadcasterConfigurationError("broadcaster_history: '\(item)' is not PATTERN|MESSAGES|BYTES|AGE_MS")
            }
            rules.append(BroadcasterHistoryRule(pattern: fields[0], limits: BroadcasterHistoryLimits(maxMessages: count, maxBytes: bytes, maxAgeMilliseconds: age)))
        }
        return rules
    }
}

public struct BroadcasterConfigurationError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
