import DequeModule
import Foundation
import Synchronization
import SwitchboardWebSocket
#if canImport(Glibc)
import Glibc
#endif

extension WebSocketURL {
    /// Parses `text`, reporting a refusal as the SDK's error.
    static func client(_ text: String) throws(BrokerClientError) -> WebSocketURL {
        do { return try WebSocketURL.parse(text) } catch { throw .invalidURL(error.description) }
    }
}

/// Runs `operation`, cancelling it after `timeout` and then throwing ``BrokerClientError/timeout``.
/// The operation must end promptly when cancelled (everything in the SDK does: its waits are
/// cancellable).
func withTimeout<T: Sendable>(_ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        // The first child to finish decides: a value, the timeout (nil), or an error.
        guard let first = try await group.next(), let value = first else { throw BrokerClientError.timeout }
        return value
    }
}

/// One client WebSocket connection (ws:// or wss://), driven by tasks: a reader task feeds the
/// socket to SwitchboardWebSocket's client-role codec and the messages into a bounded
/// ``ClientMessages`` sequence; a writer task drains a queue of encoded frames as the socket
/// becomes writable. Neither ever blocks a thread: both await readiness from ``ClientReactor``.
/// The two run as children of one driver task, so ending the connection (``abort()``, the
/// peer's close, a failure) ends both, and ``waitUntilFinished()`` returns after the socket
/// is closed.
///
/// Lock order: `codec` before the outbox (encoding and queueing happen together, so
/// permessage-deflate's shared window sees frames in the order they go out).
public final class ClientWebSocket: Sendable {
    /// Compatibility events for ``start(handler:)``.
    enum Event: Sendable {
        case text(String)
        case binary([UInt8])
        /// Always the last event, exactly once. `code` is the peer's close code (nil if none or
        /// the connection dropped); `clean` when both close frames were exchanged.
        case closed(code: UInt16?, reason: String, clean: Bool)
    }

    /// How a connection ended.
    public struct CloseReason: Sendable, Equatable {
        /// The peer's close code; nil when the connection dropped or failed without one.
        public var code: UInt16?
        public var reason: String
        /// Both close frames were exchanged.
        public var clean: Bool
    }

    /// Settings of one connection.
    public struct Options: Sendable {
        /// Bound on connect + TLS + WebSocket handshake.
        public var connectTimeout: Duration = .seconds(10)
        /// Bound on the close handshake before the socket is dropped.
        public var closeTimeout: Duration = .seconds(2)
        /// After a protocol error, how long the reader waits (at most; never longer than
        /// `closeTimeout`) for the application to handle the messages received before the
        /// error, so that its replies go out before the 1002 close. The wait ends as soon as
        /// the application is idle; one that is slow or stopped reading costs at most this
        /// much, and the connection reads nothing meanwhile. Default 250 ms.
        public var protocolErrorLinger: Duration = .milliseconds(250) {
            willSet { precondition(newValue >= .zero, "protocolErrorLinger must not be negative") }
        }
        /// Largest message (and frame) accepted; larger fails the connection with 1009.
        public var maxMessageBytes = 16 << 20
        /// Offer permessage-deflate.
        public var perMessageDeflate = false
        /// PEM file of the CA to trust for wss:// (nil: the system trust store).
        public var tlsCAFile: String?
        /// Messages buffered between the reader and the application.
        public var inboundCapacity = 1024
        /// What happens when that buffer is full.
        public var inboundOverflow = InboundOverflowPolicy.suspendReading

        public init() {}
    }

    private struct Outbox {
        var frames = Deque<[UInt8]>()
        var queuedBytes = 0
        /// The writer, waiting for a frame.
        var writer: CheckedContinuation<[UInt8]?, Never>?
        /// The writer holds a frame it has not finished writing: nobody else may write.
        var writerBusy = false
        /// No frames are accepted any more; the writer ends once the queue is empty.
        var closing = false
        /// The codec failed (protocol error) and its close frame waits until the application
        /// handled the messages that arrived before the error: its replies are still accepted.
        var lingering = false
    }

    private struct Lifecycle {
        var closeSent = false
        var finished: CloseReason?
        var waiters: [CheckedContinuation<Void, Never>] = []
        var driver: Task<Void, Never>?
        /// The compatibility handler's task (``start(handler:)``): finished includes it.
        var handler: Task<Void, Never>?
    }

    let transport: ClientTransport
    private let codec: Mutex<WebSocketConnection>
    private let outbox = Mutex(Outbox())
    private let lifecycle = Mutex(Lifecycle())
    private let inbox: MessageInbox<ClientMessage>
    /// Bytes read past the handshake response: the start of the first frames.
    private let leftover: [UInt8]
    /// What the handshake agreed on permessage-deflate (nil: not in use).
    let deflate: PerMessageDeflateParameters?
    /// The subprotocol the server selected, if any.
    let options: Options

    var fd: Int32 { transport.fd }

    /// Tests only: the reader calls it after a read whose events end in a protocol error, before
    /// it handles those events (a test suspends the reader there to hold a race window open).
    let testHookAfterFailedRead = Mutex<(@Sendable () async -> Void)?>(nil)

    /// Connections alive in this process (created and not yet deinitialized) by server port: a
    /// connection is released only after its driver, reader and writer tasks ended, so a count
    /// that returns to zero shows that no connection task leaked.
    private static let live = Mutex<[UInt16: Int]>([:])

    /// Live connections to servers on `port` (see `live`).
    static func liveCount(port: UInt16) -> Int { live.withLock { $0[port] ?? 0 } }

    /// The server's port, the key of `live`.
    private let port: UInt16

    deinit {
        ClientWebSocket.live.withLock { $0[port, default: 0] -= 1 }
    }

    private init(transport: ClientTransport, port: UInt16, leftover: [UInt8], deflate: PerMessageDeflateParameters?,
                 options: Options) {
        self.port = port
        ClientWebSocket.live.withLock { $0[port, default: 0] += 1 }
        self.transport = transport
        self.leftover = leftover
        self.deflate = deflate
        self.options = options
        inbox = MessageInbox(capacity: options.inboundCapacity, policy: options.inboundOverflow)
        codec = Mutex(WebSocketConnection(
            role: .client,
            limits: WebSocketLimits(maxFrameBytes: options.maxMessageBytes, maxMessageBytes: options.maxMessageBytes),
            deflate: deflate))
    }

    // MARK: Opening

    /// Connects to `url` (TLS for wss://), performs the opening handshake within
    /// `options.connectTimeout` and starts the connection's tasks. Cancelling the calling task
    /// abandons the attempt (its socket is closed).
    public static func connect(to url: String, options: Options = Options()) async throws -> ClientWebSocket {
        try await open(url: WebSocketURL.client(url), options: options)
    }

    /// Opens the connection; `start` false leaves the driver to the caller (``startDriver(handler:)``).
    static func open(url: WebSocketURL, options: Options, start: Bool = true) async throws -> ClientWebSocket {
        let connection = try await withTimeout(options.connectTimeout) {
            let transport = try await ClientTransport.connect(url, caFile: options.tlsCAFile)
            do {
                return try await handshake(url, transport, options)
            } catch {
                transport.release()
                throw error
            }
        }
        if start { connection.startDriver(handler: nil) }
        return connection
    }

    /// Messages buffered between the reader and the RPC client's message task
    /// (``start(handler:)``). Small: that task only dispatches (replies, requests to handler
    /// tasks), and a held-up dispatcher must stop the reading of the socket after a few
    /// messages, not after 1024 of up to `maxMessageBytes` each.
    static let protocolClientInboundCapacity = 16

    /// The compatibility form the RPC client uses.
    static func open(url: WebSocketURL, timeout: Duration, maxMessageBytes: Int,
                     perMessageDeflate: Bool = false, caFile: String? = nil) async throws -> ClientWebSocket {
        var options = Options()
        options.inboundCapacity = protocolClientInboundCapacity
        options.connectTimeout = timeout
        options.maxMessageBytes = maxMessageBytes
        options.perMessageDeflate = perMessageDeflate
        options.tlsCAFile = caFile
        return try await open(url: url, options: options)
    }

    /// The protocol clients' connect step: opens with `options`, lets `adopt` store the
    /// connection (under the client's own lock; false when the client was closed meanwhile, in
    /// which case the connection is dropped and `.disconnected` thrown), then starts reading
    /// into `handler`, which the reader calls inline (no buffer, no task hand-off between
    /// them): a handler that suspends holds the reading of the socket up, which is how the
    /// protocol clients' bounded sequences push back on the server.
    static func open(url: WebSocketURL, options: BrokerClientOptions, adopt: (ClientWebSocket) -> Bool,
                     handler: @escaping @Sendable (ClientWebSocket, Event) async -> Void) async throws -> ClientWebSocket {
        var connectionOptions = Options()
        connectionOptions.connectTimeout = options.connectTimeout
        connectionOptions.maxMessageBytes = options.maxMessageBytes
        connectionOptions.tlsCAFile = options.tlsCAFile
        connectionOptions.closeTimeout = options.closeTimeout
        let connection = try await open(url: url, options: connectionOptions, start: false)
        guard adopt(connection) else {
            connection.startDriver(handler: nil)  // the driver owns the socket: it closes it
            connection.abort()
            throw BrokerClientError.disconnected
        }
        connection.startDriver { event in await handler(connection, event) }
        return connection
    }

    private static func handshake(_ url: WebSocketURL, _ transport: ClientTransport, _ options: Options) async throws -> ClientWebSocket {
        let handshake = WebSocketClientHandshake(url: url, perMessageDeflate: options.perMessageDeflate,
                                                 headers: ["User-Agent: SwitchboardClient"])
        try await writeAll(handshake.request, to: transport)
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let progress = chunk.withUnsafeMutableBytes { transport.read(into: $0) }
            switch progress {
            case .bytes(let count): response.append(contentsOf: chunk[0..<count])
            case .wait(let interest):
                if !transport.hasBufferedInput { try await ClientReactor.shared.wait(transport.fd, for: interest) }
                continue
            case .closed: throw BrokerClientError.handshakeFailed("connection closed during the handshake")
            case .failed(let why): throw BrokerClientError.handshakeFailed(why)
            }
            switch response.withUnsafeBytes({ handshake.validate($0) }) {
            case .incomplete:
                continue
            case .rejected(let why):
                throw BrokerClientError.handshakeFailed(why)
            case .accepted(let headBytes, let deflate, _):
                return ClientWebSocket(transport: transport, port: url.port, leftover: Array(response[headBytes...]),
                                       deflate: deflate, options: options)
            }
        }
    }

    /// Writes every byte, awaiting writability as needed.
    private static func writeAll(_ bytes: [UInt8], to transport: ClientTransport) async throws {
        var offset = 0
        while offset < bytes.count {
            let progress = bytes.withUnsafeBytes { transport.write(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            switch progress {
            case .bytes(let count): offset += count
            case .wait(let interest): try await ClientReactor.shared.wait(transport.fd, for: interest)
            case .closed: throw BrokerClientError.disconnected
            case .failed(let why): throw BrokerClientError.connectionFailed(why)
            }
        }
    }

    // MARK: Receiving

    /// The messages received, in order, through a buffer of `options.inboundCapacity`.
    public var messages: ClientMessages { ClientMessages(inbox: inbox) }

    /// How the connection ended; nil while it is open.
    public var closeReason: CloseReason? { lifecycle.withLock { $0.finished } }

    /// Compatibility: calls `handler` for each message, in order, then once with `.closed`, from
    /// a task that iterates ``messages``. A handler that suspends holds the next message back
    /// (the protocol clients' bounded event buffers push back through it).
    func start(handler: @escaping @Sendable (Event) async -> Void) {
        let task = Task { [self] in
            for await message in messages {
                switch message {
                case .text(let text): await handler(.text(text))
                case .binary(let bytes): await handler(.binary(bytes))
                }
            }
            await waitForDriver()
            let reason = closeReason ?? CloseReason(code: nil, reason: "connection ended", clean: false)
            await handler(.closed(code: reason.code, reason: reason.reason, clean: reason.clean))
        }
        lifecycle.withLock { $0.handler = task }
    }

    // MARK: Sending

    /// Queues a text message for sending. Never blocks: the writer task sends it when the socket
    /// takes it. Throws ``BrokerClientError/disconnected`` once the connection is closing.
    public func sendText(_ text: String) throws(BrokerClientError) {
        var bytes = Array(text.utf8)
        try enqueue { codec in bytes.withUnsafeMutableBytes { codec.encodeMessage(UnsafeRawBufferPointer($0), opcode: .text) } }
    }

    /// Queues a binary message (see ``sendText(_:)``).
    public func sendBinary(_ bytes: [UInt8]) throws(BrokerClientError) {
        try enqueue { codec in bytes.withUnsafeBytes { codec.encodeMessage($0, opcode: .binary) } }
    }

    /// Bytes queued and not yet taken by the socket.
    public var queuedBytes: Int { outbox.withLock { $0.queuedBytes } }

    /// Encodes a frame and queues it, atomically with respect to other senders.
    ///
    /// Fast path: when nothing is queued and the writer holds no frame, the caller writes the
    /// frame itself, non-blocking, under the outbox lock (one `send`, no task switch); only
    /// what the socket does not take at once goes to the writer task.
    private func enqueue(closing: Bool = false, _ encode: (inout WebSocketConnection) -> [UInt8]) throws(BrokerClientError) {
        try codec.withLock { (codec: inout WebSocketConnection) throws(BrokerClientError) in
            if !codec.isOpen {
                guard outbox.withLock({ $0.lingering }) else { throw .disconnected }
                // The failure's close frame goes out shortly (a close from here has nothing
                // to add); replies to the messages before the error still go first.
                if closing { return }
            }
            let frame = encode(&codec)
            let handOff = try outbox.withLock { (o: inout Outbox) throws(BrokerClientError) -> (CheckedContinuation<[UInt8]?, Never>, [UInt8])? in
                guard !o.closing else { throw .disconnected }
                if closing { o.closing = true }
                var remainder = frame
                if o.frames.isEmpty && !o.writerBusy {
                    let written = writeNow(frame)
                    if written == frame.count { return nil }
                    remainder = Array(frame[written...])
                }
                if let writer = o.writer {
                    o.writer = nil
                    o.writerBusy = true
                    return (writer, remainder)
                }
                o.frames.append(remainder)
                o.queuedBytes += remainder.count
                return nil
            }
            if let (writer, remainder) = handOff { writer.resume(returning: remainder) }
        }
    }

    /// Writes what the socket takes now (no waiting); returns the bytes written. A failure
    /// writes nothing here: the writer task meets it again and the reader reports the end.
    private func writeNow(_ frame: [UInt8]) -> Int {
        var offset = 0
        while offset < frame.count {
            let progress = frame.withUnsafeBytes { transport.write(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            guard case .bytes(let count) = progress else { break }
            offset += count
        }
        return offset
    }

    /// Queues frames the codec produced on its own (pong replies, the close reply or failure
    /// close frame); after a close frame nothing more is accepted.
    private func enqueueReply(_ frame: [UInt8]) {
        let isClose = frame.first == 0x80 | WebSocketOpcode.close.rawValue
        let writer = outbox.withLock { o -> CheckedContinuation<[UInt8]?, Never>? in
            guard !o.closing else { return nil }
            if isClose { o.closing = true }
            if let writer = o.writer {
                o.writer = nil
                o.writerBusy = true
                return writer
            }
            o.frames.append(frame)
            o.queuedBytes += frame.count
            return nil
        }
        writer?.resume(returning: frame)
    }

    /// The writer's next frame: nil once closing and drained (or cancelled).
    private func nextFrame() async -> [UInt8]? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (writer: CheckedContinuation<[UInt8]?, Never>) in
                enum Step { case frame([UInt8]), end, wait }
                let step = outbox.withLock { o -> Step in
                    o.writerBusy = false  // the previous frame, if any, is fully written
                    if let frame = o.frames.popFirst() {
                        o.queuedBytes -= frame.count
                        o.writerBusy = true
                        return .frame(frame)
                    }
                    if o.closing || Task.isCancelled { return .end }
                    o.writer = writer
                    return .wait
                }
                switch step {
                case .frame(let frame): writer.resume(returning: frame)
                case .end: writer.resume(returning: nil)
                case .wait: break
                }
            }
        } onCancel: {
            let writer = outbox.withLock { o -> CheckedContinuation<[UInt8]?, Never>? in
                defer { o.writer = nil }
                return o.writer
            }
            writer?.resume(returning: nil)
        }
    }

    // MARK: Closing

    /// Starts the close handshake (if not started) and returns once the connection is fully
    /// closed: the peer answered, or `timeout` passed and the socket was dropped.
    public func close(code: UInt16 = 1000, reason: String = "", timeout: Duration? = nil) async {
        let first = lifecycle.withLock { l -> Bool in
            if l.closeSent || l.finished != nil { return false }
            l.closeSent = true
            return true
        }
        if first {
            do { try enqueue(closing: true) { $0.initiateClose(code: code, reason: reason) } } catch { abort() }
        }
        let limit = timeout ?? options.closeTimeout
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitUntilFinished() }
            // Only a sleep that ran its course drops the connection; a cancelled one (the peer
            // answered first) does nothing.
            group.addTask { if (try? await Task.sleep(for: limit)) != nil { self.abort() } }
            _ = await group.next()
            group.cancelAll()
        }
    }

    /// Drops the connection without a close handshake; its tasks end and the socket closes.
    public func abort() {
        transport.shutdown()
        inbox.finish()  // a reader waiting for room in the buffer must not hold the end up
        lifecycle.withLock { $0.driver }?.cancel()
    }

    /// Returns once the connection ended and its socket is closed (and, with ``start(handler:)``,
    /// once the handler saw `.closed`).
    public func waitUntilFinished() async {
        await waitForDriver()
        await lifecycle.withLock { $0.handler }?.value
    }

    private func waitForDriver() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let done = lifecycle.withLock { l -> Bool in
                if l.finished != nil { return true }
                l.waiters.append(waiter)
                return false
            }
            if done { waiter.resume() }
        }
    }

    var isFinished: Bool { lifecycle.withLock { $0.finished != nil } }

    // MARK: The driver

    /// Starts the driver: the reader runs in it, the writer as its child. When the reader
    /// decides the connection ended, the writer gets `closeTimeout` to send what is queued (the
    /// close reply), then everything stops and the socket closes. With a `handler` (the
    /// protocol clients), the reader hands it each message inline instead of buffering it in
    /// ``messages``, and the driver hands it `.closed` last, before ``waitUntilFinished()``
    /// returns.
    private func startDriver(handler: (@Sendable (Event) async -> Void)?) {
        let driver = Task { [self] in
            let reason = await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.writeLoop() }
                let reason = await readLoop(handler: handler)
                endOutbox()
                inbox.finish()
                group.addTask { [options] in try? await Task.sleep(for: options.closeTimeout) }
                _ = await group.next()  // the writer drained, or the flush timed out
                group.cancelAll()
                return reason
            }
            transport.release()
            await handler?(.closed(code: reason.code, reason: reason.reason, clean: reason.clean))
            let waiters = lifecycle.withLock { l -> [CheckedContinuation<Void, Never>] in
                l.finished = reason
                defer { l.waiters = [] }
                return l.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
        lifecycle.withLock { $0.driver = driver }
    }

    /// No more frames: the writer sends what is queued, then ends.
    private func endOutbox() {
        let writer = outbox.withLock { o -> CheckedContinuation<[UInt8]?, Never>? in
            o.closing = true
            defer { o.writer = nil }
            return o.writer
        }
        writer?.resume(returning: nil)
    }

    /// Reads, decodes and delivers (to `handler`, or into ``messages``) until the connection
    /// ends; returns how it ended.
    private func readLoop(handler: (@Sendable (Event) async -> Void)?) async -> CloseReason {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var events: [WebSocketEvent] = []
        var pending = leftover
        while true {
            if !pending.isEmpty {
                codec.withLock { codec in
                    pending.withUnsafeBytes { codec.receive($0) { events.append($0) } }
                    markLingeringIfFailed(codec, events)
                }
                pending.removeAll(keepingCapacity: false)
            }
            for (index, event) in events.enumerated() {
                switch event {
                case .text(let text):
                    if let handler { await handler(.text(text)) } else { await inbox.push(.text(text)) }
                case .binary(let bytes):
                    if let handler { await handler(.binary(bytes)) } else { await inbox.push(.binary(bytes)) }
                case .textBytes(let bytes):
                    // Not asked for by the client's settings; handled as text all the same.
                    let text = String(decoding: bytes, as: UTF8.self)
                    if let handler { await handler(.text(text)) } else { await inbox.push(.text(text)) }
                case .write(let frame):
                    // An inline handler already handled every message before the error. (The
                    // flag set above is cleared at `.failed`, next: once the close frame is
                    // queued, `closing` refuses every send anyway.)
                    if handler == nil, index + 1 < events.count, events[index + 1].isFailure {
                        await lingerBeforeFailing()
                    }
                    enqueueReply(frame)
                case .pong:
                    break
                case .inScratch:
                    preconditionFailure("the client's codec is given no scratch buffer")
                case .closed(let code, let reason):
                    return CloseReason(code: code == WebSocketCloseCode.noStatusReceived ? nil : code, reason: reason, clean: true)
                case .failed(_, let reason):
                    outbox.withLock { $0.lingering = false }
                    return CloseReason(code: nil, reason: "protocol error: \(reason)", clean: false)
                }
            }
            events.removeAll(keepingCapacity: true)
            if Task.isCancelled { return CloseReason(code: nil, reason: "connection aborted", clean: false) }

            let progress = chunk.withUnsafeMutableBytes { transport.read(into: $0) }
            switch progress {
            case .bytes(let count):
                codec.withLock { codec in
                    chunk.withUnsafeBytes { codec.receive(UnsafeRawBufferPointer(rebasing: $0[0..<count])) { events.append($0) } }
                    markLingeringIfFailed(codec, events)
                }
                if events.last?.isFailure == true, let hook = testHookAfterFailedRead.withLock({ $0 }) { await hook() }
            case .wait(let interest):
                if transport.hasBufferedInput { continue }
                do {
                    try await ClientReactor.shared.wait(transport.fd, for: interest)
                } catch {
                    return CloseReason(code: nil, reason: "connection aborted", clean: false)
                }
            case .closed:
                return CloseReason(code: nil, reason: "connection closed without a close frame", clean: false)
            case .failed(let why):
                return CloseReason(code: nil, reason: why, clean: false)
            }
        }
    }

    /// Called under the codec's lock right after it decoded a read into `events` (empty
    /// before the read): when the read ends in a protocol error, sets `lingering` in the same
    /// critical section in which the codec failed. ``enqueue(closing:_:)`` takes the codec's
    /// lock first and refuses a send on a failed codec unless `lingering` is set, so no sender
    /// can see the failed codec without the flag. Replies to the messages ahead of the error
    /// are accepted from then on, not only once the reader reaches the close frame: a consumer
    /// on another thread can answer before then (a clean-clone CI run lost the echo of
    /// Autobahn client case 4.1.5 that way), and an inline handler always did. Setting the flag
    /// after the lock was released left a window in which a consumer answering a message from
    /// an *earlier* read was refused (a CI run lost the echo of case 3.4, whose frames arrive
    /// one byte per read).
    private func markLingeringIfFailed(_ codec: borrowing WebSocketConnection, _ events: [WebSocketEvent]) {
        guard events.last?.isFailure == true else { return }
        assert(!codec.isOpen, "a failed read leaves the codec closed")
        outbox.withLock { $0.lingering = true }
    }

    /// Before the close frame of a protocol error (the codec's `.write` just before `.failed`):
    /// lets the application handle the messages that arrived before the error and send its
    /// replies, as the server does when its handlers run inline, so a peer sees the echo of
    /// the last good message before the 1002. Bounded by `Options.protocolErrorLinger` (and
    /// `closeTimeout`): an application that is slow or stopped reading must not hold the
    /// failure up; sends are accepted meanwhile although the codec already failed.
    private func lingerBeforeFailing() async {
        let limit = min(options.protocolErrorLinger, options.closeTimeout)
        assert(outbox.withLock { $0.lingering }, "set when the read's events were found to end in a failure")
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.inbox.waitUntilIdle() }
            group.addTask { try? await Task.sleep(for: limit) }
            _ = await group.next()
            group.cancelAll()
        }
        outbox.withLock { $0.lingering = false }
    }

    /// Sends queued frames as the socket takes them, until the outbox ends and is drained.
    private func writeLoop() async {
        while let frame = await nextFrame() {
            var offset = 0
            while offset < frame.count {
                let progress = frame.withUnsafeBytes { transport.write(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
                switch progress {
                case .bytes(let count):
                    offset += count
                case .wait(let interest):
                    do { try await ClientReactor.shared.wait(transport.fd, for: interest) } catch { return }
                case .closed, .failed:
                    // The reader sees the same end on its side and reports it.
                    transport.shutdown()
                    return
                }
            }
        }
    }
}

extension WebSocketEvent {
    /// The codec failed the connection (protocol error); nothing follows.
    fileprivate var isFailure: Bool {
        if case .failed = self { true } else { false }
    }
}

func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}
