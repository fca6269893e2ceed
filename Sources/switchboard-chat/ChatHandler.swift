import Logging
import Switchboard
#if canImport(Glibc)
import Glibc
#endif

/// Limits of the browser chat (flags of `switchboard-chat`).
struct ChatLimits: Sendable {
    /// Messages each room keeps for reconnecting clients.
    var historyMessages = 500
    /// Messages a first visit gets.
    var recentMessages = 100
    /// Rooms a home shard keeps; past it, an empty room is forgotten to make space (or, none
    /// being empty, the join is refused).
    var maxRoomsPerShard = 10_000
    var maxTextCharacters = 2_000
    var maxNameCharacters = 32
    /// Messages a socket may send per second on average, and in a burst (flood control).
    var maxMessagesPerSecond = 5
    var messageBurst = 20
}

/// The browser chat's server side, one instance per shard.
///
/// The page's WebSocket (`/ws`) speaks text commands, one per message, fields separated by
/// LF: `join⏎ROOM⏎NAME⏎SINCE` (SINCE: the last offset the client has, empty on a first
/// visit) and `say⏎TEXT` (TEXT may hold LFs). The server answers with JSON (`ChatJSON`).
///
/// Where things live: a socket's room and nickname on the socket's shard (`seats`); a room's
/// history and members on its home shard, the owner of the room's channel (`rooms`). Commands
/// cross with `broker.execute(onShard:)` and reach the home shard's handler through `PerShard`.
/// Every message is numbered and stored on the home shard, then published to the channel, so
/// subscribers see the offsets in order and a rejoining client asks for "after N".
final class ChatHandler: WorkerHandler {
    let context: ShardContext
    let handlers: PerShard<ChatHandler>
    let limits: ChatLimits
    let metrics: ChatMetrics
    let logger: Logger

    /// This shard's sockets: their room, nickname and flood-control bucket.
    private var seats: [SocketID: Seat] = [:]
    private struct Seat {
        var room: String
        var name: String
        var bucket: MessageBucket
    }
    /// The rooms whose home is this shard.
    private var rooms: [String: ChatRoom] = [:]

    /// The chat's broker: one handler per shard, each reachable from the others through `PerShard`.
    static func broker(configuration: BrokerConfiguration, limits: ChatLimits, logger: Logger) -> Broker {
        let handlers = PerShard<ChatHandler>()
        let metrics = ChatMetrics()
        let broker = Broker(configuration: configuration, logger: logger) { context in
            let handler = ChatHandler(context, handlers: handlers, limits: limits, metrics: metrics)
            handlers[context] = handler
            return handler
        }
        broker.additionalMetricSamples = { metrics.samples() }
        return broker
    }

    init(_ context: ShardContext, handlers: PerShard<ChatHandler>, limits: ChatLimits, metrics: ChatMetrics) {
        self.context = context
        self.handlers = handlers
        self.limits = limits
        self.metrics = metrics
        self.logger = context.logger
    }

    // MARK: - The page

    func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply {
        guard request.method == .get || request.method == .head else { return .notHandled }
        guard let file = ChatPage.file(at: request.path) else { return .notHandled }
        return .response(WorkerResponse(status: .ok, headerFields: file.headerFields, body: file.bytes))
    }

    // MARK: - Sockets (on the socket's shard)

    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        guard case .text(let text) = message else { return refuse(socketId, "text messages only") }
        let head = text.prefix { $0 != "\n" }
        let rest = text.dropFirst(head.count + 1)
        switch head {
        case "join":
            let fields = rest.split(separator: "\n", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 3, let room = Self.validName(fields[0], limit: 64),
                  let name = Self.validName(fields[1], limit: limits.maxNameCharacters) else {
                return refuse(socketId, "join needs a room (1-64 characters) and a nickname (1-\(limits.maxNameCharacters))")
            }
            let since: UInt64?
            if fields[2].isEmpty { since = nil } else if let n = UInt64(fields[2]) { since = n } else {
                return refuse(socketId, "join: SINCE must be an offset")
            }
            join(socketId, room: room, name: name, since: since)
        case "say":
            guard seats[socketId] != nil else { return refuse(socketId, "join a room first") }
            let body = String(rest).trimmingWhitespace
            guard !body.isEmpty else { return }
            guard body.count <= limits.maxTextCharacters else {
                return refuse(socketId, "messages are limited to \(limits.maxTextCharacters) characters")
            }
            guard seats[socketId]!.bucket.take(ratePerSecond: limits.maxMessagesPerSecond, burst: limits.messageBurst,
                                               nowMilliseconds: Self.nowMilliseconds()) else {
                metrics.rateLimited.add(1, ordering: .relaxed)
                return refuse(socketId, "slow down: at most \(limits.maxMessagesPerSecond) messages a second")
            }
            let seat = seats[socketId]!
            let (room, name) = (seat.room, seat.name)
            atHome(of: room, socketId) { home in home.say(room, name: name, text: body, from: socketId) }
        default:
            refuse(socketId, "unknown command")
        }
    }

    func handleSocketClose(socketId: SocketID, token: [UInt8]?) {
        guard let room = seats.removeValue(forKey: socketId)?.room else { return }
        // The socket left its channel by itself; its membership lives on the room's home.
        atHome(of: room, nil) { home in home.leave(room, socketId) }
    }

    private func join(_ socketId: SocketID, room: String, name: String, since: UInt64?) {
        if let oldRoom = seats[socketId]?.room, oldRoom != room {
            context.unsubscribe(socketId, ChatRoom.channel(oldRoom))
            atHome(of: oldRoom, nil) { home in home.leave(oldRoom, socketId) }
        }
        // Subscribe first, then ask for the history: every message is then either in the
        // history answer or arrives live after it was ordered (or both: the page drops
        // offsets it has).
        switch context.subscribe(socketId, ChatRoom.channel(room)) {
        case .subscribed, .alreadySubscribed: break
        case let refusal: return refuse(socketId, "cannot join: \(refusal)")
        }
        // A rejoin keeps the socket's bucket: switching rooms does not refill it.
        let bucket = seats[socketId]?.bucket ?? MessageBucket(burst: limits.messageBurst, nowMilliseconds: Self.nowMilliseconds())
        seats[socketId] = Seat(room: room, name: name, bucket: bucket)
        atHome(of: room, socketId) { home in home.joined(room, socketId, name: name, since: since) }
    }

    /// Runs `body` with the room's home-shard handler, on that shard; when the home's inbox is
    /// full, tells `socketId` (if any) to try again.
    private func atHome(of room: String, _ socketId: SocketID?, _ body: @escaping @Sendable (ChatHandler) -> Void) {
        let home = Int(ChatRoom.channel(room).hash % UInt64(context.shardCount))
        let handlers = handlers
        let enqueued = context.broker.execute(onShard: home) { homeContext in
            guard let handler = handlers[homeContext] else { return }
            body(handler)
        }
        if case .refused = enqueued, let socketId { refuse(socketId, "the server is busy, try again") }
    }

    private func refuse(_ socketId: SocketID, _ text: String) {
        context.send(socketId, .text(ChatJSON.error(text)))
    }

    // MARK: - Rooms (on the room's home shard)

    private func room(_ name: String, create: Bool) -> ChatRoom? {
        if let room = rooms[name] { return room }
        guard create else { return nil }
        if rooms.count >= limits.maxRoomsPerShard {
            // Forget a room nobody is in (its history goes with it: a client coming back to
            // it is told to reload). Rare, so a scan is fine.
            guard let empty = rooms.first(where: { $0.value.members.isEmpty })?.key else {
                metrics.joinsRefused.add(1, ordering: .relaxed)
                return nil
            }
            rooms[empty] = nil
            metrics.roomsForgotten.add(1, ordering: .relaxed)
            logger.notice("chat: forgot empty room to make space (max_rooms_per_shard \(limits.maxRoomsPerShard))")
        }
        let room = ChatRoom(name: name, historyLimit: limits.historyMessages)
        rooms[name] = room
        return room
    }

    private func joined(_ name: String, _ socketId: SocketID, name nickname: String, since: UInt64?) {
        guard let room = room(name, create: true) else {
            context.broker.send(socketId, .text(ChatJSON.error("too many rooms on this server")))
            return
        }
        room.addMember(socketId, name: nickname)
        let (messages, covered) = room.missed(since: since, recent: limits.recentMessages)
        // To the socket, from here: it may already have live messages from the channel; the
        // page puts them after this answer, dropping offsets it has.
        context.broker.send(socketId, .text(ChatJSON.history(name, messages: messages, reset: !covered,
                                                             latest: room.latestOffset, members: room.memberNames,
                                                             membersVersion: room.membersVersion)))
        context.publish(room.channel, .text(ChatJSON.presence(name, room.memberNames, version: room.membersVersion)))
    }

    private func say(_ name: String, name nickname: String, text: String, from socketId: SocketID) {
        // The room exists unless it was forgotten for space: then the sender rejoins it.
        guard let room = room(name, create: true) else { return }
        if room.members[socketId] == nil { room.addMember(socketId, name: nickname) }
        let message = room.append(name: nickname, text: text, timeMilliseconds: Self.nowMilliseconds())
        if context.publish(room.channel, .text(ChatJSON.message(name, message))) == .refused {
            context.broker.send(socketId, .text(ChatJSON.error("the server is busy, message \(message.offset) was not delivered live")))
        }
    }

    private func leave(_ name: String, _ socketId: SocketID) {
        guard let room = rooms[name], room.removeMember(socketId) else { return }
        context.publish(room.channel, .text(ChatJSON.presence(name, room.memberNames, version: room.membersVersion)))
    }

    // MARK: - Helpers

    /// A room or nickname: trimmed, 1...limit characters, no control characters.
    static func validName(_ raw: String, limit: Int) -> String? {
        let s = raw.trimmingWhitespace
        guard !s.isEmpty, s.count <= limit, !s.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return nil }
        return s
    }

    static func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

extension StringProtocol {
    var trimmingWhitespace: String {
        let s = String(self)
        guard let first = s.firstIndex(where: { !$0.isWhitespace }),
              let last = s.lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(s[first...last])
    }
}
