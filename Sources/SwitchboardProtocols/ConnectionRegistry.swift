import Switchboard

// # The connection-broker registry, share-nothing
//
// Every record has exactly one owner shard and only that shard's thread reads or writes it:
// there is no lock and nothing shared between shards but the broker-wide message-id counter
// and the metrics (atomics). Shards talk by posting closures to each other's handler
// (`broker.execute(onShard:)` to the `PerShard` handler). A shard's inbox is FIFO by push, and
// a push is linearizable, so two posts to one shard run in the order they were made whenever
// one was made after the other in real time (same sender or not). Every ordering argument
// below rests on that.
//
// ## Who owns what
//
// | record                        | owner shard                                     | holds |
// |-------------------------------|-------------------------------------------------|-------|
// | connection `c`                | its socket's shard, c's *home*: `c.low % N`     | socket, role, c's channel ends, opens in flight |
// | role `r`                      | `FNV-1a-64(r) % N` (the core channels' hash)    | members in registration order (`RoleMembers`) |
// | channel `x` between `a`, `b`  | two *ends*: a's end on home(a), b's on home(b)  | peer id, peer socket, whether this end is the target |
//
// A connection id is drawn so that `id.low % N` is its socket's shard (`UUID4.random(home:)`),
// so any shard finds a target's or a peer's home from the id alone, with no directory.
// Why a channel is two ends and not one record on `hash(x) % N`: a channel has exactly two
// parties and each direction one sender; a third owner would add a hop (and a refusal point)
// to every message, whereas ordering already follows from FIFO home(a) -> home(b), and each
// end lives where its party's requests and disconnect are handled. A request naming a channel
// the sender has no end of fails at the sender's home ("Channel not found"), without a lookup.
//
// ## Requests
//
// A connection's requests are handled one at a time, in arrival order, on its home. Those that
// need another shard's answer park the connection's later requests (copied, bounded by
// `maxQueuedRequestBytes`; beyond it the socket is closed with 1013) until the answer is back,
// so replies still leave in request order. A local owner is called directly, no post.
//
//     register    home --admit(r, id)--> owner(r) --admitted | full--> home: record, `registered`
//     list        home --list(r, limit)--> owner(r) --ids--> home: `connections`
//     open        home(a) --open(a, t)--> home(t): t's end, `incoming_channel` to t
//                         --opened(x) | failure--> home(a): a's end, `channel_opened`
//     message     home(a) --deliver(x, text)--> home(b): `channel_message` if b's end of x
//                 exists; home(a) answers `channel_message_sent` once the post is accepted
//     close       home(a) --peerClosed(x)--> home(b): b's end removed, `channel_closed_notification`;
//                 home(a) removes a's end and answers `channel_closed`
//     disconnect  home(a) --remove(r, a)--> owner(r), then --peersGone([x])--> each peer's home
//
// Only register, list_by_role and open wait for an answer; message and close are one post.
// `maxChannelsPerConnection` counts ends plus opens in flight (so an incoming open cannot
// overtake an outgoing one past the limit); `maxConnectionsPerRole` is checked by the role's
// owner, exactly.
//
// ## Ordering (README "Order" row) and why it holds
//
// - Replies to one connection come in request order: its requests run one at a time.
// - Per channel and direction, messages arrive in send order: one sender home, one receiver
//   home, FIFO between them (or one thread when they are the same shard).
// - `incoming_channel` before any `channel_message` on the channel: home(t) sends it before it
//   answers `opened`; the opener learns the channel id only from that answer, and its messages
//   are posted afterwards; the target's own messages follow it on its own socket.
// - `channel_closed_notification` after the messages the closer sent before closing: the
//   closer's `deliver` posts precede its `peerClosed` post on the same FIFO.
// - A disconnect is visible to anyone who saw one of its notifications: the role removal is
//   posted before the notifications and ends are removed before anything is posted, so a
//   `list_by_role` or `open` made after a notification arrived finds the connection gone.
// - `list_by_role` is in registration order: the order the role's owner admitted the members,
//   which follows real time (a `registered` answered before another register was sent is
//   admitted first).
//
// ## Refused posts (inboxes are bounded)
//
// - The first hop of a request (admit, list, open, deliver, peerClosed) may be refused: the
//   request gets its failure ("Server busy" for register/list_by_role, "Delivery failed" for
//   open/message/close), nothing changed, counted (`cb_cross_shard_refused_total`).
// - Answers and clean-ups (admitted, ids, opened, remove, peersGone) cannot fail without losing
//   state: a refused one is kept in a per-destination FIFO outbox on the sending shard, and every
//   later post to that destination queues behind it (a request's first hop is refused instead,
//   so nothing overtakes). The outbox is retried on every handler entry and by the handler's
//   retry post to its own shard; counted (`cb_cross_shard_retried_total`). It is bounded by the
//   state it reports on: one answer per connection in flight, one clean-up per channel end.
//   Cost: while a destination stays full, the retry post keeps this shard's loop turning (it
//   still serves its sockets); the handler API has no timer to wait with instead.
//
// ## list_by_role cost
//
// `RoleMembers` is an intrusive doubly linked list in a slab plus an id -> slot index: append
// and remove O(1), the first k members in O(k). `maxListResults` caps k. Entries visited are
// counted (`cb_list_entries_visited_total`).
//
// ## What changed for clients (the closest to the mutex version; README rows in docs-pending)
//
// - Both parties close one channel at the same moment: both get `channel_closed` and neither a
//   notification (before: one `channel_closed`, one notification, one "Channel not found").
// - A message that crosses its peer's close or disconnect is dropped at the peer's home
//   (counted, `cb_messages_dropped_total`) after the sender got `channel_message_sent`, which
//   means "handed to the recipient's shard"; the sender then gets the notification (the old
//   registry had the same window for a peer disconnecting).
// - `counts` and the gauges are sums of per-shard updates: exact once the posts in flight are
//   handled, not at one instant.

/// One shard's part of the registry: the connections whose home is this shard and the roles
/// this shard owns. Plain data, no I/O, no messages: `ConnectionBrokerHandler` drives it.
/// Not thread-safe: used only on its shard's thread.
struct ConnectionRegistry {
    /// One end of a channel, kept in its party's connection record.
    struct ChannelEnd {
        /// The other party (the connection itself for a self channel).
        var peer: UUID4
        var peerSocket: SocketID
        /// Whether this end is the target's (the end created first; it carries the channel in
        /// the `open_channels` gauge, so a channel counts once however its ends go).
        var isTarget: Bool
    }

    /// A registered connection, on its home shard.
    struct Connection {
        let socket: SocketID
        let role: String
        /// Cluster: the role's sequence number Redis gave the registration (its place in the
        /// role), so a member written back after Redis lost it returns to the same place. 0 on
        /// one node.
        var clusterSequence: Int64 = 0
        var channels: [UUID4: ChannelEnd] = [:]
        /// Opens this connection sent that have not been answered (0 or 1: requests run one at
        /// a time); counted against `maxChannelsPerConnection`.
        var opensInFlight = 0

        var channelsAndOpens: Int { channels.count + opensInFlight }
    }

    private(set) var connections: [UUID4: Connection] = [:]
    /// The target of every channel whose target end lives here (a channel id's home is its
    /// target's home): answers "does this channel exist" for the `reference` profile's
    /// "Not authorized for this channel" without asking every shard.
    private var channelTargets: [UUID4: UUID4] = [:]
    private var roles: [String: RoleMembers] = [:]

    // MARK: - Roles (this shard is their owner)

    /// Appends `id` to `role` unless the role has `maxPerRole` members.
    mutating func admit(_ id: UUID4, to role: String, maxPerRole: Int) -> Bool {
        if let members = roles[role], members.count >= maxPerRole { return false }
        roles[role, default: RoleMembers()].append(id)
        return true
    }

    /// The `limit` oldest members of `role` and the role's size; adds the entries read to
    /// `visited`.
    func members(of role: String, limit: Int, visited: inout Int) -> (ids: [UUID4], total: Int) {
        guard let members = roles[role] else { return ([], 0) }
        return (members.first(limit, visited: &visited), members.count)
    }

    mutating func removeMember(_ id: UUID4, from role: String) {
        guard var members = roles.removeValue(forKey: role) else { return }
        // Taken out of the dictionary while mutated: no copy of the member list.
        members.remove(id)
        if !members.isEmpty { roles[role] = members }
    }

    var roleCount: Int { roles.count }

    // MARK: - Connections (this shard is their home)

    mutating func addConnection(_ id: UUID4, socket: SocketID, role: String, clusterSequence: Int64 = 0) {
        precondition(connections[id] == nil, "connection \(id) registered twice")
        assert(clusterSequence >= 0, "a sequence number is positive, or 0 for none")
        connections[id] = Connection(socket: socket, role: role, clusterSequence: clusterSequence)
    }

    mutating func removeConnection(_ id: UUID4) -> Connection? {
        guard let record = connections.removeValue(forKey: id) else { return nil }
        for (channel, end) in record.channels where end.isTarget { channelTargets[channel] = nil }
        return record
    }

    /// Whether `channel` exists (its target end is here; call it on the channel id's home).
    func channelExists(_ channel: UUID4) -> Bool { channelTargets[channel] != nil }

    /// The end of `channel` held by `party`, if `party` has one.
    func end(of channel: UUID4, heldBy party: UUID4) -> ChannelEnd? {
        connections[party]?.channels[channel]
    }

    mutating func setOpensInFlight(_ id: UUID4, _ delta: Int) {
        connections[id]?.opensInFlight += delta
        assert((connections[id]?.opensInFlight ?? 0) >= 0)
    }

    enum AcceptResult { case accepted(UUID4, targetSocket: SocketID), targetNotFound, targetTooMany }

    /// The target side of an open: creates `target`'s end of a new channel to `opener`.
    /// The channel id's home is `home` (this shard, the target's home), so its existence can be
    /// asked of one shard.
    mutating func acceptChannel(target: UUID4, opener: UUID4, openerSocket: SocketID, maxChannels: Int, home: Int, shardCount: Int, node: Int? = nil) -> AcceptResult {
        guard let t = connections[target] else { return .targetNotFound }
        if t.channelsAndOpens >= maxChannels { return .targetTooMany }
        var channel = UUID4.random(home: home, shardCount: shardCount, node: node)
        // Unique among this shard's channels (2^-122 per pair elsewhere: ids are random).
        while channelTargets[channel] != nil { channel = UUID4.random(home: home, shardCount: shardCount, node: node) }
        connections[target]!.channels[channel] = ChannelEnd(peer: opener, peerSocket: openerSocket, isTarget: true)
        channelTargets[channel] = target
        return .accepted(channel, targetSocket: t.socket)
    }

    /// Adds `party`'s end; false when `party` is gone (or, astronomically rarely, already holds
    /// an end with this id).
    mutating func addEnd(_ channel: UUID4, to party: UUID4, _ end: ChannelEnd) -> Bool {
        guard connections[party] != nil, connections[party]!.channels[channel] == nil else { return false }
        connections[party]!.channels[channel] = end
        return true
    }

    /// Removes `party`'s end of `channel` if its peer is `peer`; the removed end.
    mutating func removeEnd(_ channel: UUID4, of party: UUID4, peer: UUID4) -> ChannelEnd? {
        guard let end = connections[party]?.channels[channel], end.peer == peer else { return nil }
        connections[party]!.channels[channel] = nil
        if end.isTarget { channelTargets[channel] = nil }
        return end
    }
}
