import Switchboard
import Synchronization

/// A random (version 4) UUID, the broker's connection and channel id. Its text form is the
/// canonical lowercase 8-4-4-4-12; only that exact form is accepted from clients (ids are
/// compared as strings in the protocol, so "ABC..." never names the same thing as "abc...").
struct UUID4: Hashable, Sendable, CustomStringConvertible {
    let high: UInt64
    let low: UInt64

    /// 122 random bits from the system's CSPRNG (`getrandom` on Linux), version 4 and variant
    /// 10xx set.
    static func random() -> UUID4 {
        var g = SystemRandomNumberGenerator()
        let h = g.next() as UInt64, l = g.next() as UInt64
        return UUID4(high: (h & ~0xF000) | 0x4000, low: (l & ~(0xC000_0000_0000_0000 as UInt64)) | 0x8000_0000_0000_0000)
    }

    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Parses the canonical lowercase text form (any version); nil for anything else.
    init?(_ text: String) {
        var h: UInt64 = 0, l: UInt64 = 0, n = 0, i = 0
        for c in text.utf8 {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard c == UInt8(ascii: "-") else { return nil }
            } else {
                let v: UInt64
                switch c {
                case 0x30...0x39: v = UInt64(c - 0x30)
                case 0x61...0x66: v = UInt64(c - 0x61 + 10)
                default: return nil
                }
                if n < 16 { h = h << 4 | v } else { l = l << 4 | v }
                n += 1
            }
            i += 1
            if i > 36 { return nil }
        }
        guard i == 36 else { return nil }
        high = h
        low = l
    }

    var description: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(36)
        for k in 0..<32 {
            if k == 8 || k == 12 || k == 16 || k == 20 { out.append(UInt8(ascii: "-")) }
            let word = k < 16 ? high : low
            let shift = UInt64(60 - 4 * (k % 16))
            out.append(digits[Int((word >> shift) & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The broker-wide state of the protocol: registered connections, roles and channels.
///
/// Design choice: ONE registry for all shards, protected by a `Synchronization.Mutex`. Every
/// critical section is a few dictionary operations (no I/O, no JSON, no allocation beyond the
/// dictionaries' own; `list` copies ids out and sorts outside the lock); messages are built and
/// sent after the lock is released. This is simple and correct under concurrent shards (open
/// versus disconnect, close versus message) because each operation is atomic.
///
/// Long-term goal is share-nothing: each connection's record would live on its own shard (its
/// socket's shard already handles it), channels would be owned by hash(channelId) % N like the
/// core's pub/sub channels, and cross-shard operations would be messages between shards. Roles
/// (a broker-wide index) would then be the only shared structure. Not done yet.
final class ConnectionRegistry: Sendable {
    struct Connection {
        var socket: SocketID
        var role: String
        var seq: UInt64
        var channels: Set<UUID4> = []
    }

    struct Channel {
        var opener: UUID4
        var openerSocket: SocketID
        var target: UUID4
        var targetSocket: SocketID

        /// The other party's id and socket, or nil when `party` is not a party.
        func peer(of party: UUID4) -> (UUID4, SocketID)? {
            if party == opener { return (target, targetSocket) }
            if party == target { return (opener, openerSocket) }
            return nil
        }
    }

    struct State {
        var connections: [UUID4: Connection] = [:]
        /// Role -> members, each with its registration sequence number (for ordered lists).
        var roles: [String: [UUID4: UInt64]] = [:]
        var channels: [UUID4: Channel] = [:]
        var seq: UInt64 = 0
    }

    private let state = Mutex(State())

    enum RegisterResult { case registered(UUID4), roleFull }

    func register(socket: SocketID, role: String, maxPerRole: Int) -> RegisterResult {
        var id = UUID4.random()
        return state.withLock { s in
            if let members = s.roles[role], members.count >= maxPerRole { return .roleFull }
            while s.connections[id] != nil { id = UUID4.random() }
            s.seq += 1
            s.connections[id] = Connection(socket: socket, role: role, seq: s.seq)
            s.roles[role, default: [:]][id] = s.seq
            return .registered(id)
        }
    }

    /// The ids registered with `role`, oldest registration first, at most `limit`; and whether
    /// the list was cut.
    func list(role: String, limit: Int) -> ([UUID4], Bool) {
        let members: [(UUID4, UInt64)] = state.withLock { s in
            guard let m = s.roles[role] else { return [] }
            return m.map { ($0.key, $0.value) }
        }
        let sorted = members.sorted { $0.1 < $1.1 }
        return (sorted.prefix(max(0, limit)).map { $0.0 }, sorted.count > limit)
    }

    func socket(of id: UUID4) -> SocketID? {
        state.withLock { $0.connections[id]?.socket }
    }

    enum OpenResult { case opened(UUID4, SocketID), targetNotFound, tooMany, targetTooMany }

    func open(from opener: UUID4, to target: UUID4, maxChannels: Int) -> OpenResult {
        var channelId = UUID4.random()
        return state.withLock { s in
            guard let o = s.connections[opener] else { return .targetNotFound }
            guard let t = s.connections[target] else { return .targetNotFound }
            if o.channels.count >= maxChannels { return .tooMany }
            if t.channels.count >= maxChannels { return .targetTooMany }
            while s.channels[channelId] != nil { channelId = UUID4.random() }
            s.channels[channelId] = Channel(opener: opener, openerSocket: o.socket, target: target, targetSocket: t.socket)
            s.connections[opener]!.channels.insert(channelId)
            s.connections[target]!.channels.insert(channelId)
            return .opened(channelId, t.socket)
        }
    }

    /// The peer's socket for a message on `channel` from `party`; nil when the channel does not
    /// exist or `party` is not one of its two ends.
    func route(channel: UUID4, from party: UUID4) -> SocketID? {
        state.withLock { s in s.channels[channel]?.peer(of: party)?.1 }
    }

    /// Closes `channel` if `party` is one of its ends; returns the other end's socket.
    func close(channel: UUID4, by party: UUID4) -> SocketID? {
        state.withLock { s in
            guard let c = s.channels[channel], let (peer, peerSocket) = c.peer(of: party) else { return nil }
            s.channels[channel] = nil
            s.connections[party]?.channels.remove(channel)
            s.connections[peer]?.channels.remove(channel)
            return peerSocket
        }
    }

    /// Forgets a connection and closes all its channels; returns (channel, peer socket) for
    /// each, to notify.
    func disconnect(_ id: UUID4) -> [(UUID4, SocketID)] {
        state.withLock { s in
            guard let c = s.connections.removeValue(forKey: id) else { return [] }
            s.roles[c.role]?[id] = nil  // in place, no copy of the member list
            if s.roles[c.role]?.isEmpty == true { s.roles[c.role] = nil }
            var closed: [(UUID4, SocketID)] = []
            closed.reserveCapacity(c.channels.count)
            for ch in c.channels {
                guard let entry = s.channels.removeValue(forKey: ch), let (peer, peerSocket) = entry.peer(of: id) else { continue }
                if peer != id { s.connections[peer]?.channels.remove(ch) }
                closed.append((ch, peerSocket))
            }
            return closed
        }
    }

    var counts: (connections: Int, channels: Int) {
        state.withLock { ($0.connections.count, $0.channels.count) }
    }
}
