#if canImport(Glibc)
import Glibc
#endif

/// A blocking TCP connect to 127.0.0.1:`port` (close-on-exec); returns the descriptor once the
/// kernel completed the handshake (the listener's backlog, whether or not the server accepted
/// it yet), or throws `TestClient.Failure.connect` with the errno. Allocates nothing on the
/// heap when it succeeds (the idle-memory test opens its sockets with it while it counts).
public func connectLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TestClient.Failure.connect(errno) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc != 0 {
        let e = errno
        Glibc.close(fd)
        throw TestClient.Failure.connect(e)
    }
    return fd
}

/// A blocking TCP client on 127.0.0.1 for tests: real sockets, real bytes, with receive
/// timeouts so a broken server fails a test instead of hanging it.
public final class TestClient: @unchecked Sendable {
    public let fd: Int32
    public private(set) var buffered: [UInt8] = []

    public enum Failure: Error, CustomStringConvertible {
        case connect(Int32), send(Int32), timeout, closed
        public var description: String {
            switch self {
            case .connect(let e): return "connect: errno \(e)"
            case .send(let e): return "send: errno \(e)"
            case .timeout: return "timed out waiting for data"
            case .closed: return "connection closed by server"
            }
        }
    }

    public init(port: Int, receiveTimeoutMilliseconds: Int = 5000) throws {
        fd = try connectLoopback(port: port)
        setReceiveTimeout(milliseconds: receiveTimeoutMilliseconds)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { Glibc.close(fd) }

    public func setReceiveTimeout(milliseconds: Int) {
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    public func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure.send(errno)
            }
            off += n
        }
    }

    public func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Reads once into the buffer. Returns false on EOF; throws on timeout.
    @discardableResult
    public func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { buffered.append(contentsOf: chunk[0..<n]); return true }
            if n == 0 { return false }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw Failure.timeout }
            return false  // ECONNRESET and the like: treat as closed
        }
    }

    /// Reads until at least `count` bytes are buffered; throws if the server closes first.
    public func fill(atLeast count: Int) throws {
        while buffered.count < count {
            guard try fill() else { throw Failure.closed }
        }
    }

    /// Reads everything until the server closes. Returns the bytes.
    public func readToEnd() throws -> [UInt8] {
        while try fill() {}
        defer { buffered = [] }
        return buffered
    }

    /// True when the server closed the connection (EOF or reset) within the timeout.
    public func isClosedByServer() -> Bool {
        do {
            while try fill() {}
            return true
        } catch {
            return false
        }
    }

    /// Reads one HTTP/1.1 response (head + Content-Length body) and returns its exact bytes.
    public func readResponse(headOnly: Bool = false) throws -> TestResponse {
        while true {
            if let end = findHeadEnd() {
                let head = String(decoding: buffered[0..<end], as: UTF8.self)
                var length = 0
                for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
                    length = Int(line.split(separator: ":")[1].trimmingCharacters()) ?? 0
                }
                if headOnly { length = 0 }
                let total = end + 4 + length
                while buffered.count < total {
                    guard try fill() else { throw Failure.closed }
                }
                let raw = Array(buffered[0..<total])
                buffered.removeFirst(total)
                return TestResponse(raw: raw, headLength: end + 4)
            }
            guard try fill() else { throw Failure.closed }
        }
    }

    private func findHeadEnd() -> Int? {
        guard buffered.count >= 4 else { return nil }
        for i in 0...(buffered.count - 4) where buffered[i] == 13 && buffered[i + 1] == 10 && buffered[i + 2] == 13 && buffered[i + 3] == 10 {
            return i
        }
        return nil
    }

    public func clearBuffer() { buffered.removeAll(keepingCapacity: true) }
    public func removeBuffered(_ count: Int) { buffered.removeFirst(count) }

    /// Half-closes the write side.
    public func shutdownWrite() { Glibc.shutdown(fd, Int32(SHUT_WR)) }
}

public struct TestResponse: CustomStringConvertible {
    public let raw: [UInt8]
    public let headLength: Int
    public var text: String { String(decoding: raw, as: UTF8.self) }
    public var description: String { text }
    public var statusLine: String { String(text.split(separator: "\r\n", maxSplits: 1).first ?? "") }
    public var status: Int { Int(statusLine.split(separator: " ")[1]) ?? -1 }
    public var body: [UInt8] { Array(raw[headLength...]) }
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
    public func header(_ name: String) -> String? {
        let head = String(decoding: raw[0..<headLength], as: UTF8.self)
        for line in head.split(separator: "\r\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 && parts[0].lowercased() == name.lowercased() { return String(parts[1]).trimmingCharacters() }
        }
        return nil
    }
}

extension StringProtocol {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// Open file descriptors of this process.
public func openFileDescriptorCount() -> Int {
    guard let dir = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(dir) }
    var count = 0
    while readdir(dir) != nil { count += 1 }
    return count - 3  // ".", "..", and the directory's own fd
}

/// Raises RLIMIT_NOFILE (tests open thousands of sockets, and each costs this process two
/// descriptors: the client's and the server's). As root the hard limit may rise too.
public func raiseFileLimit() {
    var rl = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    if rl.rlim_max < 65_536 {
        var wanted = rl
        wanted.rlim_max = 65_536
        wanted.rlim_cur = 65_536
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &wanted) == 0 { return }
    }
    rl.rlim_cur = rl.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
}

/// The current soft limit on open descriptors.
public func fileLimit() -> Int {
    var rl = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    return Int(rl.rlim_cur)
}

/// Polls `condition` every millisecond until true or the deadline passes (monotonic clock, so
/// a slow condition does not stretch the timeout). Use it instead of a fixed sleep: it waits
/// for the event, no longer. Returns whether the condition held.
public func waitUntil(timeoutMilliseconds: Int = 5000, _ condition: () -> Bool) -> Bool {
    let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
    while monotonicMilliseconds() < deadline {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}

func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
