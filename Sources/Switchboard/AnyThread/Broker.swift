import Logging
import SwitchboardCluster
import SwitchboardIO
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A running Switchboard: an acceptor, N shards, and one ``WorkerHandler`` per shard.
///
/// ```swift
/// var config = BrokerConfiguration()
/// config.port = 3004
/// let broker = Broker(configuration: config, logger: Logger(label: "chat")) { context in MyHandler(context) }
/// // A `Service`: run it in a `ServiceGroup` (graceful shutdown on SIGTERM/SIGINT), or call
/// // `start()` and `shutdown()` yourself.
/// try await ServiceGroup(services: [broker], gracefulShutdownSignals: [.sigterm, .sigint],
///                        logger: logger).run()
/// ```
///
/// The broker is the any-thread room: every method may be called from any thread or task.
/// Fire-and-forget calls return ``Enqueued`` (queued to the shard, or refused now); calls that
/// need an exact answer are `async throws` and throw ``BrokerError/stopped`` once the broker
/// stops, never hang. A handler acting on its own shard's sockets uses its ``ShardContext``
/// instead: synchronous and exact.
public final class Broker: Sendable {
    public let configuration: BrokerConfiguration
    let group: ShardGroup
    let protocolMetrics: [ProtocolMetrics]
    /// Per shard, in use with `cluster_engine = redis` (Broker+Cluster.swift).
    let clusterMetrics: [ClusterMetrics]
    /// The Redis endpoint, resolved by `start()` before the shards run.
    let clusterEndpoint = ClusterEndpoint()
    /// This process's incarnation of its cluster node (`cluster_engine = redis`), shared by the
    /// shards' engines; the protocols tag what they write to Redis with it.
    package let clusterIncarnation = ClusterIncarnation()
    /// The host's logger; shards and handlers log through it with a `shard` metadata key.
    public let logger: Logger
    private let fabric: ChannelFabric
    let dispatchers: DispatcherTable
    /// Set when shutdown begins: from then on every call is refused with `.stopped`.
    private let stopping = Atomic<Bool>(false)
    /// The malloc gauges, walked at most once per `metrics_malloc_interval_ms` (Broker+Metrics).
    package let mallocStatistics: MallocStatisticsCache

    /// - Parameters:
    ///   - handlerFactory: called once per shard, on that shard's thread, with that shard's
    ///     context (keep it: it is the handler's way to act on its shard).
    ///   - logger: start-up, shutdown and per-shard events (default: the `LoggingSystem`'s
    ///     handler, standard error unless the host bootstrapped another).
    public init(configuration: BrokerConfiguration,
                logger: Logger = Logger(label: "switchboard"),
                handlerFactory: @escaping @Sendable (ShardContext) -> WorkerHandler) {
        self.configuration = configuration
        self.logger = logger
        mallocStatistics = MallocStatisticsCache(intervalMilliseconds: max(0, configuration.mallocStatisticsIntervalMilliseconds))
        let shardCount = configuration.io.resolvedShardCount
        let metrics = (0..<shardCount).map { _ in ProtocolMetrics() }
        protocolMetrics = metrics
        let clusterMetrics = (0..<shardCount).map { _ in ClusterMetrics() }
        self.clusterMetrics = clusterMetrics
        let clusterEndpoint = clusterEndpoint
        let clusterIncarnation = clusterIncarnation
        let box = BrokerBox()
        let fabric = ChannelFabric(shardCount: shardCount, ringCapacity: configuration.crossShardRingCapacity)
        self.fabric = fabric
        let dispatchers = DispatcherTable(count: shardCount)
        self.dispatchers = dispatchers
        let routes = BuiltinRoutes(healthPath: configuration.healthPath, metricsPath: configuration.metricsPath,
                                   renderMetrics: { box.broker?.metricsText() ?? "" })
        var io = configuration.io
        if io.tls == nil && configuration.tls.isEnabled { io.tls = configuration.tls }
        // In a cluster, socket ids carry the node: an id names its node, shard and slot.
        if configuration.cluster.engine == .redis { io.nodeID = configuration.cluster.nodeID }
        group = ShardGroup(configuration: io, host: configuration.host, port: configuration.port, logger: logger) { shard in
            let dispatcher = ShardDispatcher(shard: shard, broker: box.broker!, configuration: configuration,
                                             metrics: metrics[shard.index], fabric: fabric, routes: routes,
                                             handlerFactory: handlerFactory)
            dispatchers.set(shard.index, dispatcher)
            Broker.attachCluster(configuration, clusterEndpoint, clusterMetrics[shard.index], clusterIncarnation, dispatcher, logger: logger)
            return dispatcher
        }
        group.prepare = { shards in fabric.shards = shards }
        box.broker = self
    }

    /// The bound port (useful when the configuration asked for port 0). Valid after `start()`.
    public var port: Int { group.port }
    /// The bound TLS port, 0 without a TLS listener. Valid after `start()`.
    public var tlsPort: Int { group.tlsPort }
    /// Reads the TLS certificate and key files again (the executable calls it on SIGHUP). A bad
    /// new certificate keeps the old one in force; the error says why (and is logged).
    /// Existing connections are not touched. Any thread.
    @discardableResult
    public func reloadTLS() -> Result<Void, TLSError> { group.reloadTLS() }
    /// The I/O backend in use. Valid after `start()`.
    public var backend: IOBackendKind { group.backend }
    public var shardCount: Int { group.shards.count }
    /// Open connections over all shards (approximate).
    public var openConnections: Int { group.openConnections }

    /// Binds and starts accepting. Throws on a bad configuration, a port in use, or an
    /// unavailable backend.
    public func start() throws {
        if let problem = configuration.validate() { throw ConfigurationError(line: 0, message: problem) }
        try resolveCluster()
        try group.start()
        // deploy/lib.sh and the benchmark scripts read the port from this line.
        logger.notice("switchboard listening on \(configuration.host):\(port) with \(group.shards.count) shards (\(group.backend.rawValue))")
        if group.tlsPort != 0 { logger.notice("switchboard listening with TLS on \(configuration.host):\(group.tlsPort)") }
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests, close connections, and
    /// cut whatever is left after `graceMilliseconds`. Returns when every thread has exited.
    public func shutdown(graceMilliseconds: Int? = nil) {
        stopping.store(true, ordering: .sequentiallyConsistent)
        group.shutdown(graceMilliseconds: graceMilliseconds ?? configuration.shutdownGraceMilliseconds)
    }

    // MARK: - Reaching a shard

    var isStopping: Bool { stopping.load(ordering: .relaxed) }

    private func refusal() -> Enqueued { .refused(isStopping ? .stopped : .full) }

    /// Runs `body` with shard `index`'s dispatcher: directly when called on that shard's thread
    /// (a handler of that shard: keeps its order with the context's own operations), otherwise
    /// through the shard's inbox, in call order per calling thread.
    /// `duringShutdown`: taken while the shards drain (answers owed to clients still go out in
    /// the grace period); refused once the shard itself refuses work.
    func onShard(_ index: Int, duringShutdown: Bool = false,
                         _ body: @escaping @Sendable (ShardDispatcher) -> Void) -> Enqueued {
        guard index >= 0, index < group.shards.count else { return .refused(.unknownShard) }
        guard duringShutdown || !isStopping else { return .refused(.stopped) }
        let shard = group.shards[index]
        if shard.isCurrent {
            body(dispatchers[index])
            return .queued
        }
        let dispatchers = dispatchers
        return shard.execute { _ in body(dispatchers[index]) } ? .queued : refusal()
    }

    /// Runs `body` on shard `index` and returns its result.
    private func onShardExact<T: Sendable>(_ index: Int, _ body: @escaping @Sendable (ShardDispatcher) -> T) async throws(BrokerError) -> T {
        guard index >= 0, index < group.shards.count else { throw .unknownShard }
        guard !isStopping else { throw .stopped }
        let shard = group.shards[index]
        let dispatchers = dispatchers
        // Exactly one of the two closures runs: the body on the shard, or the refusal, at once
        // (inbox full, shard stopped) or when the shard stops with the call still queued. So
        // the continuation is resumed once, whatever shutdown does meanwhile.
        let result: Result<T, BrokerError> = await withCheckedContinuation { continuation in
            shard.execute({ _ in continuation.resume(returning: .success(body(dispatchers[index]))) },
                          orElse: { why in continuation.resume(returning: .failure(why == .stopped ? .stopped : .inboxFull)) })
        }
        return try result.get()
    }

    /// Runs `body` on shard `shardIndex`'s thread with that shard's context: how code on
    /// another thread, a task, or another shard's handler acts on that shard (e.g. a protocol's
    /// cross-shard message, reaching its handler there through ``PerShard``). Always goes
    /// through the shard's inbox, even from that shard itself (it runs later, never inside the
    /// caller).
    @discardableResult
    public func execute(onShard shardIndex: Int, _ body: @escaping @Sendable (ShardContext) -> Void) -> Enqueued {
        guard shardIndex >= 0, shardIndex < group.shards.count else { return .refused(.unknownShard) }
        guard !isStopping else { return .refused(.stopped) }
        let dispatchers = dispatchers
        return group.shards[shardIndex].execute { _ in body(dispatchers[shardIndex].context) } ? .queued : refusal()
    }

    /// Runs `body` on shard `shardIndex` with its context and returns its result.
    public func perform<T: Sendable>(onShard shardIndex: Int, _ body: @escaping @Sendable (ShardContext) -> T) async throws(BrokerError) -> T {
        try await onShardExact(shardIndex) { body($0.context) }
    }

    // MARK: - Sockets (any thread)

    /// Sends a message to one WebSocket. On the socket's own shard the frame is queued before
    /// this returns; from elsewhere when the shard next runs. A stale id is ignored there.
    @discardableResult
    public func send(_ socketId: SocketID, _ message: SocketMessage) -> Enqueued {
        if isRemote(socketId) { return sendAddressed(socketId, .send(message)) }
        return onShard(socketId.shard) { _ = $0.webSockets.send(socketId, message) }
    }

    /// Starts a close handshake with the client.
    @discardableResult
    public func close(_ socketId: SocketID, code: WebSocketCloseCode = .normalClosure, reason: String = "") -> Enqueued {
        if isRemote(socketId) { return sendAddressed(socketId, .close(code, reason)) }
        return onShard(socketId.shard) { $0.webSockets.close(socketId, code: code, reason: reason) }
    }

    /// Attaches a token to a socket (passed back with each message and the close).
    @discardableResult
    public func setToken(_ socketId: SocketID, _ token: [UInt8]?) -> Enqueued {
        if isRemote(socketId) { return sendAddressed(socketId, .setToken(token)) }
        return onShard(socketId.shard) { _ = $0.context.setToken(socketId, token) }
    }

    /// A deferred response arrives (``ResponseSlot/respond(_:)``).
    func completeDeferred(_ socketId: SocketID, _ sequence: UInt64, _ response: WireResponse) -> Enqueued {
        onShard(socketId.shard, duringShutdown: true) { $0.http.complete(socketId, sequence, response) }
    }

    /// A streamed body's consumer took enough: the connection's shard reads it again. Always
    /// posted, never run inline: the release may come on the shard from inside its HTTP driver.
    /// Refused (inbox full), the shard's tick notices the drained buffer instead.
    func resumeBodyStream(_ socketId: SocketID) {
        let index = socketId.shard
        guard index >= 0, index < group.shards.count else { return }
        let dispatchers = dispatchers
        _ = group.shards[index].execute { _ in dispatchers[index].http.resumeStream(socketId) }
    }

    // MARK: - Channels (any thread)

    /// The shard of this broker running on the calling thread, if any.
    var currentShardIndex: Int? {
        for s in group.shards where s.isCurrent { return s.index }
        return nil
    }

    /// Subscribes a socket to a channel and returns the exact result. Every message the
    /// channel's owner orders after the subscribe ran reaches the socket.
    ///
    /// In a cluster, a socket of another node is subscribed there: the call goes to its node's
    /// inbox and waits for the answer at most `cluster_remote_call_timeout_ms`. It then also
    /// throws ``BrokerError/nodeUnavailable`` (that node is down), ``BrokerError/timedOut``
    /// (no answer in time) or ``BrokerError/clusterUnavailable`` (no Redis connection). The
    /// same holds for ``unsubscribe(_:_:)`` and ``subscriptions(of:)``.
    public func subscribe(_ socketId: SocketID, _ channel: ChannelName) async throws(BrokerError) -> SubscribeResult {
        if isRemote(socketId) {
            guard case .subscribe(let result) = try await remoteSocketCall(socketId, .subscribe, channel) else { throw .clusterUnavailable }
            return result
        }
        return try await onShardExact(socketId.shard) { $0.channels.subscribe(socketId, to: channel) }
    }

    /// Unsubscribes; false when the socket was not subscribed.
    public func unsubscribe(_ socketId: SocketID, _ channel: ChannelName) async throws(BrokerError) -> Bool {
        if isRemote(socketId) {
            guard case .unsubscribe(let removed) = try await remoteSocketCall(socketId, .unsubscribe, channel) else { throw .clusterUnavailable }
            return removed
        }
        return try await onShardExact(socketId.shard) { $0.channels.unsubscribe(socketId, from: channel) }
    }

    /// The channels a socket is subscribed to.
    public func subscriptions(of socketId: SocketID) async throws(BrokerError) -> Set<ChannelName> {
        if isRemote(socketId) {
            guard case .subscriptions(let channels) = try await remoteSocketCall(socketId, .subscriptions) else { throw .clusterUnavailable }
            return channels
        }
        return try await onShardExact(socketId.shard) { $0.channels.subscriptions(of: socketId) }
    }

    /// Subscribers of a channel over all shards (exact at some instant per shard).
    public func subscriberCount(_ channel: ChannelName) async throws(BrokerError) -> Int {
        var total = 0
        for index in 0..<group.shards.count {
            total += try await onShardExact(index) { $0.channels.localSubscriberCount(channel) }
        }
        return total
    }

    /// Sends a message to every subscriber of a channel, encoded once as one frame shared by
    /// all of them. Every subscriber sees the channel's messages in the same order (the owner
    /// shard's). Refused when the ring to the channel's owner (from a shard thread) or the
    /// owner's inbox (from any other thread) is full (counted). From a thread that is no shard,
    /// `.queued` means it reached the owner's inbox: if the owner's delivery backlog is at
    /// `max_pending_deliveries` when it runs, it is dropped there and counted
    /// (`switchboard_publish_backlog_limit_hits_total`).
    @discardableResult
    public func publish(_ channel: ChannelName, _ message: SocketMessage) -> Enqueued {
        guard !isStopping else { return .refused(.stopped) }
        let frame = OutboundBytes.webSocketFrame(message)
        if let index = currentShardIndex {
            switch dispatchers[index].channels.publish(channel, message: message) {
            case .accepted: return .queued
            case .refused: return .refused(.full)
            }
        }
        if configuration.cluster.engine != .memory {
            // Through Redis, from the owner shard (one connection: this thread's publishes to
            // a channel keep their order).
            return onShard(channel.owner(shardCount: fabric.shardCount)) { _ = $0.channels.publish(channel, message: message) }
        }
        // Through the owner's inbox: ordered there if its backpressure gate is open, refused
        // and counted (`switchboard_publish_backlog_limit_hits_total`) otherwise.
        return onShard(channel.owner(shardCount: fabric.shardCount)) { $0.channels.orderIfAdmitted(channel, frame) }
    }

    /// Copies every subscriber of `from` to `to` (WSBroker's copySubscriptions). Each shard
    /// copies its own subscribers when it next runs. Refused if any shard refused.
    @discardableResult
    public func copySubscriptions(from: ChannelName, to: ChannelName) -> Enqueued {
        // In a cluster: every node (this one too) copies its own, told through Redis.
        if configuration.cluster.engine == .redis { return copySubscriptionsOnEveryNode(from: from, to: to) }
        return copyLocalSubscriptions(from: from, to: to)
    }

    /// This node's part of `copySubscriptions`: each shard copies its own subscribers.
    func copyLocalSubscriptions(from: ChannelName, to: ChannelName) -> Enqueued {
        var result = Enqueued.queued
        for index in 0..<group.shards.count {
            let r = onShard(index) { $0.channels.copyLocalSubscriptions(from: from, to: to) }
            if r != .queued { result = r }
        }
        return result
    }

    // MARK: - Metrics

    private let extraMetrics = Mutex<(@Sendable () -> String)?>(nil)
    private let extraMetricSamples = Mutex<(@Sendable () -> [MetricSample])?>(nil)

    /// Extra metrics text appended to `/metrics` (e.g. a protocol's counters). Text is not
    /// visible to swift-metrics: prefer `additionalMetricSamples`.
    public var additionalMetrics: (@Sendable () -> String)? {
        get { extraMetrics.withLock { $0 } }
        set { extraMetrics.withLock { $0 = newValue } }
    }

    /// A protocol's own counters and gauges, included in `/metrics` and in what
    /// `MetricsExporter` reports to swift-metrics (read when either renders). Called from any
    /// thread.
    public var additionalMetricSamples: (@Sendable () -> [MetricSample])? {
        get { extraMetricSamples.withLock { $0 } }
        set { extraMetricSamples.withLock { $0 = newValue } }
    }

    /// Prometheus text exposition of every counter, per shard.
    public func metricsText() -> String {
        var out = PrometheusText.render(metricSamples())
        if let extra = additionalMetrics { out += extra() }
        return out
    }
}

/// Breaks the init-order cycle between the broker and the shards it makes (their handlers get
/// the broker; the metrics route renders it).
private final class BrokerBox: @unchecked Sendable {
    weak var broker: Broker?
}
