import CLiburing
import COpenSSL
import Synchronization
import SwitchboardWebSocket
#if canImport(Glibc)
import Glibc
#endif

/// The byte stream under a client WebSocket: a non-blocking TCP socket (ws://) or TLS over it
/// (wss://, OpenSSL with certificate verification always on). Nothing here blocks a thread:
/// every operation either makes progress at once or says which readiness to await
/// (``ClientReactor``).
///
/// Thread rules: one reader task calls ``read(into:)``, one writer task calls ``write(_:)``,
/// possibly at the same time. An OpenSSL connection must not be used by two threads at once,
/// so with TLS both go through `tlsLock`; the calls never wait for the network, so the lock is
/// held for one record's work at most.
final class ClientTransport: @unchecked Sendable {
    let fd: Int32
    private let tls: OpaquePointer?
    private let tlsLock = Mutex(())
    private let released = Atomic<Bool>(false)

    /// What a read or write did.
    enum Progress {
        case bytes(Int)
        /// Nothing now: await this readiness, then try again.
        case wait(ClientReactor.Interest)
        case closed
        case failed(String)
    }

    private init(fd: Int32, tls: OpaquePointer?) {
        self.fd = fd
        self.tls = tls
    }

    /// Connects to `url` (resolving its host, trying each address), then runs the TLS handshake
    /// for wss:// against `caFile` (nil: the system trust store) and the URL's host. Bound the
    /// time with the caller's timeout: a cancelled task stops here and closes the socket.
    static func connect(_ url: WebSocketURL, caFile: String?) async throws -> ClientTransport {
        let fd = try await connectTCP(host: url.host, port: url.port)
        guard url.secure else { return ClientTransport(fd: fd, tls: nil) }
        var message = [CChar](repeating: 0, count: 512)
        func text() -> String { String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        guard let client = sb_tls_client_new(fd, url.host, caFile, &message, message.count) else {
            closeSocket(fd)
            throw BrokerClientError.connectionFailed(text())
        }
        let transport = ClientTransport(fd: fd, tls: client)
        do {
            while true {
                switch sb_tls_client_handshake(client, &message, message.count) {
                case 1: return transport
                case 0: try await ClientReactor.shared.wait(fd, for: .readable)
                case 2: try await ClientReactor.shared.wait(fd, for: .writable)
                default: throw BrokerClientError.connectionFailed(text())
                }
            }
        } catch {
            transport.release()
            throw error
        }
    }

    /// Decrypted bytes wait in OpenSSL: read without waiting for the socket.
    var hasBufferedInput: Bool {
        guard let tls else { return false }
        return tlsLock.withLock { _ in sb_tls_client_pending(tls) > 0 }
    }

    /// Reads what is there now into `buffer`.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Progress {
        if let tls {
            let n = tlsLock.withLock { _ in sb_tls_client_read(tls, buffer.baseAddress, buffer.count) }
            if n > 0 { return .bytes(Int(n)) }
            if n == 0 { return .wait(.readable) }
            return n == -1 ? .closed : .failed("TLS record error")
        }
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, 0)
            if n > 0 { return .bytes(n) }
            if n == 0 { return .closed }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wait(.readable) }
            return .failed("recv: \(errnoText(errno))")
        }
    }

    /// Writes what the socket takes now from `bytes`.
    func write(_ bytes: UnsafeRawBufferPointer) -> Progress {
        if let tls {
            let n = tlsLock.withLock { _ in sb_tls_client_write_some(tls, bytes.baseAddress, bytes.count) }
            if n > 0 { return .bytes(Int(n)) }
            if n == 0 { return .wait(.writable) }
            // TLS wants to read before it can write (a key update in flight). The reader task
            // owns readability; waiting for writability instead retries at once, and OpenSSL
            // will have read the record by the reader's next turn.
            if n == -3 { return .wait(.writable) }
            return .failed("TLS write failed")
        }
        while true {
            let n = send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return .bytes(n) }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wait(.writable) }
            return .failed("send: \(errnoText(errno))")
        }
    }

    /// Stops both directions without closing the descriptor (the reader then sees the end).
    func shutdown() {
        if !released.load(ordering: .acquiring) { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
    }

    /// Frees the TLS state, takes the socket out of the reactor and closes it. Idempotent;
    /// call after the reader and writer are done with it.
    func release() {
        // acquiringAndReleasing: whoever wins the exchange does the teardown exactly once, and
        // sees every earlier use of the TLS state.
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if let tls { tlsLock.withLock { _ in sb_tls_client_free(tls) } }
        Self.closeSocket(fd)
    }

    private static func closeSocket(_ fd: Int32) {
        ClientReactor.shared.forget(fd)
        Glibc.close(fd)
    }

    /// A non-blocking TCP connection to the first address of `host` that accepts. The name is
    /// resolved off the cooperative pool (``HostResolver``); the caller's timeout covers it.
    private static func connectTCP(host: String, port: UInt16) async throws -> Int32 {
        let addresses = try await HostResolver.resolve(host: host, port: port)
        var lastError = "no addresses for \(host)"
        for address in addresses {
            let fd = socket(address.family,
                            Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            if fd < 0 { lastError = "socket: \(errnoText(errno))"; continue }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            var rc = withUnsafePointer(to: address.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, address.length) }
            }
            if rc != 0 && errno == EINPROGRESS {
                do {
                    try await ClientReactor.shared.wait(fd, for: .writable)
                } catch {
                    closeSocket(fd)
                    throw error
                }
                var soError: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
                if soError == 0 { rc = 0 } else { errno = soError }
            }
            if rc != 0 {
                lastError = "connect to \(host):\(port): \(errnoText(errno))"
                closeSocket(fd)
                continue
            }
            return fd
        }
        throw BrokerClientError.connectionFailed(lastError)
    }
}
