import CLiburing
import SwitchboardIO

/// A running Switchboard: an acceptor, N shards, and one `WorkerHandler` per shard.
///
/// ```swift
/// var config = BrokerConfiguration()
/// config.port = 3004
/// let broker = Broker(configuration: config) { _ in MyHandler() }
/// try broker.run()   // until SIGTERM or SIGINT, then a graceful shutdown
/// ```
public final class Broker: @unchecked Sendable {
    public let configuration: BrokerConfiguration
    private let group: ShardGroup
    private let protocolMetrics: [ProtocolMetrics]
    private let log: @Sendable (String) -> Void

    /// - Parameters:
    ///   - handlerFactory: called once per shard, on that shard's thread.
    ///   - log: receives start-up and shutdown lines (default: standard error).
    public init(configuration: BrokerConfiguration,
                log: @escaping @Sendable (String) -> Void = { Broker.standardErrorLog($0) },
                handlerFactory: @escaping @Sendable (ShardContext) -> WorkerHandler) {
        self.configuration = configuration
        self.log = log
        let shardCount = configuration.io.resolvedShardCount
        let metrics = (0..<shardCount).map { _ in ProtocolMetrics() }
        protocolMetrics = metrics
        let box = MetricsRendererBox()
        group = ShardGroup(configuration: configuration.io, host: configuration.host, port: configuration.port, log: log) { shard in
            let worker = handlerFactory(ShardContext(shardIndex: shard.index, shardCount: shardCount, broker: box.broker!))
            return ShardProtocolHandler(configuration: configuration, worker: worker, metrics: metrics[shard.index],
                                     renderMetrics: { box.render?() ?? "" })
        }
        box.render = { [unowned self] in self.metricsText() }
        box.broker = self
    }

    /// The bound port (useful when the configuration asked for port 0). Valid after `start()`.
    public var port: Int { group.port }
    /// The I/O backend in use. Valid after `start()`.
    public var backend: IOBackendKind { group.backend }
    public var shardCount: Int { group.shards.count }
    /// Open connections over all shards (approximate).
    public var openConnections: Int { group.openConnections }

    /// Binds and starts accepting. Throws on a bad configuration, a port in use, or an
    /// unavailable backend.
    public func start() throws {
        if let problem = configuration.validate() { throw ConfigurationError(line: 0, message: problem) }
        try group.start()
        log("switchboard listening on \(configuration.host):\(port) with \(group.shards.count) shards (\(group.backend.rawValue))")
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests, close connections, and
    /// cut whatever is left after `graceMilliseconds`. Returns when every thread has exited.
    public func shutdown(graceMilliseconds: Int? = nil) {
        group.shutdown(graceMilliseconds: graceMilliseconds ?? configuration.shutdownGraceMilliseconds)
    }

    /// Starts, blocks until SIGTERM or SIGINT, then shuts down gracefully.
    public func run() throws {
        // Threads inherit the mask: only this thread ever sees the signals, in sigwait.
        _ = sb_block_signals()
        try start()
        let signal = sb_wait_termination_signal()
        log("switchboard: signal \(signal), shutting down (grace \(configuration.shutdownGraceMilliseconds) ms)")
        shutdown()
        log("switchboard: stopped")
    }

    // MARK: - Broker API (any thread)

    /// Runs `body` with the protocol handler owning `socketId`: directly when called on that
    /// shard's thread (a handler answering a message), otherwise through the shard's inbox, in
    /// call order per calling thread. Returns false for an id of another broker or when the
    /// shard's inbox is full (counted in `switchboard_inbox_full_total`).
    @discardableResult
    private func onOwner(_ socketId: SocketID, _ body: @escaping @Sendable (ShardProtocolHandler) -> Void) -> Bool {
        guard socketId.shard < group.shards.count else { return false }
        let shard = group.shards[socketId.shard]
        guard let handler = shard.eventHandler as? ShardProtocolHandler else { return false }
        if shard.isCurrent {
            body(handler)
            return true
        }
        // Re-read on the shard thread: the handler is confined to it.
        return shard.execute { s in
            if let h = s.eventHandler as? ShardProtocolHandler { body(h) }
        }
    }

    /// Sends a message to one WebSocket. On the socket's own shard the frame is queued before
    /// this returns; from elsewhere it is queued when the shard next runs. A stale id (closed
    /// socket) is ignored.
    @discardableResult
    public func send(_ socketId: SocketID, _ message: SocketMessage) -> Bool {
        onOwner(socketId) { $0.sendMessage(socketId, message) }
    }

    public func send(_ socketId: SocketID, text: String) { send(socketId, .text(text)) }
    public func send(_ socketId: SocketID, binary: [UInt8]) { send(socketId, .binary(binary)) }

    /// Starts a close handshake with the client.
    public func close(_ socketId: SocketID, code: UInt16 = 1000, reason: String = "") {
        onOwner(socketId) { $0.closeWebSocket(socketId, code: code, reason: reason) }
    }

    /// Attaches a token to a socket (passed back with each message and the close).
    public func setToken(_ socketId: SocketID, _ token: [UInt8]?) {
        onOwner(socketId) { $0.setToken(socketId, token) }
    }

    /// Prometheus text exposition of every counter, per shard.
    public func metricsText() -> String {
        var out = ""
        var families: [(name: String, help: String, gauge: Bool, samples: [(String, Int)])] = []
        func add(_ counters: [Counter], label: String) {
            for c in counters {
                if let i = families.firstIndex(where: { $0.name == c.name }) {
                    families[i].samples.append((label, c.value))
                } else {
                    families.append((c.name, c.help, c.name.hasSuffix("_open"), [(label, c.value)]))
                }
            }
        }
        for s in group.shards {
            add(s.metrics.all, label: "shard=\"\(s.index)\"")
            add(protocolMetrics[s.index].all, label: "shard=\"\(s.index)\"")
        }
        if let a = group.acceptorMetrics { add([a.accepted, a.acceptErrors, a.handoffFailures], label: "") }
        for f in families {
            out += "# HELP \(f.name) \(f.help)\n# TYPE \(f.name) \(f.gauge ? "gauge" : "counter")\n"
            for (label, value) in f.samples {
                out += label.isEmpty ? "\(f.name) \(value)\n" : "\(f.name){\(label)} \(value)\n"
            }
        }
        return out
    }

    public static func standardErrorLog(_ line: String) {
        var l = line
        l.append("\n")
        l.withUTF8 { buf in _ = write(2, buf.baseAddress, buf.count) }
    }
}

/// Breaks the init-order cycle between the broker and the handlers that render its metrics.
private final class MetricsRendererBox: @unchecked Sendable {
    var render: (@Sendable () -> String)?
    weak var broker: Broker?
}

#if canImport(Glibc)
import Glibc
#endif
