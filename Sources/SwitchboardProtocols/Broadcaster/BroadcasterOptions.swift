import SwitchboardJWT

/// Everything the broadcaster protocol is configured with. Every limit has a default, is
/// validated in `validate()`, is counted when hit (`BroadcasterMetrics`) and has a README row.
/// An executable reads them from its configuration through `BroadcasterConfiguration` (the
/// `broadcaster_*` keys).
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
}
