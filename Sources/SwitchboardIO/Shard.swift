import Atomics
import CLiburing
#if canImport(Glibc)
import Glibc
#endif

/// Work posted to a shard from another thread. (Accepted sockets have their own queue, see
/// `Shard.acceptedSockets`.)
package enum ShardTask: Sendable {
    /// A closure to run on the shard thread, or its refusal path if the shard never will.
    case run(ShardWork)
    /// Begin graceful shutdown; force-close what is left at the deadline (monotonic ms).
    case drain(deadlineMilliseconds: Int64)
}

/// A closure for a shard's thread, and what to do instead when the shard will never run it.
///
/// Exactly one of `body` (on the shard thread) and `refused` (on the posting thread when
/// `post` refuses at once, or on the shard thread when the shard stops with the work still in
/// its inbox) is called, once. Work that completes something another thread waits for (a
/// continuation, a reply) must pass `refused`, or a stop can leave the waiter hanging.
package struct ShardWork: Sendable {
    let body: @Sendable (Shard) -> Void
    let refused: (@Sendable (ShardRefusal) -> Void)?

    package init(_ body: @escaping @Sendable (Shard) -> Void, orElse refused: (@Sendable (ShardRefusal) -> Void)? = nil) {
        self.body = body
        self.refused = refused
    }
}

/// A socket the acceptor hands to an epoll shard (io_uring shards get theirs by MSG_RING).
struct AcceptedSocket {
    let fd: Int32
    /// Accepted on the TLS listener: the shard gives it a TLS session.
    let tls: Bool
}

/// Why a shard did not take, or will not run, posted work.
package enum ShardRefusal: Error, Sendable, Equatable {
    /// The inbox was full at that moment (counted in `switchboard_inbox_full_total`); a later
    /// post may succeed.
    case inboxFull
    /// The shard has stopped, or never started: it will not run work again.
    case stopped
}

/// What `Shard.post` did with a task.
package enum ShardPostResult: Sendable, Equatable {
    /// In the inbox: it runs on the shard thread, or (work only) is refused if the shard stops
    /// first.
    case queued
    /// Not taken; a `ShardWork`'s `refused` has already been called.
    case refused(ShardRefusal)

    package var isQueued: Bool { self == .queued }
}

/// Where a shard is in its life. It only moves forward:
/// `created → running → draining → stopped`, or `created → stopped` when start-up failed.
///
/// Posted work is taken in every state but `stopped` (a draining shard still runs the work
/// that finishes its connections); once `stopped`, `post` refuses and whatever was left in
/// the inbox has been refused (`ShardWork`) or closed (accepted sockets).
package enum ShardLifecycle: UInt8, Sendable, Comparable {
    /// Constructed; its thread has not entered the loop yet. Work posted now waits for it.
    case created
    /// The loop runs.
    case running
    /// Graceful shutdown: connections are finishing; new sockets are closed at once.
    case draining
    /// The loop has exited (or never ran). Final.
    case stopped

    package static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// Per-shard I/O counters (readable from any thread).
package final class IOMetrics: Sendable {
    package let connectionsAccepted = Counter("switchboard_connections_accepted_total", help: "Connections accepted by the shard")
    package let connectionsClosed = Counter("switchboard_connections_closed_total", help: "Connections closed")
    package let connectionsRejected = Counter("switchboard_connections_rejected_total", help: "Sockets closed at once because the shard was at maxConnectionsPerShard")
    package let connectionsOpen = Counter("switchboard_connections_open", help: "Connections currently open")
    package let bytesReceived = Counter("switchboard_bytes_received_total", help: "Bytes received")
    package let bytesSent = Counter("switchboard_bytes_sent_total", help: "Bytes sent")
    package let sends = Counter("switchboard_sends_total", help: "Socket writes: send/sendmsg calls that wrote on epoll, send/sendmsg submissions on io_uring (bytes or messages over it is how much each one carried)")
    package let sendQueueLimitHits = Counter("switchboard_send_queue_limit_hits_total", help: "Sends refused because a connection's queue was at maxSendQueueBytes")
    package let recvBuffersExhausted = Counter("switchboard_recv_buffers_exhausted_total", help: "Times the provided receive buffers ran out (io_uring ENOBUFS)")
    package let idleTimeouts = Counter("switchboard_idle_timeouts_total", help: "Idle timers that ran out")
    package let requestTimeouts = Counter("switchboard_request_timeouts_total", help: "Request timers that ran out")
    package let lingerTimeouts = Counter("switchboard_linger_timeouts_total", help: "Lingering closes cut short by the linger timeout")
    package let inboxFull = Counter("switchboard_inbox_full_total", help: "Tasks refused because a shard inbox was full")
    package let loopTurns = Counter("switchboard_loop_turns_total", help: "Event loop iterations")
    package let doorbellWakeups = Counter("switchboard_doorbell_wakeups_total", help: "Times another thread (a shard with work for this one, the acceptor, a post) woke the shard from its wait through the doorbell")
    package let bufferedBytes = Counter("switchboard_shard_buffered_bytes", help: "Bytes the shard holds for its peers (send queues with per-frame overhead, WebSocket messages being assembled, compression state), against maxBufferedBytesPerShard")
    package let memoryBudgetHits = Counter("switchboard_shard_memory_budget_hits_total", help: "Sends or allocations refused because the shard was at maxBufferedBytesPerShard (sends only to connections over their fair share)")
    package let outboundConnects = Counter("switchboard_outbound_connects_total", help: "Outbound connections established (OutboundConnection)")
    package let outboundFailures = Counter("switchboard_outbound_failures_total", help: "Outbound connect attempts that failed or connections that ended (each followed by a backoff)")
    package let outboundReadTimeouts = Counter("switchboard_outbound_read_timeouts_total", help: "Outbound connections closed because nothing arrived within their read timeout while input was awaited")
    package let sendBlocksExhausted = Counter("switchboard_send_blocks_exhausted_total", help: "Small frames queued by reference instead of copied into a send block because the shard had maxSendBlocksPerShard blocks")
    package let sendBlocks = Counter("switchboard_send_blocks", help: "Send blocks the shard holds (queued and free), at the last tick")
    package let batchWaits = Counter("switchboard_batch_waits_total", help: "io_uring waits that asked the kernel for a batch of completions (batch_wait_us, at batch_wait_min_connections open or more)")
    package let batchWaitsRefused = Counter("switchboard_batch_waits_refused_total", help: "io_uring batch waits the kernel refused (an error other than a timeout or an interrupt); the shard then waits the plain way from then on")
    package let directDescriptorFallbacks = Counter("switchboard_direct_descriptor_fallbacks_total", help: "io_uring connections held as a process descriptor although uring_direct_descriptors is on: the shard's registered file table could not be set up, its slot lies beyond the table (RLIMIT_NOFILE caps the table), or the kernel refused the update")
    package let uringWorkerWaits = Counter("switchboard_uring_worker_waits_total", help: "io_uring operations run by a kernel worker thread (the shutdown of a lingering close on a direct descriptor) submitted while as many as uring_worker_threads were already in flight: they wait in the kernel's queue for a free worker")
    package let uringWorkerLimitRefused = Counter("switchboard_uring_worker_limit_refused_total", help: "io_uring shards whose kernel refused the worker thread limit (uring_worker_threads; Linux 5.15 and later take it): their worker threads are bounded only by the kernel's defaults")
    package let replyCorkSpills = Counter("switchboard_reply_cork_spills_total", help: "Reads whose replies did not all leave in one write straight from the reply cork (epoll) and went into the send queue: over the cork's size (reply_cork_bytes), another kind of send to the same connection during the read, or a socket that took only part")

    package var all: [Counter] {
        [connectionsAccepted, connectionsClosed, connectionsRejected, connectionsOpen, bytesReceived, bytesSent, sends,
         sendQueueLimitHits, recvBuffersExhausted, idleTimeouts, requestTimeouts, lingerTimeouts, inboxFull, loopTurns,
         doorbellWakeups, bufferedBytes, memoryBudgetHits, outboundConnects, outboundFailures, outboundReadTimeouts, sendBlocksExhausted, sendBlocks,
         replyCorkSpills, batchWaits, batchWaitsRefused, directDescriptorFallbacks, uringWorkerWaits, uringWorkerLimitRefused]
    }
}

/// Connection slot states.
enum ConnectionState: UInt8 {
    case free
    /// Reading and writing.
    case open
    /// Close requested after the queue is sent; input is discarded.
    case draining
    /// Write side shut down; input discarded until EOF or the linger timeout.
    case lingering
    /// Waiting for in-flight kernel operations before the fd is closed and the slot freed.
    case closing
}

/// One slot of the shard's connection table: 64 bytes, one cache line, 64-byte aligned
/// (`Shard.connections`).
///
/// Memory (issue 16 item 2): one exists for every slot ever used, so the struct is kept small
/// (`WebSocketIdleMemoryTests.layouts` checks it): the send queue first (its last field is 4
/// bytes, which the state and flags share), the flags as bits. The queue does not hold the
/// shard's memory budget (every queue's was the same): its 8 bytes hold the idle timer's
/// deadline (`idleTimerArmed`) and 4 spare. Cache (issue 16 item 3): an
/// echo touches every field here, so the slot is exactly one line; what only some connections
/// or one backend use lives in `ConnectionSide`, a side table of the shard (at 80 bytes the
/// slot spanned two lines, ~0.6 more D1 misses per echo at 1,000 connections). Whether the
/// side has rare state is a flag here (`hasRareState`), so a plain connection's reads never
/// touch the side table.
/// Swift lays stored properties out in declaration order, so the order below is the layout.
struct Connection {
    var queue = SendQueue()
    var state: ConnectionState = .free
    /// The booleans below, one bit each.
    private var flags: ConnectionFlags = [.lingerAfterFlush]
    var fd: Int32 = -1
    var generation: UInt32 = 0
    /// The deadline the idle timer is armed for, while `idleTimerArmed` (see there).
    private(set) var armedIdleDeadline: UInt32 = 0

    init() {}

    /// Whether the shard's idle list holds this slot with deadline `armedIdleDeadline`: a copy of
    /// the list's own record (`TimerList.member` and `deadline`, two arrays by slot), kept here
    /// because every read re-arms the timer and, at 1,000 connections, those two lines were out
    /// of the cache at nearly every read (perf: ~10% of the server's user samples on io_uring,
    /// RESULTS.md 2026-12-03). A re-arm for the same tick-rounded deadline then reads only this
    /// line, which the read touches anyway. Set by `Shard.armIdleTimer`, cleared wherever the
    /// slot leaves the idle list (`Shard.cancelIdleTimer`, the idle expiry); the shard asserts
    /// the copy against the list on every use.
    var idleTimerArmed: Bool { flags.contains(.idleTimerArmed) }

    @inline(__always) mutating func noteIdleTimerArmed(deadline: UInt32) {
        armedIdleDeadline = deadline
        flags.insert(.idleTimerArmed)
    }

    @inline(__always) mutating func noteIdleTimerGone() { flags.remove(.idleTimerArmed) }

    /// Whether the connection's side has any of the rare state (a TLS session, an outbound
    /// owner, held bytes): false for a plain accepted socket that never held input. Mirrors
    /// `ConnectionSide.hasRareState`: set only by `Shard.changeRareState`, with the change.
    fileprivate(set) var hasRareState: Bool { get { flags.contains(.hasRare) } set { flags.set(.hasRare, newValue) } }

    /// io_uring: a multishot receive is armed.
    var recvArmed: Bool { get { flags.contains(.recvArmed) } set { flags.set(.recvArmed, newValue) } }
    /// io_uring: a send is in flight; epoll: unused.
    var sendInFlight: Bool { get { flags.contains(.sendInFlight) } set { flags.set(.sendInFlight, newValue) } }
    /// io_uring: a cancel for the receive was submitted.
    var cancelSubmitted: Bool { get { flags.contains(.cancelSubmitted) } set { flags.set(.cancelSubmitted, newValue) } }
    /// epoll: the socket said EAGAIN on write; wait for EPOLLOUT.
    var writeBlocked: Bool { get { flags.contains(.writeBlocked) } set { flags.set(.writeBlocked, newValue) } }
    /// In the flush table (`Shard.flushSlots`) this turn.
    var flushQueued: Bool { get { flags.contains(.flushQueued) } set { flags.set(.flushQueued, newValue) } }
    /// Draining ends with a lingering close (true) or an immediate one.
    var lingerAfterFlush: Bool { get { flags.contains(.lingerAfterFlush) } set { flags.set(.lingerAfterFlush, newValue) } }
    /// In `finalizeList` this turn.
    var finalizeQueued: Bool { get { flags.contains(.finalizeQueued) } set { flags.set(.finalizeQueued, newValue) } }
    /// Reading is paused (`Shard.pauseReading`): nothing is delivered until it resumes.
    var readPaused: Bool { get { flags.contains(.readPaused) } set { flags.set(.readPaused, newValue) } }
    /// The peer's end (EOF or an error) came while paused: the connection closes once the
    /// held bytes are delivered on resume.
    var heldEnd: Bool { get { flags.contains(.heldEnd) } set { flags.set(.heldEnd, newValue) } }
    /// io_uring: `fd` is a slot of the ring's registered file table (a direct descriptor,
    /// `UringShard.holdAsDirectDescriptor`), not a descriptor of the process.
    var direct: Bool { get { flags.contains(.direct) } set { flags.set(.direct, newValue) } }
    /// io_uring: a shutdown of a direct descriptor was submitted and has not completed (the slot
    /// may not be emptied, and so not reused, before the kernel looked the socket up).
    var shutdownInFlight: Bool { get { flags.contains(.shutdownInFlight) } set { flags.set(.shutdownInFlight, newValue) } }
    /// io_uring: the last send found the socket full (-EAGAIN) and a one-shot POLLOUT poll
    /// under the send's user data waits for room (`UringShard.completeSend`); `sendInFlight`
    /// stays set meanwhile, so the slot is neither finalized nor sent on.
    var sendAwaitsRoom: Bool { get { flags.contains(.sendAwaitsRoom) } set { flags.set(.sendAwaitsRoom, newValue) } }
}

/// What a `Connection` slot does not hold because only some connections or one backend use it
/// (see `Connection`): the shard's `sides[slot]`, 16 bytes, touched by a plain epoll
/// connection only when it is made, closed and freed, never per message.
struct ConnectionSide {
    /// io_uring: index of the msghdr+iovec block of the in-flight vectored send, or -1.
    var sendContext: Int32 = -1
    /// `sendSubmittedBytes`' storage. One send moves at most 2^31 - 4096 bytes on Linux
    /// (MAX_RW_COUNT), so 32 bits hold any submitted size.
    private var sendSubmittedCount: UInt32 = 0
    /// `tls`, `outbound` and `held`: nil on a plain accepted socket that never held input, and
    /// an idle connection pays 8 bytes for them instead of 24.
    private var rare: ConnectionRareState? = nil

    /// Whether the connection has any of the rare state (a TLS session, an outbound owner, held
    /// bytes): false for a plain accepted socket that never held input.
    var hasRareState: Bool { rare != nil }

    /// The TLS session of a connection accepted on the TLS listener; nil on the plain path.
    /// Set only through `Shard.setTLSSession` (the setter is fileprivate: see
    /// `Shard.changeRareState`).
    fileprivate(set) var tls: TLSSession? {
        get { rare?.tls }
        set {
            guard newValue != nil || rare != nil else { return }
            rareState().tls = newValue
            dropRareIfUnused()
        }
    }

    /// An outbound connection's owner: its events go there instead of to the handler.
    fileprivate(set) var outbound: OutboundConnection? {
        get { rare?.outbound }
        set {
            guard newValue != nil || rare != nil else { return }
            rareState().outbound = newValue
            dropRareIfUnused()
        }
    }

    /// Bytes the kernel had already received when reading paused (io_uring completions in
    /// flight), delivered in order on resume. Charged to the shard's memory budget. Appending
    /// and removing go through `_modify`, in place (no copy of the bytes).
    fileprivate(set) var held: [UInt8] {
        get { rare?.held ?? [] }
        _modify {
            if let rare {
                yield &rare.held
            } else {
                var bytes: [UInt8] = []
                yield &bytes
                if !bytes.isEmpty { rareState().held = bytes }
            }
            dropRareIfUnused()
        }
    }

    private mutating func rareState() -> ConnectionRareState {
        if let rare { return rare }
        let made = ConnectionRareState()
        rare = made
        return made
    }

    /// A pause that ended, or a TLS session detached, leaves nothing behind.
    private mutating func dropRareIfUnused() {
        if let r = rare, r.tls == nil, r.outbound == nil, r.held.isEmpty { rare = nil }
    }

    /// Bytes handed to the kernel by the in-flight send.
    var sendSubmittedBytes: Int {
        get { Int(sendSubmittedCount) }
        set {
            assert(newValue >= 0 && newValue <= Int(UInt32.max), "a send larger than the kernel moves at once")
            sendSubmittedCount = UInt32(truncatingIfNeeded: newValue)
        }
    }
}

/// The part of a connection only some have (see `ConnectionSide.rare`): 40 bytes of heap (a
/// 48-byte chunk), made by the first of them a connection needs and dropped when none is left.
final class ConnectionRareState {
    // Shard-confined (never shared across threads, never accessed re-entrantly in place): the
    // dynamic exclusivity checks Swift adds to a class's stored properties were ~500
    // instructions per TLS echo here, in `TLSSession` and in `TLSShardState` together.
    @exclusivity(unchecked) var tls: TLSSession? = nil
    @exclusivity(unchecked) var outbound: OutboundConnection? = nil
    @exclusivity(unchecked) var held: [UInt8] = []
}

/// `Connection`'s booleans as bits (see the properties of the same names there).
struct ConnectionFlags: OptionSet {
    let rawValue: UInt16
    static let recvArmed = ConnectionFlags(rawValue: 1 << 0)
    static let sendInFlight = ConnectionFlags(rawValue: 1 << 1)
    static let cancelSubmitted = ConnectionFlags(rawValue: 1 << 2)
    static let writeBlocked = ConnectionFlags(rawValue: 1 << 3)
    static let flushQueued = ConnectionFlags(rawValue: 1 << 4)
    static let lingerAfterFlush = ConnectionFlags(rawValue: 1 << 5)
    static let finalizeQueued = ConnectionFlags(rawValue: 1 << 6)
    static let readPaused = ConnectionFlags(rawValue: 1 << 7)
    static let heldEnd = ConnectionFlags(rawValue: 1 << 8)
    static let hasRare = ConnectionFlags(rawValue: 1 << 9)
    static let idleTimerArmed = ConnectionFlags(rawValue: 1 << 10)
    static let direct = ConnectionFlags(rawValue: 1 << 11)
    static let shutdownInFlight = ConnectionFlags(rawValue: 1 << 12)
    static let sendAwaitsRoom = ConnectionFlags(rawValue: 1 << 13)

    @inline(__always) mutating func set(_ flag: ConnectionFlags, _ on: Bool) {
        if on { insert(flag) } else { remove(flag) }
    }
}

/// One shard: a thread that owns its connections outright (sockets, send queues, timers) and
/// runs an event loop on io_uring or epoll. Nothing here is locked: every method except those
/// marked "any thread" must be called on the shard's own thread.
///
/// `@unchecked Sendable` because the type is thread-confined by design, which the compiler
/// cannot express: other threads hold a reference only to `post`/`execute`/`wake` and to read
/// `lifecycle`, `metrics` and `isCurrent` (atomics and an MPSC queue behind them); everything
/// else is the shard thread's, and its entry points `assertOnShardThread()` in debug builds.
/// The group marks the thread as the shard's (`bindToCurrentThread`) before the handler
/// factory runs, so handlers pass that check from their first line.
package class Shard: @unchecked Sendable {
    package let index: Int
    package let configuration: IOConfiguration
    package let metrics = IOMetrics()
    package let tlsMetrics = TLSMetrics()
    /// Set by `ShardGroup` before the thread starts when a TLS listener is configured.
    @exclusivity(unchecked) var tlsState: TLSShardState? {
        didSet {
            tlsSessions = tlsState?.sessions
            tlsRecords = tlsState?.records
            tlsScratch = tlsState.map { UnsafeMutableRawBufferPointer(start: $0.scratch, count: $0.scratchBytes) }
        }
    }
    /// `tlsState.scratch` (nil without a TLS listener), where received records are decrypted:
    /// a field of the shard for the same reason as `tlsSessions`.
    @exclusivity(unchecked) private(set) var tlsScratch: UnsafeMutableRawBufferPointer?
    /// `tlsState.sessions` (nil without a TLS listener): the per-message paths' unretained
    /// session lookup, a field of the shard so that reaching it retains nothing either.
    @exclusivity(unchecked) private(set) var tlsSessions: UnsafeMutablePointer<Unmanaged<TLSSession>?>?
    /// `tlsState.records` (nil without a TLS listener): each slot's TLS connection for the event
    /// loops' look-ahead (`prefetchAhead`).
    @exclusivity(unchecked) private(set) var tlsRecords: UnsafeMutablePointer<OpaquePointer?>?
    /// Bytes held for peers, against `maxBufferedBytesPerShard`, and the send blocks
    /// (`memory.blocks`). Shard thread only.
    package let memory: ShardMemoryBudget
    /// The node and shard bits of this shard's socket ids (`socketID`), made and range-checked
    /// once, by `SocketID.init`.
    private let socketIDBase: UInt64
    /// The bits of a `SocketID` that name its node and shard.
    private static let socketIDNodeAndShardBits: UInt64 = 0xFFFF << 48
    /// Frames up to this size queued behind others are copied into send blocks
    /// (`memory.blocks.maxFrameBytes`; 0: never). Here for the send path's first test.
    private let coalesceMaxFrameBytes: Int
    /// Whether TLS ciphertext goes into send blocks (`queueCiphertext`): when coalescing is on.
    var coalescesCiphertext: Bool { coalesceMaxFrameBytes > 0 }
    /// `memory.blocks`, one load closer for the send path.
    let sendBlocks: SendBlockPool
    /// A read's replies to its own connection, written when its handler returns (epoll; see
    /// `ReplyCork`). No dynamic exclusivity check: shard thread only, never passed `inout`
    /// across a call that could reach it again (its mutating methods call nothing of the shard).
    @exclusivity(unchecked) var cork: ReplyCork
    /// Any thread: connections this shard has released (for the acceptor's load balance).
    let releasedTotal = ManagedAtomic<Int>(0)
    /// Any thread: sockets the acceptors handed to this shard (both listeners share it; relaxed:
    /// the balance is a heuristic, a stale read only makes one pick less even).
    let assignedTotal = ManagedAtomic<Int>(0)
    let inbox: MPSCQueue<ShardTask>
    /// epoll: sockets from the acceptor (nil on io_uring, whose acceptor hands sockets over with
    /// MSG_RING). Apart from `inbox` for memory (issue 16 item 2): an inbox cell holds a
    /// `ShardTask` (40 bytes) and the queue walks all `inboxCapacity` (65,536) cells in turn, so
    /// every accepted socket made 40 bytes of fresh inbox pages resident, ~40 B per connection
    /// up to 2.5 MiB per shard. Here a cell is 8 bytes and there are `listenBacklog` of them
    /// (4,096: 32 KiB, plus their sequence numbers); when they are full the acceptor waits and
    /// the kernel's backlog holds the next sockets.
    let acceptedSockets: MPSCQueue<AcceptedSocket>?
    package var backendName: String { "none" }

    var handler: ShardEventHandler!
    /// Client connections this shard owns (OutboundConnection.swift). Shard thread only.
    /// No dynamic exclusivity check: the optimizer hoisted the check of the rare accesses in
    /// `processInbox` (`closeOutbound`, when draining) and in the epoll event loop
    /// (`outboundConnectReady`) to once per loop turn each, a runtime call of ~76 instructions
    /// a turn for a list most shards never use (issue 16 item 3). No access overlaps another:
    /// the loops over it work on a copy (`for connection in outbound`), and the element a call
    /// is made on (`outbound[index].connectReady`) is read before the call.
    @exclusivity(unchecked) var outbound: [OutboundConnection] = []
    /// Numbers outbound connect attempts shard-wide, so a late completion of an abandoned
    /// attempt never matches a newer one, even of a connection that took over its index.
    var outboundAttempts: UInt32 = 0
    /// The slots, 64-byte aligned: each is one cache line (see `Connection`).
    var connections: UnsafeMutablePointer<Connection>
    /// The handler's per-slot state, asked for ahead of its events (`prefetchAhead`): set by
    /// the handler in `shardStarted`, nil until then. Shard thread only.
    package final var handlerSlots: HandlerSlotTable? {
        get { handlerSlotTable }
        set {
            assertOnShardThread()
            handlerSlotTable = newValue
        }
    }
    /// `handlerSlots`' storage, which the event loops read once per turn. Exempt from the
    /// dynamic exclusivity check (a runtime call and a thread-local lookup per turn, ~2% of the
    /// user samples at 1,000 connections on io_uring, where a turn holds 1.6 messages): shard
    /// thread only, and no access outlasts one copy of the value.
    @exclusivity(unchecked) private var handlerSlotTable: HandlerSlotTable?
    /// Each slot's `ConnectionSide` (io_uring's send fields, the rare state), initialized and
    /// reset with the slot.
    var sides: UnsafeMutablePointer<ConnectionSide>
    private var highWater = 0
    /// This turn's counts of reads and writes, published at its end (`publishTurnCounts`).
    /// Declared here, beside the slot table's pointer and `highWater`, which every event reads.
    /// Exempt from the dynamic exclusivity check (with it, a runtime call of ~70 instructions
    /// per message, callgrind): shard thread only, and every access is one `&+=` or the publish,
    /// none of which calls out while the access lasts.
    @exclusivity(unchecked) final var turnCounts = TurnCounts()
    /// Slots `0..<slotsInUse` have been initialized (the event loops' prefetch stays below it).
    final var slotsInUse: Int { highWater }
    private var freeSlots: [Int32] = []
    /// No dynamic exclusivity check (the loops read it once per turn, `prefetchesThisTurn`):
    /// shard thread only, changed by `+= 1` / `-= 1` that call nothing while they last.
    @exclusivity(unchecked) private(set) package var openConnections = 0
    var idleTimers: TimerList
    var requestTimers: TimerList
    var lingerTimers: TimerList
    /// Slots with queued bytes to write at the end of the turn (`scheduleFlush`), each at most
    /// once (`Connection.flushQueued`), so `maxConnectionsPerShard` entries always suffice: a
    /// fixed table instead of a growing array, whose append paid a uniqueness check and a
    /// dynamic exclusivity check once per connection and turn (per subscriber in a fan-out).
    /// Allocated like `connections`: only the pages used become resident. The three flush
    /// fields skip the dynamic exclusivity check: shard thread only, never passed `inout`.
    @exclusivity(unchecked) private var flushSlots: UnsafeMutablePointer<Int32>
    /// Entries of `flushSlots` in use.
    @exclusivity(unchecked) private var flushCount = 0
    /// The table `flushPending` works through, swapped with `flushSlots` (slots scheduled
    /// while it flushes go to the other one, for the next flush).
    @exclusivity(unchecked) private var flushScratch: UnsafeMutablePointer<Int32>
    /// `flushPending` is running (debug check that it is not re-entered).
    @exclusivity(unchecked) private var flushing = false
    /// Slots to finalize at the end of the turn (`queueFinalizeIfQuiescent`).
    ///
    /// This and `resumeList` skip the dynamic exclusivity check: `mayBlock`, `endOfTurn` and
    /// `processResumes` read them every loop turn, and each check was a runtime call of ~76
    /// instructions (a thread-local lookup and an access-set insert): with `EpollShard`'s and
    /// the WebSocket driver's lists, ~1,000 instructions per turn, ~75 per echo at the ~13
    /// echoes a turn a real 100-connection run handles (issue 16 item 3). Shard thread only,
    /// and no access to either overlaps another: they are never passed `inout` across a call,
    /// and the loops over them work on a copy (`let list = ...`) while appends go to the
    /// property.
    @exclusivity(unchecked) var finalizeList: [Int32] = []
    /// Connections whose reading resumed this turn (see `resumeReading`); ids, so that a slot
    /// closed meanwhile is skipped. No dynamic exclusivity check: see `finalizeList`.
    @exclusivity(unchecked) var resumeList: [SocketID] = []
    /// The loop's clock, refreshed once per turn. No dynamic exclusivity check (it cost a
    /// runtime call per read of a socket, issue 16 item 3: `deliver` arms the idle timer with
    /// it): shard thread only, assigned in two places (`refreshClock` after each wait, `runLoop`
    /// before the first turn) and never passed `inout`, so no access to it can overlap another.
    @exclusivity(unchecked) package private(set) var nowMilliseconds: Int64 = monotonicMilliseconds()
    /// The idle deadline a timer armed now gets (`idleTimers.deadline(armedAt: nowMilliseconds)`),
    /// computed with the clock (`advanceClock`) instead of per read: its rounding to the tick
    /// divides. Same exclusivity reasoning as `nowMilliseconds`.
    @exclusivity(unchecked) private var idleDeadline: UInt32 = 0
    private var nextTickMilliseconds: Int64 = 0
    /// Shard thread: the lifecycle (the owner's copy; `lifecycle` publishes it to any thread).
    private(set) var lifecycleState: ShardLifecycle = .created
    /// Any thread: `lifecycleState`, published on each transition.
    private let publishedState = ManagedAtomic<UInt8>(ShardLifecycle.created.rawValue)
    /// Admission to the inbox. Bit 0 is set once the shard stopped taking work; the rest counts
    /// posters between reading the gate and finishing their push, in units of 2. The shard sets
    /// the bit, waits for the count to reach zero, and then drains the inbox a last time: any
    /// push either happened before that drain or saw the bit and was refused, so no task is
    /// left behind in a stopped shard's inbox.
    private let admission = ManagedAtomic<Int>(0)
    private static let admissionClosed = 1
    private var drainDeadline: Int64 = .max
    let doorbell: Doorbell
    /// The tick as an event (see `TickTimer`): a sleeping turn waits on it instead of with a
    /// timeout. Each backend waits on it its own way (epoll: registered; io_uring: a poll).
    let tickTimer: TickTimer

    /// - Parameter acceptsQueued: the acceptor hands sockets over through `acceptedSockets`
    ///   (epoll), not through the backend (io_uring).
    /// - Parameter corksReplies: a read's replies to its own connection are gathered and written
    ///   by the backend's `writeCork` when the handler returns (epoll), not queued (`ReplyCork`).
    init(index: Int, configuration: IOConfiguration, acceptsQueued: Bool, corksReplies: Bool) throws(IOError) {
        self.index = index
        self.configuration = configuration
        socketIDBase = SocketID(node: configuration.nodeID, shard: index, slot: 0, generation: 0).rawValue
        let blocks = SendBlockPool(blockBytes: configuration.sendBlockBytes, maxFrameBytes: configuration.sendCoalesceMaxFrameBytes,
                                   maxBlocks: configuration.maxSendBlocksPerShard, keptFree: configuration.sendBlocksKeptFree,
                                   exhausted: metrics.sendBlocksExhausted, gauge: metrics.sendBlocks)
        memory = ShardMemoryBudget(limitBytes: configuration.maxBufferedBytesPerShard,
                                   gauge: metrics.bufferedBytes, hits: metrics.memoryBudgetHits, blocks: blocks)
        coalesceMaxFrameBytes = blocks.maxFrameBytes
        sendBlocks = blocks
        cork = ReplyCork(capacityBytes: corksReplies ? configuration.replyCorkBytes : 0)
        let capacity = configuration.maxConnectionsPerShard
        // malloc of this size maps fresh pages: only slots actually used become resident.
        assert(MemoryLayout<Connection>.stride == Self.connectionSlotBytes, "a connection slot is not one cache line")
        connections = UnsafeMutableRawPointer.allocate(byteCount: capacity * MemoryLayout<Connection>.stride, alignment: Self.connectionSlotBytes)
            .bindMemory(to: Connection.self, capacity: capacity)
        sides = .allocate(capacity: capacity)
        flushSlots = .allocate(capacity: capacity)
        flushScratch = .allocate(capacity: capacity)
        // Rounded to the tick (see TimerList, "Granularity"): a busy connection's idle timer is
        // re-linked once per tick, not once per read. Ticks fall on the same grid (`endOfTurn`),
        // so an idle timeout still fires at the first tick at or after its exact deadline.
        idleTimers = TimerList(capacity: capacity, durationMilliseconds: configuration.idleTimeoutMilliseconds,
                               granularityMilliseconds: configuration.tickMilliseconds)
        requestTimers = TimerList(capacity: capacity, durationMilliseconds: configuration.requestTimeoutMilliseconds)
        lingerTimers = TimerList(capacity: capacity, durationMilliseconds: configuration.lingerTimeoutMilliseconds)
        inbox = MPSCQueue(capacity: configuration.inboxCapacity)
        acceptedSockets = acceptsQueued ? MPSCQueue(capacity: max(configuration.listenBacklog, 64)) : nil
        doorbell = try Doorbell()
        tickTimer = try TickTimer(tickMilliseconds: configuration.tickMilliseconds)
        idleDeadline = idleTimers.deadline(armedAt: nowMilliseconds)
    }

    deinit {
        for i in 0..<highWater {
            // A queue's chunks are manual references (`SendQueue`): give them back first.
            connections[i].queue.removeAll(budget: memory)
            (connections + i).deinitialize(count: 1)
        }
        sides.deinitialize(count: highWater)
        UnsafeMutableRawPointer(connections).deallocate()
        sides.deallocate()
        flushSlots.deallocate()
        flushScratch.deallocate()
        cork.deallocate()
        idleTimers.deallocate(); requestTimers.deallocate(); lingerTimers.deallocate()
    }

    // MARK: - Any thread

    /// Where the shard is in its life. Any thread (a snapshot: it only moves forward).
    package var lifecycle: ShardLifecycle {
        ShardLifecycle(rawValue: publishedState.load(ordering: .acquiring))!
    }

    /// Posts a task. Any thread.
    ///
    /// Refused when the inbox is full (counted in `inboxFull`) or the shard has stopped; a
    /// refused `ShardWork` has had its `refused` called on this thread before this returns.
    @discardableResult
    package func post(_ task: ShardTask) -> ShardPostResult {
        let outcome = admit(countingFull: true) { inbox.tryPush(task) }
        if case .refused(let why) = outcome, case .run(let work) = task { work.refused?(why) }
        return outcome
    }

    /// Hands an accepted socket to an epoll shard (`acceptedSockets`). Any thread (the
    /// acceptor). Refused when the queue is full (the caller keeps the socket and tries again;
    /// not counted in `inboxFull`, which counts work refused for good) or the shard has stopped
    /// (the socket is still the caller's to close).
    func postAccepted(_ socket: AcceptedSocket) -> ShardPostResult {
        guard let queue = acceptedSockets else { preconditionFailure("io_uring shards take sockets by MSG_RING") }
        return admit(countingFull: false) { queue.tryPush(socket) }
    }

    /// Pushes through the admission gate (see `admission`), rings the doorbell on success.
    @inline(__always) private func admit(countingFull: Bool, _ push: () -> Bool) -> ShardPostResult {
        // Become a counted poster first, then look at the gate. The RMW reads the latest value,
        // so a poster either sees the closed bit or is waited for.
        let before = admission.loadThenWrappingIncrement(by: 2, ordering: .acquiringAndReleasing)
        let outcome: ShardPostResult
        if before & Self.admissionClosed != 0 {
            outcome = .refused(.stopped)
        } else if push() {
            wake()
            outcome = .queued
        } else {
            if countingFull { metrics.inboxFull.increment() }
            outcome = .refused(.inboxFull)
        }
        // Release: the push happens-before the shard's acquiring load that sees the count drop.
        admission.wrappingDecrement(by: 2, ordering: .releasing)
        return outcome
    }

    /// Runs `body` on the shard thread; false when refused (inbox full or shard stopped).
    /// Any thread. For fire-and-forget work only: if the shard stops before running it, it
    /// is dropped. Work that someone waits for uses `execute(_:orElse:)`.
    @discardableResult
    package func execute(_ body: @escaping @Sendable (Shard) -> Void) -> Bool {
        post(.run(ShardWork(body))).isQueued
    }

    /// Runs `body` on the shard thread, or `refused` exactly once instead when the shard will
    /// never run it: at once on this thread when the post is refused, or on the shard thread
    /// when the shard stops with the work still queued. Any thread.
    @discardableResult
    package func execute(_ body: @escaping @Sendable (Shard) -> Void,
                        orElse refused: @escaping @Sendable (ShardRefusal) -> Void) -> ShardPostResult {
        post(.run(ShardWork(body, orElse: refused)))
    }

    /// Whether the calling thread is this shard's own thread. Any thread.
    @inline(__always) package var isCurrent: Bool {
        sb_current_shard() == Unmanaged.passUnretained(self).toOpaque()
    }

    /// Wakes the loop if it sleeps. Any thread.
    package func wake() { doorbell.ring() }

    /// Debug builds: traps unless the caller runs on this shard's thread. Every shard-only entry
    /// point starts with it; it costs nothing in release builds.
    @inline(__always)
    package func assertOnShardThread(_ function: StaticString = #function, file: StaticString = #fileID, line: UInt = #line) {
        assert(isCurrent, "Shard.\(function) called off shard \(index)'s thread", file: file, line: line)
    }

    /// Marks the calling thread as this shard's (`isCurrent`). Called first thing on the
    /// shard's thread, before set-up and the handler factory, so both already run "on the
    /// shard"; `unbindFromCurrentThread` undoes it when the thread is done with the shard.
    func bindToCurrentThread() {
        sb_set_current_shard(Unmanaged.passUnretained(self).toOpaque())
    }

    func unbindFromCurrentThread() {
        assertOnShardThread()
        sb_set_current_shard(nil)
    }

    // MARK: - Shard thread: connection API for protocol layers

    /// The connection's slot if `id` is current and not yet closing.
    @inline(__always) func liveSlot(_ id: SocketID) -> Int? {
        let slot = id.slot
        // Node and shard in one compare (the id's top 16 bits against `socketIDBase`'s).
        guard id.rawValue & Self.socketIDNodeAndShardBits == socketIDBase, slot < highWater else { return nil }
        assert(id.shard == index && id.node == configuration.nodeID)
        // Field by field through the pointer: `let c = connections[slot]` copies the whole
        // `Connection` (retain and release of its queue's chunks and TLS session), once per
        // send, which a fan-out pays once per subscriber.
        guard connections[slot].generation == id.generation, connections[slot].state != .free else { return nil }
        return slot
    }

    /// Bytes of a `Connection` slot: one cache line.
    static let connectionSlotBytes = 64

    /// The one way a slot's rare state (its TLS session, outbound owner or held bytes) changes:
    /// `change` is applied to the slot's side, then the slot's flag (`Connection.hasRareState`)
    /// is set from the result, so the two cannot disagree (`deliver` asserts that they do not).
    /// `ConnectionSide`'s setters are fileprivate: code outside this file changes rare state
    /// through `setTLSSession`, which comes here.
    @inline(__always) private func changeRareState(_ slot: Int, _ change: (inout ConnectionSide) -> Void) {
        assertOnShardThread()
        change(&sides[slot])
        connections[slot].hasRareState = sides[slot].hasRareState
    }

    /// Gives the slot its TLS session, or takes it away (nil), with the slot's flag.
    func setTLSSession(_ slot: Int, _ session: TLSSession?) {
        changeRareState(slot) { $0.tls = session }
    }

    /// Whether `id` names an open connection of this shard (not closing).
    package func isOpen(_ id: SocketID) -> Bool {
        assertOnShardThread()
        guard let s = liveSlot(id) else { return false }
        return connections[s].state == .open
    }

    /// Queues bytes; they are written in one vectored send per connection at the end of the turn.
    /// A small frame queued behind others is copied into a send block rather than referenced
    /// (`SendQueue.appendCoalescing`), so a run of them is one iovec.
    ///
    /// The limits count what a queue costs: payload bytes plus `SendQueue.entryOverheadBytes`
    /// per queued run. `overLimit: true` queues even past `maxSendQueueBytes` and the shard's
    /// budget: for a final small control message (a close frame) that must follow what is queued.
    /// `final`: a fan-out calls it once per subscriber, statically dispatched.
    @discardableResult
    package final func send(_ id: SocketID, _ bytes: OutboundBytes, overLimit allowed: Bool) -> SendResult {
        send(id, bytes, allowed: allowed)
    }

    /// `send(_:_:overLimit:)` within the limits. An overload rather than a default argument:
    /// a default argument is a call of its own across modules, once per fan-out delivery.
    @discardableResult
    package final func send(_ id: SocketID, _ bytes: OutboundBytes) -> SendResult {
        send(id, bytes, allowed: false)
    }

    @inline(__always) private func send(_ id: SocketID, _ bytes: OutboundBytes, allowed: Bool) -> SendResult {
        var slot = 0
        let verdict = admitSend(id, payloadBytes: bytes.count, allowed: allowed, slot: &slot)
        guard verdict == .queued else { return verdict }
        if let session = tlsSessions?[slot] {
            // Plain connections queue the bytes; TLS ones queue their ciphertext (Shard+TLS.swift).
            session._withUnsafeGuaranteedRef { tlsEnqueue(slot, $0, bytes.bytes) }
            return .queued
        }
        if slot == cork.slot && corked(slot, bytes.bytes) { return .queued }
        if coalescedBehindOthers(slot, bytes.bytes) { return .queued }
        connections[slot].queue.append(bytes, budget: memory)
        scheduleFlush(slot)
        return .queued
    }

    /// Whether a small frame queued behind others was copied into the connection's send
    /// blocks (`coalesce`); false: the caller queues it by reference. The first tests inline (a
    /// reply alone in its queue, an echo's, goes no further), the copy out of line.
    @inline(__always) private func coalescedBehindOthers(_ slot: Int, _ bytes: UnsafeRawBufferPointer) -> Bool {
        !connections[slot].queue.isEmpty && bytes.count <= coalesceMaxFrameBytes && coalesce(slot, bytes)
    }

    /// Copies a small frame into the connection's send blocks (`SendQueue.appendCoalescing`);
    /// false when it was not (empty queue, pool exhausted): the caller queues a reference.
    @inline(never) private func coalesce(_ slot: Int, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard connections[slot].queue.appendCoalescing(bytes, inFlightBytes: inFlightBytes(slot), pool: sendBlocks, budget: memory) else { return false }
        scheduleFlush(slot)
        return true
    }

    /// The front bytes of `slot`'s queue handed to the kernel by a send not yet completed:
    /// nothing unless an io_uring send is in flight (epoll writes synchronously and never sets
    /// the flag). What `SendQueue`'s appends and `dropUnstarted` must leave alone.
    @inline(__always) func inFlightBytes(_ slot: Int) -> Int {
        connections[slot].sendInFlight ? sides[slot].sendSubmittedBytes : 0
    }

    /// `send(_:_:)` for a frame whose +1 the caller took for this send (a WebSocket driver's
    /// pooled frame): the queue keeps that reference instead of a retain of its own, and the
    /// caller has no release to make (issue 16 item 3: a retain and a release per echo). Same
    /// limits, same results; whatever the result, the reference is the shard's from here on
    /// (queued, corked on TLS, or given back: refused or copied into a send block).
    @discardableResult
    package final func send(_ id: SocketID, retained frame: Unmanaged<OutboundBytes.Storage>) -> SendResult {
        let payload = frame._withUnsafeGuaranteedRef { OutboundBytes.bytes(of: $0) }
        var slot = 0
        let verdict = admitSend(id, payloadBytes: payload.count, allowed: false, slot: &slot)
        guard verdict == .queued else {
            frame.release()
            return verdict
        }
        if let session = tlsSessions?[slot] {
            session._withUnsafeGuaranteedRef { tlsEnqueue(slot, $0, payload) }
            frame.release()  // corked as a copy
            return .queued
        }
        // As `SendQueue.append` ignores an empty run; as `send(_:_:)`, a small frame for the
        // connection being read goes into the cork, and one behind others into a send block.
        if payload.count == 0 || (slot == cork.slot && corked(slot, payload)) || coalescedBehindOthers(slot, payload) {
            frame.release()
            return .queued
        }
        connections[slot].queue.append(retained: frame, isBlock: false, budget: memory)
        scheduleFlush(slot)
        return .queued
    }

    /// `send(_:_:)` for a small frame given as its header (`headerBytes` of them, at most 8,
    /// little-endian in `header`: the first byte in the low bits) and its payload, written
    /// straight into a send block of the shard's pool (`SendBlockPool`) rather than into a frame
    /// of the caller's (issue 16 item 3: a WebSocket echo's reply). A block is this queue's
    /// alone and goes back to the pool when sent, with no atomic reference counting: a pooled
    /// frame cost a uniqueness check, a retain and a release per message (~55 instructions per
    /// echo with the pool's bookkeeping), and the pool's ring of blocks is taken in turn (80 KB)
    /// where the free block taken here is the one given back last. Same limits, same results
    /// as `send(_:_:)`.
    ///
    /// The reply of a read to its own connection (epoll) goes into the read's cork instead when
    /// it fits there (`ReplyCork`, `reply_cork_bytes`), whatever `maxFrameBytes` is: an echo of
    /// 1 KiB is written from the cork with no frame of its own either.
    ///
    /// nil, having done nothing but checks (and moved the cork's bytes into the queue, which
    /// keeps their order): the frame is over `maxFrameBytes` (coalescing off included) and not
    /// corked, or the pool has no block (`maxSendBlocksPerShard`); the caller sends it another
    /// way, which checks the limits again. A block holds its frame until it is written like any
    /// queued frame would, bounded by `maxSendBlocksPerShard` (see there).
    @discardableResult
    package final func send(_ id: SocketID, header: UInt64, headerBytes: Int, copying payload: UnsafeRawBufferPointer) -> SendResult? {
        assert(headerBytes > 0 && headerBytes <= MemoryLayout<UInt64>.size, "a header of 1 to 8 bytes")
        let total = headerBytes &+ payload.count
        // A frame over `maxFrameBytes` still goes on while a read is being handled (epoll): it
        // may be that read's reply, for the cork.
        guard total <= coalesceMaxFrameBytes || (cork.slot != ReplyCork.none && cork.hasRoom(for: total)) else { return nil }
        var slot = 0
        let verdict = admitSend(id, payloadBytes: total, allowed: false, slot: &slot)
        guard verdict == .queued else { return verdict }
        if slot == cork.slot {
            // The reply of a read to its own connection (epoll): into the cork while nothing is
            // queued before it, written when the handler returns (`ReplyCork`).
            assert(tlsSessions?[slot] == nil, "a TLS connection's read is not corked")
            if cork.hasRoom(for: total) && connections[slot].queue.isEmpty {
                cork.append(header: header, headerBytes: headerBytes, payload: payload)
                return .queued
            }
            settleCork(slot)
        }
        guard total <= coalesceMaxFrameBytes, let block = sendBlocks.take() else { return nil }
        // A taken block is empty and `blockBytes` >= `maxFrameBytes` >= `total` (checked by
        // `SendBlockPool.init`), so the frame fits, and 8 header bytes too: the header is one
        // store, of which only `headerBytes` are counted.
        assert(sendBlocks.blockBytes >= max(total, MemoryLayout<UInt64>.size))
        let bytes = block._withUnsafeGuaranteedRef { b in
            b.withUnsafeMutablePointers { count, elements in
                assert(count.pointee == 0, "a taken send block that holds bytes")
                let start = UnsafeMutableRawPointer(elements)
                start.storeBytes(of: header.littleEndian, as: UInt64.self)
                if let source = payload.baseAddress { (start + headerBytes).copyMemory(from: source, byteCount: payload.count) }
                count.pointee = total
                return UnsafeRawBufferPointer(start: start, count: total)
            }
        }
        if let session = tlsSessions?[slot] {
            // Corked as a copy: the block goes straight back.
            session._withUnsafeGuaranteedRef { tlsEnqueue(slot, $0, bytes) }
            sendBlocks.recycle(block)
            return .queued
        }
        if connections[slot].queue.isEmpty {
            connections[slot].queue.append(retained: block, isBlock: true, budget: memory)
            scheduleFlush(slot)
            return .queued
        }
        // Behind others: into the queue's last block when it has room, as `send(_:_:)` does
        // (rare on the echo path: two replies in one turn).
        if coalesce(slot, bytes) {
            sendBlocks.recycle(block)
        } else {
            connections[slot].queue.append(retained: block, isBlock: true, budget: memory)
            scheduleFlush(slot)
        }
        return .queued
    }

    /// `send(_:_:)` for one recipient of a fan-out: the queue takes one of the references the
    /// fan-out took at once (`SharedFrame`) instead of a retain of its own. Same limits, same
    /// results; a TLS connection corks a copy of the frame and leaves the reference unused.
    @discardableResult
    package final func send(_ id: SocketID, _ frame: inout SharedFrame) -> SendResult {
        var slot = 0
        let count = frame.count
        let verdict = admitSend(id, payloadBytes: count, allowed: false, slot: &slot)
        guard verdict == .queued else { return verdict }
        if let session = tlsSessions?[slot] {
            session._withUnsafeGuaranteedRef { tlsEnqueue(slot, $0, frame.payload) }
            return .queued
        }
        settleCork(slot)
        guard count > 0 else { return .queued }  // as `SendQueue.append` ignores an empty run
        // A copy leaves the reference unused: `SharedFrame` gives it back with the rest.
        if coalescedBehindOthers(slot, frame.payload) { return .queued }
        connections[slot].queue.append(retained: frame.take(), isBlock: false, budget: memory)
        scheduleFlush(slot)
        return .queued
    }

    /// The checks of every send: `.queued` (and the connection's slot) when `payloadBytes`
    /// may be queued on `id`, or why not (counted).
    @inline(__always) private func admitSend(_ id: SocketID, payloadBytes: Int, allowed: Bool, slot: inout Int) -> SendResult {
        assertOnShardThread()
        // Nothing follows a close: once draining, the queue only empties.
        guard let s = liveSlot(id), connections[s].state == .open else { return .notOpen }
        slot = s
        if allowed { return .queued }
        // The limit bounds what is already waiting: an empty queue takes any one message (its
        // size is bounded by the protocol's own limits), so memory stays under the limit plus
        // one message, and a large message is never refused to a reader that keeps up.
        var queuedCost = connections[s].queue.costBytes
        // A TLS connection's corked plaintext counts as queued (encrypted at the flush), and so
        // does a read's cork (one run when it moves into the queue).
        if let session = tlsSessions?[s] { queuedCost += session._withUnsafeGuaranteedRef { $0.corkedCost } }
        if s == cork.slot && cork.count > 0 { queuedCost += SendQueue.cost(payloadBytes: cork.count) }
        let cost = SendQueue.cost(payloadBytes: payloadBytes)
        if queuedCost > 0 && queuedCost + cost > configuration.maxSendQueueBytes {
            metrics.sendQueueLimitHits.increment()
            return .overLimit
        }
        // The shard is at its budget: only connections within their fair share still queue
        // (whoever holds more than limit / open connections is the one to shed).
        if !memory.admits(cost, holding: queuedCost) {
            memory.countHit()
            return .overLimit
        }
        return .queued
    }

    /// Bytes queued and not yet sent on a connection (0 for a stale id).
    package func queuedBytes(_ id: SocketID) -> Int {
        assertOnShardThread()
        guard let slot = liveSlot(id) else { return 0 }
        settleCork(slot)
        // Ciphertext, as `sentBytes` counts: what a TLS connection corked is encrypted now.
        if let session = tlsSession(slot), session.hasCorked { tlsUncork(slot, session, scheduling: true) }
        return connections[slot].queue.queuedBytes
    }

    /// Payload bytes written to the connection so far (0 for a stale id). With `queuedBytes`
    /// it tells whether a given queued frame has left: mark `sentBytes + queuedBytes` after
    /// queueing it; it is gone once `sentBytes` reaches the mark.
    package func sentBytes(_ id: SocketID) -> UInt64 {
        assertOnShardThread()
        guard let slot = liveSlot(id) else { return 0 }
        return connections[slot].queue.sentBytesTotal
    }

    /// Drops queued runs nothing was written of yet (and that are not handed to the kernel),
    /// so that a final frame queued next overtakes what a peer that stopped reading left
    /// behind. A run already partly sent stays whole: the peer never sees half a frame.
    package func dropUnsentQueue(_ id: SocketID) {
        assertOnShardThread()
        guard let slot = liveSlot(id), connections[slot].state == .open else { return }
        // The cork's bytes stay: they are the queue's first run (the queue is empty while the
        // cork holds any), and the first run always stays (`SendQueue.dropUnstarted`).
        if let session = sides[slot].tls {
            // Only the plaintext not encrypted yet: a TLS stream with records taken out of it
            // does not decrypt (each record's nonce is its sequence number).
            session.clearCorked()
            return
        }
        connections[slot].queue.dropUnstarted(keepingBytes: min(inFlightBytes(slot), connections[slot].queue.queuedBytes), budget: memory)
    }

    package func close(_ id: SocketID, mode: CloseMode) {
        assertOnShardThread()
        guard let slot = liveSlot(id) else { return }
        // A close after the flush flushes the cork's bytes too (an immediate close drops them,
        // in `beginClose`).
        if mode != .immediately { settleCork(slot) }
        switch (mode, connections[slot].state) {
        case (_, .closing), (.afterFlush, .lingering), (.afterFlush, .draining),
             (.afterFlushNoLinger, .lingering), (.afterFlushNoLinger, .draining):
            return
        case (.afterFlush, _), (.afterFlushNoLinger, _):
            if sides[slot].tls != nil { tlsWillClose(slot) }
            connections[slot].state = .draining
            connections[slot].lingerAfterFlush = mode == .afterFlush
            requestTimers.cancel(slot)
            cancelIdleTimer(slot)
            // A peer that never reads must not hold the slot: flushing and lingering together
            // get at most the linger timeout.
            lingerTimers.arm(slot, now: nowMilliseconds)
            if connections[slot].queue.isEmpty && !connections[slot].sendInFlight { sendQueueEmptied(slot) }
        case (.immediately, _):
            beginClose(slot)
        }
    }

    /// Arms (or re-arms) the connection's request timer.
    package func armRequestTimer(_ id: SocketID) {
        assertOnShardThread()
        guard let slot = liveSlot(id), connections[slot].state == .open else { return }
        requestTimers.arm(slot, now: nowMilliseconds)
    }

    package func cancelRequestTimer(_ id: SocketID) {
        assertOnShardThread()
        guard let slot = liveSlot(id) else { return }
        requestTimers.cancel(slot)
    }

    /// Stops delivering the connection's input until `resumeReading`: the backend stops
    /// reading the socket (epoll: no more reads; io_uring: the multishot receive is cancelled),
    /// so the kernel's receive window fills and TCP flow control stops the peer. Bytes the
    /// kernel had already completed are held (at most the provided-buffer pool, io_uring) and
    /// delivered first on resume. Timers keep running: the protocol decides what a pause means
    /// for them. Called from `connectionReceived`, it takes effect after that delivery.
    package func pauseReading(_ id: SocketID) {
        assertOnShardThread()
        guard let slot = liveSlot(id), connections[slot].state == .open, !connections[slot].readPaused else { return }
        connections[slot].readPaused = true
        pauseReceive(slot)
    }

    /// Undoes `pauseReading`: held bytes are delivered (in receive-buffer-sized pieces, each
    /// checking for a new pause) at the end of this turn, then the socket is read again.
    package func resumeReading(_ id: SocketID) {
        assertOnShardThread()
        guard let slot = liveSlot(id), connections[slot].readPaused else { return }
        connections[slot].readPaused = false
        resumeList.append(id)
    }

    /// Whether reading is paused (false for a stale id).
    package func isReadingPaused(_ id: SocketID) -> Bool {
        assertOnShardThread()
        guard let slot = liveSlot(id) else { return false }
        return connections[slot].readPaused
    }

    /// Restarts the idle timer (e.g. after the protocol sent a keep-alive ping).
    package func touch(_ id: SocketID) {
        assertOnShardThread()
        guard let slot = liveSlot(id), connections[slot].state == .open else { return }
        armIdleTimer(slot)
    }

    /// Shard thread: graceful shutdown has begun (or the loop has stopped).
    package var isDraining: Bool {
        assertOnShardThread()
        return lifecycleState >= .draining
    }

    // MARK: - Internals shared by the backends

    /// (Re-)arms the connection's idle timer for the current clock: a timer already armed for
    /// the same (tick-rounded) deadline stays as it is, so this is a load and a compare for a
    /// connection that received earlier in the same tick.
    @inline(__always) func armIdleTimer(_ slot: Int) {
        assert(idleDeadline == idleTimers.deadline(armedAt: nowMilliseconds), "idleDeadline not updated with the clock")
        assert(!connections[slot].idleTimerArmed || (idleTimers.contains(slot) && idleTimers.armedDeadline(slot) == connections[slot].armedIdleDeadline),
               "the slot's copy of its idle timer and the idle list disagree")
        // Armed for this very deadline: the common case, one compare on the slot's own line
        // (`Connection.idleTimerArmed`).
        if connections[slot].idleTimerArmed && connections[slot].armedIdleDeadline == idleDeadline { return }
        idleTimers.arm(slot, deadline: idleDeadline)
        connections[slot].noteIdleTimerArmed(deadline: idleDeadline)
    }

    /// Takes the connection's idle timer out of the idle list, and the slot's copy with it.
    @inline(__always) func cancelIdleTimer(_ slot: Int) {
        idleTimers.cancel(slot)
        connections[slot].noteIdleTimerGone()
    }

    /// The id of the connection in `slot`: `socketIDBase` and the slot's generation (issue 16
    /// item 3: made field by field, with `SocketID.init`'s range checks, once per read).
    @inline(__always) func socketID(_ slot: Int) -> SocketID {
        assert(slot >= 0 && slot < SocketID.maxSlots, "slot \(slot) beyond what an id holds")
        let id = SocketID(rawValue: socketIDBase | UInt64(connections[slot].generation & SocketID.generationMask) << 24 | UInt64(slot))
        assert(id == SocketID(node: configuration.nodeID, shard: index, slot: slot, generation: connections[slot].generation))
        return id
    }

    @inline(__always) func scheduleFlush(_ slot: Int) {
        if !connections[slot].flushQueued {
            connections[slot].flushQueued = true
            assert(flushCount < configuration.maxConnectionsPerShard, "a slot in the flush table twice")
            flushSlots[flushCount] = Int32(truncatingIfNeeded: slot)
            flushCount += 1
        }
    }

    /// Takes a new socket. Closes it at once when the shard is full or draining.
    /// `outbound`: a connected client socket of that owner (never assigned by the acceptor, so
    /// it stays out of the accepted/released counts the acceptor balances with).
    func adopt(fd: Int32, tls: Bool = false, outbound: OutboundConnection? = nil) {
        if lifecycleState != .running || (freeSlots.isEmpty && highWater == configuration.maxConnectionsPerShard) || (tls && !tlsMayAdopt()) {
            if let outbound {
                Glibc.close(fd)
                return outbound.adoptRefused()
            }
            // Count before closing: whoever sees the close may read the metric at once.
            metrics.connectionsRejected.increment()
            releasedTotal.wrappingIncrement(ordering: .relaxed)
            Glibc.close(fd)
            return
        }
        let slot: Int
        if let s = freeSlots.popLast() {
            slot = Int(s)
        } else {
            slot = highWater
            (connections + slot).initialize(to: Connection())
            (sides + slot).initialize(to: ConnectionSide())
            highWater += 1
        }
        idleTimers.prepare(slot: slot)
        requestTimers.prepare(slot: slot)
        lingerTimers.prepare(slot: slot)
        connections[slot].fd = fd
        connections[slot].state = .open
        if let outbound {
            changeRareState(slot) { $0.outbound = outbound }
        }
        _ = sb_set_nodelay(fd)
        openConnections += 1
        memory.connections = openConnections
        metrics.connectionsOpen.set(openConnections)
        if outbound == nil {
            metrics.connectionsAccepted.increment()
            // An outbound connection's owner times its reads itself (OutboundConnection).
            armIdleTimer(slot)
        }
        guard (!tls || tlsAttach(slot)), registerConnection(slot) else {
            beginClose(slot)
            if outbound == nil { handler.connectionOpened(socketID(slot)) }  // the close follows
            return
        }
        if let outbound { outbound.adopted(socketID(slot)) } else { handler.connectionOpened(socketID(slot)) }
    }

    /// Delivers received bytes according to the connection's state. `handler` is `self.handler`,
    /// which `runLoop` loads once and the backend passes down (issue 16 item 3: read from the
    /// stored property here, the existential was retained and released around every read).
    @inline(__always) func deliver(_ slot: Int, _ bytes: UnsafeRawBufferPointer, to handler: ShardEventHandler) {
        assert(handler === self.handler, "a handler other than the shard's")
        turnCounts.bytesReceived &+= bytes.count
        guard connections[slot].state == .open else { return }  // draining/lingering: discard
        // An outbound connection, a TLS session or held bytes: one test for the three here, of
        // the slot's flag (the side table stays out of a plain connection's cache lines).
        assert(connections[slot].hasRareState == sides[slot].hasRareState, "the slot's rare-state flag and its side disagree")
        guard !connections[slot].hasRareState else { return deliverRare(slot, bytes, to: handler) }
        if connections[slot].readPaused { return hold(slot, bytes) }
        armIdleTimer(slot)
        guard cork.capacityBytes > 0 else { return handler.connectionReceived(socketID(slot), bytes) }
        // The replies to these bytes gather in the cork and leave in one write (`ReplyCork`).
        assert(cork.slot == ReplyCork.none && cork.count == 0, "a read delivered inside another's")
        cork.slot = slot
        handler.connectionReceived(socketID(slot), bytes)
        cork.slot = ReplyCork.none
        if cork.count > 0 { writeCork(slot) }
    }

    /// The backend writes the cork's bytes to `slot` (`cork.count` > 0; the connection is open
    /// and its queue empty, see `ReplyCork`), and empties it: what the socket does not take
    /// goes to the queue (`spillCork`). Only backends that cork (`corksReplies`) implement it.
    func writeCork(_ slot: Int) {
        preconditionFailure("writeCork on a backend that does not cork replies")
    }

    /// A copy of `bytes` for the connection being read (`slot == cork.slot`) went into the cork:
    /// with room (at most `reply_cork_bytes` in all, so at most a 16 KiB copy by default, as
    /// uWebSockets' cork) and nothing queued before it. Otherwise the cork's bytes move into the
    /// queue first, and false: the caller queues `bytes` (a larger frame by reference, no copy).
    /// Out of line: only a read's own replies come here.
    @inline(never) private func corked(_ slot: Int, _ bytes: UnsafeRawBufferPointer) -> Bool {
        assert(slot == cork.slot, "a cork for another connection")
        assert(tlsSessions?[slot] == nil, "a TLS connection's read is not corked")
        if cork.hasRoom(for: bytes.count) && connections[slot].queue.isEmpty {
            cork.append(bytes)
            return true
        }
        settleCork(slot)
        return false
    }

    /// Before anything else is queued on, measured on or closed of the corked connection: the
    /// cork's bytes go into its queue first, so they keep their place (`ReplyCork`).
    @inline(__always) func settleCork(_ slot: Int) {
        if slot == cork.slot && cork.count > 0 { spillCork(slot, from: 0) }
    }

    /// Moves the cork's bytes from `offset` on into `slot`'s queue, scheduled for the flush,
    /// and empties the cork. A send block takes them when they fit one; otherwise (more than a
    /// block, or no free block) a copy of their own.
    @inline(never) func spillCork(_ slot: Int, from offset: Int) {
        assertOnShardThread()
        assert(offset < cork.count, "nothing left to spill")
        assert(connections[slot].queue.isEmpty, "the cork's bytes would go behind others")
        let rest = UnsafeRawBufferPointer(rebasing: cork.bytes[offset...])
        cork.count = 0
        metrics.replyCorkSpills.increment()
        if rest.count <= sendBlocks.blockBytes, let block = sendBlocks.take() {
            let copied = sendBlocks.append(rest, to: block)
            assert(copied, "bytes of at most a block did not fit an empty send block")
            connections[slot].queue.append(retained: block, isBlock: true, budget: memory)
        } else {
            connections[slot].queue.append(OutboundBytes(rest), budget: memory)
        }
        scheduleFlush(slot)
    }

    /// `deliver` for a connection with rare state (`Connection.hasRareState`), in the same order.
    @inline(never) private func deliverRare(_ slot: Int, _ bytes: UnsafeRawBufferPointer, to handler: ShardEventHandler) {
        if let outbound = sides[slot].outbound { return outbound.received(bytes) }
        if connections[slot].readPaused { return hold(slot, bytes) }
        // From here as for held bytes given back on resume (`handler` is the shard's: asserted
        // in `deliver`).
        deliverResumed(slot, bytes, to: handler)
    }

    /// Bytes the kernel completed before a pause took effect: kept for the resume. (Before
    /// TLS: ciphertext is held, so decryption waits for the resume too.)
    private func hold(_ slot: Int, _ bytes: UnsafeRawBufferPointer) {
        memory.charge(bytes.count)
        changeRareState(slot) { $0.held.append(contentsOf: bytes) }
    }

    /// The queue became empty after a send.
    func sendQueueEmptied(_ slot: Int) {
        guard connections[slot].state == .draining else { return }
        if connections[slot].lingerAfterFlush { beginLinger(slot) } else { beginClose(slot) }
    }

    func beginLinger(_ slot: Int) {
        connections[slot].state = .lingering
        cancelIdleTimer(slot)
        requestTimers.cancel(slot)
        shutdownWrite(slot)
        // The linger timer armed when draining began keeps running: it bounds both phases.
        if !lingerTimers.contains(slot) { lingerTimers.arm(slot, now: nowMilliseconds) }
    }

    /// Starts closing: no more delivery; the backend finishes when its operations are done.
    func beginClose(_ slot: Int) {
        guard connections[slot].state != .closing && connections[slot].state != .free else { return }
        connections[slot].state = .closing
        sides[slot].tls?.clearCorked()
        cancelIdleTimer(slot)
        requestTimers.cancel(slot)
        lingerTimers.cancel(slot)
        // An io_uring send in flight may still read the queue's front (a send block must not
        // go back to the pool and be refilled under it): the queue is emptied when the send
        // completes, in `finalize`. The shutdown in `cancelOperations` makes that prompt.
        if !connections[slot].sendInFlight { connections[slot].queue.removeAll(budget: memory) }
        if slot == cork.slot { cork.count = 0 }  // unsent, as the queue
        if !sides[slot].held.isEmpty {
            memory.release(sides[slot].held.count)
            changeRareState(slot) { $0.held = [] }
        }
        cancelOperations(slot)
        queueFinalizeIfQuiescent(slot)
    }

    /// The peer's end while reading is paused: noted, acted on at resume (after what it sent).
    func holdEnd(_ slot: Int) {
        assert(connections[slot].readPaused)
        connections[slot].heldEnd = true
    }

    /// Delivers what was held while paused, piece by piece (a piece may pause again), then
    /// restarts the backend's reading, or closes when the peer's end was held too. `handler`:
    /// the shard's, as `endOfTurn` got it.
    @inline(never) private func processResumes(_ handler: ShardEventHandler) {
        let list = resumeList
        resumeList.removeAll(keepingCapacity: true)
        let pieceBytes = max(configuration.recvBufferBytes, 512)
        for id in list {
            guard let slot = liveSlot(id) else { continue }  // finalized meanwhile
            var delivered = 0
            while connections[slot].state == .open, !connections[slot].readPaused, delivered < sides[slot].held.count {
                let n = min(pieceBytes, sides[slot].held.count - delivered)
                let piece = Array(sides[slot].held[delivered..<(delivered + n)])
                delivered += n
                piece.withUnsafeBytes { deliverResumed(slot, $0, to: handler) }
            }
            let state = connections[slot].state
            guard state != .closing else { continue }  // `beginClose` released `held`
            // Draining or lingering: input is discarded (as `deliver` does), what was held too;
            // reading resumes so that lingering drains the socket.
            let done = state == .open ? delivered : sides[slot].held.count
            if done > 0 {
                memory.release(done)
                changeRareState(slot) { $0.held.removeFirst(done) }
            }
            if connections[slot].readPaused { continue }  // paused again: the rest waits for the next resume
            if connections[slot].heldEnd {
                beginClose(slot)
            } else {
                resumeReceive(slot)
            }
        }
    }

    /// `deliver` without the byte count (counted when received) and the pause check.
    private func deliverResumed(_ slot: Int, _ bytes: UnsafeRawBufferPointer, to handler: ShardEventHandler) {
        armIdleTimer(slot)
        if let session = tlsSessions?[slot] {
            session._withUnsafeGuaranteedRef { tlsDeliver(slot, $0, bytes, to: handler) }
            return
        }
        handler.connectionReceived(socketID(slot), bytes)
    }

    func queueFinalizeIfQuiescent(_ slot: Int) {
        let c = UnsafePointer(connections + slot)  // no copy of the connection (see `liveSlot`)
        guard c.pointee.state == .closing, !c.pointee.recvArmed, !c.pointee.sendInFlight, !c.pointee.shutdownInFlight,
              !c.pointee.finalizeQueued else { return }
        connections[slot].finalizeQueued = true
        finalizeList.append(Int32(slot))
    }

    /// Closes the fd, tells the handler, frees the slot (new generation).
    private func finalize(_ slot: Int) {
        let id = socketID(slot)
        let outbound = sides[slot].outbound
        releaseDescriptor(slot)
        if sides[slot].tls != nil { tlsDetach(slot) }
        let generation = (connections[slot].generation &+ 1) & SocketID.generationMask
        assert(!connections[slot].sendInFlight, "finalized with a send in flight")
        assert(slot != cork.slot || cork.count == 0, "finalized with bytes in the cork (beginClose drops them)")
        connections[slot].queue.removeAll(budget: memory)  // what `beginClose` left for a send in flight
        connections[slot] = Connection()
        sides[slot] = ConnectionSide()
        connections[slot].generation = generation
        freeSlots.append(Int32(slot))
        openConnections -= 1
        memory.connections = openConnections
        metrics.connectionsOpen.set(openConnections)
        if let outbound { return outbound.slotClosed() }
        metrics.connectionsClosed.increment()
        releasedTotal.wrappingIncrement(ordering: .relaxed)
        handler.connectionClosed(id)
    }

    func processInbox() {
        assertOnShardThread()
        acceptedSockets?.drain(max: 4096) { adopt(fd: $0.fd, tls: $0.tls) }
        inbox.drain(max: 4096) { task in
            switch task {
            case .run(let work): work.body(self)
            case .drain(let deadline): startDraining(deadline: deadline)
            }
        }
    }

    /// Shard thread: moves the lifecycle forward and publishes it.
    private func transition(to next: ShardLifecycle) {
        assert(next > lifecycleState, "shard lifecycle moves forward only: \(lifecycleState) -> \(next)")
        lifecycleState = next
        publishedState.store(next.rawValue, ordering: .releasing)
    }

    func startDraining(deadline: Int64) {
        guard lifecycleState == .running else { return }
        transition(to: .draining)
        drainDeadline = deadline
        handler.shardDraining(self)
        closeOutbound()  // they would keep the shard from stopping
    }

    /// Stops taking work and refuses what is still queued: `ShardWork` gets `.stopped`,
    /// accepted sockets are closed. The inbox's consumer only: the shard thread as its loop
    /// ends, or the thread that started the group for a shard whose thread never ran.
    func closeInbox() {
        _ = admission.loadThenBitwiseOr(with: Self.admissionClosed, ordering: .acquiringAndReleasing)
        // Posters that passed the gate before it closed are finishing a push of a few
        // instructions; wait for them so their task is in the inbox for the drain below.
        while admission.load(ordering: .acquiring) != Self.admissionClosed { sched_yield() }
        acceptedSockets?.drain(max: .max) { socket in
            metrics.connectionsRejected.increment()
            releasedTotal.wrappingIncrement(ordering: .relaxed)
            Glibc.close(socket.fd)
        }
        inbox.drain(max: .max) { task in
            switch task {
            case .run(let work): work.refused?(.stopped)
            case .drain: break
            }
        }
        assert(inbox.approximateCount == 0 && (acceptedSockets?.approximateCount ?? 0) == 0, "a task entered a closed inbox")
    }

    /// A shard whose start-up failed (its thread never reached the loop): stopped, its inbox
    /// refused. Called by whichever thread is its inbox's consumer (see `closeInbox`).
    func abandon() {
        assert(lifecycleState == .created, "only a shard that never ran is abandoned")
        transition(to: .stopped)
        closeInbox()
    }

    /// End-of-turn work: handler hook, flushes, finalizes, timers. Returns the wait budget.
    /// `handler`: the shard's, loaded once by `runLoop` (see there).
    func endOfTurn(_ handler: ShardEventHandler) -> Int64 {
        assert(handler === self.handler, "a handler other than the shard's")
        // Tested here, not in the call: a turn with nothing resumed pays no call.
        if !resumeList.isEmpty { processResumes(handler) }
        handler.loopTurn(self)
        flushPending()
        while !finalizeList.isEmpty {
            let list = finalizeList
            finalizeList.removeAll(keepingCapacity: true)
            for s in list { finalize(Int(s)) }
            flushPending()
        }
        // No clock read here: the backends read it once per turn, right after the wait
        // (`refreshClock`), and this turn's dispatch since then is normally microseconds. A
        // second read per turn was ~25 ns (vDSO, more when the kernel's work evicted its
        // lines), at 1.6-3 messages per turn at 1,000 connections (io_uring / epoll) 10-15
        // ns per message (issue 16 item 3). A turn whose handlers ran long sees its timers
        // and tick at most that long late, as if they had fallen due during the next wait.
        if nowMilliseconds >= nextTickMilliseconds {
            runTimers()
            memory.blocks.tick()
            handler.tick(self, nowMilliseconds: nowMilliseconds)
            // The next multiple of the tick, not now + tick: the idle list's deadlines are
            // rounded to the same grid, so a tick is due exactly when a rounded deadline is, and
            // an idle timeout fires at the first tick at or after its exact deadline (within one
            // tick of it, as when deadlines were exact and ticks came every tick from the last).
            let tick = Int64(configuration.tickMilliseconds)
            nextTickMilliseconds = (nowMilliseconds / tick + 1) * tick
            flushPending()
            while !finalizeList.isEmpty {
                let list = finalizeList
                finalizeList.removeAll(keepingCapacity: true)
                for s in list { finalize(Int(s)) }
            }
        }
        if lifecycleState == .draining {
            if nowMilliseconds >= drainDeadline {
                for slot in 0..<highWater where connections[slot].state != .free && connections[slot].state != .closing {
                    beginClose(slot)
                }
                drainDeadline = .max
            }
            if openConnections == 0 { transition(to: .stopped) }
        }
        publishTurnCounts(handler)
        metrics.loopTurns.increment()
        memory.publishGauge()
        return max(0, nextTickMilliseconds - nowMilliseconds)
    }

    /// Publishes the turn's counts, the shard's (`turnCounts`) and the handler's
    /// (`ShardEventHandler.turnEnded`): last in `endOfTurn`, after the turn's sends, timers and
    /// closes, so a counter is exact whenever the loop may sleep. Also once after the loop.
    private func publishTurnCounts(_ handler: ShardEventHandler) {
        assertOnShardThread()
        handler.turnEnded(self)
        turnCounts.publish(to: metrics)
    }

    private func runTimers() {
        let now = nowMilliseconds
        if tlsState != nil { tlsRunTimers(now: now) }
        if !outbound.isEmpty { runOutboundTimers(now: now) }
        while let slot = lingerTimers.popExpired(now: now) {
            metrics.lingerTimeouts.increment()
            beginClose(slot)
        }
        while let slot = requestTimers.popExpired(now: now) {
            metrics.requestTimeouts.increment()
            handler.connectionTimedOut(socketID(slot), .request)
        }
        while let slot = idleTimers.popExpired(now: now) {
            connections[slot].noteIdleTimerGone()
            metrics.idleTimeouts.increment()
            handler.connectionTimedOut(socketID(slot), .idle)
        }
    }

    func flushPending() {
        let count = flushCount
        guard count > 0 else { return }
        // The tables swap: a slot scheduled while these are written (none today on either
        // backend, but a send may close a connection) waits in the other one for the next flush.
        // Not re-entered: a nested flush would swap the tables back and schedule into `list`.
        assert(!flushing, "flushPending re-entered")
        flushing = true
        defer { flushing = false }
        let list = flushSlots
        flushSlots = flushScratch
        flushScratch = list
        flushCount = 0
        for i in 0..<count {
            let slot = Int(list[i])
            connections[slot].flushQueued = false
            if let session = tlsSessions?[slot] {
                session._withUnsafeGuaranteedRef { if $0.hasCorked { tlsUncork(slot, $0, scheduling: false) } }
            }
            let st = connections[slot].state
            if (st == .open || st == .draining) && !connections[slot].queue.isEmpty {
                submitSend(slot)
            }
        }
    }

    /// Runs the loop on the calling thread until drained and stopped.
    func runLoop() {
        assertOnShardThread()  // bound by the group before set-up (`bindToCurrentThread`)
        defer { unbindFromCurrentThread() }
        transition(to: .running)
        // Loaded once for the loop's life and passed down (it is set before the thread starts
        // and never replaced): each turn's calls through the stored property retained and
        // released it, three times per turn (issue 16 item 3).
        let handler: ShardEventHandler = self.handler
        handler.shardStarted(self)
        advanceClock()  // the first turn's: later turns read it after their wait
        while lifecycleState != .stopped {
            sb_user_tsc_turn()  // a measurement build's mark (user-tsc.sh); otherwise nothing
            processInbox()
            let budget = endOfTurn(handler)
            // The backends sleep without a timeout and rely on `tickTimer` to end the sleep:
            // that holds only while no turn asks to wake later than the next tick.
            assert(budget <= Int64(configuration.tickMilliseconds), "a turn's budget past the next tick, which tickTimer would not end a sleep for")
            if lifecycleState == .stopped { break }
            waitAndDispatch(timeoutMilliseconds: budget, handler: handler)
        }
        // Nothing posted from now on runs: refuse it rather than leave it in the inbox.
        closeInbox()
        publishTurnCounts(handler)
        handler.shardStopped(self)
        tearDown()
        turnCounts.publish(to: metrics)
    }

    func refreshClock() { advanceClock() }

    /// Reads the clock, and derives what depends on it (`idleDeadline`). The one writer of
    /// `nowMilliseconds` after init.
    @inline(__always) private func advanceClock() {
        nowMilliseconds = monotonicMilliseconds()
        idleDeadline = idleTimers.deadline(armedAt: nowMilliseconds)
    }

    /// Arms the doorbell and re-checks for work; true when the loop may block. `handler`: the
    /// shard's, as the backend got it from `runLoop`.
    func mayBlock(_ handler: ShardEventHandler) -> Bool {
        assert(handler === self.handler, "a handler other than the shard's")
        if flushCount > 0 || !finalizeList.isEmpty || !resumeList.isEmpty { return false }
        doorbell.prepareToSleep()
        if inbox.approximateCount > 0 || (acceptedSockets?.approximateCount ?? 0) > 0 || handler.hasPendingWork(self) {
            doorbell.cancelSleep()
            return false
        }
        return true
    }

    // MARK: - Backend hooks

    /// Starts reading a newly adopted connection. false closes it.
    func registerConnection(_ slot: Int) -> Bool { fatalError("abstract") }
    /// Writes (or submits) what is queued for the connection.
    func submitSend(_ slot: Int) { fatalError("abstract") }
    /// Cancels reads and in-flight writes of a closing connection.
    func cancelOperations(_ slot: Int) { fatalError("abstract") }
    /// Stops reading an open connection (`pauseReading`).
    func pauseReceive(_ slot: Int) { fatalError("abstract") }
    /// Starts reading it again (`resumeReading`, after the held bytes were delivered).
    func resumeReceive(_ slot: Int) { fatalError("abstract") }
    /// Submits pending work, waits for events (or a doorbell), dispatches them.
    /// `timeoutMilliseconds`: the time to the next tick, at most `tickMilliseconds`. A backend
    /// may sleep without it while `tickTimer` is armed: the timer ends the sleep when the tick
    /// is due.
    /// `handler` is `self.handler`, loaded once by `runLoop`: delivered to with no retain per
    /// turn or per read (see `deliver`).
    func waitAndDispatch(timeoutMilliseconds: Int64, handler: ShardEventHandler) { fatalError("abstract") }
    /// Waits for an outbound connect on `fd` to finish (writable or failed), then calls
    /// `outboundConnectReady(index:attempt:)`.
    func watchConnect(fd: Int32, index: Int, attempt: UInt32) { fatalError("abstract") }
    /// Sends the FIN of a lingering close while input is still read (a backend whose
    /// descriptors are not the process's overrides it).
    func shutdownWrite(_ slot: Int) { _ = shutdown(connections[slot].fd, Int32(SHUT_WR)) }
    /// Closes the socket of a slot being finalized (no operation of it is in flight).
    func releaseDescriptor(_ slot: Int) { Glibc.close(connections[slot].fd) }
    /// Stops waiting (`completed`: the wait already ended with its event).
    func unwatchConnect(fd: Int32, index: Int, attempt: UInt32, completed: Bool = false) { fatalError("abstract") }
    /// Prepares thread-confined resources; called on the shard thread before the loop.
    func setUpOnThread() throws(IOError) {}
    func tearDown() {}
    /// Releases kernel resources (ring, epoll fd, eventfd, tick timerfd) after the thread exited, so a
    /// stopped broker holds no descriptor even while its metrics are still readable.
    func releaseResources() {
        doorbell.closeDescriptor()
        tickTimer.close()
    }
}
