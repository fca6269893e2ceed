import SwitchboardWebSocket
import SwitchboardIO

/// Where a WebSocket is in its life (the codec tracks the close handshake on the wire; this is
/// what the server may still do with the socket).
enum WebSocketLifecycle: Equatable {
    /// Messages flow both ways.
    case open
    /// A keep-alive ping went out at the idle timeout; any input returns to `.open`.
    case awaitingPong
    /// We sent a close frame and wait for the client's (the request timer bounds the wait).
    case closeSent
    /// The codec queued the last frame (the answer to the client's close, or a failure's
    /// close): nothing may be sent any more.
    case closeQueued

    /// Whether a data frame may still be queued.
    var maySend: Bool { self == .open || self == .awaitingPong }
}

/// A connection that switched to WebSocket: its codec, token and lifecycle, boxed for the same
/// reason as ``HTTPSession``.
///
/// Memory (issue 16 item 2): one exists per WebSocket, idle ones included, so the object is kept
/// to 136 bytes with its 16-byte header (a 144-byte malloc chunk; `WebSocketMemoryTests` checks
/// both): the codec's compact core, the per-turn work bounds in 32 bits where their range
/// allows, and the state only some sockets need (an input backlog, a coalesced pong, the
/// assembly timer) out of line in ``WebSocketSessionRareState``, made on first use. Stored
/// properties are declared in layout order (Swift keeps declaration order).
///
/// Cache lines (issue 16 item 3): a message whole in one read touches the codec's settings
/// reference, counters and state bytes (object bytes 0x30-0x5a) and the session's fields up to
/// `rare` (0x5b-0x7f): 80 bytes, so two 64-byte lines at any of malloc's four 16-byte
/// alignments. The codec's cold fields (`extras`, `frameRemaining`, the assembly array) come
/// before that run and `turnFanOutStartNanoseconds` after it. (Before, the run spanned 0x28 to
/// 0x87, three lines for half the sessions: at 1,000 connections, where a socket's state is
/// out of the L1 cache by its next message, ~0.5 of the ~2.5 simulated D1 misses per echo.)
final class WebSocketSession {
    /// The object bytes a message whole in one read touches (see "Cache lines" above): the
    /// shard's event loops prefetch them one event ahead (`HandlerSlotTable`), and
    /// `WebSocketIdleMemoryTests.hotFieldOffsets` checks the fields lie in them.
    static let hotBytes = 0x30..<0x80

    /// The codec. Exempt from the dynamic exclusivity check (it cost a runtime call per
    /// message, issue 16 item 3): a session belongs to its shard's thread, and no access to the
    /// codec overlaps another. The one long access is `receive` in the driver's `decodeOne`,
    /// whose closure only records events (acted on after `receive` returns, the codec's own
    /// rule); every other use (send, close, timers, release) is a call of its own on the shard
    /// thread, never made from inside a codec call.
    @exclusivity(unchecked) var connection: WebSocketConnection
    var lifecycle = WebSocketLifecycle.open
    /// In the driver's resume list.
    var resumeQueued = false
    /// `messagesThisTurn`'s storage: at most `maxMessagesPerTurn` (an `Int` setting, checked here).
    private var messagesThisTurnCount: UInt32 = 0
    /// The driver turn `messagesThisTurn` counts for, the low 32 bits of the driver's counter
    /// (`isTurn`): two turns 2^32 apart compare equal, which at worst gives one socket one
    /// turn's allowance less, once in 2^32 turns.
    private var turnLow: UInt32 = 0
    /// When this socket's slice of the turn began.
    var turnStartNanoseconds: UInt64 = 0
    var token: [UInt8]?
    /// The rarely needed part; nil until first needed.
    private var rare: WebSocketSessionRareState?
    /// The driver's `fanOutNanoseconds` then: fan-out time since is not charged to the slice.
    /// Last: read only when a socket's turn holds several messages, so it stays out of the
    /// run of fields every message touches (see the layout note above).
    var turnFanOutStartNanoseconds: UInt64 = 0

    init(_ connection: WebSocketConnection, token: [UInt8]?, compresses: Bool) {
        assert(compresses == connection.compresses, "the session's and the codec's deflate disagree")
        self.connection = connection
        self.token = token
    }

    /// permessage-deflate was negotiated: outgoing messages go through the codec's compressor.
    var compresses: Bool { connection.compresses }

    // Work bounds (see `WebSocketConnectionDriver`).

    /// Whether `turn` (the driver's full counter) is the one this session counts for.
    @inline(__always) func isTurn(_ turn: UInt64) -> Bool { turnLow == UInt32(truncatingIfNeeded: turn) }

    /// Makes `turn` the one this session counts for (the caller resets the counts).
    @inline(__always) func enterTurn(_ turn: UInt64) { turnLow = UInt32(truncatingIfNeeded: turn) }

    var messagesThisTurn: Int {
        get { Int(messagesThisTurnCount) }
        set {
            assert(newValue >= 0 && newValue <= Int(UInt32.max))
            messagesThisTurnCount = UInt32(truncatingIfNeeded: newValue)
        }
    }

    // Input beyond this turn's frame budget waits in `backlog`, charged to the shard's budget
    // (`backlogCharge`). Reading or clearing an absent backlog allocates nothing.

    var backlog: [UInt8] {
        get { rare?.backlog ?? [] }
        _modify {
            if let rare {
                yield &rare.backlog
            } else {
                var bytes: [UInt8] = []
                yield &bytes
                if bytes.capacity > 0 { makeRare().backlog = bytes }
            }
        }
    }
    var backlogHead: Int {
        get { rare?.backlogHead ?? 0 }
        set { if rare != nil || newValue != 0 { makeRare().backlogHead = newValue } }
    }
    var backlogCharge: Int {
        get { rare?.backlogCharge ?? 0 }
        set { if rare != nil || newValue != 0 { makeRare().backlogCharge = newValue } }
    }
    var backlogIsEmpty: Bool {
        guard let rare else { return true }
        return rare.backlogHead == rare.backlog.count
    }

    // Pong coalescing: the sent-bytes mark at which the last queued pong has left, and the
    // latest pong waiting for it (RFC 6455 §5.5.3 allows answering only the latest ping).

    var pongLeavesAt: UInt64 {
        get { rare?.pongLeavesAt ?? 0 }
        set { if rare != nil || newValue != 0 { makeRare().pongLeavesAt = newValue } }
    }
    var pendingPong: [UInt8]? {
        get { rare?.pendingPong }
        set { if rare != nil || newValue != nil { makeRare().pendingPong = newValue } }
    }

    // Assembly timer: when the message numbered `assemblyMessage` began.

    var assemblyMessage: Int {
        get { rare?.assemblyMessage ?? -1 }
        set { if rare != nil || newValue != -1 { makeRare().assemblyMessage = newValue } }
    }
    var assemblyStartedMilliseconds: Int64 {
        get { rare?.assemblyStartedMilliseconds ?? 0 }
        set { if rare != nil || newValue != 0 { makeRare().assemblyStartedMilliseconds = newValue } }
    }

    private func makeRare() -> WebSocketSessionRareState {
        if let rare { return rare }
        let made = WebSocketSessionRareState()
        rare = made
        return made
    }
}

/// The part of a ``WebSocketSession`` only some sockets need: made by the first input backlog,
/// pong or message spanning reads, then kept for the session's life (80 bytes of heap; an idle
/// socket that never needed it holds none).
final class WebSocketSessionRareState {
    var backlog: [UInt8] = []
    var backlogHead = 0
    var backlogCharge = 0
    var pongLeavesAt: UInt64 = 0
    var pendingPong: [UInt8]? = nil
    var assemblyMessage = -1
    var assemblyStartedMilliseconds: Int64 = 0
}

extension ShardMemoryBudget: WebSocketMemoryBudget {}
