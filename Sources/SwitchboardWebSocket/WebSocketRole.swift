/// Which end of a WebSocket a ``WebSocketConnection`` speaks for (RFC 6455 §5.1, §5.3).
///
/// The role decides the masking rules and which half of the permessage-deflate parameters
/// applies to each direction; everything else in the codec is the same for both ends.
@usableFromInline package enum WebSocketRole: Sendable {
    /// Accepts only masked frames; sends unmasked ones. Inflates with the client's window,
    /// deflates with the server's.
    case server
    /// Refuses masked frames; masks every frame it sends with a fresh key from a
    /// cryptographic source (§10.3). Inflates with the server's window, deflates with the client's.
    case client

    /// Whether frames arriving at this end must carry a mask (the server's) or must not (the client's).
    @inlinable var expectsMaskedFrames: Bool { self == .server }

    /// The close reason when an incoming frame breaks this role's masking rule.
    var maskingViolation: String { self == .server ? "client frame not masked" : "server frame masked" }
}
