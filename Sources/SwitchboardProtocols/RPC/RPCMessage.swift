/// One message of amqp-swarm's client ↔ node protocol (0.3.2, `lib/client.js`,
/// `lib/server.js`, `lib/resilient-socket.js`). docs-pending/rpc.md has the wire table.
public enum RPCMessage: Sendable, Equatable {
    /// `{"type":"init"}`: server → client, "the interface is ready"; the client sends nothing
    /// before it.
    case initialize
    /// `{"type":"request","name":N,"args":[…],"correlationId":C}`, both directions.
    case request(RPCRequest)
    /// `{"type":"response","correlationId":C,"result":R}`. A JavaScript handler that returns
    /// `undefined` makes the reference omit `result`; that reads as `null`.
    case response(correlationId: RPCCorrelationID, result: RPCValue)
    /// `{"errorType":…,"errorSubtype":…,"message":…,"data":…,"type":"error","correlationId":C}`.
    case error(correlationId: RPCCorrelationID?, RPCErrorPayload)
    /// `{"type":"ping","correlationId":C}`, both directions; answered with `pong`.
    case ping(correlationId: RPCCorrelationID)
    /// `{"type":"pong","correlationId":C}`.
    case pong(correlationId: RPCCorrelationID)
    /// `{"type":"close"}`: server → client, "stop for good" (the client does not reconnect).
    case close
    /// A type starting with `x-` (reserved for applications): the whole message object.
    case application(type: String, body: RPCObject)
}

/// A request in either direction.
public struct RPCRequest: Sendable, Equatable {
    public var name: String
    public var args: [RPCValue]
    public var correlationId: RPCCorrelationID

    public init(name: String, args: [RPCValue], correlationId: RPCCorrelationID) {
        self.name = name
        self.args = args
        self.correlationId = correlationId
    }
}

/// `errorType`: who failed.
public enum RPCErrorType: String, Sendable, Equatable {
    /// The handler threw (its message and data are carried).
    case endpoint
    /// The message was not transported before or after the handler (or could not be read).
    case `protocol`
}

/// `errorSubtype` of a `protocol` error (always `null` for `endpoint`).
public enum RPCErrorSubtype: String, Sendable, Equatable {
    case timeout
    case unhandled
}

/// The fields of an `error` message other than `type` and `correlationId`.
public struct RPCErrorPayload: Error, Sendable, Equatable {
    public var errorType: RPCErrorType
    /// nil is written as JSON `null`. A subtype the peer sent that is neither `timeout` nor
    /// `unhandled` is kept in `otherSubtype`.
    public var errorSubtype: RPCErrorSubtype?
    public var otherSubtype: String?
    public var message: String
    public var data: RPCValue

    public init(errorType: RPCErrorType, errorSubtype: RPCErrorSubtype? = nil, message: String, data: RPCValue = .null) {
        self.errorType = errorType
        self.errorSubtype = errorSubtype
        self.message = message
        self.data = data
    }

    /// `{"errorType":"endpoint","errorSubtype":null,…}` — what a throwing handler produces.
    public static func endpoint(_ message: String, data: RPCValue = .null) -> RPCErrorPayload {
        RPCErrorPayload(errorType: .endpoint, message: message, data: data)
    }

    /// The reference's text and data for a name nobody handles (`lib/emitter.js`).
    public static func unhandled(_ name: String) -> RPCErrorPayload {
        RPCErrorPayload(errorType: .protocol, errorSubtype: .unhandled,
                        message: "No handler found for request '\(name)'", data: ["requestName": .string(name)])
    }

    /// The reference's text for a request that got no answer in time (`lib/reply-handler.js`).
    public static let timeout = RPCErrorPayload(errorType: .protocol, errorSubtype: .timeout, message: "Request timed out")

    /// Switchboard's answer to a message it could not read (the reference crashes instead):
    /// `protocol` with a null subtype, and `data.reason` naming the rule.
    public static func malformed(_ failure: RPCMalformedMessage) -> RPCErrorPayload {
        var data: RPCObject = ["reason": .string(failure.reason.rawValue)]
        if let t = failure.type { data["type"] = .string(t) }
        return RPCErrorPayload(errorType: .protocol, message: failure.reason.message(type: failure.type), data: .object(data))
    }
}
