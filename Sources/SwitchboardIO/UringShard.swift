import CLiburing
#if canImport(Glibc)
import Glibc
#endif

/// Kinds of operation, in the top byte of a completion's user_data.
enum UringOp: UInt64 {
    case recv = 1
    /// A send's completion, or that of the POLLOUT poll that waits for room after a send's
    /// -EAGAIN (`Connection.sendAwaitsRoom` says which: never both in flight).
    case send = 2
    case cancel = 3
    /// A socket handed over by the acceptor with MSG_RING: res is the fd.
    case acceptedFD = 4
    case doorbell = 5
    /// The acceptor's MSG_RING handover, completing in the acceptor's own ring.
    case acceptorHandoff = 7
    /// An outbound connect finished (one-shot POLLOUT); slot: the connection's index in
    /// `Shard.outbound`, generation: its attempt.
    case connectPoll = 8
    /// The shutdown(SHUT_WR) of a lingering close on a direct descriptor completed.
    case shutdown = 9
    /// The one-shot POLLIN of `Shard.tickTimer` completed: a tick is due.
    case tick = 10
}

@inline(__always) func userData(_ op: UringOp, slot: Int, generation: UInt32) -> UInt64 {
    op.rawValue << 56 | UInt64(generation & SocketID.generationMask) << 32 | UInt64(slot)
}

/// A shard on io_uring: multishot receive into a provided-buffer ring (an idle connection holds
/// no buffer), one send or vectored sendmsg per connection (MSG_DONTWAIT: it completes in the
/// call that submits it; a full socket waits for room on a POLLOUT poll), completions routed
/// by user_data.
final class UringShard: Shard, @unchecked Sendable {  // confined like Shard (see there)
    let ring: UnsafeMutablePointer<io_uring>
    let appliedFlags: UInt32
    private var bufferRing: OpaquePointer? = nil
    private var bufRing: UnsafeMutablePointer<io_uring_buf_ring>? = nil
    private let buffers: UnsafeMutableRawPointer
    private let bufferBytes: Int
    /// The ring's capacity: at most this many buffers are ever provided (`recvBufferCount`).
    private let bufferCount: Int
    /// `bufferBytes` and `bufferCount - 1` as the buffer ring takes them, converted once (their
    /// range is checked by the configuration): each receive gives its buffer back with them.
    private let recycleBytes: UInt32
    private let recycleMask: UInt32
    /// Buffers provided to the kernel so far, ids 0..<providedBuffers: starts at
    /// `initialProvidedBuffers` and doubles whenever a receive finds none (ENOBUFS), up to
    /// `bufferCount`. The pool is sized by load, not by the configured maximum: a buffer's pages
    /// count in RSS once the kernel wrote into them, and the ring hands out every provided
    /// buffer in turn, so 1,024 provided 16 KiB buffers cost 4-16 MiB of RSS per shard after
    /// the first thousand requests even when a few would do. Never shrinks.
    private(set) var providedBuffers = 0
    /// Provided at start (`recvBufferInitialCount`, 64 by default, at most `bufferCount`):
    /// enough for a burst of that many sockets receiving in one turn. With DEFER_TASKRUN the
    /// kernel runs a few dozen receives per io_uring_enter at most, and the shard recycles
    /// their buffers before the next batch, so 64 rarely run out.
    let initialProvidedBuffers: Int
    /// Receives since the pool's pages were last returned to the kernel, and when the last
    /// one completed: a pool left untouched for `idleTrimMilliseconds` is trimmed (see
    /// `trimIdlePool`), so a burst (10,000 handshakes grow the pool to its maximum) does not
    /// leave its pages resident under connections that then sit idle.
    private var receivesSinceTrim = 0
    private var lastReceiveMilliseconds: Int64 = 0
    static let idleTrimMilliseconds: Int64 = 1000
    /// Times the idle pool was trimmed (tests).
    private(set) var poolTrims = 0
    private let bufferGroup: UInt16 = 0
    private let doorbellValue: UnsafeMutablePointer<UInt64>
    /// A poll of `tickTimer` is in flight, so a sleep may go without a timeout. Cleared for
    /// good if the poll ever fails: the shard then sleeps with the tick's timeout, as before
    /// `TickTimer`.
    private var tickPollArmed = false
    /// Sends prepared in the SQ since it was last submitted. Each completes inside the
    /// io_uring_enter that submits it (MSG_DONTWAIT: see `sb_prep_send`), so a sleep that submits
    /// them waits for that many completions and one more: otherwise the sends' own
    /// completions would end it at once, and a second io_uring_enter would sleep (1.87 enters
    /// per echo at 20,000 msg/s, 0.99 with this count; RESULTS.md 2026-12-05 19:33).
    private var sendsSinceSubmit: UInt32 = 0
    // Completion batch arrays.
    private let batch = 512
    private let cqUserData: UnsafeMutablePointer<UInt64>
    private let cqRes: UnsafeMutablePointer<Int32>
    private let cqFlags: UnsafeMutablePointer<UInt32>
    // Vectored-send contexts: msghdr followed by iovecs, kept until the send completes.
    private var contexts: [UnsafeMutableRawPointer] = []
    private var freeContexts: [Int32] = []
    private let contextBytes: Int

    /// The batch wait (`IOConfiguration.batchWaitMicroseconds`): 0 when it is off, when the
    /// kernel has no min_wait (`batchWaitAvailable`), or after the kernel refused one.
    private var batchWaitMicroseconds: UInt32
    private let batchWaitCompletions: UInt32
    private let batchWaitMinimumConnections: Int
    /// valgrind only: sleep in poll(2) (`IOConfiguration.waitThroughPoll`).
    private let waitThroughPoll: Bool
    /// Whether this ring's kernel takes a batch wait (IORING_FEAT_MIN_TIMEOUT, Linux 6.12).
    let batchWaitAvailable: Bool
    /// `IOConfiguration.batchWaitRefusedForTesting`.
    private let batchWaitRefusedForTesting: Bool

    /// Slots of the ring's registered file table (`IOConfiguration.uringDirectDescriptors`):
    /// connection slot i holds its socket in table slot i when i < this. 0: no table (off, or
    /// the kernel refused it). Set once, on the shard thread, before the loop.
    private(set) var directDescriptorSlots = 0
    /// Shutdowns submitted whose completion has not come (`shutdownWrite`): each holds or
    /// waits for one of the kernel's worker threads (`IOConfiguration.uringWorkerThreads`).
    private var shutdownsInFlight = 0

    override var backendName: String { "io_uring" }
    var ringFD: Int32 { sb_ring_fd(ring) }

    /// Creates the ring disabled (R_DISABLED): a SINGLE_ISSUER ring belongs to the thread that
    /// enables it, and that must be the shard thread.
    init(index: Int, configuration: IOConfiguration) throws(IOError) {
        ring = .allocate(capacity: 1)
        var applied: UInt32 = 0
        let flags = SB_SETUP_SINGLE_ISSUER | SB_SETUP_DEFER_TASKRUN | SB_SETUP_SUBMIT_ALL | SB_SETUP_R_DISABLED
        let rc = sb_ring_init(ring, UInt32(configuration.ringEntries), flags, &applied)
        if rc < 0 {
            ring.deallocate()
            throw IOError.system("io_uring_queue_init", -rc)
        }
        appliedFlags = applied
        batchWaitAvailable = sb_batch_wait_supported(ring) != 0
        batchWaitMicroseconds = batchWaitAvailable ? UInt32(configuration.batchWaitMicroseconds) : 0
        batchWaitCompletions = UInt32(configuration.batchWaitCompletions)
        batchWaitMinimumConnections = configuration.batchWaitMinimumConnections
        waitThroughPoll = configuration.waitThroughPoll
        batchWaitRefusedForTesting = configuration.batchWaitRefusedForTesting
        bufferBytes = configuration.recvBufferBytes
        bufferCount = configuration.recvBufferCount
        recycleBytes = UInt32(configuration.recvBufferBytes)
        recycleMask = UInt32(configuration.recvBufferCount - 1)
        initialProvidedBuffers = min(configuration.recvBufferInitialCount, configuration.recvBufferCount)
        buffers = .allocate(byteCount: bufferBytes * bufferCount, alignment: 4096)
        doorbellValue = .allocate(capacity: 1)
        cqUserData = .allocate(capacity: batch)
        cqRes = .allocate(capacity: batch)
        cqFlags = .allocate(capacity: batch)
        contextBytes = MemoryLayout<msghdr>.stride + MemoryLayout<iovec>.stride * configuration.maxIOVecsPerSend
        try super.init(index: index, configuration: configuration, acceptsQueued: false, corksReplies: false)
    }

    private var ringOpen = true

    override func releaseResources() {
        super.releaseResources()
        guard ringOpen else { return }
        ringOpen = false
        if let br = bufRing { sb_free_buf_ring(ring, br, UInt32(bufferCount), Int32(bufferGroup)) }
        bufRing = nil
        io_uring_queue_exit(ring)
    }

    deinit {
        releaseResources()
        ring.deallocate()
        buffers.deallocate()
        doorbellValue.deallocate()
        cqUserData.deallocate(); cqRes.deallocate(); cqFlags.deallocate()
        for c in contexts { c.deallocate() }
    }

    override func setUpOnThread() throws(IOError) {
        if appliedFlags & SB_SETUP_R_DISABLED != 0 {
            let rc = sb_ring_enable(ring)
            if rc < 0 { throw IOError.system("IORING_REGISTER_ENABLE_RINGS", -rc) }
        }
        var err: Int32 = 0
        guard let br = sb_setup_buf_ring(ring, UInt32(bufferCount), Int32(bufferGroup), &err) else {
            throw IOError.system("io_uring_register_buf_ring", -err)
        }
        bufRing = br
        provideBuffers(upTo: initialProvidedBuffers)
        if configuration.uringDirectDescriptors { registerDirectDescriptorTable() }
        limitWorkerThreads()
        armDoorbell()
        armTick()
    }

    /// Caps the kernel's worker threads for this shard's ring (`uringWorkerThreads`, both
    /// kinds of work). The limit belongs to the thread's io_uring context, which is why it is
    /// set here, on the shard thread; the kernel applies it when the thread first submits. A
    /// kernel before 5.15 refuses it (counted): its defaults then bound the workers.
    private func limitWorkerThreads() {
        assertOnShardThread()  // SINGLE_ISSUER, and the limit is the calling thread's
        var bounded = UInt32(configuration.uringWorkerThreads)
        var unbounded = bounded
        if sb_register_worker_limits(ring, &bounded, &unbounded) != 0 { metrics.uringWorkerLimitRefused.increment() }
    }

    /// The kernel's worker thread limits for this thread, bounded and unbounded work, as it
    /// reports them (tests: the limit is the kernel's state, not only a configured value).
    func workerThreadLimits() -> (bounded: UInt32, unbounded: UInt32)? {
        assertOnShardThread()
        var bounded: UInt32 = 0
        var unbounded: UInt32 = 0
        guard sb_register_worker_limits(ring, &bounded, &unbounded) == 0 else { return nil }
        return (bounded, unbounded)
    }

    /// Registers an empty file table of one slot per connection slot, capped at the descriptor
    /// limit (the kernel refuses a table larger than RLIMIT_NOFILE; the group raised the soft
    /// limit to the hard one at start). Connection slots beyond it, or all of them when the
    /// kernel refuses (no sparse tables before 5.19), use process descriptors.
    private func registerDirectDescriptorTable() {
        assertOnShardThread()  // SINGLE_ISSUER: io_uring_register from another thread is refused
        var limit = rlimit()
        let descriptorLimit = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 && limit.rlim_cur < UInt(Int32.max)
            ? Int(limit.rlim_cur) : Int(Int32.max)
        let slots = min(configuration.maxConnectionsPerShard, descriptorLimit, configuration.uringDirectDescriptorSlotsForTesting ?? .max)
        guard slots > 0, sb_register_files_sparse(ring, UInt32(slots)) == 0 else { return }
        directDescriptorSlots = slots
    }

    /// Moves an adopted socket from the process's descriptor table into the ring's, at the
    /// connection's own slot, and closes the process descriptor: from here on every operation
    /// of the connection names table slot `slot` with IOSQE_FIXED_FILE. The table slot is empty:
    /// the connection that had the slot before emptied it when it was finalized
    /// (`releaseDescriptor`), synchronously, after its last operation completed.
    private func holdAsDirectDescriptor(_ slot: Int) {
        assertOnShardThread()
        assert(!connections[slot].direct, "a slot adopted twice")
        let fd = connections[slot].fd
        guard slot < directDescriptorSlots, sb_register_file_at(ring, UInt32(slot), fd) == 0 else {
            metrics.directDescriptorFallbacks.increment()
            return
        }
        Glibc.close(fd)
        connections[slot].fd = Int32(slot)
        connections[slot].direct = true
    }

    override func releaseDescriptor(_ slot: Int) {
        assertOnShardThread()
        guard connections[slot].direct else { return super.releaseDescriptor(slot) }
        // Nothing in the submission queue names the slot: every operation of the connection
        // set a flag when it was prepared (receive, send, shutdown) and finalize waits for all
        // of them to complete, so emptying the slot now cannot redirect a queued operation to
        // the socket that takes the slot next.
        let rc = sb_register_file_at(ring, UInt32(slot), -1)
        assert(rc == 0, "emptying direct descriptor slot \(slot) failed: \(rc)")
    }

    override func shutdownWrite(_ slot: Int) {
        assertOnShardThread()
        guard connections[slot].direct else { return super.shutdownWrite(slot) }
        // io_uring runs a shutdown in a worker thread, which looks the slot up when it runs:
        // the slot stays filled until the completion (`shutdownInFlight` holds off finalize).
        let s = sqe()
        sb_prep_shutdown(s, connections[slot].fd, Int32(SHUT_WR), userData(.shutdown, slot: slot, generation: connections[slot].generation))
        sb_sqe_fixed_file(s)
        connections[slot].shutdownInFlight = true
        // A shutdown over the worker limit waits in the kernel's queue: correct, only later.
        if shutdownsInFlight >= configuration.uringWorkerThreads { metrics.uringWorkerWaits.increment() }
        shutdownsInFlight += 1
    }

    /// Adds buffers providedBuffers..<count to the ring (shard thread; the ring's capacity
    /// is `bufferCount`, so ids and ring slots never wrap over a provided buffer).
    private func provideBuffers(upTo count: Int) {
        precondition(count <= bufferCount, "more buffers than the ring holds")
        guard let br = bufRing, count > providedBuffers else { return }
        let mask = Int32(bufferCount - 1)
        for (offset, id) in (providedBuffers..<count).enumerated() {
            io_uring_buf_ring_add(br, buffers + id * bufferBytes, UInt32(bufferBytes), UInt16(id), mask, Int32(offset))
        }
        io_uring_buf_ring_advance(br, Int32(count - providedBuffers))
        providedBuffers = count
    }

    private func sqe() -> UnsafeMutablePointer<io_uring_sqe> {
        // sb_get_sqe submits when the SQ is full (the sends counted so far go with it); it
        // fails only if the ring is broken.
        if io_uring_sq_space_left(ring) == 0 { sendsSinceSubmit = 0 }
        guard let s = sb_get_sqe(ring) else { fatalError("io_uring: no SQE available after submit") }
        return s
    }

    private func armDoorbell() {
        sb_prep_read(sqe(), doorbell.eventFD, doorbellValue, 8, userData(.doorbell, slot: 0, generation: 0))
    }

    /// Polls `tickTimer` for POLLIN (one-shot): the completion comes when the tick is due, and
    /// ends a sleep that has no timeout; it is drained and polled again then. A poll, not an
    /// io_uring read as for the doorbell: where a timerfd does not mark itself FMODE_NOWAIT
    /// (older kernels; a read worked on 6.18), io_uring reads it in a kernel worker thread,
    /// and a non-blocking timerfd's read may complete at once with -EAGAIN: every turn. A poll
    /// works on every kernel with io_uring; the drain is one read(2) per tick.
    private func armTick() {
        sb_prep_poll_add(sqe(), tickTimer.fd, UInt32(POLLIN), userData(.tick, slot: 0, generation: 0))
        tickPollArmed = true
    }

    private func armReceive(_ slot: Int) {
        let c = connections[slot]
        let s = sqe()
        sb_prep_recv_multishot(s, c.fd, bufferGroup, userData(.recv, slot: slot, generation: c.generation))
        if c.direct { sb_sqe_fixed_file(s) }
        connections[slot].recvArmed = true
    }

    override func registerConnection(_ slot: Int) -> Bool {
        if configuration.uringDirectDescriptors { holdAsDirectDescriptor(slot) }
        armReceive(slot)
        return true
    }

    override func submitSend(_ slot: Int) {
        guard !connections[slot].sendInFlight else { return }
        // Through the pointer, not a copy of the connection (see `Shard.liveSlot`).
        let c = UnsafePointer(connections + slot)
        let ud = userData(.send, slot: slot, generation: c.pointee.generation)
        if c.pointee.queue.chunkCount == 1, let first = c.pointee.queue.first {
            let b = first.pending
            let s = sqe()
            sb_prep_send(s, c.pointee.fd, b.baseAddress!, b.count, ud)
            if c.pointee.direct { sb_sqe_fixed_file(s) }
            sides[slot].sendSubmittedBytes = b.count
        } else {
            let ctxIndex: Int32
            if let i = freeContexts.popLast() { ctxIndex = i } else {
                contexts.append(.allocate(byteCount: contextBytes, alignment: 16))
                ctxIndex = Int32(contexts.count - 1)
            }
            let base = contexts[Int(ctxIndex)]
            let msg = base.assumingMemoryBound(to: msghdr.self)
            let iov = (base + MemoryLayout<msghdr>.stride).assumingMemoryBound(to: iovec.self)
            var n = 0
            var total = 0
            c.pointee.queue.forEachPending(max: configuration.maxIOVecsPerSend) { b in
                iov[n] = iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count)
                n += 1
                total += b.count
            }
            sb_msghdr_set(msg, iov, n)
            let s = sqe()
            sb_prep_sendmsg(s, c.pointee.fd, msg, ud)
            if c.pointee.direct { sb_sqe_fixed_file(s) }
            sides[slot].sendContext = ctxIndex
            sides[slot].sendSubmittedBytes = total
        }
        connections[slot].sendInFlight = true
        turnCounts.sends &+= 1
        sendsSinceSubmit &+= 1
    }

    override func watchConnect(fd: Int32, index: Int, attempt: UInt32) {
        sb_prep_poll_add(sqe(), fd, UInt32(POLLOUT), userData(.connectPoll, slot: index, generation: attempt))
    }

    override func unwatchConnect(fd: Int32, index: Int, attempt: UInt32, completed: Bool) {
        guard !completed else { return }  // one-shot: nothing left in the ring
        // The kernel holds the file until the poll ends: cancel it (its -ECANCELED completion
        // names an abandoned attempt and is ignored).
        sb_prep_cancel(sqe(), userData(.connectPoll, slot: index, generation: attempt), userData(.cancel, slot: 0, generation: 0))
    }

    override func cancelOperations(_ slot: Int) {
        let c = connections[slot]
        if c.recvArmed && !c.cancelSubmitted {
            sb_prep_cancel(sqe(), userData(.recv, slot: slot, generation: c.generation), userData(.cancel, slot: slot, generation: c.generation))
            connections[slot].cancelSubmitted = true
        }
        // Makes an in-flight send finish now instead of waiting for a peer that does not read.
        if !c.direct {
            _ = shutdown(c.fd, Int32(SHUT_RDWR))
        } else if c.sendInFlight {
            // A direct descriptor has no shutdown(2); cancelling the send ends it as well (a
            // send that already completed makes the cancel fail with -ENOENT, ignored). The
            // socket is closed when finalize empties its slot.
            sb_prep_cancel(sqe(), userData(.send, slot: slot, generation: c.generation), userData(.cancel, slot: slot, generation: c.generation))
        }
    }

    override func pauseReceive(_ slot: Int) {
        let c = connections[slot]
        // Completions the kernel already posted still arrive; `deliver` holds them.
        if c.recvArmed && !c.cancelSubmitted {
            sb_prep_cancel(sqe(), userData(.recv, slot: slot, generation: c.generation), userData(.cancel, slot: slot, generation: c.generation))
            connections[slot].cancelSubmitted = true
        }
    }

    override func resumeReceive(_ slot: Int) {
        // Still armed: the cancel has not completed; its final completion re-arms (below).
        if !connections[slot].recvArmed { armReceive(slot) }
    }

    override func waitAndDispatch(timeoutMilliseconds: Int64, handler: ShardEventHandler) {
        // As on epoll, only a turn that may sleep armed the doorbell (`mayBlock` disarms it
        // when it returns false), so only it disarms it after the wait: a busy turn skips that
        // sequentially consistent store.
        if mayBlock(handler) {
            var waited = false
            if waitThroughPoll {
                // At most 1 ms: the ring defers its completions' work to the waiting task
                // (IORING_SETUP_DEFER_TASKRUN), and a completion posts only inside
                // io_uring_enter, so nothing wakes poll(2) for one (BatchWaitTests measures it).
                _ = sb_submit_then_poll(ring, Int32(clamping: min(timeoutMilliseconds, 1)))
                _ = sb_submit_and_get_events(ring)
                waited = true
            } else if batchWaitMicroseconds > 0 && openConnections >= batchWaitMinimumConnections {
                metrics.batchWaits.increment()
                let rc = sb_submit_and_wait_batch(ring, batchWaitCompletions, timeoutMilliseconds * 1_000_000, batchWaitMicroseconds,
                                                  batchWaitRefusedForTesting ? 1 : 0)
                waited = rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY
                // A kernel that advertised min_wait and still refused the call: nothing was
                // submitted (io_uring_enter returns a wait's error only when it submitted
                // nothing; with submissions it returns their count, and the next turn's call,
                // with none, gets the error), so this shard waits the plain way from now on
                // (and now, below).
                if !waited {
                    batchWaitMicroseconds = 0
                    metrics.batchWaitsRefused.increment()
                }
            }
            // Without a timeout while the tick's poll is in flight (see `TickTimer`): its
            // completion ends the sleep when the tick that `timeoutMilliseconds` counts down
            // to is due. The batch wait above keeps its timeout: its minimum wait is a timer
            // of the kernel's anyway.
            if !waited {
                let sleepsOnTick = tickPollArmed && timeoutMilliseconds > 0
                // The sends this call submits post their completions before it waits (see
                // `sendsSinceSubmit`): wait for one beyond them. Not with completions already
                // posted (a submit forced by a full SQ), which must end the wait at once, and
                // not with a timeout (the fallback, rare): a plain wait for one there.
                let waitCompletions: UInt32 = sleepsOnTick && io_uring_cq_ready(ring) == 0 ? 1 + sendsSinceSubmit : 1
                _ = sb_submit_and_wait(ring, waitCompletions, sleepsOnTick ? -1 : timeoutMilliseconds * 1_000_000)
            }
            doorbell.cancelSleep()
        } else {
            _ = sb_submit_and_get_events(ring)
        }
        sendsSinceSubmit = 0  // every branch above submitted the SQ
        refreshClock()
        let table = handlerSlots
        let prefetching = prefetchesThisTurn
        while true {
            let n = Int(sb_drain_cqes(ring, cqUserData, cqRes, cqFlags, UInt32(batch)))
            if n == 0 { break }
            for i in 0..<n {
                if prefetching { prefetchAhead(cqUserData, index: i, count: n, table) }
                dispatch(cqUserData[i], cqRes[i], cqFlags[i], handler)
            }
            if n < batch { break }
        }
        trimIdlePool()
    }

    /// Returns the provided buffers' pages to the kernel (MADV_DONTNEED) once no receive used
    /// one for `idleTrimMilliseconds`; the next receive faults in the page it writes.
    ///
    /// Safe only with DEFER_TASKRUN: then the kernel writes into a provided buffer only inside
    /// this thread's io_uring_enter, so with the completion queue empty no buffer holds data
    /// the shard has not seen, and nothing can be written during the madvise. The queue is
    /// checked, not assumed: a submit forced by a full SQ during dispatch (sb_get_sqe) enters
    /// the ring and may post a receive after the last drain. Without DEFER_TASKRUN (older
    /// kernels) a receive could land at any syscall: the pool is then never trimmed.
    private func trimIdlePool() {
        guard receivesSinceTrim > 0, appliedFlags & SB_SETUP_DEFER_TASKRUN != 0,
              nowMilliseconds - lastReceiveMilliseconds >= Self.idleTrimMilliseconds,
              io_uring_cq_ready(ring) == 0 else { return }
        receivesSinceTrim = 0
        poolTrims += 1
        _ = madvise(buffers, providedBuffers * bufferBytes, MADV_DONTNEED)
    }

    @inline(__always) private func dispatch(_ ud: UInt64, _ res: Int32, _ flags: UInt32, _ handler: ShardEventHandler) {
        let op = UringOp(rawValue: ud >> 56)
        let slot = Int(ud & 0xFFFF_FFFF)
        let generation = UInt32((ud >> 32) & 0xFF_FFFF)
        switch op {
        case .recv:
            completeReceive(slot, generation, res, flags, handler)
        case .send:
            completeSend(slot, res)
        case .acceptedFD:
            // The acceptor marks sockets of the TLS listener with slot 1 in the message.
            if res >= 0 { adopt(fd: res, tls: slot == 1) }
        case .doorbell:
            metrics.doorbellWakeups.increment()
            armDoorbell()
        case .tick:
            // The tick runs in `endOfTurn`: the clock read after this wait is at or past the
            // expiry. A poll that failed (it should not: the descriptor is the shard's own
            // until `releaseResources`; -ECANCELED when the ring is torn down) leaves the
            // sleeps their timeout.
            assertOnShardThread()
            tickPollArmed = false
            if res > 0 {
                tickTimer.drain()
                armTick()
            }
        case .connectPoll:
            outboundConnectReady(index: slot, attempt: generation)
        case .shutdown:
            // finalize waits for this completion, so the slot still holds the same connection.
            assert(connections[slot].generation == generation && connections[slot].shutdownInFlight, "a shutdown completion for a slot that moved on")
            connections[slot].shutdownInFlight = false
            assert(shutdownsInFlight > 0, "a shutdown completed that was not counted in flight")
            shutdownsInFlight -= 1
            if connections[slot].state == .closing { queueFinalizeIfQuiescent(slot) }
        case .cancel, .none, .acceptorHandoff:
            break
        }
    }

    private func completeReceive(_ slot: Int, _ generation: UInt32, _ res: Int32, _ flags: UInt32,
                                 _ handler: ShardEventHandler) {
        if flags & SB_CQE_F_BUFFER != 0 {
            let bid = Int(flags >> SB_CQE_BUFFER_SHIFT)
            // The kernel hands out only ids this shard provided: below `providedBuffers`.
            assert(bid < providedBuffers, "buffer id \(bid) was never provided")
            let start = buffers + bid &* bufferBytes
            receivesSinceTrim &+= 1
            lastReceiveMilliseconds = nowMilliseconds
            if res > 0 && connections[slot].generation == generation {
                deliver(slot, UnsafeRawBufferPointer(start: start, count: Int(res)), to: handler)
            }
            sb_buf_ring_recycle(bufRing, start, recycleBytes, UInt16(truncatingIfNeeded: bid), recycleMask)
        }
        guard connections[slot].generation == generation else { return }
        if flags & SB_CQE_F_MORE != 0 { return }
        connections[slot].recvArmed = false
        connections[slot].cancelSubmitted = false
        let state = connections[slot].state
        if state == .closing {
            queueFinalizeIfQuiescent(slot)
            return
        }
        if connections[slot].readPaused {
            // Not re-armed while paused; the peer's end waits behind the held bytes.
            if res == 0 || (res < 0 && res != -ECANCELED && res != -ENOBUFS) { holdEnd(slot) }
            return
        }
        if res == -ECANCELED {
            armReceive(slot)  // a pause's cancel, completing after the resume
        } else if res == 0 {
            beginClose(slot)  // peer closed
        } else if res > 0 || res == -ENOBUFS {
            if res == -ENOBUFS {
                metrics.recvBuffersExhausted.increment()
                // More sockets received in one turn than there were buffers: double the pool.
                provideBuffers(upTo: min(max(providedBuffers * 2, 1), bufferCount))
            }
            armReceive(slot)
        } else {
            beginClose(slot)
        }
    }

    private func completeSend(_ slot: Int, _ res: Int32) {
        assertOnShardThread()
        let ctx = sides[slot].sendContext
        if ctx >= 0 {
            freeContexts.append(ctx)
            sides[slot].sendContext = -1
        }
        let state = connections[slot].state
        if connections[slot].sendAwaitsRoom {
            // The POLLOUT poll after an -EAGAIN: room (res, the poll's events), an error, or
            // -ECANCELED from `cancelOperations`. The queue is as the blocked send left it.
            assert(connections[slot].sendInFlight, "a poll for room stands in for a send in flight")
            connections[slot].sendAwaitsRoom = false
            connections[slot].sendInFlight = false
            if state == .closing {
                queueFinalizeIfQuiescent(slot)
            } else if res > 0 {
                scheduleFlush(slot)  // POLLERR or POLLHUP included: that send reports it
            } else {
                beginClose(slot)
            }
            return
        }
        if res == -EAGAIN && state != .closing {
            // MSG_DONTWAIT (see `sb_prep_send`): the socket is full. Wait for room here, as the
            // epoll backend waits for EPOLLOUT, under the send's user data, so the cancel in
            // `cancelOperations` ends the wait as it ends a send. Nothing was taken from the
            // queue; `sendInFlight` stays set until the poll completes.
            connections[slot].sendAwaitsRoom = true
            let s = sqe()
            sb_prep_poll_add(s, connections[slot].fd, UInt32(POLLOUT), userData(.send, slot: slot, generation: connections[slot].generation))
            if connections[slot].direct { sb_sqe_fixed_file(s) }
            return
        }
        connections[slot].sendInFlight = false
        if state == .closing {
            queueFinalizeIfQuiescent(slot)
            return
        }
        guard res > 0 else {
            beginClose(slot)
            return
        }
        turnCounts.bytesSent &+= Int(res)
        connections[slot].queue.consume(Int(res), budget: memory)
        if connections[slot].queue.isEmpty {
            sendQueueEmptied(slot)
        } else {
            scheduleFlush(slot)
        }
    }

    override func tearDown() {
        _ = sb_submit_and_get_events(ring)
        // A socket handed over after the last turn would never be adopted: close it rather
        // than keep it open until the process exits.
        while true {
            let n = Int(sb_drain_cqes(ring, cqUserData, cqRes, cqFlags, UInt32(batch)))
            for i in 0..<n where UringOp(rawValue: cqUserData[i] >> 56) == .acceptedFD && cqRes[i] >= 0 {
                metrics.connectionsRejected.increment()
                releasedTotal.wrappingIncrement(ordering: .relaxed)
                Glibc.close(cqRes[i])
            }
            if n < batch { break }
        }
    }
}
