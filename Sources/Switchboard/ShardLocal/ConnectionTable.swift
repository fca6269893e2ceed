import SwitchboardIO
#if canImport(Glibc)
import Glibc
#endif

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
///
/// Memory (issue 16 item 2): 16 bytes (`WebSocketIdleMemoryTests.layouts` checks it). The
/// tenant's id is not stored here: `ConnectionTable.tenants` keeps its generation in 4 bytes.
struct ConnectionSlot {
    var phase = ConnectionPhase.free
    /// Channels this socket is subscribed to (bounded by max_subscriptions_per_socket). On the
    /// slot, not the WebSocket session: a handler may subscribe in `handleUpgrade`, before the
    /// session exists.
    var subscriptions: Set<ChannelName> = []
}

/// One shard's connection slots, shared by its drivers. Shard thread only.
///
/// Both arrays are allocated once for the shard's `maxConnectionsPerShard` and initialized as
/// slots are first used (the shard hands out slots from the bottom), so their pages become
/// resident with use, as the shard's own `Connection` table does: no geometric growth (a Swift
/// array kept up to twice the slots it needed, and copied them on every doubling).
final class ConnectionTable {
    /// Slots `0..<highWater` are initialized; a slot's contents are meaningful only while
    /// `isCurrent` holds for its tenant.
    let slots: UnsafeMutablePointer<ConnectionSlot>
    /// Per slot: the tenant's generation (bits 8...31, the 24 bits of `SocketID.generation`),
    /// `occupiedBit` from open until release, and `acceptsFramesBit` while channel frames may be
    /// queued (from open until a close frame is queued on the WebSocket, i.e. while its
    /// lifecycle `maySend`). Outside `slots` on purpose: the fan-out reads it once per
    /// subscriber and per message, and a `let` pointer is read with no exclusivity check and no
    /// retain of the session.
    private let tenants: UnsafeMutablePointer<UInt32>
    private static let occupiedBit: UInt32 = 1
    private static let acceptsFramesBit: UInt32 = 2
    /// The WebSocket negotiated permessage-deflate (its sends go through the codec's
    /// compressor). Read per send from here for the same reason as `acceptsFramesBit`: asking
    /// the session's codec copied the codec out of the session (retains, a dynamic exclusivity
    /// check) once per message.
    private static let compressesFramesBit: UInt32 = 4
    /// The bits that are flags, not the tenant's identity.
    private static let flagBits: UInt32 = acceptsFramesBit | compressesFramesBit
    /// Slots initialized so far.
    private(set) var highWater = 0
    /// Node and shard bits of this shard's ids (`SocketID.rawValue >> 48`).
    private let ownerBits: UInt64
    let capacity: Int

    /// - Parameters:
    ///   - capacity: slots at most (the shard's `maxConnectionsPerShard`).
    ///   - shard, node: whose ids the table holds (any other id is not current).
    init(capacity: Int, shard: Int, node: Int) {
        precondition(capacity >= 1 && capacity <= SocketID.maxSlots)
        self.capacity = capacity
        ownerBits = SocketID(node: node, shard: shard, slot: 0, generation: 0).rawValue >> 48
        // Zeroed (calloc: fresh zero pages for a large table, so no more resident than
        // `allocate`): the event loops read a slot's first word ahead of its events
        // (`prefetchTable`), also for slots the table has not initialized yet (an outbound
        // connection's, which never opens here), and zero there means "no session".
        guard let zeroed = calloc(capacity, MemoryLayout<ConnectionSlot>.stride) else {
            fatalError("ConnectionTable: calloc of \(capacity) slots failed")
        }
        slots = zeroed.bindMemory(to: ConnectionSlot.self, capacity: capacity)
        tenants = .allocate(capacity: capacity)
    }

    deinit {
        slots.deinitialize(count: highWater)
        free(slots)
        tenants.deallocate()
    }

    @inline(__always) private static func tenant(_ id: SocketID) -> UInt32 { id.generation << 8 | occupiedBit }

    /// The bits of a slot's first word (its `phase`) that are the session's address: Swift keeps
    /// the enum's case in the reference's spare bits, on x86-64 the top four and the low three,
    /// which a heap object's address never sets. `ConnectionTableTests` checks it for both kinds
    /// of session.
    static let sessionReferenceMask: UInt = 0x0FFF_FFFF_FFFF_FFF8

    /// The slots as the shard's event loops prefetch them (`HandlerSlotTable`): the session
    /// behind each slot, its bytes a WebSocket message touches (`WebSocketSession.hotBytes`).
    var prefetchTable: HandlerSlotTable {
        assert(MemoryLayout<ConnectionSlot>.offset(of: \.phase) == 0, "the phase is not a slot's first word")
        return HandlerSlotTable(base: UnsafeRawPointer(slots), strideBytes: MemoryLayout<ConnectionSlot>.stride,
                                referenceMask: Self.sessionReferenceMask,
                                hotFirstByte: WebSocketSession.hotBytes.lowerBound, hotLastByte: WebSocketSession.hotBytes.upperBound - 1)
    }

    func open(_ id: SocketID, _ session: HTTPSession) {
        let slot = id.slot
        precondition(slot < capacity, "slot \(slot) beyond the shard's connection capacity")
        precondition(id.rawValue >> 48 == ownerBits, "\(id) belongs to another shard")
        while highWater <= slot {
            (slots + highWater).initialize(to: ConnectionSlot())
            tenants[highWater] = 0
            highWater += 1
        }
        assert(tenants[slot] & Self.occupiedBit == 0, "slot \(slot) opened twice")
        assert(slots[slot].subscriptions.isEmpty)
        slots[slot] = ConnectionSlot(phase: .http(session))
        tenants[slot] = Self.tenant(id) | Self.acceptsFramesBit
    }

    /// Frees the slot; returns what it held.
    func release(_ id: SocketID) -> ConnectionSlot {
        assert(isCurrent(id), "release of a stale id")
        let old = slots[id.slot]
        // Drop parser, codec and subscriptions now: a closed slot must not hold memory.
        slots[id.slot] = ConnectionSlot()
        tenants[id.slot] = 0
        return old
    }

    /// Whether `id` is the slot's current tenant (not a stale id of an earlier one).
    @inline(__always) func isCurrent(_ id: SocketID) -> Bool {
        let slot = id.slot
        guard slot < highWater, id.rawValue >> 48 == ownerBits else { return false }
        return tenants[slot] & ~Self.flagBits == Self.tenant(id)
    }

    @inline(__always) func webSocket(_ id: SocketID) -> WebSocketSession? {
        guard isCurrent(id), case .webSocket(let session) = slots[id.slot].phase else { return nil }
        return session
    }

    /// The WebSocket session in `slot`, without taking a reference to it: for a call that
    /// finishes before the slot can change (the caller documents why), so that it costs no
    /// retain and release of the session (issue 16 item 3).
    @inline(__always) func unretainedWebSocket(slot: Int) -> Unmanaged<WebSocketSession>? {
        guard case .webSocket(let session) = slots[slot].phase else { return nil }
        return .passUnretained(session)
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
        if case .free = phase { assertionFailure("a current slot is freed by release") }
        slots[id.slot].phase = phase
        if case .webSocket(let session) = phase {
            if session.compresses { tenants[id.slot] |= Self.compressesFramesBit } else { tenants[id.slot] &= ~Self.compressesFramesBit }
        }
    }

    /// Whether the current WebSocket of `id`'s slot compresses its messages (see `compressesFramesBit`).
    @inline(__always) func compresses(_ id: SocketID) -> Bool {
        assert(id.slot < capacity)
        return tenants[id.slot] & Self.compressesFramesBit != 0
    }

    /// Channel frames stop for good (a close frame is queued; see `acceptsChannelFrames`).
    func stopChannelFrames(_ id: SocketID) {
        assert(isCurrent(id))
        tenants[id.slot] &= ~Self.acceptsFramesBit
    }

    /// Whether channel frames may be queued on a current socket (see `tenants`).
    @inline(__always) func acceptsChannelFrames(_ id: SocketID) -> Bool {
        assert(id.slot < highWater)
        return tenants[id.slot] & Self.acceptsFramesBit != 0
    }

    func insertSubscription(_ id: SocketID, _ channel: ChannelName) { slots[id.slot].subscriptions.insert(channel) }
    func removeSubscription(_ id: SocketID, _ channel: ChannelName) -> Bool { slots[id.slot].subscriptions.remove(channel) != nil }

    /// Current tenants, for draining.
    var currentIDs: [SocketID] {
        var ids: [SocketID] = []
        for slot in 0..<highWater where tenants[slot] & Self.occupiedBit != 0 {
            ids.append(SocketID(rawValue: ownerBits << 48 | UInt64(tenants[slot] >> 8) << 24 | UInt64(slot)))
        }
        return ids
    }
}
