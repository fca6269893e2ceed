import Switchboard
import Synchronization

/// The server-side representation of one connected client (the seed's "node"): one per
/// WebSocket on the RPC route, with an id that other nodes address it by.
///
/// ```swift
/// node.client.on("hello there") { ctx, args in .string("general \(args.first?.stringValue ?? "")") }
/// let answer = try await node.client.send("whoami")
/// let other = try await node.server.send(to: "node-7", "ping", [])
/// ```
///
/// `Sendable`: handlers may be added and requests sent from any task. The node's state lives on
/// its shard; every `send` hops there (`Broker.execute(onShard:)`) and back.
public final class RPCNode: Sendable {
    /// The node id (from the application's upgrade hook, or generated).
    public let id: String
    /// The WebSocket this node speaks through.
    public let socketId: SocketID
    public var shardIndex: Int { socketId.shard }

    let clientHandlers = RPCHandlerRegistry()
    let serverHandlers = RPCHandlerRegistry()
    let remoteClientHandlers = RPCHandlerRegistry()
    let executor: any RPCShardExecutor
    let requestTimeoutMilliseconds: Int
    private let open = Atomic<Bool>(true)
    /// nil once the handlers have run: a handler added later runs at once, never twice.
    private let closeHandlers = Mutex<[@Sendable (RPCNode) -> Void]?>([])
    private let applicationHandler = Mutex<(@Sendable (RPCNode, String, RPCObject) async -> Void)?>(nil)

    init(id: String, socketId: SocketID, executor: any RPCShardExecutor, requestTimeoutMilliseconds: Int) {
        self.id = id
        self.socketId = socketId
        self.executor = executor
        self.requestTimeoutMilliseconds = requestTimeoutMilliseconds
    }

    /// False once the node has closed (its socket closed, it was replaced, or `close()`).
    public var isOpen: Bool { open.load(ordering: .acquiring) }

    /// Requests between this node and its own client.
    public var client: Client { Client(node: self) }
    /// Requests between nodes.
    public var server: Server { Server(node: self) }
    /// Requests to another node's client, through that node.
    public var remoteClient: RemoteClient { RemoteClient(node: self) }

    /// Closes the node: pending requests fail with `disconnected` at once. With
    /// `final` (the default) the client is first sent `{"type":"close"}`, which stops a
    /// reference client for good; without it the socket just closes (1001) and the client
    /// reconnects.
    public func close(final: Bool = true) {
        let socket = socketId
        executor.execute(onShard: shardIndex) {
            $0.closeNode(socket, sendCloseMessage: final, code: final ? 1000 : 1001, reason: "")
        }
    }

    /// Runs `body` once when the node closes (on its shard; keep it short).
    public func onClose(_ body: @escaping @Sendable (RPCNode) -> Void) {
        let added = closeHandlers.withLock { h -> Bool in
            guard h != nil else { return false }
            h!.append(body)
            return true
        }
        if !added { body(self) }
    }

    /// Receives `x-…` messages from the client (type and the whole object).
    public func onApplicationMessage(_ body: @escaping @Sendable (RPCNode, String, RPCObject) async -> Void) {
        applicationHandler.withLock { $0 = body }
    }

    /// Sends an `x-…` message to the client (fire and forget).
    public func sendApplicationMessage(type: String, _ body: RPCObject = RPCObject()) {
        precondition(type.hasPrefix("x-"), "application message types start with x-")
        let socket = socketId
        let text = RPCMessageEncoder.text(.application(type: type, body: body))
        executor.execute(onShard: shardIndex) { $0.sendRaw(socket, text) }
    }

    // MARK: - The three request forms

    public struct Client: Sendable {
        let node: RPCNode
        /// Handles a request from this node's client.
        public func on(_ name: String, _ handler: @escaping RPCHandler) { node.clientHandlers.add(name, handler) }
        /// Sends a request to this node's client. Requests made before `init` went out wait
        /// for it (the client may not send or receive before).
        public func send(_ name: String, _ args: [RPCValue] = [], timeoutMilliseconds: Int? = nil) async throws(RPCError) -> RPCValue {
            try await node.post(timeoutMilliseconds) { core, timeout, done in
                core.startClientRequest(node.socketId, node: node, name: name, args: args, timeoutMilliseconds: timeout, completion: done)
            }
        }
    }

    public struct Server: Sendable {
        let node: RPCNode
        /// Handles a server request from another node (`ctx.sender` is its id).
        public func on(_ name: String, _ handler: @escaping RPCHandler) { node.serverHandlers.add(name, handler) }
        /// Sends a server request to node `to`, wherever it is. Fails with `disconnected` when
        /// no node has that id.
        public func send(to target: String, _ name: String, _ args: [RPCValue] = [], timeoutMilliseconds: Int? = nil) async throws(RPCError) -> RPCValue {
            try await node.post(timeoutMilliseconds) { core, timeout, done in
                core.startNodeRequest(.server, from: node, to: target, name: name, args: args, timeoutMilliseconds: timeout, completion: done)
            }
        }
    }

    public struct RemoteClient: Sendable {
        let node: RPCNode
        /// Handles a remote client request passing through this node on its way to this
        /// node's client: `ctx.result` starts as the arguments, `ctx.pass` as true. With
        /// `pass` true the final `ctx.result` goes to the client as its arguments (an array;
        /// another value is wrapped in one) and the client's answer returns to the sender;
        /// with `pass` false `ctx.result` is the answer. No handler: passed through unchanged.
        public func on(_ name: String, _ handler: @escaping RPCHandler) { node.remoteClientHandlers.add(name, handler) }
        /// Sends a request to the client of node `to`, through that node.
        public func send(to target: String, _ name: String, _ args: [RPCValue] = [], timeoutMilliseconds: Int? = nil) async throws(RPCError) -> RPCValue {
            try await node.post(timeoutMilliseconds) { core, timeout, done in
                core.startNodeRequest(.remoteClient, from: node, to: target, name: name, args: args, timeoutMilliseconds: timeout, completion: done)
            }
        }
    }

    /// Starts a request on this node's shard and waits for its completion (called exactly once
    /// by the core: answer, error, timeout or disconnect).
    private func post(_ timeout: Int?,
                      _ start: @escaping @Sendable (RPCShardCore, Int, @escaping @Sendable (Result<RPCValue, RPCError>) -> Void) -> Void)
        async throws(RPCError) -> RPCValue
    {
        let timeout = timeout ?? requestTimeoutMilliseconds
        let result: Result<RPCValue, RPCError> = await withCheckedContinuation { c in
            let done: @Sendable (Result<RPCValue, RPCError>) -> Void = { c.resume(returning: $0) }
            switch executor.execute(onShard: shardIndex, { start($0, timeout, done) }) {
            case .queued: break
            case .full: done(.failure(.overloaded))
            case .stopped: done(.failure(.disconnected))
            }
        }
        return try result.get()
    }

    // MARK: - Core hooks (on the node's shard)

    func markClosed() -> Bool {
        open.exchange(false, ordering: .acquiringAndReleasing)
    }

    func runCloseHandlers() {
        let handlers = closeHandlers.withLock { h in
            defer { h = nil }
            return h ?? []
        }
        for h in handlers { h(self) }
    }

    var application: (@Sendable (RPCNode, String, RPCObject) async -> Void)? { applicationHandler.withLock { $0 } }
}
