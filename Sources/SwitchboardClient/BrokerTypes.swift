import Foundation

/// Errors thrown by `BrokerClient` and `BrokerChannel`.
public enum BrokerClientError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The client has no live, registered connection (never connected, disconnected, or
    /// between an unexpected drop and a successful reconnect).
    case notConnected
    /// No response arrived within `requestTimeout` (or `connectTimeout` while connecting).
    case timeout
    /// The broker answered with a `*_failed` response; the associated value is its `error` text.
    case failed(String)
    /// The connection ended while the request was pending (or before it could be sent).
    case disconnected
    /// The broker sent something that does not follow the protocol (or a payload could not be
    /// encoded as JSON).
    case protocolError(String)
    /// The WebSocket opening handshake failed (bad status, missing/wrong Sec-WebSocket-Accept...).
    case handshakeFailed(String)
    /// The TCP connection could not be established (resolution failure, refused...).
    case connectionFailed(String)
    /// The URL is not a supported `ws://host:port/path` URL.
    case invalidURL(String)
    /// `connect` was called while connected or connecting.
    case alreadyConnected
    /// The channel is closed (locally, by the peer, or because the connection ended).
    case channelClosed

    public var description: String {
        switch self {
        case .notConnected: "not connected to the broker"
        case .timeout: "request timed out"
        case .failed(let text): "broker error: \(text)"
        case .disconnected: "disconnected from the broker"
        case .protocolError(let text): "protocol error: \(text)"
        case .handshakeFailed(let text): "WebSocket handshake failed: \(text)"
        case .connectionFailed(let text): "connection failed: \(text)"
        case .invalidURL(let text): "invalid URL: \(text)"
        case .alreadyConnected: "already connected"
        case .channelClosed: "channel is closed"
        }
    }
}

public struct BrokerClientOptions: Sendable {
    /// Time allowed for each request's response (register, list, open, message, close).
    public var requestTimeout: Duration
    /// Time allowed for TCP connect plus the WebSocket handshake.
    public var connectTimeout: Duration
    /// Reconnect (and re-register with the same role) after an unexpected drop.
    public var autoReconnect: Bool
    /// First reconnect delay; doubled after every failed attempt, capped at `maxReconnectDelay`.
    public var reconnectDelay: Duration
    public var maxReconnectDelay: Duration
    /// Largest message accepted from the broker and largest request sent to it.
    public var maxMessageBytes: Int
    /// How long `disconnect` waits for the broker to answer the WebSocket close frame.
    public var closeTimeout: Duration
    /// For wss:// URLs: a PEM file of the CA certificates to trust instead of the system trust
    /// store (a private CA). The server's certificate and host name are always verified.
    public var tlsCAFile: String? = nil
    /// Capacity of each channel's payload buffer (`BrokerChannel.messages`; 0 counts as 1).
    /// While nobody consumes the channel (no `onMessage`, `messages` not read), payloads that
    /// do not fit are dropped and counted (`BrokerChannel.droppedMessageCount`); once someone
    /// does, `eventOverflow` decides. Default 1024.
    public var maxBufferedChannelMessages = 1024 {
        willSet { precondition(newValue >= 0, "maxBufferedChannelMessages must not be negative") }
    }

    /// Events buffered between the connection and the application in the broadcaster's event
    /// sequence (``BroadcasterClient/broadcasts``). Default 1024. (A broker channel's buffer is
    /// `maxBufferedChannelMessages`.)
    public var eventCapacity = 1024 {
        willSet { precondition(newValue > 0, "eventCapacity must be positive") }
    }
    /// What happens when a consumed event buffer is full (``BroadcasterClient/broadcasts``, a
    /// ``BrokerChannel``'s `messages` or `onMessage`): `.suspendReading` (default: the
    /// connection stops reading, so TCP slows the server; replies to requests wait too, so a
    /// consumer must not await a request of the same client while its buffer can fill) or
    /// `.dropNewest` (dropped and counted, ``BroadcasterClient/droppedBroadcastCount``,
    /// `BrokerChannel.droppedMessageCount`).
    public var eventOverflow = InboundOverflowPolicy.suspendReading

    public init(requestTimeout: Duration = .seconds(10), connectTimeout: Duration = .seconds(10),
                autoReconnect: Bool = false, reconnectDelay: Duration = .seconds(1),
                maxReconnectDelay: Duration = .seconds(30), maxMessageBytes: Int = 16 << 20,
                closeTimeout: Duration = .seconds(2)) {
        self.requestTimeout = requestTimeout
        self.connectTimeout = connectTimeout
        self.autoReconnect = autoReconnect
        self.reconnectDelay = reconnectDelay
        self.maxReconnectDelay = maxReconnectDelay
        self.maxMessageBytes = maxMessageBytes
        self.closeTimeout = closeTimeout
    }

    /// Delay before reconnect attempt `attempt` (0-based): reconnectDelay * 2^attempt, capped.
    public func reconnectDelay(attempt: Int) -> Duration {
        var delay = reconnectDelay
        for _ in 0..<min(attempt, 32) {
            delay *= 2
            if delay >= maxReconnectDelay { return maxReconnectDelay }
        }
        return min(delay, maxReconnectDelay)
    }

    /// The delay actually waited before attempt `attempt`: ``reconnectDelay(attempt:)`` scaled by
    /// a random factor in 0.5...1 ("equal jitter"), so that many clients dropped by the same
    /// restart do not come back in lockstep.
    public func jitteredReconnectDelay(attempt: Int) -> Duration {
        reconnectDelay(attempt: attempt) * Double.random(in: 0.5...1.0)
    }
}

public enum BrokerLogLevel: Int, Sendable, Comparable, CustomStringConvertible {
    case debug, info, warning, error

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .warning: "warning"
        case .error: "error"
        }
    }
}

/// Optional diagnostics sink. Called from the client's connection tasks and from callers' tasks,
/// so implementations must be thread-safe.
public protocol BrokerClientLogger: Sendable {
    func log(_ level: BrokerLogLevel, _ message: String)
}
