@_exported import SwitchboardHTTP
@_exported import struct SwitchboardIO.SocketID
@_exported import enum SwitchboardIO.IOBackendKind

/// A complete WebSocket message as the handler receives it.
public enum SocketMessage: Sendable, Equatable {
    case text(String)
    case binary([UInt8])
}

/// A handler's answer to a WebSocket upgrade request.
public enum UpgradeDecision: Sendable {
    /// Accept; `token` is attached to the socket (as WSBroker's `setToken`) and passed back with
    /// every message and the close. `subprotocol` must be one the client offered.
    case accept(token: [UInt8]? = nil, subprotocol: String? = nil)
    /// Refuse with this HTTP response; the connection is closed after it.
    case reject(HTTPResponse)
}

/// Where a handler instance runs. One handler instance exists per shard and all its methods are
/// called on that shard's thread, so per-shard handler state needs no lock. A handler must not
/// block: work that waits runs elsewhere (Swift concurrency) and comes back through the broker.
public struct ShardContext: Sendable {
    /// The shard's index, 0..<shardCount.
    public let shardIndex: Int
    public let shardCount: Int
    /// The broker, for `send`, `close`, `setToken` from the handler (not retained: the broker
    /// owns its handlers).
    public unowned let broker: Broker
}

/// Your application's code, as in WSBroker's worker interface: HTTP requests, WebSocket
/// messages and closes. Every method has a default, so implement only what you need.
public protocol WorkerHandler: AnyObject {
    /// An HTTP request that no built-in route (health, metrics) took. Return nil for 404.
    func handleHttpRequest(_ request: HTTPRequest) -> HTTPResponse?
    /// A WebSocket upgrade request on a path routed to WebSocket. Default: accept.
    func handleUpgrade(_ request: HTTPRequest, socketId: SocketID) -> UpgradeDecision
    /// A complete text or binary message from a WebSocket client.
    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?)
    /// The WebSocket is closed, whatever the cause; called exactly once per accepted socket.
    func handleSocketClose(socketId: SocketID, token: [UInt8]?)
}

extension WorkerHandler {
    public func handleHttpRequest(_ request: HTTPRequest) -> HTTPResponse? { nil }
    public func handleUpgrade(_ request: HTTPRequest, socketId: SocketID) -> UpgradeDecision { .accept() }
    public func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {}
    public func handleSocketClose(socketId: SocketID, token: [UInt8]?) {}
}

/// A handler that answers every HTTP request with 404 (the built-in routes still work).
public final class DefaultWorkerHandler: WorkerHandler {
    public init() {}
}
