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
