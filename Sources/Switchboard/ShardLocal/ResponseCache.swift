import SwitchboardHTTP
import SwitchboardIO

/// The shard's `Date` header value, and the health route's response serialized with it, both
/// renewed when the wall-clock second changes. Shard thread only.
///
/// The health answer is the same bytes for every request in a second, so they are written
/// once and shared by every connection that gets them (a retain per request instead of
/// building the response, serializing it and copying it: issue 16, HTTP row). Only the common
/// framing is kept (keep-alive, not `HEAD`, HTTP/1.1): the others are rarer and are written
/// as any response is. The bytes are exactly ``HTTPResponseWriter``'s for the same response.
///
/// The clock is the caller's (``refresh(unixSeconds:)``, each tick), so a test can step it.
struct ResponseCache {
    /// Whether responses carry `Date` (`BrokerConfiguration.sendDateHeader`).
    let sendsDate: Bool
    /// The health route's response (`BuiltinRoutes.health`).
    let health: WireResponse
    /// The `Date` value for responses written now; nil when `sendsDate` is false.
    private(set) var date: String?
    /// The wall-clock second `date` names (`Int.min` before the first refresh).
    private var second = Int.min
    /// `health` serialized with `date`, made on first use in each second.
    private var healthBytes: OutboundBytes?

    init(sendsDate: Bool, health: WireResponse) {
        self.sendsDate = sendsDate
        self.health = health
    }

    /// Renews `date` (and drops the health bytes made with the old one) when `now` is another second.
    mutating func refresh(unixSeconds now: Int) {
        guard sendsDate, now != second else { return }
        second = now
        date = httpDate(unixSeconds: now)
        healthBytes = nil
    }

    /// The health response as a keep-alive answer to an HTTP/1.1 `GET`, with the current
    /// `date`, as a +1 reference for `Shard.send(_:retained:)`, which the send queue takes over
    /// (no retain of a copy here and release after the send).
    mutating func retainedKeepAliveHealthBytes() -> Unmanaged<OutboundBytes.Storage> {
        if healthBytes == nil {
            var buffer: [UInt8] = []
            HTTPResponseWriter.write(health, keepAlive: true, headOnly: false, date: date, requestVersion: .http1_1, into: &buffer)
            healthBytes = OutboundBytes(buffer)
        }
        return healthBytes.unsafelyUnwrapped.retainedStorage()
    }

    /// The same bytes as a value (the tests' view of the shared block).
    mutating func keepAliveHealthBytes() -> OutboundBytes {
        OutboundBytes(storage: retainedKeepAliveHealthBytes().takeRetainedValue())
    }
}
