import Switchboard
import SwitchboardCluster
import SwitchboardRESP

/// A request between nodes, as it travels from the sender's shard to the directory owner of
/// the target id and on to the target's shard. Answers travel back to `callerShard`, where
/// the pending entry `callerKey` waits.
struct RPCNodeCall: Sendable {
    enum Kind: Sendable { case server, remoteClient }
    let kind: Kind
    let name: String
    let args: [RPCValue]
    let sender: String
    let target: String
    let callerShard: Int
    let callerKey: UInt64
    /// The caller's cluster node when the call came from another node (RPCCluster.swift).
    var callerNode: Int? = nil
}

/// The RPC protocol's state on one shard, touched only on that shard's thread (share-nothing):
/// its nodes, the requests they wait on, the requests they serve for other nodes, and this
/// shard's part of the node-id directory (ids whose owner shard is this one).
///
/// Everything that crosses shards is a message posted with the executor; no state is shared.
/// Every pending request completes exactly once (answer, error, timeout, or its node or peer
/// going away), because completing removes it from `pending` first.
final class RPCShardCore {
    private let io: any RPCShardIO
    private let executor: any RPCShardExecutor
    private let shared: RPCShared
    private var options: RPCServerOptions { shared.options }
    private var metrics: RPCMetrics { shared.metrics }
    private let clock = ContinuousClock()

    /// Where a node is in its life.
    private enum Phase {
        /// Accepted; waiting for the directory's answer and the `init` delay.
        case starting(initDue: ContinuousClock.Instant, registered: Bool)
        /// `init` sent: requests flow both ways.
        case ready
    }

    private struct NodeState {
        let node: RPCNode
        var phase: Phase
        /// Requests to the client made before `init`, sent right after it (keys into `pending`).
        var held: [(key: UInt64, text: String)] = []
        /// Requests this node waits on (to its client or to other nodes).
        var pendingKeys: Set<UInt64> = []
        /// Requests from other nodes this node is serving (keys into `inbound`).
        var inboundKeys: Set<UInt64> = []
        /// Requests from the client being handled.
        var clientInflight = 0
        /// Pings sent and not yet answered, with their pong deadlines.
        var pings: [RPCCorrelationID: ContinuousClock.Instant] = [:]
    }

    private struct Pending {
        let socket: SocketID
        let deadline: ContinuousClock.Instant
        let completion: @Sendable (Result<RPCValue, RPCError>) -> Void
    }

    private struct Inbound {
        let callerShard: Int
        let callerKey: UInt64
        let socket: SocketID
        /// Another cluster node's caller (nil: this node's).
        var callerNode: Int? = nil
    }

    private struct DirectoryEntry: Equatable {
        let socket: SocketID
    }

    private var nodes: [SocketID: NodeState] = [:]
    private var starting: Set<SocketID> = []
    private var pending: [UInt64: Pending] = [:]
    private var deadlines = RPCDeadlineHeap()
    private var inbound: [UInt64: Inbound] = [:]
    private var directory: [String: [DirectoryEntry]] = [:]
    private var nextKey: UInt64 = 1
    private var nextPingSweep: ContinuousClock.Instant
    /// Requests of this shard's nodes sent to other cluster nodes: the nodes that may answer
    /// (a node declared dead leaves; none left fails the request with `.disconnected`).
    private var remoteCalls: [UInt64: Set<Int>] = [:]
    private var pingCounter = 0
    /// The cluster directory's side of this shard's ids (RPCCluster.swift). Ids whose last
    /// Redis write failed, written again at `nextDirectoryRetry` as `directory` then says.
    /// Bounded by the ids this shard owns (an id leaves once written, whatever `directory` says).
    private var directoryUnsynced: Set<String> = []
    /// The generation of each id's newest write still waiting for Redis: the answer of an older
    /// one is stale (the newer write, later on the same connection, decides).
    private var directoryWrites: [String: UInt64] = [:]
    private var directoryGeneration: UInt64 = 0
    private var nextDirectoryRetry: ContinuousClock.Instant
    /// Shard 0's directory clean-ups of dead incarnations that Redis stopped answering part of
    /// the way, resumed at its next Redis connection. At most one per node id.
    private var unfinishedCleanUps = UnfinishedCleanUps()
    /// When every owned id is written again (nil: never, the periodic refresh is off).
    private var nextDirectoryRefresh: ContinuousClock.Instant?
    /// The directory's keys and scripts, as the shard's cluster settings name them (fixed for
    /// the process: built once, not per directory write).
    private let clusterKeys: RPCClusterKeys

    init(io: any RPCShardIO, executor: any RPCShardExecutor, shared: RPCShared) {
        self.io = io
        clusterKeys = RPCClusterKeys(prefix: io.clusterKeyPrefix, cleanUpBatchEntries: io.clusterCleanUpBatchEntries)
        self.executor = executor
        self.shared = shared
        let now = ContinuousClock.now
        nextPingSweep = now
        nextDirectoryRetry = now
        let refresh = shared.options.clusterDirectoryRefreshMilliseconds
        nextDirectoryRefresh = refresh > 0 ? now.advanced(by: .milliseconds(refresh)) : nil
    }

    var shardIndex: Int { io.shardIndex }
    /// Nodes on this shard (tests, diagnostics).
    var nodeCount: Int { nodes.count }
    var pendingCount: Int { pending.count }
    var inboundCount: Int { inbound.count }
    var deadlineCount: Int { deadlines.count }
    /// Directory entries this shard owns for `id` (tests).
    func directoryCount(_ id: String) -> Int { directory[id]?.count ?? 0 }
    /// Ids whose cluster directory write failed and waits for its retry (tests).
    var directoryUnsyncedCount: Int { directoryUnsynced.count }
    func node(_ socket: SocketID) -> RPCNode? { nodes[socket]?.node }

    private func newKey() -> UInt64 {
        defer { nextKey &+= 1 }
        return nextKey
    }

    private func ownerShard(_ id: String) -> Int { RPCShared.ownerShard(of: id, shardCount: io.shardCount) }

    /// Every entry point runs on the core's shard (`RPCShardIO.assertOnShard`): the core's
    /// tables are confined to it, with no lock.
    @inline(__always)
    private func assertOnShard(file: StaticString = #fileID, line: UInt = #line) {
        io.assertOnShard(file: file, line: line)
    }

    // MARK: - Node lifecycle

    /// A socket was accepted on the RPC route: it becomes a node. `init` follows once the
    /// directory took the id and `initDelayMilliseconds` passed. nil when the directory's shard
    /// could not be reached (its inbox is full or the broker is stopping): refuse the upgrade.
    func createNode(_ socket: SocketID, id: String) -> RPCNode? {
        assertOnShard()
        assert(nodes[socket] == nil, "socket already a node")
        let me = shardIndex, policy = options.duplicateNodes
        guard executor.execute(onShard: ownerShard(id), { $0.register(id, socket: socket, policy: policy, replyShard: me) }) == .queued else {
            metrics.overloaded.increment()
            return nil
        }
        let node = RPCNode(id: id, socketId: socket, executor: executor, requestTimeoutMilliseconds: options.requestTimeoutMilliseconds)
        let due = clock.now.advanced(by: .milliseconds(options.initDelayMilliseconds))
        nodes[socket] = NodeState(node: node, phase: .starting(initDue: due, registered: false))
        starting.insert(socket)
        metrics.nodes.increment()
        shared.onNode(node)
        return node
    }

    /// The node's socket closed (or is closing): forget it and fail what waits on it.
    func socketClosed(_ socket: SocketID) {
        assertOnShard()
        detach(socket)
    }

    /// Closes a node from the server side, optionally with `{"type":"close"}` first.
    func closeNode(_ socket: SocketID, sendCloseMessage: Bool, code: UInt16, reason: String) {
        assertOnShard()
        guard nodes[socket] != nil else { return }
        if sendCloseMessage { _ = io.sendText(socket, RPCMessageEncoder.text(.close)) }
        io.closeSocket(socket, code: code, reason: reason)
        detach(socket)
    }

    private func detach(_ socket: SocketID) {
        guard let state = nodes.removeValue(forKey: socket) else { return }
        starting.remove(socket)
        metrics.nodes.decrement()
        let node = state.node
        _ = node.markClosed()
        for key in state.pendingKeys {
            if let p = pending.removeValue(forKey: key) {
                metrics.disconnectedFailures.increment()
                p.completion(.failure(.disconnected))
            }
        }
        for key in state.inboundKeys {
            if let ib = inbound.removeValue(forKey: key) {
                metrics.disconnectedFailures.increment()
                reply(ib.callerNode, ib.callerShard, ib.callerKey, .failure(.disconnected))
            }
        }
        let id = node.id
        executor.execute(onShard: ownerShard(id)) { $0.unregister(id, socket: socket) }
        node.runCloseHandlers()
    }

    // MARK: - Directory (on the id's owner shard)

    private func register(_ id: String, socket: SocketID, policy: RPCDuplicateNodePolicy, replyShard: Int) {
        var list = directory[id] ?? []
        var accepted = true
        if !list.isEmpty {
            metrics.duplicateIds.increment()
            switch policy {
            case .allowBoth:
                break
            case .refuseNew:
                accepted = false
            case .replaceOld:
                for old in list {
                    executor.execute(onShard: old.socket.shard) {
                        $0.closeNode(old.socket, sendCloseMessage: true, code: 1000, reason: "replaced by a newer connection")
                    }
                }
                list.removeAll()
            }
        }
        if accepted { list.append(DirectoryEntry(socket: socket)) }
        directory[id] = list.isEmpty ? nil : list
        let ok = accepted, executor = executor
        let answer = { _ = executor.execute(onShard: replyShard) { $0.registered(socket, accepted: ok) } }
        // The id's first node here: `init` waits for Redis's answer, so a node that got it is
        // reachable from every process while Redis is up. When Redis does not answer, `init`
        // goes out anyway (the node works within this process) and the write is retried.
        if accepted && list.count == 1 && io.clusterNode != nil {
            writeDirectory(adding: [id], removing: [], then: answer)
        } else {
            answer()
        }
    }

    private func unregister(_ id: String, socket: SocketID) {
        guard var list = directory[id] else { return }
        list.removeAll { $0.socket == socket }
        directory[id] = list.isEmpty ? nil : list
        if list.isEmpty && io.clusterNode != nil { writeDirectory(adding: [], removing: [id], then: nil) }
    }

    private func registered(_ socket: SocketID, accepted: Bool) {
        guard var state = nodes[socket], case .starting(let due, _) = state.phase else { return }
        guard accepted else {
            closeNode(socket, sendCloseMessage: true, code: 1008, reason: "duplicate node id")
            return
        }
        state.phase = .starting(initDue: due, registered: true)
        nodes[socket] = state
    }

    // MARK: - Time

    /// Sends due `init`s, expires requests, pings clients. Posted every `tickMilliseconds`.
    func tick() {
        assertOnShard()
        let now = clock.now
        for socket in starting {
            guard var state = nodes[socket], case .starting(let due, true) = state.phase, due <= now else { continue }
            starting.remove(socket)
            state.phase = .ready
            let held = state.held
            state.held = []
            nodes[socket] = state
            guard io.sendText(socket, RPCMessageEncoder.text(.initialize)) == .queued else { continue }
            for h in held where pending[h.key] != nil {
                send(request: h.text, key: h.key, socket: socket)
            }
        }
        while let top = deadlines.top, top.deadline <= now {
            _ = deadlines.pop()
            guard let p = pending[top.key], p.deadline == top.deadline else { continue }
            metrics.timeouts.increment()
            complete(top.key, .failure(.timeout))
        }
        if options.pingIntervalMilliseconds > 0, nextPingSweep <= now {
            nextPingSweep = now.advanced(by: .milliseconds(options.pingIntervalMilliseconds))
            pingAll(now)
        }
        if io.clusterNode != nil { syncDirectory(now) }
    }

    private func pingAll(_ now: ContinuousClock.Instant) {
        var late: [SocketID] = []
        for (socket, state) in nodes {
            guard case .ready = state.phase else { continue }
            if state.pings.values.contains(where: { $0 <= now }) {
                late.append(socket)
                continue
            }
            pingCounter += 1
            let id = RPCCorrelationID("sb-ping-\(pingCounter)")
            if io.sendText(socket, RPCMessageEncoder.text(.ping(correlationId: id))) == .queued {
                nodes[socket]!.pings[id] = now.advanced(by: .milliseconds(options.pingTimeoutMilliseconds))
            }
        }
        for socket in late {
            metrics.pingTimeouts.increment()
            closeNode(socket, sendCloseMessage: false, code: 1001, reason: "ping timeout")
        }
    }

    // MARK: - Messages from clients

    /// A complete WebSocket message from a node's client.
    func receive(_ socket: SocketID, text: String) {
        assertOnShard()
        guard nodes[socket] != nil else { return }
        handle(socket, shared.decoder.decode(text: text))
    }

    func receive(_ socket: SocketID, binary: [UInt8]) {
        assertOnShard()
        guard nodes[socket] != nil else { return }
        handle(socket, binary.withUnsafeBufferPointer { shared.decoder.decode(binary: $0) })
    }

    private func handle(_ socket: SocketID, _ decoded: Result<RPCMessage, RPCMalformedMessage>) {
        let message: RPCMessage
        switch decoded {
        case .success(let m): message = m
        case .failure(let f):
            metrics.malformed[f.reason]?.increment()
            // An unreadable `error` is never answered: two peers must not bounce errors forever.
            if f.type != "error" { sendError(socket, f.correlationId, .malformed(f)) }
            return
        }
        switch message {
        case .ping(let id):
            // At once, whatever else is queued: the reference client reconnects after 1 s.
            _ = io.sendText(socket, RPCMessageEncoder.text(.pong(correlationId: id)))
        case .pong(let id):
            if nodes[socket]?.pings.removeValue(forKey: id) == nil { metrics.strayAnswers.increment() }
        case .request(let r):
            clientRequest(socket, r)
        case .response(let id, let result):
            answer(socket, id, .success(result))
        case .error(let id, let payload):
            guard let id else { metrics.strayAnswers.increment(); return }
            answer(socket, id, .failure(RPCError(received: payload)))
        case .close:
            closeNode(socket, sendCloseMessage: false, code: 1000, reason: "")
        case .initialize:
            // Only the server sends init.
            sendError(socket, nil, .malformed(RPCMalformedMessage(.unknownType, type: "init")))
        case .application(let type, let body):
            metrics.applicationMessages.increment()
            guard let node = nodes[socket]?.node, let handler = node.application else { return }
            Task { await handler(node, type, body) }
        }
    }

    private func clientRequest(_ socket: SocketID, _ r: RPCRequest) {
        guard var state = nodes[socket] else { return }
        metrics.requestsFromClients.increment()
        let handlers = state.node.clientHandlers.handlers(for: r.name)
        guard !handlers.isEmpty else {
            metrics.unhandled.increment()
            sendError(socket, r.correlationId, .unhandled(r.name))
            return
        }
        guard state.clientInflight < options.maxInflightPerNode else {
            metrics.overloaded.increment()
            sendError(socket, r.correlationId, RPCError.overloaded.payload)
            return
        }
        state.clientInflight += 1
        nodes[socket] = state
        let node = state.node, me = shardIndex, executor = executor, metrics = metrics
        Task {
            let result = await RPCChain.run(handlers, RPCContext(node: node, name: r.name), r.args)
            if executor.execute(onShard: me, { $0.answerClient(node, r.correlationId, result) }) != .queued {
                metrics.lostAnswers.increment()
            }
        }
    }

    private func answerClient(_ node: RPCNode, _ id: RPCCorrelationID, _ result: Result<RPCValue, RPCErrorPayload>) {
        guard var state = nodes[node.socketId], state.node === node else { return }
        state.clientInflight -= 1
        nodes[node.socketId] = state
        switch result {
        case .success(let v): _ = io.sendText(node.socketId, RPCMessageEncoder.text(.response(correlationId: id, result: v)))
        case .failure(let e): sendError(node.socketId, id, e)
        }
    }

    /// A response or error from a client to a request its node sent.
    private func answer(_ socket: SocketID, _ id: RPCCorrelationID, _ result: Result<RPCValue, RPCError>) {
        guard let key = id.requestKey, let p = pending[key], p.socket == socket else {
            metrics.strayAnswers.increment()
            return
        }
        complete(key, result)
    }

    private func sendError(_ socket: SocketID, _ id: RPCCorrelationID?, _ payload: RPCErrorPayload) {
        _ = io.sendText(socket, RPCMessageEncoder.text(.error(correlationId: id, payload)))
    }

    func sendRaw(_ socket: SocketID, _ text: String) {
        assertOnShard()
        guard nodes[socket] != nil else { return }
        _ = io.sendText(socket, text)
    }

    // MARK: - Requests nodes send

    /// Registers a pending request of `socket`'s node; nil (and `completion` failed) when the
    /// node is gone or its table is full.
    private func addPending(_ socket: SocketID, node: RPCNode, timeoutMilliseconds: Int,
                            _ completion: @escaping @Sendable (Result<RPCValue, RPCError>) -> Void) -> UInt64? {
        guard var state = nodes[socket], state.node === node else {
            metrics.disconnectedFailures.increment()
            completion(.failure(.disconnected))
            return nil
        }
        guard state.pendingKeys.count < options.maxPendingPerNode else {
            metrics.overloaded.increment()
            completion(.failure(.overloaded))
            return nil
        }
        let key = newKey()
        let deadline = clock.now.advanced(by: .milliseconds(timeoutMilliseconds))
        pending[key] = Pending(socket: socket, deadline: deadline, completion: completion)
        // Answered requests leave their heap entries behind until they surface; rebuild the
        // heap from the pending table when those outnumber the live ones, so it stays bounded
        // by 2 × pending + 1024 (amortized O(log n) per request).
        if deadlines.count > 2 * pending.count + 1024 {
            var fresh = RPCDeadlineHeap()
            for (k, p) in pending where k != key { fresh.push(p.deadline, k) }
            deadlines = fresh
        }
        deadlines.push(deadline, key)
        state.pendingKeys.insert(key)
        nodes[socket] = state
        return key
    }

    /// Completes a pending request once; later answers for the same key are ignored.
    private func complete(_ key: UInt64, _ result: Result<RPCValue, RPCError>) {
        guard let p = pending.removeValue(forKey: key) else { return }
        remoteCalls[key] = nil
        nodes[p.socket]?.pendingKeys.remove(key)
        p.completion(result)
    }

    func startClientRequest(_ socket: SocketID, node: RPCNode, name: String, args: [RPCValue], timeoutMilliseconds: Int,
                            completion: @escaping @Sendable (Result<RPCValue, RPCError>) -> Void) {
        assertOnShard()
        guard let key = addPending(socket, node: node, timeoutMilliseconds: timeoutMilliseconds, completion) else { return }
        metrics.requestsToClients.increment()
        let text = RPCMessageEncoder.text(.request(RPCRequest(name: name, args: args, correlationId: RPCCorrelationID(requestKey: key))))
        if case .ready = nodes[socket]!.phase {
            send(request: text, key: key, socket: socket)
        } else {
            nodes[socket]!.held.append((key, text))
        }
    }

    private func send(request text: String, key: UInt64, socket: SocketID) {
        switch io.sendText(socket, text) {
        case .queued: break
        case .dropped: metrics.overloaded.increment(); complete(key, .failure(.overloaded))
        case .gone: metrics.disconnectedFailures.increment(); complete(key, .failure(.disconnected))
        }
    }

    func startNodeRequest(_ kind: RPCNodeCall.Kind, from node: RPCNode, to target: String, name: String, args: [RPCValue],
                          timeoutMilliseconds: Int, completion: @escaping @Sendable (Result<RPCValue, RPCError>) -> Void) {
        assertOnShard()
        guard let key = addPending(node.socketId, node: node, timeoutMilliseconds: timeoutMilliseconds, completion) else { return }
        metrics.nodeRequests.increment()
        let call = RPCNodeCall(kind: kind, name: name, args: args, sender: node.id, target: target, callerShard: shardIndex, callerKey: key)
        if executor.execute(onShard: ownerShard(target), { $0.route(call) }) != .queued {
            metrics.overloaded.increment()
            complete(key, .failure(.overloaded))
        }
    }

    // MARK: - Requests between nodes

    /// On the target id's owner shard: forwards the call to every live node with that id.
    private func route(_ call: RPCNodeCall) {
        let entries = directory[call.target] ?? []
        var delivered = 0
        for e in entries where executor.execute(onShard: e.socket.shard, { $0.serve(call, socket: e.socket) }) == .queued {
            delivered += 1
        }
        if entries.isEmpty, io.clusterNode != nil, call.callerNode == nil {
            // Not on this node: the caller's shard asks Redis which nodes have the id.
            if executor.execute(onShard: call.callerShard, { $0.routeToNodes(call) }) != .queued {
                metrics.overloaded.increment()
                reply(nil, call.callerShard, call.callerKey, .failure(.overloaded))
            }
        } else if entries.isEmpty {
            metrics.disconnectedFailures.increment()
            reply(call.callerNode, call.callerShard, call.callerKey, .failure(.disconnected))
        } else if delivered == 0 {
            metrics.overloaded.increment()
            reply(call.callerNode, call.callerShard, call.callerKey, .failure(.overloaded))
        }
    }

    /// On the target node's shard: runs its server or remote client handlers (in a task).
    private func serve(_ call: RPCNodeCall, socket: SocketID) {
        guard var state = nodes[socket] else {
            metrics.disconnectedFailures.increment()
            reply(call.callerNode, call.callerShard, call.callerKey, .failure(.disconnected))
            return
        }
        let node = state.node
        let handlers = (call.kind == .server ? node.serverHandlers : node.remoteClientHandlers).handlers(for: call.name)
        if call.kind == .server && handlers.isEmpty {
            metrics.unhandled.increment()
            reply(call.callerNode, call.callerShard, call.callerKey, .failure(.unhandled(name: call.name)))
            return
        }
        guard state.inboundKeys.count < options.maxInflightPerNode else {
            metrics.overloaded.increment()
            reply(call.callerNode, call.callerShard, call.callerKey, .failure(.overloaded))
            return
        }
        let key = newKey()
        inbound[key] = Inbound(callerShard: call.callerShard, callerKey: call.callerKey, socket: socket, callerNode: call.callerNode)
        state.inboundKeys.insert(key)
        nodes[socket] = state
        let me = shardIndex, executor = executor, metrics = metrics
        Task {
            let result: Result<RPCValue, RPCError>
            switch call.kind {
            case .server:
                let ctx = RPCContext(node: node, name: call.name, sender: call.sender)
                result = await RPCChain.run(handlers, ctx, call.args).mapError { RPCError(received: $0) }
            case .remoteClient:
                // As the reference's handlePassthrough: result prefilled with the args, pass on.
                let ctx = RPCContext(node: node, name: call.name, result: .array(call.args), sender: call.sender, pass: true)
                switch await RPCChain.run(handlers, ctx, call.args) {
                case .failure(let e): result = .failure(RPCError(received: e))
                case .success(let v) where !ctx.pass: result = .success(v)
                case .success(let v):
                    do throws(RPCError) {
                        result = .success(try await node.client.send(call.name, v.arrayValue ?? [v]))
                    } catch {
                        result = .failure(error)
                    }
                }
            }
            if executor.execute(onShard: me, { $0.finishInbound(key, result) }) != .queued {
                metrics.lostAnswers.increment()
            }
        }
    }

    private func finishInbound(_ key: UInt64, _ result: Result<RPCValue, RPCError>) {
        guard let ib = inbound.removeValue(forKey: key) else { return }  // its node closed first
        nodes[ib.socket]?.inboundKeys.remove(key)
        reply(ib.callerNode, ib.callerShard, ib.callerKey, result)
    }

    private func reply(_ node: Int?, _ shard: Int, _ key: UInt64, _ result: Result<RPCValue, RPCError>) {
        if let node, node != io.clusterNode {
            if !io.sendToClusterNode(node, RPCClusterWire.answer(shard: shard, key: key, result)) { metrics.lostAnswers.increment() }
            return
        }
        if executor.execute(onShard: shard, { $0.complete(key, result) }) != .queued {
            metrics.lostAnswers.increment()  // the caller's timeout answers it
        }
    }
}

extension RPCCorrelationID {
    /// The id of a request a node sent: its pending key as a JSON string.
    init(requestKey: UInt64) {
        self.init(validatedJSON: "\"\(requestKey)\"")
    }

    /// The pending key this id names, if it is one of ours.
    var requestKey: UInt64? {
        let t = jsonText.utf8
        guard t.count > 2, t.first == UInt8(ascii: "\""), t.last == UInt8(ascii: "\"") else { return nil }
        return UInt64(jsonText.dropFirst().dropLast())
    }
}

// MARK: - Across cluster nodes (RPCCluster.swift describes the design)

extension RPCShardCore {
    /// On the ids' owner shard: Redis learns that this process has `adding` (their first node
    /// here came) and no longer has `removing` (their last left). One id: the announce or
    /// withdraw script, its keys declared; more (a retry, a refresh): the batch script. An id
    /// whose write Redis does not answer (unreachable, connection lost first) is written again
    /// after `clusterDirectoryRetryMilliseconds`, as `directory` says then. `then` runs once,
    /// after the answer (or at once when refused at once).
    private func writeDirectory(adding: [String], removing: [String], then: (() -> Void)?) {
        guard let me = io.clusterNode else { then?(); return }
        assert(!adding.isEmpty || !removing.isEmpty, "a write names at least one id")
        assert(adding.allSatisfy { directory[$0] != nil } && removing.allSatisfy { directory[$0] == nil },
               "a write says what the directory holds now")
        directoryGeneration &+= 1
        let generation = directoryGeneration
        for id in adding { directoryWrites[id] = generation; directoryUnsynced.remove(id) }
        for id in removing { directoryWrites[id] = generation; directoryUnsynced.remove(id) }
        let keys = clusterKeys, node = Array(String(me).utf8)
        let incarnation = Array(String(io.clusterIncarnation).utf8)
        let command: [[UInt8]]
        if adding.count + removing.count == 1 {
            let id = adding.first ?? removing[0]
            command = RPCClusterKeys.eval(adding.isEmpty ? RPCClusterKeys.withdraw : RPCClusterKeys.announce,
                                          keys: [keys.id(id), keys.owned(me)], [node, Array(id.utf8)] + (adding.isEmpty ? [] : [incarnation]))
        } else {
            command = RPCClusterKeys.eval(RPCClusterKeys.sync, keys: [keys.owned(me)],
                                          [keys.idPrefix, node, incarnation, Array(String(adding.count).utf8)] + (adding + removing).map { Array($0.utf8) })
        }
        io.clusterCommand(command) { [weak self] reply in
            defer { then?() }
            guard let self else { return }
            let answered: Bool = if case .integer? = reply { true } else { false }
            if !answered && self.directoryUnsynced.isEmpty {
                // The first failure of a run: its retry comes one interval from now.
                self.nextDirectoryRetry = self.clock.now.advanced(by: .milliseconds(self.options.clusterDirectoryRetryMilliseconds))
            }
            for id in adding + removing where self.directoryWrites[id] == generation {
                self.directoryWrites[id] = nil
                if !answered {
                    self.metrics.directoryWriteFailures.increment()
                    self.directoryUnsynced.insert(id)
                }
            }
        }
    }

    /// This shard's Redis connection is up (at start, or again after a cut): every owned id is
    /// written again at the next tick. A restarted Redis lost them; the writes that failed in the
    /// cut are among them (the refresh takes the withdrawals waiting too).
    func clusterConnected() {
        assertOnShard()
        guard let me = io.clusterNode else { return }
        nextDirectoryRefresh = clock.now
        if shardIndex == 0 {
            // The ids this node's earlier incarnations wrote leave the directory: another
            // process removes an earlier process's when it sees the restart, but none may have
            // been up to see it (the whole cluster restarted, or one process alone). This
            // process's own, from before it was declared dead, go back with the refresh.
            // Not kept when unanswered: it runs again, whole, at the next connection.
            let keys = clusterKeys, keep = io.clusterIncarnation
            cleanUpInCluster({ keys.nodeDied(me, dead: nil, keep: keep, cursor: $0) }) { [weak self] removed, _ in
                self?.metrics.staleDirectoryIds.increment(by: removed)
            }
            resumeCleanUps()
        }
    }

    /// This shard's Redis backlog drained after it refused a command for lack of room (no
    /// reconnect follows a full queue): the clean-ups it cut go on now. The directory writes
    /// it refused are retried by `tick` already.
    func clusterBacklogDrained() {
        assertOnShard()
        guard io.clusterNode != nil, shardIndex == 0 else { return }
        resumeCleanUps()
    }

    /// Shard 0: the clean-ups of dead incarnations that Redis stopped answering (or refused for
    /// a full backlog) go on from the step each reached (`UnfinishedCleanUps`).
    private func resumeCleanUps() {
        assert(shardIndex == 0, "shard 0 runs the clean-ups")
        for cleanUp in unfinishedCleanUps.takeAll() {
            metrics.directoryCleanUpsResumed.increment()
            removeIncarnationIds(cleanUp.node, incarnation: cleanUp.incarnation, from: cleanUp.cursor)
        }
    }

    /// From `tick`, with a cluster: retries the failed writes, and writes every owned id again
    /// when the refresh is due. In batches of `clusterDirectoryBatchIds`.
    private func syncDirectory(_ now: ContinuousClock.Instant) {
        let batch = options.clusterDirectoryBatchIds
        if let due = nextDirectoryRefresh, due <= now {
            let refresh = options.clusterDirectoryRefreshMilliseconds
            nextDirectoryRefresh = refresh > 0 ? now.advanced(by: .milliseconds(refresh)) : nil
            metrics.directoryRefreshes.increment()
            // The withdrawals waiting for a retry go too: the refresh replaces the retry.
            let gone = directoryUnsynced.filter { directory[$0] == nil }
            for ids in Array(directory.keys).batches(of: batch) { writeDirectory(adding: Array(ids), removing: [], then: nil) }
            for ids in Array(gone).batches(of: batch) { writeDirectory(adding: [], removing: Array(ids), then: nil) }
        }
        guard !directoryUnsynced.isEmpty, nextDirectoryRetry <= now else { return }
        nextDirectoryRetry = now.advanced(by: .milliseconds(options.clusterDirectoryRetryMilliseconds))
        // One batch per retry: a long outage's backlog drains at one batch per interval once
        // Redis is back, never as a burst that fills the connection's pending bound.
        let ids = Array(directoryUnsynced.prefix(batch))
        writeDirectory(adding: ids.filter { directory[$0] != nil }, removing: ids.filter { directory[$0] == nil }, then: nil)
    }

    /// On the caller's shard: no node of this process has the target id; ask Redis which
    /// nodes do and send the call to each (the first answer completes the request, its
    /// timeout still bounds it).
    fileprivate func routeToNodes(_ call: RPCNodeCall) {
        guard pending[call.callerKey] != nil, let me = io.clusterNode else { return }
        let keys = clusterKeys
        io.clusterCommand([Array("SMEMBERS".utf8), keys.id(call.target)]) { [weak self] reply in
            guard let self, self.pending[call.callerKey] != nil else { return }
            // SMEMBERS answers a RESP3 set (an array from a RESP2 server).
            let members: [RESPValue]? = switch reply {
            case .set(let items)?, .array(let items)?: items
            default: nil
            }
            guard let items = members else {
                // Redis unreachable: as a full inbox, the request fails now.
                self.metrics.overloaded.increment()
                return self.complete(call.callerKey, .failure(.overloaded))
            }
            let nodes = items.compactMap { v -> Int? in
                if case .bulkString(let b) = v { Int(String(decoding: b, as: UTF8.self)) } else { nil }
            }.filter { $0 != me && ClusterConfiguration.nodeIDs.contains($0) }
            var remote = call
            remote.callerNode = me
            let bytes = RPCClusterWire.call(remote)
            let key = call.callerKey
            let reached = Set(nodes.filter { node in
                self.io.sendToClusterNode(node, bytes) { [weak self] receivers in
                    // Nobody holds that node's inbox: it is not up (the directory still names it
                    // until it is declared dead), so no answer will come from it.
                    if receivers == 0 { self?.remoteNodeUnreachable(node, key: key) }
                }
            })
            guard !reached.isEmpty else {
                self.metrics.disconnectedFailures.increment()
                return self.complete(key, .failure(nodes.isEmpty ? .disconnected : .overloaded))
            }
            self.remoteCalls[key] = reached
        }
    }

    /// A call sent to node `node` reached no process: the request stops waiting on it, and
    /// fails with `.disconnected` when no other node may answer (not at its timeout).
    private func remoteNodeUnreachable(_ node: Int, key: UInt64) {
        guard var nodes = remoteCalls[key], nodes.remove(node) != nil else { return }
        if nodes.isEmpty {
            metrics.disconnectedFailures.increment()
            complete(key, .failure(.disconnected))
        } else {
            remoteCalls[key] = nodes
        }
    }

    /// On shard 0: a call or an answer from another node.
    func receiveFromCluster(_ bytes: UnsafeRawBufferPointer) {
        assertOnShard()
        switch RPCClusterWire.decode(bytes, decoder: shared.decoder) {
        case .call(let call)?:
            if executor.execute(onShard: ownerShard(call.target), { $0.route(call) }) != .queued {
                metrics.overloaded.increment()
                reply(call.callerNode, call.callerShard, call.callerKey, .failure(.overloaded))
            }
        case .answer(let shard, let key, let result)?:
            guard shard < io.shardCount else { return metrics.strayAnswers.increment() }
            if executor.execute(onShard: shard, { $0.complete(key, result) }) != .queued { metrics.lostAnswers.increment() }
        case nil:
            metrics.strayAnswers.increment()
        }
    }

    /// Incarnation `incarnation` of node `node` died (nil: a death declared by hand, every
    /// incarnation): requests that wait only on it fail (`.disconnected`); shard 0 removes the
    /// ids it wrote from Redis. This process's own number: the others declared it dead while
    /// it lived; shard 0 removes what the old incarnation wrote and every shard writes its ids
    /// again under the new one.
    func peerNodeDied(_ node: Int, incarnation: UInt64?) {
        assertOnShard()
        for (key, nodes) in remoteCalls where nodes.contains(node) {
            var left = nodes
            left.remove(node)
            if left.isEmpty {
                metrics.disconnectedFailures.increment()
                complete(key, .failure(.disconnected))
            } else {
                remoteCalls[key] = left
            }
        }
        guard let me = io.clusterNode else { return }
        if node == me {
            // The others declared this process dead while it lived: they removed its ids from
            // the directory, or will as each learns of the death. Their clean-up removes only
            // what the dead incarnation wrote, so the ids go back at the next tick under the new
            // one, whatever the order: a write of the old incarnation still in flight goes on
            // this connection before the refresh's.
            nextDirectoryRefresh = clock.now
            // Declared by hand: nothing of this process's is to be removed.
            guard incarnation != nil else { return }
        }
        guard shardIndex == 0 else { return }
        guard let incarnation else {
            // By hand: not kept when unanswered (`UnfinishedCleanUps` says why).
            let keys = clusterKeys
            return cleanUpInCluster({ keys.nodeDied(node, dead: nil, keep: nil, cursor: $0) }) { _, _ in }
        }
        removeIncarnationIds(node, incarnation: incarnation)
    }

    /// Shard 0: the directory ids incarnation `incarnation` of node `node` wrote leave Redis,
    /// from `cursor`. A step Redis does not answer is kept, with its cursor, for the next
    /// connection (`clusterConnected`) or the drain of a full backlog (`clusterBacklogDrained`).
    private func removeIncarnationIds(_ node: Int, incarnation: UInt64, from cursor: [UInt8] = ClusterKeys.firstCursor) {
        assert(shardIndex == 0, "shard 0 runs the clean-ups")
        let keys = clusterKeys
        cleanUpInCluster({ keys.nodeDied(node, dead: incarnation, keep: nil, cursor: $0) }, from: cursor) { [weak self] _, unanswered in
            guard let self, let unanswered else { return }
            self.assertOnShard()  // the table is this shard's; Redis answers on it
            self.unfinishedCleanUps.keep(.init(node: node, incarnation: incarnation, cursor: unanswered))
        }
    }

    /// Runs a clean-up script step by step (`ClusterKeys.cleanUpInSteps`) on this shard's
    /// Redis connection, from `cursor`; a step answered after the core is gone ends it.
    private func cleanUpInCluster(_ command: @escaping ([UInt8]) -> [[UInt8]], from cursor: [UInt8] = ClusterKeys.firstCursor,
                                  done: @escaping (_ removed: Int, _ unanswered: [UInt8]?) -> Void) {
        ClusterKeys.cleanUpInSteps(command, send: { [weak self] arguments, completion in
            guard let self else { return completion(nil) }
            self.io.clusterCommand(arguments, completion)
        }, from: cursor, done: done)
    }
}
