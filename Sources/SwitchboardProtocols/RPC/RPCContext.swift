/// A request handler: `async throws`, given the request's context and its arguments. Its return
/// value becomes `ctx.result` for the next handler of the chain, and the last one's is the
/// answer. Throwing (`ctx.throw(message, data)` or any error) answers with an error.
public typealias RPCHandler = @Sendable (RPCContext, [RPCValue]) async throws -> RPCValue

/// The per-request context passed to every handler of a chain (the seed's `ctx`).
///
/// One chain runs its handlers one after the other on one task, so the mutable fields are never
/// touched concurrently (hence `@unchecked Sendable`); do not hand the context to other tasks.
public final class RPCContext: @unchecked Sendable {
    /// The node handling the request.
    public let node: RPCNode
    /// The request's name.
    public let name: String
    /// The previous handler's return value: `null` before the first handler; on a remote client
    /// request it starts as the arguments (an array).
    public var result: RPCValue
    /// The sender node's id on server and remote client requests (nil on client requests).
    public let sender: String?
    /// Remote client requests only: when true (the default) the chain's final `result` is
    /// passed to this node's client as the arguments; when false it is the answer, and the
    /// client never sees the request.
    public var pass: Bool

    init(node: RPCNode, name: String, result: RPCValue = .null, sender: String? = nil, pass: Bool = false) {
        self.node = node
        self.name = name
        self.result = result
        self.sender = sender
        self.pass = pass
    }

    /// Answers the request with an `endpoint` error carrying `data` (the seed's
    /// `ctx.throw(message, data)`).
    public func `throw`(_ message: String, _ data: RPCValue = .null) throws(RPCError) -> Never {
        throw RPCError.endpoint(message: message, data: data)
    }
}
