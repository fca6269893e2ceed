import Switchboard
import SwitchboardJWT

/// The broadcaster protocol's `ConfigurationSection`: the `broadcaster_*` keys as an operator
/// writes them (file, `SWITCHBOARD_BROADCASTER_*` environment, `--set`). `makeOptions(readFile:)`
/// turns them into the `BroadcasterOptions` the protocol runs with (the JWT verifier needs the
/// PEM files read, which a section's `set` does not do).
///
/// Compatibility mode (`referenceEnvironment(_:)`) is a layer of its own: the reference's
/// environment (`PORT`, `JWT_SECRET`, `API_KEYS`, `BASE_PATH`) translated into these keys.
public struct BroadcasterConfiguration: Sendable {
    /// Whether the executable mounts the protocol.
    public var enabled = false
    /// Paths and limits, as the protocol uses them (`verifier` and `apiKeys` are set by
    /// `makeOptions(readFile:)` from the fields below).
    public var protocolOptions = BroadcasterOptions()
    /// HS256 secret; empty: no HS256 key.
    public var jwtSecret = ""
    /// Accept an HS256 secret shorter than `JWTKey.minimumSecretBytes`.
    public var allowShortSecret = false
    /// PEM files of public keys; empty: none.
    public var rs256PublicKeyFile = ""
    public var es256PublicKeyFile = ""
    public var jwtLeewaySeconds = JWTVerifier.Configuration().leewaySeconds
    public var maxTokenBytes = JWTVerifier.Configuration().maxTokenBytes
    /// REST publish keys (written separated by `|`, as the reference's environment library splits them).
    public var apiKeys: [String] = []

    public init() {}

    /// Smallest accepted `broadcaster_max_token_bytes`.
    public static let minimumTokenBytes = 64

    /// The options the protocol runs with: the limits plus the verifier (reading the PEM files
    /// with `readFile`, which throws naming the file) and the API keys. Call after `validate()` (the JWT configuration asserts its ranges).
    public func makeOptions(readFile: (String) throws(ConfigurationError) -> String) throws(ConfigurationError) -> BroadcasterOptions {
        var o = protocolOptions
        o.apiKeys = APIKeySet(apiKeys)
        let jwt = JWTVerifier.Configuration(leewaySeconds: jwtLeewaySeconds, maxTokenBytes: maxTokenBytes)
        var keys: [JWTKey] = []
        if !jwtSecret.isEmpty {
            do { keys.append(try JWTKey(hmacSecret: Array(jwtSecret.utf8), allowShortSecret: allowShortSecret)) } catch {
                throw ConfigurationError(origin: nil, message: "broadcaster_jwt_secret: \(error)")
            }
        }
        for (key, path, algorithm) in [("broadcaster_jwt_rs256_public_key_file", rs256PublicKeyFile, JWTAlgorithm.rs256),
                                       ("broadcaster_jwt_es256_public_key_file", es256PublicKeyFile, .es256)] where !path.isEmpty {
            let pem: String
            do { pem = try readFile(path) } catch { throw ConfigurationError(origin: nil, message: "\(key): \(error.message)") }
            do { keys.append(try JWTKey(algorithm: algorithm, publicKeyPEM: pem)) } catch {
                throw ConfigurationError(origin: nil, message: "\(key): \(path): \(error)")
            }
        }
        o.verifier = keys.isEmpty ? nil : JWTVerifier(keys: keys, configuration: jwt)
        return o
    }
}

extension BroadcasterConfiguration: ConfigurationSection {
    public static let keys: [(key: String, help: String)] = [
        ("broadcaster_enabled", "broadcaster: true | false, mount the broadcaster protocol (routes {base}/websocket, {base}/publish, {base}/health)"),
        ("broadcaster_base_path", "broadcaster: base path of the routes (starts with /, no trailing /; empty = the root)"),
        ("broadcaster_jwt_secret", "broadcaster: HS256 secret for client tokens (at least 32 bytes unless broadcaster_allow_short_secret; empty = no HS256)"),
        ("broadcaster_allow_short_secret", "broadcaster: true | false, accept an HS256 secret shorter than 32 bytes (true in compatibility mode)"),
        ("broadcaster_jwt_rs256_public_key_file", "broadcaster: PEM file with an RS256 public key for client tokens (empty = none)"),
        ("broadcaster_jwt_es256_public_key_file", "broadcaster: PEM file with an ES256 (P-256) public key for client tokens (empty = none)"),
        ("broadcaster_jwt_leeway_seconds", "broadcaster: clock skew tolerated on exp/nbf/iat, seconds"),
        ("broadcaster_max_token_bytes", "broadcaster: longest accepted token (Unauthenticated beyond)"),
        ("broadcaster_api_keys", "broadcaster: REST publish API keys, separated by | (empty = every REST publish is 401)"),
        ("broadcaster_max_message_bytes", "broadcaster: largest inbound WebSocket message; closes with 1009 beyond"),
        ("broadcaster_max_json_depth", "broadcaster: JSON nesting limit of requests and REST bodies"),
        ("broadcaster_max_channel_bytes", "broadcaster: longest channel name"),
        ("broadcaster_max_subscriptions_per_connection", "broadcaster: subscriptions per connection (FailedPrecondition beyond)"),
        ("broadcaster_max_batch_messages", "broadcaster: messages in one batch REST publish (400 beyond)"),
        ("broadcaster_enforce_token_expiry", "broadcaster: true | false, close connections whose token expired with 4401"),
        ("broadcaster_expiry_check_interval_ms", "broadcaster: how often each shard looks for expired tokens"),
        ("broadcaster_history", "broadcaster: history rules PATTERN|MESSAGES|BYTES|AGE_MS separated by commas, first match wins, e.g. chat:*|100|1048576|60000 (empty = no history)"),
        ("broadcaster_max_channel_logs_per_shard", "broadcaster: channel logs (offset, epoch, history) an owner shard keeps; the least recently published is forgotten beyond"),
        ("broadcaster_cors_allow_origin", "broadcaster: Access-Control-Allow-Origin of the publish route"),
    ]

    public func value(forKey key: String) -> String? {
        switch key {
        case "broadcaster_enabled": return String(enabled)
        case "broadcaster_base_path": return "\"\(protocolOptions.basePath)\""
        case "broadcaster_jwt_secret": return "\"\(jwtSecret)\""
        case "broadcaster_allow_short_secret": return String(allowShortSecret)
        case "broadcaster_jwt_rs256_public_key_file": return "\"\(rs256PublicKeyFile)\""
        case "broadcaster_jwt_es256_public_key_file": return "\"\(es256PublicKeyFile)\""
        case "broadcaster_jwt_leeway_seconds": return String(jwtLeewaySeconds)
        case "broadcaster_max_token_bytes": return String(maxTokenBytes)
        case "broadcaster_api_keys": return "\"\(apiKeys.joined(separator: "|"))\""
        case "broadcaster_max_message_bytes": return String(protocolOptions.maxMessageBytes)
        case "broadcaster_max_json_depth": return String(protocolOptions.maxJSONDepth)
        case "broadcaster_max_channel_bytes": return String(protocolOptions.maxChannelBytes)
        case "broadcaster_max_subscriptions_per_connection": return String(protocolOptions.maxSubscriptionsPerConnection)
        case "broadcaster_max_batch_messages": return String(protocolOptions.maxBatchMessages)
        case "broadcaster_enforce_token_expiry": return String(protocolOptions.enforceTokenExpiry)
        case "broadcaster_expiry_check_interval_ms": return String(protocolOptions.expiryCheckIntervalMilliseconds)
        case "broadcaster_history":
            let rules = protocolOptions.history.map { r in
                "\(r.pattern)|\(r.limits.maxMessages)|\(r.limits.maxBytes)|\(r.limits.maxAgeMilliseconds)"
            }
            return "\"\(rules.joined(separator: ","))\""
        case "broadcaster_max_channel_logs_per_shard": return String(protocolOptions.maxChannelLogsPerShard)
        case "broadcaster_cors_allow_origin": return "\"\(protocolOptions.corsAllowOrigin)\""
        default: return nil
        }
    }

    public mutating func set(_ key: String, _ value: String) throws(ConfigurationError) {
        func int() throws(ConfigurationError) -> Int {
            guard let v = Int(value) else { throw ConfigurationError(line: 0, message: "\(key): '\(value)' is not an integer") }
            return v
        }
        func bool() throws(ConfigurationError) -> Bool {
            switch value {
            case "true", "yes", "1": return true
            case "false", "no", "0": return false
            default: throw ConfigurationError(line: 0, message: "\(key): '\(value)' is not true or false")
            }
        }
        switch key {
        case "broadcaster_enabled": enabled = try bool()
        case "broadcaster_base_path": protocolOptions.basePath = value
        case "broadcaster_jwt_secret": jwtSecret = value
        case "broadcaster_allow_short_secret": allowShortSecret = try bool()
        case "broadcaster_jwt_rs256_public_key_file": rs256PublicKeyFile = value
        case "broadcaster_jwt_es256_public_key_file": es256PublicKeyFile = value
        case "broadcaster_jwt_leeway_seconds": jwtLeewaySeconds = try int()
        case "broadcaster_max_token_bytes": maxTokenBytes = try int()
        case "broadcaster_api_keys": apiKeys = value.split(separator: "|", omittingEmptySubsequences: true).map(String.init)
        case "broadcaster_max_message_bytes": protocolOptions.maxMessageBytes = try int()
        case "broadcaster_max_json_depth": protocolOptions.maxJSONDepth = try int()
        case "broadcaster_max_channel_bytes": protocolOptions.maxChannelBytes = try int()
        case "broadcaster_max_subscriptions_per_connection": protocolOptions.maxSubscriptionsPerConnection = try int()
        case "broadcaster_max_batch_messages": protocolOptions.maxBatchMessages = try int()
        case "broadcaster_enforce_token_expiry": protocolOptions.enforceTokenExpiry = try bool()
        case "broadcaster_expiry_check_interval_ms": protocolOptions.expiryCheckIntervalMilliseconds = try int()
        case "broadcaster_history": protocolOptions.history = try Self.parseHistory(value)
        case "broadcaster_max_channel_logs_per_shard": protocolOptions.maxChannelLogsPerShard = try int()
        case "broadcaster_cors_allow_origin": protocolOptions.corsAllowOrigin = value
        default: throw ConfigurationError(line: 0, message: "unknown option '\(key)'")
        }
    }

    public func validate() -> String? {
        if let problem = protocolOptions.validate() { return problem }
        if jwtLeewaySeconds < 0 || jwtLeewaySeconds > JWTVerifier.Configuration.maxLeewaySeconds {
            return "broadcaster_jwt_leeway_seconds must be 0...\(JWTVerifier.Configuration.maxLeewaySeconds)"
        }
        if maxTokenBytes < Self.minimumTokenBytes { return "broadcaster_max_token_bytes must be >= \(Self.minimumTokenBytes)" }
        if !jwtSecret.isEmpty && !allowShortSecret && jwtSecret.utf8.count < JWTKey.minimumSecretBytes {
            return "broadcaster_jwt_secret: shorter than \(JWTKey.minimumSecretBytes) bytes (set broadcaster_allow_short_secret = true to accept it)"
        }
        if enabled && jwtSecret.isEmpty && rs256PublicKeyFile.isEmpty && es256PublicKeyFile.isEmpty && apiKeys.isEmpty {
            return "broadcaster_enabled: configure a JWT key or API keys (or both)"
        }
        return nil
    }

    /// `PATTERN|MESSAGES|BYTES|AGE_MS[,...]`; empty text: no rules.
    static func parseHistory(_ text: String) throws(ConfigurationError) -> [BroadcasterHistoryRule] {
        var rules: [BroadcasterHistoryRule] = []
        for item in text.split(separator: ",") {
            let fields = item.split(separator: "|", omittingEmptySubsequences: false).map { String($0).trimmingSpaces() }
            guard fields.count == 4, !fields[0].isEmpty, let count = Int(fields[1]), let bytes = Int(fields[2]), let age = Int(fields[3]),
                  count >= 0, bytes >= 0, age >= 0 else {
                throw ConfigurationError(line: 0, message: "broadcaster_history: '\(item)' is not PATTERN|MESSAGES|BYTES|AGE_MS")
            }
            rules.append(BroadcasterHistoryRule(pattern: fields[0], limits: BroadcasterHistoryLimits(maxMessages: count, maxBytes: bytes, maxAgeMilliseconds: age)))
        }
        return rules
    }
}

// MARK: - Compatibility mode

extension BroadcasterConfiguration {
    /// Executable name that turns compatibility mode on (a symlink to `switchboard`).
    public static let compatibilityExecutableName = "broadcaster"
    /// Environment variable that turns compatibility mode on (`1`). Not a configuration key:
    /// it chooses whether the reference-environment layer exists.
    public static let compatibilityVariable = "SWITCHBOARD_BROADCASTER_COMPAT"
    /// The reference's default port.
    public static let referencePort = 8000

    /// Whether the process runs in compatibility mode: started as `broadcaster` (an existing
    /// deployment switches by replacing only the binary) or with `SWITCHBOARD_BROADCASTER_COMPAT=1`.
    public static func compatibilityModeRequested(executablePath: String, environment: [String: String]) -> Bool {
        let name = executablePath.split(separator: "/").last.map(String.init) ?? executablePath
        return name == compatibilityExecutableName || environment[compatibilityVariable] == "1"
    }

    /// One setting of the reference-environment layer, and the variable it came from (errors name it).
    public struct ReferenceSetting: Sendable, Equatable {
        public var key: String
        public var value: String
        public var variable: String

        public init(key: String, value: String, variable: String) {
            self.key = key
            self.value = value
            self.variable = variable
        }
    }

    /// The reference's environment as settings of this section and of the broker's `port`:
    /// `JWT_SECRET` and `API_KEYS` required (`API_KEYS` split on `|`, as the reference's
    /// environment library does), `PORT` default 8000, `BASE_PATH` default `/broadcaster`; the
    /// protocol enabled and short secrets accepted, as the reference does. The executable adds
    /// them as a layer between the configuration file and the `SWITCHBOARD_*` environment, so
    /// Switchboard's own variables and flags still refine them.
    public static func referenceEnvironment(_ environment: [String: String]) throws(ConfigurationError) -> [ReferenceSetting] {
        let mode = "compatibility mode"
        guard let secret = environment["JWT_SECRET"], !secret.isEmpty else {
            throw ConfigurationError(origin: .environment(variable: "JWT_SECRET"), message: "required in \(mode)")
        }
        guard let apiKeys = environment["API_KEYS"], !apiKeys.isEmpty else {
            throw ConfigurationError(origin: .environment(variable: "API_KEYS"), message: "required in \(mode)")
        }
        var out = [
            ReferenceSetting(key: "broadcaster_enabled", value: "true", variable: mode),
            ReferenceSetting(key: "broadcaster_allow_short_secret", value: "true", variable: mode),
            ReferenceSetting(key: "broadcaster_jwt_secret", value: secret, variable: "JWT_SECRET"),
            ReferenceSetting(key: "broadcaster_api_keys", value: apiKeys, variable: "API_KEYS"),
        ]
        if let base = environment["BASE_PATH"] {
            out.append(ReferenceSetting(key: "broadcaster_base_path", value: base, variable: "BASE_PATH"))
        }
        if let port = environment["PORT"] {
            out.append(ReferenceSetting(key: "port", value: port, variable: "PORT"))
        } else {
            out.append(ReferenceSetting(key: "port", value: String(referencePort), variable: mode))
        }
        return out
    }
}
