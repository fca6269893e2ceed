// The strict JSON reader/writer lives in SwitchboardProtocols today and moves to the
// SwitchboardJSON target (branch broadcaster); this import makes both layouts build.
#if canImport(SwitchboardJSON)
import SwitchboardJSON
#endif

/// Writes RPC messages byte for byte as the reference does: `JSON.stringify` of the object
/// literals in `lib/server.js` and `lib/client.js`, so members appear in the reference's
/// order. An error is `{...error.decode(err), type: 'error', correlationId}`, hence
/// `errorType, errorSubtype, message, data` first and `type` after them.
public enum RPCMessageEncoder {
    /// The UTF-8 JSON text of `message`.
    public static func encode(_ message: RPCMessage) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(96)
        switch message {
        case .initialize:
            out.append(contentsOf: #"{"type":"init"}"#.utf8)
        case .close:
            out.append(contentsOf: #"{"type":"close"}"#.utf8)
        case .ping(let id):
            out.append(contentsOf: #"{"type":"ping","correlationId":"#.utf8)
            out.append(contentsOf: id.jsonText.utf8)
            out.append(UInt8(ascii: "}"))
        case .pong(let id):
            out.append(contentsOf: #"{"type":"pong","correlationId":"#.utf8)
            out.append(contentsOf: id.jsonText.utf8)
            out.append(UInt8(ascii: "}"))
        case .request(let r):
            out.append(contentsOf: #"{"type":"request","name":"#.utf8)
            JSONWriter.appendString(&out, r.name)
            out.append(contentsOf: #","args":"#.utf8)
            RPCValue.array(r.args).append(to: &out)
            out.append(contentsOf: #","correlationId":"#.utf8)
            out.append(contentsOf: r.correlationId.jsonText.utf8)
            out.append(UInt8(ascii: "}"))
        case .response(let id, let result):
            out.append(contentsOf: #"{"type":"response","correlationId":"#.utf8)
            out.append(contentsOf: id.jsonText.utf8)
            out.append(contentsOf: #","result":"#.utf8)
            result.append(to: &out)
            out.append(UInt8(ascii: "}"))
        case .error(let id, let e):
            out.append(contentsOf: #"{"errorType":"#.utf8)
            JSONWriter.appendString(&out, e.errorType.rawValue)
            out.append(contentsOf: #","errorSubtype":"#.utf8)
            if let s = e.errorSubtype {
                JSONWriter.appendString(&out, s.rawValue)
            } else if let other = e.otherSubtype {
                JSONWriter.appendString(&out, other)
            } else {
                out.append(contentsOf: "null".utf8)
            }
            out.append(contentsOf: #","message":"#.utf8)
            JSONWriter.appendString(&out, e.message)
            out.append(contentsOf: #","data":"#.utf8)
            e.data.append(to: &out)
            out.append(contentsOf: #","type":"error","correlationId":"#.utf8)
            out.append(contentsOf: (id?.jsonText ?? "null").utf8)
            out.append(UInt8(ascii: "}"))
        case .application(let type, var body):
            body["type"] = .string(type)
            RPCValue.object(body).append(to: &out)
        }
        return out
    }

    /// `encode` as a String (for text frames).
    public static func text(_ message: RPCMessage) -> String {
        String(decoding: encode(message), as: UTF8.self)
    }
}
