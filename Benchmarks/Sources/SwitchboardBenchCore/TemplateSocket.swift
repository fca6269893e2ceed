import CLiburing
import SwitchboardWebSocket
import SwitchboardIO
#if canImport(Glibc)
import Glibc
#endif

/// One raw WebSocket client connection of a protocol template (`broker`, `rpc`): a blocking
/// connect and opening handshake (bounded by a timeout), then non-blocking text messages
/// driven by `TemplateEngine`'s epoll loop. No SDK: what a template measures is the server.
///
/// Thread rules: created, used and closed by the one thread that runs its engine.
///
/// Lifecycle: `open` (after `connect` returned) -> `closed` (the server closed it, an I/O or
/// framing error, or `close()`); a closed socket sends nothing and `closeReason` says why.
final class TemplateSocket {
    enum State: Equatable {
        case open
        case closed
    }

    let fd: Int32
    private(set) var state = State.open
    /// Why the connection closed (nil while open, or when the harness closed it).
    private(set) var closeReason: String? = nil
    /// Masked frames not yet written (the socket's send buffer was full).
    private var out = ByteBuffer()
    /// Bytes read that do not yet make a complete frame.
    private var inbox = ByteBuffer()
    /// A fragmented message being reassembled (continuation frames).
    private var fragments = ByteBuffer()
    private var fragmented = false
    /// True while `out` holds bytes the kernel refused: the engine then waits for EPOLLOUT.
    private(set) var writeBlocked = false
    /// Masking keys: batched from the CSPRNG (SwitchboardWebSocket).
    private var maskKeys = WebSocketMaskKeys()

    /// Largest message the harness accepts from a server (a protocol reply is far smaller;
    /// a bigger one is a broken server, and buffering it would hide that).
    static let maxMessageBytes = 16 << 20

    private init(fd: Int32) {
        self.fd = fd
    }

    deinit {
        if state == .open { Glibc.close(fd) }
        out.free()
        inbox.free()
        fragments.free()
    }

    /// Connects to `address`, runs the opening handshake for `url` (with `headers`), and
    /// returns the open socket, or throws a sentence saying what failed. Blocking, bounded by
    /// `timeoutNanos` per step (connect, each read, each write).
    static func connect(address: [UInt8], family: Int32, url: WebSocketURL, headers: [String],
                        timeoutNanos: Int64) throws(BenchError) -> TemplateSocket {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .setup("socket: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: Int(timeoutNanos / 1_000_000_000), tv_usec: Int(timeoutNanos % 1_000_000_000 / 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = sb_set_nodelay(fd)
        let rc = address.withUnsafeBytes { Glibc.connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw .setup("connect \(url.hostHeader): \(String(cString: strerror(e)))")
        }
        let s = TemplateSocket(fd: fd)
        let handshake = WebSocketClientHandshake(url: url, headers: headers)
        guard s.writeBlocking(handshake.request) else { throw .setup("handshake: cannot send the upgrade request") }
        var head: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else {
                throw .setup(n == 0 ? "handshake: the server closed the connection" : "handshake: no answer (\(String(cString: strerror(errno))))")
            }
            head += chunk[0..<n]
            let outcome = head.withUnsafeBytes { handshake.validate($0) }
            switch outcome {
            case .incomplete: continue
            case .rejected(let why): throw .setup("handshake rejected: \(why)")
            case .accepted(let headerBytes, _, _):
                if head.count > headerBytes { head[headerBytes...].withUnsafeBytes { s.inbox.append($0.baseAddress!, $0.count) } }
                let flags = fcntl(fd, F_GETFL)
                _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
                return s
            }
        }
    }

    private func writeBlocking(_ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    /// Queues one masked text message and writes what the kernel takes. Returns false when the
    /// socket is closed (the message is dropped: the template counts it as not sent).
    @discardableResult
    func sendText(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard state == .open else { return false }
        appendMaskedFrame(&out, opcode: WebSocketOpcode.text.rawValue, payload: bytes.baseAddress, count: bytes.count, mask: maskKeys.nextKey())
        if !writeBlocked { flush() }
        return state == .open
    }

    @discardableResult
    func sendText(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { sendText($0) }
    }

    /// Writes queued bytes until done or the kernel refuses (then `writeBlocked`).
    func flush() {
        while state == .open && !out.isEmpty {
            let n = send(fd, out.readPointer, out.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            if n > 0 {
                out.consume(n)
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                writeBlocked = true
                return
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                fail("send: \(String(cString: strerror(errno)))")
                return
            }
        }
        writeBlocked = false
    }

    /// Reads what is available and calls `message` once per complete text or binary message
    /// (the payload unmasked, valid until `message` returns). Answers pings; a close frame,
    /// EOF or a framing error closes the socket with a reason.
    func readAvailable(_ message: (UnsafeRawBufferPointer) -> Void) {
        let chunkBytes = 65_536
        while state == .open {
            let n = recv(fd, inbox.reserve(chunkBytes), chunkBytes, Int32(MSG_DONTWAIT))
            if n > 0 {
                inbox.commit(n)
                parseFrames(message)
                if n < chunkBytes { return }
            } else if n == 0 {
                fail("the server closed the connection")
                return
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                return
            } else if errno != EINTR {
                fail("recv: \(String(cString: strerror(errno)))")
                return
            }
        }
    }

    /// Delivers complete messages that are already buffered (bytes that came with the
    /// handshake response, e.g. a server's greeting: epoll will not report them again).
    func readBuffered(_ message: (UnsafeRawBufferPointer) -> Void) {
        if state == .open && !inbox.isEmpty { parseFrames(message) }
    }

    private func parseFrames(_ message: (UnsafeRawBufferPointer) -> Void) {
        while state == .open {
            guard let h = WebSocketFrameHeader.parse(inbox.readPointer, available: inbox.count) else { return }
            guard h.payloadLength <= UInt64(Self.maxMessageBytes) else { fail("frame length out of range"); return }
            if h.isMasked { fail("the server masked a frame"); return }
            let length = Int(h.payloadLength)
            guard inbox.count >= h.headerLength + length else { return }
            let payload = UnsafeRawBufferPointer(start: inbox.readPointer + h.headerLength, count: length)
            switch h.opcodeBits {
            case 1, 2:
                if fragmented { fail("a new message inside a fragmented one"); return }
                if h.fin {
                    message(payload)
                } else {
                    fragmented = true
                    fragments.clear()
                    if payload.count > 0 { fragments.append(payload.baseAddress!, payload.count) }
                }
            case 0:
                guard fragmented else { fail("a continuation frame outside a message"); return }
                guard fragments.count + payload.count <= Self.maxMessageBytes else { fail("message over 16 MiB"); return }
                if payload.count > 0 { fragments.append(payload.baseAddress!, payload.count) }
                if h.fin {
                    fragmented = false
                    message(UnsafeRawBufferPointer(start: fragments.isEmpty ? nil : fragments.readPointer, count: fragments.count))
                    fragments.clear()
                }
            case 8:
                let code = payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : 1005
                let text = payload.count > 2 ? String(decoding: payload[2...], as: UTF8.self) : ""
                fail("the server closed the WebSocket (\(code)\(text.isEmpty ? "" : " " + text))")
                return
            case 9:
                appendMaskedFrame(&out, opcode: WebSocketOpcode.pong.rawValue, payload: payload.baseAddress, count: min(payload.count, 125),
                                  mask: maskKeys.nextKey())
                if !writeBlocked { flush() }
            case 10:
                break
            default:
                fail("unknown opcode \(h.opcodeBits)")
                return
            }
            inbox.consume(h.headerLength + length)
        }
    }

    private func fail(_ reason: String) {
        guard state == .open else { return }
        state = .closed
        closeReason = reason
        Glibc.close(fd)
    }

    /// Sends a close frame (best effort) and closes the socket.
    func close() {
        guard state == .open else { return }
        var code = UInt16(1000).bigEndian
        appendMaskedFrame(&out, opcode: WebSocketOpcode.close.rawValue, payload: &code, count: 2, mask: maskKeys.nextKey())
        _ = send(fd, out.readPointer, out.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
        state = .closed
        Glibc.close(fd)
    }
}
