import COpenSSL
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// A minimal RFC 6455 client over a blocking TCP socket: ws://, or wss:// through OpenSSL with
// certificate verification always on (ClientTransport.swift); no extensions, no subprotocols. One reader thread per connection parses frames and reports events; writes
// are serialized by a lock. Every frame the client sends is masked with a fresh random key.

/// A parsed `ws://` or `wss://host[:port][/path][?query]` URL.
struct WebSocketURL: Equatable, Sendable {
    var host: String
    var port: UInt16
    /// wss://: TLS, default port 443.
    var secure: Bool = false
    /// Request target: path plus query, at least "/".
    var resource: String

    /// The Host header value (brackets kept for IPv6, port omitted when 80).
    var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == (secure ? 443 : 80) ? h : "\(h):\(port)"
    }

    static func parse(_ string: String) throws(BrokerClientError) -> WebSocketURL {
        let lower = string.lowercased()
        let secure = lower.hasPrefix("wss://")
        guard secure || lower.hasPrefix("ws://") else {
            throw .invalidURL("expected a ws:// or wss:// URL: \(string)")
        }
        let rest = string.dropFirst(secure ? 6 : 5)
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[rest.startIndex..<authorityEnd]
        var resource = String(rest[authorityEnd...])
        if let hash = resource.firstIndex(of: "#") { resource = String(resource[..<hash]) }
        if resource.isEmpty || resource.first == "?" { resource = "/" + resource }
        if authority.contains("@") { throw .invalidURL("user info is not supported: \(string)") }

        var host: Substring
        var portText: Substring?
        if authority.first == "[" {
            guard let close = authority.firstIndex(of: "]") else { throw .invalidURL("bad IPv6 literal: \(string)") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { throw .invalidURL("bad authority: \(string)") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw .invalidURL("missing host: \(string)") }
        var port: UInt16 = secure ? 443 : 80
        if let portText {
            guard let p = UInt16(portText), p > 0 else { throw .invalidURL("bad port: \(string)") }
            port = p
        }
        return WebSocketURL(host: String(host), port: port, secure: secure, resource: resource)
    }
}

enum WebSocketHandshake {
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// 16 random bytes, base64: a fresh Sec-WebSocket-Key.
    static func makeKey() -> String {
        Data(randomBytes(16)).base64EncodedString()
    }

    /// The Sec-WebSocket-Accept a server must answer for `key`.
    static func acceptValue(for key: String) -> String {
        let input = Array((key + guid).utf8)
        var out = [CChar](repeating: 0, count: 32)
        let n = input.withUnsafeBufferPointer { sb_sha1_base64($0.baseAddress, $0.count, &out) }
        precondition(n == 28, "sb_sha1_base64 failed")
        return String(decoding: out.prefix(28).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func request(url: WebSocketURL, key: String) -> String {
        "GET \(url.resource) HTTP/1.1\r\n" +
            "Host: \(url.hostHeader)\r\n" +
            "Upgrade: websocket\r\n" +
            "Connection: Upgrade\r\n" +
            "Sec-WebSocket-Key: \(key)\r\n" +
            "Sec-WebSocket-Version: 13\r\n" +
            "User-Agent: SwitchboardClient\r\n" +
            "\r\n"
    }

    /// Checks a server's response head (status line and headers, without the final blank line).
    static func validate(responseHead: String, key: String) throws(BrokerClientError) {
        var lines = responseHead.components(separatedBy: "\r\n")
        guard !lines.isEmpty else { throw .handshakeFailed("empty response") }
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1.") else {
            throw .handshakeFailed("bad status line: \(statusLine)")
        }
        guard parts[1] == "101" else { throw .handshakeFailed("server answered \(statusLine)") }
        var headers: [String: [String]] = [:]
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { throw .handshakeFailed("bad header line: \(line)") }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name, default: []].append(value)
        }
        func tokens(_ name: String) -> [String] {
            (headers[name] ?? []).flatMap { $0.split(separator: ",") }
                .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        }
        guard tokens("upgrade").contains("websocket") else { throw .handshakeFailed("missing Upgrade: websocket") }
        guard tokens("connection").contains("upgrade") else { throw .handshakeFailed("missing Connection: Upgrade") }
        guard let accept = headers["sec-websocket-accept"], accept.count == 1 else {
            throw .handshakeFailed("missing Sec-WebSocket-Accept")
        }
        let expected = acceptValue(for: key)
        guard accept[0] == expected else {
            throw .handshakeFailed("Sec-WebSocket-Accept mismatch: got \(accept[0]), expected \(expected)")
        }
        if let ext = headers["sec-websocket-extensions"], !ext.joined().isEmpty {
            throw .handshakeFailed("server selected an extension that was not offered: \(ext.joined(separator: ", "))")
        }
        if let proto = headers["sec-websocket-protocol"], !proto.joined().isEmpty {
            throw .handshakeFailed("server selected a subprotocol that was not offered: \(proto.joined(separator: ", "))")
        }
    }
}

func randomBytes(_ count: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    if sb_random_bytes(&bytes, count) != 0 {
        var rng = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
    }
    return bytes
}

enum WebSocketOpcode: UInt8, Sendable {
    case continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10
}

struct WebSocketFrame: Equatable, Sendable {
    var fin: Bool
    var opcode: WebSocketOpcode
    var payload: [UInt8]
}

/// A violation by the peer; `closeCode` is what we send back before dropping the connection.
struct WebSocketProtocolViolation: Error, Equatable {
    var message: String
    var closeCode: UInt16
}

enum WebSocketFrameEncoder {
    /// A client frame: FIN set, masked with `mask` (4 bytes).
    static func encode(opcode: WebSocketOpcode, payload: [UInt8], mask: [UInt8], fin: Bool = true) -> [UInt8] {
        precondition(mask.count == 4)
        var out: [UInt8] = []
        out.reserveCapacity(payload.count + 14)
        out.append((fin ? 0x80 : 0) | opcode.rawValue)
        if payload.count < 126 {
            out.append(0x80 | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            out.append(0x80 | 126)
            out.append(UInt8(payload.count >> 8))
            out.append(UInt8(payload.count & 0xFF))
        } else {
            out.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((UInt64(payload.count) >> UInt64(shift)) & 0xFF)) }
        }
        out.append(contentsOf: mask)
        let base = out.count
        out.append(contentsOf: payload)
        out.withUnsafeMutableBufferPointer { buf in
            for i in 0..<payload.count { buf[base + i] ^= mask[i & 3] }
        }
        return out
    }
}

/// Incremental parser for server frames (which are never masked).
struct WebSocketFrameParser {
    private(set) var buffer: [UInt8] = []
    private var start = 0
    /// Largest frame payload accepted.
    let maxFrameBytes: Int

    init(maxFrameBytes: Int) { self.maxFrameBytes = maxFrameBytes }

    var bufferedCount: Int { buffer.count - start }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
    }

    mutating func append(_ bytes: [UInt8]) { buffer.append(contentsOf: bytes) }

    mutating func next() throws(WebSocketProtocolViolation) -> WebSocketFrame? {
        let available = buffer.count - start
        guard available >= 2 else { return nil }
        let b0 = buffer[start], b1 = buffer[start + 1]
        if b0 & 0x70 != 0 { throw WebSocketProtocolViolation(message: "reserved bits set without an extension", closeCode: 1002) }
        guard let opcode = WebSocketOpcode(rawValue: b0 & 0x0F) else {
            throw WebSocketProtocolViolation(message: "reserved opcode \(b0 & 0x0F)", closeCode: 1002)
        }
        let fin = b0 & 0x80 != 0
        if b1 & 0x80 != 0 { throw WebSocketProtocolViolation(message: "server frame is masked", closeCode: 1002) }
        var header = 2
        var length = UInt64(b1 & 0x7F)
        if length == 126 {
            guard available >= 4 else { return nil }
            length = UInt64(buffer[start + 2]) << 8 | UInt64(buffer[start + 3])
            header = 4
        } else if length == 127 {
            guard available >= 10 else { return nil }
            length = 0
            for i in 2..<10 { length = length << 8 | UInt64(buffer[start + i]) }
            if length >> 63 != 0 { throw WebSocketProtocolViolation(message: "64-bit length has its top bit set", closeCode: 1002) }
            header = 10
        }
        if opcode.rawValue >= 8 {
            if !fin { throw WebSocketProtocolViolation(message: "fragmented control frame", closeCode: 1002) }
            if length > 125 { throw WebSocketProtocolViolation(message: "control frame longer than 125 bytes", closeCode: 1002) }
        }
        if length > UInt64(maxFrameBytes) {
            throw WebSocketProtocolViolation(message: "frame of \(length) bytes exceeds the limit of \(maxFrameBytes)", closeCode: 1009)
        }
        let total = header + Int(length)
        guard available >= total else { return nil }
        let payload = Array(buffer[(start + header)..<(start + total)])
        start += total
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 20)
            start = 0
        } else if start >= 65_536 && start * 2 >= buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
        return WebSocketFrame(fin: fin, opcode: opcode, payload: payload)
    }
}

/// One client WebSocket connection. Create with `open` (blocking), then `start` the reader.
final class WebSocketConnection: @unchecked Sendable {
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
    let maxMessageBytes: Int
    private let writeLock = Mutex(())
    private let fdState = Mutex(FDState())
    private let state = Mutex(State())
    /// Bytes read past the handshake response: the start of the first frames.
    private let leftover: [UInt8]
    /// Every frame's mask, for tests (only when `recordMasks`).
    let recordMasks: Bool
    private let masks = Mutex<[[UInt8]]>([])

    private init(transport: ClientTransport, leftover: [UInt8], maxMessageBytes: Int, recordMasks: Bool) {
        self.transport = transport
        self.fd = transport.fd
        self.leftover = leftover
        self.maxMessageBytes = maxMessageBytes
        self.recordMasks = recordMasks
    }

    var sentMasks: [[UInt8]] { masks.withLock { $0 } }

    // MARK: Opening

    /// Connects (TLS for wss://, verified against `caFile` or the system trust store), performs
    /// the opening handshake and returns the open connection. Blocking.
    static func open(url: WebSocketURL, timeout: Duration, maxMessageBytes: Int,
                     recordMasks: Bool = false, caFile: String? = nil) throws(BrokerClientError) -> WebSocketConnection {
        let deadline = ContinuousClock.now + timeout
        let fd = try connectTCP(host: url.host, port: url.port, deadline: deadline)
        var transport: ClientTransport?
        do {
            let t = url.secure ? try ClientTransport.tls(fd: fd, host: url.host, caFile: caFile, deadline: deadline)
                               : ClientTransport.plain(fd: fd)
            transport = t
            let key = WebSocketHandshake.makeKey()
            try t.send(Array(WebSocketHandshake.request(url: url, key: key).utf8))
            var response: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            var headEnd: Int?
            while headEnd == nil {
                if !t.hasBufferedInput { try waitReadable(fd: fd, deadline: deadline) }
                let received = chunk.withUnsafeMutableBytes { t.receive(into: $0) }
                let n: Int
                switch received {
                case .bytes(let count): n = count
                case .again: continue
                case .closed: throw BrokerClientError.handshakeFailed("connection closed during the handshake")
                case .failed(let why): throw BrokerClientError.handshakeFailed(why)
                }
                let searchFrom = max(0, response.count - 3)
                response.append(contentsOf: chunk[0..<n])
                if let r = findHeadEnd(response, from: searchFrom) { headEnd = r }
                else if response.count > 16_384 { throw BrokerClientError.handshakeFailed("response head too large") }
            }
            let head = String(decoding: response[0..<headEnd!], as: UTF8.self)
            try WebSocketHandshake.validate(responseHead: head, key: key)
            return WebSocketConnection(transport: t, leftover: Array(response[(headEnd! + 4)...]),
                                       maxMessageBytes: maxMessageBytes, recordMasks: recordMasks)
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

    private static func findHeadEnd(_ bytes: [UInt8], from: Int) -> Int? {
        guard bytes.count >= 4 else { return nil }
        var i = from
        while i + 3 < bytes.count {
            if bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 { return i }
            i += 1
        }
        return nil
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
        try sendFrame(.text, Array(text.utf8))
    }

    func sendFrame(_ opcode: WebSocketOpcode, _ payload: [UInt8]) throws(BrokerClientError) {
        let mask = randomBytes(4)
        if recordMasks { masks.withLock { $0.append(mask) } }
        let frame = WebSocketFrameEncoder.encode(opcode: opcode, payload: payload, mask: mask)
        try writeLock.withLock { _ throws(BrokerClientError) in
            if fdState.withLock({ $0.closed || $0.shutDown }) { throw BrokerClientError.disconnected }
            if opcode != .close && opcode != .pong && state.withLock({ $0.closeSent }) { throw BrokerClientError.disconnected }
            do throws(BrokerClientError) {
                try transport.send(frame)
            } catch {
                abort()
                throw error
            }
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
            var payload = [UInt8(code >> 8), UInt8(code & 0xFF)]
            payload += Array(reason.utf8.prefix(123))
            do { try sendFrame(.close, payload) } catch { abort() }
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
        var parser = WebSocketFrameParser(maxFrameBytes: maxMessageBytes)
        parser.append(leftover)
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var messageOpcode: WebSocketOpcode?
        var message: [UInt8] = []

        func violation(_ v: WebSocketProtocolViolation) -> Event {
            let alreadySent = state.withLock { s -> Bool in
                defer { s.closeSent = true }
                return s.closeSent
            }
            if !alreadySent {
                var payload = [UInt8(v.closeCode >> 8), UInt8(v.closeCode & 0xFF)]
                payload += Array(v.message.utf8.prefix(123))
                try? sendFrame(.close, payload)
            }
            return .closed(code: nil, reason: "protocol error: \(v.message)", clean: false)
        }

        while true {
            // Drain every complete frame in the buffer.
            do {
                while let frame = try parser.next() {
                    switch frame.opcode {
                    case .ping:
                        try? sendFrame(.pong, frame.payload)
                    case .pong:
                        break
                    case .close:
                        var code: UInt16?
                        var reason = ""
                        if frame.payload.count == 1 {
                            return violation(WebSocketProtocolViolation(message: "close payload of 1 byte", closeCode: 1002))
                        }
                        if frame.payload.count >= 2 {
                            code = UInt16(frame.payload[0]) << 8 | UInt16(frame.payload[1])
                            reason = String(decoding: frame.payload[2...], as: UTF8.self)
                        }
                        let alreadySent = state.withLock { s -> Bool in
                            defer { s.closeSent = true }
                            return s.closeSent
                        }
                        if !alreadySent {
                            let echo: [UInt8] = code.map { [UInt8($0 >> 8), UInt8($0 & 0xFF)] } ?? []
                            try? sendFrame(.close, echo)
                        }
                        return .closed(code: code, reason: reason, clean: true)
                    case .text, .binary:
                        if messageOpcode != nil {
                            throw WebSocketProtocolViolation(message: "new data frame inside a fragmented message", closeCode: 1002)
                        }
                        if frame.fin {
                            if let event = try deliverable(frame.opcode, frame.payload) { handler(event) }
                        } else {
                            messageOpcode = frame.opcode
                            message = frame.payload
                        }
                    case .continuation:
                        guard let opcode = messageOpcode else {
                            throw WebSocketProtocolViolation(message: "continuation frame without a message", closeCode: 1002)
                        }
                        if message.count + frame.payload.count > maxMessageBytes {
                            throw WebSocketProtocolViolation(message: "message exceeds the limit of \(maxMessageBytes) bytes", closeCode: 1009)
                        }
                        message += frame.payload
                        if frame.fin {
                            let payload = message
                            message = []
                            messageOpcode = nil
                            if let event = try deliverable(opcode, payload) { handler(event) }
                        }
                    }
                }
            } catch {
                return violation(error as? WebSocketProtocolViolation ?? WebSocketProtocolViolation(message: "\(error)", closeCode: 1002))
            }

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
            let n: Int
            switch chunk.withUnsafeMutableBytes({ transport.receive(into: $0) }) {
            case .bytes(let count): n = count
            case .again: continue
            case .closed: return .closed(code: nil, reason: "connection closed without a close frame", clean: false)
            case .failed(let why): return .closed(code: nil, reason: why, clean: false)
            }
            chunk.withUnsafeBytes { parser.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }

    private func deliverable(_ opcode: WebSocketOpcode, _ payload: [UInt8]) throws(WebSocketProtocolViolation) -> Event? {
        if opcode == .binary { return .binary(payload) }
        guard let text = String(validating: payload, as: UTF8.self) else {
            throw WebSocketProtocolViolation(message: "text message is not valid UTF-8", closeCode: 1007)
        }
        return .text(text)
    }
}

func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}
