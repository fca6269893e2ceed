import DequeModule
import Synchronization

/// One message received on a client WebSocket.
public enum ClientMessage: Sendable, Equatable {
    case text(String)
    case binary([UInt8])
}

/// What a connection does when its inbound buffer is full (the application reads slower than
/// the peer sends).
public enum InboundOverflowPolicy: Sendable, Equatable {
    /// Stop reading the socket until the application takes a message: TCP flow control then
    /// slows the peer down. Nothing is lost; memory stays at the buffer's capacity.
    case suspendReading
    /// Keep reading and drop each message that does not fit, counting it
    /// (``ClientMessages/droppedCount``). For feeds where fresh data beats complete data.
    case dropNewest
}

/// The broadcasts a ``BroadcasterClient`` received, in order, as an `AsyncSequence` with a
/// bounded buffer (``BrokerClientOptions/eventCapacity``, ``BrokerClientOptions/eventOverflow``).
/// It spans reconnects and ends at ``BroadcasterClient/disconnect()``. One task iterates it.
public struct BroadcastMessages: AsyncSequence, Sendable {
    public typealias Element = BroadcastMessage
    let inbox: MessageInbox<BroadcastMessage>

    public struct AsyncIterator: AsyncIteratorProtocol {
        let inbox: MessageInbox<BroadcastMessage>
        public mutating func next() async -> BroadcastMessage? { await inbox.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(inbox: inbox) }
}

/// The messages of one connection, in order, as an `AsyncSequence` with a bounded buffer.
///
/// The sequence ends when the connection ends (after the messages received before the end);
/// `ClientWebSocket/closeReason` says why once `ClientWebSocket/waitUntilFinished()` returned. One task iterates it: a second concurrent
/// iterator is a programming error (checked). Cancelling the iterating task ends its
/// iteration (`next()` returns nil) without closing the connection.
public struct ClientMessages: AsyncSequence, Sendable {
    public typealias Element = ClientMessage
    let inbox: MessageInbox<ClientMessage>

    /// Messages dropped so far under ``InboundOverflowPolicy/dropNewest``.
    public var droppedCount: Int { inbox.droppedCount }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let inbox: MessageInbox<ClientMessage>
        public mutating func next() async -> ClientMessage? { await inbox.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(inbox: inbox) }
}

/// The bounded buffer between a connection's reader task (the only producer) and the
/// application (the only consumer). Generic so that the protocol clients' event sequences
/// (``BroadcasterClient/broadcasts``) share its policy and its code.
///
/// Thread rules: `push` is called by the reader task only, `next` by one consumer task; both
/// may run on any thread of the cooperative pool. All state is under one mutex, and
/// continuations are resumed after it is released.
final class MessageInbox<Element: Sendable>: Sendable {
    private struct State {
        var buffer = Deque<Element>()
        var dropped = 0
        var ended = false
        /// The consumer, waiting for a message.
        var consumer: CheckedContinuation<Element?, Never>?
        /// The reader, waiting for room (suspendReading).
        var producer: CheckedContinuation<Void, Never>?
        /// The reader, waiting until the consumer handled everything (``waitUntilIdle()``).
        var idleWaiter: CheckedContinuation<Void, Never>?
    }

    let capacity: Int
    let policy: InboundOverflowPolicy

    /// What ``push(_:)`` does after looking at the state (acted on outside the lock).
    private enum PushStep { case delivered(CheckedContinuation<Element?, Never>), done, full }
    /// What ``next()`` does after looking at the state (acted on outside the lock).
    private enum NextStep { case message(Element, CheckedContinuation<Void, Never>?), end, wait(idle: CheckedContinuation<Void, Never>?) }
    private let state = Mutex(State())

    init(capacity: Int, policy: InboundOverflowPolicy) {
        precondition(capacity > 0, "the inbound buffer holds at least one message")
        self.capacity = capacity
        self.policy = policy
    }

    var droppedCount: Int { state.withLock { $0.dropped } }
    var bufferedCount: Int { state.withLock { $0.buffer.count } }
    /// ``finish()`` was called.
    var isFinished: Bool { state.withLock { $0.ended } }

    /// Hands `message` to the consumer or buffers it. With ``InboundOverflowPolicy/suspendReading``
    /// and a full buffer it suspends the reader until there is room (or the inbox ends).
    func push(_ message: Element) async {
        while true {
            let step = state.withLock { s -> PushStep in
                if s.ended { return .done }
                if let consumer = s.consumer {
                    s.consumer = nil
                    return .delivered(consumer)
                }
                if s.buffer.count < capacity {
                    s.buffer.append(message)
                    return .done
                }
                if policy == .dropNewest {
                    s.dropped += 1
                    return .done
                }
                return .full
            }
            switch step {
            case .delivered(let consumer):
                consumer.resume(returning: message)
                return
            case .done:
                return
            case .full:
                await withCheckedContinuation { (producer: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { s -> Bool in
                        if s.ended || s.buffer.count < capacity { return true }
                        s.producer = producer
                        return false
                    }
                    if resumeNow { producer.resume() }
                }
            }
        }
    }

    /// The next message, or nil once the inbox ended and is empty (or the calling task was cancelled).
    func next() async -> Element? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (consumer: CheckedContinuation<Element?, Never>) in
                let step = state.withLock { s -> NextStep in
                    if let message = s.buffer.popFirst() {
                        let producer = s.producer
                        s.producer = nil
                        return .message(message, producer)
                    }
                    if s.ended || Task.isCancelled { return .end }
                    precondition(s.consumer == nil, "two tasks iterate the same connection's messages")
                    s.consumer = consumer
                    // Asking again with an empty buffer: the consumer is done with every
                    // message it took (it handles them one at a time).
                    defer { s.idleWaiter = nil }
                    return .wait(idle: s.idleWaiter)
                }
                switch step {
                case .message(let message, let producer):
                    producer?.resume()
                    consumer.resume(returning: message)
                case .end:
                    consumer.resume(returning: nil)
                case .wait(let idle):
                    idle?.resume()
                }
            }
        } onCancel: {
            let consumer = state.withLock { s -> CheckedContinuation<Element?, Never>? in
                defer { s.consumer = nil }
                return s.consumer
            }
            consumer?.resume(returning: nil)
        }
    }

    /// Returns once the consumer took every buffered message and came back for more (so it
    /// finished handling them, replies included), or the inbox ended, or the calling task was
    /// cancelled. The reader uses it before a protocol-error close: the replies to the
    /// messages that arrived before the error go out first (Autobahn's client cases 3.2-5.15
    /// check that order). Called by the reader task only; the caller bounds the wait.
    func waitUntilIdle() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let idle = state.withLock { s -> Bool in
                    if s.ended || (s.buffer.isEmpty && s.consumer != nil) || Task.isCancelled { return true }
                    precondition(s.idleWaiter == nil, "only the reader waits for the consumer")
                    s.idleWaiter = waiter
                    return false
                }
                if idle { waiter.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                defer { s.idleWaiter = nil }
                return s.idleWaiter
            }
            waiter?.resume()
        }
    }

    /// No more messages will come: the consumer gets what is buffered, then nil; a suspended
    /// reader is released.
    func finish() {
        let (consumer, producer, idle) = state.withLock { s in
            s.ended = true
            defer { s.producer = nil; s.idleWaiter = nil }
            // A waiting consumer implies an empty buffer.
            let consumer = s.consumer
            s.consumer = nil
            return (consumer, s.producer, s.idleWaiter)
        }
        consumer?.resume(returning: nil)
        producer?.resume()
        idle?.resume()
    }
}
