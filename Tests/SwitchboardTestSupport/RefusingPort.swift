#if canImport(Glibc)
import Glibc
#endif

/// A TCP port on 127.0.0.1 that refuses every connection for as long as this object lives:
/// bound (so nothing else gets the port) but never listening, so a SYN is answered with RST.
/// For "connection refused" tests, instead of closing a listener and sleeping until it is gone.
public final class RefusingPort: @unchecked Sendable {
    public let port: Int
    private let fd: Int32

    public init() throws(TestClient.Failure) {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw .connect(errno) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(s, sa, len) == 0 && getsockname(s, sa, &len) == 0 ? 0 : errno
            }
        }
        guard rc == 0 else { close(s); throw .connect(rc) }
        fd = s
        port = Int(UInt16(bigEndian: addr.sin_port))
    }

    deinit { close(fd) }
}
