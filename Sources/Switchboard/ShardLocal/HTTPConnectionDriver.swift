import SwitchboardHTTP
import SwitchboardIO
import SwitchboardWebSocket

/// Drives the shard's HTTP/1.1 connections: requests parsed in order (pipelining), the
/// built-in routes, the handler, responses in request order, 100-continue, 408, the parse
/// limits, and the WebSocket upgrade. Shard thread only.
final class HTTPConnectionDriver {
    unowned(unsafe) let shard: Shard
    let table: ConnectionTable
    let metrics: ProtocolMetrics
    let configuration: BrokerConfiguration
    let routes: BuiltinRoutes
    unowned(unsafe) let webSockets: WebSocketConnectionDriver
    /// The handler's context (to pass to `handleHttpRequest`); set with `worker`.
    unowned(unsafe) var context: ShardContext!
    var worker: WorkerHandler = DefaultWorkerHandler()
    private let webSocketLimits: WebSocketLimits
    private let handshakeOptions: WebSocketHandshakeOptions
    private var scratch: [UInt8] = []
    private var dateHeader: String? = nil
    private var dateSecond = -1
    private static let continueBytes = OutboundBytes("HTTP/1.1 100 Continue\r\n\r\n")

    init(shard: Shard, table: ConnectionTable, metrics: ProtocolMetrics, configuration: BrokerConfiguration,
         routes: BuiltinRoutes, webSockets: WebSocketConnectionDriver) {
        self.shard = shard
        self.table = table
        self.metrics = metrics
        self.configuration = configuration
        self.routes = routes
        self.webSockets = webSockets
        let ws = configuration.webSocket
        webSocketLimits = WebSocketLimits(maxFrameBytes: ws.maxFrameBytes, maxMessageBytes: ws.maxMessageBytes, maxFragments: ws.maxFragments)
        handshakeOptions = WebSocketHandshakeOptions(enablePerMessageDeflate: ws.perMessageDeflate, allowedOrigins: ws.allowedOrigins)
        refreshDate()
    }

    func makeSession() -> HTTPSession { HTTPSession(limits: configuration.http) }

    func refreshDate() {
        guard configuration.sendDateHeader else { return }
        let now = unixSeconds()
        if now != dateSecond {
            dateSecond = now
            dateHeader = httpDate(unixSeconds: now)
        }
    }

    // MARK: - Receive

    /// Parses and answers what `bytes` holds. Returns how many bytes were consumed: all of
    /// them, unless the connection upgraded to WebSocket part-way (the rest is WebSocket input).
    func receive(_ id: SocketID, _ session: HTTPSession, _ bytes: UnsafeRawBufferPointer) -> Int {
        var offset = 0
        while offset < bytes.count {
            guard session.lifecycle != .finished else { return bytes.count }
            let (consumed, result) = session.parser.parse(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            offset += consumed
            switch result {
            case .needMore:
                if session.parser.hasPartialRequest && session.lifecycle == .idle {
                    session.lifecycle = .receiving
                    shard.armRequestTimer(id)
                }
                assert(offset == bytes.count, "needMore means the parser took (and keeps) every byte")
                return bytes.count
            case .expectContinue:
                _ = shard.send(id, Self.continueBytes)
            case .request(let request):
                if session.lifecycle == .receiving {
                    session.lifecycle = .idle
                    shard.cancelRequestTimer(id)
                }
                metrics.requests.increment()
                if request.isUpgrade && request.headers.containsToken("websocket", in: "Upgrade") && configuration.webSocket.routes(request.path) {
                    if upgrade(request, on: id, session) { return offset }
                } else {
                    respond(to: request, on: id, session)
                }
            case .error(let error):
                metrics.countParseError(status: error.status)
                fail(id, session, HTTPResponseWriter.errorResponse(for: error))
                return bytes.count
            }
        }
        return bytes.count
    }

    private func respond(to request: ParsedRequest, on id: SocketID, _ session: HTTPSession) {
        let response: WireResponse
        if let builtin = routes.response(for: request) {
            response = builtin
        } else {
            switch worker.handleHttpRequest(WorkerRequest(parsed: request), context: context) {
            case .response(let r): response = r.wire
            case .notHandled: response = .plain(404, "Not Found\n")
            }
        }
        let keepAlive = request.keepAlive && !shard.isDraining
        write(response, keepAlive: keepAlive, headOnly: request.method == "HEAD", version: request.version, on: id, session)
        if !keepAlive {
            session.lifecycle = .finished
            shard.close(id, mode: .afterFlush)
        }
    }

    private func write(_ response: WireResponse, keepAlive: Bool, headOnly: Bool, version: HTTPVersion = .http1_1,
                       on id: SocketID, _ session: HTTPSession) {
        metrics.countResponse(status: response.status)
        scratch.removeAll(keepingCapacity: true)
        HTTPResponseWriter.write(response, keepAlive: keepAlive, headOnly: headOnly, date: dateHeader, requestVersion: version, into: &scratch)
        if shard.send(id, OutboundBytes(scratch)) == .overLimit {
            // The client is not reading its responses: a pipelining client that never reads
            // would otherwise grow the queue without bound.
            metrics.responseTooLarge.increment()
            session.lifecycle = .finished
            shard.close(id, mode: .immediately)
        }
    }

    /// Answers with an error status and closes after it is sent.
    private func fail(_ id: SocketID, _ session: HTTPSession, _ response: WireResponse) {
        session.lifecycle = .finished
        write(response, keepAlive: false, headOnly: false, on: id, session)
        shard.close(id, mode: .afterFlush)
    }

    // MARK: - Upgrade

    /// Returns true when the connection is now a WebSocket.
    private func upgrade(_ request: ParsedRequest, on id: SocketID, _ session: HTTPSession) -> Bool {
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
                let connection = WebSocketConnection(limits: webSocketLimits, deflate: deflate)
                webSockets.adopt(id, WebSocketSession(connection, token: token, compresses: deflate != nil))
                return true
            }
        }
    }

    // MARK: - Timers and draining

    func timedOut(_ id: SocketID, _ session: HTTPSession, _ timer: ConnectionTimer) {
        let midRequest = session.parser.hasPartialRequest && session.lifecycle != .finished
        switch timer {
        case .request:
            if session.lifecycle == .receiving { session.lifecycle = .idle }
            guard midRequest else { return }
            metrics.countParseError(status: 408)
            fail(id, session, .plain(408, "Request Timeout\n"))
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
    func drain(_ id: SocketID, _ session: HTTPSession) {
        guard session.lifecycle != .finished, !session.parser.hasPartialRequest else { return }
        session.lifecycle = .finished
        shard.close(id, mode: shard.queuedBytes(id) == 0 ? .immediately : .afterFlush)
    }
}
