import Synchronization

/// Counters of the broadcaster protocol, shared by every shard: relaxed atomics, readable from
/// any thread (`render()` gives Prometheus text for `/metrics`).
public final class BroadcasterMetrics: Sendable {
    /// One relaxed atomic counter (a class, so that counters can live in arrays).
    public final class Count: Sendable {
        private let value = Atomic<Int>(0)
        @inline(__always) public func increment(by n: Int = 1) { value.wrappingAdd(n, ordering: .relaxed) }
        @inline(__always) public func decrement() { value.wrappingSubtract(1, ordering: .relaxed) }
        public var current: Int { value.load(ordering: .relaxed) }
    }

    /// Calls per method (`BroadcasterMethod.allCases` order).
    public let calls: [Count] = BroadcasterMethod.allCases.map { _ in Count() }
    /// Error replies per method and code: `errors[method][code]` (`allCases` orders).
    public let errors: [[Count]] = BroadcasterMethod.allCases.map { _ in BroadcasterErrorCode.allCases.map { _ in Count() } }
    /// Error replies to an unknown method, per code (always NotFound today).
    public let unknownMethod = Count()

    public let connections = Count()
    public let subscriptions = Count()
    public let publishesWebSocket = Count()
    public let publishesREST = Count()
    /// Publishes the owner shard could not take (its inbox full): answered with `Internal`.
    public let publishesRefused = Count()
    public let deliveries = Count()
    /// Broadcasts the slow-consumer policy dropped (or that closed the socket).
    public let deliveriesDropped = Count()
    /// Forwards from an owner to a shard refused (inbox full): that shard's subscribers miss the
    /// message (their `seq` has no gap, since it counts deliveries; the `offset` has one).
    public let forwardsRefused = Count()
    public let recoveriesHit = Count()
    public let recoveriesMiss = Count()
    public let authSuccesses = Count()
    public let authFailures = Count()
    public let tokenRefreshes = Count()
    public let subscriptionsEndedByRefresh = Count()
    public let closedTokenExpired = Count()
    public let closedMessageTooBig = Count()
    public let closedInvalidRequest = Count()
    public let restUnauthorized = Count()
    public let restBadBody = Count()
    public let channelLogsEvicted = Count()

    public init() {}

    func countCall(_ method: BroadcasterMethod) { calls[method.index].increment() }

    func countError(_ method: BroadcasterMethod?, _ code: BroadcasterErrorCode) {
        guard let method else { unknownMethod.increment(); return }
        errors[method.index][code.index].increment()
    }

    /// Every counter as Prometheus text, names prefixed `switchboard_broadcaster_`.
    public func render() -> String {
        var out = ""
        func family(_ name: String, _ help: String, gauge: Bool = false, _ samples: [(labels: String, value: Int)]) {
            let full = "switchboard_broadcaster_" + name
            out += "# HELP \(full) \(help)\n# TYPE \(full) \(gauge ? "gauge" : "counter")\n"
            for s in samples { out += "\(full)\(s.labels) \(s.value)\n" }
        }
        family("calls_total", "WebSocket method calls", BroadcasterMethod.allCases.map { ("{method=\"\($0.rawValue)\"}", calls[$0.index].current) })
        var errorSamples: [(String, Int)] = []
        for m in BroadcasterMethod.allCases {
            for c in BroadcasterErrorCode.allCases {
                errorSamples.append(("{method=\"\(m.rawValue)\",code=\"\(c.rawValue)\"}", errors[m.index][c.index].current))
            }
        }
        errorSamples.append(("{method=\"unknown\",code=\"NotFound\"}", unknownMethod.current))
        family("errors_total", "Error replies by method and error code", errorSamples)
        let plain: [(String, String, Count, Bool)] = [
            ("connections", "Open broadcaster WebSockets", connections, true),
            ("subscriptions", "Subscriptions held", subscriptions, true),
            ("publishes_websocket_total", "Messages published over WebSocket", publishesWebSocket, false),
            ("publishes_rest_total", "Messages published over REST", publishesREST, false),
            ("publishes_refused_total", "Publishes refused because the owner shard's inbox was full", publishesRefused, false),
            ("deliveries_total", "Broadcast notifications queued to subscribers", deliveries, false),
            ("deliveries_dropped_total", "Broadcasts dropped by the slow-consumer policy", deliveriesDropped, false),
            ("forwards_refused_total", "Owner-to-shard forwards refused (inbox full)", forwardsRefused, false),
            ("recoveries_hit_total", "Subscribes with since that recovered every missed message", recoveriesHit, false),
            ("recoveries_miss_total", "Subscribes with since the history could not cover", recoveriesMiss, false),
            ("auth_successes_total", "Successful auth calls (first auth or refresh)", authSuccesses, false),
            ("auth_failures_total", "Refused auth calls", authFailures, false),
            ("token_refreshes_total", "Second auth calls that refreshed the claims", tokenRefreshes, false),
            ("subscriptions_ended_by_refresh_total", "Subscriptions ended because a refreshed token no longer allows them", subscriptionsEndedByRefresh, false),
            ("closed_token_expired_total", "Connections closed with 4401 (token expired)", closedTokenExpired, false),
            ("closed_message_too_big_total", "Connections closed with 1009 (message over broadcaster_max_message_bytes)", closedMessageTooBig, false),
            ("closed_invalid_request_total", "Connections closed with 4400 (not a request)", closedInvalidRequest, false),
            ("rest_unauthorized_total", "REST publishes refused with 401", restUnauthorized, false),
            ("rest_bad_body_total", "REST publishes refused with 400 (body)", restBadBody, false),
            ("channel_logs_evicted_total", "Channel logs forgotten at broadcaster_max_channel_logs_per_shard", channelLogsEvicted, false),
        ]
        for (name, help, count, gauge) in plain { family(name, help, gauge: gauge, [("", count.current)]) }
        return out
    }
}

extension BroadcasterMethod {
    var index: Int { BroadcasterMethod.allCases.firstIndex(of: self)! }
}

extension BroadcasterErrorCode {
    var index: Int { BroadcasterErrorCode.allCases.firstIndex(of: self)! }
}
