import CLiburing
import SwitchboardIO
#if canImport(Glibc)
import Glibc
#endif

/// The event loop of a protocol template: one epoll set over the template's `TemplateSocket`s,
/// run on the calling thread. A template opens its connections, then calls `pump` with a
/// condition and a deadline for each phase (set-up replies, the measured load, the drain);
/// every complete message goes to `onMessage(connection, text, nowNanos)`.
///
/// Thread rules: everything runs on the thread that created the engine (one client thread:
/// `--cpu` pins it). The server under test is what the template measures, so the engine stays
/// small: one `recv` per readable socket per wake-up, sends written at once.
final class TemplateEngine {
    let options: TemplateOptions
    private(set) var sockets: [TemplateSocket] = []
    private let address: [UInt8]
    private let family: Int32
    private let epfd: Int32
    private let maxEvents = 256
    private let eventData: UnsafeMutablePointer<UInt64>
    private let eventFlags: UnsafeMutablePointer<UInt32>
    /// Sockets whose close the template has not yet been told of (`closedSockets`).
    private var reportedClosed: Set<Int> = []
    /// Called once per complete message: socket index, payload, monotonic now.
    var onMessage: (Int, UnsafeRawBufferPointer, Int64) -> Void = { _, _, _ in }
    /// First reasons connections closed (at most 8 distinct), for the summary.
    private(set) var closeReasons: [String] = []
    private(set) var closedCount = 0
    /// The measured phase in progress, or the last one (`runMeasuredPhase`, MeasuredPhase.swift).
    var measured = MeasuredPhase.idle

    init(options: TemplateOptions) throws(BenchError) {
        self.options = options
        (address, family) = try resolveAddress(options.url, allowRemote: options.allowRemote)
        _ = sb_raise_nofile_limit()
        if let cpu = options.cpu { _ = sb_set_thread_affinity(Int32(cpu)) }
        epfd = sb_epoll_create()
        guard epfd >= 0 else { throw .setup("epoll_create: \(String(cString: strerror(-epfd)))") }
        eventData = .allocate(capacity: maxEvents)
        eventFlags = .allocate(capacity: maxEvents)
    }

    deinit {
        for s in sockets { s.close() }
        Glibc.close(epfd)
        eventData.deallocate()
        eventFlags.deallocate()
    }

    /// Opens one connection to `path` (the target's path when nil) and returns its index.
    func connect(path: String? = nil) throws(BenchError) -> Int {
        var url = options.url
        if let path { url.resource = path }
        let s = try TemplateSocket.connect(address: address, family: family, url: url, headers: options.headers,
                                           timeoutNanos: options.connectTimeoutNanos)
        let index = sockets.count
        sockets.append(s)
        guard sb_epoll_ctl(epfd, SB_EPOLL_CTL_ADD, s.fd, SB_EPOLLIN | SB_EPOLLRDHUP, UInt64(index)) == 0 else {
            throw .setup("epoll_ctl add failed")
        }
        return index
    }

    /// Sends one text message on socket `i` (dropped, and false, when it is closed).
    @discardableResult
    func send(_ i: Int, _ text: [UInt8]) -> Bool {
        let s = sockets[i]
        let ok = s.sendText(text)
        watchWrites(i, s)
        noteClosed(i, s)
        return ok
    }

    @discardableResult
    func send(_ i: Int, _ text: UnsafeRawBufferPointer) -> Bool {
        let s = sockets[i]
        let ok = s.sendText(text)
        watchWrites(i, s)
        noteClosed(i, s)
        return ok
    }

    private func watchWrites(_ i: Int, _ s: TemplateSocket) {
        if s.state == .open && s.writeBlocked {
            _ = sb_epoll_ctl(epfd, SB_EPOLL_CTL_MOD, s.fd, SB_EPOLLIN | SB_EPOLLOUT | SB_EPOLLRDHUP, UInt64(i))
        }
    }

    /// Runs the loop until `done()` is true (returns true) or `deadline` (monotonic ns) passes
    /// (returns false). `tick(now)` runs after every wake-up (at least every millisecond), so
    /// a template can send on a schedule or check its own stop conditions.
    @discardableResult
    func pump(until deadline: Int64, tick: (Int64) -> Void = { _ in }, _ done: () -> Bool) -> Bool {
        let entered = sb_monotonic_ns()
        for (i, s) in sockets.enumerated() {
            s.readBuffered { onMessage(i, $0, entered) }
            noteClosed(i, s)
        }
        while true {
            if done() { return true }
            let now = sb_monotonic_ns()
            if now >= deadline { return false }
            let waitMilliseconds = Int32(min(max((deadline - now) / 1_000_000, 0), 1))
            let n = sb_epoll_wait(epfd, eventData, eventFlags, Int32(maxEvents), waitMilliseconds)
            let after = sb_monotonic_ns()
            if n > 0 {
                for k in 0..<Int(n) {
                    let i = Int(eventData[k])
                    let s = sockets[i]
                    guard s.state == .open else { continue }
                    if eventFlags[k] & SB_EPOLLOUT != 0 {
                        s.flush()
                        if s.state == .open && !s.writeBlocked {
                            _ = sb_epoll_ctl(epfd, SB_EPOLL_CTL_MOD, s.fd, SB_EPOLLIN | SB_EPOLLRDHUP, UInt64(i))
                        }
                    }
                    if eventFlags[k] & (SB_EPOLLIN | SB_EPOLLRDHUP | SB_EPOLLHUP | SB_EPOLLERR) != 0 {
                        s.readAvailable { onMessage(i, $0, after) }
                    }
                    noteClosed(i, s)
                }
            }
            tick(after)
        }
    }

    private func noteClosed(_ i: Int, _ s: TemplateSocket) {
        guard s.state == .closed, !reportedClosed.contains(i) else { return }
        reportedClosed.insert(i)
        closedCount += 1
        if let r = s.closeReason, closeReasons.count < 8, !closeReasons.contains(r) { closeReasons.append(r) }
    }

    /// What opening a pair template's connections and its set-up came to.
    struct PairSetUp {
        var established = 0
        /// Why the connections or the set-up failed; nil when both worked.
        var failure: String? = nil
        /// Connections and set-up, when both worked.
        var seconds: Double? = nil
    }

    /// Opens `pairs` pairs of connections (broker, rpc), hands each pair's socket indices to
    /// `connected(a, b, pair)`, then runs the template's `setUp` (nil, or why it failed).
    func setUpPairs(_ pairs: Int, connected: (Int, Int, Int) -> Void, setUp: () -> String?) -> PairSetUp {
        var outcome = PairSetUp()
        let start = sb_monotonic_ns()
        do throws(BenchError) {
            for p in 0..<pairs {
                let a = try connect()
                let b = try connect()
                connected(a, b, p)
                outcome.established += 2
            }
        } catch {
            outcome.failure = error.description
            return outcome
        }
        outcome.failure = setUp()
        if outcome.failure == nil { outcome.seconds = Double(sb_monotonic_ns() - start) / 1e9 }
        return outcome
    }

    /// The end of every run: the closes seen, the server's RSS (`--server-pid`), then every
    /// socket closed.
    func finish(into result: inout TemplateResult) {
        result.closed = closedCount
        result.closeReasons = closeReasons
        if let pid = options.serverPID { result.serverRSSKiB = readRSSKiB(pid: pid) }
        closeAll()
    }

    /// Closes every socket (close frame, best effort).
    func closeAll() {
        for (i, s) in sockets.enumerated() {
            noteClosed(i, s)
            reportedClosed.insert(i)
            s.close()
        }
    }
}
