import COpenSSL

/// The client side of the opening handshake (RFC 6455 §4.1): the upgrade request, and the
/// checks on the server's response. I/O-free like the codec: the owner sends ``request`` and
/// feeds the bytes it receives to ``validate(_:)`` until it stops answering `.incomplete`.
///
/// The response is refused (the connection must then be dropped, §4.1 "fail the WebSocket
/// connection") when: the status is not 101; `Upgrade` lacks `websocket` or `Connection` lacks
/// `upgrade`; `Sec-WebSocket-Accept` is missing, repeated or wrong; an extension or subprotocol
/// is selected that was not offered; the permessage-deflate answer has bad parameters; or the
/// head exceeds ``maxResponseHeadBytes`` before its blank line.
package struct WebSocketClientHandshake: Sendable {
    /// The response head's size limit: a server sending more is not speaking WebSocket.
    package static let maxResponseHeadBytes = 16_384

    /// The `Sec-WebSocket-Key` sent (base64 of 16 random bytes).
    package let key: String
    /// The complete request to send, ending in the blank line.
    package let request: [UInt8]
    let offeredDeflate: Bool
    let offeredSubprotocols: [String]

    /// What the server's response said.
    package enum Outcome: Equatable, Sendable {
        /// More bytes are needed (the blank line has not arrived).
        case incomplete
        /// Upgraded: the first `headBytes` bytes were the response head; what follows is frames.
        /// `deflate` is non-nil when permessage-deflate was agreed (pass it to the client codec).
        case accepted(headBytes: Int, deflate: PerMessageDeflateParameters?, subprotocol: String?)
        /// The handshake failed for this reason.
        case rejected(String)
    }

    /// Builds the request for `url`. `perMessageDeflate` offers permessage-deflate with
    /// `client_max_window_bits` (we can take any window the server picks); `headers` are extra
    /// lines sent as they are (`Name: value`, no CRLF).
    package init(
        url: WebSocketURL, key: String = WebSocketClientHandshake.makeKey(), subprotocols: [String] = [],
        perMessageDeflate: Bool = false, headers: [String] = []
    ) {
        precondition(headers.allSatisfy { !$0.contains("\r") && !$0.contains("\n") }, "header lines must not contain CR or LF")
        self.key = key
        offeredDeflate = perMessageDeflate
        offeredSubprotocols = subprotocols
        var text = "GET \(url.resource) HTTP/1.1\r\n"
        text += "Host: \(url.hostHeader)\r\n"
        text += "Upgrade: websocket\r\n"
        text += "Connection: Upgrade\r\n"
        text += "Sec-WebSocket-Key: \(key)\r\n"
        text += "Sec-WebSocket-Version: 13\r\n"
        if !subprotocols.isEmpty { text += "Sec-WebSocket-Protocol: \(subprotocols.joined(separator: ", "))\r\n" }
        if perMessageDeflate { text += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" }
        for line in headers { text += line + "\r\n" }
        text += "\r\n"
        request = Array(text.utf8)
    }

    /// A fresh `Sec-WebSocket-Key`: base64 of 16 bytes from the CSPRNG (§4.1: "randomly selected").
    package static func makeKey() -> String {
        var raw = [UInt8](repeating: 0, count: 16)
        // The call stays outside the precondition: a check must never carry the work it checks.
        let status = sb_random_bytes(&raw, raw.count)
        precondition(status == 0, "sb_random_bytes failed")
        return Base64.encode(raw)
    }

    /// Checks the response bytes received so far (from the first byte after the request).
    package func validate(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        guard let end = Self.headEnd(bytes) else {
            return bytes.count > Self.maxResponseHeadBytes
                ? .rejected("response head over \(Self.maxResponseHeadBytes) bytes") : .incomplete
        }
        guard end <= Self.maxResponseHeadBytes else { return .rejected("response head over \(Self.maxResponseHeadBytes) bytes") }
        let head = String(decoding: bytes[0..<end], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1.") else { return .rejected("bad status line: \(statusLine)") }
        guard parts[1] == "101" else { return .rejected("server answered \(statusLine)") }
        var fields: [String: [String]] = [:]
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { return .rejected("bad header line: \(line)") }
            fields[DeflateOffer.trim(line[..<colon]).lowercased(), default: []].append(DeflateOffer.trim(line[line.index(after: colon)...]))
        }
        func tokens(_ name: String) -> [String] {
            (fields[name] ?? []).flatMap { $0.split(separator: ",") }.map { DeflateOffer.trim($0).lowercased() }
        }
        guard tokens("upgrade").contains("websocket") else { return .rejected("missing Upgrade: websocket") }
        guard tokens("connection").contains("upgrade") else { return .rejected("missing Connection: Upgrade") }
        guard let accept = fields["sec-websocket-accept"], accept.count == 1 else {
            return .rejected("missing Sec-WebSocket-Accept")
        }
        let expected = WebSocketHandshake.acceptValue(forKey: key)
        guard accept[0] == expected else {
            return .rejected("Sec-WebSocket-Accept mismatch: got \(accept[0]), expected \(expected)")
        }
        var subprotocol: String?
        let protocols = tokens("sec-websocket-protocol")
        if !protocols.isEmpty {
            let chosen = (fields["sec-websocket-protocol"] ?? []).joined(separator: ",")
            guard protocols.count == 1, let match = offeredSubprotocols.first(where: { $0.lowercased() == protocols[0] }) else {
                return .rejected("server selected a subprotocol that was not offered: \(chosen)")
            }
            subprotocol = match
        }
        var deflate: PerMessageDeflateParameters?
        let extensionValues = (fields["sec-websocket-extensions"] ?? []).filter { !$0.isEmpty }
        if !extensionValues.isEmpty {
            let joined = extensionValues.joined(separator: ", ")
            guard offeredDeflate, let elements = DeflateOffer.parseExtensions(extensionValues), elements.count == 1,
                  elements[0].name.lowercased() == "permessage-deflate" else {
                return .rejected("server selected an extension that was not offered: \(joined)")
            }
            guard let answer = DeflateOffer(parameters: elements[0].parameters),
                  answer.clientMaxWindowBits != .some(nil) else {
                return .rejected("bad permessage-deflate parameters: \(joined)")
            }
            deflate = answer.parameters
        }
        return .accepted(headBytes: end + 4, deflate: deflate, subprotocol: subprotocol)
    }

    /// Offset of the "\r\n\r\n" that ends the head, or nil.
    static func headEnd(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4)
            where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return index
        }
        return nil
    }
}
