import Switchboard

/// One chat message as the room keeps it: its number in the room, who, what, when.
struct ChatMessage: Sendable {
    /// The room's message number: 1, 2, 3... in the order the room's home shard took them.
    let offset: UInt64
    let name: String
    let text: String
    let timeMilliseconds: Int64
}

/// A room's state on its home shard (the shard that owns the room's channel): the bounded
/// history and who is in the room.
///
/// Thread rules: only its home shard's handler touches it, on that shard's thread. Every
/// message of the room is numbered and stored here before it is published to the channel,
/// so "what did I miss after offset N" has an exact answer for as long as N is in the history.
final class ChatRoom {
    let name: String
    let channel: ChannelName
    /// At most `historyLimit` messages, oldest first (a ring in an array: `start` is the oldest).
    private var ring: [ChatMessage] = []
    private var start = 0
    let historyLimit: Int
    /// The last offset given; 0 before the first message.
    private(set) var latestOffset: UInt64 = 0
    /// Sockets in the room (from any shard) and their nicknames.
    private(set) var members: [SocketID: String] = [:]

    init(name: String, historyLimit: Int) {
        precondition(historyLimit >= 1, "historyLimit must be >= 1")
        self.name = name
        self.channel = ChatRoom.channel(name)
        self.historyLimit = historyLimit
        ring.reserveCapacity(min(historyLimit, 64))
    }

    static func channel(_ room: String) -> ChannelName { ChannelName("chat:" + room) }

    /// Numbers and stores a message; the oldest goes once the history is full.
    func append(name: String, text: String, timeMilliseconds: Int64) -> ChatMessage {
        latestOffset += 1
        let message = ChatMessage(offset: latestOffset, name: name, text: text, timeMilliseconds: timeMilliseconds)
        if ring.count < historyLimit {
            ring.append(message)
        } else {
            ring[start] = message
            start = (start + 1) % historyLimit
        }
        assert(ring.count <= historyLimit)
        return message
    }

    /// The oldest offset still held (latestOffset + 1 when empty).
    var oldestOffset: UInt64 { ring.isEmpty ? latestOffset + 1 : ring[start].offset }

    /// What a client that saw every message up to `since` missed, in order. `covered` is false
    /// when the history no longer reaches back to `since + 1` (or `since` is from the future:
    /// the server restarted): the client must reload, and gets the whole history instead.
    /// Without `since` (a first visit), the last `recent` messages.
    func missed(since: UInt64?, recent: Int) -> (messages: [ChatMessage], covered: Bool) {
        let all = (0..<ring.count).map { ring[(start + $0) % ring.count] }
        guard let since else { return (Array(all.suffix(recent)), true) }
        guard since <= latestOffset, since + 1 >= oldestOffset else { return (all, false) }
        let missed = all.drop { $0.offset <= since }
        assert(missed.first.map { $0.offset == since + 1 } ?? (since == latestOffset))
        return (Array(missed), true)
    }

    /// Counts membership changes. The member list reaches a page by two paths (the join's
    /// history answer, sent to the socket, and presence messages, through the channel) that
    /// may overtake each other; the page keeps the list with the highest version.
    private(set) var membersVersion: UInt64 = 0

    func addMember(_ socketId: SocketID, name: String) {
        if members.updateValue(name, forKey: socketId) != name { membersVersion += 1 }
    }
    @discardableResult
    func removeMember(_ socketId: SocketID) -> Bool {
        guard members.removeValue(forKey: socketId) != nil else { return false }
        membersVersion += 1
        return true
    }

    /// Nicknames present, sorted, each once (two tabs of one person are one name).
    var memberNames: [String] { Set(members.values).sorted { $0.lowercased() < $1.lowercased() } }
}
