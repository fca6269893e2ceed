/// Why an RPC request sent from Swift (`node.client.send`, `node.server.send(to:)`,
/// `node.remoteClient.send(to:)`, `RPCClient.send`) did not produce a result.
///
/// A handler may also throw one: it is answered on the wire as its `payload`, so a node that
/// relays a request (`ask`) passes the far side's error on unchanged.
public enum RPCError: Error, Sendable, Equatable {
    /// The handler threw (wire: `errorType` `endpoint`), with its message and data.
    case endpoint(message: String, data: RPCValue)
    /// No answer within the request's timeout (wire: `protocol`/`timeout`, "Request timed out").
    case timeout
    /// The recipient has no handler for the name (wire: `protocol`/`unhandled`).
    case unhandled(name: String)
    /// The node, its client or the peer went away (or never existed) before answering.
    /// Switchboard's own: wire `protocol` with subtype `null` and `data.reason` `disconnected`.
    case disconnected
    /// A bounded table (pending requests, requests in flight, a shard's inbox) was full.
    /// Wire `protocol`, subtype `null`, `data.reason` `overloaded`.
    case overloaded
    /// Another `protocol` error the peer sent (e.g. it could not read our message): as received.
    case protocolError(RPCErrorPayload)

    /// What this error is on the wire.
    public var payload: RPCErrorPayload {
        switch self {
        case .endpoint(let message, let data): .endpoint(message, data: data)
        case .timeout: .timeout
        case .unhandled(let name): .unhandled(name)
        case .disconnected:
            RPCErrorPayload(errorType: .protocol, message: "Node disconnected", data: ["reason": "disconnected"])
        case .overloaded:
            RPCErrorPayload(errorType: .protocol, message: "Too many requests in flight", data: ["reason": "overloaded"])
        case .protocolError(let p): p
        }
    }

    /// The error a received `error` message stands for (subtypes mapped to their cases).
    public init(received p: RPCErrorPayload) {
        switch (p.errorType, p.errorSubtype) {
        case (.endpoint, _): self = .endpoint(message: p.message, data: p.data)
        case (.protocol, .timeout?): self = .timeout
        case (.protocol, .unhandled?):
            self = .unhandled(name: p.data["requestName"]?.stringValue ?? "")
        case (.protocol, nil):
            switch p.data["reason"]?.stringValue {
            case "disconnected"?: self = .disconnected
            case "overloaded"?: self = .overloaded
            default: self = .protocolError(p)
            }
        }
    }

    /// The wire form of any error a handler threw: an `RPCError` as itself, anything else as an
    /// `endpoint` error with its description as the message and `null` data (as the reference
    /// does for a plain JavaScript `Error`).
    static func payload(of error: any Error) -> RPCErrorPayload {
        if let e = error as? RPCError { return e.payload }
        return .endpoint(String(describing: error))
    }
}
