import SwitchboardIO
import SwitchboardRESP

/// Where a cluster-wide channel message stands: the channel stream's incarnation (`epoch`)
/// and the message's number in it (`offset`, from 1), assigned by Redis, the same on every node.
package struct ClusterPosition: Sendable, Hashable {
    package let epoch: UInt64
    package let offset: UInt64

    package init(epoch: UInt64, offset: UInt64) {
        self.epoch = epoch
        self.offset = offset
    }
}

/// A WebSocket message's kind, carried with it through the cluster (one byte on the wire).
package enum ClusterMessageKind: UInt8, Sendable {
    case text = 0x74    // "t"
    case binary = 0x62  // "b"
}

/// What a cluster publish did. Fail-fast: nothing waits in an unbounded queue.
package enum ClusterPublishResult: Sendable, Equatable {
    /// Written to Redis (its script orders and fans it out).
    case sent
    /// Not connected to Redis (the outage is counted in
    /// `switchboard_cluster_publishes_unavailable_total`).
    case unavailable
    /// `cluster_max_pending_publishes` publishes of this shard await Redis's answer
    /// (`switchboard_cluster_publishes_over_limit_total`).
    case overLimit
}

/// One message of a channel's history in Redis, read back for recovery.
package struct ClusterHistoryEntry: Sendable, Equatable {
    package let position: ClusterPosition
    package let kind: ClusterMessageKind
    package let payload: [UInt8]

    package init(position: ClusterPosition, kind: ClusterMessageKind, payload: [UInt8]) {
        self.position = position
        self.kind = kind
        self.payload = payload
    }
}

/// What a read of a channel's history after a position found (`ClusterShardEngine.readHistory`).
package enum ClusterHistoryRead: Sendable, Equatable {
    /// Every message after the position up to the stream's last, in offset order (empty: none
    /// was missed). Same epoch: the stream is the one the position belongs to.
    case messages([ClusterHistoryEntry])
    /// The missed messages cannot be given back.
    case lost(ClusterHistoryLoss)
    /// Not connected to Redis, or the connection was lost before the answer.
    case unavailable
}

/// Why a channel's missed messages cannot be recovered.
package enum ClusterHistoryLoss: Sendable, Equatable {
    /// Redis has another epoch for the channel, or none: the stream the position belongs to is
    /// gone (Redis restarted empty, the keys expired, a flush).
    case epochChanged
    /// The history no longer reaches back to the first missed message (`cluster_history_size`).
    case trimmed
    /// More messages were missed than `cluster_recovery_max_messages`.
    case overLimit
    /// Redis refused the read or answered something else (logged).
    case failed
}

/// Which engine carries channels between nodes.
public enum ClusterEngineKind: String, Sendable {
    /// One node: channels live in the process (the cross-shard fabric), no Redis.
    case memory
    /// Several nodes over one Redis server: every shard keeps its own Redis connection.
    case redis
}

/// What a shard's cluster engine hands back. Shard thread only.
package protocol ClusterEngineDelegate: AnyObject {
    /// A channel message from the cluster, to deliver to this shard's subscribers. `payload` is
    /// valid only during the call.
    /// A broker channel's message goes to the shard's subscribers; a protocol channel's
    /// (`ClusterChannel.space`) to the protocol's handler on this shard.
    func clusterDeliver(channel: ClusterChannel, kind: ClusterMessageKind, payload: UnsafeRawBufferPointer, position: ClusterPosition)
    /// Node `node` died: its heartbeat expired (crash, SIGKILL, partition) or it restarted (a
    /// new incarnation), so everything it owned (its sockets, their registrations) is gone.
    /// Delivered once per death on every shard of every live node (the announcing shard's
    /// engine detects it through `announceMembership`'s `onNodeDied`, the broker hands it to
    /// each shard), within `cluster_node_ttl_ms + cluster_heartbeat_ms` of the death. `node`
    /// is this node's own id when the others declared it dead while it lived (paused, or cut off
    /// from Redis, longer than its TTL): they have dropped its sockets.
    /// `incarnation` is the incarnation that died (`ClusterIncarnation`): state in Redis tagged
    /// with it goes; state a later incarnation of the node wrote stays.
    func clusterNodeDied(_ node: Int, incarnation: UInt64)
    /// The connection carrying `channels`' subscriptions was (re)established and they were
    /// subscribed again: messages published meanwhile were not received. The delegate may
    /// `readHistory` of each: the read goes on the same connection after the subscriptions, so
    /// its answer splits the stream exactly (every message delivered before the answer is in
    /// it, every message after it is newer).
    /// Protocol channels (`ClusterChannel.space`) are listed too; their protocol decides.
    func clusterResubscribed(_ channels: [ClusterChannel])
    /// The shard's connection to Redis (in Redis Cluster mode: to one master) was established,
    /// first or again. What the shard's protocols keep in Redis may be gone meanwhile (Redis
    /// restarted empty, or lost writes during the cut): they write it again.
    func clusterConnected()
    /// The shard refused a publish, addressed message or command at once because its Redis
    /// backlog was full (`cluster_max_pending_publishes`, or the connection's send queue), and
    /// the backlog has since drained to half the bound, without a reconnect. What a protocol
    /// kept for lack of room may go now: a full queue alone never brings `clusterConnected`.
    func clusterBacklogDrained()
}

/// One shard's part of a multi-node engine: the shard publishes through it, tells it which
/// channels have local subscribers (interest), and gets every message of those channels back
/// through its delegate, in the cluster-wide order. Shard thread only.
///
/// The in-memory engine (`ClusterEngineKind.memory`) has no object: a single node orders
/// channels with its cross-shard fabric, as before clusters existed.
package protocol ClusterShardEngine: AnyObject {
    var delegate: ClusterEngineDelegate? { get set }
    /// The shard's cluster counters (recovery and remote calls count there too).
    var metrics: ClusterMetrics { get }
    /// Starts the engine on its shard's thread (opens connections).
    func start(on shard: Shard)
    /// Publishes a message to every subscriber of `channel` on every node (this one included:
    /// local subscribers get it back through the delegate, in the same order as everyone).
    /// `history`: what Redis keeps (nil: `cluster_history_size`, `cluster_history_ttl_ms`).
    /// `answer` (when given) runs later on this shard, exactly once, with the position Redis
    /// gave the message, or nil when Redis refused it or the connection was lost first; it
    /// never runs when the publish is refused at once (the result says so).
    func publish(_ channel: ClusterChannel, kind: ClusterMessageKind, payload: UnsafeRawBufferPointer,
                 history: ClusterHistoryLimits?, answer: ((ClusterPosition?) -> Void)?) -> ClusterPublishResult
    /// The first local subscriber of `channel` arrived on this shard: the shard subscribes to
    /// it in Redis (only while it has local subscribers, so traffic it does not need never
    /// reaches it).
    func interestAdded(_ channel: ClusterChannel)
    /// The last local subscriber of `channel` left this shard: it unsubscribes in Redis.
    func interestRemoved(_ channel: ClusterChannel)
    /// Reads `channel`'s stream (epoch, last offset, history) in one script; a channel Redis
    /// has no epoch for gets one now (offset 0, kept `ttlMilliseconds`), so the next publish
    /// continues it. Sent on the connection that carries the channel's subscription, after any
    /// (un)subscribe asked before: a message ordered after the read reaches a shard that was
    /// interested when it asked. `completion` runs on this shard exactly once: nil when Redis
    /// is unreachable (then inside this call), refused it, or the connection was lost.
    func readStream(_ channel: ClusterChannel, ttlMilliseconds: Int, completion: @escaping (ClusterStream?) -> Void)
    /// Sends an addressed message (a `send` or `close` for one of its sockets) to node `node`'s
    /// inbox. Fail-fast like `publish`; a message to a node that is not up is counted
    /// (`switchboard_cluster_addressed_undelivered_total`) and lost.
    func sendToNode(_ node: Int, _ message: [UInt8]) -> ClusterPublishResult
    /// `sendToNode` for a message whose sender waits for an answer: `.sent`, then `receivers`
    /// runs later on this shard with the number of nodes that took it (0: node `node` is not
    /// up), or nil when the connection was lost first. Refused at once like `sendToNode`
    /// (`receivers` then never runs). Same connection as `sendToNode`: one order.
    func sendToNode(_ node: Int, _ message: [UInt8], receivers: @escaping (Int?) -> Void) -> ClusterPublishResult
    /// Sends a message to every node's inbox (this one included), e.g. a `copySubscriptions`.
    func sendToAllNodes(_ message: [UInt8]) -> ClusterPublishResult
    /// Makes this shard receive its node's inbox and the all-nodes inbox (one shard per node
    /// does), handing each message to `handler`.
    func receiveNodeInbox(_ node: Int, handler: @escaping (UnsafeRawBufferPointer) -> Void)
    /// Makes this shard announce node `node` as a member (one shard per node does): a
    /// heartbeat every `cluster_heartbeat_ms`, valid for `cluster_node_ttl_ms`. Each
    /// heartbeat's answer lists the live members; `onNodeDied` runs on this shard for each node
    /// that died since (see `ClusterEngineDelegate.clusterNodeDied`).
    func announceMembership(_ node: Int, onNodeDied: @escaping (Int, UInt64) -> Void)
    /// Graceful stop (the shard drains; the announcing shard does it): the node leaves the
    /// membership at once and the others hear its death (`onNodeDied`) as soon as Redis relays
    /// the announcement, not after `cluster_node_ttl_ms`. The connection closes once that is
    /// written; nothing more goes to Redis from this engine. No-op without a membership or
    /// without a connection (the node then expires as after a crash).
    func leaveMembership()
    /// The nodes whose heartbeat has not expired, ascending; nil when Redis is unreachable.
    /// `completion` runs on the shard's thread, exactly once.
    func members(_ completion: @escaping ([Int]?) -> Void)
    /// Reads `channel`'s history after `position` (recovery): on the connection that carries
    /// the channel's subscription, so the answer comes in order with its messages. At most
    /// `maxMessages` are read (more missed: `.lost(.overLimit)`). `completion` runs on the
    /// shard's thread exactly once (at once with `.unavailable` when not connected). Not bounded
    /// by `cluster_max_pending_publishes`: at most one read per channel with local subscribers
    /// is in flight (the caller's rule), so `max_channels_per_shard` bounds them. For the
    /// broker's channels (gap recovery, bounded and read-only); a protocol reads its channel's
    /// whole stream with `readStream` instead.
    func readHistory(_ channel: ClusterChannel, after position: ClusterPosition, maxMessages: Int,
                     completion: @escaping (ClusterHistoryRead) -> Void)
    /// The shard's tick (heartbeats).
    func tick(nowMilliseconds: Int64)
    /// Runs one Redis command for a protocol's cluster-wide state (connection-broker roles:
    /// `ClusterProtocolHooks.swift` in Switchboard). `completion` runs on the shard's thread
    /// exactly once: the reply, or nil when Redis is unreachable or the connection was lost.
    /// Bounded like publishes (`cluster_max_pending_publishes`): nil at once beyond it.
    func command(_ arguments: [[UInt8]], completion: @escaping (RESPValue?) -> Void)
}

extension ClusterShardEngine {
    /// A broker channel's publish, with the engine's history settings and no answer.
    package func publish(channel: [UInt8], kind: ClusterMessageKind, payload: UnsafeRawBufferPointer) -> ClusterPublishResult {
        publish(.broker(channel), kind: kind, payload: payload, history: nil, answer: nil)
    }

    package func interestAdded(_ channel: [UInt8]) { interestAdded(.broker(channel)) }
    package func interestRemoved(_ channel: [UInt8]) { interestRemoved(.broker(channel)) }
}
