import Atomics
import CLiburing
#if canImport(Glibc)
import Glibc
#endif

/// Acceptor counters (readable from any thread).
package final class AcceptorMetrics: Sendable {
    package let accepted = Counter("switchboard_accepted_total", help: "Sockets accepted by the acceptor")
    package let acceptErrors = Counter("switchboard_accept_errors_total", help: "accept failures (EMFILE, ENFILE, ...)")
    package let handoffFailures = Counter("switchboard_handoff_failures_total", help: "Accepted sockets that could not be handed to a shard and were closed")
}

/// The thread that owns the listening socket. It never reads from a client socket: it picks the
/// shard with the fewest connections (ties round-robin) and hands the fd over, with
/// IORING_OP_MSG_RING on io_uring, or the shard's inbox and doorbell on epoll.
///
/// On both backends the listening socket is accepted from with `accept4` after epoll reports it
/// readable, never with an io_uring accept: a pending io_uring request holds a reference to
/// the listening socket's file, and when the process dies the ring is torn down by a kernel
/// worker some milliseconds later, so the port stayed in LISTEN after a SIGKILL and an
/// immediate restart failed with EADDRINUSE (issue 17, item 5). The acceptor's ring only
/// carries MSG_RING handovers, which reference the shards' rings, not the listener.
///
/// ## Ownership
/// Once `init` returns, the acceptor owns the listening socket (and its eventfd, epoll fd and
/// ring) and `stop()` releases them all, whether or not `start()` ran. If `init` throws, the
/// caller still owns the listening socket.
final class Acceptor: @unchecked Sendable {
    let listenFD: Int32
    let shards: [Shard]
    /// Sockets of this listener are TLS: the shard gives them a TLS session when it adopts them.
    let tls: Bool
    let metrics = AcceptorMetrics()
    private var stopFD: Int32
    private var epollFD: Int32
    /// io_uring only: the ring that carries MSG_RING handovers (nil on epoll).
    private var ring: UnsafeMutablePointer<io_uring>?
    private var nextTieBreak = 0
    private var thread: OSThread?
    /// io_uring: MSG_RING handovers submitted whose completion was not reaped yet.
    private var handoffsInFlight = 0
    /// Back-off after accept fails for lack of descriptors, so the loop does not spin.
    private let errorBackoffMilliseconds = 10
    private static let listenToken: UInt64 = 1
    private static let stopToken: UInt64 = 2
    private static let ringToken: UInt64 = 3
    /// Completions reaped per `sb_drain_cqes` call (the arrays below hold one batch).
    private static let completionBatch = 64
    private let cqUserData: UnsafeMutablePointer<UInt64>
    private let cqRes: UnsafeMutablePointer<Int32>
    private let cqFlags: UnsafeMutablePointer<UInt32>

    init(listenFD: Int32, shards: [Shard], useUring: Bool, tls: Bool = false) throws(IOError) {
        self.tls = tls
        self.listenFD = listenFD
        self.shards = shards
        let stop = sb_eventfd()
        if stop < 0 { throw IOError.system("eventfd", -stop) }
        let ep = sb_epoll_create()
        if ep < 0 { Glibc.close(stop); throw IOError.system("epoll_create1", -ep) }
        var uring: UnsafeMutablePointer<io_uring>? = nil
        // Every failure below undoes what this initializer opened, and nothing else.
        func undo(_ call: String, _ rc: Int32) -> IOError {
            if let r = uring { io_uring_queue_exit(r); r.deallocate() }
            Glibc.close(ep)
            Glibc.close(stop)
            return IOError.system(call, -rc)
        }
        if useUring {
            let r = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
            var applied: UInt32 = 0
            // No SINGLE_ISSUER: the ring is created here and used by the acceptor thread.
            let rc = sb_ring_init(r, 256, 0, &applied)
            if rc < 0 { r.deallocate(); throw undo("io_uring_queue_init (acceptor)", rc) }
            uring = r
            // The ring's fd is readable when completions are waiting (failed handovers).
            let prc = sb_epoll_ctl(ep, SB_EPOLL_CTL_ADD, sb_ring_fd(r), SB_EPOLLIN, Self.ringToken)
            if prc < 0 { throw undo("epoll_ctl(acceptor ring)", prc) }
        }
        var rc = sb_set_nonblocking(listenFD)
        if rc < 0 { throw undo("fcntl(O_NONBLOCK)", rc) }
        rc = sb_epoll_ctl(ep, SB_EPOLL_CTL_ADD, listenFD, SB_EPOLLIN, Self.listenToken)
        if rc < 0 { throw undo("epoll_ctl(listen)", rc) }
        rc = sb_epoll_ctl(ep, SB_EPOLL_CTL_ADD, stop, SB_EPOLLIN, Self.stopToken)
        if rc < 0 { throw undo("epoll_ctl(eventfd)", rc) }
        stopFD = stop
        epollFD = ep
        ring = uring
        // Allocated last: nothing can fail after this point, so nothing leaks on a throw.
        cqUserData = .allocate(capacity: Self.completionBatch)
        cqRes = .allocate(capacity: Self.completionBatch)
        cqFlags = .allocate(capacity: Self.completionBatch)
    }

    /// Starts the accepting thread. On failure nothing runs and `stop()` still releases.
    func start() throws(IOError) {
        guard let t = OSThread.spawn(name: tls ? "sb-acceptor-tls" : "sb-acceptor", { [self] in run() }) else {
            throw IOError.system("pthread_create", EAGAIN)
        }
        thread = t
    }

    /// Stops accepting and releases the listening socket, then the ring. Any thread (one at a
    /// time); returns when the thread has exited. Idempotent.
    func stop() {
        guard stopFD >= 0 else { return }
        if let t = thread {
            _ = sb_eventfd_signal(stopFD)
            t.join()
            thread = nil
        }
        // The listener first: nothing else refers to it, so the port is free when this returns.
        Glibc.close(listenFD)
        if let r = ring {
            // Handovers still in flight complete into the target shard's ring or fail; a
            // failed one's fd is closed here rather than leaked.
            _ = sb_submit_and_get_events(r)
            reapHandoffs(r)
            io_uring_queue_exit(r)
            r.deallocate()
            ring = nil
        }
        Glibc.close(epollFD)
        epollFD = -1
        Glibc.close(stopFD)
        stopFD = -1
    }

    deinit {
        // `stop()` is the owner's job; a start-up that failed before it still calls it.
        assert(stopFD < 0, "Acceptor released without stop(): its listening socket would leak")
        cqUserData.deallocate(); cqRes.deallocate(); cqFlags.deallocate()
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

    // MARK: - Acceptor thread

    private func run() {
        let data = UnsafeMutablePointer<UInt64>.allocate(capacity: 4)
        let events = UnsafeMutablePointer<UInt32>.allocate(capacity: 4)
        defer { data.deallocate(); events.deallocate() }
        let ringFDs = shards.map { ($0 as? UringShard)?.ringFD ?? -1 }
        var backoff = false
        while true {
            // A handover's completion normally wakes us through the ring's fd; the bounded wait
            // while some are in flight is a second line, so a failed one's fd never waits long.
            let timeout: Int32 = backoff ? Int32(errorBackoffMilliseconds) : (handoffsInFlight > 0 ? 100 : -1)
            let n = sb_epoll_wait(epollFD, data, events, 4, timeout)
            if backoff { usleep(useconds_t(errorBackoffMilliseconds * 1000)) }
            backoff = false
            for i in 0..<Int(max(n, 0)) where data[i] == Self.stopToken { return }
            if let r = ring { reapHandoffs(r) }
            // Level-triggered: whatever is not accepted now wakes the next wait.
            while true {
                let fd = sb_accept4(listenFD)
                if fd < 0 {
                    if -fd == EAGAIN || -fd == EWOULDBLOCK { break }
                    if -fd == EINTR || -fd == ECONNABORTED { continue }
                    metrics.acceptErrors.increment()
                    // Out of descriptors: sleep instead of spinning on a readable listener.
                    backoff = true
                    break
                }
                metrics.accepted.increment()
                let target = pickShard()
                if let r = ring {
                    shards[target].assignedTotal.wrappingIncrement(ordering: .relaxed)
                    handoffsInFlight += 1
                    // sb_get_sqe submits by itself when the submission queue is full.
                    sb_prep_msg_ring(sb_get_sqe(r), ringFDs[target], UInt32(fd),
                                     userData(.acceptedFD, slot: tls ? 1 : 0, generation: 0),
                                     userData(.acceptorHandoff, slot: Int(fd), generation: UInt32(target)))
                } else if handOver(fd, to: shards[target]) {
                    shards[target].assignedTotal.wrappingIncrement(ordering: .relaxed)
                } else {
                    Glibc.close(fd)
                    metrics.handoffFailures.increment()
                }
            }
            if let r = ring {
                _ = sb_submit_and_get_events(r)
                reapHandoffs(r)
            }
        }
    }

    /// epoll: queues the socket for the shard; false when the shard has stopped. A full queue
    /// (the shard is behind by `listenBacklog` sockets) is waited out: meanwhile nothing is
    /// accepted and the kernel's backlog holds the next connections, which is the backpressure
    /// a client should see, rather than a socket closed right after its handshake.
    private func handOver(_ fd: Int32, to shard: Shard) -> Bool {
        while true {
            switch shard.postAccepted(AcceptedSocket(fd: fd, tls: tls)) {
            case .queued: return true
            case .refused(.stopped): return false
            case .refused(.inboxFull): usleep(200)  // the shard drains its queue every turn
            }
        }
    }

    /// io_uring: takes the completions of MSG_RING handovers; a failed one means the shard
    /// never saw the fd, so it is closed here and the shard's load is given back.
    private func reapHandoffs(_ r: UnsafeMutablePointer<io_uring>) {
        let batch = Self.completionBatch
        while true {
            let n = Int(sb_drain_cqes(r, cqUserData, cqRes, cqFlags, UInt32(batch)))
            for i in 0..<n where UringOp(rawValue: cqUserData[i] >> 56) == .acceptorHandoff {
                handoffsInFlight -= 1
                if cqRes[i] < 0 {
                    let fd = Int32(cqUserData[i] & 0xFFFF_FFFF)
                    let target = Int((cqUserData[i] >> 32) & 0xFF_FFFF)
                    Glibc.close(fd)
                    shards[target].assignedTotal.wrappingDecrement(ordering: .relaxed)
                    metrics.handoffFailures.increment()
                }
            }
            if n < batch { return }
        }
    }
}
