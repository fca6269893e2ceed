import Foundation
import Synchronization
import SwitchboardWebSocket

/// Client SDK for the connection broker: connect with a role, discover peers by role, open
/// channels and exchange confirmed JSON messages over them.
///
/// A channel's payloads arrive through its bounded ``BrokerChannel/messages`` sequence;
/// `onMessage` is a task consuming it (one per channel: a channel's payloads reach it one at a
/// time, in order). The connection-level callbacks (`onIncomingChannel`, `onConnected`,
/// `onDisconnected`, `onReconnected`) run one at a time, in protocol order, on a private serial
/// task owned by the client; a channel's `onClosed`, and every callback queued after it
/// (`onDisconnected` included), follows that channel's last `onMessage`. A connected client
/// keeps itself alive until `disconnect()` or until the connection ends.
///
/// ```swift
/// let client = BrokerClient(url: "ws://localhost:3004")
/// client.onIncomingChannel = { channel in
///     channel.onMessage = { payload in print("from \(channel.peerId): \(payload)") }
/// }
/// try await client.connect(role: "my-role")
/// for id in try await client.listByRole("other-role") {
///     let channel = try await client.openChannel(id)
///     try await channel.send(["type": "greeting", "message": "Hello!"])  // awaits the broker's confirmation
///     try await channel.close()
/// }
/// await client.disconnect()
/// ```
///
/// Messages on the wire are JSON text frames; requests carry `id` (1, 2, 3... per client, never
/// reused across reconnects) and are matched to replies by `replyTo`. Only `ws://` URLs.
public final class BrokerClient: Sendable {
    enum Phase: Sendable, Equatable { case idle, connecting, connected, reconnecting }

    enum PendingKind: Sendable {
        case plain(expect: String)
        case register(role: String, isReconnect: Bool)
        case open(targetId: String)
        case close(channelId: String)
    }

    enum Reply: Sendable {
        case message([String: JSONValue])
        case channel(BrokerChannel)
    }

    struct Pending: Sendable {
        let continuation: CheckedContinuation<Reply, any Error>
        let kind: PendingKind
        let connection: ObjectIdentifier
        let timeoutTask: Task<Void, Never>
    }

    struct Callbacks: Sendable {
        var onIncomingChannel: (@Sendable (BrokerChannel) -> Void)?
        var onConnected: (@Sendable () -> Void)?
        var onDisconnected: (@Sendable () -> Void)?
        var onReconnected: (@Sendable (String) -> Void)?
    }

    struct State: Sendable {
        var phase: Phase = .idle
        var connection: ClientWebSocket?
        var nextId = 1
        var pending: [Int: Pending] = [:]
        var myId: String?
        var role: String?
        var channels: [String: BrokerChannel] = [:]
        var userClosed = false
        var reconnectTask: Task<Void, Never>?
        var reconnectCount = 0
    }

    public let url: String
    public let options: BrokerClientOptions
    let logger: (any BrokerClientLogger)?
    let callbackQueue = CallbackQueue()
    private let state = Mutex(State())
    private let callbacks = Mutex(Callbacks())

    public init(url: String, logger: (any BrokerClientLogger)? = nil, options: BrokerClientOptions = .init()) {
        self.url = url
        self.logger = logger
        self.options = options
    }

    // MARK: Public API

    /// The connection id the broker assigned at registration (a new one after each reconnect);
    /// nil while not connected.
    public var myId: String? { state.withLock { $0.myId } }

    /// TS-SDK style accessor for `myId`.
    public func getMyId() -> String? { myId }

    /// True while registered with the broker.
    public var isConnected: Bool { state.withLock { $0.phase == .connected } }

    /// How many times `autoReconnect` has re-registered since `connect`.
    public var reconnectCount: Int { state.withLock { $0.reconnectCount } }

    /// Called for each channel another connection opens to this one. Set `onMessage` inside the
    /// callback (or later: messages that arrive before a handler is set are buffered).
    public var onIncomingChannel: (@Sendable (BrokerChannel) -> Void)? {
        get { callbacks.withLock { $0.onIncomingChannel } }
        set { callbacks.withLock { $0.onIncomingChannel = newValue } }
    }

    /// Called after each successful registration (initial connect and every reconnect).
    public var onConnected: (@Sendable () -> Void)? {
        get { callbacks.withLock { $0.onConnected } }
        set { callbacks.withLock { $0.onConnected = newValue } }
    }

    /// Called whenever a registered connection ends (including `disconnect()`).
    public var onDisconnected: (@Sendable () -> Void)? {
        get { callbacks.withLock { $0.onDisconnected } }
        set { callbacks.withLock { $0.onDisconnected = newValue } }
    }

    /// Called after `autoReconnect` re-registered, with the new connection id.
    public var onReconnected: (@Sendable (String) -> Void)? {
        get { callbacks.withLock { $0.onReconnected } }
        set { callbacks.withLock { $0.onReconnected = newValue } }
    }

    /// Opens the WebSocket, registers with `role` and stores the assigned id (`myId`).
    public func connect(role: String) async throws {
        let target = try WebSocketURL.client(url)
        try state.withLock { (s: inout State) throws(BrokerClientError) in
            guard s.phase == .idle else { throw .alreadyConnected }
            s.phase = .connecting
            s.userClosed = false
            s.role = role
            s.reconnectCount = 0
        }
        do {
            _ = try await establish(target, role: role, isReconnect: false)
        } catch {
            state.withLock { s in if s.phase == .connecting { s.phase = .idle } }
            throw error
        }
    }

    /// Ids of all connections registered with `role` (may include this client's own id).
    public func listByRole(_ role: String) async throws -> [String] {
        guard case .message(let reply) = try await request("list_by_role", ["role": .string(role)],
                                                           kind: .plain(expect: "connections")) else {
            throw BrokerClientError.protocolError("unexpected reply to list_by_role")
        }
        guard let ids = reply["ids"]?.arrayValue else {
            throw BrokerClientError.protocolError("connections response without an ids array")
        }
        return try ids.map { value in
            guard let id = value.stringValue else { throw BrokerClientError.protocolError("non-string id in ids") }
            return id
        }
    }

    /// Opens a channel to the connection `targetId`.
    public func openChannel(_ targetId: String) async throws -> BrokerChannel {
        guard case .channel(let channel) = try await request("open", ["targetId": .string(targetId)],
                                                             kind: .open(targetId: targetId)) else {
            throw BrokerClientError.protocolError("unexpected reply to open")
        }
        return channel
    }

    /// Closes the connection (WebSocket close handshake), stops auto-reconnect, fails pending
    /// requests with `.disconnected` and closes every channel (their `onClosed` fires).
    public func disconnect() async {
        let (connection, task, pending, channels, wasConnected) = state.withLock { s in
            s.userClosed = true
            let result = (s.connection, s.reconnectTask, s.pending, s.channels, s.phase == .connected)
            s.connection = nil
            s.reconnectTask = nil
            s.pending = [:]
            s.channels = [:]
            s.myId = nil
            s.phase = .idle
            return result
        }
        task?.cancel()
        for p in pending.values { p.fail(BrokerClientError.disconnected) }
        for c in channels.values { c.markClosed() }
        if wasConnected {
            log(.info, "disconnecting")
            notify { $0.onDisconnected?() }
        }
        if let connection {
            await connection.close(timeout: options.closeTimeout)
        }
    }

    // MARK: Connection lifecycle

    /// Opens a connection, starts its reader and registers. On success the client is
    /// `.connected` with the returned id; on failure the connection is torn down.
    private func establish(_ target: WebSocketURL, role: String, isReconnect: Bool) async throws -> String {
        log(.debug, "connecting to \(url)")
        let connection = try await ClientWebSocket.open(url: target, options: options, adopt: { connection in
            state.withLock { s -> Bool in
                if s.userClosed { return false }
                s.connection = connection
                return true
            }
        }, handler: { [self] connection, event in await handle(event, from: connection) })
        do {
            // The reply handler (the connection's reader) switches the client to `.connected`, so
            // the state change is ordered with the messages that follow the reply.
            guard case .message(let reply) = try await request("register", ["role": .string(role)],
                                                               kind: .register(role: role, isReconnect: isReconnect),
                                                               on: connection),
                  let id = reply["connectionId"]?.stringValue else {
                throw BrokerClientError.protocolError("unexpected reply to register")
            }
            return id
        } catch {
            state.withLock { s in if s.connection === connection { s.connection = nil } }
            connection.abort()
            throw error
        }
    }

    /// The end of a connection, from its reader.
    private func connectionEnded(_ connection: ClientWebSocket, reason: String) {
        let id = ObjectIdentifier(connection)
        let (pending, channels, wasConnected, reconnectRole) = state.withLock { s in
            let pending = s.pending.filter { $0.value.connection == id }
            for key in pending.keys { s.pending[key] = nil }
            guard s.connection === connection else {
                return (pending, [String: BrokerChannel](), false, String?.none)
            }
            s.connection = nil
            let channels = s.channels
            s.channels = [:]
            let wasConnected = s.phase == .connected
            s.myId = nil
            var role: String?
            if wasConnected {
                if options.autoReconnect && !s.userClosed, let r = s.role {
                    s.phase = .reconnecting
                    role = r
                } else {
                    s.phase = .idle
                }
            }
            return (pending, channels, wasConnected, role)
        }
        for p in pending.values { p.fail(BrokerClientError.disconnected) }
        for c in channels.values { c.markClosed() }
        if wasConnected {
            log(.warning, "connection lost: \(reason)")
            notify { $0.onDisconnected?() }
        }
        if let role = reconnectRole { startReconnecting(role: role) }
    }

    private func startReconnecting(role: String) {
        guard let target = try? WebSocketURL.client(url) else { return }
        let task = Task { [self] in
            var attempt = 0
            while !Task.isCancelled {
                let delay = options.jitteredReconnectDelay(attempt: attempt)
                attempt += 1
                log(.info, "reconnecting in \(delay) (attempt \(attempt))")
                try? await Task.sleep(for: delay)
                if Task.isCancelled || state.withLock({ $0.userClosed }) { return }
                do {
                    _ = try await establish(target, role: role, isReconnect: true)
                    return
                } catch {
                    log(.warning, "reconnect attempt \(attempt) failed: \(error)")
                }
            }
        }
        let keep = state.withLock { s -> Bool in
            guard !s.userClosed, s.phase == .reconnecting else { return false }
            s.reconnectTask = task
            return true
        }
        if !keep { task.cancel() }
    }

    // MARK: Requests

    func request(_ type: String, _ fields: [String: JSONValue], kind: PendingKind,
                 on explicitConnection: ClientWebSocket? = nil) async throws -> Reply {
        let (connection, id) = try state.withLock { (s: inout State) throws(BrokerClientError) -> (ClientWebSocket, Int) in
            let connection: ClientWebSocket
            if let explicitConnection {
                guard s.connection === explicitConnection else { throw .disconnected }
                connection = explicitConnection
            } else {
                guard s.phase == .connected, let c = s.connection else { throw .notConnected }
                connection = c
            }
            let id = s.nextId
            s.nextId += 1
            return (connection, id)
        }
        var message = fields
        message["type"] = .string(type)
        message["id"] = .number(Double(id))
        let text = try JSONValue.object(message).jsonString()
        if text.utf8.count > options.maxMessageBytes {
            throw BrokerClientError.protocolError("\(type) request of \(text.utf8.count) bytes exceeds maxMessageBytes")
        }
        let timeout = options.requestTimeout
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Reply, any Error>) in
                let timeoutTask = Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    if Task.isCancelled { return }
                    self?.failPending(id, BrokerClientError.timeout)
                }
                let pending = Pending(continuation: c, kind: kind, connection: ObjectIdentifier(connection),
                                      timeoutTask: timeoutTask)
                let live = state.withLock { s -> Bool in
                    guard s.connection === connection else { return false }
                    s.pending[id] = pending
                    return true
                }
                guard live else {
                    pending.fail(BrokerClientError.disconnected)
                    return
                }
                if Task.isCancelled {
                    failPending(id, CancellationError())
                    return
                }
                log(.debug, "-> \(text)")
                do {
                    try connection.sendText(text)
                } catch {
                    failPending(id, error)
                }
            }
        } onCancel: {
            self.failPending(id, CancellationError())
        }
    }

    private func failPending(_ id: Int, _ error: any Error) {
        let pending = state.withLock { $0.pending.removeValue(forKey: id) }
        pending?.fail(error)
    }

    // MARK: Incoming

    /// The connection's messages, one at a time in arrival order, called inline by the
    /// connection's reader. It suspends only in ``BrokerChannel/receive(_:)`` (a consumed
    /// channel's full buffer under `.suspendReading`), which holds the reading of the socket
    /// up: that is the backpressure.
    private func handle(_ event: ClientWebSocket.Event, from connection: ClientWebSocket) async {
        switch event {
        case .text(let text):
            await handleText(text, from: connection)
        case .binary(let bytes):
            log(.warning, "binary message of \(bytes.count) bytes; treating it as UTF-8 JSON")
            await handleText(String(decoding: bytes, as: UTF8.self), from: connection)
        case .closed(let code, let reason, let clean):
            connectionEnded(connection, reason: clean ? "closed by the broker (code \(code.map(String.init) ?? "none"))" : reason)
        }
    }

    private func handleText(_ text: String, from connection: ClientWebSocket) async {
        log(.debug, "<- \(text)")
        guard let value = try? JSONValue(jsonString: text), let message = value.objectValue else {
            log(.error, "ignoring a message that is not a JSON object: \(text.prefix(200))")
            return
        }
        if let replyTo = message["replyTo"], replyTo != .null {
            guard let id = replyTo.intValue else {
                log(.error, "ignoring a reply with a non-integer replyTo: \(text.prefix(200))")
                return
            }
            handleReply(id, message, from: connection)
            return
        }
        let type = message["type"]?.stringValue ?? ""
        switch type {
        case "incoming_channel":
            guard let channelId = message["channelId"]?.stringValue, let from = message["from"]?.stringValue else {
                log(.error, "incoming_channel without channelId/from: \(text.prefix(200))")
                return
            }
            let channel = BrokerChannel(id: channelId, peerId: from, client: self)
            let live = state.withLock { s -> Bool in
                guard s.connection === connection else { return false }
                s.channels[channelId] = channel
                return true
            }
            guard live else { return }
            log(.info, "incoming channel \(channelId) from \(from)")
            notify { $0.onIncomingChannel?(channel) }
        case "channel_message":
            guard let channelId = message["channelId"]?.stringValue else {
                log(.error, "channel_message without channelId")
                return
            }
            if let channel = state.withLock({ $0.channels[channelId] }) {
                await channel.receive(message["payload"] ?? .null)
            } else {
                log(.warning, "message for unknown channel \(channelId)")
            }
        case "channel_closed_notification":
            guard let channelId = message["channelId"]?.stringValue else {
                log(.error, "channel_closed_notification without channelId")
                return
            }
            if let channel = state.withLock({ $0.channels.removeValue(forKey: channelId) }) {
                log(.info, "channel \(channelId) closed by the peer")
                channel.markClosed()
            }
        default:
            log(.warning, "ignoring unexpected unsolicited message type '\(type)'")
        }
    }

    private func handleReply(_ id: Int, _ message: [String: JSONValue], from connection: ClientWebSocket) {
        guard let pending = state.withLock({ $0.pending.removeValue(forKey: id) }) else {
            log(.warning, "reply to unknown or expired request \(id)")
            return
        }
        pending.timeoutTask.cancel()
        let type = message["type"]?.stringValue ?? ""
        let expected: String = switch pending.kind {
        case .plain(let expect): expect
        case .register: "registered"
        case .open: "channel_opened"
        case .close: "channel_closed"
        }
        // Two failure styles: `{"type":"error","error":T,"replyTo":N}` (the reference broker, and
        // Switchboard's default profile) and the typed `*_failed` (Switchboard's strict
        // profile). The reference broker's successes carry no `type` at all: a reply without
        // `type` and without `error` is the expected success.
        let untypedSuccess = message["type"] == nil && message["error"] == nil
        guard type == expected || untypedSuccess else {
            if let error = message["error"]?.stringValue {
                pending.continuation.resume(throwing: BrokerClientError.failed(error))
            } else if type.hasSuffix("_failed") {
                pending.continuation.resume(throwing: BrokerClientError.failed(type))
            } else {
                pending.continuation.resume(throwing: BrokerClientError.protocolError(
                    "expected \(expected) in reply to request \(id), got '\(type)'"))
            }
            return
        }
        switch pending.kind {
        case .plain:
            pending.continuation.resume(returning: .message(message))
        case .register(let role, let isReconnect):
            guard let connectionId = message["connectionId"]?.stringValue else {
                pending.continuation.resume(throwing: BrokerClientError.protocolError("registered without a connectionId"))
                return
            }
            let live = state.withLock { s -> Bool in
                guard s.connection === connection, !s.userClosed else { return false }
                s.myId = connectionId
                s.phase = .connected
                if isReconnect { s.reconnectCount += 1 }
                return true
            }
            guard live else {
                pending.continuation.resume(throwing: BrokerClientError.disconnected)
                return
            }
            log(.info, "registered as \(connectionId) with role \(role)")
            notify { $0.onConnected?() }
            if isReconnect { notify { $0.onReconnected?(connectionId) } }
            pending.continuation.resume(returning: .message(message))
        case .open(let targetId):
            guard let channelId = message["channelId"]?.stringValue else {
                pending.continuation.resume(throwing: BrokerClientError.protocolError("channel_opened without channelId"))
                return
            }
            let channel = BrokerChannel(id: channelId, peerId: message["targetId"]?.stringValue ?? targetId, client: self)
            // Registered here, by the reader, so messages that follow are not lost.
            let live = state.withLock { s -> Bool in
                guard s.connection === connection else { return false }
                s.channels[channelId] = channel
                return true
            }
            if live {
                log(.info, "channel \(channelId) opened to \(channel.peerId)")
                pending.continuation.resume(returning: .channel(channel))
            } else {
                pending.continuation.resume(throwing: BrokerClientError.disconnected)
            }
        case .close(let channelId):
            if let channel = state.withLock({ $0.channels.removeValue(forKey: channelId) }) {
                channel.markClosed()
            }
            pending.continuation.resume(returning: .message(message))
        }
    }

    /// Closes a channel locally (already removed or about to be removed from the table).
    func forgetChannel(_ channelId: String) -> BrokerChannel? {
        state.withLock { $0.channels.removeValue(forKey: channelId) }
    }

    // MARK: Helpers

    func notify(_ body: @escaping @Sendable (Callbacks) -> Void) {
        callbackQueue.async { [self] in
            body(callbacks.withLock { $0 })
        }
    }

    func log(_ level: BrokerLogLevel, _ message: @autoclosure () -> String) {
        logger?.log(level, message())
    }
}

extension BrokerClient.Pending {
    func fail(_ error: any Error) {
        timeoutTask.cancel()
        continuation.resume(throwing: error)
    }
}

/// One end of a channel between two broker connections.
///
/// What the peer sends arrives in ``messages``, a bounded ``ChannelMessages`` sequence
/// (``BrokerClientOptions/maxBufferedChannelMessages`` payloads). Until someone consumes the
/// channel (reads ``messages`` or sets ``onMessage``), a full buffer drops and counts
/// (``droppedMessageCount``), so a channel nobody listens to never stalls its connection; after
/// that, ``BrokerClientOptions/eventOverflow`` decides: `.suspendReading` stops reading the
/// connection until the consumer takes a payload (TCP then slows the broker and the peer; the
/// connection's other traffic, replies included, waits too), `.dropNewest` drops and counts.
/// ``onMessage`` is a task iterating ``messages``: consume the channel one way, not both.
public final class BrokerChannel: Sendable, Hashable, CustomStringConvertible {
    public let id: String
    /// The connection id at the other end.
    public let peerId: String
    let client: BrokerClient

    struct State: Sendable {
        var onMessage: (@Sendable (JSONValue) -> Void)?
        var onClosed: (@Sendable () -> Void)?
        /// Someone consumes the channel (``messages`` read or ``onMessage`` set): from then on
        /// the overflow policy applies instead of drop-when-full.
        var attached = false
        /// The task calling ``onMessage`` for each element of ``messages`` (then ``onClosed``).
        var pump: Task<Void, Never>?
        var pumpFinished = false
        var closed = false
        var closedFired = false
    }

    private let state = Mutex(State())
    /// The payloads received and not yet consumed: never more than the buffer's capacity.
    private let inbox: MessageInbox<JSONValue>

    init(id: String, peerId: String, client: BrokerClient) {
        self.id = id
        self.peerId = peerId
        self.client = client
        inbox = MessageInbox(capacity: max(1, client.options.maxBufferedChannelMessages),
                             policy: client.options.eventOverflow)
    }

    public var description: String { "BrokerChannel(\(id) to \(peerId))" }
    public static func == (a: BrokerChannel, b: BrokerChannel) -> Bool { a === b }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    /// TS-SDK style accessor.
    public func getPeerId() -> String { peerId }

    public var isClosed: Bool { state.withLock { $0.closed } }

    /// The payloads the peer sends, in order, through the channel's bounded buffer; the
    /// sequence ends when the channel closes (after the payloads received before). Reading this
    /// property attaches a consumer (see the type's discussion). One task iterates it;
    /// cancelling that task ends its loop, not the channel.
    public var messages: ChannelMessages {
        state.withLock { $0.attached = true }
        return ChannelMessages(inbox: inbox)
    }

    /// Payloads dropped: while nobody consumed the channel and its buffer was full, or under
    /// ``InboundOverflowPolicy/dropNewest``.
    public var droppedMessageCount: Int { inbox.droppedCount }

    /// Payloads received and not yet consumed (at most the buffer's capacity).
    public var bufferedMessageCount: Int { inbox.bufferedCount }

    /// Called with each payload the peer sends, in order, one at a time, from a task of this
    /// channel that iterates ``messages`` (different channels' handlers may run concurrently).
    /// Payloads buffered before a handler is set are delivered first. A payload taken while the
    /// handler is nil (set back to nil) is not delivered.
    public var onMessage: (@Sendable (JSONValue) -> Void)? {
        get { state.withLock { $0.onMessage } }
        set {
            state.withLock { $0.onMessage = newValue }
            if newValue != nil { startPump() }
        }
    }

    /// Called once when the channel closes for any reason: closed by the peer, closed locally
    /// with `close()`, or the connection ended; after the last ``onMessage``. Fires even if set
    /// after the fact.
    public var onClosed: (@Sendable () -> Void)? {
        get { state.withLock { $0.onClosed } }
        set {
            let fireNow = state.withLock { s -> Bool in
                s.onClosed = newValue
                // A running pump fires it after the last payload; otherwise the callback queue.
                return s.closed && (s.pump == nil || s.pumpFinished)
            }
            if fireNow && newValue != nil { client.callbackQueue.async { self.fireClosed() } }
        }
    }

    /// Sends `payload` to the peer; returns once the broker confirms (`channel_message_sent`).
    /// Throws `.failed` on `channel_message_failed`, `.timeout`, `.disconnected`, `.channelClosed`.
    public func send(_ payload: JSONValue) async throws {
        if isClosed { throw BrokerClientError.channelClosed }
        _ = try await client.request("message", ["channelId": .string(id), "payload": payload],
                                     kind: .plain(expect: "channel_message_sent"))
    }

    /// Closes the channel (`close` -> `channel_closed`). The peer gets `onClosed`; so does this
    /// end. Closing an already-closed channel does nothing. If the broker answers
    /// `channel_close_failed` (e.g. the peer closed it first), the channel is closed locally and
    /// `.failed` is thrown.
    public func close() async throws {
        if isClosed { return }
        do {
            _ = try await client.request("close", ["channelId": .string(id)], kind: .close(channelId: id))
        } catch BrokerClientError.failed(let text) {
            if client.forgetChannel(id) != nil { markClosed() }
            throw BrokerClientError.failed(text)
        }
    }

    // MARK: Internal (the connection's reader, the callback queue)

    /// Called by the connection's message handler, in arrival order. Under `.suspendReading`
    /// with a consumer and a full buffer this suspends the handler, and with it the reading of
    /// the connection, until the consumer takes a payload or the channel closes.
    func receive(_ payload: JSONValue) async {
        let attached = state.withLock { $0.attached }
        let kept = await inbox.push(payload, overflow: attached ? nil : .dropNewest)
        if !kept {
            client.log(.warning, "channel \(id): \(attached ? "buffer full" : "no consumer and the buffer is full"); dropped a payload")
        }
    }

    /// Starts the task behind ``onMessage``, once.
    private func startPump() {
        state.withLock { s in
            guard s.pump == nil else { return }
            s.attached = true
            // Holds the channel until the sequence ends: the channel closing ends it.
            s.pump = inbox.pump(to: { self.state.withLock { $0.onMessage } }, ended: {
                self.state.withLock { $0.pumpFinished = true }
                self.fireClosed()
            })
        }
    }

    /// Returns once ``onMessage`` was called for every payload received before the channel
    /// closed (at once when nobody set it).
    private func drained() async {
        await state.withLock { $0.pump }?.value
    }

    /// The channel closed: its sequence ends after what is buffered. `onClosed` fires from the
    /// pump after the last `onMessage`, or from the callback queue when there is no pump; the
    /// callback queue waits for the pump either way, so the client's later callbacks
    /// (`onDisconnected` included) follow this channel's last ones.
    func markClosed() {
        let first = state.withLock { s -> Bool in
            defer { s.closed = true }
            return !s.closed
        }
        guard first else { return }
        inbox.finish()  // a reader suspended on the full buffer goes on
        client.callbackQueue.async {
            await self.drained()
            self.fireClosed()
        }
    }

    private func fireClosed() {
        let handler = state.withLock { s -> (@Sendable () -> Void)? in
            guard s.closed, !s.closedFired, let h = s.onClosed else { return nil }
            s.closedFired = true
            return h
        }
        handler?()
    }
}
