import Switchboard
import SwitchboardRESP
import Synchronization
import SwitchboardWebSocket

/// The amqp-swarm RPC protocol as a Switchboard handler: every WebSocket accepted on its route
/// becomes an `RPCNode`.
///
/// ```swift
/// let rpc = RPCServer(nodeId: { request in request.query.isEmpty ? nil : request.query }) { node in
///     node.client.on("hello there") { _, args in .string("general \(args.first?.stringValue ?? "")") }
/// }
/// let broker = Broker(configuration: config, handlerFactory: rpc.handlerFactory())
/// broker.additionalMetricSamples = { rpc.metrics.samples }  // /metrics and swift-metrics
/// ```
///
/// Node ids come from `nodeId` (called in the upgrade, on the shard; nil: a random id, 16
/// bytes base64 like the reference). Each shard keeps its own nodes and its part of the id
/// directory; requests between nodes cross shards with `Broker.execute(onShard:)`.
public final class RPCServer: Sendable {
    public let options: RPCServerOptions
    public let metrics = RPCMetrics()
    let shared: RPCShared
    let cores = PerShard<RPCShardCore>()
    /// The executor over this server's shards, for `nodeDied` (set by the first handler).
    let clusterExecutor = Mutex<BrokerRPCExecutor?>(nil)
    let nodeId: @Sendable (WorkerRequest) -> String?

    /// - Parameters:
    ///   - nodeId: the id for an upgrade request (nil: generated). Ids longer than
    ///     `options.maxNodeIdBytes` are refused with 400.
    ///   - onNode: called on the node's shard when it is created, before `init` is sent: add
    ///     handlers here; requests sent to the client now go out right after `init`.
    public init(options: RPCServerOptions = RPCServerOptions(),
                nodeId: @escaping @Sendable (WorkerRequest) -> String? = { _ in nil },
                onNode: @escaping @Sendable (RPCNode) -> Void) {
        precondition(options.validate() == nil, options.validate() ?? "")
        self.options = options
        self.nodeId = nodeId
        shared = RPCShared(options: options, metrics: metrics, onNode: onNode)
    }

    /// The factory for `Broker(configuration:handlerFactory:)` (or one route of a router).
    public func handlerFactory() -> @Sendable (ShardContext) -> WorkerHandler {
        { context in RPCWorkerHandler(context: context, server: self) }
    }
}

/// One shard's RPC handler: adapts `WorkerHandler` callbacks to its `RPCShardCore`.
final class RPCWorkerHandler: WorkerHandler {
    private let context: ShardContext
    private let server: RPCServer
    private let core: RPCShardCore

    init(context: ShardContext, server: RPCServer) {
        self.context = context
        self.server = server
        let executor = BrokerRPCExecutor(broker: context.broker, cores: server.cores, shardCount: context.shardCount)
        core = RPCShardCore(io: ShardContextRPCIO(context), executor: executor, shared: server.shared)
        server.cores[context] = core
        server.clusterExecutor.withLock { $0 = $0 ?? executor }
        RPCTicker.start(shard: context.shardIndex, executor: executor, tickMilliseconds: server.options.tickMilliseconds)
    }

    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        let id = server.nodeId(request) ?? RPCNodeIDs.random()
        guard !id.isEmpty, id.utf8.count <= server.options.maxNodeIdBytes else {
            return .reject(.text("node id must be 1...\(server.options.maxNodeIdBytes) bytes\n", status: .badRequest))
        }
        guard core.createNode(socketId, id: id) != nil else {
            return .reject(.text("RPC service overloaded, retry later\n", status: .serviceUnavailable))
        }
        return .accept()
    }

    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        switch message {
        case .text(let text): core.receive(socketId, text: text)
        case .binary(let bytes): core.receive(socketId, binary: bytes)
        }
    }

    func handleSocketClose(socketId: SocketID, token: [UInt8]?) {
        core.socketClosed(socketId)
    }
}

extension RPCWorkerHandler: ClusterMessageReceiver {
    func receiveClusterMessage(tag: UInt8, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard tag == rpcClusterTag else { return false }
        core.receiveFromCluster(bytes)
        return true
    }

    /// The membership code's event, on every shard: this shard's part of `RPCServer.nodeDied`,
    /// for the directory entries incarnation `incarnation` wrote.
    func handleClusterNodeDied(_ node: Int, incarnation: UInt64) { core.peerNodeDied(node, incarnation: incarnation) }

    /// The shard's Redis connection is up (again): its directory entries are written again.
    func handleClusterConnected() { core.clusterConnected() }

    /// The shard's Redis backlog drained after a refusal: clean-ups it cut go on.
    func handleClusterBacklogDrained() { core.clusterBacklogDrained() }
}

extension RPCServer {
    /// Cleans up after node `node` of the cluster died (its heartbeat expired): requests of
    /// this node's nodes that wait only on it fail with `.disconnected` (before their
    /// timeout), and its node ids leave the cluster directory in Redis, whichever incarnation
    /// of it wrote them (the membership code's deaths remove only the dead incarnation's).
    /// Any thread. False when a shard refused the post (inbox full) or the broker is not
    /// running: call again.
    @discardableResult
    public func nodeDied(_ node: Int) -> Bool {
        guard let executor = clusterExecutor.withLock({ $0 }) else { return false }
        var all = true
        for shard in 0..<executor.shardCount {
            all = executor.execute(onShard: shard) { $0.peerNodeDied(node, incarnation: nil) } == .queued && all
        }
        return all
    }
}

/// The core's I/O through this shard's `ShardContext`.
final class ShardContextRPCIO: RPCShardIO {
    private let context: ShardContext
    init(_ context: ShardContext) { self.context = context }

    func assertOnShard(file: StaticString, line: UInt) { context.assertOnShard(file: file, line: line) }
    var shardIndex: Int { context.shardIndex }
    var shardCount: Int { context.shardCount }

    func sendText(_ socket: SocketID, _ text: String) -> RPCSendOutcome {
        switch context.send(socket, .text(text)) {
        case .queued: .queued
        case .dropped: .dropped
        case .closed, .notLocal: .gone
        }
    }

    func closeSocket(_ socket: SocketID, code: UInt16, reason: String) {
        context.close(socket, code: WebSocketCloseCode(rawValue: code) ?? .normalClosure, reason: reason)
    }

    var clusterNode: Int? { context.clusterNodeID }
    var clusterIncarnation: UInt64 { context.clusterIncarnation }
    var clusterKeyPrefix: String { context.broker.configuration.cluster.keyPrefix }
    var clusterCleanUpBatchEntries: Int { context.broker.configuration.cluster.cleanUpBatchEntries }
    func clusterCommand(_ arguments: [[UInt8]], _ completion: @escaping (RESPValue?) -> Void) { context.clusterCommand(arguments, completion) }
    func sendToClusterNode(_ node: Int, _ message: [UInt8]) -> Bool { context.sendToClusterNode(node, tag: rpcClusterTag, message) }
    func sendToClusterNode(_ node: Int, _ message: [UInt8], receivers: @escaping (Int?) -> Void) -> Bool {
        context.sendToClusterNode(node, tag: rpcClusterTag, message, receivers: receivers)
    }
}

/// Posts to a shard's RPC core through the broker. Weak: nodes and tasks may outlive the broker;
/// then every post reports `stopped`.
final class BrokerRPCExecutor: RPCShardExecutor {
    private weak let broker: Broker?
    private let cores: PerShard<RPCShardCore>
    let shardCount: Int

    init(broker: Broker, cores: PerShard<RPCShardCore>, shardCount: Int) {
        self.broker = broker
        self.cores = cores
        self.shardCount = shardCount
    }

    @discardableResult
    func execute(onShard index: Int, _ body: @escaping @Sendable (RPCShardCore) -> Void) -> RPCPosted {
        guard let broker else { return .stopped }
        let cores = cores
        switch broker.execute(onShard: index, { context in if let core = cores[context] { body(core) } }) {
        case .queued: return .queued
        case .refused(.full): return .full
        case .refused: return .stopped
        }
    }
}

/// Generated node ids: 16 random bytes in base64, as the reference's
/// `crypto.randomBytes(16).toString('base64')`.
enum RPCNodeIDs {
    static func random() -> String {
        var g = SystemRandomNumberGenerator()
        let bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }
        return base64(bytes)
    }

    static func base64(_ bytes: [UInt8]) -> String { Base64.encode(bytes) }
}
