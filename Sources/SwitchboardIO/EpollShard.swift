import CLiburing
#if canImport(Glibc)
import Glibc
#endif

/// A shard on epoll (edge-triggered), for kernels or sandboxes where io_uring is unavailable.
final class EpollShard: Shard, @unchecked Sendable {  // confined like Shard (see there)
    private var epollFD: Int32
    /// One receive buffer for the whole shard (`epollReadBytes`): an idle connection holds none.
    private let scratch: UnsafeMutableRawPointer
    private let scratchBytes: Int
    private var eventData: UnsafeMutablePointer<UInt64>
    private var eventFlags: UnsafeMutablePointer<UInt32>
    private let maxEvents = 256
    /// Connections that still had input when their read budget for the turn ran out.
    /// This and `readAgainScratch` skip the dynamic exclusivity check (read every turn: a
    /// runtime call each, see `Shard.finalizeList`): shard thread only, never passed `inout`
    /// across a call (`swap` takes both for itself alone), and the loop over the scratch list
    /// only appends to this one.
    @exclusivity(unchecked) private var readAgain: [Int32] = []
    /// The `readAgain` of the previous turn, being read (swapped, not copied: see `flushPending`).
    @exclusivity(unchecked) private var readAgainScratch: [Int32] = []
    private var iovecs: UnsafeMutablePointer<iovec>
    private static let doorbellToken: UInt64 = .max
    /// `tickTimer`'s registration (level-triggered). Checked right after `doorbellToken` and
    /// before `connectTokenBit`, which it has set.
    private static let tickToken: UInt64 = .max - 1
    /// Set in the token of an outbound connect being watched (connection tokens never have it:
    /// their generation has 24 bits): the rest is attempt << 32 | index.
    private static let connectTokenBit: UInt64 = 1 << 63
    /// Reads per connection per turn before others get a go (edge-triggered fairness).
    private let readBudget = 8
    /// Sockets read between two flushes within a turn. Replies are written at the end of the
    /// turn (one vectored write per socket for all it was sent in the turn), but with epoll the
    /// turn also makes every socket's read system call: at `maxEvents` sockets a reply would wait
    /// for 256 reads and their handling (~1 ms), the epoll tail at 1,000 connections. Flushing
    /// every this many bounds that wait to 32 reads; below it (a few busy sockets, a fan-out
    /// from one publisher) the turn writes exactly as before, once at its end.
    private let readsPerFlush = 32

    override var backendName: String { "epoll" }

    init(index: Int, configuration: IOConfiguration) throws(IOError) {
        let fd = sb_epoll_create()
        if fd < 0 { throw IOError.system("epoll_create1", -fd) }
        epollFD = fd
        scratchBytes = configuration.epollReadBytes
        scratch = .allocate(byteCount: scratchBytes, alignment: 64)
        eventData = .allocate(capacity: maxEvents)
        eventFlags = .allocate(capacity: maxEvents)
        iovecs = .allocate(capacity: configuration.maxIOVecsPerSend)
        try super.init(index: index, configuration: configuration, acceptsQueued: true, corksReplies: true)
        let rc = sb_epoll_ctl(epollFD, SB_EPOLL_CTL_ADD, doorbell.eventFD, SB_EPOLLIN | SB_EPOLLET, Self.doorbellToken)
        if rc < 0 { throw IOError.system("epoll_ctl(eventfd)", -rc) }
        let trc = sb_epoll_ctl(epollFD, SB_EPOLL_CTL_ADD, tickTimer.fd, SB_EPOLLIN, Self.tickToken)
        if trc < 0 { throw IOError.system("epoll_ctl(timerfd)", -trc) }
    }

    override func releaseResources() {
        super.releaseResources()
        if epollFD >= 0 { Glibc.close(epollFD); epollFD = -1 }
    }

    deinit {
        releaseResources()
        scratch.deallocate()
        eventData.deallocate()
        eventFlags.deallocate()
        iovecs.deallocate()
    }

    @inline(__always) private func token(_ slot: Int) -> UInt64 {
        UInt64(connections[slot].generation) << 32 | UInt64(slot)
    }

    override func registerConnection(_ slot: Int) -> Bool {
        let fd = connections[slot].fd
        if sb_set_nonblocking(fd) < 0 { return false }
        let events = SB_EPOLLIN | SB_EPOLLOUT | SB_EPOLLRDHUP | SB_EPOLLET
        return sb_epoll_ctl(epollFD, SB_EPOLL_CTL_ADD, fd, events, token(slot)) == 0
    }

    /// Writes a read's replies straight from the cork (`ReplyCork`): one `sendto` when the
    /// handler returns, no send block, no queue, no flush. What the socket does not take goes to
    /// the queue and waits for EPOLLOUT, as the rest of a partial `submitSend` does.
    override func writeCork(_ slot: Int) {
        assertOnShardThread()
        assert(cork.count > 0 && cork.slot == ReplyCork.none, "a cork written with nothing in it, or inside the read")
        assert(connections[slot].state == .open, "bytes in the cork of a connection that is not open (settleCork, beginClose)")
        assert(connections[slot].queue.isEmpty && !connections[slot].writeBlocked, "bytes in the cork behind a queue")
        let count = cork.count
        while true {
            let written = sb_send(connections[slot].fd, cork.buffer, count)
            if written >= 0 {
                turnCounts.bytesSent &+= written
                turnCounts.sends &+= 1
                connections[slot].queue.countSentPastQueue(written)
                if written == count {
                    cork.count = 0
                    return
                }
                // The rest waits for EPOLLOUT, like a partial submitSend's.
                spillCork(slot, from: written)
                connections[slot].writeBlocked = true
                return
            }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK {
                spillCork(slot, from: 0)
                connections[slot].writeBlocked = true
                return
            }
            cork.count = 0
            beginClose(slot)
            return
        }
    }

    override func submitSend(_ slot: Int) {
        assert(slot != cork.slot || cork.count == 0, "a flush of a corked connection (settleCork first)")
        guard !connections[slot].writeBlocked else { return }
        let fd = connections[slot].fd
        while !connections[slot].queue.isEmpty {
            let written: Int
            let total: Int
            // One run (an echo's reply, a subscriber's coalesced frames): sendto(2), which
            // spares the kernel importing an iovec array (~30-70 ns of system time less per
            // call than a one-iovec writev on loopback, wv.c microbenchmark, 352 bytes) and
            // vfs_write's file layer (see sb_send in the shim). Taken straight from the queue,
            // not through `iovecs` (~10 instructions per echo less).
            if let run = connections[slot].queue.soleRun {
                total = run.count
                written = sb_send(fd, run.baseAddress, run.count)
            } else {
                var n = 0
                var sum = 0
                connections[slot].queue.forEachPending(max: configuration.maxIOVecsPerSend) { b in
                    iovecs[n] = iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count)
                    n += 1
                    sum += b.count
                }
                total = sum
                written = n == 1 ? sb_send(fd, iovecs[0].iov_base, iovecs[0].iov_len) : sb_sendv(fd, iovecs, Int32(n))
            }
            if written < 0 {
                let e = errno
                if e == EAGAIN || e == EWOULDBLOCK { connections[slot].writeBlocked = true; return }
                if e == EINTR { continue }
                beginClose(slot)
                return
            }
            turnCounts.bytesSent &+= written
            turnCounts.sends &+= 1
            connections[slot].queue.consume(written, budget: memory)
            if written < total { connections[slot].writeBlocked = true; return }
        }
        sendQueueEmptied(slot)
    }

    override func watchConnect(fd: Int32, index: Int, attempt: UInt32) {
        let token = Self.connectTokenBit | UInt64(attempt) << 32 | UInt64(index)
        // A failed registration leaves the attempt to its connect timeout.
        _ = sb_epoll_ctl(epollFD, SB_EPOLL_CTL_ADD, fd, SB_EPOLLOUT | SB_EPOLLET, token)
    }

    override func unwatchConnect(fd: Int32, index: Int, attempt: UInt32, completed: Bool) {
        // Always: the registration outlives its event, and the connected socket is registered
        // again as a connection (registerConnection).
        _ = sb_epoll_ctl(epollFD, SB_EPOLL_CTL_DEL, fd, 0, 0)
    }

    override func cancelOperations(_ slot: Int) {
        // Nothing is in flight with epoll; close(2) in finalize also removes the fd from epoll.
    }

    override func pauseReceive(_ slot: Int) {
        // `readAvailable` checks the flag before each read; edge-triggered, so no event is
        // lost meanwhile: `resumeReceive` reads again without waiting for one.
    }

    override func resumeReceive(_ slot: Int) {
        readAgain.append(Int32(slot))
    }

    /// Reads until EAGAIN or the budget runs out. Returns true if input may remain.
    ///
    /// `peerClosed`: the event said the peer shut down its side (EPOLLRDHUP/EPOLLHUP). Then a
    /// short read is not the end: the EOF behind the data must be read now, because with
    /// edge-triggered epoll no further event comes for it (the connection would wait for a
    /// timer to notice the client is gone).
    /// `handler`: the shard's, loaded once for the turn (see `Shard.deliver`).
    /// Inlined into its two call sites in `waitAndDispatch` (issue 16 item 3: as a call, its
    /// frame and spills were ~20 instructions per read).
    @inline(__always)
    private func readAvailable(_ slot: Int, peerClosed: Bool = false, handler: ShardEventHandler) -> Bool {
        let fd = connections[slot].fd
        var reads = 0
        while reads < readBudget {
            let st = connections[slot].state
            if st == .closing || st == .free || connections[slot].readPaused { return false }
            let n = sb_recv(fd, scratch, scratchBytes)  // recvfrom(2), without glibc's cancellation wrapper
            if n > 0 {
                deliver(slot, UnsafeRawBufferPointer(start: scratch, count: n), to: handler)
                reads += 1
                if n < scratchBytes && !peerClosed { return false }
                continue
            }
            if n == 0 { beginClose(slot); return false }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return false }
            beginClose(slot)
            return false
        }
        return true
    }

    override func waitAndDispatch(timeoutMilliseconds: Int64, handler: ShardEventHandler) {
        // Only a turn that may sleep arms the doorbell (`mayBlock`), so only it disarms it after
        // the wait: a busy turn (input left over, work queued) skips that sequentially consistent
        // store, which every turn paid before.
        let maySleep = readAgain.isEmpty && mayBlock(handler)
        // A sleep has no timeout (see `TickTimer`): `tickTimer` expires when the tick that
        // `timeoutMilliseconds` counts down to is due. A budget of 0 (a tick due) never sleeps.
        let timeout: Int32 = maySleep && timeoutMilliseconds > 0 ? -1 : 0
        let count = sb_epoll_wait(epollFD, eventData, eventFlags, Int32(maxEvents), timeout)
        if maySleep { doorbell.cancelSleep() }
        refreshClock()
        // Most turns have nothing to read again: they skip the swap and the emptying (a call
        // into the array's runtime even for an empty one).
        if !readAgain.isEmpty {
            swap(&readAgain, &readAgainScratch)
            // By index rather than `for in`, which retained and released the array's buffer.
            // Nothing but this loop touches `readAgainScratch` during it (reads that run out
            // of budget go to `readAgain`).
            var i = 0
            while i < readAgainScratch.count {
                let s = readAgainScratch[i]
                i += 1
                let slot = Int(s)
                if connections[slot].state != .free && connections[slot].state != .closing && readAvailable(slot, handler: handler) {
                    readAgain.append(s)
                }
            }
            readAgainScratch.removeAll(keepingCapacity: true)
        }
        guard count > 0 else { return }
        var readsSinceFlush = 0
        let n = Int(count)
        let table = handlerSlots
        let prefetching = prefetchesThisTurn
        for i in 0..<n {
            if prefetching { prefetchAhead(eventData, index: i, count: n, table) }
            let data = eventData[i]
            if data == Self.doorbellToken {
                metrics.doorbellWakeups.increment()
                doorbell.drain()
                continue
            }
            if data == Self.tickToken {
                // Level-triggered: read, or every wait returns at once until the next tick.
                // The tick itself runs in `endOfTurn`: the clock read after this wait is at or
                // past the expiry.
                assertOnShardThread()
                tickTimer.drain()
                continue
            }
            if data & Self.connectTokenBit != 0 {
                outboundConnectReady(index: Int(data & 0xFFFF_FFFF), attempt: UInt32((data >> 32) & 0x7FFF_FFFF))
                continue
            }
            let slot = Int(data & 0xFFFF_FFFF)
            let generation = UInt32(data >> 32)
            guard connections[slot].generation == generation, connections[slot].state != .free, connections[slot].state != .closing else { continue }
            let ev = eventFlags[i]
            if ev & SB_EPOLLOUT != 0 && connections[slot].writeBlocked {
                connections[slot].writeBlocked = false
                if !connections[slot].queue.isEmpty { scheduleFlush(slot) }
            }
            if ev & (SB_EPOLLIN | SB_EPOLLRDHUP | SB_EPOLLHUP | SB_EPOLLERR) != 0 {
                let peerClosed = ev & (SB_EPOLLRDHUP | SB_EPOLLHUP | SB_EPOLLERR) != 0
                if readAvailable(slot, peerClosed: peerClosed, handler: handler) { readAgain.append(Int32(slot)) }
                readsSinceFlush += 1
                if readsSinceFlush == readsPerFlush {
                    readsSinceFlush = 0
                    flushPending()
                }
            }
        }
    }
}
