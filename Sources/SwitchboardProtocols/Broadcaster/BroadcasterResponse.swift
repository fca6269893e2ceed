import SwitchboardJSON

/// Encodes replies: `{"requestId":N,"result":{…}}` and `{"requestId":N,"error":{"code","message"}}`.
/// `requestId` is left out when 0 (a notification's error reply), as the reference's
/// `omitempty` does.
public enum BroadcasterResponse {
    public static func result(requestId: Int, _ body: (inout JSONWriter) -> Void) -> String {
        var w = JSONWriter()
        if requestId != 0 { w.int("requestId", requestId) }
        w.object("result", body)
        return w.finish()
    }

    public static func error(requestId: Int, _ error: BroadcasterError) -> String {
        var w = JSONWriter()
        if requestId != 0 { w.int("requestId", requestId) }
        w.object("error") { e in
            e.string("code", error.code.rawValue)
            e.string("message", error.message)
        }
        return w.finish()
    }

    /// The message fields the reference returns for `publish` (its whole message with `seq` 0),
    /// plus `offset` and `epoch` when `includePosition`.
    public static func writeMessage(_ w: inout JSONWriter, _ m: BroadcasterMessage, includePosition: Bool = true) {
        w.string("id", m.id)
        w.int("seq", 0)
        w.string("createTime", BroadcasterTimestamp.format(unixNanoseconds: m.createTimeNanoseconds))
        w.string("channel", m.channel)
        w.string("event", m.event)
        m.payload.withUnsafeBufferPointer { w.raw("payload", $0) }
        if includePosition {
            w.int("offset", m.offset)
            w.string("epoch", m.epoch)
        }
    }

    /// A REST publish response body: the message object (single publish).
    public static func restMessage(_ m: BroadcasterMessage, includePosition: Bool = true) -> [UInt8] {
        var w = JSONWriter()
        writeMessage(&w, m, includePosition: includePosition)
        return w.finishBytes()
    }

    /// The error object alone (REST 400 bodies, batch items).
    public static func errorObject(_ error: BroadcasterError) -> [UInt8] {
        var w = JSONWriter()
        w.object("error") { e in
            e.string("code", error.code.rawValue)
            e.string("message", error.message)
        }
        return w.finishBytes()
    }
}
