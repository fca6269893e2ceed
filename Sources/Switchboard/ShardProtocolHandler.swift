import SwitchboardIO

/// Per-connection protocol state, indexed by the connection's slot.
struct HTTPConnectionState {
    var parser: HTTPRequestParser
    var requestTimerArmed = false
    /// No further request will be read (error answered, `Connection: close`, or draining).
    var finished = false
    var inUse = false
    var id = SocketID(rawValue: 0)
}

/// The shard's protocol layer: turns bytes into HTTP requests, calls the worker, writes
/// responses in order (pipelining), enforces the request timeout (408) and the parse limits.
final class HTTPServerHandler: ShardEventHandler {
    let configuration: BrokerConfiguration
    let worker: WorkerHandler
    let metrics: HTTPMetrics
    let renderMetrics: @Sendable () -> String
    unowned(unsafe) var shard: Shard!
    private var states: [HTTPConnectionState] = []
    private var scratch: [UInt8] = []
    private var dateHeader: String? = nil
    private var dateSecond = -1
    private static let continueBytes = OutboundBytes(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))

    init(configuration: BrokerConfiguration, worker: WorkerHandler, metrics: HTTPMetrics, renderMetrics: @escaping @Sendable () -> String) {
        self.configuration = configuration
        self.worker = worker
        self.metrics = metrics
        self.renderMetrics = renderMetrics
        scratch.reserveCapacity(4096)
    }

    func shardStarted(_ shard: Shard) {
        self.shard = shard
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
            states.append(HTTPConnectionState(parser: HTTPRequestParser(limits: configuration.http)))
        }
        states[slot] = HTTPConnectionState(parser: HTTPRequestParser(limits: configuration.http), inUse: true, id: id)
    }

    func connectionClosed(_ id: SocketID) {
        // Drop the parser's buffers now: a closed slot must not hold memory.
        states[id.slot] = HTTPConnectionState(parser: HTTPRequestParser(limits: configuration.http))
    }

    func connectionReceived(_ id: SocketID, _ bytes: UnsafeRawBufferPointer) {
        let slot = id.slot
        var offset = 0
        while offset < bytes.count && !states[slot].finished {
            let (consumed, result) = states[slot].parser.parse(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            offset += consumed
            switch result {
            case .needMore:
                if states[slot].parser.hasPartialRequest && !states[slot].requestTimerArmed {
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
                respond(to: request, on: id)
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
        let bytes = OutboundBytes(scratch)
        if scratch.capacity > 1 << 20 { scratch = []; scratch.reserveCapacity(4096) }
        if shard.send(id, bytes) == .overLimit {
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

    func connectionTimedOut(_ id: SocketID, _ timer: ConnectionTimer) {
        let slot = id.slot
        switch timer {
        case .request:
            states[slot].requestTimerArmed = false
            guard states[slot].parser.hasPartialRequest, !states[slot].finished else { return }
            metrics.countParseError(status: 408)
            fail(id, HTTPResponse(status: 408, headers: ["Content-Type": "text/plain"], body: "Request Timeout\n"))
        case .idle:
            if states[slot].parser.hasPartialRequest && !states[slot].finished {
                metrics.countParseError(status: 408)
                fail(id, HTTPResponse(status: 408, headers: ["Content-Type": "text/plain"], body: "Request Timeout\n"))
            } else {
                shard.close(id, mode: .immediately)
            }
        }
    }

    func shardDraining(_ shard: Shard) {
        // Idle keep-alive connections go now (as nginx does: no lingering, nothing is owed to
        // them); those mid-request get their response with `Connection: close` (respond()
        // checks isDraining); those with a response still queued close after it is sent.
        for slot in 0..<states.count where states[slot].inUse && !states[slot].finished && !states[slot].parser.hasPartialRequest {
            states[slot].finished = true
            let id = states[slot].id
            shard.close(id, mode: shard.queuedBytes(id) == 0 ? .immediately : .afterFlush)
        }
    }

    func tick(_ shard: Shard, nowMilliseconds: Int64) {
        refreshDate()
    }
}
