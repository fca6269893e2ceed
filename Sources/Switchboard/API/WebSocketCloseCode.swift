import SwitchboardWebSocket

/// A WebSocket close status code a server may send (RFC 6455 §7.4 and the IANA registry).
///
/// Codes that must never appear on the wire (1005, 1006, 1015) or are reserved cannot be
/// made: `init(rawValue:)` returns nil for them.
public struct WebSocketCloseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16

    /// Valid: 1000-1003, 1007-1014 and 3000-4999 (registered and application codes).
    public init?(rawValue: UInt16) {
        guard SwitchboardWebSocket.WebSocketCloseCode.isValidReceived(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    private init(known: UInt16) {
        assert(SwitchboardWebSocket.WebSocketCloseCode.isValidReceived(known))
        rawValue = known
    }

    /// An application-defined code, 4000-4999.
    public static func application(_ code: UInt16) -> WebSocketCloseCode {
        precondition((4000...4999).contains(code), "application close codes are 4000-4999")
        return WebSocketCloseCode(known: code)
    }

    public static let normalClosure = WebSocketCloseCode(known: 1000)
    /// Server shutdown.
    public static let goingAway = WebSocketCloseCode(known: 1001)
    public static let protocolError = WebSocketCloseCode(known: 1002)
    public static let unsupportedData = WebSocketCloseCode(known: 1003)
    /// Data not consistent with its type (e.g. invalid UTF-8 in a text message).
    public static let invalidPayload = WebSocketCloseCode(known: 1007)
    public static let policyViolation = WebSocketCloseCode(known: 1008)
    public static let messageTooBig = WebSocketCloseCode(known: 1009)
    public static let internalError = WebSocketCloseCode(known: 1011)
    public static let serviceRestart = WebSocketCloseCode(known: 1012)
    /// Temporary overload (the slow-consumer policy's close); the client may retry.
    public static let tryAgainLater = WebSocketCloseCode(known: 1013)

    public var description: String { String(rawValue) }
}
