import Switchboard
import Synchronization

/// Limits of the connection-broker protocol. Every limit that a client can hit answers with the
/// matching `*_failed` (or `error`) message and is counted in `ConnectionBrokerMetrics`.
/// The WebSocket layer's own limits (`webSocket.maxMessageBytes`, frame size) apply first.
///
/// Its own `ConfigurationSection`: the `connection_broker_paths` and `cb_*` keys are declared,
/// parsed and validated here, not in the core.
public struct ConnectionBrokerOptions: Sendable {
    /// Which connection-broker implementation the replies follow (`cb_profile`).
    public enum Profile: String, Sendable, CaseIterable {
        /// The implementation users run (yusitnikov/websocket-mcp `packages/connection-broker`):
        /// every failure is `{"type":"error","error":T,"replyTo":N,"id":M}` with its texts and
        /// its check order, `list_by_role` before `register`, channels to oneself, the peer's
        /// notification before the requester's reply, close 1003 on bad JSON or an unknown or
        /// missing `type`. The default.
        case reference
        /// Switchboard's stricter choices: typed `*_failed` replies echoing `targetId` /
        /// `channelId`, everything but `register` needs registration, no self channels unless
        /// `allowSelfChannels`, an `error` reply (connection kept) for bad JSON, unknown types,
        /// binary frames and ill-typed fields.
        case strict
    }

    /// The reply profile (see `Profile`; README "Connection broker profiles").
    public var profile: Profile = .reference
    /// Where an executable mounts the protocol: exact paths, prefixes ending in `/`, or `*` for
    /// every path (it is also chosen by the subprotocol `connection-broker`). Not used by the
    /// handler itself.
    public var paths: [String] = ["*"]
    /// Largest accepted text message, in bytes (`error` "Message too large" above it).
    public var maxMessageBytes: Int = 16 << 20
    /// Deepest accepted JSON nesting; the message object itself is depth 1, so a payload
    /// `{"a":[1]}` is depths 2 and 3 (`error` "JSON nesting too deep" above it).
    public var maxJSONDepth: Int = 64
    /// Longest role, in UTF-8 bytes, for `register` and `list_by_role` ("Role too long").
    public var maxRoleBytes: Int = 256
    /// Registered connections per role (`register_failed` "Too many connections for role").
    public var maxConnectionsPerRole: Int = 100_000
    /// Most ids in one `connections` answer; longer lists are cut (oldest registrations first)
    /// and the cut is counted.
    public var maxListResults: Int = 10_000
    /// Open channels per connection, as opener or target (`channel_open_failed`
    /// "Too many open channels" / "Target has too many open channels").
    public var maxChannelsPerConnection: Int = 4096
    /// Whether a connection may open a channel to itself in the `strict` profile (default: no,
    /// `channel_open_failed` "Cannot open a channel to yourself"). The `reference` profile always
    /// allows it, as the reference does.
    public var allowSelfChannels: Bool = false
    /// Requests one connection may have waiting, in bytes (each counts its size plus 64), while
    /// an earlier request of it waits for another shard's answer (register, list_by_role, open
    /// run one at a time per connection so their answers keep the request order). One request
    /// is always accepted; beyond the limit the socket is closed with 1013 (counted).
    public var maxQueuedRequestBytes: Int = 4 << 20
    /// Cluster: role removals Redis did not answer (a disconnect while Redis was away), kept
    /// per shard and sent again when its Redis connection is back. Beyond it a removal is left
    /// to the node-death clean-up (counted in `cb_cross_node_lost_total`).
    public var maxPendingRoleRemovals: Int = 100_000

    public init() {}
}

extension ConnectionBrokerOptions: ConfigurationSection {
    public static let keys: [(key: String, help: String)] = [
        ("cb_profile", "connection-broker: reference (default; replies as yusitnikov/websocket-mcp's broker: type error + replyTo, its texts and check order, close 1003 on bad JSON/type) | strict (typed *_failed replies, stricter checks)"),
        ("connection_broker_paths", "switchboard executable: paths (comma-separated, * = all, prefix ending in /) served by the connection-broker protocol; also chosen by subprotocol connection-broker"),
        ("cb_max_role_bytes", "connection-broker: longest role (register_failed \"Role too long\")"),
        ("cb_max_connections_per_role", "connection-broker: connections one role may have"),
        ("cb_max_list_results", "connection-broker: most ids in one list_by_role answer"),
        ("cb_max_channels_per_connection", "connection-broker: open channels per connection"),
        ("cb_max_json_depth", "connection-broker: deepest JSON nesting accepted"),
        ("cb_allow_self_channels", "connection-broker: true | false, allow opening a channel to oneself"),
        ("cb_max_queued_request_bytes", "connection-broker: bytes of requests one connection may have waiting behind a cross-shard request (each counts its size + 64); beyond, close 1013"),
        ("cb_max_pending_role_removals", "connection-broker, cluster: role removals Redis did not answer, kept per shard and sent again when its Redis connection is back; beyond, left to the node-death clean-up (cb_cross_node_lost_total)"),
    ]

    public func value(forKey key: String) -> String? {
        switch key {
        case "cb_profile": return profile.rawValue
        case "connection_broker_paths": return paths.joined(separator: ",")
        case "cb_max_role_bytes": return String(maxRoleBytes)
        case "cb_max_connections_per_role": return String(maxConnectionsPerRole)
        case "cb_max_list_results": return String(maxListResults)
        case "cb_max_channels_per_connection": return String(maxChannelsPerConnection)
        case "cb_max_json_depth": return String(maxJSONDepth)
        case "cb_allow_self_channels": return String(allowSelfChannels)
        case "cb_max_queued_request_bytes": return String(maxQueuedRequestBytes)
        case "cb_max_pending_role_removals": return String(maxPendingRoleRemovals)
        default: return nil
        }
    }

    public mutating func set(_ key: String, _ value: String) throws(ConfigurationError) {
        func int() throws(ConfigurationError) -> Int {
            guard let v = Int(value) else { throw ConfigurationError(line: 0, message: "\(key): '\(value)' is not an integer") }
            return v
        }
        switch key {
        case "cb_profile":
            guard let p = Profile(rawValue: value) else {
                throw ConfigurationError(line: 0, message: "\(key): '\(value)' is not reference or strict")
            }
            profile = p
        case "connection_broker_paths":
            paths = value.split(separator: ",").map { String(Self.trimmed($0)) }.filter { !$0.isEmpty }
        case "cb_max_role_bytes": maxRoleBytes = try int()
        case "cb_max_connections_per_role": maxConnectionsPerRole = try int()
        case "cb_max_list_results": maxListResults = try int()
        case "cb_max_channels_per_connection": maxChannelsPerConnection = try int()
        case "cb_max_json_depth": maxJSONDepth = try int()
        case "cb_max_queued_request_bytes": maxQueuedRequestBytes = try int()
        case "cb_max_pending_role_removals": maxPendingRoleRemovals = try int()
        case "cb_allow_self_channels":
            switch value {
            case "true", "yes", "1": allowSelfChannels = true
            case "false", "no", "0": allowSelfChannels = false
            default: throw ConfigurationError(line: 0, message: "\(key): '\(value)' is not true or false")
            }
        default: throw ConfigurationError(line: 0, message: "unknown option '\(key)'")
        }
    }

    public func validate() -> String? {
        if let bad = paths.first(where: { $0 != "*" && !$0.hasPrefix("/") }) {
            return "connection_broker_paths: '\(bad)' is neither * nor a path starting with /"
        }
        if maxRoleBytes < 1 { return "cb_max_role_bytes must be >= 1" }
        if maxConnectionsPerRole < 1 { return "cb_max_connections_per_role must be >= 1" }
        if maxListResults < 1 { return "cb_max_list_results must be >= 1" }
        if maxChannelsPerConnection < 1 { return "cb_max_channels_per_connection must be >= 1" }
        if maxJSONDepth < 1 { return "cb_max_json_depth must be >= 1" }
        if maxQueuedRequestBytes < 1 { return "cb_max_queued_request_bytes must be >= 1" }
        if maxPendingRoleRemovals < 0 { return "cb_max_pending_role_removals must be >= 0" }
        if maxMessageBytes < 1 { return "connection-broker maxMessageBytes must be >= 1" }
        return nil
    }

    private static func trimmed(_ s: Substring) -> Substring {
        var t = s
        while let f = t.first, f == " " || f == "\t" { t = t.dropFirst() }
        while let l = t.last, l == " " || l == "\t" { t = t.dropLast() }
        return t
    }
}

/// Counters of the connection-broker protocol: plain atomics, readable from any thread (the
/// integrator exports them under /metrics; `all` lists them with names and help texts).
public final class ConnectionBrokerMetrics: Sendable {
    /// Registered connections now (gauge).
    public let registeredConnections = Atomic<Int>(0)
    /// Open channels now (gauge).
    public let openChannels = Atomic<Int>(0)
    public let registrations = Atomic<Int>(0)
    public let channelsOpened = Atomic<Int>(0)
    public let channelsClosed = Atomic<Int>(0)
    /// Channels closed because one party disconnected.
    public let channelsClosedByDisconnect = Atomic<Int>(0)
    public let messagesRouted = Atomic<Int>(0)
    public let payloadBytesRouted = Atomic<Int>(0)
    /// Every message the broker sent (requests answered and notifications).
    public let messagesSent = Atomic<Int>(0)
    /// `broker.send` refused a message (stale socket or full shard inbox).
    public let sendFailures = Atomic<Int>(0)
    // Rejections, one counter per cause.
    public let invalidJSON = Atomic<Int>(0)
    public let notAnObject = Atomic<Int>(0)
    public let missingType = Atomic<Int>(0)
    public let unknownType = Atomic<Int>(0)
    public let binaryRejected = Atomic<Int>(0)
    public let messageTooLarge = Atomic<Int>(0)
    public let jsonTooDeep = Atomic<Int>(0)
    public let invalidField = Atomic<Int>(0)
    public let notRegistered = Atomic<Int>(0)
    public let alreadyRegistered = Atomic<Int>(0)
    public let roleTooLong = Atomic<Int>(0)
    public let roleFull = Atomic<Int>(0)
    public let listTruncated = Atomic<Int>(0)
    public let targetNotFound = Atomic<Int>(0)
    public let selfChannelRejected = Atomic<Int>(0)
    public let tooManyChannels = Atomic<Int>(0)
    public let channelNotFound = Atomic<Int>(0)
    public let deliveryFailed = Atomic<Int>(0)
    /// `message`/`close` by a connection that is not a party of an existing channel
    /// (`reference` profile: "Not authorized for this channel"; `strict` counts it as
    /// `channelNotFound`).
    public let notAuthorized = Atomic<Int>(0)
    /// Sockets closed with 1003 (`reference` profile: bad JSON, not an object, missing or
    /// unknown `type`); the cause is counted too.
    public let closedUnsupportedData = Atomic<Int>(0)
    // The share-nothing registry (see ConnectionRegistry.swift).
    /// Requests refused because the other shard's inbox was full (answered with a failure).
    public let crossShardRefused = Atomic<Int>(0)
    /// Answers and clean-ups that another shard's full inbox refused, kept and posted again.
    public let crossShardRetried = Atomic<Int>(0)
    /// Role entries `list_by_role` read (one per id returned: O(result), never the whole role).
    public let listEntriesVisited = Atomic<Int>(0)
    /// Channel messages that crossed their peer's close or disconnect and were dropped.
    public let messagesDropped = Atomic<Int>(0)
    /// Sockets closed (1013) because their queued requests passed `maxQueuedRequestBytes`.
    public let requestQueueFull = Atomic<Int>(0)
    // Across nodes (ConnectionBrokerCluster.swift).
    /// Requests failed at once because Redis was unreachable (or its answer was lost).
    public let clusterUnavailable = Atomic<Int>(0)
    /// Answers, clean-ups and role removals for another node (or arriving from one) that
    /// could not be sent or handed to their shard: lost.
    public let crossNodeLost = Atomic<Int>(0)
    /// Channel ends closed because their peer's node was declared dead.
    public let channelsClosedByNodeDeath = Atomic<Int>(0)
    /// Registered connections written back to their role after Redis lost them (a restarted
    /// Redis, or this node declared dead while it lived).
    public let roleMembersRestored = Atomic<Int>(0)
    /// Write-backs to a role (`cb_role_members_restored_total`) Redis did not answer, by id:
    /// kept and sent again when the shard's backlog drains or its connection is back.
    public let roleRestoresKept = Atomic<Int>(0)
    /// Role removals sent again (and answered) after Redis was away when they were first made.
    public let roleRemovalsRetried = Atomic<Int>(0)
    /// Role members this node's earlier processes wrote, removed when shard 0 reaches Redis (cluster).
    public let staleRoleMembersRemoved = Atomic<Int>(0)
    /// Clean-ups of a dead incarnation's members that Redis stopped answering part of the way
    /// (or refused for a full backlog), sent again from where they stopped when shard 0's
    /// Redis connection was back or its backlog drained.
    public let cleanUpsResumed = Atomic<Int>(0)

    public init() {}

    /// Every counter as (Prometheus-style name, help, value); names ending in `_total` are
    /// counters, the others gauges.
    public var all: [(name: String, help: String, value: Int)] {
        func v(_ a: borrowing Atomic<Int>) -> Int { a.load(ordering: .relaxed) }
        return [
            ("cb_registered_connections", "Registered connections", v(registeredConnections)),
            ("cb_open_channels", "Open channels", v(openChannels)),
            ("cb_registrations_total", "Successful register requests", v(registrations)),
            ("cb_channels_opened_total", "Channels opened", v(channelsOpened)),
            ("cb_channels_closed_total", "Channels closed by a close request", v(channelsClosed)),
            ("cb_channels_closed_by_disconnect_total", "Channels closed because a party disconnected", v(channelsClosedByDisconnect)),
            ("cb_messages_routed_total", "Channel messages forwarded", v(messagesRouted)),
            ("cb_payload_bytes_routed_total", "Payload bytes forwarded", v(payloadBytesRouted)),
            ("cb_messages_sent_total", "Messages the broker sent", v(messagesSent)),
            ("cb_send_failures_total", "Messages the broker could not hand to a socket", v(sendFailures)),
            ("cb_invalid_json_total", "Messages that were not well-formed JSON", v(invalidJSON)),
            ("cb_not_an_object_total", "JSON messages that were not an object", v(notAnObject)),
            ("cb_missing_type_total", "Messages without a string type", v(missingType)),
            ("cb_unknown_type_total", "Messages of an unknown type", v(unknownType)),
            ("cb_binary_rejected_total", "Binary messages rejected", v(binaryRejected)),
            ("cb_message_too_large_total", "Messages over max_message_bytes", v(messageTooLarge)),
            ("cb_json_too_deep_total", "Messages nested deeper than max_json_depth", v(jsonTooDeep)),
            ("cb_invalid_field_total", "Requests with a missing or ill-typed field", v(invalidField)),
            ("cb_not_registered_total", "Requests before register", v(notRegistered)),
            ("cb_already_registered_total", "Second register on a connection", v(alreadyRegistered)),
            ("cb_role_too_long_total", "Roles over max_role_bytes", v(roleTooLong)),
            ("cb_role_full_total", "Registrations refused by max_connections_per_role", v(roleFull)),
            ("cb_list_truncated_total", "list_by_role answers cut at max_list_results", v(listTruncated)),
            ("cb_target_not_found_total", "open to an unknown connection", v(targetNotFound)),
            ("cb_self_channel_rejected_total", "open to oneself refused", v(selfChannelRejected)),
            ("cb_too_many_channels_total", "open refused by max_channels_per_connection", v(tooManyChannels)),
            ("cb_channel_not_found_total", "message/close on an unknown channel or by a non-party", v(channelNotFound)),
            ("cb_delivery_failed_total", "Channel messages that could not be handed to the peer", v(deliveryFailed)),
            ("cb_not_authorized_total", "message/close by a non-party of an existing channel (reference profile)", v(notAuthorized)),
            ("cb_closed_unsupported_data_total", "Sockets closed 1003 for bad JSON or an unknown/missing type (reference profile)", v(closedUnsupportedData)),
            ("cb_cross_shard_refused_total", "Requests refused because another shard's inbox was full", v(crossShardRefused)),
            ("cb_cross_shard_retried_total", "Cross-shard answers and clean-ups kept for a retry (inbox full)", v(crossShardRetried)),
            ("cb_list_entries_visited_total", "Role entries read by list_by_role", v(listEntriesVisited)),
            ("cb_messages_dropped_total", "Channel messages that crossed their peer's close or disconnect", v(messagesDropped)),
            ("cb_request_queue_full_total", "Sockets closed because their queued requests passed max_queued_request_bytes", v(requestQueueFull)),
            ("cb_cluster_unavailable_total", "Requests failed because Redis was unreachable (cluster)", v(clusterUnavailable)),
            ("cb_cross_node_lost_total", "Answers and clean-ups to or from another node that were lost (cluster)", v(crossNodeLost)),
            ("cb_channels_closed_by_node_death_total", "Channel ends closed because the peer's node died (cluster)", v(channelsClosedByNodeDeath)),
            ("cb_role_members_restored_total", "Registered connections written back to their role after Redis lost them (cluster: a restarted Redis, or this node declared dead while it lived)", v(roleMembersRestored)),
            ("cb_role_restores_kept_total", "Registered connections whose write-back to their role Redis did not answer (a full backlog, or a cut), kept and sent again when the shard's backlog drains or its connection is back (cluster)", v(roleRestoresKept)),
            ("cb_role_removals_retried_total", "Role removals of disconnected connections written once Redis was back (cluster: Redis did not answer the first one)", v(roleRemovalsRetried)),
            ("cb_stale_role_members_removed_total", "Role members this node's earlier processes (or incarnations) wrote, removed when shard 0 reached Redis (cluster)", v(staleRoleMembersRemoved)),
            ("cb_cleanups_resumed_total", "Clean-ups of a dead incarnation's members that Redis stopped answering (or refused for a full backlog), resumed from their last step when shard 0 reached Redis again or its backlog drained (cluster)", v(cleanUpsResumed)),
        ]
    }
}

extension Atomic where Value == Int {
    @inline(__always) func increment() { wrappingAdd(1, ordering: .relaxed) }
    @inline(__always) func decrement() { wrappingSubtract(1, ordering: .relaxed) }
}
