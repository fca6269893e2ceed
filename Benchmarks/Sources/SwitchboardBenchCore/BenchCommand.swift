import SwitchboardWebSocket
import ArgumentParser

extension Scenario: ExpressibleByArgument {}

/// The `switchboard-bench` command line (swift-argument-parser): one positional scenario, the
/// target, and the options grouped as `--help` shows them. `makeOptions()` turns it into
/// `BenchOptions`, checking what the parser cannot (ranges, units, combinations).
/// Performs no I/O and resolves no names: the loopback rule is checked on the host text.
public struct BenchCommand: ParsableCommand {
    // The discussion keeps its lines under 76 columns: the help generator keeps line breaks
    // and re-wraps only lines wider than the terminal.
    public static let configuration = CommandConfiguration(
        commandName: "switchboard-bench",
        abstract: "WebSocket load generator: echo, fan-out, connection-count and open-loop latency runs.",
        usage: "switchboard-bench <echo|fanout|connect|latency> [options] ws://HOST:PORT/path",
        discussion: """
            SCENARIOS
              echo     N connections each keep --window messages in flight; every
                       message must come back. Reports round trips/s, payload
                       bytes/s, latency percentiles (send -> echo).
              fanout   --subscribers M + --publishers P connections. Each publisher
                       sends its payload (wrapped in --publish-template, or raw);
                       every subscriber of the publisher's channel (--channels)
                       must receive every published message, in order: each one
                       carries the marker #sb:PUB:SEQ:NANOS#, and each subscriber
                       checks that every publisher's SEQ arrives as one gap-free
                       increasing run (missing and reordered counts reported).
                       Reports deliveries/s, expected vs received, latency.
              connect  opens --connections N at --rate conn/s and holds them idle
                       for --duration. Reports connection rate, failures, server
                       RSS (--server-pid) and RSS per connection.
              latency  open loop at a fixed --rate msgs/s over N connections (echo
                       server), latency from each message's INTENDED send time
                       (coordinated-omission aware). Reports the sends that left
                       100 us or more late: many mean the client fell behind.

            PROTOCOL TEMPLATES (their own options: 'switchboard-bench broker --help')
              broker, broadcaster, rpc  load-test a deployment of a protocol,
                       every reply verified.

            A RUN FAILS (exit 1, "result: FAILED" and a "failed:" line per reason)
            when no connection was established; more connections failed to open
            or were closed by the server than --max-failed-connections allows
            (default 0); an -n run stalled (nothing sent or received for
            --drain); echo/latency completed no round trip; fanout published
            nothing in the measured window, delivered fewer messages than
            expected, or broke a subscriber's per-publisher order.

            Output: a progress line per second on stderr, the summary on stdout,
            --json for machines. Exit status: 0 the run passed, 1 it failed,
            2 usage error.
            """
    )

    @Argument(help: ArgumentHelp("echo, fanout, connect or latency (see SCENARIOS below).", valueName: "scenario"))
    public var scenario: Scenario

    @Argument(help: ArgumentHelp("The target, ws://HOST:PORT/path or wss:// (TLS, not verified; or --url).", valueName: "url"))
    public var target: String?

    @OptionGroup(title: "Common options")
    public var common: CommonOptions

    @OptionGroup(title: "Load shape (the scenarios that use each option are named)")
    public var load: LoadOptions

    @OptionGroup(title: "fanout")
    public var fanout: FanoutOptions

    public init() {}

    public struct CommonOptions: ParsableArguments {
        @Option(name: [.customShort("c"), .long], help: "Connections (echo, latency, connect; default 1).")
        public var connections: Int?
        @Option(name: [.customShort("t"), .long], help: "Client threads, each with its own epoll loop (default 1).")
        public var threads: Int?
        @Option(help: ArgumentHelp("Pin the harness: \"1\" or \"1,3\" (thread i -> LIST[i % count]).", valueName: "list"))
        public var cpu: String?
        @Option(name: [.customShort("d"), .long],
                help: ArgumentHelp("Measured time, e.g. 10s, 500ms, 2m (default 10s; connect: hold time).", valueName: "duration"))
        public var duration: String?
        @Option(name: [.customShort("n"), .long],
                help: "Stop after N measured messages in total instead of a duration (echo/latency: round trips; fanout: published messages).")
        public var messages: Int?
        @Option(help: ArgumentHelp("Load before measuring, excluded from the figures (default 0s).", valueName: "duration"))
        public var warmup: String?
        @Option(name: [.customShort("s"), .long], help: ArgumentHelp("Payload size, e.g. 20, 1k, 1KiB (default 32).", valueName: "bytes"))
        public var size: String?
        @Flag(help: "Binary frames (default text).")
        public var binary = false
        @Option(help: ArgumentHelp("Per-connection connect + handshake limit (default 10s).", valueName: "duration"))
        public var connectTimeout: String?
        @Flag(help: "wss://: OpenSSL's TLS record layer in the client (default: Switchboard's own for TLS 1.3, so the client's CPU does not limit a TLS run).")
        public var opensslRecords = false
        @Option(help: ArgumentHelp("Extra handshake request header 'Name: value' (repeatable).", valueName: "header"))
        public var header: [String] = []
        @Option(help: ArgumentHelp("Write every figure as JSON to FILE.", valueName: "file"))
        public var json: String?
        @Option(help: ArgumentHelp("Read the server's CPU time and VmRSS from /proc/PID.", valueName: "pid"))
        public var serverPid: Int?
        @Option(help: ArgumentHelp(
            "Connections that may fail to open or be closed by the server before the run fails: N, or N% of the connections requested (default 0).",
            valueName: "n|n%"))
        public var maxFailedConnections: String?
        @Flag(name: [.customShort("q"), .long], help: "No progress line on stderr.")
        public var quiet = false
        @Flag(help: "Allow a target outside 127.0.0.0/8, ::1, localhost.")
        public var allowRemote = false
        @Option(help: ArgumentHelp("The target (or give it as the positional argument).", valueName: "url"))
        public var url: String?
        @Option(help: ArgumentHelp(
            "Bind connections to these IPv4 sources, round-robin: 'A,B' or '127.0.0.1-4' (beyond one source's ~28k ephemeral ports).",
            valueName: "list"))
        public var sourceAddresses: String?

        public init() {}
    }

    public struct LoadOptions: ParsableArguments {
        @Option(name: [.customShort("w"), .long], help: """
            echo: messages in flight per connection (default 1). fanout at rate 0: messages per publisher not yet \
            seen by the first subscriber of its channel (default 16).
            """)
        public var window: Int?
        @Option(name: [.customShort("r"), .long], help: """
            latency: total messages/s, required. fanout: total publish rate in msgs/s, 0 = as fast as the window \
            allows (default 0). connect: connections/s, 0 = as fast as possible.
            """)
        public var rate: String?
        @Option(help: ArgumentHelp("After sending stops, wait this long for what is still due (default 5s). An -n run that makes no progress for this long stops and fails.", valueName: "duration"))
        public var drain: String?
        @Flag(help: """
            While load runs, never sleep: poll epoll without blocking, arm no timer. A sleeping client's \
            wake-up per message (a timer, an interrupt, on a VM an exit) is then not in the latency \
            figures; each client thread uses its whole CPU.
            """)
        public var busyPoll = false

        public init() {}
    }

    public struct FanoutOptions: ParsableArguments {
        @Option(help: "Subscriber connections (default 10).")
        public var subscribers: Int?
        @Option(help: "Publisher connections (default 1; with --channels K > 1: K).")
        public var publishers: Int?
        @Option(help: """
            Raw mode: K channels (default 1). Subscriber i connects to PATH/<i % K>, publisher j to PATH/<j % K>; \
            expected deliveries are counted per channel. 1 <= K <= --subscribers.
            """)
        public var channels: Int?
        @Option(help: ArgumentHelp("Text each subscriber sends once connected (repeatable: sent in order).", valueName: "text"))
        public var subscribeTemplate: [String] = []
        @Option(help: ArgumentHelp("""
            Replies each subscriber waits for (messages without a marker, e.g. the answers to its auth and \
            subscribe) before it counts as subscribed; publishing starts when every subscriber is (default 0).
            """, valueName: "n"))
        public var setupReplies: Int?
        @Option(help: ArgumentHelp("Text each publisher sends once connected, before its first publish (repeatable).", valueName: "text"))
        public var publisherSetup: [String] = []
        @Option(help: ArgumentHelp("""
            Publish over HTTP: each message (the --publish-template text) is the body of POST PATH on a \
            keep-alive connection (no WebSocket); every answer must be 200.
            """, valueName: "path"))
        public var publishHttp: String?
        @Option(help: ArgumentHelp("A header line of every HTTP publish, e.g. 'Authorization: Bearer KEY' (repeatable).", valueName: "line"))
        public var publishHttpHeader: [String] = []
        @Option(help: ArgumentHelp("""
            Published text; {{payload}} is replaced by the payload, which carries an ASCII marker \
            #sb:PUB:SEQ:NANOS# padded with 'x' to --size.
            """, valueName: "text"))
        public var publishTemplate: String?
        @Flag(help: "Publish the bare payload (default when no --publish-template).")
        public var raw = false
        @Option(help: ArgumentHelp("Pause between subscribing and the first publish (default 200ms).", valueName: "duration"))
        public var settle: String?

        public init() {}
    }

    /// Checks and converts the parsed command line.
    public func makeOptions() throws(UsageError) -> BenchOptions {
        let c = common
        if let a = target, let b = c.url, a != b { throw UsageError("two targets given") }
        guard let text = target ?? c.url else { throw UsageError("missing target URL (ws://HOST:PORT/path)") }
        guard let url = try? WebSocketURL.parse(text) else {
            throw UsageError("bad target '\(text)': expected ws://HOST:PORT/path or wss://HOST:PORT/path")
        }
        var o = BenchOptions(scenario: scenario, url: url)
        o.binary = c.binary
        o.quiet = c.quiet
        o.allowRemote = c.allowRemote

        let check = OptionChecks { UsageError($0) }
        if let n = try check.atLeast("--connections", c.connections, 1) { o.connections = n }
        if let n = try check.atLeast("--threads", c.threads, 1) { o.threads = n }
        if let v = c.cpu {
            var cpus: [Int] = []
            for part in v.split(separator: ",") {
                guard let cpu = Int(part), cpu >= 0 else { throw UsageError("--cpu expects a list like 1 or 1,3, got '\(v)'") }
                cpus.append(cpu)
            }
            if cpus.isEmpty { throw UsageError("--cpu expects a list like 1 or 1,3") }
            o.cpus = cpus
        }
        if let d = try check.duration("--duration", c.duration) { o.durationNanos = d }
        o.messages = try check.atLeast("--messages", c.messages, 1)
        if let d = try check.duration("--warmup", c.warmup) { o.warmupNanos = d }
        if let s = try check.size(c.size, maxBytes: 64 << 20, maxText: "64 MiB") { o.size = s }
        if let d = try check.duration("--connect-timeout", c.connectTimeout) { o.connectTimeoutNanos = d }
        o.opensslRecords = c.opensslRecords
        o.headers += try check.headers(c.header)
        o.jsonPath = c.json
        o.serverPID = try check.serverPID(c.serverPid)
        if let t = try check.tolerance(c.maxFailedConnections) { o.maxFailedConnections = t }

        if let v = c.sourceAddresses {
            guard let list = SourceAddresses.parse(v) else {
                throw UsageError("--source-addresses expects IPv4 addresses 'A,B' or a range '127.0.0.1-4', got '\(v)'")
            }
            o.sourceAddresses = list
        }
        if let w = try check.atLeast("--window", load.window, 1) { o.window = w }
        if let v = load.rate {
            guard let r = Double(v), r >= 0, r.isFinite else { throw UsageError("--rate expects a number >= 0, got '\(v)'") }
            o.rate = r
        }
        if let d = try check.duration("--drain", load.drain) { o.drainNanos = d }
        o.busyPoll = load.busyPoll

        let f = fanout
        if let n = try check.atLeast("--subscribers", f.subscribers, 1) { o.subscribers = n }
        if let n = try check.atLeast("--publishers", f.publishers, 1) { o.publishers = n }
        if let n = try check.atLeast("--channels", f.channels, 1) { o.channels = n }
        o.subscribeTemplates = f.subscribeTemplate
        o.publisherSetupTemplates = f.publisherSetup
        if let n = try check.atLeast("--setup-replies", f.setupReplies, 0) { o.setupReplies = n }
        if let path = f.publishHttp {
            guard path.hasPrefix("/") else { throw UsageError("--publish-http expects a path starting with /") }
            guard f.publishTemplate != nil && !f.raw else { throw UsageError("--publish-http needs --publish-template (the request body)") }
            guard f.publisherSetup.isEmpty else { throw UsageError("--publisher-setup is for WebSocket publishers, not --publish-http") }
            for h in f.publishHttpHeader where !h.contains(":") || h.contains("\r") || h.contains("\n") {
                throw UsageError("--publish-http-header expects 'Name: value', got '\(h)'")
            }
            o.publishHTTPPath = path
            o.publishHTTPHeaders = f.publishHttpHeader
        } else if !f.publishHttpHeader.isEmpty {
            throw UsageError("--publish-http-header applies to --publish-http only")
        }
        if let t = f.publishTemplate {
            guard t.contains("{{payload}}") else { throw UsageError("--publish-template must contain {{payload}}") }
            o.publishTemplate = t
        }
        if f.raw { o.publishTemplate = nil }
        if let d = try check.duration("--settle", f.settle) { o.settleNanos = d }

        if o.durationNanos <= 0 && o.messages == nil { throw UsageError("--duration must be > 0") }
        if o.scenario == .latency && o.rate <= 0 { throw UsageError("latency needs --rate R (messages per second, > 0)") }
        if o.scenario == .connect && o.messages != nil { throw UsageError("connect does not take --messages") }
        if load.window != nil && (o.scenario == .latency || o.scenario == .connect) {
            throw UsageError("--window applies to echo and fanout only")
        }
        if f.channels != nil {
            guard o.scenario == .fanout else { throw UsageError("--channels applies to fanout only") }
            if o.channels > 1 && !o.rawFanout {
                throw UsageError("--channels applies to fanout --raw only (the channel is the URL path; no --publish-template)")
            }
            if o.channels > o.subscribers {
                throw UsageError("--channels expects at most --subscribers (\(o.subscribers)) channels, got \(o.channels)")
            }
            if o.channels > 1 && f.publishers == nil { o.publishers = o.channels }
        }
        if o.threads > o.totalConnections { o.threads = o.totalConnections }
        try check.loopback(url, allowRemote: o.allowRemote)
        return o
    }
}

/// A scenario command-line problem (`CommandUsageError`, CommandUsage.swift).
public typealias UsageError = CommandUsageError<BenchCommand>

extension BenchCommand: BenchCommandLine {
    public static let helpHint = "See 'switchboard-bench --help'."
}

/// Parses the arguments after the program name into checked `BenchOptions`.
public func parseArguments(_ arguments: [String]) throws(UsageError) -> BenchOptions {
    try BenchCommand.parseOptions(arguments)
}
