/// Close status codes (RFC 6455 §7.4.1 and the IANA registry).
@usableFromInline package enum WebSocketCloseCode {
    /// Normal closure.
    package static let normal: UInt16 = 1000
    /// The endpoint is going away (server shutdown, page navigation).
    package static let goingAway: UInt16 = 1001
    /// The peer violated the protocol.
    package static let protocolError: UInt16 = 1002
    /// The message type cannot be accepted.
    package static let unsupportedData: UInt16 = 1003
    /// Never sent on the wire: "no status code was present".
    package static let noStatusReceived: UInt16 = 1005
    /// Message data not consistent with its type (e.g. invalid UTF-8 in text).
    package static let invalidPayload: UInt16 = 1007
    /// Generic policy violation.
    package static let policyViolation: UInt16 = 1008
    /// A frame or message exceeded a limit.
    package static let messageTooBig: UInt16 = 1009
    /// Unexpected server condition.
    package static let internalError: UInt16 = 1011
    /// Temporary overload; the client may retry.
    package static let tryAgainLater: UInt16 = 1013

    /// Whether a peer may send `code` in a close frame.
    ///
    /// Valid: 1000-1003, 1007-1014 and 3000-4999. 1004 is reserved, 1005/1006/1015 must never
    /// appear on the wire, 1016-2999 are unassigned or reserved for future RFCs, and >= 5000 is
    /// undefined. 1012 (service restart), 1013 (try again later) and 1014 (bad gateway) were
    /// registered with IANA after RFC 6455; Autobahn 7.9.x does not test them and the
    /// `websockets` library accepts them, so we do too.
    @inlinable
    package static func isValidReceived(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }
}
