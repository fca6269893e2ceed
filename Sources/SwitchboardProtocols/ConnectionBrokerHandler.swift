import Switchboard
import SwitchboardJSON
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The connection-broker protocol (@sitnikov/connection-broker, v0.1.1) on Switchboard: clients
/// register with a role, list connections by role, open channels to each other, exchange
/// opaque JSON payloads on them and close them. See README "Connection broker" for the wire
/// protocol and the semantics chosen where the reference leaves them open, and
/// `ConnectionRegistry.swift` for how the state is split over the shards (share-nothing).
///
/// ```swift
/// let cb = ConnectionBroker(options: ConnectionBrokerOptions())   // keep it for cb.metrics
/// let broker = Broker(configuration: config, handlerFactory: cb.handlerFactory())
/// ```
///
/// Two reply profiles (`ConnectionBrokerOptions.profile`, README "Connection broker profiles"):
/// `reference` (the default) answers as the implementation users run (yusitnikov/websocket-mcp
/// `packages/connection-broker`): every failure `{"type":"error","error":T,"replyTo":N,"id":M}`
/// with its texts in its check order, `list_by_role` before `register`, channels to oneself,
/// the peer's notification queued before the requester's reply (across shards the reply waits
/// for the peer's shard), close 1003 on bad JSON or a missing/unknown `type`; see the
/// "reference profile" section at the end of this file. `strict` keeps the replies below.
///
/// Semantics of the `strict` profile (summary; README has the full table):
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
/// - `payload` is forwarded as the exact JSON text received (never re-serialized);
/// - one connection's requests are answered in the order they were sent.
public final class ConnectionBroker: Sendable {
    public let options: ConnectionBrokerOptions
    public let metrics = ConnectionBrokerMetrics()
    /// Each shard's handler, for the cross-shard messages (set by the handler's init).
    let handlers = PerShard<ConnectionBrokerHandler>()
    /// The `id` of every message the broker sends: one broker-wide counter, first id 1.
    private let messageIds = Atomic<Int>(0)
    /// The broker running the handlers, for the diagnostics below only (never on a request's
    /// path, so this lock is never taken by the protocol itself).
    let diagnostics = Mutex(DiagnosticsBroker())

    struct DiagnosticsBroker {
        weak var broker: Broker?
        var shardCount = 0
    }

    public init(options: ConnectionBrokerOptions = ConnectionBrokerOptions()) {
        self.options = options
    }

    /// A handler factory for `Broker(configuration:handlerFactory:)`: one handler per shard,
    /// all sharing this instance's counters and message ids.
    public func handlerFactory() -> @Sendable (ShardContext) -> WorkerHandler {
        { context in ConnectionBrokerHandler(context: context, shared: self) }
    }

    /// A factory over a new `ConnectionBroker` with these options.
    public static func handlerFactory(options: ConnectionBrokerOptions = ConnectionBrokerOptions()) -> @Sendable (ShardContext) -> WorkerHandler {
        ConnectionBroker(options: options).handlerFactory()
    }

    /// The shard owning a connection id's record (its socket's shard), or nil for a text that
    /// is not a canonical id or before the broker started. Pure: no shard is asked.
    public func shard(ofConnectionId id: String) -> Int? {
        let n = diagnostics.withLock { $0.shardCount }
        guard n > 0, let uuid = UUID4(id) else { return nil }
        return uuid.home(shardCount: n)
    }

    /// The socket of a registered connection id (tests and diagnostics). Asks the id's home
    /// shard and blocks the calling thread for the answer (at most 5 s): never call it from a
    /// shard's thread.
    public func socketId(forConnectionId id: String) -> SocketID? {
        let (broker, n) = diagnostics.withLock { ($0.broker, $0.shardCount) }
        guard let broker, n > 0, let uuid = UUID4(id) else { return nil }
        let answer = DiagnosticsAnswer()
        let handlers = handlers
        let posted = broker.execute(onShard: uuid.home(shardCount: n)) { context in
            let socket = handlers[context]?.registry.connections[uuid]?.socket
            answer.value.withLock { $0 = .some(socket) }
        }
        guard posted.isQueued else { return nil }
        for _ in 0..<50_000 {
            if let socket = answer.value.withLock({ $0 }) { return socket }
            usleep(100)
        }
        return nil
    }

    /// Registered connections and open channels: sums of the per-shard gauges, exact once the
    /// cross-shard messages in flight are handled.
    public var counts: (connections: Int, channels: Int) {
        (metrics.registeredConnections.load(ordering: .relaxed), metrics.openChannels.load(ordering: .relaxed))
    }

    func nextMessageId() -> Int { messageIds.wrappingAdd(1, ordering: .relaxed).newValue }

    func attach(_ context: ShardContext) {
        diagnostics.withLock {
            $0.broker = context.broker
            $0.shardCount = context.shardCount
        }
    }
}

private final class DiagnosticsAnswer: Sendable {
    let value = Mutex<SocketID??>(nil)
}

/// The per-shard handler: one instance per shard, called only on that shard's thread. It owns
/// this shard's part of the registry (the connections whose home is this shard, the roles it
/// owns) and talks to the other shards' handlers by posting closures (`post`, `postReliable`).
/// See `ConnectionRegistry.swift` for the design and its ordering arguments.
public final class ConnectionBrokerHandler: WorkerHandler {
    let context: ShardContext
    let shared: ConnectionBroker
    let options: ConnectionBrokerOptions
    let metrics: ConnectionBrokerMetrics
    let shardIndex: Int
    let shardCount: Int
    /// `options.profile == .reference`: replies as the reference implementation does.
    private let reference: Bool
    /// This shard's records.
    var registry = ConnectionRegistry()
    /// Protocol state of this shard's sockets that sent something.
    var sessions: [SocketID: Session] = [:]
    /// Answers and clean-ups other shards refused for now, per destination shard, in order.
    private var outbox: [Int: [CrossShardWork]] = [:]
    /// A retry of the outbox is posted to this shard.
    private var retryPosted = false
    /// Tags the request a session waits for, so an answer is matched to its request.
    private var nextTicket: UInt64 = 0
    /// This node's number in a cluster (`cluster_engine = redis`), nil on one node.
    let clusterNode: Int?
    /// The Redis keys of the cluster-wide roles (cluster only).
    let roleKeys: ConnectionBrokerRoleKeys?
    /// Sockets waiting for another node's answer: that node, and the failure to answer with
    /// if it is declared dead first (`peerNodeDied`).
    var remoteWaits: [SocketID: (node: Int, fail: () -> Void)] = [:]
    /// Role removals Redis did not answer (cluster): id → role, sent again when this shard's
    /// Redis connection is back. At most `maxPendingRoleRemovals`.
    var unremovedMembers: [UUID4: String] = [:]
    /// Shard 0's clean-ups of dead incarnations that Redis stopped answering part of the way
    /// (cluster), resumed when its Redis connection is back or its backlog drained. At most
    /// one per node id.
    var unfinishedCleanUps = UnfinishedCleanUps()
    /// Registered connections whose write-back to their role (`restoreMembersInCluster`) Redis
    /// did not answer (cluster): written back when the shard's backlog drained, or by the next
    /// connection's full write-back. Always ids of this shard's registry (a connection that
    /// closes leaves the set at its disconnect), so at most its size.
    var unrestoredMembers: Set<UUID4> = []

    /// Work for a handler on another shard; runs there with that handler.
    typealias CrossShardWork = @Sendable (ConnectionBrokerHandler) -> Void

    public init(context: ShardContext, shared: ConnectionBroker) {
        self.context = context
        self.shared = shared
        options = shared.options
        metrics = shared.metrics
        shardIndex = context.shardIndex
        shardCount = context.shardCount
        reference = shared.options.profile == .reference
        clusterNode = context.clusterNodeID
        let cluster = context.broker.configuration.cluster
        roleKeys = clusterNode == nil ? nil : ConnectionBrokerRoleKeys(keyPrefix: cluster.keyPrefix, cleanUpBatchEntries: cluster.cleanUpBatchEntries)
        shared.handlers[context] = self
        shared.attach(context)
    }

    // MARK: - Sessions

    /// A socket's protocol state on its shard.
    struct Session {
        enum Registration {
            case unregistered
            case registered(UUID4)
        }

        /// A request that waits for another shard's answer. Later requests are parked.
        enum Waiting {
            case register(ticket: UInt64, replyTo: [UInt8]?)
            case list(ticket: UInt64, replyTo: [UInt8]?)
            case open(ticket: UInt64, replyTo: [UInt8]?, targetText: String)
            /// `reference` profile: an existence question to another shard, for a failure text.
            case probe(ticket: UInt64, replyTo: [UInt8]?, kind: ProbeKind)
            /// `reference` profile: a message or close whose reply waits until the peer's shard
            /// queued the peer's notification (the reference sends it before the reply).
            case routed(ticket: UInt64, replyTo: [UInt8]?, close: Bool, channelText: String)

            var ticket: UInt64 {
                switch self {
                case .register(let t, _), .list(let t, _), .open(let t, _, _), .probe(let t, _, _), .routed(let t, _, _, _): t
                }
            }
        }

        /// What a `reference` probe asks, and so which failure it answers.
        enum ProbeKind {
            /// `open` by an unregistered connection: does the target exist?
            case target
            /// `message`/`close` by a connection without an end: does the channel exist?
            case channel(registered: Bool)
        }

        /// A request that arrived while another waited, copied.
        enum Parked {
            case text([UInt8])
            case binary
        }

        var registration = Registration.unregistered
        var waiting: Waiting?
        var parked: [Parked] = []
        var parkedHead = 0
        var parkedBytes = 0
        /// Closed by the protocol (request queue over its limit): later messages are ignored.
        var closing = false

        var id: UUID4? {
            if case .registered(let id) = registration { return id }
            return nil
        }

        mutating func popParked() -> Parked? {
            guard waiting == nil, !closing, parkedHead < parked.count else { return nil }
            let next = parked[parkedHead]
            parkedHead += 1
            parkedBytes -= Session.cost(of: next)
            if parkedHead == parked.count {
                parked.removeAll(keepingCapacity: false)
                parkedHead = 0
                assert(parkedBytes == 0)
            }
            return next
        }

        /// What a parked request counts against `maxQueuedRequestBytes`: its bytes plus 64 (so
        /// empty and binary ones are bounded too).
        static func cost(of entry: Parked) -> Int {
            switch entry {
            case .binary: 64
            case .text(let bytes): 64 + bytes.count
            }
        }
    }

    func newTicket() -> UInt64 {
        nextTicket &+= 1
        return nextTicket
    }

    // MARK: - WorkerHandler

    public func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        flushOutbox()
        if let s = sessions[socketId], s.waiting != nil || s.closing {
            park(message, socketId)
            return
        }
        process(message, socketId)
    }

    public func handleSocketClose(socketId: SocketID, token: [UInt8]?) {
        flushOutbox()
        remoteWaits[socketId] = nil  // an answer from another node now finds no wait, as here
        guard let session = sessions.removeValue(forKey: socketId), let me = session.id else { return }
        disconnect(me)
    }

    private func process(_ message: SocketMessage, _ socket: SocketID) {
        switch message {
        case .binary(let bytes) where reference:
            // The reference reads every frame as text (`data.toString()`).
            bytes.withUnsafeBufferPointer { handle($0, from: socket) }
        case .binary:
            metrics.binaryRejected.increment()
            sendError(socket, replyTo: nil, "Binary messages are not supported")
        case .text(var text):
            text.withUTF8 { handle($0, from: socket) }
        }
    }

    /// Keeps a request for when the one in flight is answered; closes the socket (1013) when
    /// the queue is over `maxQueuedRequestBytes` (one request is always accepted).
    private func park(_ message: SocketMessage, _ socket: SocketID) {
        guard var s = sessions.removeValue(forKey: socket) else { return }
        defer { sessions[socket] = s }
        if s.closing { return }
        let entry: Session.Parked
        switch message {
        case .binary: entry = .binary
        case .text(let text): entry = .text(Array(text.utf8))
        }
        let cost = Session.cost(of: entry)
        if s.parkedBytes > 0 && s.parkedBytes + cost > options.maxQueuedRequestBytes {
            metrics.requestQueueFull.increment()
            s.closing = true
            s.parked.removeAll()
            s.parkedHead = 0
            s.parkedBytes = 0
            context.close(socket, code: .tryAgainLater, reason: "Too many requests in flight")
            return
        }
        s.parkedBytes += cost
        s.parked.append(entry)
    }

    /// Runs the parked requests of `socket` until one waits again.
    func resume(_ socket: SocketID) {
        while let next = sessions[socket]?.popParked() {
            switch next {
            case .binary: process(.binary([]), socket)
            case .text(let bytes): bytes.withUnsafeBufferPointer { handle($0, from: socket) }
            }
        }
    }

    // MARK: - Cross-shard posts

    /// Posts the first hop of a request to `shard`'s handler. False when it was refused (the
    /// inbox is full, or earlier answers to that shard still wait in the outbox, which a request
    /// must not overtake): the caller answers the request with its failure. Counted.
    private func post(to shard: Int, _ work: @escaping CrossShardWork) -> Bool {
        assert(shard != shardIndex, "local work is called directly")
        if outbox[shard] == nil, execute(on: shard, work).isQueued { return true }
        metrics.crossShardRefused.increment()
        return false
    }

    /// Runs an answer or a clean-up on `shard`'s handler: directly when it is this shard,
    /// otherwise posted, in order; a refused post waits in the outbox (never dropped).
    func postReliable(to shard: Int, _ work: @escaping CrossShardWork) {
        if shard == shardIndex { return work(self) }
        if outbox[shard] == nil, execute(on: shard, work).isQueued { return }
        metrics.crossShardRetried.increment()
        outbox[shard, default: []].append(work)
        scheduleRetry()
    }

    func execute(on shard: Int, _ work: @escaping CrossShardWork) -> Enqueued {
        let handlers = shared.handlers
        return context.broker.execute(onShard: shard) { context in
            guard let handler = handlers[context] else { return }
            handler.flushOutbox()
            work(handler)
        }
    }

    /// Posts what waits in the outbox, in order per destination, until a post is refused.
    private func flushOutbox() {
        guard !outbox.isEmpty else { return }
        for (shard, pending) in outbox {
            var sent = 0
            while sent < pending.count, execute(on: shard, pending[sent]).isQueued { sent += 1 }
            if sent == pending.count { outbox[shard] = nil } else if sent > 0 { outbox[shard]!.removeFirst(sent) }
        }
        if !outbox.isEmpty { scheduleRetry() }
    }

    /// Retries the outbox on this shard's next turn. If even this shard's inbox is full, the
    /// next handler entry flushes it.
    private func scheduleRetry() {
        guard !retryPosted else { return }
        let handlers = shared.handlers
        retryPosted = context.broker.execute(onShard: shardIndex) { context in
            guard let handler = handlers[context] else { return }
            handler.retryPosted = false
            handler.flushOutbox()
        }.isQueued
    }

    // MARK: - Sending

    /// Builds `{"type":…,"id":N[,"replyTo":R]…}` (fields in the reference's order) and sends it
    /// to a socket of this shard; true when it is in the socket's send queue.
    @discardableResult
    func send(_ socket: SocketID, _ type: String, replyTo: [UInt8]?, _ fields: (inout JSONWriter) -> Void) -> Bool {
        sendReporting(socket, type, replyTo: replyTo, fields) == .queued
    }

    /// `send`, with why it failed (see `sendTextReporting`).
    func sendReporting(_ socket: SocketID, _ type: String, replyTo: [UInt8]?, _ fields: (inout JSONWriter) -> Void) -> LocalSendResult {
        var w = JSONWriter()
        w.string("type", type)
        w.int("id", shared.nextMessageId())
        if let replyTo { w.raw("replyTo", replyTo) }
        fields(&w)
        return sendTextReporting(socket, w.finish())
    }

    private func sendText(_ socket: SocketID, _ text: String) -> Bool {
        sendTextReporting(socket, text) == .queued
    }

    /// `sendText`, with why it failed: `.closed` is a socket already closing (its close
    /// callback, which removes its record, has not run yet), `.dropped` a full send queue.
    private func sendTextReporting(_ socket: SocketID, _ text: String) -> LocalSendResult {
        assert(socket.shard == shardIndex, "sockets are written by their own shard only")
        let result = context.send(socket, .text(text))
        if result == .queued { metrics.messagesSent.increment() } else { metrics.sendFailures.increment() }
        return result
    }

    private func sendError(_ socket: SocketID, replyTo: [UInt8]?, _ error: String) {
        if reference { return sendReferenceError(socket, replyTo: replyTo, error) }
        send(socket, "error", replyTo: replyTo) { $0.string("error", error) }
    }

    /// The reference's only failure: `{"type":"error","error":T,"replyTo":R,"id":N}` (its field
    /// order: the thrown error, then `replyTo`, then the message id).
    func sendReferenceError(_ socket: SocketID, replyTo: [UInt8]?, _ error: String) {
        var w = JSONWriter()
        w.string("type", "error")
        w.string("error", error)
        if let replyTo { w.raw("replyTo", replyTo) }
        w.int("id", shared.nextMessageId())
        _ = sendText(socket, w.finish())
    }

    /// `reference` profile: closes `socket` with 1003 as the reference does for bad JSON and an
    /// unknown or missing `type`; its later messages are ignored.
    private func closeUnsupported(_ socket: SocketID, _ reason: String) {
        metrics.closedUnsupportedData.increment()
        sessions[socket, default: Session()].closing = true
        // The reference's `ws.close` throws on a reason over 123 bytes and its catch closes
        // with this text instead.
        let shown = reason.utf8.count > 123 ? "Invalid message format" : reason
        context.close(socket, code: .unsupportedData, reason: shown)
    }

    /// The `*_failed` reply of a request: `error`, after the request's own `key` field when it
    /// was a string (the spec's failures repeat `targetId` / `channelId`).
    func sendFailure(_ socket: SocketID, _ type: String, replyTo: [UInt8]?, echoing key: StaticString? = nil, _ value: String? = nil, error: String) {
        if reference { return sendReferenceError(socket, replyTo: replyTo, error) }
        send(socket, type, replyTo: replyTo) { w in
            if let key, let value { w.string(key, value) }
            w.string("error", error)
        }
    }

    // MARK: - Requests

    /// A request's decoded envelope.
    private struct Request {
        let bytes: UnsafeBufferPointer<UInt8>
        let members: [String: JSONMember]
        let socket: SocketID
        /// The request's `id` when it is a safe integer (echoed as `replyTo`).
        let replyTo: [UInt8]?
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
                if reference { return closeUnsupported(socket, "Invalid message format") }
                sendError(socket, replyTo: nil, "Invalid JSON")
            case .tooDeep:
                metrics.jsonTooDeep.increment()
                sendError(socket, replyTo: nil, "JSON nesting too deep")
            case .notAnObject:
                metrics.notAnObject.increment()
                if reference {
                    // `null.type` throws a TypeError (then `ws.close(1003, "Invalid message
                    // format")`); arrays and scalars have no `type`.
                    let first = bytes.first { $0 != 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }
                    return closeUnsupported(socket, first == UInt8(ascii: "n") ? "Invalid message format" : "Unknown request type: undefined")
                }
                sendError(socket, replyTo: nil, "Invalid message: expected a JSON object")
            }
            return
        }
        var replyTo: [UInt8]? = nil
        var badId = false
        if let m = members["id"] {
            if m.kind == .number, let v = JSONReader.safeInteger(bytes, m.range) {
                replyTo = Array(String(v).utf8)
            } else if reference {
                // The reference echoes any `id` as `replyTo`, whatever its kind.
                replyTo = Array(UnsafeBufferPointer(rebasing: bytes[m.range]))
            } else {
                badId = true
            }
        }
        let request = Request(bytes: bytes, members: members, socket: socket, replyTo: replyTo, badId: badId)
        if reference {
            switch request.string("type") {
            case "register": return register(request)
            case "list_by_role": return listByRole(request)
            case "open": return openReference(request)
            case "message": return messageReference(request)
            case "close": return closeReference(request)
            default:
                // Also `toString` and other `Object.prototype` names, which the reference's
                // lookup finds (a quirk not reproduced).
                metrics.unknownType.increment()
                return closeUnsupported(socket, "Unknown request type: \(Self.jsText(request, "type"))")
            }
        }
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

    /// How JavaScript's template string shows the member `key` (for the reference's close
    /// reason "Unknown request type: X").
    private static func jsText(_ r: Request, _ key: String) -> String {
        guard let m = r.members[key] else { return "undefined" }
        switch m.kind {
        case .string: return r.string(key) ?? ""
        case .object: return "[object Object]"
        default:
            // Numbers, booleans, null: their JSON text; arrays: their elements' text.
            var text = String(decoding: UnsafeBufferPointer(rebasing: r.bytes[m.range]), as: UTF8.self)
            if text.hasPrefix("[") { text = String(text.dropFirst().dropLast()) }
            return text
        }
    }

    /// The checks every request shares, in order: a well-typed `id`, then registration.
    /// Returns the sender's connection id, or nil after sending the failure.
    private func sender(_ r: Request, requireRegistered: Bool = true, listing: Bool = false, fail: (String) -> Void) -> UUID4?? {
        if r.badId {
            metrics.invalidField.increment()
            fail("Invalid field: id (expected an integer)")
            return nil
        }
        let me = sessions[r.socket]?.id
        if requireRegistered && me == nil && !(reference && listing) {
            metrics.notRegistered.increment()
            fail("Not registered")
            return nil
        }
        return .some(me)
    }

    /// What `open`, `message` and `close` check first: `sender`'s checks, then the request's id
    /// field `key` (`text`, as read before the failure answer was made to echo it) is present
    /// and a string. nil after sending the failure.
    private func registeredSender(_ r: Request, _ text: String?, _ key: StaticString, fail: (String) -> Void) -> (me: UUID4, text: String)? {
        guard let me = sender(r, fail: fail), let me else { return nil }
        guard let text else {
            metrics.invalidField.increment()
            fail("Missing or invalid field: \(key)")
            return nil
        }
        return (me, text)
    }

    private func failure(_ r: Request, _ type: String, echoing key: StaticString? = nil, _ value: String? = nil) -> (String) -> Void {
        { error in self.sendFailure(r.socket, type, replyTo: r.replyTo, echoing: key, value, error: error) }
    }

    /// Marks `socket` as waiting for `waiting`'s answer (its later requests park).
    func wait(_ socket: SocketID, _ waiting: Session.Waiting) {
        assert(sessions[socket]?.waiting == nil, "one request in flight per connection")
        sessions[socket, default: Session()].waiting = waiting
    }

    /// The answer for `socket`'s request `ticket` arrived: true (and the session no longer
    /// waits) when the socket is still there and waits for it.
    func takeWaiting(_ socket: SocketID, _ ticket: UInt64) -> Session.Waiting? {
        guard let waiting = sessions[socket]?.waiting, waiting.ticket == ticket else { return nil }
        sessions[socket]!.waiting = nil
        remoteWaits[socket] = nil
        return waiting
    }

    // MARK: register

    /// The request's `role`, checked alike for `register` and `list_by_role`: present, a
    /// string, and no longer than `maxRoleBytes`. nil when `r` was answered.
    private func validRole(_ r: Request, fail: (String) -> Void) -> String? {
        guard let role = r.string("role") else {
            metrics.invalidField.increment()
            fail("Missing or invalid field: role")
            return nil
        }
        if role.utf8.count > options.maxRoleBytes {
            metrics.roleTooLong.increment()
            fail("Role too long")
            return nil
        }
        return role
    }

    private func register(_ r: Request) {
        let fail = failure(r, "register_failed")
        guard let me = sender(r, requireRegistered: false, fail: fail) else { return }
        if me != nil {
            metrics.alreadyRegistered.increment()
            return fail("Already registered")
        }
        guard let role = validRole(r, fail: fail) else { return }
        var fresh = UUID4.random(home: shardIndex, shardCount: shardCount, node: clusterNode)
        while registry.connections[fresh] != nil { fresh = UUID4.random(home: shardIndex, shardCount: shardCount, node: clusterNode) }
        let id = fresh
        let maxPerRole = options.maxConnectionsPerRole
        if roleKeys != nil { return registerInCluster(r.socket, r.replyTo, id, role, maxPerRole: maxPerRole) }
        let owner = roleOwner(role, shardCount: shardCount)
        if owner == shardIndex {
            let admitted = registry.admit(id, to: role, maxPerRole: maxPerRole)
            return completeRegister(r.socket, id, role, admitted, replyTo: r.replyTo)
        }
        let socket = r.socket, ticket = newTicket(), home = shardIndex
        let posted = post(to: owner) { owner in
            let admitted = owner.registry.admit(id, to: role, maxPerRole: maxPerRole)
            owner.postReliable(to: home) { $0.registerAnswered(socket, ticket, id, role, admitted) }
        }
        guard posted else { return fail("Server busy") }
        wait(socket, .register(ticket: ticket, replyTo: r.replyTo))
    }

    func registerAnswered(_ socket: SocketID, _ ticket: UInt64, _ id: UUID4, _ role: String, _ admitted: Bool, clusterSequence: Int64 = 0) {
        guard case .register(_, let replyTo)? = takeWaiting(socket, ticket) else {
            // The socket went away while its register was in flight: take the id back out.
            if admitted { removeMember(id, from: role) }
            return
        }
        completeRegister(socket, id, role, admitted, replyTo: replyTo, clusterSequence: clusterSequence)
        resume(socket)
    }

    private func completeRegister(_ socket: SocketID, _ id: UUID4, _ role: String, _ admitted: Bool, replyTo: [UInt8]?,
                                  clusterSequence: Int64 = 0) {
        guard admitted else {
            metrics.roleFull.increment()
            return sendFailure(socket, "register_failed", replyTo: replyTo, error: "Too many connections for role")
        }
        registry.addConnection(id, socket: socket, role: role, clusterSequence: clusterSequence)
        sessions[socket, default: Session()].registration = .registered(id)
        metrics.registrations.increment()
        metrics.registeredConnections.increment()
        send(socket, "registered", replyTo: replyTo) { $0.string("connectionId", id.description) }
    }

    func removeMember(_ id: UUID4, from role: String) {
        if roleKeys != nil { return removeMemberInCluster(id, from: role) {} }
        postReliable(to: roleOwner(role, shardCount: shardCount)) { $0.registry.removeMember(id, from: role) }
    }

    // MARK: list_by_role

    private func listByRole(_ r: Request) {
        let fail = failure(r, "list_by_role_failed")
        // The reference lists for anyone, registered or not.
        guard sender(r, listing: true, fail: fail) != nil else { return }
        guard let role = validRole(r, fail: fail) else { return }
        let limit = options.maxListResults
        if roleKeys != nil { return listInCluster(r.socket, r.replyTo, role, limit: limit) }
        let owner = roleOwner(role, shardCount: shardCount)
        if owner == shardIndex {
            let (ids, total) = listMembers(of: role, limit: limit)
            return completeList(r.socket, ids, cut: total > ids.count, replyTo: r.replyTo)
        }
        let socket = r.socket, ticket = newTicket(), home = shardIndex
        let posted = post(to: owner) { owner in
            let (ids, total) = owner.listMembers(of: role, limit: limit)
            owner.postReliable(to: home) { $0.listAnswered(socket, ticket, ids, cut: total > ids.count) }
        }
        guard posted else { return fail("Server busy") }
        wait(socket, .list(ticket: ticket, replyTo: r.replyTo))
    }

    /// On the role's owner.
    private func listMembers(of role: String, limit: Int) -> (ids: [UUID4], total: Int) {
        var visited = 0
        let answer = registry.members(of: role, limit: limit, visited: &visited)
        metrics.listEntriesVisited.wrappingAdd(visited, ordering: .relaxed)
        return answer
    }

    func listAnswered(_ socket: SocketID, _ ticket: UInt64, _ ids: [UUID4], cut: Bool) {
        guard case .list(_, let replyTo)? = takeWaiting(socket, ticket) else { return }
        completeList(socket, ids, cut: cut, replyTo: replyTo)
        resume(socket)
    }

    private func completeList(_ socket: SocketID, _ ids: [UUID4], cut: Bool, replyTo: [UInt8]?) {
        if cut { metrics.listTruncated.increment() }
        send(socket, "connections", replyTo: replyTo) { $0.stringArray("ids", ids.map(\.description)) }
    }

    // MARK: open

    /// The target side's answer to an open.
    enum OpenAnswer: Sendable {
        case opened(UUID4, targetSocket: SocketID)
        case targetNotFound
        case targetTooMany
        case deliveryFailed
    }

    private func open(_ r: Request) {
        let targetText = r.string("targetId")
        let fail = failure(r, "channel_open_failed", echoing: "targetId", targetText)
        guard case let (me, targetText)? = registeredSender(r, targetText, "targetId", fail: fail) else { return }
        guard let target = UUID4(targetText) else {
            metrics.targetNotFound.increment()
            return fail("Target connection not found")
        }
        if target == me && !options.allowSelfChannels {
            metrics.selfChannelRejected.increment()
            return fail("Cannot open a channel to yourself")
        }
        openRegistered(r, me: me, target: target, targetText: targetText, fail: fail)
    }

    /// "Delivery failed", counted: a peer's shard or node did not take the work (its queue
    /// refused it, or the cluster link is down), so nothing changed and the client may retry.
    private func failDelivery(_ fail: (String) -> Void) {
        metrics.deliveryFailed.increment()
        fail("Delivery failed")
    }

    /// An open by registered `me` (both profiles): the limits, then the target's home.
    private func openRegistered(_ r: Request, me: UUID4, target: UUID4, targetText: String, fail: (String) -> Void) {
        guard let mine = registry.connections[me] else {
            preconditionFailure("registered session \(me) without a record")
        }
        if mine.channelsAndOpens >= options.maxChannelsPerConnection {
            metrics.tooManyChannels.increment()
            return fail("Too many open channels")
        }
        let socket = r.socket
        if let node = remoteNode(of: target) {
            guard openOnNode(node, socket, r.replyTo, me: me, target: target, targetText: targetText) else { return failDelivery(fail) }
            return
        }
        let targetHome = target.home(shardCount: shardCount)
        if targetHome == shardIndex {
            let answer = acceptChannel(target: target, opener: me, openerSocket: socket)
            return completeOpen(socket, me, target, targetText, answer, replyTo: r.replyTo)
        }
        let ticket = newTicket(), home = shardIndex
        let posted = post(to: targetHome) { targetHandler in
            let answer = targetHandler.acceptChannel(target: target, opener: me, openerSocket: socket)
            targetHandler.postReliable(to: home) { $0.openAnswered(socket, ticket, me, target, answer) }
        }
        guard posted else { return failDelivery(fail) }
        registry.setOpensInFlight(me, +1)
        wait(socket, .open(ticket: ticket, replyTo: r.replyTo, targetText: targetText))
    }

    /// On the target's home: creates the target's end and tells the target.
    func acceptChannel(target: UUID4, opener: UUID4, openerSocket: SocketID) -> OpenAnswer {
        switch registry.acceptChannel(target: target, opener: opener, openerSocket: openerSocket, maxChannels: options.maxChannelsPerConnection, home: shardIndex, shardCount: shardCount, node: clusterNode) {
        case .targetNotFound: return .targetNotFound
        case .targetTooMany: return .targetTooMany
        case .accepted(let channel, let targetSocket):
            // Before the answer leaves: anything the opener sends on the channel follows it.
            let told = sendReporting(targetSocket, "incoming_channel", replyTo: nil) { w in
                w.string("from", opener.description)
                w.string("channelId", channel.description)
            }
            guard told == .queued else {
                _ = registry.removeEnd(channel, of: target, peer: opener)
                // A target whose socket is closing is leaving: its record goes when its close
                // callback runs, which on a single-threaded broker (the reference) would already
                // have happened. Answer as the reference then does.
                return told == .closed ? .targetNotFound : .deliveryFailed
            }
            metrics.openChannels.increment()  // the target's end carries the channel in the gauge
            return .opened(channel, targetSocket: targetSocket)
        }
    }

    func openAnswered(_ socket: SocketID, _ ticket: UInt64, _ me: UUID4, _ target: UUID4, _ answer: OpenAnswer) {
        guard case .open(_, let replyTo, let targetText)? = takeWaiting(socket, ticket) else {
            // The opener went away meanwhile (its record, and so its count of opens in flight,
            // went with it), or in a cluster a failure was answered first: close the target's
            // new end.
            if case .opened(let channel, let targetSocket) = answer {
                if let node = remoteNode(of: targetSocket) {
                    sendRemoteReliable(node, .peersGone(gone: me, ends: [(channel, target)]))
                } else {
                    postReliable(to: target.home(shardCount: shardCount)) { $0.peersGone(me, [(channel, target)]) }
                }
            }
            return
        }
        // Exactly one answer takes the wait, so the open in flight is counted down once.
        registry.setOpensInFlight(me, -1)
        completeOpen(socket, me, target, targetText, answer, replyTo: replyTo)
        resume(socket)
    }

    private func completeOpen(_ socket: SocketID, _ me: UUID4, _ target: UUID4, _ targetText: String, _ answer: OpenAnswer, replyTo: [UInt8]?) {
        let fail = { (error: String) in
            self.sendFailure(socket, "channel_open_failed", replyTo: replyTo, echoing: "targetId", targetText, error: error)
        }
        switch answer {
        case .targetNotFound:
            metrics.targetNotFound.increment()
            fail("Target connection not found")
        case .targetTooMany:
            metrics.tooManyChannels.increment()
            fail("Target has too many open channels")
        case .deliveryFailed:
            failDelivery(fail)
        case .opened(let channel, let targetSocket):
            // A self channel has one end, the target's. The opener is registered (a socket that
            // left never gets here); only an id already among its ends (2^-122) is refused.
            if target != me, !registry.addEnd(channel, to: me, .init(peer: target, peerSocket: targetSocket, isTarget: false)) {
                if let node = remoteNode(of: targetSocket) {
                    sendRemoteReliable(node, .peersGone(gone: me, ends: [(channel, target)]))
                } else {
                    postReliable(to: targetSocket.shard) { $0.peersGone(me, [(channel, target)]) }
                }
                return failDelivery(fail)
            }
            metrics.channelsOpened.increment()
            send(socket, "channel_opened", replyTo: replyTo) { w in
                w.string("channelId", channel.description)
                w.string("targetId", targetText)
            }
        }
    }

    // MARK: message

    private func message(_ r: Request) {
        let channelText = r.string("channelId")
        let fail = failure(r, "channel_message_failed", echoing: "channelId", channelText)
        guard case let (me, channelText)? = registeredSender(r, channelText, "channelId", fail: fail) else { return }
        guard r.members["payload"] != nil else {
            metrics.invalidField.increment()
            return fail("Missing field: payload")
        }
        guard let channel = UUID4(channelText), let end = registry.end(of: channel, heldBy: me) else {
            metrics.channelNotFound.increment()
            return fail("Channel not found")
        }
        let (text, payloadBytes) = channelMessage(r, channelText)
        let peer = end.peer
        let peerHome = end.peerSocket.shard
        if let node = remoteNode(of: end.peerSocket) {
            guard sendRemote(node, .deliver(channel: channel, sender: me, party: peer, text: text)) else { return failDelivery(fail) }
        } else if peerHome == shardIndex {
            switch deliverReporting(channel, from: me, to: peer, text) {
            case .delivered: break
            case .gone:
                // The peer left or closed the channel in the same moment: what the answer is
                // once its end is deleted.
                metrics.channelNotFound.increment()
                return fail("Channel not found")
            case .refused:
                return failDelivery(fail)
            }
        } else {
            guard post(to: peerHome, { $0.deliver(channel, from: me, to: peer, text) }) else { return failDelivery(fail) }
        }
        metrics.messagesRouted.increment()
        metrics.payloadBytesRouted.wrappingAdd(payloadBytes, ordering: .relaxed)
        send(r.socket, "channel_message_sent", replyTo: r.replyTo) { $0.string("channelId", channelText) }
    }

    /// The `channel_message` for request `r` and its payload's size. The payload is copied as
    /// the exact JSON text received; without one (`reference` profile) the field is left out,
    /// as the reference's `JSON.stringify` leaves out `undefined`.
    private func channelMessage(_ r: Request, _ channelText: String) -> (text: String, payloadBytes: Int) {
        let payload = r.members["payload"].map { UnsafeBufferPointer(rebasing: r.bytes[$0.range]) }
        var w = JSONWriter(capacity: (payload?.count ?? 0) + 128)
        w.string("type", "channel_message")
        w.int("id", shared.nextMessageId())
        w.string("channelId", channelText)
        if let payload { w.raw("payload", payload) }
        return (w.finish(), payload?.count ?? 0)
    }

    /// What became of a channel message on its recipient's home.
    enum Delivery: Sendable {
        case delivered
        /// The recipient's end is gone (the message crossed a close or a disconnect).
        case gone
        /// The recipient's socket refused it (slow consumer or closing).
        case refused
    }

    /// On the recipient's home: hands `text` to `party` if it still has its end of `channel`
    /// (to `sender`); a message that crossed a close or a disconnect is dropped, counted.
    @discardableResult
    func deliver(_ channel: UUID4, from sender: UUID4, to party: UUID4, _ text: String) -> Bool {
        deliverReporting(channel, from: sender, to: party, text) == .delivered
    }

    func deliverReporting(_ channel: UUID4, from sender: UUID4, to party: UUID4, _ text: String) -> Delivery {
        guard let end = registry.end(of: channel, heldBy: party), end.peer == sender,
              let socket = registry.connections[party]?.socket else {
            metrics.messagesDropped.increment()
            return .gone
        }
        switch sendTextReporting(socket, text) {
        case .queued: return .delivered
        // Closing: its end goes with it (when its close callback runs), as on a close.
        case .closed: return .gone
        case .dropped, .notLocal: return .refused
        }
    }

    // MARK: close

    private func close(_ r: Request) {
        let channelText = r.string("channelId")
        let fail = failure(r, "channel_close_failed", echoing: "channelId", channelText)
        guard case let (me, channelText)? = registeredSender(r, channelText, "channelId", fail: fail) else { return }
        guard let channel = UUID4(channelText), let end = registry.end(of: channel, heldBy: me) else {
            metrics.channelNotFound.increment()
            return fail("Channel not found")
        }
        let peer = end.peer, remote = remoteNode(of: end.peerSocket)
        // Another node's peer has no local home (never `shardIndex` below).
        let peerHome = remote == nil ? end.peerSocket.shard : -1
        if let remote {
            guard sendRemote(remote, .peerClosed(channel: channel, closer: me, party: peer)) else { return failDelivery(fail) }
        } else if peerHome != shardIndex {
            // The peer's home first: if it refuses, nothing changed and the client may retry.
            guard post(to: peerHome, { $0.peerClosed(channel, by: me, party: peer) }) else { return failDelivery(fail) }
        }
        removeEnd(channel, of: me, peer: peer)
        metrics.channelsClosed.increment()
        send(r.socket, "channel_closed", replyTo: r.replyTo) { $0.string("channelId", channelText) }
        if peerHome == shardIndex {
            if peer == me {
                send(r.socket, "channel_closed_notification", replyTo: nil) { $0.string("channelId", channelText) }
            } else {
                peerClosed(channel, by: me, party: peer)
            }
        }
    }

    @discardableResult
    func removeEnd(_ channel: UUID4, of party: UUID4, peer: UUID4) -> Bool {
        guard let end = registry.removeEnd(channel, of: party, peer: peer) else { return false }
        if end.isTarget { metrics.openChannels.decrement() }
        return true
    }

    /// On `party`'s home: its peer `closer` closed `channel` (or went away).
    func peerClosed(_ channel: UUID4, by closer: UUID4, party: UUID4) {
        // Absent when the party closed it too (both get channel_closed) or is gone itself.
        guard removeEnd(channel, of: party, peer: closer), let socket = registry.connections[party]?.socket else { return }
        send(socket, "channel_closed_notification", replyTo: nil) { $0.string("channelId", channel.description) }
    }

    /// On the peers' home: `gone` disconnected; each listed party loses its end.
    func peersGone(_ gone: UUID4, _ ends: [(channel: UUID4, party: UUID4)]) {
        for (channel, party) in ends { peerClosed(channel, by: gone, party: party) }
    }

    // MARK: disconnect

    /// Forgets connection `me` (its socket closed): leaves its role first, then closes every
    /// channel end, telling each peer's home (one post per home).
    private func disconnect(_ me: UUID4) {
        guard let record = registry.removeConnection(me) else {
            preconditionFailure("registered session \(me) without a record")
        }
        metrics.registeredConnections.decrement()
        // Keyed by the peer socket's node and shard (its top 16 bits): one post per home.
        var byHome: [UInt64: [(channel: UUID4, party: UUID4)]] = [:]
        for (channel, end) in record.channels {
            metrics.channelsClosedByDisconnect.increment()
            if end.isTarget { metrics.openChannels.decrement() }
            if end.peer != me { byHome[end.peerSocket.rawValue >> 48, default: []].append((channel, end.peer)) }
        }
        let notify = { [unowned self] in
            for (home, ends) in byHome {
                let node = Int(home >> 8), shard = Int(home & 0xFF)
                if let clusterNode, node != clusterNode {
                    sendRemoteReliable(node, .peersGone(gone: me, ends: ends))
                } else {
                    postReliable(to: shard) { $0.peersGone(me, ends) }
                }
            }
        }
        guard roleKeys != nil else {
            removeMember(me, from: record.role)
            return notify()
        }
        // Gone: nothing to write back for it (keeps unrestoredMembers within the registry).
        unrestoredMembers.remove(me)
        // In a cluster the peers hear of it once Redis removed the member: whoever saw the
        // notification then lists the role without it, on any node.
        removeMemberInCluster(me, from: record.role, then: notify)
    }

    // MARK: - The reference profile's open, message and close

    /// `open`, checked in the reference's order: the target ("Target connection not found",
    /// also for a missing or ill-typed `targetId`), then registration ("Connection not
    /// registered"); a channel to oneself is allowed.
    private func openReference(_ r: Request) {
        let fail = failure(r, "channel_open_failed")
        guard let targetText = r.string("targetId"), let target = UUID4(targetText) else {
            metrics.targetNotFound.increment()
            return fail("Target connection not found")
        }
        guard let me = sessions[r.socket]?.id else {
            return probe(r, home: target.home(shardCount: shardCount), .target, remote: (.target, target)) { $0.registry.connections[target] != nil }
        }
        openRegistered(r, me: me, target: target, targetText: targetText, fail: fail)
    }

    /// What `message` and `close` check first, in the reference's order: the channel ("Channel
    /// not found", also for a missing or ill-typed `channelId`), then registration and
    /// membership, which the probe answers from the channel's home (it may be on another shard
    /// or node). nil when `r` was answered.
    private func referenceEnd(_ r: Request, fail: (String) -> Void)
        -> (channelText: String, channel: UUID4, me: UUID4, end: ConnectionRegistry.ChannelEnd)? {
        guard let channelText = r.string("channelId"), let channel = UUID4(channelText) else {
            metrics.channelNotFound.increment()
            fail("Channel not found")
            return nil
        }
        let me = sessions[r.socket]?.id
        guard let me, let end = registry.end(of: channel, heldBy: me) else {
            probe(r, home: channel.home(shardCount: shardCount), .channel(registered: me != nil), remote: (.channel, channel)) { $0.registry.channelExists(channel) }
            return nil
        }
        return (channelText, channel, me, end)
    }

    /// `message`, checked in the reference's order: the channel ("Channel not found", also for
    /// a missing or ill-typed `channelId`), registration, membership ("Not authorized for this
    /// channel"). The reply leaves after the recipient's `channel_message` was queued.
    private func messageReference(_ r: Request) {
        let fail = failure(r, "channel_message_failed")
        guard case let (channelText, channel, me, end)? = referenceEnd(r, fail: fail) else { return }
        let (text, payloadBytes) = channelMessage(r, channelText)
        let peer = end.peer, peerHome = end.peerSocket.shard
        if let node = remoteNode(of: end.peerSocket) {
            guard routeOnNode(node, r.socket, r.replyTo, channelText, close: false, channel: channel, me: me, peer: peer, text: text, payloadBytes: payloadBytes) else { return failDelivery(fail) }
            return
        }
        if peerHome == shardIndex {
            return completeRouted(r.socket, close: false, channelText, deliverReporting(channel, from: me, to: peer, text), payloadBytes: payloadBytes, replyTo: r.replyTo)
        }
        let socket = r.socket, ticket = newTicket(), home = shardIndex
        let posted = post(to: peerHome) { peerHandler in
            let delivery = peerHandler.deliverReporting(channel, from: me, to: peer, text)
            peerHandler.postReliable(to: home) { $0.routedAnswered(socket, ticket, delivery, payloadBytes: payloadBytes) }
        }
        guard posted else { return failDelivery(fail) }
        wait(socket, .routed(ticket: ticket, replyTo: r.replyTo, close: false, channelText: channelText))
    }

    /// `close`, checked as `message` is. The peer's `channel_closed_notification` is queued
    /// before the closer's `channel_closed` (also on a channel to oneself).
    private func closeReference(_ r: Request) {
        let fail = failure(r, "channel_close_failed")
        guard case let (channelText, channel, me, end)? = referenceEnd(r, fail: fail) else { return }
        let peer = end.peer, peerHome = end.peerSocket.shard
        if let node = remoteNode(of: end.peerSocket) {
            guard routeOnNode(node, r.socket, r.replyTo, channelText, close: true, channel: channel, me: me, peer: peer, text: "", payloadBytes: 0) else { return failDelivery(fail) }
            removeEnd(channel, of: me, peer: peer)
            return
        }
        if peerHome == shardIndex {
            removeEnd(channel, of: me, peer: peer)
            if peer == me {
                send(r.socket, "channel_closed_notification", replyTo: nil) { $0.string("channelId", channelText) }
            } else {
                peerClosed(channel, by: me, party: peer)
            }
            return completeRouted(r.socket, close: true, channelText, .delivered, payloadBytes: 0, replyTo: r.replyTo)
        }
        // The peer's home first: if it refuses, nothing changed and the client may retry.
        let socket = r.socket, ticket = newTicket(), home = shardIndex
        let posted = post(to: peerHome) { peerHandler in
            peerHandler.peerClosed(channel, by: me, party: peer)
            peerHandler.postReliable(to: home) { $0.routedAnswered(socket, ticket, .delivered, payloadBytes: 0) }
        }
        guard posted else { return failDelivery(fail) }
        removeEnd(channel, of: me, peer: peer)
        wait(socket, .routed(ticket: ticket, replyTo: r.replyTo, close: true, channelText: channelText))
    }

    func routedAnswered(_ socket: SocketID, _ ticket: UInt64, _ delivery: Delivery, payloadBytes: Int) {
        guard case .routed(_, let replyTo, let close, let channelText)? = takeWaiting(socket, ticket) else { return }
        completeRouted(socket, close: close, channelText, delivery, payloadBytes: payloadBytes, replyTo: replyTo)
        resume(socket)
    }

    private func completeRouted(_ socket: SocketID, close: Bool, _ channelText: String, _ delivery: Delivery, payloadBytes: Int, replyTo: [UInt8]?) {
        if close {
            metrics.channelsClosed.increment()
            send(socket, "channel_closed", replyTo: replyTo) { $0.string("channelId", channelText) }
            return
        }
        switch delivery {
        case .delivered:
            metrics.messagesRouted.increment()
            metrics.payloadBytesRouted.wrappingAdd(payloadBytes, ordering: .relaxed)
            send(socket, "channel_message_sent", replyTo: replyTo) { $0.string("channelId", channelText) }
        case .gone:
            // The channel closed meanwhile: what the reference answers once it is deleted.
            metrics.channelNotFound.increment()
            sendReferenceError(socket, replyTo: replyTo, "Channel not found")
        case .refused:
            metrics.deliveryFailed.increment()
            sendReferenceError(socket, replyTo: replyTo, "Delivery failed")
        }
    }

    /// Asks `home` whether the target or channel of `r` exists, for the failure text the
    /// reference's check order gives (locally when `home` is this shard).
    private func probe(_ r: Request, home: Int, _ kind: Session.ProbeKind, remote: (ConnectionBrokerRemote.ProbeQuery, UUID4),
                       _ query: @escaping @Sendable (ConnectionBrokerHandler) -> Bool) {
        if let node = remoteNode(of: remote.1) {
            guard probeOnNode(node, r.socket, r.replyTo, kind, remote.0, remote.1) else {
                return sendReferenceError(r.socket, replyTo: r.replyTo, "Server busy")
            }
            return
        }
        if home == shardIndex { return completeProbe(r.socket, kind, found: query(self), replyTo: r.replyTo) }
        let socket = r.socket, ticket = newTicket(), origin = shardIndex
        let posted = post(to: home) { handler in
            let found = query(handler)
            handler.postReliable(to: origin) { $0.probeAnswered(socket, ticket, found) }
        }
        guard posted else { return sendReferenceError(socket, replyTo: r.replyTo, "Server busy") }
        wait(socket, .probe(ticket: ticket, replyTo: r.replyTo, kind: kind))
    }

    func probeAnswered(_ socket: SocketID, _ ticket: UInt64, _ found: Bool) {
        guard case .probe(_, let replyTo, let kind)? = takeWaiting(socket, ticket) else { return }
        completeProbe(socket, kind, found: found, replyTo: replyTo)
        resume(socket)
    }

    private func completeProbe(_ socket: SocketID, _ kind: Session.ProbeKind, found: Bool, replyTo: [UInt8]?) {
        let error: String
        switch (kind, found) {
        case (.target, false):
            metrics.targetNotFound.increment()
            error = "Target connection not found"
        case (.channel, false):
            metrics.channelNotFound.increment()
            error = "Channel not found"
        case (.target, true), (.channel(registered: false), true):
            metrics.notRegistered.increment()
            error = "Connection not registered"
        case (.channel(registered: true), true):
            metrics.notAuthorized.increment()
            error = "Not authorized for this channel"
        }
        sendReferenceError(socket, replyTo: replyTo, error)
    }
}
