import SwitchboardCluster
import SwitchboardRESP

// # Cluster hooks for the protocols (issue 13, package-only API)
//
// The protocols in SwitchboardProtocols keep their state share-nothing per shard and talk
// between shards by posting closures. Across nodes a closure cannot travel, so they get three
// hooks, all on the calling shard's thread and through that shard's own Redis connection:
//
// - `sendToClusterNode`: an opaque protocol message to one node's inbox. FIFO per (sending
//   shard, receiving node): one connection publishes in order, Redis delivers a publisher's
//   messages in order, the receiving node's shard 0 reads its inbox on one connection and
//   hands each message to its worker in arrival order. Fail-fast like every cluster publish.
// - `ClusterMessageReceiver`: shard 0's worker gets those messages (tagged by protocol).
// - `clusterCommand`: one Redis command for cluster-wide state (connection-broker roles).
// - Protocol channels (`ClusterChannel` in a space of the protocol's, the broadcaster's): the
//   engine's own channel mechanism (interest, one script for offset, history and fan-out, one
//   order per channel), with the protocol's history limits and the position handed back to the
//   publisher; each interested shard receives them itself (`ClusterChannelReceiver`).
//
// Not public: the handler API stays what it is on one node; only this package's protocols
// use these.

/// A worker that takes protocol messages from other nodes. Called on shard 0 of this node, in
/// the order the node's inbox received them; `bytes` is valid only during the call.
package protocol ClusterMessageReceiver: AnyObject {
    /// A message sent with `ShardContext.sendToClusterNode(_:tag:_:)`; false when `tag` is
    /// not this receiver's (a router asks its routes in turn).
    func receiveClusterMessage(tag: UInt8, _ bytes: UnsafeRawBufferPointer) -> Bool
}

/// The first byte of a protocol message in a node inbox (the addressed messages use t, b, c,
/// k and p), followed by the protocol's tag byte.
let protocolMessageOperation = UInt8(ascii: "x")

extension ShardContext {
    /// This node's number when the cluster runs over Redis (`cluster_engine = redis`); nil on
    /// a single node, where every socket, connection and node id is local.
    package var clusterNodeID: Int? {
        broker.configuration.cluster.engine == .redis ? broker.configuration.cluster.nodeID : nil
    }

    /// This process's incarnation of its node (`ClusterIncarnation`), the tag of what a
    /// protocol writes to Redis for it: the clean-up after a death removes only what the dead
    /// incarnation wrote. It changes when the others declared this node dead while it lived;
    /// the shards hear that as `handleClusterNodeDied` with this node's id and the old value.
    package var clusterIncarnation: UInt64 { broker.clusterIncarnation.current }

    /// Sends a protocol message to node `node`'s inbox through this shard's Redis connection.
    /// False when refused at once (no Redis connection, or this shard's pending publishes at
    /// `cluster_max_pending_publishes`). True means "written to Redis": a message to a node
    /// that is not up is lost there (counted in `switchboard_cluster_addressed_undelivered_total`).
    package func sendToClusterNode(_ node: Int, tag: UInt8, _ message: [UInt8]) -> Bool {
        assertOnShard()
        guard let cluster = channels.cluster else { return false }
        return cluster.sendToNode(node, [protocolMessageOperation, tag] + message) == .sent
    }

    /// Runs one Redis command through this shard's connection; `completion` runs on this
    /// shard's thread exactly once, with nil when Redis is unreachable (also at once, inside
    /// this call) or the connection was lost before the reply.
    package func clusterCommand(_ arguments: [[UInt8]], _ completion: @escaping (RESPValue?) -> Void) {
        assertOnShard()
        guard let cluster = channels.cluster else { return completion(nil) }
        cluster.command(arguments, completion: completion)
    }
}

extension Broker {
    /// Shard 0's inbox handler for a protocol message: its worker takes it, or it is dropped
    /// with a warning (a node running other protocols than the sender).
    static func receiveProtocolMessage(_ bytes: UnsafeRawBufferPointer, worker: WorkerHandler?, broker: Broker) {
        guard bytes.count >= 2, let receiver = worker as? ClusterMessageReceiver,
              receiver.receiveClusterMessage(tag: bytes[1], UnsafeRawBufferPointer(rebasing: bytes[2...])) else {
            broker.logger.warning("cluster: a protocol message nobody on this node takes was dropped")
            return
        }
    }
}

extension ShardContext {
    /// `sendToClusterNode` for a message whose sender waits for an answer: also learns whether
    /// a node took it. False when refused at once (`receivers` is then never called); else
    /// `receivers` runs later on this shard with the number of nodes subscribed to that inbox
    /// (0: node `node` is not up, no answer will come), or nil when the Redis connection was
    /// lost first (delivered or not: unknown). Same connection as `sendToClusterNode`, so the
    /// two keep one order.
    package func sendToClusterNode(_ node: Int, tag: UInt8, _ message: [UInt8], receivers: @escaping (Int?) -> Void) -> Bool {
        assertOnShard()
        guard let cluster = channels.cluster else { return false }
        return cluster.sendToNode(node, [protocolMessageOperation, tag] + message, receivers: receivers) == .sent
    }
}

/// A worker that takes the messages of its protocol's cluster channels. Called on every shard
/// interested in the channel (`ShardContext.clusterInterest`), in the channel's cluster-wide
/// order; `payload` is valid only during the call.
package protocol ClusterChannelReceiver: AnyObject {
    /// False when `channel`'s space is not this receiver's (a router asks its routes in turn).
    func receiveClusterChannelMessage(_ channel: ClusterChannel, _ payload: UnsafeRawBufferPointer, position: ClusterPosition) -> Bool
}

extension ShardContext {
    /// Whether this shard receives `channel` (a protocol's): say true with the channel's first
    /// subscriber on this shard and false with its last leaving, so the shard is subscribed in
    /// Redis only while it needs the traffic. Nothing on a single node.
    package func clusterInterest(_ channel: ClusterChannel, _ interested: Bool) {
        assertOnShard()
        precondition(channel.space != nil, "the broker's channels follow their subscribers by themselves")
        guard let cluster = channels.cluster else { return }
        if interested { cluster.interestAdded(channel) } else { cluster.interestRemoved(channel) }
    }

    /// Publishes to a protocol channel through the engine (one script: next offset, history
    /// kept as `history` says, fan-out to every interested shard of every node). False when
    /// refused at once (`answer` then never runs); else `answer` runs later on this shard with
    /// the message's position, or nil when Redis refused it or the connection was lost first.
    package func clusterPublish(_ channel: ClusterChannel, _ payload: [UInt8], history: ClusterHistoryLimits,
                                answer: @escaping (ClusterPosition?) -> Void) -> Bool {
        assertOnShard()
        precondition(channel.space != nil, "Broker.publish carries the broker's channels")
        guard let cluster = channels.cluster else { return false }
        return payload.withUnsafeBytes { cluster.publish(channel, kind: .binary, payload: $0, history: history, answer: answer) } == .sent
    }

    /// Reads a protocol channel's stream (`ClusterShardEngine.readStream`). False when refused
    /// at once (`completion` then never runs); else `completion` runs later on this shard.
    package func clusterReadStream(_ channel: ClusterChannel, ttlMilliseconds: Int, _ completion: @escaping (ClusterStream?) -> Void) -> Bool {
        assertOnShard()
        guard let cluster = channels.cluster else { return false }
        var returned = false
        var refusedAtOnce = false
        cluster.readStream(channel, ttlMilliseconds: ttlMilliseconds) { stream in
            // The engine answers nil inside the call when it cannot send: a refusal.
            guard returned else { refusedAtOnce = true; return }
            completion(stream)
        }
        returned = true
        return !refusedAtOnce
    }
}

extension Broker {
    /// A protocol channel's message on an interested shard: its worker takes it, or it is
    /// dropped (no handler of this space here: the interest came from elsewhere, which the
    /// protocols never do).
    static func receiveProtocolChannelMessage(_ channel: ClusterChannel, _ payload: UnsafeRawBufferPointer, _ position: ClusterPosition,
                                              worker: WorkerHandler?) {
        let taken = (worker as? ClusterChannelReceiver)?.receiveClusterChannelMessage(channel, payload, position: position) ?? false
        assert(taken, "a protocol channel message nobody on this shard takes")
    }
}
