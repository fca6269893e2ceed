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
    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?)
    /// The WebSocket is closed, whatever the cause; called exactly once per accepted socket.
    func handleSocketClose(socketId: SocketID, token: [UInt8]?)
    /// With `cluster_engine = redis`: cluster node `node` died (crash, SIGKILL, partition
    /// longer than `cluster_node_ttl_ms`, or a restart), so its sockets are gone; called once
    /// per death on every shard of every live node, within `cluster_node_ttl_ms +
    /// cluster_heartbeat_ms` of it. Drop what refers to its sockets (`SocketID.node == node`).
    /// `node` is this node's own id when the others declared it dead while it lived: they
    /// dropped its sockets. Default: nothing.
    func handleClusterNodeDied(_ node: Int)
}

extension WorkerHandler {
    public func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply { .notHandled }
    public func bodyDelivery(for head: WorkerRequest, context: ShardContext) -> BodyDelivery { .buffered }
    public func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision { .accept() }
    public func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {}
    public func handleSocketClose(socketId: SocketID, token: [UInt8]?) {}
    public func handleClusterNodeDied(_ node: Int) {}
}

/// A handler that answers every HTTP request with 404 (the built-in routes still work).
public final class DefaultWorkerHandler: WorkerHandler {
    public init() {}
}
