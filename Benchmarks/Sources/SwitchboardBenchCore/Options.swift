#if canImport(Glibc)
import Glibc
#endif

/// The four load shapes the harness can generate.
public enum Scenario: String, Sendable, CaseIterable {
    case echo, fanout, connect, latency
}

/// A parsed `ws://HOST:PORT/path` target.
public struct WebSocketURL: Sendable, Equatable {
    /// The host as written (without IPv6 brackets).
    public var host: String
    public var port: Int
    /// Request target, always starting with "/".
    public var path: String
    /// Value for the Host header (`host:port`, brackets kept for IPv6).
    public var hostHeader: String

    /// Parses `ws://HOST[:PORT][/path]`. `wss://` is refused (no TLS in the harness).
    public static func parse(_ text: String) -> WebSocketURL? {
        guard text.hasPrefix("ws://") else { return nil }
        let rest = text.dropFirst(5)
        let authority: Substring
        var path = "/"
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = String(rest[slash...])
        } else {
            authority = rest
        }
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var host: Substring
        var portText: Substring? = nil
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portText = after.dropFirst()
            }
        } else {
            let parts = authority.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { return nil }  // a bare IPv6 literal needs brackets
            host = parts[0]
            if parts.count == 2 { portText = parts[1] }
        }
        guard !host.isEmpty else { return nil }
        var port = 80
        if let p = portText {
            guard let v = Int(p), v > 0, v < 65_536 else { return nil }
            port = v
        }
        let h = String(host)
        let header = h.contains(":") ? "[\(h)]:\(port)" : "\(h):\(port)"
        return WebSocketURL(host: h, port: port, path: path, hostHeader: header)
    }

    /// True for "localhost", 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
    public var isLoopback: Bool { Self.isLoopbackHost(host) }

    public static func isLoopbackHost(_ host: String) -> Bool {
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
    public var url: WebSocketURL
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
    public var subscribeTemplate: String? = nil
    public var publishTemplate: String? = nil
    public var drainNanos: Int64 = 5_000_000_000
    public var settleNanos: Int64 = 200_000_000
    public var connectTimeoutNanos: Int64 = 10_000_000_000
    public var serverPID: Int32? = nil
    public var jsonPath: String? = nil
    public var quiet = false
    public var allowRemote = false
    public var headers: [String] = []

    public init(scenario: Scenario, url: WebSocketURL) {
        self.scenario = scenario
        self.url = url
        self.window = scenario == .fanout ? 16 : 1
    }

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

    /// Request target of a channel's connections: the URL path itself with one channel, else
    /// the path with "/<channel>" appended (before any query string).
    public func path(forChannel channel: Int) -> String {
        guard channels > 1 else { return url.path }
        var base = Substring(url.path)
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

/// A command-line problem. `description` carries the message and the usage text.
public struct UsageError: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// `--help` was asked for: print the usage on stdout and exit 0.
    public let helpRequested: Bool
    public init(_ message: String, helpRequested: Bool = false) {
        self.message = message
        self.helpRequested = helpRequested
    }
    public var description: String {
        helpRequested ? benchUsage : "switchboard-bench: \(message)\n\n\(benchUsage)"
    }
}

public let benchUsage = """
usage: switchboard-bench <echo|fanout|connect|latency> [options] ws://HOST:PORT/path

Scenarios:
  echo      N connections each keep --window messages in flight; every message must come back.
            Reports round trips/s, payload bytes/s, latency percentiles (send -> echo).
  fanout    --subscribers M + --publishers P connections. Each publisher sends its payload
            (wrapped in --publish-template, or raw); every subscriber (of the publisher's channel,
            see --channels) should receive every published message. Reports deliveries/s,
            expected vs received, publish->receive latency.
  connect   opens --connections N at --rate conn/s and holds them idle for --duration.
            Reports connection rate, failures, server RSS (--server-pid) and RSS per connection.
  latency   open loop at a fixed --rate msgs/s over N connections (echo server). Latency is
            measured from each message's INTENDED send time (coordinated-omission aware).

Common options:
  -c, --connections N       connections (echo, latency, connect; default 1)
  -t, --threads T           client threads, each with its own epoll loop (default 1)
      --cpu LIST            pin the harness: "1" or "1,3" (thread i -> LIST[i % count])
  -d, --duration D          measured time, e.g. 10s, 500ms, 2m (default 10s; connect: hold time)
  -n, --messages N          stop after N measured messages in total instead of a duration
                            (echo/latency: round trips; fanout: published messages)
      --warmup D            load before measuring, excluded from the figures (default 0s)
  -s, --size BYTES          payload size, e.g. 20, 1k, 1KiB (default 32)
      --binary              binary frames (default text)
      --connect-timeout D   per-connection connect + handshake limit (default 10s)
      --header 'N: V'       extra handshake request header (repeatable)
      --json FILE           write every figure as JSON to FILE
      --server-pid PID      read the server's CPU time and VmRSS from /proc/PID
      --quiet               no progress line on stderr
      --allow-remote        allow a target outside 127.0.0.0/8, ::1, localhost
      --url URL             the target (or give it as a positional argument)
echo:
  -w, --window N            messages in flight per connection (default 1)
latency:
  -r, --rate R              total messages per second (required), spread over the connections
fanout:
      --subscribers M       subscriber connections (default 10)
      --publishers P        publisher connections (default 1; with --channels K > 1: K)
      --channels K          raw mode: K channels (default 1). Subscriber i connects to PATH/<i % K>,
                            publisher j to PATH/<j % K>; expected deliveries are counted per
                            channel (each publisher's messages x the subscribers on its channel).
                            1 <= K <= --subscribers
  -r, --rate R              total publish rate in msgs/s; 0 = as fast as the window allows (default 0)
  -w, --window N            rate 0: messages per publisher not yet seen by the first subscriber
                            of its channel (default 16)
      --subscribe-template T  text each subscriber sends once connected
      --publish-template T  published text; {{payload}} is replaced by the payload, which carries
                            an ASCII marker #sb:PUB:SEQ:NANOS# padded with 'x' to --size
      --raw                 publish the bare payload (default when no --publish-template)
      --settle D            pause between subscribing and the first publish (default 200ms)
      --drain D             after publishing stops, wait this long for deliveries (default 5s)
connect:
  -r, --rate R              connections per second (0 = as fast as possible)

Output: a progress line per second on stderr, the summary on stdout, --json for machines.
Exit status: 0 ok, 1 the run failed (no connection established), 2 usage error.
"""

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

/// Parses the arguments after the program name. Performs no I/O (and resolves no names):
/// the loopback rule is checked on the host text.
public func parseArguments(_ arguments: [String]) throws(UsageError) -> BenchOptions {
    if arguments.contains("-h") || arguments.contains("--help") {
        throw UsageError("", helpRequested: true)
    }
    guard let first = arguments.first else { throw UsageError("missing scenario") }
    guard let scenario = Scenario(rawValue: first) else {
        throw UsageError("unknown scenario '\(first)' (expected echo, fanout, connect or latency)")
    }
    var urlText: String? = nil
    var values: [(String, String)] = []
    var flags: Set<String> = []
    let flagNames: Set<String> = ["--binary", "--quiet", "--allow-remote", "--raw"]
    let short: [String: String] = ["-c": "--connections", "-t": "--threads", "-d": "--duration", "-n": "--messages",
                                   "-s": "--size", "-w": "--window", "-r": "--rate", "-q": "--quiet"]
    let valueNames: Set<String> = ["--connections", "--threads", "--cpu", "--duration", "--messages", "--warmup", "--size",
                                   "--window", "--rate", "--subscribers", "--publishers", "--subscribe-template",
                                   "--publish-template", "--channels", "--drain", "--settle", "--server-pid", "--json",
                                   "--connect-timeout", "--header", "--url"]
    var i = 1
    while i < arguments.count {
        var arg = arguments[i]
        i += 1
        if let long = short[arg] { arg = long }
        if !arg.hasPrefix("-") || arg == "-" {
            if urlText != nil { throw UsageError("unexpected argument '\(arg)'") }
            urlText = arg
            continue
        }
        var inline: String? = nil
        if arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") {
            inline = String(arg[arg.index(after: eq)...])
            arg = String(arg[..<eq])
        }
        if flagNames.contains(arg) {
            if inline != nil { throw UsageError("\(arg) takes no value") }
            flags.insert(arg)
        } else if valueNames.contains(arg) {
            if let v = inline {
                values.append((arg, v))
            } else {
                guard i < arguments.count else { throw UsageError("\(arg) needs a value") }
                values.append((arg, arguments[i]))
                i += 1
            }
        } else {
            throw UsageError("unknown option '\(arg)'")
        }
    }
    for (name, value) in values where name == "--url" {
        if urlText != nil && urlText != value { throw UsageError("two targets given") }
        urlText = value
    }
    guard let text = urlText else { throw UsageError("missing target URL (ws://HOST:PORT/path)") }
    guard let url = WebSocketURL.parse(text) else {
        throw UsageError("bad target '\(text)': expected ws://HOST:PORT/path (wss is not supported)")
    }
    var o = BenchOptions(scenario: scenario, url: url)
    o.binary = flags.contains("--binary")
    o.quiet = flags.contains("--quiet")
    o.allowRemote = flags.contains("--allow-remote")
    let raw = flags.contains("--raw")

    func int(_ name: String, _ v: String, min: Int) throws(UsageError) -> Int {
        guard let n = Int(v), n >= min else { throw UsageError("\(name) expects an integer >= \(min), got '\(v)'") }
        return n
    }
    func duration(_ name: String, _ v: String) throws(UsageError) -> Int64 {
        guard let d = parseDuration(v) else { throw UsageError("\(name) expects a duration like 10s or 500ms, got '\(v)'") }
        return d
    }
    var sawWindow = false
    var sawPublishers = false
    var sawChannels = false
    for (name, v) in values {
        switch name {
        case "--connections": o.connections = try int(name, v, min: 1)
        case "--threads": o.threads = try int(name, v, min: 1)
        case "--cpu":
            var cpus: [Int] = []
            for part in v.split(separator: ",") {
                guard let c = Int(part), c >= 0 else { throw UsageError("--cpu expects a list like 1 or 1,3, got '\(v)'") }
                cpus.append(c)
            }
            if cpus.isEmpty { throw UsageError("--cpu expects a list like 1 or 1,3") }
            o.cpus = cpus
        case "--duration": o.durationNanos = try duration(name, v)
        case "--messages": o.messages = try int(name, v, min: 1)
        case "--warmup": o.warmupNanos = try duration(name, v)
        case "--size":
            guard let s = parseSize(v), s >= 1, s <= 64 << 20 else { throw UsageError("--size expects 1 B to 64 MiB, got '\(v)'") }
            o.size = s
        case "--window": o.window = try int(name, v, min: 1); sawWindow = true
        case "--rate":
            guard let r = Double(v), r >= 0, r.isFinite else { throw UsageError("--rate expects a number >= 0, got '\(v)'") }
            o.rate = r
        case "--subscribers": o.subscribers = try int(name, v, min: 1)
        case "--publishers": o.publishers = try int(name, v, min: 1); sawPublishers = true
        case "--channels": o.channels = try int(name, v, min: 1); sawChannels = true
        case "--subscribe-template": o.subscribeTemplate = v
        case "--publish-template":
            guard v.contains("{{payload}}") else { throw UsageError("--publish-template must contain {{payload}}") }
            o.publishTemplate = v
        case "--drain": o.drainNanos = try duration(name, v)
        case "--settle": o.settleNanos = try duration(name, v)
        case "--connect-timeout": o.connectTimeoutNanos = try duration(name, v)
        case "--server-pid": o.serverPID = Int32(try int(name, v, min: 1))
        case "--json": o.jsonPath = v
        case "--header":
            guard let colon = v.firstIndex(of: ":"), colon != v.startIndex, !v.contains("\r"), !v.contains("\n") else {
                throw UsageError("--header expects 'Name: value', got '\(v)'")
            }
            o.headers.append(v)
        default: break
        }
    }
    if raw { o.publishTemplate = nil }
    if o.durationNanos <= 0 && o.messages == nil { throw UsageError("--duration must be > 0") }
    if o.scenario == .latency && o.rate <= 0 { throw UsageError("latency needs --rate R (messages per second, > 0)") }
    if o.scenario == .connect && o.messages != nil { throw UsageError("connect does not take --messages") }
    if sawWindow && (o.scenario == .latency || o.scenario == .connect) {
        throw UsageError("--window applies to echo and fanout only")
    }
    if sawChannels {
        guard o.scenario == .fanout else { throw UsageError("--channels applies to fanout only") }
        if o.channels > 1 && !o.rawFanout {
            throw UsageError("--channels applies to fanout --raw only (the channel is the URL path; no --publish-template)")
        }
        if o.channels > o.subscribers {
            throw UsageError("--channels expects at most --subscribers (\(o.subscribers)) channels, got \(o.channels)")
        }
        if o.channels > 1 && !sawPublishers { o.publishers = o.channels }
    }
    if o.threads > o.totalConnections { o.threads = o.totalConnections }
    if !o.allowRemote && !url.isLoopback {
        throw UsageError("refusing non-loopback target '\(url.host)' (only 127.0.0.0/8, ::1, localhost); pass --allow-remote to override")
    }
    return o
}
