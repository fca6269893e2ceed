import COpenSSL
import Foundation
import Synchronization
import SwitchboardWebSocket
#if canImport(Glibc)
import Glibc
#endif

// The SDK's WebSocket over a blocking TCP socket: ws://, or wss:// through OpenSSL with
// certificate verification always on (ClientTransport.swift). Framing, masking, the handshake
// and the URL are SwitchboardWebSocket's client role (the same codec the server runs): this
// file only moves bytes. One reader thread per connection feeds the codec and reports events;
// writes are serialized by a lock (encoding included, so permessage-deflate's shared window
// sees the frames in the order they go out).

extension WebSocketURL {
    /// Parses `text`, reporting a refusal as the SDK's error.
    static func client(_ text: String) throws(BrokerClientError) -> WebSocketURL {
        do { return try WebSocketURL.parse(text) } catch { throw .invalidURL(error.description) }
    }
}

/// One client WebSocket connection. Create with `open` (blocking), then `start` the reader.
final class ClientWebSocket: @unchecked Sendable {
    enum Event: Sendable {
        case text(String)
        case binary([UInt8])
        /// Always the last event, exactly once. `code` is the peer's close code (nil if none or
        /// the connection dropped); `clean` when both close frames were exchanged.
        case closed(code: UInt16?, reason: String, clean: Bool)
    }

    private struct FDState {
        var closed = false
        var shutDown = false
    }

    private struct State {
        var closeSent = false
        var closeDeadline: ContinuousClock.Instant?
        var finished = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    let fd: Int32
    private let transport: ClientTransport
    /// The client-role codec. Lock order: `writeLock` before `codec`; the reader takes `codec`
    /// alone while it decodes and sends the codec's replies (pongs, close) after letting go.
    private let codec: Mutex<WebSocketConnection>
    private let writeLock = Mutex(())
    private let fdState = Mutex(FDState())
    private let state = Mutex(State())
    /// Bytes read past the handshake response: the start of the first frames.
    private let leftover: [UInt8]
    /// What the handshake agreed on permessage-deflate (nil: not in use).
    let deflate: PerMessageDeflateParameters?

    private init(transport: ClientTransport, leftover: [UInt8], maxMessageBytes: Int, deflate: PerMessageDeflateParameters?) {
        self.transport = transport
        self.fd = transport.fd
        self.leftover = leftover
        self.deflate = deflate
        codec = Mutex(WebSocketConnection(
            role: .client, limits: WebSocketLimits(maxFrameBytes: maxMessageBytes, maxMessageBytes: maxMessageBytes),
            deflate: deflate))
    }

    // MARK: Opening

    /// Connects (TLS for wss://, verified against `caFile` or the system trust store), performs
    /// the opening handshake and returns the open connection. Blocking.
    static func open(url: WebSocketURL, timeout: Duration, maxMessageBytes: Int,
                     perMessageDeflate: Bool = false, caFile: String? = nil) throws(BrokerClientError) -> ClientWebSocket {
        let deadline = ContinuousClock.now + timeout
        let fd = try connectTCP(host: url.host, port: url.port, deadline: deadline)
        var transport: ClientTransport?
        do {
            let t = url.secure ? try ClientTransport.tls(fd: fd, host: url.host, caFile: caFile, deadline: deadline)
                               : ClientTransport.plain(fd: fd)
            transport = t
            let handshake = WebSocketClientHandshake(url: url, perMessageDeflate: perMessageDeflate,
                                                     headers: ["User-Agent: SwitchboardClient"])
            try t.send(handshake.request)
            var response: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                if !t.hasBufferedInput { try waitReadable(fd: fd, deadline: deadline) }
                let received = chunk.withUnsafeMutableBytes { t.receive(into: $0) }
                switch received {
                case .bytes(let count): response.append(contentsOf: chunk[0..<count])
                case .again: continue
                case .closed: throw BrokerClientError.handshakeFailed("connection closed during the handshake")
                case .failed(let why): throw BrokerClientError.handshakeFailed(why)
                }
                switch response.withUnsafeBytes({ handshake.validate($0) }) {
                case .incomplete:
                    continue
                case .rejected(let why):
                    throw BrokerClientError.handshakeFailed(why)
                case .accepted(let headBytes, let deflate, _):
                    return ClientWebSocket(transport: t, leftover: Array(response[headBytes...]),
                                           maxMessageBytes: maxMessageBytes, deflate: deflate)
                }
            }
        } catch let error as BrokerClientError {
            transport?.release()
            Glibc.close(fd)
            throw error
        } catch {
            transport?.release()
            Glibc.close(fd)
            throw .handshakeFailed("\(error)")
        }
    }

    private static func remainingMilliseconds(_ deadline: ContinuousClock.Instant) -> Int32 {
        let left = deadline - ContinuousClock.now
        if left <= .zero { return 0 }
        let ms = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
        return Int32(clamping: max(1, ms))
    }

    private static func waitReadable(fd: Int32, deadline: ContinuousClock.Instant) throws(BrokerClientError) {
        while true {
            let ms = remainingMilliseconds(deadline)
            if ms == 0 { throw .timeout }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let rc = poll(&pfd, 1, ms)
            if rc > 0 { return }
            if rc == 0 { throw .timeout }
            if errno != EINTR { throw .handshakeFailed("poll: \(errnoText(errno))") }
        }
    }

    private static func connectTCP(host: String, port: UInt16, deadline: ContinuousClock.Instant) throws(BrokerClientError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let gai = getaddrinfo(host, String(port), &hints, &list)
        guard gai == 0, let first = list else {
            throw .connectionFailed("cannot resolve \(host): \(String(cString: gai_strerror(gai)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no addresses for \(host)"
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            cursor = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 { lastError = "socket: \(errnoText(errno))"; continue }
            let flags = fcntl(fd, F_GETFL, 0)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            var rc = Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen)
            if rc != 0 && errno == EINPROGRESS {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                var prc: Int32
                repeat {
                    let ms = remainingMilliseconds(deadline)
                    prc = ms == 0 ? 0 : poll(&pfd, 1, ms)
                } while prc < 0 && errno == EINTR
                if prc == 0 {
                    Glibc.close(fd)
                    throw .timeout
                }
                var soError: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
                if soError == 0 { rc = 0 } else { errno = soError }
            }
            if rc != 0 {
                lastError = "connect to \(host):\(port): \(errnoText(errno))"
                Glibc.close(fd)
                continue
            }
            _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            // Bound every blocking write so a stalled peer cannot wedge the write lock forever.
            var tv = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }
        throw .connectionFailed(lastError)
    }

    // MARK: Writing

    func sendText(_ text: String) throws(BrokerClientError) {
        var bytes = Array(text.utf8)
        try send { codec in bytes.withUnsafeMutableBytes { codec.encodeMessage(UnsafeRawBufferPointer($0), opcode: .text) } }
    }

    /// Encodes a frame with the codec and sends it, both under the write lock (see `codec`).
    /// `encode` returns nil when there is nothing to send (a close already went out).
    private func send(_ encode: (inout WebSocketConnection) -> [UInt8]?) throws(BrokerClientError) {
        try writeLock.withLock { _ throws(BrokerClientError) in
            if fdState.withLock({ $0.closed || $0.shutDown }) { throw BrokerClientError.disconnected }
            let frame = codec.withLock { (codec: inout WebSocketConnection) -> [UInt8]? in
                codec.isOpen ? encode(&codec) : nil
            }
            guard let frame, !frame.isEmpty else { throw BrokerClientError.disconnected }
            do throws(BrokerClientError) {
                try transport.send(frame)
            } catch {
                abort()
                throw error
            }
        }
    }

    /// Sends bytes the codec produced on its own (pong replies, the close reply).
    private func sendReply(_ frame: [UInt8]) {
        writeLock.withLock { _ in
            if fdState.withLock({ $0.closed || $0.shutDown }) { return }
            do { try transport.send(frame) } catch { abort() }
        }
    }

    /// Starts the close handshake (if not started); the reader finishes it or gives up after
    /// `timeout`. Returns once the connection is fully closed.
    func close(code: UInt16 = 1000, reason: String = "", timeout: Duration = .seconds(2)) async {
        let first = state.withLock { s -> Bool in
            if s.closeSent || s.finished { return false }
            s.closeSent = true
            s.closeDeadline = ContinuousClock.now + timeout
            return true
        }
        if first {
            do { try send { $0.initiateClose(code: code, reason: reason) } } catch { abort() }
        }
        await waitUntilFinished()
    }

    /// Drops the TCP connection without a close handshake; the reader then ends.
    func abort() {
        fdState.withLock { s in
            if !s.closed && !s.shutDown {
                s.shutDown = true
                Glibc.shutdown(fd, Int32(SHUT_RDWR))
            }
        }
    }

    func waitUntilFinished() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s -> Bool in
                if s.finished { return true }
                s.waiters.append(c)
                return false
            }
            if done { c.resume() }
        }
    }

    var isFinished: Bool { state.withLock { $0.finished } }

    // MARK: Reading

    /// Starts the reader thread. `handler` runs on it, in order; `.closed` comes last.
    func start(handler: @escaping @Sendable (Event) -> Void) {
        let thread = Thread { [self] in
            let final = readLoop(handler: handler)
            writeLock.withLock { _ in
                fdState.withLock { s in
                    s.closed = true
                    transport.release()
                    Glibc.close(fd)
                }
            }
            let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                s.finished = true
                defer { s.waiters = [] }
                return s.waiters
            }
            handler(final)
            for w in waiters { w.resume() }
        }
        thread.name = "SwitchboardClient.ws-reader"
        thread.start()
    }

    private func readLoop(handler: @Sendable (Event) -> Void) -> Event {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var events: [WebSocketEvent] = []
        var pending = leftover
        while true {
            // Decode under the codec's lock, act on the events after letting go of it.
            if !pending.isEmpty {
                codec.withLock { codec in pending.withUnsafeBytes { codec.receive($0) { events.append($0) } } }
                pending.removeAll(keepingCapacity: true)
            }
            for event in events {
                switch event {
                case .text(let bytes):
                    handler(.text(String(decoding: bytes, as: UTF8.self)))  // validated by the codec
                case .binary(let bytes):
                    handler(.binary(bytes))
                case .write(let frame):
                    sendReply(frame)
                case .pong:
                    break
                case .closed(let code, let reason):
                    return .closed(code: code == WebSocketCloseCode.noStatusReceived ? nil : code, reason: reason, clean: true)
                case .failed(_, let reason):
                    return .closed(code: nil, reason: "protocol error: \(reason)", clean: false)
                }
            }
            events.removeAll(keepingCapacity: true)

            // Wait for more bytes, giving up on a close handshake the peer never completes.
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let rc = transport.hasBufferedInput ? 1 : poll(&pfd, 1, 250)
            if rc == 0 {
                let expired = state.withLock { s in s.closeDeadline.map { ContinuousClock.now >= $0 } ?? false }
                if expired { return .closed(code: nil, reason: "close handshake timed out", clean: false) }
                continue
            }
            if rc < 0 {
                if errno == EINTR { continue }
                return .closed(code: nil, reason: "poll: \(errnoText(errno))", clean: false)
            }
            switch chunk.withUnsafeMutableBytes({ transport.receive(into: $0) }) {
            case .bytes(let count): pending.append(contentsOf: chunk[0..<count])
            case .again: continue
            case .closed: return .closed(code: nil, reason: "connection closed without a close frame", clean: false)
            case .failed(let why): return .closed(code: nil, reason: why, clean: false)
            }
        }
    }
}

func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}
