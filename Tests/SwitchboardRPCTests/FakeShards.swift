import Dispatch
import Foundation
@testable import SwitchboardProtocols
import Switchboard
import SwitchboardRESP
import Synchronization
import Testing

/// In-memory shards for the RPC core: one serial queue per shard stands in for the shard
/// thread, and each socket's outgoing frames go to an `AsyncStream` the test reads as the client.
/// Lets the core's semantics (chains, patterns, pass, errors, routing, policies) be tested
/// without I/O; the same flows run over real sockets in RPCServerTests.
final class FakeShards: RPCShardExecutor, @unchecked Sendable {
    let queues: [DispatchQueue]
    let ios: [FakeIO]
    private(set) var cores: [RPCShardCore] = []
    let shared: RPCShared
    var shardCount: Int { queues.count }
    private let nextSlot = Atomic<Int>(1)

    init(shards: Int = 2, options: RPCServerOptions = RPCServerOptions(), onNode: @escaping @Sendable (RPCNode) -> Void = { _ in }) {
        queues = (0..<shards).map { DispatchQueue(label: "fake-shard-\($0)") }
        ios = queues.indices.map { [queues] in FakeIO(index: $0, count: shards, queue: queues[$0]) }
        shared = RPCShared(options: options, metrics: RPCMetrics(), onNode: onNode)
        cores = (0..<shards).map { RPCShardCore(io: ios[$0], executor: self, shared: shared) }
        // The shards' tick (init delays, timeouts, pings), as RPCTicker does in production;
        // ends when the test drops the shards.
        Task.detached { [weak self] in
            while let s = self {
                s.tick()
                try? await Task.sleep(for: .milliseconds(2))
            }
        }
    }

    @discardableResult
    func execute(onShard index: Int, _ body: @escaping @Sendable (RPCShardCore) -> Void) -> RPCPosted {
        nonisolated(unsafe) let core = cores[index]
        queues[index].async { body(core) }
        return .queued
    }

    func sync<T>(_ shard: Int, _ body: (RPCShardCore) -> T) -> T {
        queues[shard].sync { body(cores[shard]) }
    }

    /// Ticks every shard (init delays, timeouts, pings) — tests tick explicitly, no ticker task.
    func tick() {
        for i in 0..<shardCount { sync(i) { $0.tick() } }
    }

    /// Connects a client to shard `shard` as node `id` and waits for its `init`.
    func connect(shard: Int, id: String, expectInit: Bool = true) async throws -> FakeClient {
        let socket = SocketID(shard: shard, slot: nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue, generation: 1)
        let client = FakeClient(socket: socket, shards: self)
        ios[shard].attach(socket, client)
        let node = sync(shard) { $0.createNode(socket, id: id) }!
        client.node = node
        if expectInit {
            let first = try await client.nextUntilInit()
            #expect(first == #"{"type":"init"}"#)
        }
        return client
    }
}

final class FakeIO: RPCShardIO, @unchecked Sendable {
    let shardIndex: Int
    let shardCount: Int
    private let clients = Mutex<[SocketID: FakeClient]>([:])

    /// The queue that stands in for the shard's thread.
    private let queue: DispatchQueue

    init(index: Int, count: Int, queue: DispatchQueue) {
        shardIndex = index
        shardCount = count
        self.queue = queue
    }

    func assertOnShard(file: StaticString, line: UInt) {
        dispatchPrecondition(condition: .onQueue(queue))
    }

    func attach(_ socket: SocketID, _ client: FakeClient) { clients.withLock { $0[socket] = client } }

    func sendText(_ socket: SocketID, _ text: String) -> RPCSendOutcome {
        guard let c = clients.withLock({ $0[socket] }), !c.isClosed else { return .gone }
        c.deliver(text)
        return .queued
    }

    func closeSocket(_ socket: SocketID, code: UInt16, reason: String) {
        clients.withLock { $0[socket] }?.serverClosed(code: code, reason: reason)
    }

    // A stand-in for the shard's Redis connection (the directory code of RPCCluster.swift):
    // off until `joinCluster`; `redisAnswers` says whether a command is answered (`:1`; a
    // clean-up step: its scan done, one entry removed) or fails as an unreachable Redis does
    // (nil, at once). Every command is recorded.
    // The node's incarnation starts at 100 (`renewIncarnation` moves it on, as the engine does
    // when the others declared the node dead).
    private let cluster = Mutex<(node: Int?, answers: Bool, commands: [RedisCommand], incarnation: UInt64)>((nil, true, [], 100))

    struct RedisCommand: Equatable {
        let arguments: [String]
        let answered: Bool
    }

    func joinCluster(node: Int) { cluster.withLock { $0.node = node } }
    func redisAnswers(_ answers: Bool) { cluster.withLock { $0.answers = answers } }
    /// The commands sent so far (arguments in UTF-8), each with whether it was answered.
    var redisCommands: [RedisCommand] { cluster.withLock { $0.commands } }

    var clusterNode: Int? { cluster.withLock { $0.node } }
    var clusterIncarnation: UInt64 { cluster.withLock { $0.incarnation } }
    /// A new incarnation (the next number); returns the one it replaces.
    func renewIncarnation() -> UInt64 { cluster.withLock { state in defer { state.incarnation += 1 }; return state.incarnation } }

    func clusterCommand(_ arguments: [[UInt8]], _ completion: @escaping (RESPValue?) -> Void) {
        let answers = cluster.withLock { state in
            state.commands.append(RedisCommand(arguments: arguments.map { String(decoding: $0, as: UTF8.self) }, answered: state.answers))
            return state.answers
        }
        guard answers else { return completion(nil) }
        let cleanUp = arguments.count > 1 && arguments[1] == Array(RPCClusterKeys.nodeDied.utf8)
        completion(cleanUp ? .array([.bulkString(Array("0".utf8)), .integer(1)]) : .integer(1))
    }
}

/// The test's side of one socket.
final class FakeClient: @unchecked Sendable {
    let socket: SocketID
    unowned let shards: FakeShards
    var node: RPCNode!
    private let stream: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation
    private var iterator: AsyncStream<String>.Iterator
    private let closeState = Mutex<(code: UInt16, reason: String)?>(nil)

    init(socket: SocketID, shards: FakeShards) {
        self.socket = socket
        self.shards = shards
        (stream, continuation) = AsyncStream.makeStream()
        iterator = stream.makeAsyncIterator()
    }

    var isClosed: Bool { closeState.withLock { $0 != nil } }
    var closedWith: (code: UInt16, reason: String)? { closeState.withLock { $0 } }

    func deliver(_ text: String) { continuation.yield(text) }

    func serverClosed(code: UInt16, reason: String) {
        closeState.withLock { if $0 == nil { $0 = (code, reason) } }
        continuation.finish()
    }

    /// The client sends a message (on the node's shard, as the broker would deliver it).
    func send(_ text: String) {
        let socket = socket
        shards.execute(onShard: socket.shard) { $0.receive(socket, text: text) }
    }

    /// The client's socket goes away.
    func disconnect() {
        let socket = socket
        shards.sync(socket.shard) { $0.socketClosed(socket) }
    }

    /// The next message to this client; nil when the socket was closed.
    func next(timeoutSeconds: Double = 5) async throws -> String? {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        let timeout = Task {
            try? await Task.sleep(for: .seconds(timeoutSeconds))
            guard !Task.isCancelled else { return }
            continuation.yield("__timeout__")
        }
        defer { timeout.cancel() }
        let m = await iterator.next()
        if m == "__timeout__" || Date() > deadline { throw RPCTestFailure("no message within \(timeoutSeconds) s") }
        return m
    }

    func nextUntilInit() async throws -> String? { try await next() }

    /// The next message, skipping server pings (answered only when `answerPings`).
    func nextNonPing(answerPings: Bool = true) async throws -> String? {
        while let m = try await next() {
            if m.hasPrefix(#"{"type":"ping""#) {
                if answerPings { send(m.replacingOccurrences(of: #""type":"ping""#, with: #""type":"pong""#)) }
                continue
            }
            return m
        }
        return nil
    }

    /// The next message decoded as JSON (for fields with generated values).
    func nextJSON() async throws -> [String: Any] {
        guard let m = try await nextNonPing() else { throw RPCTestFailure("closed") }
        return try JSONSerialization.jsonObject(with: Data(m.utf8)) as! [String: Any]
    }
}
