import Logging
import SwitchboardCluster
import SwitchboardIO
import Synchronization

/// The Redis endpoint of a broker's cluster engine: resolved once by `Broker.start()` (name
/// resolution blocks, so never on a shard), read by each shard as it starts.
final class ClusterEndpoint: Sendable {
    private let resolved = Mutex<(options: OutboundOptions, database: Int, credentials: RedisCredentials?)?>(nil)

    func set(_ value: (options: OutboundOptions, database: Int, credentials: RedisCredentials?)) { resolved.withLock { $0 = value } }
    var value: (options: OutboundOptions, database: Int, credentials: RedisCredentials?)? { resolved.withLock { $0 } }
}

extension Broker {
    /// `cluster_engine = redis`: resolves the Redis address before any shard starts.
    func resolveCluster() throws {
        guard configuration.cluster.engine == .redis else { return }
        switch configuration.cluster.resolvedOutboundOptions() {
        case .success(let endpoint):
            clusterEndpoint.set(endpoint)
            logger.notice("cluster: node \(configuration.cluster.nodeID), Redis engine at \(endpoint.options.host):\(endpoint.options.port), \(endpoint.credentials.map { "authenticating as \($0)" } ?? "no AUTH")")
        case .failure(let error):
            throw ConfigurationError(line: 0, message: error.description)
        }
    }

    /// On the shard's thread, as its dispatcher is made: gives it its own Redis engine.
    static func attachCluster(_ configuration: BrokerConfiguration, _ endpoint: ClusterEndpoint, _ metrics: ClusterMetrics,
                              _ incarnation: ClusterIncarnation, _ dispatcher: ShardDispatcher, logger: Logger) {
        guard configuration.cluster.engine == .redis else { return }
        guard let (options, database, credentials) = endpoint.value else {
            return assertionFailure("the cluster endpoint is resolved before the shards start")
        }
        let engine: ClusterShardEngine
        switch configuration.cluster.redisMode {
        case .standalone:
            engine = RedisShardEngine(configuration: configuration.cluster, options: options, database: database, credentials: credentials,
                                      shardIndex: dispatcher.context.shardIndex, metrics: metrics,
                                      logger: logger.forShard(dispatcher.context.shardIndex), incarnation: incarnation)
        case .cluster:
            engine = RedisClusterShardEngine(configuration: configuration.cluster, options: options, credentials: credentials,
                                             shardIndex: dispatcher.context.shardIndex, metrics: metrics,
                                             logger: logger.forShard(dispatcher.context.shardIndex), incarnation: incarnation)
        }
        dispatcher.channels.attachCluster(engine, recoveryMaxMessages: configuration.cluster.recoveryMaxMessages)
        if dispatcher.context.shardIndex == 0 {
            receiveInbox(engine, nodeID: configuration.cluster.nodeID, broker: dispatcher.context.broker, worker: dispatcher.worker)
            let broker = dispatcher.context.broker
            engine.announceMembership(configuration.cluster.nodeID) { [unowned broker] node, incarnation in
                broker.deliverNodeDeath(node, incarnation: incarnation)
            }
        }
    }

    /// Hands the death of incarnation `incarnation` of node `node` (seen by shard 0's engine)
    /// to every shard: its channel engine, then its handler's `handleClusterNodeDied`. A shard
    /// whose inbox is full gets it on a later try (a task through shard 0's inbox, so never
    /// inside this call); only if shard 0's inbox is full too is it lost, with an error line.
    package func deliverNodeDeath(_ node: Int, incarnation: UInt64, toShards shards: [Int]? = nil) {
        var refused: [Int] = []
        for index in shards ?? Array(0..<shardCount) {
            switch onShard(index, { $0.channels.clusterNodeDied(node, incarnation: incarnation) }) {
            case .queued: break
            case .refused(.stopped): return
            case .refused: refused.append(index)
            }
        }
        guard !refused.isEmpty else { return }
        logger.warning("cluster: node \(node)'s death waits for room in the inbox of shards \(refused)")
        let retry = refused
        if execute(onShard: 0, { $0.broker.deliverNodeDeath(node, incarnation: incarnation, toShards: retry) }) != .queued {
            logger.error("cluster: node \(node)'s death was not delivered to shards \(refused) (inboxes full)")
        }
    }
}

/// A `send` or `close` for a socket of another node, as it travels to that node's inbox:
/// one operation byte (`t` text, `b` binary, `c` close), the socket id (8 bytes, big-endian),
/// then the payload, or for a close the code (2 bytes, big-endian) and the reason (UTF-8).
/// A `setToken` (`k`) carries a flag byte (0: no token, 1: the token follows) and the token.
/// A `copySubscriptions` for every node (`p`) carries no socket: the 8 bytes are the length
/// of `from`, then `from`, then `to`.
enum AddressedMessage: Equatable {
    case send(SocketMessage)
    case close(WebSocketCloseCode, String)
    case copySubscriptions(from: ChannelName, to: ChannelName)
    case setToken([UInt8]?)

    static func encodeCopy(from: ChannelName, to: ChannelName) -> [UInt8] {
        let length = UInt64(from.bytes.count)
        var out: [UInt8] = [UInt8(ascii: "p")]
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: length >> UInt64(shift))) }
        return out + from.bytes + to.bytes
    }

    func encode(to socketId: SocketID) -> [UInt8] {
        var out: [UInt8] = []
        func id() { for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: socketId.rawValue >> UInt64(shift))) } }
        switch self {
        case .send(.text(let text)):
            out.append(UInt8(ascii: "t")); id(); out += Array(text.utf8)
        case .send(.binary(let bytes)):
            out.append(UInt8(ascii: "b")); id(); out += bytes
        case .close(let code, let reason):
            out.append(UInt8(ascii: "c")); id()
            out += [UInt8(code.rawValue >> 8), UInt8(code.rawValue & 0xFF)] + Array(reason.utf8)
        case .copySubscriptions(let from, let to):
            return Self.encodeCopy(from: from, to: to)
        case .setToken(let token):
            out.append(UInt8(ascii: "k")); id()
            out += token.map { [1] + $0 } ?? [0]
        }
        return out
    }

    /// nil for bytes that are not an addressed message (counted by the caller, never trusted).
    static func decode(_ bytes: UnsafeRawBufferPointer) -> (SocketID, AddressedMessage)? {
        guard bytes.count >= 9 else { return nil }
        var raw: UInt64 = 0
        for i in 1...8 { raw = raw << 8 | UInt64(bytes[i]) }
        let id = SocketID(rawValue: raw)
        let rest = UnsafeRawBufferPointer(rebasing: bytes[9...])
        switch bytes[0] {
        case UInt8(ascii: "t"): return (id, .send(.text(String(decoding: rest, as: UTF8.self))))
        case UInt8(ascii: "b"): return (id, .send(.binary(Array(rest))))
        case UInt8(ascii: "k"):
            guard let flag = rest.first, flag <= 1, flag == 1 || rest.count == 1 else { return nil }
            return (id, .setToken(flag == 1 ? Array(rest.dropFirst()) : nil))
        case UInt8(ascii: "p"):
            guard raw <= UInt64(rest.count) else { return nil }
            let split = Int(raw)
            return (SocketID(rawValue: 0), .copySubscriptions(from: ChannelName(Array(rest[..<split])), to: ChannelName(Array(rest[split...]))))
        case UInt8(ascii: "c"):
            guard rest.count >= 2, let code = WebSocketCloseCode(rawValue: UInt16(rest[0]) << 8 | UInt16(rest[1])) else { return nil }
            return (id, .close(code, String(decoding: UnsafeRawBufferPointer(rebasing: rest[2...]), as: UTF8.self)))
        default: return nil
        }
    }
}

extension Broker {
    /// A socket id of another node (only in a cluster; on one node every id is local).
    func isRemote(_ socketId: SocketID) -> Bool {
        configuration.cluster.engine == .redis && socketId.node != configuration.cluster.nodeID
    }

    /// Sends an addressed message to the socket's node through Redis: from the calling shard
    /// (its own connection, so its messages to one socket keep their order) or, from any
    /// other thread, from the shard the id hashes to. Fail-fast: refused (`.full`) while Redis
    /// is unreachable; a message to a node that is gone is counted there and lost.
    func sendAddressed(_ socketId: SocketID, _ message: AddressedMessage) -> Enqueued {
        let bytes = message.encode(to: socketId)
        let node = socketId.node
        if let index = currentShardIndex {
            // On a shard: exact, from its own connection.
            let sent = dispatchers[index].channels.cluster?.sendToNode(node, bytes) ?? .unavailable
            return sent == .sent ? .queued : .refused(.full)
        }
        return onShard(Int(socketId.rawValue % UInt64(shardCount))) { _ = $0.channels.cluster?.sendToNode(node, bytes) }
    }

    /// Shard 0's engine receives the node's inbox and hands each message to its socket's shard.
    static func receiveInbox(_ engine: ClusterShardEngine, nodeID: Int, broker: Broker, worker: WorkerHandler) {
        engine.receiveNodeInbox(nodeID) { [unowned broker, weak worker] bytes in
            if bytes.first == protocolMessageOperation { return receiveProtocolMessage(bytes, worker: worker, broker: broker) }
            if bytes.first == RemoteSocketCall.requestOperation || bytes.first == RemoteSocketCall.answerOperation {
                if let request = RemoteSocketCall.decodeRequest(bytes) {
                    guard request.socket.node == nodeID else {
                        return broker.logger.warning("cluster: a call for node \(request.socket.node) in node \(nodeID)'s inbox was dropped")
                    }
                    return broker.serveRemoteCall(request)
                }
                if let answer = RemoteSocketCall.decodeAnswer(bytes) { return broker.receiveRemoteAnswer(answer) }
                return broker.logger.warning("cluster: a malformed remote call in node \(nodeID)'s inbox was dropped")
            }
            guard let (id, message) = AddressedMessage.decode(bytes) else {
                broker.logger.warning("cluster: a malformed addressed message in node \(nodeID)'s inbox was dropped")
                return
            }
            if case .copySubscriptions(let from, let to) = message { _ = broker.copyLocalSubscriptions(from: from, to: to); return }
            guard id.node == nodeID else {
                broker.logger.warning("cluster: an addressed message for node \(id.node) in node \(nodeID)'s inbox was dropped")
                return
            }
            switch message {
            case .send(let m): broker.send(id, m)
            case .close(let code, let reason): broker.close(id, code: code, reason: reason)
            case .setToken(let token): broker.setToken(id, token)
            case .copySubscriptions: break
            }
        }
    }
}

extension Broker {
    /// The cluster's nodes whose membership heartbeat has not expired (`cluster_node_ttl_ms`),
    /// ascending, asked of Redis through shard 0's connection. On one node (`cluster_engine =
    /// memory`): this node alone. Throws `.stopped` once the broker stops, `.inboxFull` when
    /// shard 0 refused the call, and `.clusterUnavailable` while Redis is unreachable.
    public func clusterMembers() async throws(BrokerError) -> [Int] {
        guard configuration.cluster.engine == .redis else { return [configuration.cluster.nodeID] }
        let dispatchers = dispatchers
        let result: Result<[Int], BrokerError> = await withCheckedContinuation { continuation in
            // Exactly one of: the engine's completion (it answers every query once, nil when
            // the connection is lost), or the refusal.
            group.shards[0].execute({ _ in
                guard let engine = dispatchers[0].channels.cluster else { return continuation.resume(returning: .failure(.clusterUnavailable)) }
                engine.members { members in
                    continuation.resume(returning: members.map { .success($0) } ?? .failure(.clusterUnavailable))
                }
            }, orElse: { why in continuation.resume(returning: .failure(why == .stopped ? .stopped : .inboxFull)) })
        }
        return try result.get()
    }
}

extension Broker {
    /// `copySubscriptions` in a cluster: one message to every node's inbox (through the
    /// calling shard's connection, or shard 0's from any other thread); each node then copies
    /// its own subscribers. Refused (`.full`) from a shard while Redis is unreachable.
    func copySubscriptionsOnEveryNode(from: ChannelName, to: ChannelName) -> Enqueued {
        let bytes = AddressedMessage.encodeCopy(from: from, to: to)
        if let index = currentShardIndex {
            let sent = dispatchers[index].channels.cluster?.sendToAllNodes(bytes) ?? .unavailable
            return sent == .sent ? .queued : .refused(.full)
        }
        return onShard(0) { _ = $0.channels.cluster?.sendToAllNodes(bytes) }
    }
}
