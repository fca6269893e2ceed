import Switchboard
import Synchronization

/// The chat's own counters: the times a limit was hit. In `/metrics` and in what
/// `MetricsExporter` reports, next to the broker's counters.
///
/// Thread rules: incremented by any shard's handler, read by whoever renders the metrics.
/// One process-wide relaxed atomic each: they move only when a limit is hit (rare), so the
/// shards never contend on them in the common path.
final class ChatMetrics: Sendable {
    /// `say` refused: the socket was over `max_messages_per_second`.
    let rateLimited = Atomic<Int>(0)
    /// An empty room forgotten to make space (`max_rooms_per_shard`).
    let roomsForgotten = Atomic<Int>(0)
    /// A join refused: `max_rooms_per_shard` reached and no room was empty.
    let joinsRefused = Atomic<Int>(0)

    func samples() -> [MetricSample] {
        [
            MetricSample(name: "switchboard_chat_rate_limited_total",
                         help: "Chat messages refused: the sender was over max_messages_per_second",
                         value: rateLimited.load(ordering: .relaxed)),
            MetricSample(name: "switchboard_chat_rooms_forgotten_total",
                         help: "Empty chat rooms forgotten (with their history) to stay within max_rooms_per_shard",
                         value: roomsForgotten.load(ordering: .relaxed)),
            MetricSample(name: "switchboard_chat_joins_refused_total",
                         help: "Chat joins refused: max_rooms_per_shard reached and no room was empty",
                         value: joinsRefused.load(ordering: .relaxed)),
        ]
    }
}

/// A token bucket: `ratePerSecond` tokens a second, at most `burst` saved up. One per socket,
/// used on its shard only.
struct MessageBucket {
    private(set) var tokens: Double
    private var lastMilliseconds: Int64

    init(burst: Int, nowMilliseconds: Int64) {
        tokens = Double(burst)
        lastMilliseconds = nowMilliseconds
    }

    /// Takes a token if there is one (refilling first for the time gone by).
    mutating func take(ratePerSecond: Int, burst: Int, nowMilliseconds: Int64) -> Bool {
        let elapsed = max(0, nowMilliseconds - lastMilliseconds)
        lastMilliseconds = nowMilliseconds
        tokens = min(Double(burst), tokens + Double(elapsed) * Double(ratePerSecond) / 1000)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
