import SwitchboardIO
import SwitchboardWebSocket

/// A handler's view of its own shard: exact, synchronous operations on this shard's sockets
/// and channels.
///
/// Given to the handler factory and kept by the handler. Not `Sendable`: it belongs to its
/// shard's thread, and every operation asserts so in debug builds. From any other thread (or a
/// task), use ``broker`` (``Broker``), or ``Broker/execute(onShard:_:)`` to get back here.
public final class ShardContext {
    /// The shard's index, 0..<shardCount.
    public let shardIndex: Int
    public let shardCount: Int
    /// The any-thread API (not retained: the broker owns its shards and their handlers).
    public unowned let broker: Broker
    unowned(unsafe) let shard: Shard
    unowned(unsafe) let webSockets: WebSocketConnectionDriver
    /// The same driver for ``send(_:_:)``, called once per message a handler sends: through
    /// `_withUnsafeGuaranteedRef` the call takes no retain and release of the driver, which the
    /// `unowned(unsafe)` reference costs around each call (issue 16 item 3). The shard owns the
    /// driver (through its dispatcher, which also owns this context) and outlives both.
    private let webSocketsReference: Unmanaged<WebSocketConnectionDriver>
    unowned(unsafe) let channels: ChannelEngine
    unowned(unsafe) let http: HTTPConnectionDriver

    init(broker: Broker, shard: Shard, shardCount: Int, webSockets: WebSocketConnectionDriver, channels: ChannelEngine,
         http: HTTPConnectionDriver) {
        self.broker = broker
        self.shard = shard
        shardIndex = shard.index
        self.shardCount = shardCount
        self.webSockets = webSockets
        webSocketsReference = .passUnretained(webSockets)
        self.channels = channels
        self.http = http
    }

    /// Whether the calling thread is this shard's thread.
    public var isOnShard: Bool { shard.isCurrent }

    /// Traps in debug builds when called off this shard's thread.
    @inline(__always)
    public func assertOnShard(file: StaticString = #fileID, line: UInt = #line) {
        assert(shard.isCurrent, "ShardContext of shard \(shardIndex) used from another thread", file: file, line: line)
    }

    /// Whether `socketId` belongs to this shard (its sockets are the ones this context acts on).
    public func isLocal(_ socketId: SocketID) -> Bool { socketId.shard == shardIndex }

    // MARK: - Sockets

    /// Sends a message to a WebSocket of this shard. Exact: the frame is in the socket's queue
    /// when this returns `.queued`.
    @discardableResult
    public func send(_ socketId: SocketID, _ message: SocketMessage) -> LocalSendResult {
        assertOnShard()
        guard isLocal(socketId) else { return .notLocal }
        return webSocketsReference._withUnsafeGuaranteedRef { $0.send(socketId, message) }
    }

    /// Sends a message lent to the handler (the one it is handling, or any other view) to a
    /// WebSocket of this shard: its bytes go straight into the frame, as they are (a text
    /// message stays text, a binary one binary). Otherwise as `send(_:_:)` for a ``SocketMessage``.
    @discardableResult
    public func send(_ socketId: SocketID, _ message: borrowing SocketMessageView) -> LocalSendResult {
        assertOnShard()
        guard isLocal(socketId) else { return .notLocal }
        // A view of a value (a binary message assembled from fragments, or one made by a router) is sent
        // as that value; a lent one from its bytes. Read here, outside the closure: with the
        // value's branch inside it, the closure was a call of its own per message.
        guard message.isLent else { return send(socketId, message.message) }
        let opcode: WebSocketOpcode = message.isText ? .text : .binary
        let payload = message.lent
        return webSocketsReference._withUnsafeGuaranteedRef { $0.send(socketId, opcode, payload) }
    }

    /// Starts a close handshake with the client (a close frame; the connection ends when the
    /// client answers or the request timeout passes). False when the socket is stale, not a
    /// WebSocket, not local, or already closing.
    @discardableResult
    public func close(_ socketId: SocketID, code: WebSocketCloseCode = .normalClosure, reason: String = "") -> Bool {
        assertOnShard()
        guard isLocal(socketId) else { return false }
        return webSockets.close(socketId, code: code, reason: reason)
    }

    /// Attaches a token to a WebSocket (passed back with each message and the close). False
    /// when the socket is stale, not a WebSocket, or not local.
    @discardableResult
    public func setToken(_ socketId: SocketID, _ token: [UInt8]?) -> Bool {
        assertOnShard()
        guard isLocal(socketId), let session = webSockets.table.webSocket(socketId) else { return false }
        session.token = token
        return true
    }

    // MARK: - HTTP

    /// A slot to answer the HTTP request being handled later, from any thread or task: return
    /// `.deferred(slot)` from `handleHttpRequest` and call `slot.respond(_:)` when the answer
    /// is ready. Only inside `handleHttpRequest`; calling it twice gives the same slot.
    public func deferResponse() -> ResponseSlot {
        assertOnShard()
        return http.deferResponse()
    }

    // MARK: - Channels

    /// Subscribes a socket of this shard. Exact: every message the channel's owner orders after
    /// this returns reaches the socket. Allowed in `handleUpgrade` (before the 101 is sent).
    public func subscribe(_ socketId: SocketID, _ channel: ChannelName) -> SubscribeResult {
        assertOnShard()
        guard isLocal(socketId) else { return .notLocal }
        return channels.subscribe(socketId, to: channel)
    }

    /// Unsubscribes; false when the socket was not subscribed (or is stale or not local).
    @discardableResult
    public func unsubscribe(_ socketId: SocketID, _ channel: ChannelName) -> Bool {
        assertOnShard()
        guard isLocal(socketId) else { return false }
        return channels.unsubscribe(socketId, from: channel)
    }

    /// The channels a socket of this shard is subscribed to (empty when stale or not local).
    public func subscriptions(of socketId: SocketID) -> Set<ChannelName> {
        assertOnShard()
        guard isLocal(socketId) else { return [] }
        return channels.subscriptions(of: socketId)
    }

    /// Subscribers of `channel` on this shard.
    public func localSubscriberCount(_ channel: ChannelName) -> Int {
        assertOnShard()
        return channels.localSubscriberCount(channel)
    }

    /// Subscribes this shard's subscribers of `from` to `to`; returns how many were added
    /// (``Broker/copySubscriptions(from:to:)`` does it on every shard).
    @discardableResult
    public func copyLocalSubscriptions(from: ChannelName, to: ChannelName) -> Int {
        assertOnShard()
        return channels.copyLocalSubscriptions(from: from, to: to)
    }

    /// Position (epoch and offset) of the last message of `channel` delivered on this shard;
    /// nil when no socket of this shard is subscribed to it, or nothing arrived since one did.
    /// See ``ChannelPosition`` for what a change of epoch means.
    public func lastPosition(of channel: ChannelName) -> ChannelPosition? {
        assertOnShard()
        return channels.lastPosition(of: channel)
    }

    /// Sends a message to every subscriber of a channel, encoded once as one frame shared by
    /// all of them. Every subscriber sees the channel's messages in the same order (its owner
    /// shard's). `.refused` when the ring to the owner is full or, on the owner, when its
    /// delivery backlog is at `max_pending_deliveries` (backpressure: try again later).
    @discardableResult
    public func publish(_ channel: ChannelName, _ message: SocketMessage) -> PublishResult {
        assertOnShard()
        return channels.publish(channel, message: message)
    }

    /// Publishes a message lent to the handler: its bytes are encoded into the channel's one
    /// frame as they are, with no `String` or array made for them. Otherwise as
    /// `publish(_:_:)` for a ``SocketMessage``.
    @discardableResult
    public func publish(_ channel: ChannelName, _ message: borrowing SocketMessageView) -> PublishResult {
        assertOnShard()
        guard message.isLent else { return publish(channel, message.message) }
        return channels.publish(channel, message.isText ? .text : .binary, message.lent)
    }
}
