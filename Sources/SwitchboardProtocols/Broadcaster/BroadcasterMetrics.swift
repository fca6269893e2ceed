import Switchboard
import Synchronization

/// Counters of the broadcaster protocol, shared by every shard: relaxed atomics, readable from
/// any thread (`samples` for `Broker.additionalMetricSamples`).
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

    /// Every counter as samples named `switchboard_broadcaster_...` (process-wide; per method
    /// and per error code as dimensions), for `Broker.additionalMetricSamples`: `/metrics` and
    /// swift-metrics both see them.
    public var samples: [MetricSample] {
        var out: [MetricSample] = []
        func sample(_ name: String, _ help: String, _ dimensions: [MetricSample.Dimension], _ value: Int) {
            out.append(MetricSample(name: "switchboard_broadcaster_" + name, help: help, dimensions: dimensions, value: value))
        }
        for m in BroadcasterMethod.allCases {
            sample("calls_total", "WebSocket method calls", [.init("method", m.rawValue)], calls[m.index].current)
        }
        for m in BroadcasterMethod.allCases {
            for c in BroadcasterErrorCode.allCases {
                sample("errors_total", "Error replies by method and error code", [.init("method", m.rawValue), .init("code", c.rawValue)],
                       errors[m.index][c.index].current)
            }
        }
        sample("errors_total", "Error replies by method and error code", [.init("method", "unknown"), .init("code", "NotFound")], unknownMethod.current)
        let plain: [(String, String, Count)] = [
            ("connections", "Open broadcaster WebSockets", connections),
            ("subscriptions", "Subscriptions held", subscriptions),
            ("publishes_websocket_total", "Messages published over WebSocket", publishesWebSocket),
            ("publishes_rest_total", "Messages published over REST", publishesREST),
            ("publishes_refused_total", "Publishes refused because the owner shard's inbox was full", publishesRefused),
            ("deliveries_total", "Broadcast notifications queued to subscribers", deliveries),
            ("deliveries_dropped_total", "Broadcasts dropped by the slow-consumer policy", deliveriesDropped),
            ("forwards_refused_total", "Owner-to-shard forwards refused (inbox full)", forwardsRefused),
            ("recoveries_hit_total", "Subscribes with since that recovered every missed message", recoveriesHit),
            ("recoveries_miss_total", "Subscribes with since the history could not cover", recoveriesMiss),
            ("auth_successes_total", "Successful auth calls (first auth or refresh)", authSuccesses),
            ("auth_failures_total", "Refused auth calls", authFailures),
            ("token_refreshes_total", "Second auth calls that refreshed the claims", tokenRefreshes),
            ("subscriptions_ended_by_refresh_total", "Subscriptions ended because a refreshed token no longer allows them", subscriptionsEndedByRefresh),
            ("closed_token_expired_total", "Connections closed with 4401 (token expired)", closedTokenExpired),
            ("closed_message_too_big_total", "Connections closed with 1009 (message over broadcaster_max_message_bytes)", closedMessageTooBig),
            ("closed_invalid_request_total", "Connections closed with 4400 (not a request)", closedInvalidRequest),
            ("rest_unauthorized_total", "REST publishes refused with 401", restUnauthorized),
            ("rest_bad_body_total", "REST publishes refused with 400 (body)", restBadBody),
            ("channel_logs_evicted_total", "Channel logs forgotten at broadcaster_max_channel_logs_per_shard", channelLogsEvicted),
        ]
        // Gauges are the names without `_total` (MetricSample's convention).
        for (name, help, count) in plain { sample(name, help, [], count.current) }
        return out
    }

    /// Every counter as Prometheus text (`samples` rendered).
    public func render() -> String { PrometheusText.render(samples) }
}

extension BroadcasterMethod {
    var index: Int { BroadcasterMethod.allCases.firstIndex(of: self)! }
}

extension BroadcasterErrorCode {
    var index: Int { BroadcasterErrorCode.allCases.firstIndex(of: self)! }
}
