/// A complete WebSocket message as the handler receives it.
public enum SocketMessage: Sendable, Equatable {
    case text(String)
    case binary([UInt8])
}
