/// A parsed `ws://` or `wss://host[:port][/path][?query]` URL (RFC 6455 §3): what the client
/// handshake and the load generator connect to.
///
/// Refused: other schemes, user info (`user@host`), an empty host, a port outside 1...65535, an
/// unbracketed IPv6 literal. A fragment is dropped (§3: fragments are meaningless here).
package struct WebSocketURL: Equatable, Sendable {
    /// The host as written, without IPv6 brackets.
    package var host: String
    package var port: UInt16
    /// wss://: TLS, default port 443.
    package var secure: Bool
    /// Request target: path plus query, at least "/".
    package var resource: String

    /// Creates a URL from its parts; `parse` is the usual way.
    package init(host: String, port: UInt16, secure: Bool = false, resource: String) {
        self.host = host
        self.port = port
        self.secure = secure
        self.resource = resource
    }

    /// The Host header value (brackets kept for IPv6, port omitted when it is the scheme's default).
    package var hostHeader: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return port == (secure ? 443 : 80) ? bracketed : "\(bracketed):\(port)"
    }

    /// Why a URL was refused.
    package struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        package var description: String
    }

    /// Parses `text`; the scheme is case-insensitive.
    package static func parse(_ text: String) throws(ParseError) -> WebSocketURL {
        func refuse(_ why: String) -> ParseError { ParseError(description: "\(why): \(text)") }
        let lower = text.lowercased()
        let secure = lower.hasPrefix("wss://")
        guard secure || lower.hasPrefix("ws://") else { throw refuse("expected a ws:// or wss:// URL") }
        let rest = text.dropFirst(secure ? 6 : 5)
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[rest.startIndex..<authorityEnd]
        var resource = String(rest[authorityEnd...])
        if let hash = resource.firstIndex(of: "#") { resource = String(resource[..<hash]) }
        if resource.isEmpty || resource.first == "?" { resource = "/" + resource }
        if authority.contains("@") { throw refuse("user info is not supported") }

        var host: Substring
        var portText: Substring?
        if authority.first == "[" {
            guard let close = authority.firstIndex(of: "]") else { throw refuse("bad IPv6 literal") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { throw refuse("bad authority") }
                portText = after.dropFirst()
            }
        } else {
            let parts = authority.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw refuse("an IPv6 literal needs brackets") }
            host = parts[0]
            if parts.count == 2 { portText = parts[1] }
        }
        guard !host.isEmpty else { throw refuse("missing host") }
        var port: UInt16 = secure ? 443 : 80
        if let portText {
            guard let value = UInt16(portText), value > 0 else { throw refuse("bad port") }
            port = value
        }
        return WebSocketURL(host: String(host), port: port, secure: secure, resource: resource)
    }
}
