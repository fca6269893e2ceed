import ArgumentParser
import SwitchboardWebSocket

/// The protocol templates: load tests of a deployment speaking one of Switchboard's protocols,
/// with every reply verified (see `TemplateCommand`'s discussion).
public enum ProtocolTemplate: String, Sendable, CaseIterable, ExpressibleByArgument {
    /// connection-broker: pairs register, open a channel and exchange acknowledged messages.
    case broker
    /// broadcaster: REST or WebSocket publish to N subscribers of one channel.
    case broadcaster
    /// RPC (amqp-swarm): request/response in the three request forms.
    case rpc
}

/// The RPC request forms (README "RPC"), as the `switchboard-rpc-example` handlers expose them.
public enum RPCForm: String, Sendable, CaseIterable {
    /// client -> its node: `echo(args)`.
    case client
    /// client -> its node -> a server request to another node: `call(node, "echo", args)`.
    case server
    /// client -> its node -> another node -> that node's client: `relay(node, "echo", args)`,
    /// answered by the harness's other connection.
    case remoteClient = "remote-client"
}

/// Everything a template run is given. Times are nanoseconds.
public struct TemplateOptions: Sendable {
    public var template: ProtocolTemplate
    package var url: WebSocketURL
    public var headers: [String] = []
    public var allowRemote = false
    public var cpu: Int? = nil
    public var connectTimeoutNanos: Int64 = 10_000_000_000
    /// broker: client pairs; rpc: client pairs (each client's peer is the other of its pair).
    public var pairs = 1
    /// Messages (broker: per direction of a pair; rpc: per client) sent and not yet answered.
    public var window = 8
    public var size = 32
    public var durationNanos: Int64 = 10_000_000_000
    /// Total measured messages instead of a duration (broker: sent over all pairs and
    /// directions; rpc: requests per form over all clients).
    public var messages: Int? = nil
    public var warmupNanos: Int64 = 0
    /// After sending stops, how long the run waits for what is still due.
    public var drainNanos: Int64 = 5_000_000_000
    /// How long registering, opening channels or waiting for `init` may take.
    public var setupTimeoutNanos: Int64 = 10_000_000_000
    public var jsonPath: String? = nil
    public var quiet = false
    public var serverPID: Int32? = nil
    /// broker: roles are PREFIX-a and PREFIX-b.
    public var rolePrefix = "switchboard-bench"
    /// rpc: the forms to run, one after the other on the same connections.
    public var forms: [RPCForm] = RPCForm.allCases
    /// rpc: the name of the handler that returns its arguments (client and server requests).
    public var method = "echo"
    /// broadcaster: the channel, subscribers, the tokens and the publish path.
    public var channel = "bench"
    public var subscribers = 10
    public var token: String? = nil
    public var publishToken: String? = nil
    public var apiKey: String? = nil
    public var publishOverREST = true
    public var publishPath = "/broadcaster/publish"
    /// The run's failures beyond which connections may be lost (broadcaster only; the broker and
    /// RPC templates allow none).
    public var maxFailedConnections = ConnectionTolerance.count(0)

    package init(template: ProtocolTemplate, url: WebSocketURL) {
        self.template = template
        self.url = url
    }
}

/// `switchboard-bench broker|broadcaster|rpc [options] URL`: the protocol templates' command line.
public struct TemplateCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "switchboard-bench",
        abstract: "Protocol load tests: connection-broker pairs, broadcaster fan-out, RPC requests; every reply verified.",
        usage: "switchboard-bench <broker|broadcaster|rpc> [options] ws://HOST:PORT/path",
        discussion: """
            TEMPLATES (raw WebSocket clients: the server is what is measured)
              broker       --pairs P pairs of clients register (roles PREFIX-a,
                           PREFIX-b), A opens a channel to B, then both send
                           `message`s on it, --window each way in flight. Every
                           message must be acknowledged (channel_message_sent,
                           replyTo in order) and delivered to the peer
                           (channel_message, in order, exact payload).
              broadcaster  --subscribers N `auth` (--token) and `subscribe` to
                           --channel; one publisher POSTs to --publish-path with
                           --api-key (REST, default) or sends WebSocket `publish`
                           calls (--publish ws, --publish-token). Every subscriber
                           must receive every message, in order.
              rpc          --pairs P pairs of clients (amqp-swarm protocol, against
                           switchboard-rpc-example's handlers: echo, node-id, call,
                           relay). --forms client,server,remote-client run one after
                           the other; each answer must carry the exact arguments.
                           A remote-client request is answered by the peer client.

            A RUN FAILS (exit 1, "result: FAILED" and a "failed:" line per reason)
            when a connection fails or is closed, a set-up reply is missing or
            wrong, any reply is an error, or a reply is missing, duplicated,
            out of order (broker) or carries the wrong content.
            Exit status: 0 passed, 1 failed, 2 usage error.
            """
    )

    @Argument(help: ArgumentHelp("broker, broadcaster or rpc.", valueName: "template"))
    public var template: ProtocolTemplate

    @Argument(help: ArgumentHelp("The target, ws://HOST:PORT/path (or --host/--port/--path).", valueName: "url"))
    public var target: String?

    @Option(help: "Target host (with --port; instead of the URL).")
    public var host: String?
    @Option(help: "Target port.")
    public var port: Int?
    @Option(help: ArgumentHelp("Target path (default: broker /, rpc /, broadcaster /broadcaster/websocket).", valueName: "path"))
    public var path: String?
    @Flag(help: "Allow a target outside 127.0.0.0/8, ::1, localhost.")
    public var allowRemote = false
    @Option(help: ArgumentHelp("Extra handshake request header 'Name: value' (repeatable).", valueName: "header"))
    public var header: [String] = []

    @Option(help: "broker, rpc: client pairs (default 1).")
    public var pairs: Int?
    @Option(name: [.customShort("w"), .long], help: "broker: messages in flight per direction; rpc: requests in flight per client; broadcaster: messages per publisher ahead of the first subscriber (default 8; broadcaster 16).")
    public var window: Int?
    @Option(name: [.customShort("s"), .long], help: ArgumentHelp("Payload size, e.g. 20, 1k (default 32).", valueName: "bytes"))
    public var size: String?
    @Option(name: [.customShort("d"), .long], help: ArgumentHelp("Measured time per form (default 10s).", valueName: "duration"))
    public var duration: String?
    @Option(name: [.customShort("n"), .long], help: "Stop after N measured messages in total (rpc: per form) instead of a duration.")
    public var messages: Int?
    @Option(help: ArgumentHelp("Load before measuring, excluded from the figures (default 0s).", valueName: "duration"))
    public var warmup: String?
    @Option(help: ArgumentHelp("After sending stops, wait this long for what is still due (default 5s).", valueName: "duration"))
    public var drain: String?
    @Option(help: ArgumentHelp("Per-connection connect + handshake limit, and the set-up phases' limit (default 10s).", valueName: "duration"))
    public var connectTimeout: String?
    @Option(help: ArgumentHelp("Pin the client thread to this CPU.", valueName: "cpu"))
    public var cpu: Int?
    @Option(help: ArgumentHelp("Read the server's CPU time and VmRSS from /proc/PID.", valueName: "pid"))
    public var serverPid: Int?
    @Option(help: ArgumentHelp("Write every figure as JSON to FILE.", valueName: "file"))
    public var json: String?
    @Flag(name: [.customShort("q"), .long], help: "No progress line on stderr (broadcaster).")
    public var quiet = false

    @Option(help: ArgumentHelp("broker: roles are PREFIX-a and PREFIX-b (default switchboard-bench).", valueName: "prefix"))
    public var rolePrefix: String?
    @Option(help: ArgumentHelp("rpc: forms to run, comma-separated: client, server, remote-client (default all three).", valueName: "list"))
    public var forms: String?
    @Option(help: ArgumentHelp("rpc: the handler that returns its arguments (default echo).", valueName: "name"))
    public var method: String?

    @Option(help: ArgumentHelp("broadcaster: the channel (default bench).", valueName: "name"))
    public var channel: String?
    @Option(help: "broadcaster: subscriber connections (default 10).")
    public var subscribers: Int?
    @Option(help: ArgumentHelp("broadcaster: the subscribers' JWT (`auth`; omit when the server needs none).", valueName: "jwt"))
    public var token: String?
    @Option(help: ArgumentHelp("broadcaster: publish over rest (default) or ws.", valueName: "rest|ws"))
    public var publish: String?
    @Option(help: ArgumentHelp("broadcaster --publish rest: the API key (Authorization: Bearer KEY).", valueName: "key"))
    public var apiKey: String?
    @Option(help: ArgumentHelp("broadcaster --publish rest: the publish path (default /broadcaster/publish).", valueName: "path"))
    public var publishPath: String?
    @Option(help: ArgumentHelp("broadcaster --publish ws: the publisher's JWT (publish scope).", valueName: "jwt"))
    public var publishToken: String?
    @Option(help: ArgumentHelp("broadcaster: connections that may fail, N or N% (default 0).", valueName: "n|n%"))
    public var maxFailedConnections: String?

    public init() {}

    /// Checks and converts the parsed command line.
    public func makeOptions() throws(TemplateUsageError) -> TemplateOptions {
        let defaultPath: String
        switch template {
        case .broker, .rpc: defaultPath = "/"
        case .broadcaster: defaultPath = "/broadcaster/websocket"
        }
        let url: WebSocketURL
        if let text = target {
            guard host == nil && port == nil else { throw TemplateUsageError("give the target as a URL or as --host/--port, not both") }
            guard let u = try? WebSocketURL.parse(text), !u.secure else {
                throw TemplateUsageError("bad target '\(text)': expected ws://HOST:PORT/path (the templates speak plain ws://)")
            }
            url = u
        } else {
            guard let host, let port else { throw TemplateUsageError("missing target: ws://HOST:PORT/path, or --host and --port") }
            guard port > 0 && port < 65_536 else { throw TemplateUsageError("--port expects 1 to 65535, got \(port)") }
            let bracketed = host.contains(":") ? "[\(host)]" : host
            guard let u = try? WebSocketURL.parse("ws://\(bracketed):\(port)\(path ?? defaultPath)") else {
                throw TemplateUsageError("bad --host '\(host)'")
            }
            url = u
        }
        var o = TemplateOptions(template: template, url: url)
        if target != nil, let path {
            guard path.hasPrefix("/") else { throw TemplateUsageError("--path expects a path starting with /") }
            o.url.resource = path
        }
        let check = OptionChecks { TemplateUsageError($0) }
        o.allowRemote = allowRemote
        try check.loopback(url, allowRemote: allowRemote)
        o.headers = try check.headers(header)
        if let n = try check.atLeast("--pairs", pairs, 1) { o.pairs = n }
        if template == .broadcaster { o.window = 16 }
        if let n = try check.atLeast("--window", window, 1) { o.window = n }
        if let s = try check.size(size, maxBytes: 1 << 20, maxText: "1 MiB") { o.size = s }
        if let d = try check.duration("--duration", duration) { o.durationNanos = d }
        o.messages = try check.atLeast("--messages", messages, 1)
        if o.messages == nil && o.durationNanos <= 0 { throw TemplateUsageError("--duration must be > 0") }
        if let d = try check.duration("--warmup", warmup) { o.warmupNanos = d }
        if let d = try check.duration("--drain", drain) { o.drainNanos = d }
        if let d = try check.duration("--connect-timeout", connectTimeout) {
            guard d > 0 else { throw TemplateUsageError("--connect-timeout must be > 0") }
            o.connectTimeoutNanos = d
            o.setupTimeoutNanos = d
        }
        o.cpu = try check.atLeast("--cpu", cpu, 0)
        o.serverPID = try check.serverPID(serverPid)
        o.jsonPath = json
        o.quiet = quiet

        func only(_ name: String, _ given: Bool, _ templates: [ProtocolTemplate]) throws(TemplateUsageError) {
            if given && !templates.contains(template) {
                throw TemplateUsageError("\(name) applies to \(templates.map(\.rawValue).joined(separator: ", ")) only")
            }
        }
        try only("--pairs", pairs != nil, [.broker, .rpc])
        try only("--role-prefix", rolePrefix != nil, [.broker])
        try only("--forms", forms != nil, [.rpc])
        try only("--method", method != nil, [.rpc])
        for (name, given) in [("--channel", channel != nil), ("--subscribers", subscribers != nil), ("--token", token != nil),
                              ("--publish", publish != nil), ("--api-key", apiKey != nil), ("--publish-path", publishPath != nil),
                              ("--publish-token", publishToken != nil), ("--max-failed-connections", maxFailedConnections != nil)] {
            try only(name, given, [.broadcaster])
        }
        if let p = try check.jsonSafe("--role-prefix", rolePrefix) { o.rolePrefix = p }
        if let list = forms {
            var chosen: [RPCForm] = []
            for part in list.split(separator: ",") {
                guard let f = RPCForm(rawValue: String(part)) else {
                    throw TemplateUsageError("--forms expects client, server, remote-client (comma-separated), got '\(part)'")
                }
                if !chosen.contains(f) { chosen.append(f) }
            }
            guard !chosen.isEmpty else { throw TemplateUsageError("--forms expects at least one form") }
            o.forms = chosen
        }
        if let m = try check.jsonSafe("--method", method) { o.method = m }
        if let c = try check.jsonSafe("--channel", channel) { o.channel = c }
        if let n = try check.atLeast("--subscribers", subscribers, 1) { o.subscribers = n }
        o.token = try check.jsonSafe("--token", token)
        o.publishToken = try check.jsonSafe("--publish-token", publishToken)
        o.apiKey = try check.jsonSafe("--api-key", apiKey)
        if let p = publish {
            guard p == "rest" || p == "ws" else { throw TemplateUsageError("--publish expects rest or ws, got '\(p)'") }
            o.publishOverREST = p == "rest"
        }
        if !o.publishOverREST && (apiKey != nil || publishPath != nil) { throw TemplateUsageError("--api-key and --publish-path are for --publish rest") }
        if o.publishOverREST && publishToken != nil { throw TemplateUsageError("--publish-token is for --publish ws") }
        if let p = publishPath {
            guard p.hasPrefix("/") else { throw TemplateUsageError("--publish-path expects a path starting with /") }
            o.publishPath = p
        }
        if let t = try check.tolerance(maxFailedConnections) { o.maxFailedConnections = t }
        return o
    }
}

/// True when `arguments` (after the program name) start with a template's name: the command
/// line is then a `TemplateCommand`, otherwise a `BenchCommand`.
public func isTemplateCommandLine(_ arguments: [String]) -> Bool {
    guard let first = arguments.first else { return false }
    return ProtocolTemplate(rawValue: first) != nil
}

/// A template command-line problem (`CommandUsageError`, CommandUsage.swift).
public typealias TemplateUsageError = CommandUsageError<TemplateCommand>

extension TemplateCommand: BenchCommandLine {
    public static let helpHint = "See 'switchboard-bench broker --help'."
}

/// Parses a template command line into checked `TemplateOptions`.
public func parseTemplateArguments(_ arguments: [String]) throws(TemplateUsageError) -> TemplateOptions {
    try TemplateCommand.parseOptions(arguments)
}
