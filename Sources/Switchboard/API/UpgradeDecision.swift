/// A handler's answer to a WebSocket upgrade request.
public enum UpgradeDecision: Sendable {
    /// Accept; `token` is attached to the socket (as WSBroker's `setToken`) and passed back with
    /// every message and the close. `subprotocol` must be one the client offered.
    case accept(token: [UInt8]? = nil, subprotocol: String? = nil)
    /// Refuse with this HTTP response; the connection is closed after it.
    case reject(WorkerResponse)
}
