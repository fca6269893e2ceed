/// Your application's code, as in WSBroker's worker interface: HTTP requests, WebSocket
/// messages and closes. Every method has a default, so implement only what you need.
///
/// One instance exists per shard, made by the factory given to ``Broker/init(configuration:logger:handlerFactory:)``
/// on that shard's thread, and every method is called on that thread: per-shard handler state
/// needs no lock. Keep the ``ShardContext`` the factory receives; it is how the handler acts on
/// its own shard's sockets, synchronously and exactly. A handler must not block: work that
/// waits runs elsewhere (a Swift concurrency task) and comes back through the ``Broker`` or a
/// ``ResponseSlot``.
public protocol WorkerHandler: AnyObject {
    /// An HTTP request that no built-in route (health, metrics) took. Answer now
    /// (`.response`), later (`.deferred(context.deferResponse())`), or not at all
    /// (`.notHandled`: 404, or the next route of a router such as `RoutingWorkerHandler`).
    func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply
    /// Asked once a request's head is in, for requests with a body (before any built-in
    /// route): `.streamed` calls `handleHttpRequest` now, with the body to come through
    /// ``WorkerRequest/bodyStream`` (answer deferred; an answer written before the body was read
    /// closes the connection after it). Default `.buffered`: the whole body, as before.
    func bodyDelivery(for head: WorkerRequest, context: ShardContext) -> BodyDelivery
    /// A WebSocket upgrade request on a path routed to WebSocket. Default: accept.
    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision
    /// A complete text or binary message from a WebSocket client.
    ///
    /// Called by the default of the view method below, with the message as a value; a handler
    /// implements this one or that one.
    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?)
    /// A complete text or binary message from a WebSocket client, lent for the call: what the
    /// broker calls for every message. Its bytes are read in place, with no `String` or array
    /// made for it, and can be sent or published from there (``ShardContext``'s `send` and
    /// `publish` for a view); ``SocketMessageView/message`` makes a value to keep.
    ///
    /// Default: makes the ``SocketMessage`` and calls the method above, so a handler written
    /// against that one is unchanged. A handler that passes messages on to other handlers (a
    /// router) implements this one and forwards the view, so that handlers implementing either
    /// method receive them.
    func handleSocketMessage(_ message: borrowing SocketMessageView, socketId: SocketID, token: [UInt8]?)
    /// The WebSocket is closed, whatever the cause; called exactly once per accepted socket.
    func handleSocketClose(socketId: SocketID, token: [UInt8]?)
    /// With `cluster_engine = redis`: cluster node `node` died (crash, SIGKILL, partition
    /// longer than `cluster_node_ttl_ms`, or a restart), so its sockets are gone; called once
    /// per death on every shard of every live node, within `cluster_node_ttl_ms +
    /// cluster_heartbeat_ms` of it. Drop what refers to its sockets (`SocketID.node == node`).
    /// `node` is this node's own id when the others declared it dead while it lived: they
    /// dropped its sockets. Default: nothing.
    func handleClusterNodeDied(_ node: Int)
    /// The same event with the incarnation that died: a random number each process start
    /// picks for its node, picked again when the others declared the node dead while it lived.
    /// A handler that keeps per-node state in Redis tags it with the writer's incarnation and
    /// removes only what `incarnation` wrote, so a clean-up that runs after the node came back
    /// (restarted, or heard of its own death) leaves what the new incarnation wrote.
    ///
    /// Default: calls the method above, so a handler written against that one is unchanged. A
    /// handler that passes events on (a router) implements this one and forwards it.
    func handleClusterNodeDied(_ node: Int, incarnation: UInt64)
    /// With `cluster_engine = redis`: this shard's connection to Redis was established, at
    /// start or after a loss (in Redis Cluster mode: its link to one master). What the handler
    /// keeps in Redis through `ShardContext.clusterCommand` may be gone (Redis restarted empty)
    /// or stale (writes lost in the cut): write it again. Called on the shard, possibly several
    /// times in a row. Default: nothing.
    func handleClusterConnected()
    /// With `cluster_engine = redis`: this shard's Redis backlog drained after the shard
    /// refused a command for lack of room. `ShardContext.clusterCommand` answers nil at once
    /// both when Redis is unreachable and when `cluster_max_pending_publishes` commands (or
    /// the connection's send queue) already wait for Redis; only the first ends in a reconnect
    /// and `handleClusterConnected`. This is the second's end: the backlog fell to half the
    /// bound. Send again what was kept for lack of room. Called on the shard, once per refusal
    /// streak (counted in `switchboard_cluster_backlogs_drained_total`). Default: nothing.
    func handleClusterBacklogDrained()
    /// With `cluster_engine = redis`: this shard's subscribers of `channel` (`subscribers`)
    /// did not receive some of its messages, because the shard's Redis connection was lost and
    /// re-established (Redis restarted, a network cut, a slow shard dropped by Redis) or
    /// because a gap showed in the channel's offsets.
    ///
    /// - `recovered: true`: the missed messages were read back from the channel's history in
    ///   Redis and are delivered right after this call, in order, before any newer message,
    ///   without duplicates. Nothing is lost; most handlers ignore it.
    /// - `recovered: false`: they are lost for good: the channel's epoch changed (Redis lost
    ///   the stream: restarted empty, the keys expired after `cluster_history_ttl_ms`, a
    ///   flush), the history no longer reaches back (`cluster_history_size`), more were missed
    ///   than `cluster_recovery_max_messages`, or Redis refused the read. Newer messages follow
    ///   as usual. Tell the clients to reload their state (as a broadcaster answers
    ///   `recovered: false`).
    ///
    /// Called on the subscribers' shard, once per gap and shard. Default: nothing.
    func handleChannelGap(_ channel: ChannelName, recovered: Bool, subscribers: [SocketID])
}

extension WorkerHandler {
    public func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply { .notHandled }
    public func bodyDelivery(for head: WorkerRequest, context: ShardContext) -> BodyDelivery { .buffered }
    public func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision { .accept() }
    public func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {}
    public func handleSocketMessage(_ message: borrowing SocketMessageView, socketId: SocketID, token: [UInt8]?) {
        handleSocketMessage(message.message, socketId: socketId, token: token)
    }
    public func handleSocketClose(socketId: SocketID, token: [UInt8]?) {}
    public func handleClusterNodeDied(_ node: Int) {}
    public func handleClusterNodeDied(_ node: Int, incarnation: UInt64) { handleClusterNodeDied(node) }
    public func handleClusterConnected() {}
    public func handleClusterBacklogDrained() {}
    public func handleChannelGap(_ channel: ChannelName, recovered: Bool, subscribers: [SocketID]) {}
}

/// A handler that answers every HTTP request with 404 (the built-in routes still work).
public final class DefaultWorkerHandler: WorkerHandler {
    public init() {}
}
