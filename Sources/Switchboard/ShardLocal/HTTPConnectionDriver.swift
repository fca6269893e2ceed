import SwitchboardHTTP
import SwitchboardIO
import SwitchboardWebSocket

/// Drives the shard's HTTP/1.1 connections: requests parsed in order (pipelining), the
/// built-in routes, the handler, responses in request order (deferred ones included, with
/// their timeout and the per-connection bound), 100-continue, 408, the parse limits, the
/// WebSocket upgrade, and streamed request bodies (`HTTPConnectionDriver+BodyStream.swift`).
/// Shard thread only.
final class HTTPConnectionDriver {
    unowned(unsafe) let shard: Shard
    /// The same shard for the calls made once per request (`onShard`): through
    /// `_withUnsafeGuaranteedRef` a call takes no retain and release of the shard, which an
    /// `unowned(unsafe)` reference costs around each call (the shard owns this driver, through
    /// its dispatcher, and outlives it). As `WebSocketConnectionDriver.shardReference`.
    private let shardReference: Unmanaged<Shard>
    let table: ConnectionTable
    let metrics: ProtocolMetrics
    let configuration: BrokerConfiguration
    let routes: BuiltinRoutes
    /// `routes.bare`, kept here: passed to the parser on every read.
    private let bareRoutes: HTTPBareRoutes
    unowned(unsafe) let webSockets: WebSocketConnectionDriver
    /// The handler's context (to pass to `handleHttpRequest`); set with `worker`.
    unowned(unsafe) var context: ShardContext!
    var worker: WorkerHandler = DefaultWorkerHandler()
    /// For the response slots (set with `worker`).
    unowned(unsafe) var broker: Broker!
    /// Limits, budget and zlib memory level of this shard's WebSockets, one instance for all
    /// (a reference per socket instead of copies: issue 16 item 2).
    private let webSocketSettings: WebSocketCodecSettings
    private let handshakeOptions: WebSocketHandshakeOptions
    private var scratch: [UInt8] = []
    /// The `Date` value and the health answer serialized with it (renewed each second).
    /// No dynamic exclusivity check: shard thread only, and its mutations call out to nothing.
    @exclusivity(unchecked) private var responses: ResponseCache
    private static let continueBytes = OutboundBytes("HTTP/1.1 100 Continue\r\n\r\n")

    init(shard: Shard, table: ConnectionTable, metrics: ProtocolMetrics, configuration: BrokerConfiguration,
         routes: BuiltinRoutes, webSockets: WebSocketConnectionDriver) {
        self.shard = shard
        shardReference = .passUnretained(shard)
        self.table = table
        self.metrics = metrics
        self.configuration = configuration
        self.routes = routes
        bareRoutes = routes.bare
        self.webSockets = webSockets
        let ws = configuration.webSocket
        webSocketSettings = WebSocketCodecSettings(
            limits: WebSocketLimits(maxFrameBytes: ws.maxFrameBytes, maxMessageBytes: ws.maxMessageBytes, maxFragments: ws.maxFragments),
            budget: shard.memory, deflateMemoryLevel: ws.deflateMemoryLevel, releasesIdleStreams: true,
            textAsBytes: true)
        handshakeOptions = WebSocketHandshakeOptions(enablePerMessageDeflate: ws.perMessageDeflate,
                                                     serverContextTakeover: ws.deflateContextTakeover,
                                                     allowedOrigins: ws.allowedOrigins)
        responses = ResponseCache(sendsDate: configuration.sendDateHeader, health: BuiltinRoutes.health)
        refreshDate()
    }

    @inline(__always) private func onShard<R>(_ body: (Shard) -> R) -> R {
        shardReference._withUnsafeGuaranteedRef(body)
    }

    func makeSession() -> HTTPSession { HTTPSession(limits: configuration.http) }

    func refreshDate() {
        guard configuration.sendDateHeader else { return }
        responses.refresh(unixSeconds: unixSeconds())
    }

    // MARK: - Receive

    /// Parses and answers what `bytes` holds. Returns how many bytes were consumed: all of
    /// them, unless the connection upgraded to WebSocket part-way (the rest is WebSocket input).
    func receive(_ id: SocketID, _ session: HTTPSession, _ bytes: UnsafeRawBufferPointer) -> Int {
        var offset = 0
        // A streamed body's end (or a 100-continue after a head) may be due with no input left.
        while offset < bytes.count || session.parser.hasEventPending {
            guard session.lifecycle != .finished else { return bytes.count }
            let start = offset
            let (consumed, step) = session.parser.parseEvents(UnsafeRawBufferPointer(rebasing: bytes[offset...]), bare: bareRoutes)
            offset += consumed
            let result: HTTPParseEvent
            switch consume step {
            case .bare(let bare):
                // A built-in route's request (GET/HEAD, no body, not an upgrade, the route's
                // path): answered from the request line, as `.request` below would answer it.
                requestComplete(on: id, session)
                respondBuiltin(bare, on: id, session)
                // A complete request leaves no event pending (the parser waits for the next
                // request line): the loop's `hasEventPending` (a copy of the whole parser,
                // ~70 instructions) is not needed at the end of the read.
                if offset == bytes.count { return bytes.count }
                continue
            case .event(let event):
                result = event
            }
            // Consumed: the request is moved out of the event, not copied (a retain per String).
            switch consume result {
            case .needMore:
                if session.parser.hasPartialRequest && session.lifecycle == .idle {
                    session.lifecycle = .receiving
                    shard.armRequestTimer(id)
                }
                assert(offset == bytes.count, "needMore means the parser took (and keeps) every byte")
                return bytes.count
            case .expectContinue:
                // An interim response may not overtake the final ones still owed before it;
                // the client then sends its body after its own wait (RFC 9110 §10.1.1).
                if owesNothingBeforeCurrent(session) { _ = shard.send(id, Self.continueBytes) }
            case .head(let head):
                // The buffered path (as before) unless the handler streams this body.
                if !startStream(head, on: id, session) { continue }
                if session.stream == nil { return bytes.count }  // answered at once: the body is not read
            case .bodyPart(let range):
                bodyPart(UnsafeRawBufferPointer(rebasing: bytes[(start + range.lowerBound)..<(start + range.upperBound)]), on: id, session)
            case .bodyEnd:
                bodyEnd(on: id, session)
            case .request(let request):
                requestComplete(on: id, session)
                if request.isUpgrade && request.headers.containsToken("websocket", in: "Upgrade") && configuration.webSocket.routes(request.path) {
                    if upgrade(request, on: id, session) { return offset }
                } else {
                    respond(to: request, on: id, session)
                }
            case .error(let error):
                metrics.countParseError(status: error.status)
                if let active = session.stream {
                    let reason: RequestBodyError = error == .bodyTooLarge ? .tooLarge : .invalid(status: error.status)
                    abortStream(active, reason, HTTPResponseWriter.errorResponse(for: error), on: id, session)
                } else {
                    fail(id, session, HTTPResponseWriter.errorResponse(for: error))
                }
                return bytes.count
            }
        }
        return bytes.count
    }

    /// The request whose handler is running (what `deferResponse()` defers).
    private struct Handling {
        let id: SocketID
        let session: HTTPSession
        let keepAlive: Bool
        let headOnly: Bool
        let version: HTTPVersion
        var deferredSequence: UInt64?
    }
    private var handling: Handling?
    /// Connections owing at least one deferred response (scanned for timeouts each tick).
    private var waiting: Set<SocketID> = []
    /// Connections with a streamed-body budget (scanned each tick: the gauge, and resuming a
    /// paused one whose consumer's post was refused).
    var streamingConnections: Set<SocketID> = []

    /// Answers `request` (built-in route or handler). Returns the sequence of its deferred
    /// response when it is still owed (the handler deferred and has not answered yet).
    /// `prepared`: the handler's view, already made (a streamed request's, with its stream):
    /// its body is still to come, so reading goes on even without keep-alive.
    @discardableResult
    func respond(to request: ParsedRequest, prepared: WorkerRequest? = nil, on id: SocketID, _ session: HTTPSession) -> UInt64? {
        let headOnly = request.method == "HEAD"
        guard let keepAlive = admit(keepAlive: request.keepAlive, streamed: prepared != nil, on: id, session) else { return nil }
        // A streamed request answered at once leaves its body unread: the connection closes.
        let keepAliveIfAtOnce = keepAlive && prepared == nil
        if let route = routes.route(for: request) {
            answerBuiltin(route, keepAlive: keepAliveIfAtOnce, headOnly: headOnly, version: request.version, on: id, session)
            return nil
        }
        assert(handling == nil, "handleHttpRequest re-entered")
        handling = Handling(id: id, session: session, keepAlive: keepAlive, headOnly: headOnly, version: request.version)
        let reply = worker.handleHttpRequest(prepared ?? WorkerRequest(parsed: request), context: context)
        let deferred = handling?.deferredSequence
        handling = nil
        let response: WireResponse
        switch reply {
        case .response(let r):
            response = r.wire
        case .notHandled:
            response = .plain(404, "Not Found\n")
        case .deferred(let slot):
            if let deferred, slot.socketId == id, slot.sequence == deferred {
                // Answered later, or already (then it is no longer owed).
                return isOwed(deferred, session) ? deferred : nil
            }
            assertionFailure("HTTPReply.deferred with a slot that is not this request's: use context.deferResponse()")
            response = .plain(500, "Internal Server Error\n")
        }
        if let deferred {
            // The handler deferred, then answered at once: the answer takes the deferred place.
            complete(id, deferred, response)
        } else {
            answer(response, keepAlive: keepAliveIfAtOnce, headOnly: headOnly, version: request.version, on: id, session)
        }
        return nil
    }

    /// A whole request arrived: its request timer stops, and it is counted.
    @inline(__always) private func requestComplete(on id: SocketID, _ session: HTTPSession) {
        if session.lifecycle == .receiving {
            session.lifecycle = .idle
            shard.cancelRequestTimer(id)
        }
        metrics.requests.increment()
    }

    /// `respond` for a bare request (a built-in route's, from the request line alone): the
    /// same steps, with the route the parser found (as `routes.route(for:)` finds it).
    private func respondBuiltin(_ request: HTTPBareRequest, on id: SocketID, _ session: HTTPSession) {
        guard let keepAlive = admit(keepAlive: request.keepAlive, streamed: false, on: id, session) else { return }
        guard let route = BuiltinRoutes.Route(rawValue: request.route) else {
            preconditionFailure("a bare route that BuiltinRoutes does not have")
        }
        answerBuiltin(route, keepAlive: keepAlive, headOnly: request.headOnly, version: request.version, on: id, session)
    }

    /// What every request goes through before it is answered: the connection stops reading
    /// after one without keep-alive (unless its body is still to come: `streamed`), and the
    /// pending limit. Returns the request's keep-alive (false while draining), or nil when it
    /// was refused (answered 503, the connection closing).
    private func admit(keepAlive requested: Bool, streamed: Bool, on id: SocketID, _ session: HTTPSession) -> Bool? {
        let keepAlive = requested && !onShard { $0.isDraining }
        // After a request without keep-alive nothing more is read; its response closes.
        if !keepAlive && !streamed { session.lifecycle = .finished }
        guard session.pending.count < configuration.maxPendingResponsesPerConnection else {
            metrics.pendingLimitHits.increment()
            fail(id, session, .plain(503, "Too many pending responses on this connection\n"))
            return nil
        }
        return keepAlive
    }

    /// Answers a built-in route. `keepAlive`: the request's, false when the connection closes after it.
    private func answerBuiltin(_ route: BuiltinRoutes.Route, keepAlive: Bool, headOnly: Bool, version: HTTPVersion,
                               on id: SocketID, _ session: HTTPSession) {
        if route == .health, keepAlive, !headOnly, version == .http1_1, session.pending.isEmpty {
            // The usual health check: the shard's shared bytes, what `answer` would write.
            send(retained: responses.retainedKeepAliveHealthBytes(), status: 200, on: id, session)
        } else {
            answer(routes.response(route), keepAlive: keepAlive, headOnly: headOnly, version: version, on: id, session)
        }
    }

    /// Whether the deferred response `sequence` is still waiting for its answer.
    func isOwed(_ sequence: UInt64, _ session: HTTPSession) -> Bool {
        guard let first = session.pending.first, sequence >= first.sequence else { return false }
        let index = Int(sequence - first.sequence)
        return index < session.pending.count && session.pending[index].response == nil
    }

    /// A response that is ready: written now when nothing is owed before it, else queued
    /// behind what is owed.
    private func answer(_ response: WireResponse, keepAlive: Bool, headOnly: Bool, version: HTTPVersion,
                        on id: SocketID, _ session: HTTPSession) {
        guard session.pending.isEmpty else {
            // `flush` always writes the ready prefix: what is owed starts with a deferred one.
            assert(session.pending.first?.response == nil, "a ready response was left at the head of the queue")
            session.pending.append(PendingResponse(sequence: session.nextSequence, keepAlive: keepAlive, headOnly: headOnly,
                                                   version: version, deadlineMilliseconds: 0, response: response))
            session.nextSequence &+= 1
            return
        }
        write(response, keepAlive: keepAlive, headOnly: headOnly, version: version, on: id, session)
        if !keepAlive { closeAfterFlush(id, session) }
    }

    private func write(_ response: WireResponse, keepAlive: Bool, headOnly: Bool, version: HTTPVersion = .http1_1,
                       on id: SocketID, _ session: HTTPSession) {
        scratch.removeAll(keepingCapacity: true)
        HTTPResponseWriter.write(response, keepAlive: keepAlive, headOnly: headOnly, date: responses.date, requestVersion: version, into: &scratch)
        send(OutboundBytes(scratch), status: response.status, on: id, session)
    }

    /// Queues a serialized response (with status `status`, for the metrics).
    private func send(_ bytes: OutboundBytes, status: Int, on id: SocketID, _ session: HTTPSession) {
        metrics.countResponse(status: status)
        sent(onShard { $0.send(id, bytes) }, on: id, session)
    }

    /// `send` for a +1 reference to the bytes, which the shard takes over whatever the result.
    private func send(retained bytes: Unmanaged<OutboundBytes.Storage>, status: Int, on id: SocketID, _ session: HTTPSession) {
        metrics.countResponse(status: status)
        sent(onShard { $0.send(id, retained: bytes) }, on: id, session)
    }

    @inline(__always) private func sent(_ result: SendResult, on id: SocketID, _ session: HTTPSession) {
        // (`if case`: `==` on the other module's enum was a call through its Equatable witness.)
        if case .overLimit = result {
            // The client is not reading its responses: a pipelining client that never reads
            // would otherwise grow the queue without bound.
            metrics.responseTooLarge.increment()
            session.lifecycle = .finished
            shard.close(id, mode: .immediately)
        }
    }

    /// Answers with an error status (in its turn) and closes after it is sent.
    func fail(_ id: SocketID, _ session: HTTPSession, _ response: WireResponse) {
        session.lifecycle = .finished
        answer(response, keepAlive: false, headOnly: false, version: .http1_1, on: id, session)
    }

    /// The last response is queued: nothing more is read or owed.
    private func closeAfterFlush(_ id: SocketID, _ session: HTTPSession) {
        session.lifecycle = .finished
        // Lingering reads (and discards) what the client still sends.
        resumeIfPaused(id, session)
        abandonDeferred(id, session)
        session.pending.removeAll()
        shard.close(id, mode: .afterFlush)
    }

    // MARK: - Deferred responses

    /// Called by `ShardContext.deferResponse()` inside `handleHttpRequest`.
    func deferResponse() -> ResponseSlot {
        guard var current = handling else {
            preconditionFailure("deferResponse() is only valid inside handleHttpRequest")
        }
        if let sequence = current.deferredSequence {
            return ResponseSlot(broker: broker, socketId: current.id, sequence: sequence)
        }
        let session = current.session
        let sequence = session.nextSequence
        session.nextSequence &+= 1
        assert(session.pending.count < configuration.maxPendingResponsesPerConnection, "the pending limit is checked before the handler runs")
        session.pending.append(PendingResponse(
            sequence: sequence, keepAlive: current.keepAlive, headOnly: current.headOnly, version: current.version,
            deadlineMilliseconds: shard.nowMilliseconds + Int64(configuration.deferredResponseTimeoutMilliseconds),
            response: nil))
        session.deferredCount += 1
        waiting.insert(current.id)
        metrics.deferredResponses.increment()
        metrics.deferredPending.increment()
        current.deferredSequence = sequence
        handling = current
        return ResponseSlot(broker: broker, socketId: current.id, sequence: sequence)
    }

    /// A deferred answer arrives. Ignored when the connection is gone (a stale id: another
    /// generation of the slot), or the request was answered already (first answer wins, or
    /// the timeout's 504).
    func complete(_ id: SocketID, _ sequence: UInt64, _ response: WireResponse) {
        guard let session = table.http(id), let first = session.pending.first, sequence >= first.sequence else { return }
        let index = Int(sequence - first.sequence)
        guard index < session.pending.count, session.pending[index].response == nil else { return }
        assert(session.pending[index].sequence == sequence, "pending responses are numbered consecutively")
        session.pending[index].response = response
        answered(id, session)
        flush(id, session)
    }

    /// One deferred response of `session` got its answer.
    func answered(_ id: SocketID, _ session: HTTPSession) {
        session.deferredCount -= 1
        assert(session.deferredCount >= 0)
        metrics.deferredPending.increment(by: -1)
        if session.deferredCount == 0 { waiting.remove(id) }
    }

    /// Writes the owed responses that are ready, in order, up to the first still deferred.
    func flush(_ id: SocketID, _ session: HTTPSession) {
        while let first = session.pending.first, let response = first.response {
            session.pending.removeFirst()
            // A streamed request answered before its body was read: the rest is not read.
            let cutShort = answeredBeforeBody(first.sequence, on: id, session)
            // Draining: the last response owed closes the connection.
            let last = session.pending.isEmpty && session.lifecycle == .finished
            let keepAlive = first.keepAlive && !cutShort && !(shard.isDraining && last)
            write(response, keepAlive: keepAlive, headOnly: first.headOnly, version: first.version, on: id, session)
            if !keepAlive {
                closeAfterFlush(id, session)
                return
            }
        }
    }

    /// Deferred responses past their deadline are answered 504 (each tick).
    func expireDeferred(nowMilliseconds now: Int64) {
        guard !waiting.isEmpty else { return }
        for id in Array(waiting) {
            guard let session = table.http(id) else {
                assertionFailure("a closed connection stayed in the deferred set")
                waiting.remove(id)
                continue
            }
            var expired = false
            for index in session.pending.indices where session.pending[index].response == nil {
                // Deadlines increase along the queue: the first one in the future ends the scan.
                guard session.pending[index].deadlineMilliseconds <= now else { break }
                session.pending[index].response = Self.timeoutResponse
                metrics.deferredTimeouts.increment()
                answered(id, session)
                expired = true
            }
            if expired { flush(id, session) }
        }
    }

    private static let timeoutResponse = WireResponse.plain(
        504, "Gateway Timeout: the handler gave no response within deferred_response_timeout_ms\n")

    /// The connection is gone: what it was owed is dropped (never written to the slot's next
    /// tenant: the slot's id carries the generation).
    func closed(_ id: SocketID, _ session: HTTPSession) {
        streamClosed(id, session)
        abandonDeferred(id, session)
    }

    private func abandonDeferred(_ id: SocketID, _ session: HTTPSession) {
        guard session.deferredCount > 0 else { return }
        metrics.deferredAbandoned.increment(by: session.deferredCount)
        metrics.deferredPending.increment(by: -session.deferredCount)
        session.deferredCount = 0
        waiting.remove(id)
    }

    // MARK: - Upgrade

    /// Returns true when the connection is now a WebSocket.
    private func upgrade(_ request: ParsedRequest, on id: SocketID, _ session: HTTPSession) -> Bool {
        guard session.pending.isEmpty else {
            // The 101 and the WebSocket bytes after it cannot wait behind owed responses.
            metrics.upgradesRefused.increment()
            fail(id, session, .plain(503, "Upgrade while responses are pending\n"))
            return false
        }
        guard !shard.isDraining else {
            metrics.upgradesRefused.increment()
            fail(id, session, .plain(503, "Shutting down\n"))
            return false
        }
        switch WebSocketHandshake.negotiate(request, options: handshakeOptions, subprotocol: nil) {
        case .reject(let response):
            metrics.upgradesRefused.increment()
            fail(id, session, response)
            return false
        case .accept(var response, let deflate):
            switch worker.handleUpgrade(WorkerRequest(parsed: request), socketId: id) {
            case .reject(let refusal):
                metrics.upgradesRefused.increment()
                fail(id, session, refusal.wire)
                return false
            case .accept(let token, let subprotocol):
                if let sp = subprotocol, WebSocketHandshake.offeredSubprotocols(request).contains(sp) {
                    response.headers.add(name: "Sec-WebSocket-Protocol", value: sp)
                }
                write(response, keepAlive: true, headOnly: false, on: id, session)
                // The HTTP parser goes with the phase: an idle socket should hold nothing.
                session.lifecycle = .finished
                var parameters = deflate
                // Our compressor may use a smaller window than negotiated: the client's
                // decompressor reads it all the same.
                if let p = parameters, p.serverMaxWindowBits > configuration.webSocket.deflateServerWindowBits {
                    parameters!.serverMaxWindowBits = configuration.webSocket.deflateServerWindowBits
                }
                let connection = WebSocketConnection(settings: webSocketSettings, deflate: parameters)
                // (The codec makes its zlib streams on first use and charges them to the budget;
                // a direction without context takeover frees its stream after each message.)
                webSockets.adopt(id, WebSocketSession(consume connection, token: token, compresses: deflate != nil))
                return true
            }
        }
    }

    // MARK: - Timers and draining

    func timedOut(_ id: SocketID, _ session: HTTPSession, _ timer: ConnectionTimer) {
        let midRequest = session.parser.hasPartialRequest && session.lifecycle != .finished
        switch timer {
        case .request where session.stream != nil:
            // No body bytes for request_timeout_ms while reading (the timer stops while paused).
            metrics.countParseError(status: 408)
            abortStream(session.stream!, .timedOut, .plain(408, "Request Timeout\n"), on: id, session)
        case .request:
            if session.lifecycle == .receiving { session.lifecycle = .idle }
            guard midRequest else { return }
            metrics.countParseError(status: 408)
            fail(id, session, .plain(408, "Request Timeout\n"))
        case .idle where !session.pending.isEmpty:
            // Quiet, but owed responses: the deferred timeout bounds the wait, not the idle one.
            shard.touch(id)
        case .idle:
            if midRequest {
                metrics.countParseError(status: 408)
                fail(id, session, .plain(408, "Request Timeout\n"))
            } else {
                shard.close(id, mode: .immediately)
            }
        }
    }

    /// Idle keep-alive connections go now (as nginx does: nothing is owed to them); those
    /// mid-request get their response with `Connection: close`.
    /// Those owing responses get them, the last one with `Connection: close`.
    func drain(_ id: SocketID, _ session: HTTPSession) {
        guard session.lifecycle != .finished, !session.parser.hasPartialRequest else { return }
        session.lifecycle = .finished
        guard session.pending.isEmpty else { return }
        shard.close(id, mode: shard.queuedBytes(id) == 0 ? .immediately : .afterFlush)
    }
}
