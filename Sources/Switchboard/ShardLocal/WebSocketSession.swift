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
final class WebSocketSession {
    var connection: WebSocketConnection
    var token: [UInt8]?
    var lifecycle = WebSocketLifecycle.open
    /// permessage-deflate was negotiated: outgoing messages go through the codec's compressor.
    let compresses: Bool

    // Work bounds (see `WebSocketConnectionDriver`): input beyond this turn's frame budget
    // waits here, charged to the shard's budget (`backlogCharge`).
    var backlog: [UInt8] = []
    var backlogHead = 0
    var backlogCharge = 0
    /// In the driver's resume list.
    var resumeQueued = false
    /// The driver turn `messagesThisTurn` counts for.
    var turn: UInt64 = 0
    var messagesThisTurn = 0
    /// When this socket's slice of the turn began.
    var turnStartNanoseconds: UInt64 = 0
    /// The driver's `fanOutNanoseconds` then: fan-out time since is not charged to the slice.
    var turnFanOutStartNanoseconds: UInt64 = 0

    // Pong coalescing: the sent-bytes mark at which the last queued pong has left, and the
    // latest pong waiting for it (RFC 6455 §5.5.3 allows answering only the latest ping).
    var pongLeavesAt: UInt64 = 0
    var pendingPong: [UInt8]? = nil

    // Assembly timer: when the message numbered `assemblyMessage` began.
    var assemblyMessage = -1
    var assemblyStartedMilliseconds: Int64 = 0

    var backlogIsEmpty: Bool { backlogHead == backlog.count }

    init(_ connection: WebSocketConnection, token: [UInt8]?, compresses: Bool) {
        self.connection = connection
        self.token = token
        self.compresses = compresses
    }
}

extension ShardMemoryBudget: WebSocketMemoryBudget {}
