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

/// Messages from one source, in order, as an `AsyncSequence` with a bounded buffer: the one
/// sequence type of the SDK (a connection's frames, a broadcaster's broadcasts, a broker
/// channel's payloads), so that all of them share one buffer, one overflow policy and one
/// drop counter.
///
/// The sequence ends after the messages received before its source ended (the connection
/// closed, ``BroadcasterClient/disconnect()``, the channel closed). One task iterates it: a
/// second concurrent iterator is a programming error (checked). Cancelling the iterating task
/// ends its iteration (`next()` returns nil) without closing the source; a later iterator
/// continues where it stopped.
public struct InboundMessages<Element: Sendable>: AsyncSequence, Sendable {
    let inbox: MessageInbox<Element>

    /// Messages dropped so far under ``InboundOverflowPolicy/dropNewest`` (or, for a broker
    /// channel, while nobody consumed it).
    public var droppedCount: Int { inbox.droppedCount }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let inbox: MessageInbox<Element>
        public mutating func next() async -> Element? { await inbox.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(inbox: inbox) }
}

/// The messages of one ``ClientWebSocket``, through a buffer of `Options.inboundCapacity`;
/// `ClientWebSocket/closeReason` says why it ended once `ClientWebSocket/waitUntilFinished()`
/// returned.
public typealias ClientMessages = InboundMessages<ClientMessage>

/// The broadcasts a ``BroadcasterClient`` received (``BrokerClientOptions/eventCapacity``,
/// ``BrokerClientOptions/eventOverflow``). It spans reconnects and ends at
/// ``BroadcasterClient/disconnect()``.
public typealias BroadcastMessages = InboundMessages<BroadcastMessage>

/// The payloads a ``BrokerChannel`` received (``BrokerClientOptions/maxBufferedChannelMessages``,
/// ``BrokerClientOptions/eventOverflow``). It ends when the channel closes.
public typealias ChannelMessages = InboundMessages<JSONValue>

/// The bounded buffer between a connection's reader task (the only producer) and the
/// application (the only consumer). Generic so that the protocol clients' event sequences
/// (``BroadcasterClient/broadcasts``) share its policy and its code.
///
/// Thread rules: `push` is called by one producer task (a connection's reader), `next` by one
/// consumer task; both may run on any thread of the cooperative pool, and both end their wait
/// when their task is cancelled. All state is under one mutex, and
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
    private enum PushStep { case delivered(CheckedContinuation<Element?, Never>), done, dropped, full }
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
    /// `overflow` overrides the inbox's policy for this message (a broker channel nobody
    /// consumes yet drops rather than stalling its connection). Returns false when the message
    /// was dropped: counted when it did not fit under `.dropNewest`, not counted when the
    /// calling task was cancelled while it waited for room (its connection is going away).
    @discardableResult
    func push(_ message: Element, overflow: InboundOverflowPolicy? = nil) async -> Bool {
        let policy = overflow ?? self.policy
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
                    return .dropped
                }
                return .full
            }
            switch step {
            case .delivered(let consumer):
                consumer.resume(returning: message)
                return true
            case .done:
                return true
            case .dropped:
                return false
            case .full:
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (producer: CheckedContinuation<Void, Never>) in
                        let resumeNow = state.withLock { s -> Bool in
                            // Under the lock: a cancellation handler that ran before this found
                            // no producer to resume, and the flag it follows is already set.
                            if s.ended || s.buffer.count < capacity || Task.isCancelled { return true }
                            s.producer = producer
                            return false
                        }
                        if resumeNow { producer.resume() }
                    }
                } onCancel: {
                    // Exactly one of this and the consumer's next() takes the producer.
                    take(\.producer)?.resume()
                }
                if Task.isCancelled { return false }
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
            take(\.idleWaiter)?.resume()
        }
    }

    /// Takes the reader's continuation stored in `field` (leaving nil), under the lock; the
    /// caller resumes it after the lock is released.
    private func take(_ field: WritableKeyPath<State, CheckedContinuation<Void, Never>?>) -> CheckedContinuation<Void, Never>? {
        state.withLock { s in
            defer { s[keyPath: field] = nil }
            return s[keyPath: field]
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

extension MessageInbox {
    /// The task behind a compatibility callback (`onBroadcast`, a channel's `onMessage`): it
    /// iterates the inbox and calls the handler `current()` returns for each element, one at a
    /// time, in order (read per element, so a replaced handler takes over at the next one; an
    /// element taken while it is nil is not delivered), then `ended()` once the inbox ended.
    func pump(to current: @escaping @Sendable () -> (@Sendable (Element) -> Void)?,
              ended: @escaping @Sendable () -> Void = {}) -> Task<Void, Never> {
        Task {
            for await element in InboundMessages(inbox: self) { current()?(element) }
            ended()
        }
    }
}
