/// What the server sends, as JSON text (the page parses it with `JSON.parse`). Hand-written so
/// the chat needs no Foundation on the shard threads; every string goes through `quoted`.
enum ChatJSON {
    /// A JSON string literal for `s`: quotes, backslashes and control characters escaped
    /// (RFC 8259 §7); `<`, `>` and `&` too, so the text is inert even if someone pastes it
    /// into HTML (the page itself only ever uses `textContent`).
    static func quoted(_ s: String) -> String {
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "<", ">", "&", "\u{2028}", "\u{2029}":
                out += "\\u" + hex4(scalar.value)
            case _ where scalar.value < 0x20:
                out += "\\u" + hex4(scalar.value)
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    private static func hex4(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    static func message(_ room: String, _ m: ChatMessage) -> String {
        #"{"type":"message","room":\#(quoted(room)),"#
            + #""offset":\#(m.offset),"name":\#(quoted(m.name)),"text":\#(quoted(m.text)),"time":\#(m.timeMilliseconds)}"#
    }

    private static func messageFields(_ m: ChatMessage) -> String {
        #"{"offset":\#(m.offset),"name":\#(quoted(m.name)),"text":\#(quoted(m.text)),"time":\#(m.timeMilliseconds)}"#
    }

    static func presence(_ room: String, _ names: [String], version: UInt64) -> String {
        #"{"type":"presence","room":\#(quoted(room)),"version":\#(version),"members":[\#(names.map(quoted).joined(separator: ","))]}"#
    }

    /// The answer to a join: what the client missed (or, `reset`, everything held: reload),
    /// the latest offset, and who is in the room.
    static func history(_ room: String, messages: [ChatMessage], reset: Bool, latest: UInt64, members: [String],
                        membersVersion: UInt64) -> String {
        #"{"type":"history","room":\#(quoted(room)),"reset":\#(reset),"latest":\#(latest),"#
            + #""version":\#(membersVersion),"members":[\#(members.map(quoted).joined(separator: ","))],"#
            + #""messages":[\#(messages.map(messageFields).joined(separator: ","))]}"#
    }

    static func error(_ text: String) -> String {
        #"{"type":"error","text":\#(quoted(text))}"#
    }
}
