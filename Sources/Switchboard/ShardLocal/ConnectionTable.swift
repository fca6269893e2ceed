import SwitchboardIO

/// What a connection slot speaks right now.
enum ConnectionPhase {
    /// No connection (or it closed): the slot holds nothing.
    case free
    /// HTTP/1.1, requests read in order.
    case http(HTTPSession)
    /// Switched to WebSocket after a successful upgrade.
    case webSocket(WebSocketSession)
}

/// Per-connection protocol state, indexed by the connection's slot. Kept small: it exists for
/// every slot ever used, and a closed slot holds no parser, codec or subscription.
struct ConnectionSlot {
    /// The current tenant (meaningless while `.free`).
    var id = SocketID(rawValue: 0)
    var phase = ConnectionPhase.free
    /// Channels this socket is subscribed to (bounded by max_subscriptions_per_socket). On the
    /// slot, not the WebSocket session: a handler may subscribe in `handleUpgrade`, before the
    /// session exists.
    var subscriptions: Set<ChannelName> = []
}

/// One shard's connection slots, shared by its drivers. Shard thread only.
final class ConnectionTable {
    private(set) var slots: [ConnectionSlot] = []
    /// Per slot: channel frames may be queued (true from open until a close frame is queued on
    /// the WebSocket, i.e. while its lifecycle `maySend`). Outside `slots` on purpose: the
    /// fan-out reads it once per subscriber and per message, and a `let` pointer is read with
    /// no exclusivity check and no retain of the array's buffer or of the session.
    private let acceptsFrames: UnsafeMutablePointer<Bool>
    /// Per slot: the WebSocket negotiated permessage-deflate (its sends go through the codec's
    /// compressor). Read per send, next to `acceptsFrames` for the same reason: asking the
    /// session's codec copied the codec out of the session (retains, a dynamic exclusivity
    /// check) once per message.
    private let compressesFrames: UnsafeMutablePointer<Bool>
    let capacity: Int

    /// - Parameter capacity: slots at most (the shard's `maxConnectionsPerShard`).
    init(capacity: Int) {
        precondition(capacity >= 1)
        self.capacity = capacity
        acceptsFrames = .allocate(capacity: capacity)
        acceptsFrames.initialize(repeating: false, count: capacity)
        compressesFrames = .allocate(capacity: capacity)
        compressesFrames.initialize(repeating: false, count: capacity)
    }

    deinit {
        acceptsFrames.deinitialize(count: capacity)
        acceptsFrames.deallocate()
        compressesFrames.deinitialize(count: capacity)
        compressesFrames.deallocate()
    }

    func open(_ id: SocketID, _ session: HTTPSession) {
        let slot = id.slot
        precondition(slot < capacity, "slot \(slot) beyond the shard's connection capacity")
        while slots.count <= slot { slots.append(ConnectionSlot()) }
        if case .free = slots[slot].phase {} else { assertionFailure("slot \(slot) opened twice") }
        assert(slots[slot].subscriptions.isEmpty)
        slots[slot] = ConnectionSlot(id: id, phase: .http(session))
        acceptsFrames[slot] = true
        compressesFrames[slot] = false
    }

    /// Frees the slot; returns what it held.
    func release(_ id: SocketID) -> ConnectionSlot {
        assert(isCurrent(id), "release of a stale id")
        let old = slots[id.slot]
        // Drop parser, codec and subscriptions now: a closed slot must not hold memory.
        slots[id.slot] = ConnectionSlot()
        acceptsFrames[id.slot] = false
        compressesFrames[id.slot] = false
        return old
    }

    /// Whether `id` is the slot's current tenant (not a stale id of an earlier one).
    @inline(__always) func isCurrent(_ id: SocketID) -> Bool {
        let slot = id.slot
        guard slot < slots.count, slots[slot].id == id else { return false }
        if case .free = slots[slot].phase { return false }
        return true
    }

    @inline(__always) func webSocket(_ id: SocketID) -> WebSocketSession? {
        guard isCurrent(id), case .webSocket(let session) = slots[id.slot].phase else { return nil }
        return session
    }

    /// Whether `id` is current and a WebSocket (without taking a reference to its session).
    @inline(__always) func isWebSocket(_ id: SocketID) -> Bool {
        guard isCurrent(id), case .webSocket = slots[id.slot].phase else { return false }
        return true
    }

    @inline(__always) func http(_ id: SocketID) -> HTTPSession? {
        guard isCurrent(id), case .http(let session) = slots[id.slot].phase else { return nil }
        return session
    }

    func setPhase(_ id: SocketID, _ phase: ConnectionPhase) {
        assert(isCurrent(id))
        slots[id.slot].phase = phase
        if case .webSocket(let session) = phase { compressesFrames[id.slot] = session.compresses }
    }

    /// Whether the current WebSocket of `id`'s slot compresses its messages (see `compressesFrames`).
    @inline(__always) func compresses(_ id: SocketID) -> Bool {
        assert(id.slot < capacity)
        return compressesFrames[id.slot]
    }

    /// Channel frames stop for good (a close frame is queued; see `acceptsChannelFrames`).
    func stopChannelFrames(_ id: SocketID) {
        assert(isCurrent(id))
        acceptsFrames[id.slot] = false
    }

    /// Whether channel frames may be queued on a current socket (see `acceptsFrames`).
    @inline(__always) func acceptsChannelFrames(_ id: SocketID) -> Bool {
        assert(id.slot < capacity)
        return acceptsFrames[id.slot]
    }

    func insertSubscription(_ id: SocketID, _ channel: ChannelName) { slots[id.slot].subscriptions.insert(channel) }
    func removeSubscription(_ id: SocketID, _ channel: ChannelName) -> Bool { slots[id.slot].subscriptions.remove(channel) != nil }

    /// Current tenants, for draining.
    var currentIDs: [SocketID] {
        slots.compactMap { slot in
            if case .free = slot.phase { return nil }
            return slot.id
        }
    }
}
