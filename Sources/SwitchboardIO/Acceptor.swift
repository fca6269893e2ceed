import Atomics
import CLiburing
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Acceptor counters (readable from any thread).
public final class AcceptorMetrics: Sendable {
    public let accepted = Counter("switchboard_accepted_total", help: "Sockets accepted by the acceptor")
    public let acceptErrors = Counter("switchboard_accept_errors_total", help: "accept failures (EMFILE, ENFILE, ...)")
    public let handoffFailures = Counter("switchboard_handoff_failures_total", help: "Accepted sockets that could not be handed to a shard and were closed")
}

/// The thread that owns the listening socket. It never reads from a client socket: it picks the
/// shard with the fewest connections (ties round-robin) and hands the fd over, with
/// IORING_OP_MSG_RING on io_uring, or the shard's inbox and doorbell on epoll.
final class Acceptor: @unchecked Sendable {
    let listenFD: Int32
    let shards: [Shard]
    /// Sockets of this listener are TLS: the shard gives them a TLS session when it adopts them.
    let tls: Bool
    let metrics = AcceptorMetrics()
    private var stopFD: Int32
    private var nextTieBreak = 0
    private let useUring: Bool
    private var thread: OSThread?
    private let logger: Logger
    /// Back-off after accept fails for lack of descriptors, so the loop does not spin.
    private let errorBackoffMilliseconds = 10

    init(listenFD: Int32, shards: [Shard], useUring: Bool, logger: Logger, tls: Bool = false) throws(IOError) {
        self.tls = tls
        self.logger = logger
        self.listenFD = listenFD
        self.shards = shards
        self.useUring = useUring
        let fd = sb_eventfd()
        if fd < 0 { throw IOError.system("eventfd", -fd) }
        stopFD = fd
    }

    func start() throws(IOError) {
        guard let t = OSThread.spawn(name: tls ? "sb-acceptor-tls" : "sb-acceptor", { [self] in
            if useUring { runUring() } else { runEpoll() }
        }) else { throw IOError.system("pthread_create", EAGAIN) }
        thread = t
    }

    /// Stops accepting and closes the listening socket. Any thread; returns when stopped.
    func stop() {
        guard stopFD >= 0 else { return }
        _ = sb_eventfd_signal(stopFD)
        thread?.join()
        thread = nil
        Glibc.close(stopFD)
        stopFD = -1
    }

    deinit {
        if stopFD >= 0 { Glibc.close(stopFD) }
    }

    private func pickShard() -> Int {
        var best = -1
        var bestLoad = Int.max
        let n = shards.count
        for k in 0..<n {
            let i = (nextTieBreak + k) % n
            // Both counters live on the shard, so the plain and the TLS acceptor see the same load.
            let load = shards[i].assignedTotal.load(ordering: .relaxed) - shards[i].releasedTotal.load(ordering: .relaxed)
            if load < bestLoad { bestLoad = load; best = i }
        }
        nextTieBreak = (nextTieBreak + 1) % n
        return best
    }

    // MARK: io_uring

    private func runUring() {
        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        defer { ring.deallocate() }
        var applied: UInt32 = 0
        if sb_ring_init(ring, 256, SB_SETUP_SINGLE_ISSUER | SB_SETUP_DEFER_TASKRUN, &applied) < 0 {
            // The shards run io_uring, so this should not happen; fall back to epoll accepting.
            logger.warning("acceptor: io_uring setup failed, accepting with epoll")
            runEpoll()
            return
        }
        defer {
            io_uring_queue_exit(ring)
            Glibc.close(listenFD)
        }
        let stopValue = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        defer { stopValue.deallocate() }
        sb_prep_read(sb_get_sqe(ring), stopFD, stopValue, 8, userData(.acceptorStop, slot: 0, generation: 0))
        sb_prep_multishot_accept(sb_get_sqe(ring), listenFD, userData(.acceptorAccept, slot: 0, generation: 0))
        let ringFDs = shards.map { ($0 as? UringShard)?.ringFD ?? -1 }
        let batch = 256
        let uds = UnsafeMutablePointer<UInt64>.allocate(capacity: batch)
        let res = UnsafeMutablePointer<Int32>.allocate(capacity: batch)
        let flags = UnsafeMutablePointer<UInt32>.allocate(capacity: batch)
        defer { uds.deallocate(); res.deallocate(); flags.deallocate() }
        var rearmAt: Int64 = 0
        while true {
            let timeout: Int64 = rearmAt > 0 ? Int64(errorBackoffMilliseconds) * 1_000_000 : -1
            _ = sb_submit_and_wait(ring, 1, timeout)
            if rearmAt > 0 && monotonicMilliseconds() >= rearmAt {
                rearmAt = 0
                sb_prep_multishot_accept(sb_get_sqe(ring), listenFD, userData(.acceptorAccept, slot: 0, generation: 0))
            }
            let n = Int(sb_drain_cqes(ring, uds, res, flags, UInt32(batch)))
            for i in 0..<n {
                let op = UringOp(rawValue: uds[i] >> 56)
                switch op {
                case .acceptorStop:
                    return
                case .acceptorAccept:
                    if res[i] >= 0 {
                        metrics.accepted.increment()
                        let fd = res[i]
                        let target = pickShard()
                        shards[target].assignedTotal.wrappingIncrement(ordering: .relaxed)
                        sb_prep_msg_ring(sb_get_sqe(ring), ringFDs[target], UInt32(fd),
                                         userData(.acceptedFD, slot: tls ? 1 : 0, generation: 0),
                                         userData(.acceptorHandoff, slot: Int(fd), generation: UInt32(target)))
                    } else {
                        metrics.acceptErrors.increment()
                    }
                    if flags[i] & SB_CQE_F_MORE == 0 {
                        if res[i] >= 0 {
                            sb_prep_multishot_accept(sb_get_sqe(ring), listenFD, userData(.acceptorAccept, slot: 0, generation: 0))
                        } else {
                            rearmAt = monotonicMilliseconds() + Int64(errorBackoffMilliseconds)
                        }
                    }
                case .acceptorHandoff:
                    if res[i] < 0 {
                        // The shard never saw it: close it here and undo the load.
                        let fd = Int32(uds[i] & 0xFFFF_FFFF)
                        let target = Int((uds[i] >> 32) & 0xFF_FFFF)
                        Glibc.close(fd)
                        shards[target].assignedTotal.wrappingDecrement(ordering: .relaxed)
                        metrics.handoffFailures.increment()
                    }
                default:
                    break
                }
            }
        }
    }

    // MARK: epoll

    private func runEpoll() {
        let ep = sb_epoll_create()
        guard ep >= 0 else { return }
        defer {
            Glibc.close(ep)
            Glibc.close(listenFD)
        }
        _ = sb_set_nonblocking(listenFD)
        _ = sb_epoll_ctl(ep, SB_EPOLL_CTL_ADD, listenFD, SB_EPOLLIN, 1)
        _ = sb_epoll_ctl(ep, SB_EPOLL_CTL_ADD, stopFD, SB_EPOLLIN, 2)
        let data = UnsafeMutablePointer<UInt64>.allocate(capacity: 4)
        let events = UnsafeMutablePointer<UInt32>.allocate(capacity: 4)
        defer { data.deallocate(); events.deallocate() }
        var backoff = false
        while true {
            let n = sb_epoll_wait(ep, data, events, 4, backoff ? Int32(errorBackoffMilliseconds) : -1)
            backoff = false
            for i in 0..<Int(max(n, 0)) where data[i] == 2 { return }
            while true {
                let fd = sb_accept4(listenFD)
                if fd < 0 {
                    if -fd == EAGAIN || -fd == EWOULDBLOCK { break }
                    if -fd == EINTR || -fd == ECONNABORTED { continue }
                    metrics.acceptErrors.increment()
                    backoff = true
                    // Level-triggered listen fd: sleep in epoll_wait with a timeout instead of spinning.
                    break
                }
                metrics.accepted.increment()
                let target = pickShard()
                if shards[target].post(tls ? .acceptedTLS(fd) : .accepted(fd)) {
                    shards[target].assignedTotal.wrappingIncrement(ordering: .relaxed)
                } else {
                    Glibc.close(fd)
                    metrics.handoffFailures.increment()
                }
            }
            if backoff { usleep(useconds_t(errorBackoffMilliseconds * 1000)) }
        }
    }
}
