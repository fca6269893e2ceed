import SwitchboardHTTP
import SwitchboardIO

/// Streamed request bodies (``BodyDelivery/streamed``): the head goes to the handler at once,
/// the body to its ``RequestBodyStream`` part by part, and the socket stops being read while the
/// connection's untaken bytes are at `http_body_stream_buffer_bytes`.
///
/// Lifecycle of one streamed body: `startStream` (the `.head`) → `bodyPart`s → `bodyEnd`; or
/// `abortStream` (413, bad framing, 408) / `answeredBeforeBody` (its response left first) /
/// `streamClosed` (the client left), each ending the stream with its ``RequestBodyError``.
/// While a body streams, the request timer measures the time since the last part (it stops
/// while paused: then the consumer is the slow one, and the deferred-response timeout bounds it).
///
/// The four entry points from `receive` are out of line (`@inline(never)`): inlined there, they
/// cost every read their continuation types' metadata lookups and kept the built-in route's
/// answer out of line (issue 16, HTTP row: ~80 instructions per `GET /health`).
extension HTTPConnectionDriver {
    /// At a `.head`: asks the handler, and on `.streamed` runs it with the stream. False keeps
    /// the buffered path. When the handler answered at once, the stream has ended already
    /// (`answeredEarly`) and the connection closes after the answer: `session.stream` is nil.
    @inline(never)
    func startStream(_ head: ParsedRequest, on id: SocketID, _ session: HTTPSession) -> Bool {
        // Upgrades and requests over the pending limit go the buffered way (refused as before).
        if head.isUpgrade && head.headers.containsToken("websocket", in: "Upgrade") && configuration.webSocket.routes(head.path) { return false }
        guard session.pending.count < configuration.maxPendingResponsesPerConnection else { return false }
        var request = WorkerRequest(parsed: head)
        guard worker.bodyDelivery(for: request, context: context) == .streamed else { return false }
        session.parser.streamBody()
        let budget = session.streamBudget ?? makeBudget(for: id, session)
        let stream = RequestBodyStream(budget: budget, expectedLength: head.headers["Content-Length"].flatMap { Int($0) })
        request.bodyStream = stream
        metrics.requests.increment()
        metrics.bodyStreams.increment()
        if session.lifecycle == .idle { session.lifecycle = .receiving }
        shard.armRequestTimer(id)
        let sequence = respond(to: head, prepared: request, on: id, session)
        guard let sequence, session.lifecycle != .finished else {
            // Answered at once (or refused): the body is not read; the connection closes
            // after what it owes.
            endEarly(stream, .answeredEarly)
            closeAfterOwed(id, session)
            return true
        }
        session.stream = ActiveBodyStream(stream: stream, sequence: sequence, keepAlive: head.keepAlive)
        return true
    }

    private func makeBudget(for id: SocketID, _ session: HTTPSession) -> BodyStreamBudget {
        let broker: Broker = self.broker
        let budget = BodyStreamBudget(limitBytes: configuration.httpBodyStreamBufferBytes) { [weak broker] in
            broker?.resumeBodyStream(id)
        }
        session.streamBudget = budget
        streamingConnections.insert(id)
        return budget
    }

    @inline(never)
    func bodyPart(_ bytes: UnsafeRawBufferPointer, on id: SocketID, _ session: HTTPSession) {
        guard let active = session.stream else {
            assertionFailure("a body part with no stream")
            return
        }
        let full = active.stream.append(bytes)
        if session.readPaused { return }
        if full {
            pauseForConsumer(id, session)
        } else {
            shard.armRequestTimer(id)  // progress: the timeout counts from the last part
        }
    }

    @inline(never)
    func bodyEnd(on id: SocketID, _ session: HTTPSession) {
        guard let active = session.stream else {
            assertionFailure("a body end with no stream")
            return
        }
        session.stream = nil
        active.stream.finish()
        if session.lifecycle == .receiving { session.lifecycle = .idle }
        shard.cancelRequestTimer(id)
        // Reading continues for the next request: the paused state belongs to the budget,
        // which the next stream shares (a consumer still holding bytes keeps it paused).
        if !active.keepAlive || shard.isDraining { closeAfterOwed(id, session) }
    }

    /// The streamed request fails with `response` (in its turn, in place of the handler's
    /// answer if that is still owed), the stream with `reason`; the connection closes after it.
    @inline(never)
    func abortStream(_ active: ActiveBodyStream, _ reason: RequestBodyError, _ response: WireResponse,
                     on id: SocketID, _ session: HTTPSession) {
        session.stream = nil
        endEarly(active.stream, reason)
        shard.cancelRequestTimer(id)
        if let sequence = active.sequence, isOwed(sequence, session) {
            let index = Int(sequence - session.pending.first!.sequence)
            session.pending[index].response = response
            answered(id, session)
        }
        closeAfterOwed(id, session)
    }

    /// Called by `flush` as it writes response `sequence`: true when that is a streamed
    /// request's whose body is not read yet (the stream ends, the connection closes after it).
    func answeredBeforeBody(_ sequence: UInt64, on id: SocketID, _ session: HTTPSession) -> Bool {
        guard let active = session.stream, active.sequence == sequence else { return false }
        session.stream = nil
        endEarly(active.stream, .answeredEarly)
        session.lifecycle = .finished
        shard.cancelRequestTimer(id)
        return true
    }

    /// The connection is gone.
    func streamClosed(_ id: SocketID, _ session: HTTPSession) {
        if let active = session.stream {
            session.stream = nil
            endEarly(active.stream, .clientGone)
        }
        session.readPaused = false
        streamingConnections.remove(id)
    }

    private func endEarly(_ stream: RequestBodyStream, _ reason: RequestBodyError) {
        metrics.bodyStreamErrors.increment()
        stream.fail(reason)
    }

    /// Nothing more is read: the connection closes after the responses it owes (at once when
    /// it owes none, the last one written already).
    private func closeAfterOwed(_ id: SocketID, _ session: HTTPSession) {
        session.lifecycle = .finished
        if let last = session.pending.indices.last {
            session.pending[last].keepAlive = false
            flush(id, session)
        } else {
            resumeIfPaused(id, session)
            shard.close(id, mode: .afterFlush)
        }
    }

    // MARK: - Backpressure

    private func pauseForConsumer(_ id: SocketID, _ session: HTTPSession) {
        session.readPaused = true
        metrics.bodyStreamPauses.increment()
        shard.pauseReading(id)
        shard.cancelRequestTimer(id)
        // The consumer may have drained below the mark without seeing the flag.
        if session.streamBudget?.markPaused() == false { resume(id, session) }
    }

    /// Posted by the budget when a consumer drained the buffer to its low-water mark. The post
    /// may be stale: the tick resumed the connection meanwhile, it read and paused again at the
    /// limit. Then the buffer is above the mark and this pause stays (its own drain will post).
    func resumeStream(_ id: SocketID) {
        guard let session = table.http(id), session.readPaused, let budget = session.streamBudget,
              budget.bufferedBytes <= budget.lowWaterBytes else { return }
        resume(id, session)
    }

    func resumeIfPaused(_ id: SocketID, _ session: HTTPSession) {
        if session.readPaused { resume(id, session) }
    }

    private func resume(_ id: SocketID, _ session: HTTPSession) {
        session.readPaused = false
        session.streamBudget?.clearPaused()
        shard.resumeReading(id)
        if session.stream != nil { shard.armRequestTimer(id) }
    }

    /// Each tick: the buffered-bytes gauge, and paused connections whose consumer drained the
    /// buffer but whose resume post was refused (inbox full).
    func tickStreams() {
        guard !streamingConnections.isEmpty else {
            metrics.bodyStreamBufferedBytes.set(0)
            return
        }
        var buffered = 0
        for id in streamingConnections {
            guard let session = table.http(id), let budget = session.streamBudget else { continue }
            buffered += budget.bufferedBytes
            if session.readPaused && budget.bufferedBytes <= budget.lowWaterBytes { resume(id, session) }
        }
        metrics.bodyStreamBufferedBytes.set(buffered)
    }

    /// `100 Continue` may go out: no response is owed before the request being received.
    func owesNothingBeforeCurrent(_ session: HTTPSession) -> Bool {
        if session.pending.isEmpty { return true }
        guard let sequence = session.stream?.sequence else { return false }
        return session.pending.count == 1 && session.pending.first?.sequence == sequence
    }
}
