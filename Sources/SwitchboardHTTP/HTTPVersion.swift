/// The HTTP/1.x protocol versions the parser accepts.
public enum HTTPVersion: Sendable, Equatable {
    /// `HTTP/1.0`: connections close after each request unless the client asks for keep-alive.
    case http1_0
    /// `HTTP/1.1`: persistent connections by default.
    case http1_1
}
