import COpenSSL
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The byte stream under a client WebSocket: the TCP socket itself (ws://) or TLS over it
/// (wss://, OpenSSL with certificate verification always on).
///
/// Thread rules: one reader thread calls `receive`, writers call `send` under the connection's
/// write lock. An OpenSSL connection must not be used by two threads at once, so with TLS both
/// go through `tlsLock`; the reader calls `receive` only once `poll` said readable (or
/// `hasBufferedInput`), and a read that found only a non-data record returns at once, so the
/// lock is never held while waiting for the network.
final class ClientTransport: @unchecked Sendable {
    let fd: Int32
    private let tls: OpaquePointer?
    private let tlsLock = Mutex(())

    private init(fd: Int32, tls: OpaquePointer?) {
        self.fd = fd
        self.tls = tls
    }

    static func plain(fd: Int32) -> ClientTransport { ClientTransport(fd: fd, tls: nil) }

    /// TLS handshake on connected `fd` within `deadline`; verifies the certificate against
    /// `caFile` (nil: the system trust store) and `host`.
    static func tls(fd: Int32, host: String, caFile: String?, deadline: ContinuousClock.Instant) throws(BrokerClientError) -> ClientTransport {
        let left = max(1, (deadline - ContinuousClock.now).components.seconds * 1000 + (deadline - ContinuousClock.now).components.attoseconds / 1_000_000_000_000_000)
        var tv = timeval(tv_sec: Int(left / 1000), tv_usec: Int((left % 1000) * 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var message = [CChar](repeating: 0, count: 512)
        let client = sb_tls_client_connect(fd, host, caFile, &message, message.count)
        var none = timeval(tv_sec: 0, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, socklen_t(MemoryLayout<timeval>.size))
        guard let client else {
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw .connectionFailed(text)
        }
        return ClientTransport(fd: fd, tls: client)
    }

    var isTLS: Bool { tls != nil }

    /// Decrypted bytes wait in OpenSSL: read without polling the socket.
    var hasBufferedInput: Bool {
        guard let tls else { return false }
        return tlsLock.withLock { _ in sb_tls_client_pending(tls) > 0 }
    }

    /// Sends every byte (blocking).
    func send(_ bytes: [UInt8]) throws(BrokerClientError) {
        if let tls {
            let ok = tlsLock.withLock { _ in
                bytes.withUnsafeBytes { sb_tls_client_write(tls, $0.baseAddress, $0.count) == Int32(bytes.count) }
            }
            if !ok { throw .disconnected }
            return
        }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .disconnected
            }
            offset += n
        }
    }

    enum Received {
        case bytes(Int)
        /// Nothing for the caller yet (interrupted, or TLS processed a non-data record).
        case again
        case closed
        case failed(String)
    }

    /// Reads into `buffer`, after `poll` said readable.
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Received {
        if let tls {
            let n = tlsLock.withLock { _ in sb_tls_client_read(tls, buffer.baseAddress, buffer.count) }
            if n > 0 { return .bytes(Int(n)) }
            if n == 0 { return .again }
            return n == -1 ? .closed : .failed("TLS record error")
        }
        let n = recv(fd, buffer.baseAddress, buffer.count, 0)
        if n > 0 { return .bytes(n) }
        if n == 0 { return .closed }
        if errno == EINTR || errno == EAGAIN { return .again }
        return .failed("recv: \(errnoText(errno))")
    }

    /// Frees the TLS state (not the socket). Call once, after the last send and receive.
    func release() {
        if let tls { tlsLock.withLock { _ in sb_tls_client_free(tls) } }
    }
}
