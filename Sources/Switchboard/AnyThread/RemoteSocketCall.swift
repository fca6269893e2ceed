import SwitchboardCluster
import SwitchboardIO

/// What a remote socket call asks of the socket's node.
enum RemoteSocketOperation: UInt8, Sendable {
    case subscribe = 0x73      // "s"
    case unsubscribe = 0x75    // "u"
    case subscriptions = 0x6C  // "l"
}

/// A remote socket call's answer, as it travels back.
enum RemoteSocketAnswer: Sendable, Equatable {
    case subscribe(SubscribeResult)
    case unsubscribe(Bool)
    case subscriptions(Set<ChannelName>)
    /// The id's shard does not exist on its node (as `.unknownShard` on one node).
    case unknownShard
}

/// The two node-inbox messages of a remote socket call (`subscribe`, `unsubscribe`,
/// `subscriptions(of:)` on a socket of another node). Big-endian integers.
///
/// - request, to the socket's node: `q`, the operation byte, the socket id (8 bytes), the
///   requesting node (1 byte, 0...255), its shard (2 bytes), the call id (8 bytes), then the
///   channel (the rest; empty for `subscriptions`).
/// - answer, to the requesting node: `r`, the requesting shard (2 bytes), the call id
///   (8 bytes), then the answer: `s` and a `SubscribeResult` code, `u` and 0/1, `l` and each
///   channel as a 4-byte length and its bytes, or `x` (no such shard).
///
/// Decoding never trusts the bytes: anything malformed is nil (the inbox drops and logs it).
enum RemoteSocketCall {
    static let requestOperation = UInt8(ascii: "q")
    static let answerOperation = UInt8(ascii: "r")

    struct Request: Equatable, Sendable {
        let operation: RemoteSocketOperation
        let socket: SocketID
        let fromNode: Int
        let fromShard: Int
        let call: UInt64
        let channel: ChannelName
    }

    struct Answer: Equatable, Sendable {
        let toShard: Int
        let call: UInt64
        let answer: RemoteSocketAnswer
    }

    /// SubscribeResult on the wire: one byte each, fixed here (never the enum's order).
    private static let subscribeCodes: [(SubscribeResult, UInt8)] = [
        (.subscribed, 0), (.alreadySubscribed, 1), (.notFound, 2), (.notLocal, 3),
        (.tooManySubscriptions, 4), (.tooManyChannels, 5),
    ]

    private static func append(_ value: UInt64, bytes: Int, to out: inout [UInt8]) {
        for shift in stride(from: (bytes - 1) * 8, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    private static func read(_ bytes: UnsafeRawBufferPointer, at start: Int, count: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in start..<(start + count) { value = value << 8 | UInt64(bytes[i]) }
        return value
    }

    static func encode(_ r: Request) -> [UInt8] {
        precondition((0...255).contains(r.fromNode) && (0...0xFFFF).contains(r.fromShard), "node and shard fit their bytes")
        var out: [UInt8] = [requestOperation, r.operation.rawValue]
        out.reserveCapacity(21 + r.channel.bytes.count)
        append(r.socket.rawValue, bytes: 8, to: &out)
        out.append(UInt8(r.fromNode))
        append(UInt64(r.fromShard), bytes: 2, to: &out)
        append(r.call, bytes: 8, to: &out)
        return out + r.channel.bytes
    }

    static func decodeRequest(_ bytes: UnsafeRawBufferPointer) -> Request? {
        guard bytes.count >= 21, bytes[0] == requestOperation, let operation = RemoteSocketOperation(rawValue: bytes[1]) else { return nil }
        let channel = Array(bytes[21...])
        // Any bytes name a channel, none included; a subscriptions query carries none.
        guard operation != .subscriptions || channel.isEmpty else { return nil }
        return Request(operation: operation, socket: SocketID(rawValue: read(bytes, at: 2, count: 8)), fromNode: Int(bytes[10]),
                       fromShard: Int(read(bytes, at: 11, count: 2)), call: read(bytes, at: 13, count: 8), channel: ChannelName(channel))
    }

    static func encode(_ a: Answer) -> [UInt8] {
        precondition((0...0xFFFF).contains(a.toShard), "the shard fits its bytes")
        var out: [UInt8] = [answerOperation]
        append(UInt64(a.toShard), bytes: 2, to: &out)
        append(a.call, bytes: 8, to: &out)
        switch a.answer {
        case .subscribe(let result):
            out += [UInt8(ascii: "s"), subscribeCodes.first { $0.0 == result }!.1]
        case .unsubscribe(let removed):
            out += [UInt8(ascii: "u"), removed ? 1 : 0]
        case .subscriptions(let channels):
            out.append(UInt8(ascii: "l"))
            for channel in channels {
                append(UInt64(channel.bytes.count), bytes: 4, to: &out)
                out += channel.bytes
            }
        case .unknownShard:
            out.append(UInt8(ascii: "x"))
        }
        return out
    }

    static func decodeAnswer(_ bytes: UnsafeRawBufferPointer) -> Answer? {
        guard bytes.count >= 12, bytes[0] == answerOperation else { return nil }
        let shard = Int(read(bytes, at: 1, count: 2))
        let call = read(bytes, at: 3, count: 8)
        let rest = UnsafeRawBufferPointer(rebasing: bytes[12...])
        let answer: RemoteSocketAnswer
        switch bytes[11] {
        case UInt8(ascii: "s"):
            guard rest.count == 1, let result = subscribeCodes.first(where: { $0.1 == rest[0] })?.0 else { return nil }
            answer = .subscribe(result)
        case UInt8(ascii: "u"):
            guard rest.count == 1, rest[0] <= 1 else { return nil }
            answer = .unsubscribe(rest[0] == 1)
        case UInt8(ascii: "l"):
            var channels = Set<ChannelName>()
            var i = 0
            while i < rest.count {
                guard rest.count - i >= 4 else { return nil }
                let length = Int(read(rest, at: i, count: 4))
                i += 4
                guard length <= rest.count - i else { return nil }
                channels.insert(ChannelName(Array(rest[i..<(i + length)])))
                i += length
            }
            answer = .subscriptions(channels)
        case UInt8(ascii: "x"):
            guard rest.isEmpty else { return nil }
            answer = .unknownShard
        default:
            return nil
        }
        return Answer(toShard: shard, call: call, answer: answer)
    }
}

extension Broker {
    /// A subscribe, unsubscribe or subscriptions query on a socket of another node: sent to
    /// that node's inbox from one of this node's shards (the id's hash picks it), which waits
    /// for the answer through this node's inbox, at most `cluster_remote_call_timeout_ms`.
    /// Throws `.clusterUnavailable` (no Redis connection, or it was lost before Redis took the
    /// request), `.nodeUnavailable` (no node took it: the socket's node is down),
    /// `.timedOut` (taken, not answered in time: the node died or is stalled), `.stopped`,
    /// `.inboxFull`, or `.unknownShard` (the node has no such shard).
    func remoteSocketCall(_ socketId: SocketID, _ operation: RemoteSocketOperation,
                          _ channel: ChannelName = ChannelName([])) async throws(BrokerError) -> RemoteSocketAnswer {
        guard !isStopping else { throw .stopped }
        let index = Int(socketId.rawValue % UInt64(shardCount))
        let dispatchers = dispatchers
        let node = configuration.cluster.nodeID
        let timeout = Int64(configuration.cluster.remoteCallTimeoutMilliseconds)
        let result: Result<RemoteSocketAnswer, BrokerError> = await withCheckedContinuation { continuation in
            // Exactly one of: the call's end on the shard (answer, refusal, deadline, drain:
            // `RemoteSocketCalls` ends each call once), or the refusal to run it there.
            group.shards[index].execute({ _ in
                dispatchers[index].channels.startRemoteCall(socketId, operation, channel, fromNode: node, timeoutMilliseconds: timeout) {
                    continuation.resume(returning: $0)
                }
            }, orElse: { why in continuation.resume(returning: .failure(why == .stopped ? .stopped : .inboxFull)) })
        }
        let answer = try result.get()
        if answer == .unknownShard { throw .unknownShard }
        return answer
    }

    /// Shard 0's inbox got a request for one of this node's sockets: run it on the socket's
    /// shard and answer from there (its own Redis connection). Lost (the caller times out)
    /// when that shard refuses the work or Redis refuses the answer.
    func serveRemoteCall(_ request: RemoteSocketCall.Request) {
        let reply: @Sendable (ShardDispatcher, RemoteSocketAnswer) -> Void = { dispatcher, answer in
            let bytes = RemoteSocketCall.encode(RemoteSocketCall.Answer(toShard: request.fromShard, call: request.call, answer: answer))
            if dispatcher.channels.cluster?.sendToNode(request.fromNode, bytes) != .sent {
                self.logger.warning("cluster: the answer to node \(request.fromNode)'s call on \(request.socket) could not be sent (Redis unreachable or busy)")
            }
        }
        let shard = request.socket.shard
        guard shard >= 0, shard < shardCount else {
            _ = onShard(0) { reply($0, .unknownShard) }
            return
        }
        let queued = onShard(shard) { dispatcher in
            let channels = dispatcher.channels
            switch request.operation {
            case .subscribe: reply(dispatcher, .subscribe(channels.subscribe(request.socket, to: request.channel)))
            case .unsubscribe: reply(dispatcher, .unsubscribe(channels.unsubscribe(request.socket, from: request.channel)))
            case .subscriptions: reply(dispatcher, .subscriptions(channels.subscriptions(of: request.socket)))
            }
        }
        if queued != .queued { logger.warning("cluster: node \(request.fromNode)'s call on \(request.socket) was dropped (\(queued))") }
    }

    /// Shard 0's inbox got the answer to one of this node's calls: hand it to the shard that
    /// waits for it.
    func receiveRemoteAnswer(_ answer: RemoteSocketCall.Answer) {
        guard answer.toShard < shardCount else {
            return logger.warning("cluster: an answer for shard \(answer.toShard), which this node does not have, was dropped")
        }
        _ = onShard(answer.toShard, duringShutdown: true) { $0.channels.remoteCalls.complete(answer.call, .success(answer.answer)) }
    }
}

extension ChannelEngine {
    /// Sends a remote socket call from this shard and waits for its end (see
    /// `RemoteSocketCalls`). Node down: PUBLISH's receiver count is 0, the call fails at once.
    func startRemoteCall(_ socket: SocketID, _ operation: RemoteSocketOperation, _ channel: ChannelName, fromNode: Int,
                         timeoutMilliseconds: Int64, _ completion: @escaping RemoteSocketCalls.Completion) {
        guard let cluster else { return completion(.failure(.clusterUnavailable)) }
        // + 1: the shard's clock is whole milliseconds, truncated, and read when the turn
        // began, so `now + timeout` could fall up to a millisecond before the timeout has
        // really passed (a test saw 299.3 ms for 300); a call never ends before its timeout.
        guard let call = remoteCalls.add(deadlineMilliseconds: shard.nowMilliseconds + timeoutMilliseconds + 1, completion) else { return }
        let request = RemoteSocketCall.Request(operation: operation, socket: socket, fromNode: fromNode, fromShard: index,
                                               call: call, channel: channel)
        let metrics = cluster.metrics
        let sent = cluster.sendToNode(socket.node, RemoteSocketCall.encode(request)) { [unowned self] receivers in
            switch receivers {
            case 0?:
                // Counted first: the caller may read the metric as soon as it resumes.
                guard remoteCalls.isWaiting(call) else { return }
                metrics.remoteCallsNodeDown.increment()
                remoteCalls.complete(call, .failure(.nodeUnavailable))
            case nil:
                remoteCalls.complete(call, .failure(.clusterUnavailable))
            default:
                break  // taken: the answer (or the deadline) ends the call
            }
        }
        if sent == .sent {
            metrics.remoteCalls.increment()
        } else {
            remoteCalls.complete(call, .failure(.clusterUnavailable))
        }
    }

    /// On the shard's tick: calls past their deadline fail with `.timedOut` (counted).
    func expireRemoteCalls(nowMilliseconds: Int64) {
        guard let cluster, remoteCalls.count > 0 else { return }
        remoteCalls.expire(nowMilliseconds: nowMilliseconds) { cluster.metrics.remoteCallTimeouts.increment() }
    }
}
