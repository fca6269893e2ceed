import SwitchboardWebSocket
#if canImport(Glibc)
import Glibc
#endif

/// The four load shapes the harness can generate.
public enum Scenario: String, Sendable, CaseIterable {
    case echo, fanout, connect, latency
}

/// The target: SwitchboardWebSocket's URL (the parser the SDK and the server's tests use too).
/// wss://: every connection runs a full TLS handshake (no resumption, no certificate
/// verification: a loopback benchmark) before its WebSocket handshake.
extension WebSocketURL {
    /// True for "localhost", 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
    package var isLoopback: Bool { Self.isLoopbackHost(host) }

    package static func isLoopbackHost(_ host: String) -> Bool {
        if host.lowercased() == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            let b = withUnsafeBytes(of: &v6) { Array($0) }
            if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return true }
            if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xFF && b[11] == 0xFF && b[12] == 127 { return true }
        }
        return false
    }
}

/// Everything the command line can set. Times are nanoseconds.
public struct BenchOptions: Sendable {
    public var scenario: Scenario
    package var url: WebSocketURL
    public var connections = 1
    public var threads = 1
    public var cpus: [Int] = []
    public var durationNanos: Int64 = 10_000_000_000
    /// Total measured messages (echo/latency: round trips; fanout: published messages).
    public var messages: Int? = nil
    public var warmupNanos: Int64 = 0
    public var size = 32
    public var binary = false
    /// Messages in flight per connection (echo) or per publisher (fanout at rate 0).
    public var window: Int
    /// latency: messages/s in total; fanout: published messages/s in total (0 = window-bound);
    /// connect: connections opened per second (0 = as fast as possible).
    public var rate: Double = 0
    public var subscribers = 10
    public var publishers = 1
    /// fanout --raw: K channels. With K > 1, subscriber i connects to `<path>/<i % K>` and
    /// publisher j to `<path>/<j % K>`; --publishers defaults to K.
    public var channels = 1
    /// Texts each subscriber sends once connected, in order (e.g. a protocol's auth, then its
    /// subscribe).
    public var subscribeTemplates: [String] = []
    /// Replies each subscriber waits for (messages without a marker) before it counts as
    /// subscribed: publishing starts when every subscriber is, so no delivery is due before
    /// its subscription exists. 0: subscribed once connected (plus `settleNanos`).
    public var setupReplies = 0
    /// Texts each publisher sends once connected, before its first publish (e.g. an auth).
    public var publisherSetupTemplates: [String] = []
    /// fanout: publishers send each message as the body of `POST <path>` (HTTP/1.1 keep-alive,
    /// no WebSocket) instead of a WebSocket message; every answer must be 200.
    public var publishHTTPPath: String? = nil
    /// Header lines of every HTTP publish (e.g. `Authorization: Bearer KEY`).
    public var publishHTTPHeaders: [String] = []
    public var publishTemplate: String? = nil
    public var drainNanos: Int64 = 5_000_000_000
    /// While load runs, the worker loops never sleep: epoll is polled without blocking and no
    /// timer is armed, so a figure does not carry the client's own wake-up per message.
    public var busyPoll = false
    public var settleNanos: Int64 = 200_000_000
    public var connectTimeoutNanos: Int64 = 10_000_000_000
    /// wss://: OpenSSL's record layer in the client instead of Switchboard's own.
    public var opensslRecords = false
    public var serverPID: Int32? = nil
    public var jsonPath: String? = nil
    public var quiet = false
    public var allowRemote = false
    public var headers: [String] = []
    /// Connections that may fail (to open, or closed by the server) before the run fails.
    public var maxFailedConnections = ConnectionTolerance.count(0)
    /// IPv4 addresses the connections are bound to, round-robin (`--source-addresses`);
    /// empty: the kernel picks.
    public var sourceAddresses: [String] = []

    package init(scenario: Scenario, url: WebSocketURL) {
        self.scenario = scenario
        self.url = url
        self.window = scenario == .fanout ? 16 : 1
    }

    /// Messages/s sent on a schedule (latency; fanout publishers with --rate), 0 for a run
    /// without one (echo, connect, fanout at rate 0: window-bound).
    public var scheduledRate: Double { scenario == .latency || scenario == .fanout ? rate : 0 }

    /// True when the published message is the bare payload (no template).
    public var rawFanout: Bool { publishTemplate == nil }

    /// Channel (0..<channels) of subscriber `i`.
    public func channel(ofSubscriber i: Int) -> Int { i % channels }

    /// Channel (0..<channels) of publisher `j`.
    public func channel(ofPublisher j: Int) -> Int { j % channels }

    /// Subscribers on `channel`: every subscriber when there is one channel, else those with
    /// index i where i % channels == channel.
    public func subscribers(onChannel channel: Int) -> Int {
        channels <= 1 ? subscribers : subscribers / channels + (channel < subscribers % channels ? 1 : 0)
    }

    /// Publishers on `channel` (publisher j is on channel j % channels and is that channel's
    /// (j / channels)-th publisher).
    public func publishers(onChannel channel: Int) -> Int {
        channels <= 1 ? publishers : publishers / channels + (channel < publishers % channels ? 1 : 0)
    }

    /// Request target of a channel's connections: the URL path itself with one channel, else
    /// the path with "/<channel>" appended (before any query string).
    public func path(forChannel channel: Int) -> String {
        guard channels > 1 else { return url.resource }
        var base = Substring(url.resource)
        var query: Substring = ""
        if let q = base.firstIndex(of: "?") {
            query = base[q...]
            base = base[..<q]
        }
        while base.hasSuffix("/") { base = base.dropLast() }
        return "\(base)/\(channel)\(query)"
    }

    /// Number of WebSocket connections the run opens.
    public var totalConnections: Int {
        scenario == .fanout ? subscribers + publishers : connections
    }
}

/// "10s", "500ms", "250us", "2m", "1h", or a bare number of seconds -> nanoseconds.
public func parseDuration(_ text: String) -> Int64? {
    let units: [(String, Double)] = [("ms", 1e6), ("us", 1e3), ("ns", 1), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
    var number = Substring(text)
    var scale = 1e9
    for (suffix, s) in units where text.hasSuffix(suffix) {
        number = text.dropLast(suffix.count)
        scale = s
        break
    }
    guard let v = Double(number), v >= 0, v.isFinite else { return nil }
    return Int64(v * scale)
}

/// "20", "1k", "1K", "1KiB", "1kb", "2m", "1MiB" -> bytes (binary multiples).
public func parseSize(_ text: String) -> Int? {
    let lower = text.lowercased()
    let units: [(String, Int)] = [("kib", 1 << 10), ("mib", 1 << 20), ("kb", 1 << 10), ("mb", 1 << 20), ("k", 1 << 10), ("m", 1 << 20), ("b", 1)]
    for (suffix, scale) in units where lower.hasSuffix(suffix) {
        guard let v = Int(lower.dropLast(suffix.count)), v >= 0 else { return nil }
        return v * scale
    }
    return Int(lower).flatMap { $0 >= 0 ? $0 : nil }
}
