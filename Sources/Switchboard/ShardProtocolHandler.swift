import SwitchboardIO
import SwitchboardWebSocket

/// The HTTP parser of a connection still speaking HTTP. Boxed so the per-slot array stays
/// small (an idle WebSocket holds no parser at all).
final class HTTPSession {
    var parser: HTTPRequestParser
    init(limits: HTTPLimits) { parser = HTTPRequestParser(limits: limits) }
}

/// The codec of a connection that switched to WebSocket, boxed for the same reason.
final class WebSocketSession {
    var connection: WebSocketConnection
    init(_ connection: WebSocketConnection) { self.connection = connection }
}

/// Per-connection protocol state, indexed by the connection's slot. Kept small: it exists for
/// every slot ever used.
struct ConnectionProtocolState {
    var http: HTTPSession?
    var requestTimerArmed = false
    /// No further HTTP request will be read (error answered, `Connection: close`, draining).
    var finished = false
    var inUse = false
    var id = SocketID(rawValue: 0)
    /// Non-nil once the connection switched to WebSocket.
    var webSocket: WebSocketSession? = nil
    var token: [UInt8]? = nil
    /// A keep-alive ping was sent and nothing came back yet.
    var pingOutstanding = false
    /// The server sent a close frame and waits for the client's.
    var closeSent = false
    /// A close frame is queued: nothing may be sent after it.
    var closeQueued = false
    /// Channels this socket is subscribed to (bounded by max_subscriptions_per_socket).
    var subscriptions: Set<ChannelName> = []
}

/// The shard's protocol layer: HTTP/1.1 (requests in order, pipelining, 408, parse limits),
/// the WebSocket upgrade, and WebSocket sessions (messages to the worker, pings, close).
final class ShardProtocolHandler: ShardEventHandler {
    let configuration: BrokerConfiguration
    let worker: WorkerHandler
    let metrics: ProtocolMetrics
    let renderMetrics: @Sendable () -> String
    unowned(unsafe) var shard: Shard!
    private var states: [ConnectionProtocolState] = []
    private var scratch: [UInt8] = []
    private var events: [WebSocketEvent] = []
    private var dateHeader: String? = nil
    private var dateSecond = -1
    private let webSocketLimits: WebSocketLimits
    private let handshakeOptions: WebSocketHandshakeOptions
    // Channels.
    let fabric: ChannelFabric
    private(set) var index = 0
    private var channels = LocalChannelIndex()
    /// Channels this shard owns: the last offset given out. New entries start at
    /// `offsetBase`, which only grows, so a channel's offsets keep increasing even if its entry
    /// was evicted at the `maxChannelsPerShard` bound.
    private var ownedOffsets: [ChannelName: UInt64] = [:]
    private var offsetBase: UInt64 = 0
    /// Deliveries that did not fit their ring, per target shard, oldest first. While any is
    /// waiting this shard takes no new publishes (backpressure reaches the publishers).
    private var pendingDeliveries: [[ChannelMessage]] = []
    private var pendingDeliveryCount = 0
    private static let continueBytes = OutboundBytes(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))

    init(configuration: BrokerConfiguration, worker: WorkerHandler, metrics: ProtocolMetrics, fabric: ChannelFabric,
         renderMetrics: @escaping @Sendable () -> String) {
        self.configuration = configuration
        self.fabric = fabric
        pendingDeliveries = Array(repeating: [], count: fabric.shardCount)
        self.worker = worker
        self.metrics = metrics
        self.renderMetrics = renderMetrics
        let ws = configuration.webSocket
        webSocketLimits = WebSocketLimits(maxFrameBytes: ws.maxFrameBytes, maxMessageBytes: ws.maxMessageBytes, maxFragments: ws.maxFragments)
        handshakeOptions = WebSocketHandshakeOptions(enablePerMessageDeflate: ws.perMessageDeflate, allowedOrigins: ws.allowedOrigins)
    }

    func shardStarted(_ shard: Shard) {
        self.shard = shard
        index = shard.index
        refreshDate()
    }

    private func refreshDate() {
        guard configuration.sendDateHeader else { return }
        let now = unixSeconds()
        if now != dateSecond {
            dateSecond = now
            dateHeader = httpDate(unixSeconds: now)
        }
    }

    func connectionOpened(_ id: SocketID) {
        let slot = id.slot
        while states.count <= slot {
            states.append(ConnectionProtocolState(http: nil))
        }
        states[slot] = ConnectionProtocolState(http: HTTPSession(limits: configuration.http), inUse: true, id: id)
    }

    func connectionClosed(_ id: SocketID) {
        let slot = id.slot
        let wasWebSocket = states[slot].webSocket != nil
        let token = states[slot].token
        // Closed sockets leave every channel.
        for channel in states[slot].subscriptions { _ = channels.remove(id, from: channel) }
        if !states[slot].subscriptions.isEmpty { publishChannelGauges() }
        // Drop parser and codec state now: a closed slot must not hold memory.
        states[slot] = ConnectionProtocolState(http: nil)
        if wasWebSocket {
            metrics.webSocketsOpen.set(metrics.webSocketsOpen.value - 1)
            worker.handleSocketClose(socketId: id, token: token)
        }
    }

    // MARK: - Receive

    func connectionReceived(_ id: SocketID, _ bytes: UnsafeRawBufferPointer) {
        let slot = id.slot
        var offset = 0
        while offset < bytes.count {
            if states[slot].webSocket != nil {
                receiveWebSocket(id, UnsafeRawBufferPointer(rebasing: bytes[offset...]))
                return
            }
            if states[slot].finished { return }
            guard let http = states[slot].http else { return }
            let (consumed, result) = http.parser.parse(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            offset += consumed
            switch result {
            case .needMore:
                if http.parser.hasPartialRequest && !states[slot].requestTimerArmed {
                    states[slot].requestTimerArmed = true
                    shard.armRequestTimer(id)
                }
                return
            case .expectContinue:
                _ = shard.send(id, Self.continueBytes)
            case .request(let request):
                if states[slot].requestTimerArmed {
                    states[slot].requestTimerArmed = false
                    shard.cancelRequestTimer(id)
                }
                metrics.requests.increment()
                if request.isUpgrade && request.headers.containsToken("websocket", in: "Upgrade") && configuration.webSocket.routes(request.path) {
                    upgrade(request, on: id)
                } else {
                    respond(to: request, on: id)
                }
            case .error(let error):
                metrics.countParseError(status: error.status)
                fail(id, HTTPResponseWriter.errorResponse(for: error))
                return
            }
        }
    }

    private func respond(to request: HTTPRequest, on id: SocketID) {
        let response: HTTPResponse
        let isGetLike = request.method == "GET" || request.method == "HEAD"
        if !configuration.healthPath.isEmpty && request.path == configuration.healthPath && isGetLike {
            response = HTTPResponse(status: 200, headers: ["Content-Type": "application/json"], body: #"{"status":"ok"}"#)
        } else if !configuration.metricsPath.isEmpty && request.path == configuration.metricsPath && isGetLike {
            response = HTTPResponse(status: 200, headers: ["Content-Type": "text/plain; version=0.0.4"], body: renderMetrics())
        } else if let r = worker.handleHttpRequest(request) {
            response = r
        } else {
            response = HTTPResponse(status: 404, headers: ["Content-Type": "text/plain"], body: "Not Found\n")
        }
        let keepAlive = request.keepAlive && !shard.isDraining
        write(response, keepAlive: keepAlive, headOnly: request.method == "HEAD", version: request.version, on: id)
        if !keepAlive {
            states[id.slot].finished = true
            shard.close(id, mode: .afterFlush)
        }
    }

    private func write(_ response: HTTPResponse, keepAlive: Bool, headOnly: Bool, version: HTTPVersion = .http1_1, on id: SocketID) {
        metrics.countResponse(status: response.status)
        scratch.removeAll(keepingCapacity: true)
        HTTPResponseWriter.write(response, keepAlive: keepAlive, headOnly: headOnly, date: dateHeader, requestVersion: version, into: &scratch)
        if shard.send(id, OutboundBytes(adopting: scratch)) == .overLimit {
            // The client is not reading its responses: a pipelining client that never reads
            // would otherwise grow the queue without bound.
            metrics.responseTooLarge.increment()
            states[id.slot].finished = true
            shard.close(id, mode: .immediately)
        }
    }

    /// Answers with an error status and closes after it is sent.
    private func fail(_ id: SocketID, _ response: HTTPResponse) {
        states[id.slot].finished = true
        write(response, keepAlive: false, headOnly: false, on: id)
        shard.close(id, mode: .afterFlush)
    }

    // MARK: - WebSocket

    private func upgrade(_ request: HTTPRequest, on id: SocketID) {
        let slot = id.slot
        guard !shard.isDraining else {
            metrics.upgradesRefused.increment()
            fail(id, HTTPResponse(status: 503, headers: ["Content-Type": "text/plain"], body: "Shutting down\n"))
            return
        }
        switch WebSocketHandshake.negotiate(request, options: handshakeOptions, subprotocol: nil) {
        case .reject(let response):
            metrics.upgradesRefused.increment()
            fail(id, response)
        case .accept(var response, let deflate):
            switch worker.handleUpgrade(request, socketId: id) {
            case .reject(let refusal):
                metrics.upgradesRefused.increment()
                fail(id, refusal)
            case .accept(let token, let subprotocol):
                if let sp = subprotocol, WebSocketHandshake.offeredSubprotocols(request).contains(sp) {
                    response.headers.add(name: "Sec-WebSocket-Protocol", value: sp)
                }
                write(response, keepAlive: true, headOnly: false, on: id)
                states[slot].webSocket = WebSocketSession(WebSocketConnection(limits: webSocketLimits, deflate: deflate))
                // The HTTP parser is no longer needed: an idle socket should hold nothing.
                states[slot].http = nil
                states[slot].token = token
                states[slot].finished = true
                metrics.upgrades.increment()
                metrics.webSocketsOpen.set(metrics.webSocketsOpen.value + 1)
            }
        }
    }

    private func receiveWebSocket(_ id: SocketID, _ bytes: UnsafeRawBufferPointer) {
        let slot = id.slot
        // Events are collected first and acted on after the codec is back in its slot: the
        // worker may answer (send on this socket) from inside handleSocketMessage.
        events.removeAll(keepingCapacity: true)
        states[slot].webSocket!.connection.receive(bytes) { events.append($0) }
        states[slot].pingOutstanding = false
        let batch = events
        events.removeAll(keepingCapacity: true)
        for event in batch {
            guard states[slot].inUse, states[slot].id == id else { return }
            switch event {
            case .text(let payload):
                metrics.webSocketMessagesIn.increment()
                worker.handleSocketMessage(.text(String(decoding: payload, as: UTF8.self)), socketId: id, token: states[slot].token)
            case .binary(let payload):
                metrics.webSocketMessagesIn.increment()
                worker.handleSocketMessage(.binary(payload), socketId: id, token: states[slot].token)
            case .write(let frame):
                if frame.first == 0x88 { states[slot].closeQueued = true }
                if shard.send(id, OutboundBytes(adopting: frame)) == .overLimit { shard.close(id, mode: .immediately) }
            case .pong:
                break
            case .closed:
                // The close handshake is complete: nothing more is expected from the client.
                shard.close(id, mode: .afterFlushNoLinger)
            case .failed(let code, _):
                metrics.webSocketProtocolErrors.increment()
                if code == WebSocketCloseCode.messageTooBig { metrics.webSocketTooBig.increment() }
                shard.close(id, mode: .afterFlush)
            }
        }
    }

    /// Sends a message on a WebSocket of this shard. Returns false if the id is stale, not a
    /// WebSocket, or the message was dropped by the slow-consumer policy.
    @discardableResult
    func sendMessage(_ id: SocketID, _ message: SocketMessage) -> Bool {
        let slot = id.slot
        // Not `webSocket.isOpen`: the codec may already have failed on input that arrived in
        // the same read as the message being answered; the answer still goes before the close.
        guard slot < states.count, states[slot].inUse, states[slot].id == id, states[slot].webSocket != nil,
              !states[slot].closeQueued, shard.isOpen(id) else {
            return false
        }
        let frame: [UInt8]
        switch message {
        case .text(var s):
            frame = s.withUTF8 { states[slot].webSocket!.connection.encodeMessage(UnsafeRawBufferPointer($0), opcode: .text) }
        case .binary(let b):
            frame = b.withUnsafeBytes { states[slot].webSocket!.connection.encodeMessage($0, opcode: .binary) }
        }
        return queue(frame, on: id)
    }

    /// Queues an encoded frame, applying the slow-consumer policy at the limit.
    private func queue(_ frame: [UInt8], on id: SocketID) -> Bool {
        switch shard.send(id, OutboundBytes(adopting: frame)) {
        case .queued:
            metrics.webSocketMessagesOut.increment()
            return true
        case .notOpen:
            return false
        case .overLimit:
            applySlowConsumerPolicy(id)
            return false
        }
    }

    /// A socket's send queue is at its limit: drop the message (counted) or close with 1013.
    private func applySlowConsumerPolicy(_ id: SocketID) {
        switch configuration.webSocket.slowConsumerPolicy {
        case .drop:
            metrics.webSocketMessagesDropped.increment()
        case .close:
            metrics.webSocketSlowConsumersClosed.increment()
            closeWebSocket(id, code: WebSocketCloseCode.tryAgainLater, reason: "slow consumer", force: true)
        }
    }

    /// Server-initiated close: a close frame, then the client's close (or the request timeout).
    /// `force` drops what is queued first (the queue is full: the close frame could not follow).
    func closeWebSocket(_ id: SocketID, code: UInt16, reason: String, force: Bool = false) {
        let slot = id.slot
        guard slot < states.count, states[slot].inUse, states[slot].id == id, states[slot].webSocket != nil else { return }
        guard states[slot].webSocket!.connection.isOpen, !states[slot].closeQueued else { return }
        let frame = states[slot].webSocket!.connection.initiateClose(code: code, reason: reason)
        guard !frame.isEmpty else { return }
        states[slot].closeSent = true
        states[slot].closeQueued = true
        // `force`: the queue is at its limit (slow consumer). The close frame still goes behind
        // what is queued; the connection then has the linger timeout to drain, after which it
        // is cut.
        if shard.send(id, OutboundBytes(adopting: frame), overLimit: force) != .queued {
            shard.close(id, mode: .immediately)
            return
        }
        if force {
            shard.close(id, mode: .afterFlush)
        } else {
            shard.armRequestTimer(id)
        }
    }

    func setToken(_ id: SocketID, _ token: [UInt8]?) {
        let slot = id.slot
        guard slot < states.count, states[slot].inUse, states[slot].id == id else { return }
        states[slot].token = token
    }

    // MARK: - Channels

    /// Subscribes a socket of this shard. Synchronous and exact.
    func subscribe(_ id: SocketID, to channel: ChannelName) -> SubscribeResult {
        let slot = id.slot
        guard slot < states.count, states[slot].inUse, states[slot].id == id, shard.isOpen(id) else { return .notFound }
        if states[slot].subscriptions.contains(channel) { return .alreadySubscribed }
        guard states[slot].subscriptions.count < configuration.maxSubscriptionsPerSocket else {
            metrics.subscriptionLimitHits.increment()
            return .tooManySubscriptions
        }
        let result = channels.add(id, to: channel, mayCreate: channels.channelCount < configuration.maxChannelsPerShard)
        switch result {
        case .subscribed:
            states[slot].subscriptions.insert(channel)
            publishChannelGauges()
        case .tooManyChannels:
            metrics.channelLimitHits.increment()
        default:
            break
        }
        return result
    }

    func unsubscribe(_ id: SocketID, from channel: ChannelName) -> Bool {
        let slot = id.slot
        guard slot < states.count, states[slot].inUse, states[slot].id == id,
              states[slot].subscriptions.remove(channel) != nil else { return false }
        _ = channels.remove(id, from: channel)
        publishChannelGauges()
        return true
    }

    /// Subscribes every local subscriber of `from` to `to` (this shard's share of
    /// copySubscriptions). Returns how many were added.
    @discardableResult
    func copyLocalSubscriptions(from: ChannelName, to: ChannelName) -> Int {
        guard let source = channels.subscribers(of: from) else { return 0 }
        var added = 0
        for id in source.subscribers where subscribe(id, to: to) == .subscribed { added += 1 }
        return added
    }

    func subscriptions(of id: SocketID) -> Set<ChannelName> {
        let slot = id.slot
        guard slot < states.count, states[slot].inUse, states[slot].id == id else { return [] }
        return states[slot].subscriptions
    }

    func localSubscriberCount(_ channel: ChannelName) -> Int { channels.subscribers(of: channel)?.subscribers.count ?? 0 }

    private func publishChannelGauges() {
        metrics.channels.set(channels.channelCount)
        metrics.subscriptions.set(channels.subscriptionCount)
    }

    /// Publishes from this shard's thread: the frame goes to the channel's owner (this shard,
    /// or through the publish ring). False when the ring to the owner is full (refused, counted).
    func publish(_ channel: ChannelName, _ frame: OutboundBytes) -> Bool {
        let owner = channel.owner(shardCount: fabric.shardCount)
        if owner == index {
            order(channel, frame)
            return true
        }
        guard fabric.publishRing(from: index, to: owner).tryPush(.publish(channel, frame)) else {
            metrics.publishesRefused.increment()
            return false
        }
        fabric.shards[owner].wake()
        return true
    }

    /// Owner side: gives the message the channel's next offset and fans it out to every shard.
    /// Every shard gets it (not only those with subscribers): a subscribe is then complete the
    /// moment it returns on the socket's shard, with no registration round trip that a publish
    /// from a third shard could overtake.
    func order(_ channel: ChannelName, _ frame: OutboundBytes) {
        metrics.publishes.increment()
        let offset: UInt64
        if let last = ownedOffsets[channel] {
            offset = last &+ 1
        } else {
            if ownedOffsets.count >= configuration.maxChannelsPerShard, let victim = ownedOffsets.first?.key {
                ownedOffsets.removeValue(forKey: victim)
                metrics.channelOffsetsEvicted.increment()
            }
            offset = offsetBase &+ 1
        }
        ownedOffsets[channel] = offset
        offsetBase = max(offsetBase, offset)
        for target in 0..<fabric.shardCount where target != index {
            if pendingDeliveries[target].isEmpty && fabric.deliverRing(from: index, to: target).tryPush(.deliver(channel, frame, offset)) {
                fabric.shards[target].wake()
            } else {
                pendingDeliveries[target].append(.deliver(channel, frame, offset))
                pendingDeliveryCount += 1
                metrics.crossShardBackpressure.increment()
            }
        }
        deliverLocally(channel, frame, offset)
    }

    /// Writes one shared frame to every local subscriber (no copy: each queue holds a reference).
    func deliverLocally(_ channel: ChannelName, _ frame: OutboundBytes, _ offset: UInt64) {
        guard let local = channels.subscribers(of: channel) else { return }
        local.lastOffset = offset
        // Iterate a copy: the slow-consumer policy may close (and unsubscribe) a socket.
        let subscribers = local.subscribers
        for id in subscribers where !states[id.slot].closeQueued {
            switch shard.send(id, frame) {
            case .queued:
                metrics.fanoutDeliveries.increment()
            case .notOpen:
                break
            case .overLimit:
                applySlowConsumerPolicy(id)
            }
        }
    }

    private func flushPendingDeliveries() {
        guard pendingDeliveryCount > 0 else { return }
        for target in 0..<fabric.shardCount where !pendingDeliveries[target].isEmpty {
            let ring = fabric.deliverRing(from: index, to: target)
            var sent = 0
            for message in pendingDeliveries[target] {
                guard ring.tryPush(message) else { break }
                sent += 1
            }
            if sent > 0 {
                pendingDeliveries[target].removeFirst(sent)
                pendingDeliveryCount -= sent
                fabric.shards[target].wake()
            }
        }
        metrics.crossShardPending.set(pendingDeliveryCount)
    }

    /// Drains the cross-shard rings: deliveries always, publishes only without backpressure.
    func loopTurn(_ shard: Shard) {
        guard fabric.shardCount > 1 else { return }
        flushPendingDeliveries()
        for from in 0..<fabric.shardCount where from != index {
            fabric.deliverRing(from: from, to: index).drain(max: 4096) { message in
                if case .deliver(let channel, let frame, let offset) = message { deliverLocally(channel, frame, offset) }
            }
        }
        for from in 0..<fabric.shardCount where from != index {
            guard pendingDeliveryCount == 0 else { break }
            fabric.publishRing(from: from, to: index).drain(max: 1024) { message in
                if case .publish(let channel, let frame) = message { order(channel, frame) }
            }
        }
    }

    func hasPendingWork(_ shard: Shard) -> Bool {
        pendingDeliveryCount > 0 || fabric.hasInbound(index, includingPublishes: true)
    }

    // MARK: - Timers and shutdown

    func connectionTimedOut(_ id: SocketID, _ timer: ConnectionTimer) {
        let slot = id.slot
        if states[slot].webSocket != nil {
            switch timer {
            case .request:
                // The client did not answer our close frame in time.
                shard.close(id, mode: .immediately)
            case .idle:
                if states[slot].pingOutstanding || states[slot].closeSent {
                    metrics.webSocketPingTimeouts.increment()
                    shard.close(id, mode: .immediately)
                } else {
                    states[slot].pingOutstanding = true
                    _ = shard.send(id, OutboundBytes(adopting: WebSocketConnection.pingFrame([])))
                    shard.touch(id)
                }
            }
            return
        }
        switch timer {
        case .request:
            states[slot].requestTimerArmed = false
            guard (states[slot].http?.parser.hasPartialRequest ?? false), !states[slot].finished else { return }
            metrics.countParseError(status: 408)
            fail(id, HTTPResponse(status: 408, headers: ["Content-Type": "text/plain"], body: "Request Timeout\n"))
        case .idle:
            if (states[slot].http?.parser.hasPartialRequest ?? false) && !states[slot].finished {
                metrics.countParseError(status: 408)
                fail(id, HTTPResponse(status: 408, headers: ["Content-Type": "text/plain"], body: "Request Timeout\n"))
            } else {
                shard.close(id, mode: .immediately)
            }
        }
    }

    func shardDraining(_ shard: Shard) {
        for slot in 0..<states.count where states[slot].inUse {
            let id = states[slot].id
            if states[slot].webSocket != nil {
                // WebSockets get a 1001 close handshake; the grace deadline cuts the rest.
                closeWebSocket(id, code: WebSocketCloseCode.goingAway, reason: "server shutting down")
            } else if !states[slot].finished && !(states[slot].http?.parser.hasPartialRequest ?? false) {
                // Idle keep-alive connections go now (as nginx does: nothing is owed to them);
                // those mid-request get their response with `Connection: close`.
                states[slot].finished = true
                shard.close(id, mode: shard.queuedBytes(id) == 0 ? .immediately : .afterFlush)
            }
        }
    }

    func tick(_ shard: Shard, nowMilliseconds: Int64) {
        refreshDate()
    }
}
