// Field names as most clients spell them, handed out by the parser as literals: no String is
// decoded for them (one longer than 15 bytes, e.g. `Sec-WebSocket-Version`, would be a heap
// allocation), and the broker can map a literal to a swift-http-types name without validating
// and lowercasing it again. Exact spelling only: any other case is decoded as received.

enum CommonFieldNames {
    /// The name in `b[range]`: a literal when it is one of these names spelled exactly so,
    /// else decoded.
    @inline(never)
    static func name(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String {
        literal(b, range) ?? String(decoding: UnsafeBufferPointer(rebasing: b[range]), as: UTF8.self)
    }

    /// The literal for `b[range]` when it is one of these names spelled exactly so, else nil.
    static func literal(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String? {
        // By length first: one integer compare rejects most names.
        switch range.count {
        case 4:
            if ASCII.equalsExactly(b, range, "Host") { return "Host" }
        case 6:
            if ASCII.equalsExactly(b, range, "Accept") { return "Accept" }
            if ASCII.equalsExactly(b, range, "Origin") { return "Origin" }
            if ASCII.equalsExactly(b, range, "Cookie") { return "Cookie" }
            if ASCII.equalsExactly(b, range, "Pragma") { return "Pragma" }
        case 7:
            if ASCII.equalsExactly(b, range, "Upgrade") { return "Upgrade" }
        case 10:
            if ASCII.equalsExactly(b, range, "Connection") { return "Connection" }
            if ASCII.equalsExactly(b, range, "User-Agent") { return "User-Agent" }
        case 12:
            if ASCII.equalsExactly(b, range, "Content-Type") { return "Content-Type" }
        case 13:
            if ASCII.equalsExactly(b, range, "Cache-Control") { return "Cache-Control" }
            if ASCII.equalsExactly(b, range, "Authorization") { return "Authorization" }
        case 14:
            if ASCII.equalsExactly(b, range, "Content-Length") { return "Content-Length" }
        case 15:
            if ASCII.equalsExactly(b, range, "Accept-Encoding") { return "Accept-Encoding" }
            if ASCII.equalsExactly(b, range, "Accept-Language") { return "Accept-Language" }
        case 17:
            if ASCII.equalsExactly(b, range, "Sec-WebSocket-Key") { return "Sec-WebSocket-Key" }
        case 21:
            if ASCII.equalsExactly(b, range, "Sec-WebSocket-Version") { return "Sec-WebSocket-Version" }
        case 22:
            if ASCII.equalsExactly(b, range, "Sec-WebSocket-Protocol") { return "Sec-WebSocket-Protocol" }
        case 24:
            if ASCII.equalsExactly(b, range, "Sec-WebSocket-Extensions") { return "Sec-WebSocket-Extensions" }
        default:
            break
        }
        return nil
    }
}
