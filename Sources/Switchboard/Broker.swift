import CLiburing
import SwitchboardIO
import SwitchboardWebSocket

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
    private let fabric: ChannelFabric

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
        let fabric = ChannelFabric(shardCount: shardCount, ringCapacity: configuration.crossShardRingCapacity)
        self.fabric = fabric
        group = ShardGroup(configuration: configuration.io, host: configuration.host, port: configuration.port, log: log) { shard in
            let worker = handlerFactory(ShardContext(shardIndex: shard.index, shardCount: shardCount, broker: box.broker!))
            return ShardProtocolHandler(configuration: configuration, worker: worker, metrics: metrics[shard.index],
                                        fabric: fabric, renderMetrics: { box.render?() ?? "" })
        }
        group.prepare = { shards in fabric.shards = shards }
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

    // MARK: - Channels (any thread)

    /// The shard of this broker running on the calling thread, if any.
    private var currentShard: Shard? {
        for s in group.shards where s.isCurrent { return s }
        return nil
    }

    /// Subscribes a socket to a channel.
    ///
    /// On the socket's own shard (a handler reacting to that socket's message) this is
    /// synchronous: it returns false when the socket was already subscribed (or a limit or a
    /// stale id refused it), and every message the channel's owner orders after this call is
    /// delivered to the socket. From any other thread the subscribe is queued to the socket's
    /// shard and this returns whether it could be queued; use `subscribeResult` to wait for
    /// the exact answer.
    @discardableResult
    public func subscribe(_ socketId: SocketID, _ channel: ChannelName) -> Bool {
        guard socketId.shard < group.shards.count else { return false }
        let shard = group.shards[socketId.shard]
        if shard.isCurrent, let h = shard.eventHandler as? ShardProtocolHandler {
            return h.subscribe(socketId, to: channel) == .subscribed
        }
        return onOwner(socketId) { _ = $0.subscribe(socketId, to: channel) }
    }

    /// Subscribes and waits for the exact result, from any context.
    public func subscribeResult(_ socketId: SocketID, _ channel: ChannelName) async -> SubscribeResult {
        await onOwnerAsync(socketId, fallback: .notFound) { $0.subscribe(socketId, to: channel) }
    }

    /// Unsubscribes; synchronous and exact on the socket's shard (false when not subscribed),
    /// queued from elsewhere (returns whether it could be queued).
    @discardableResult
    public func unsubscribe(_ socketId: SocketID, _ channel: ChannelName) -> Bool {
        guard socketId.shard < group.shards.count else { return false }
        let shard = group.shards[socketId.shard]
        if shard.isCurrent, let h = shard.eventHandler as? ShardProtocolHandler {
            return h.unsubscribe(socketId, from: channel)
        }
        return onOwner(socketId) { _ = $0.unsubscribe(socketId, from: channel) }
    }

    public func unsubscribeResult(_ socketId: SocketID, _ channel: ChannelName) async -> Bool {
        await onOwnerAsync(socketId, fallback: false) { $0.unsubscribe(socketId, from: channel) }
    }

    /// The channels a socket is subscribed to (exact, any context).
    public func subscriptions(of socketId: SocketID) async -> Set<ChannelName> {
        await onOwnerAsync(socketId, fallback: []) { $0.subscriptions(of: socketId) }
    }

    /// Sends a message to every subscriber of a channel, encoded once as one frame shared by
    /// all of them. Every subscriber sees the channel's messages in the same order (the owner
    /// shard's). Returns false when the publish was refused: the ring to the channel's owner
    /// (or its inbox, from a thread that is not a shard) was full (counted).
    @discardableResult
    public func sendToChannel(_ channel: ChannelName, _ message: SocketMessage) -> Bool {
        let frame: [UInt8]
        switch message {
        case .text(var s): frame = s.withUTF8 { WebSocketFrame.encode(opcode: .text, payload: UnsafeRawBufferPointer($0)) }
        case .binary(let b): frame = b.withUnsafeBytes { WebSocketFrame.encode(opcode: .binary, payload: $0) }
        }
        return publish(channel, OutboundBytes(adopting: frame))
    }

    public func sendToChannel(_ channel: ChannelName, text: String) { sendToChannel(channel, .text(text)) }

    func publish(_ channel: ChannelName, _ frame: OutboundBytes) -> Bool {
        if let shard = currentShard, let h = shard.eventHandler as? ShardProtocolHandler {
            return h.publish(channel, frame)
        }
        let owner = group.shards[channel.owner(shardCount: group.shards.count)]
        return owner.execute { s in (s.eventHandler as? ShardProtocolHandler)?.order(channel, frame) }
    }

    /// Copies every subscriber of `from` to `to` (WSBroker's copySubscriptions). Each shard
    /// copies its own subscribers when it next runs.
    public func copySubscriptions(from: ChannelName, to: ChannelName) {
        for shard in group.shards {
            if shard.isCurrent, let h = shard.eventHandler as? ShardProtocolHandler {
                h.copyLocalSubscriptions(from: from, to: to)
            } else {
                shard.execute { s in (s.eventHandler as? ShardProtocolHandler)?.copyLocalSubscriptions(from: from, to: to) }
            }
        }
    }

    /// Subscribers of a channel over all shards (exact at some instant per shard).
    public func subscriberCount(_ channel: ChannelName) async -> Int {
        var total = 0
        for shard in group.shards {
            total += await withCheckedContinuation { (c: CheckedContinuation<Int, Never>) in
                let posted = shard.execute { s in c.resume(returning: (s.eventHandler as? ShardProtocolHandler)?.localSubscriberCount(channel) ?? 0) }
                if !posted { c.resume(returning: 0) }
            }
        }
        return total
    }

    private func onOwnerAsync<T: Sendable>(_ socketId: SocketID, fallback: T, _ body: @escaping @Sendable (ShardProtocolHandler) -> T) async -> T {
        guard socketId.shard < group.shards.count else { return fallback }
        let shard = group.shards[socketId.shard]
        if shard.isCurrent, let h = shard.eventHandler as? ShardProtocolHandler { return body(h) }
        return await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            let posted = shard.execute { s in
                if let h = s.eventHandler as? ShardProtocolHandler { c.resume(returning: body(h)) } else { c.resume(returning: fallback) }
            }
            if !posted { c.resume(returning: fallback) }
        }
    }

    /// Extra metrics text appended to `/metrics` (e.g. a protocol's counters). Set before `start()`.
    public var additionalMetrics: (@Sendable () -> String)?

    /// Prometheus text exposition of every counter, per shard.
    public func metricsText() -> String {
        var out = ""
        var families: [(name: String, help: String, gauge: Bool, samples: [(String, Int)])] = []
        func add(_ counters: [Counter], label: String) {
            for c in counters {
                if let i = families.firstIndex(where: { $0.name == c.name }) {
                    families[i].samples.append((label, c.value))
                } else {
                    families.append((c.name, c.help, !c.name.hasSuffix("_total"), [(label, c.value)]))
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
        if let extra = additionalMetrics { out += extra() }
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
