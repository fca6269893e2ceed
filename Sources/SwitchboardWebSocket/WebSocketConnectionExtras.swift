/// The part of a ``WebSocketConnection`` that most sockets never need, kept out of line so an
/// idle server-side socket does not carry it (issue 16 item 2): the permessage-deflate state,
/// the client role's masking keys, a frame header split across reads, and the last control
/// frame's payload.
///
/// Made at the connection's start when deflate was negotiated or the role is client (both need
/// it for the socket's whole life); otherwise on the first split header or control frame, and
/// dropped again once that frame is handled (``WebSocketConnection/dropExtrasIfUnused()``), so
/// a plain server socket that pings now and then holds it only while a ping is in flight.
@usableFromInline final class WebSocketConnectionExtras {
    /// Negotiated parameters; nil when permessage-deflate is off.
    let deflate: PerMessageDeflateParameters?
    /// `deflate != nil`, for the codec's inlinable `compresses`.
    @usableFromInline var hasDeflate: Bool { deflate != nil }
    /// Keys for the frames a client sends; nil in the server role (its frames are not masked).
    var maskKeys: WebSocketMaskKeys?
    /// zlib streams, made on first use (an idle socket holds none) and charged to the budget.
    var inflater: Inflater?
    var deflater: Deflater?
    /// Budget bytes charged for the zlib streams.
    var compressionCharge = 0
    /// Compressed bytes of the message in progress (against `compressedLimit`).
    var compressedBytes = 0
    /// Header bytes split across reads: at most 14 (2 + 8 length + 4 mask).
    var headerStorage: (UInt64, UInt64) = (0, 0)
    /// The control frame being received (allocated by the first one).
    var controlBuffer: [UInt8] = []

    init(deflate: PerMessageDeflateParameters?, maskKeys: WebSocketMaskKeys?) {
        self.deflate = deflate
        self.maskKeys = maskKeys
    }

    /// Whether the connection needs this for its whole life (not only for a frame in progress).
    var isPermanent: Bool { deflate != nil || maskKeys != nil }
}
