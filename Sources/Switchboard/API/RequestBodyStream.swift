import DequeModule
import Synchronization

/// How a handler wants a request's body (``WorkerHandler/bodyDelivery(for:context:)``).
public enum BodyDelivery: Sendable, Equatable {
    /// Whole, in ``WorkerRequest/body``, once it has arrived (up to `max_body_bytes`).
    case buffered
    /// In parts as they arrive, through ``WorkerRequest/bodyStream``: `handleHttpRequest` runs
    /// as soon as the head is in, and its answer is normally deferred until the body is read.
    case streamed
}

/// Why a streamed body ended early.
public enum RequestBodyError: Error, Sendable, Equatable {
    /// The client closed the connection (or it failed) before the body was complete.
    case clientGone
    /// No body bytes arrived for `request_timeout_ms` while the broker was reading (time
    /// spent paused for a slow consumer does not count); the client got 408.
    case timedOut
    /// A chunked body grew past `max_body_bytes`; the client got 413. (A declared
    /// `Content-Length` over the limit is refused before the handler runs.)
    case tooLarge
    /// The body's framing was invalid (e.g. a bad chunk line); the client got this status.
    case invalid(status: Int)
    /// The request was answered (its response written) before the body was read to the
    /// end; the rest of the body is not read and the connection closes after the response.
    case answeredEarly
}

/// The body of one HTTP request, delivered in parts as they arrive off the socket.
///
/// Backpressure: the bytes of a connection's streamed bodies that arrived and were not taken
/// yet are bounded by `http_body_stream_buffer_bytes`; at the limit the shard stops reading
/// that socket (TCP flow control then stops the client) and reads again once the consumer has
/// taken half of it. The limits of the buffered path still hold: more than `max_body_bytes` is
/// answered 413, and the stream ends with an error (``RequestBodyError``) when the client
/// leaves or stalls.
///
/// Thread rules: made on the shard, consumed by one task on any thread. Iterate it once
/// (``next()`` or `for try await part in stream`); two concurrent consumers trap.
public final class RequestBodyStream: AsyncSequence, Sendable {
    public typealias Element = [UInt8]

    private enum End: Equatable {
        case open
        case finished
        case failed(RequestBodyError)
    }

    private struct State {
        var parts = Deque<[UInt8]>()
        var end = End.open
        /// The consumer waiting in `next()`.
        var waiter: CheckedContinuation<[UInt8]?, any Error>? = nil
        var receivedBytes = 0
    }

    private let state = Mutex(State())
    let budget: BodyStreamBudget
    /// The declared `Content-Length`, nil for a chunked body.
    public let expectedLength: Int?

    init(budget: BodyStreamBudget, expectedLength: Int?) {
        self.budget = budget
        self.expectedLength = expectedLength
    }

    // MARK: - Consumer (any thread)

    /// The next part, nil at the end of the body; throws ``RequestBodyError`` when it ended early.
    public func next() async throws -> [UInt8]? {
        enum Step { case part([UInt8]), end, error(RequestBodyError), wait }
        let step: Step = state.withLock { s in
            if let part = s.parts.popFirst() { return .part(part) }
            switch s.end {
            case .finished: return .end
            case .failed(let error): return .error(error)
            case .open: return .wait
            }
        }
        switch step {
        case .part(let part):
            budget.release(part.count)
            return part
        case .end: return nil
        case .error(let error): throw error
        case .wait: break
        }
        let part = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[UInt8]?, any Error>) in
            // Re-checked under the lock: a part or the end may have come since the check above.
            let ready: Result<[UInt8]?, any Error>? = state.withLock { s in
                precondition(s.waiter == nil, "a RequestBodyStream has one consumer")
                if let part = s.parts.popFirst() { return .success(part) }
                switch s.end {
                case .finished: return .success(nil)
                case .failed(let error): return .failure(error)
                case .open:
                    s.waiter = continuation
                    return nil
                }
            }
            if let ready { continuation.resume(with: ready) }
        }
        if let part { budget.release(part.count) }
        return part
    }

    /// Every remaining part, concatenated; throws ``RequestBodyError`` as ``next()`` does.
    public func collect() async throws -> [UInt8] {
        var body: [UInt8] = []
        if let expectedLength { body.reserveCapacity(expectedLength) }
        while let part = try await next() { body += part }
        return body
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let stream: RequestBodyStream
        public mutating func next() async throws -> [UInt8]? { try await stream.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(stream: self) }

    /// The most bytes of this connection's streamed bodies held at once (received, not yet
    /// taken by a consumer): at most `http_body_stream_buffer_bytes` plus one read (on TLS, the
    /// plaintext of one read: up to one 16 KiB record more).
    public var peakBufferedBytes: Int { budget.peakBytes }

    // MARK: - Producer (the shard)

    /// Shard thread: a part arrived (copied out of the receive buffer). True when the
    /// connection's buffered bytes reached the limit: the caller pauses reading.
    func append(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let part = [UInt8](bytes)
        // Counted before the consumer can see it: once the part is in `parts` (or handed to the
        // waiter), a consumer on another thread may take it and release its bytes at once;
        // counted after, that release could come first and take the count below zero.
        let full = budget.add(part.count)
        let waiter: CheckedContinuation<[UInt8]?, any Error>? = state.withLock { s in
            assert(s.end == .open, "a part after the end of a streamed body")
            s.receivedBytes += part.count
            if let waiter = s.waiter {
                s.waiter = nil
                return waiter
            }
            s.parts.append(part)
            return nil
        }
        // Handed to a waiting consumer, the part is still counted until `next()` returns it
        // (it releases every part it returns).
        waiter?.resume(returning: part)
        return full
    }

    /// Shard thread: the body is complete.
    func finish() { end(.finished) }

    /// Shard thread: the body ended early. Parts still queued are dropped (a consumer sees the
    /// error next) and given back to the budget.
    func fail(_ error: RequestBodyError) { end(.failed(error)) }

    /// Shard thread: whether the body was complete or failed already.
    var isEnded: Bool { state.withLock { $0.end != .open } }

    private func end(_ end: End) {
        let (waiter, dropped): (CheckedContinuation<[UInt8]?, any Error>?, Int) = state.withLock { s in
            guard s.end == .open else { return (nil, 0) }
            s.end = end
            var dropped = 0
            if case .failed = end {
                for part in s.parts { dropped += part.count }
                s.parts.removeAll()
            }
            let waiter = s.waiter
            s.waiter = nil
            return (waiter, dropped)
        }
        if dropped > 0 { budget.release(dropped) }
        switch end {
        case .failed(let error): waiter?.resume(throwing: error)
        case .finished, .open: waiter?.resume(returning: nil)
        }
    }
}
