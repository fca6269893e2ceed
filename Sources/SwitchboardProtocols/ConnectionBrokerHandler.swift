import Switchboard
import Synchronization

/// The connection-broker protocol (@sitnikov/connection-broker, v0.1.1) on Switchboard: clients
/// register with a role, list connections by role, open channels to each other, exchange
/// opaque JSON payloads on them and close them. See README "Connection broker" for the wire
/// protocol and the semantics chosen where the reference leaves them open.
///
/// ```swift
/// let cb = ConnectionBroker(options: ConnectionBrokerOptions())   // keep it for cb.metrics
/// let broker = Broker(configuration: config, handlerFactory: cb.handlerFactory())
/// ```
///
/// Semantics chosen where the reference is silent (summary; README has the full table):
/// - every broker message has a fresh `id` from one broker-wide counter starting at 1;
///   answers carry `replyTo` = the request's `id` when that is an integer (absent otherwise);
/// - anything but `register` before registering -> the matching `*_failed` "Not registered";
///   a second `register` -> `register_failed` "Already registered";
/// - malformed JSON -> `error` "Invalid JSON"; unknown `type` -> `error` "Unknown message type: X";
///   binary frames -> `error`; missing or ill-typed fields -> the matching `*_failed`;
/// - `open` to oneself is refused (configurable); unknown or unregistered targets -> "Target
///   connection not found"; `message`/`close` on an unknown channel or by a non-party ->
///   "Channel not found" (the same text, so channel ids cannot be probed);
/// - a disconnect closes all the connection's channels; each peer gets
///   `channel_closed_notification`;
/// - `payload` is forwarded as the exact JSON text received (never re-serialized).
public final class ConnectionBroker: Sendable {
    public let options: ConnectionBrokerOptions
    public let metrics = ConnectionBrokerMetrics()
    let registry = ConnectionRegistry()
    /// The `id` of every message the broker sends: one broker-wide counter, first id 1.
    private let messageIds = Atomic<Int>(0)

    public init(options: ConnectionBrokerOptions = ConnectionBrokerOptions()) {
        self.options = options
    }

    /// A handler factory for `Broker(configuration:handlerFactory:)`: one handler per shard,
    /// all sharing this instance's registry, counters and message ids.
    public func handlerFactory() -> @Sendable (ShardContext) -> WorkerHandler {
        { context in ConnectionBrokerHandler(context: context, shared: self) }
    }

    /// A factory over a new `ConnectionBroker` with these options.
    public static func handlerFactory(options: ConnectionBrokerOptions = ConnectionBrokerOptions()) -> @Sendable (ShardContext) -> WorkerHandler {
        ConnectionBroker(options: options).handlerFactory()
    }

    /// The socket of a registered connection id (for tests and diagnostics).
    public func socketId(forConnectionId id: String) -> SocketID? {
        guard let uuid = UUID4(id) else { return nil }
        return registry.socket(of: uuid)
    }

    /// Registered connections and open channels, exact at one instant.
    public var counts: (connections: Int, channels: Int) { registry.counts }

    func nextMessageId() -> Int { messageIds.wrappingAdd(1, ordering: .relaxed).newValue }
}

/// The per-shard handler: one instance per shard, called only on that shard's thread. Which
/// sockets of this shard are registered (socket -> connection id) is shard-local and needs no
/// lock; everything cross-connection goes through the shared `ConnectionRegistry`.
public final class ConnectionBrokerHandler: WorkerHandler {
    private let context: ShardContext
    private let shared: ConnectionBroker
    private let options: ConnectionBrokerOptions
    private let metrics: ConnectionBrokerMetrics
    private var registry: ConnectionRegistry { shared.registry }
    /// Registered sockets of this shard.
    private var registered: [SocketID: UUID4] = [:]

    public init(context: ShardContext, shared: ConnectionBroker) {
        self.context = context
        self.shared = shared
        options = shared.options
        metrics = shared.metrics
    }

    // MARK: - WorkerHandler

    public func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        switch message {
        case .binary:
            metrics.binaryRejected.increment()
            sendError(socketId, replyTo: nil, "Binary messages are not supported")
        case .text(var text):
            text.withUTF8 { handle($0, from: socketId) }
        }
    }

    public func handleSocketClose(socketId: SocketID, token: [UInt8]?) {
        guard let me = registered.removeValue(forKey: socketId) else { return }
        metrics.registeredConnections.decrement()
        let closed = registry.disconnect(me)
        for (channel, peer) in closed {
            metrics.openChannels.decrement()
            metrics.channelsClosedByDisconnect.increment()
            send(peer, "channel_closed_notification", replyTo: nil) { $0.string("channelId", channel.description) }
        }
    }

    // MARK: - Sending

    /// Builds `{"type":…,"id":N[,"replyTo":R]…}` (fields in the reference's order) and sends it.
    @discardableResult
    private func send(_ socket: SocketID, _ type: String, replyTo: Int?, _ fields: (inout JSONWriter) -> Void) -> Bool {
        var w = JSONWriter()
        w.string("type", type)
        w.int("id", shared.nextMessageId())
        if let replyTo { w.int("replyTo", replyTo) }
        fields(&w)
        // Exact on this shard's sockets; for another shard's, whether it could be queued.
        let message = SocketMessage.text(w.finish())
        let ok = context.isLocal(socket)
            ? context.send(socket, message) == .queued
            : context.broker.send(socket, message) == .queued
        if ok { metrics.messagesSent.increment() } else { metrics.sendFailures.increment() }
        return ok
    }

    private func sendError(_ socket: SocketID, replyTo: Int?, _ error: String) {
        send(socket, "error", replyTo: replyTo) { $0.string("error", error) }
    }

    // MARK: - Requests

    /// A request's decoded envelope.
    private struct Request {
        let bytes: UnsafeBufferPointer<UInt8>
        let members: [String: JSONMember]
        let socket: SocketID
        /// The request's `id` when it is a safe integer (echoed as `replyTo`).
        let replyTo: Int?
        /// `id` is present but not a safe integer.
        let badId: Bool

        /// The member `key` if it is a string (nil when absent or another kind).
        func string(_ key: String) -> String? {
            guard let m = members[key], m.kind == .string else { return nil }
            return try? JSONReader.decodeString(bytes, m.range)
        }
    }

    private func handle(_ bytes: UnsafeBufferPointer<UInt8>, from socket: SocketID) {
        if bytes.count > options.maxMessageBytes {
            metrics.messageTooLarge.increment()
            sendError(socket, replyTo: nil, "Message too large")
            return
        }
        let members: [String: JSONMember]
        do {
            members = try JSONReader.parseObject(bytes, maxDepth: options.maxJSONDepth)
        } catch {
            switch error {
            case .invalid:
                metrics.invalidJSON.increment()
                sendError(socket, replyTo: nil, "Invalid JSON")
            case .tooDeep:
                metrics.jsonTooDeep.increment()
                sendError(socket, replyTo: nil, "JSON nesting too deep")
            case .notAnObject:
                metrics.notAnObject.increment()
                sendError(socket, replyTo: nil, "Invalid message: expected a JSON object")
            }
            return
        }
        var replyTo: Int? = nil
        var badId = false
        if let m = members["id"] {
            if m.kind == .number, let v = JSONReader.safeInteger(bytes, m.range) { replyTo = v } else { badId = true }
        }
        let request = Request(bytes: bytes, members: members, socket: socket, replyTo: replyTo, badId: badId)
        guard let type = request.string("type") else {
            metrics.missingType.increment()
            sendError(socket, replyTo: replyTo, "Missing or invalid field: type")
            return
        }
        switch type {
        case "register": register(request)
        case "list_by_role": listByRole(request)
        case "open": open(request)
        case "message": message(request)
        case "close": close(request)
        default:
            metrics.unknownType.increment()
            // Echo at most 128 characters of the unknown type.
            let shown = type.count > 128 ? String(type.prefix(128)) + "…" : type
            sendError(socket, replyTo: replyTo, "Unknown message type: \(shown)")
        }
    }

    /// The checks every request shares, in order: a well-typed `id`, then registration.
    /// Returns the sender's connection id, or nil after sending the failure.
    private func sender(_ r: Request, requireRegistered: Bool = true, fail: (String) -> Void) -> UUID4?? {
        if r.badId {
            metrics.invalidField.increment()
            fail("Invalid field: id (expected an integer)")
            return nil
        }
        let me = registered[r.socket]
        if requireRegistered && me == nil {
            metrics.notRegistered.increment()
            fail("Not registered")
            return nil
        }
        return .some(me)
    }

    private func register(_ r: Request) {
        let fail = failure(r, "register_failed")
        guard let me = sender(r, requireRegistered: false, fail: fail) else { return }
        if me != nil {
            metrics.alreadyRegistered.increment()
            return fail("Already registered")
        }
        guard let role = r.string("role") else {
            metrics.invalidField.increment()
            return fail("Missing or invalid field: role")
        }
        if role.utf8.count > options.maxRoleBytes {
            metrics.roleTooLong.increment()
            return fail("Role too long")
        }
        switch registry.register(socket: r.socket, role: role, maxPerRole: options.maxConnectionsPerRole) {
        case .roleFull:
            metrics.roleFull.increment()
            fail("Too many connections for role")
        case .registered(let id):
            registered[r.socket] = id
            metrics.registrations.increment()
            metrics.registeredConnections.increment()
            send(r.socket, "registered", replyTo: r.replyTo) { $0.string("connectionId", id.description) }
        }
    }

    private func listByRole(_ r: Request) {
        let fail = failure(r, "list_by_role_failed")
        guard sender(r, fail: fail) != nil else { return }
        guard let role = r.string("role") else {
            metrics.invalidField.increment()
            return fail("Missing or invalid field: role")
        }
        if role.utf8.count > options.maxRoleBytes {
            metrics.roleTooLong.increment()
            return fail("Role too long")
        }
        let (ids, cut) = registry.list(role: role, limit: options.maxListResults)
        if cut { metrics.listTruncated.increment() }
        send(r.socket, "connections", replyTo: r.replyTo) { $0.stringArray("ids", ids.map(\.description)) }
    }

    /// The `*_failed` reply of a request: `error`, after the request's own `key` field when it
    /// was a string (the spec's failures repeat `targetId` / `channelId`).
    private func failure(_ r: Request, _ type: String, echoing key: StaticString? = nil, _ value: String? = nil) -> (String) -> Void {
        { error in
            _ = self.send(r.socket, type, replyTo: r.replyTo) { w in
                if let key, let value { w.string(key, value) }
                w.string("error", error)
            }
        }
    }

    private func open(_ r: Request) {
        let targetText = r.string("targetId")
        let fail = failure(r, "channel_open_failed", echoing: "targetId", targetText)
        guard let me = sender(r, fail: fail), let me else { return }
        guard let targetText else {
            metrics.invalidField.increment()
            return fail("Missing or invalid field: targetId")
        }
        guard let target = UUID4(targetText) else {
            metrics.targetNotFound.increment()
            return fail("Target connection not found")
        }
        if target == me && !options.allowSelfChannels {
            metrics.selfChannelRejected.increment()
            return fail("Cannot open a channel to yourself")
        }
        switch registry.open(from: me, to: target, maxChannels: options.maxChannelsPerConnection) {
        case .targetNotFound:
            metrics.targetNotFound.increment()
            fail("Target connection not found")
        case .tooMany:
            metrics.tooManyChannels.increment()
            fail("Too many open channels")
        case .targetTooMany:
            metrics.tooManyChannels.increment()
            fail("Target has too many open channels")
        case .opened(let channel, let targetSocket):
            let channelText = channel.description
            // The target first: anything the opener sends after channel_opened is queued
            // behind incoming_channel (same sending thread, same order).
            let delivered = send(targetSocket, "incoming_channel", replyTo: nil) { w in
                w.string("from", me.description)
                w.string("channelId", channelText)
            }
            if !delivered, registry.close(channel: channel, by: me) != nil {
                metrics.deliveryFailed.increment()
                return fail("Delivery failed")
            }
            metrics.channelsOpened.increment()
            metrics.openChannels.increment()
            send(r.socket, "channel_opened", replyTo: r.replyTo) { w in
                w.string("channelId", channelText)
                w.string("targetId", targetText)
            }
        }
    }

    private func message(_ r: Request) {
        let channelText = r.string("channelId")
        let fail = failure(r, "channel_message_failed", echoing: "channelId", channelText)
        guard let me = sender(r, fail: fail), let me else { return }
        guard let channelText else {
            metrics.invalidField.increment()
            return fail("Missing or invalid field: channelId")
        }
        guard let payload = r.members["payload"] else {
            metrics.invalidField.increment()
            return fail("Missing field: payload")
        }
        guard let channel = UUID4(channelText), let peer = registry.route(channel: channel, from: me) else {
            metrics.channelNotFound.increment()
            return fail("Channel not found")
        }
        let raw = UnsafeBufferPointer(rebasing: r.bytes[payload.range])
        let delivered = send(peer, "channel_message", replyTo: nil) { w in
            w.string("channelId", channelText)
            w.raw("payload", raw)
        }
        guard delivered else {
            metrics.deliveryFailed.increment()
            return fail("Delivery failed")
        }
        metrics.messagesRouted.increment()
        metrics.payloadBytesRouted.wrappingAdd(raw.count, ordering: .relaxed)
        send(r.socket, "channel_message_sent", replyTo: r.replyTo) { $0.string("channelId", channelText) }
    }

    private func close(_ r: Request) {
        let channelText = r.string("channelId")
        let fail = failure(r, "channel_close_failed", echoing: "channelId", channelText)
        guard let me = sender(r, fail: fail), let me else { return }
        guard let channelText else {
            metrics.invalidField.increment()
            return fail("Missing or invalid field: channelId")
        }
        guard let channel = UUID4(channelText), let peer = registry.close(channel: channel, by: me) else {
            metrics.channelNotFound.increment()
            return fail("Channel not found")
        }
        metrics.channelsClosed.increment()
        metrics.openChannels.decrement()
        send(r.socket, "channel_closed", replyTo: r.replyTo) { $0.string("channelId", channelText) }
        send(peer, "channel_closed_notification", replyTo: nil) { $0.string("channelId", channelText) }
    }
}
