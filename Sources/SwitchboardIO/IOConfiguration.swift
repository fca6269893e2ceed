/// Which kernel interface the shards use for I/O.
public enum IOBackendKind: String, Sendable, CaseIterable {
    /// io_uring when it can be set up, epoll otherwise (logged at start-up).
    case auto
    case uring
    case epoll
}

/// Bounds and knobs of the I/O layer. Every one is a limit with a sane default.
public struct IOConfiguration: Sendable {
    /// Number of shard threads; 0 means one per online CPU.
    public var shardCount: Int = 0
    public var backend: IOBackendKind = .auto
    /// Connections one shard holds at most; beyond it new sockets are closed at once and
    /// `connections_rejected_total` counts them.
    public var maxConnectionsPerShard: Int = 65_536
    /// io_uring submission queue entries per shard.
    public var ringEntries: Int = 4096
    /// Provided receive buffers per shard (io_uring) and their size. An idle connection holds
    /// none; a shard reserves `recvBufferCount * recvBufferBytes` of address space, provides 64
    /// buffers at start and doubles that whenever a receive finds none (ENOBUFS, metric
    /// `switchboard_recv_buffers_exhausted_total`), so RSS follows the load, up to this count.
    public var recvBufferCount: Int = 1024
    public var recvBufferBytes: Int = 16_384
    /// io_uring: buffers provided at start (capped at `recvBufferCount`); the pool doubles from
    /// here on ENOBUFS. Package-level: tests lower it to make a burst run out.
    package var recvBufferInitialCount: Int = 64
    /// Bytes a connection may have queued for sending, counted with a per-frame overhead
    /// (`SendQueue.entryOverheadBytes`, 112) next to the payload; a send that would go beyond
    /// it (while the queue is not empty) reports `.overLimit` and the protocol layer applies
    /// its slow-consumer policy. An empty queue accepts any one message.
    public var maxSendQueueBytes: Int = 4 << 20
    /// Bytes one shard may hold for all its peers together: send queues (with their overhead)
    /// and what the protocol layer charges (WebSocket assembly and compression state). At the
    /// limit, sends to connections over their fair share are refused as over-limit, and new
    /// charges are refused (`switchboard_shard_memory_budget_hits_total`).
    public var maxBufferedBytesPerShard: Int = 1 << 30
    /// Chunks gathered into one vectored send.
    public var maxIOVecsPerSend: Int = 64
    /// Small-frame coalescing (issue 16 items 1 and 6, `SendBlockPool`): a frame of at most
    /// this many bytes queued behind others on a plain connection is copied into a send block
    /// of the shard's pool instead of being referenced, so a run of small frames leaves in one
    /// iovec (the kernel's cost per iovec is well above a copy of a few hundred bytes). 0 turns
    /// coalescing off. At most `sendBlockBytes`. A frame alone in its queue (an echo's reply)
    /// stays a reference. TLS connections queue ciphertext: with coalescing on, a flush's
    /// ciphertext of at most `sendBlockBytes` is copied out of the record layer straight into
    /// a send block (it is copied anyway; the block costs no malloc), larger ciphertext into a
    /// buffer of its own.
    public var sendCoalesceMaxFrameBytes: Int = 512
    /// Size of one send block. A subscriber of a fan-out gets a block per loop turn in which it
    /// is sent small frames (returned when they are written), so this times the subscribers
    /// of a busy turn is what coalescing holds for a moment. 1 KiB holds a turn's 16 chat-sized
    /// frames (16 of 22 bytes are 352) and packs four blocks to a page: at 1 -> 10,000 a turn
    /// touches 10 MiB of blocks instead of 40 (server user CPU per delivery 0.077 -> 0.055 µs
    /// on epoll, issue 16). A run longer than a block continues in the next one.
    public var sendBlockBytes: Int = 1024
    /// Send blocks one shard may have (queued and free). Beyond, small frames are queued by
    /// reference as without coalescing (`switchboard_send_blocks_exhausted_total`). Bounds the
    /// pool's memory, including the unwritten tails of queued blocks, which no send-queue limit
    /// counts: 65,536 blocks of 1 KiB are 64 MiB per shard. 0 turns coalescing off.
    public var maxSendBlocksPerShard: Int = 65_536
    /// Free send blocks a shard keeps through a busy tick even if they went unused. A block that
    /// comes back is kept free; each tick frees those not taken during the whole interval,
    /// down to this many, and a tick in which none was taken frees all, so an idle shard holds
    /// none (`SendBlockPool.tick`).
    public var sendBlocksKeptFree: Int = 1024
    /// Bytes of each epoll shard's reply cork (`ReplyCork`): the replies a read produces for its
    /// own connection gather there while the handler runs and leave in one `sendto` when it
    /// returns. A reply that does not fit is queued as before (counted by
    /// `switchboard_reply_cork_spills_total`). 16 KiB, uWebSockets' cork buffer: an echo of
    /// 1 KiB (a 1,028-byte frame, over a send block) took the queue and the end-of-turn flush
    /// with the former one-block cork (issue 16). Allocated once per shard; 0 turns corking off.
    public var replyCorkBytes: Int = 16 << 10
    /// io_uring: how long a wait that may sleep waits for `batchWaitCompletions` completions
    /// before any one ends it (the kernel's `min_wait_usec`, Linux 6.12; older kernels wait as
    /// before), on a shard with at least `batchWaitMinimumConnections` open. Under load a turn
    /// then handles a batch instead of the one or two completions that woke it: at 1,000 ×
    /// 20 B echo, ~20 echoes per turn instead of 1.4, and the server's user time per echo fell
    /// from ~0.46 to ~0.19 µs (`RESULTS.md`, 2026-12-03). A completion can wait up to this
    /// long, and only when it came within this long of the wait's start: a shard whose events
    /// come further apart than this wakes at once, as before. 0 turns it off.
    public var batchWaitMicroseconds: Int = 50
    /// io_uring: completions that end a batch wait at once (see `batchWaitMicroseconds`).
    public var batchWaitCompletions: Int = 32
    /// io_uring: open connections from which a shard batches its waits (see
    /// `batchWaitMicroseconds`). Below it, a connection's requests come one after another
    /// (a reply is awaited before the next request), and every one could wait the whole
    /// window: with few connections that adds latency without saving much.
    public var batchWaitMinimumConnections: Int = 512
    /// io_uring: each shard holds its sockets as direct descriptors, in a table of the ring
    /// (`io_uring_register_files_sparse`) instead of the process's descriptor table. A connection
    /// then costs no process descriptor, so a server holds more connections than `ulimit -n`
    /// (each shard's table has up to `RLIMIT_NOFILE` slots: the kernel caps a table there), and
    /// a send or receive skips the file lookup and its reference count. A socket is a process
    /// descriptor only from accept to adoption. A slot beyond the table, or a kernel without
    /// sparse tables (before 5.19), falls back to process descriptors
    /// (`switchboard_direct_descriptor_fallbacks_total`). false: process descriptors only.
    public var uringDirectDescriptors: Bool = true
    /// io_uring: at most this many kernel worker threads (io-wq) per shard, for the operations
    /// the kernel cannot run inline and hands to a thread of its own. Today that is only the
    /// `shutdown(SHUT_WR)` of a lingering close on a direct descriptor (an HTTP
    /// `Connection: close`, a protocol error): one per close, a few microseconds each. Without a
    /// limit the kernel may start up to four per submission-queue entry whenever its workers
    /// block; with one, further shutdowns wait in the kernel's queue for a free worker
    /// (`switchboard_uring_worker_waits_total`). 2: `wrk` with `Connection: close` at 100
    /// connections started 4 without a limit (11k closes/s); the shutdown itself is ~90% of a
    /// worker's time.
    public var uringWorkerThreads: Int = 2
    /// Tests only: caps each shard's registered file table below `maxConnectionsPerShard`, as a
    /// low `RLIMIT_NOFILE` would, so connection slots past it fall back to process descriptors.
    package var uringDirectDescriptorSlotsForTesting: Int? = nil
    /// Instruction counts under valgrind only (Benchmarks' valgrind-echo): an io_uring shard
    /// sleeps in poll(2) on its ring's descriptor, then reaps without waiting. valgrind 3.19
    /// runs `io_uring_enter` as a syscall that never blocks, holding its one lock for the
    /// whole wait, so no other thread of the process runs until the wait times out and the
    /// waiting thread's time slice ends: start-up (the acceptor's first turn) took minutes or
    /// never came. poll(2) releases that lock. It sleeps at most 1 ms (a deferred completion
    /// never wakes it), so an idle shard turns every millisecond. Never in production.
    package var waitThroughPoll = false
    /// Tests only: every batch wait passes the kernel a malformed argument, which it refuses
    /// (-EINVAL), so the shard's fallback to plain waits runs on a kernel that has min_wait.
    var batchWaitRefusedForTesting = false
    /// Bytes each epoll read asks for, into one buffer per shard (an idle connection holds
    /// none; its pages are touched only as far as reads reach). 256 KiB: a client's 64 KiB
    /// message (a 65,550-byte frame) arrives in one read and is handed over from it, where a
    /// 64 KiB read left 14 bytes for a second `recvfrom` and the message to be assembled
    /// (issue 16: 2.02 reads per echo of 64 KiB, now 1.08; the C++ peer reads up to 512 KiB).
    /// A full read is followed by another, up to the connection's read budget.
    public var epollReadBytes: Int = 256 << 10
    /// Free heap glibc's malloc keeps in an arena before it gives memory back to the kernel
    /// (`M_TRIM_THRESHOLD`; the `mmap` threshold is set to half of it, at most 32 MiB), applied
    /// process-wide when the shard group starts (`MallocTrim`). 64 MiB, the ceiling of glibc's
    /// own dynamic threshold: with its default of 128 KiB, frames of a few KiB freed after their
    /// send were returned to the kernel and faulted back in every turn (an io_uring echo of
    /// 16,000 bytes ran at 0.6× epoll's). 0 leaves malloc as it is.
    public var mallocTrimThresholdBytes: Int = 64 << 20
    /// A connection that receives nothing for this long is reported as idle.
    public var idleTimeoutMilliseconds: Int = 60_000
    /// Duration of the per-connection phase timer a protocol arms (HTTP: the time to receive a
    /// whole request once its first byte arrived).
    public var requestTimeoutMilliseconds: Int = 10_000
    /// After a final response with `Connection: close` or an error, how long input is read and
    /// discarded before the socket is closed, so the client sees the response rather than a reset.
    public var lingerTimeoutMilliseconds: Int = 2_000
    /// Granularity of the timers.
    public var tickMilliseconds: Int = 100
    /// Capacity of each shard's inbox for work posted from other threads.
    public var inboxCapacity: Int = 65_536
    /// Listen backlog.
    public var listenBacklog: Int = 4096
    /// Pin shard i to CPU i % cores.
    public var pinThreads: Bool = false
    /// The node number socket ids carry (0...255; a cluster gives each node its own, set from
    /// `cluster_node_id` by the broker).
    package var nodeID: Int = 0
    /// A TLS listener next to the plain one (nil: plaintext only). See `TLSConfiguration`.
    public var tls: TLSConfiguration? = nil

    public init() {}

    public var resolvedShardCount: Int {
        if shardCount > 0 { return min(shardCount, 255) }
        return max(1, min(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 255))
    }

    /// Checks the limits against each other; returns a message naming the first bad one.
    public func validate() -> String? {
        if shardCount < 0 || shardCount > 255 { return "shardCount must be 0...255" }
        if nodeID < 0 || nodeID > 255 { return "nodeID must be 0...255" }
        if maxConnectionsPerShard < 1 || maxConnectionsPerShard >= SocketID.maxSlots { return "maxConnectionsPerShard must be 1..<\(SocketID.maxSlots)" }
        if ringEntries < 8 || ringEntries > 32768 { return "ringEntries must be 8...32768" }
        if recvBufferCount < 1 || recvBufferCount > 32768 || recvBufferCount & (recvBufferCount - 1) != 0 { return "recvBufferCount must be a power of two, 1...32768" }
        if recvBufferBytes < 512 || recvBufferBytes > (1 << 20) { return "recvBufferBytes must be 512...1048576" }
        if recvBufferInitialCount < 1 { return "recvBufferInitialCount must be >= 1" }
        if maxSendQueueBytes < 1024 { return "maxSendQueueBytes must be >= 1024" }
        if maxBufferedBytesPerShard < maxSendQueueBytes { return "maxBufferedBytesPerShard must be >= maxSendQueueBytes" }
        if maxIOVecsPerSend < 1 || maxIOVecsPerSend > 1024 { return "maxIOVecsPerSend must be 1...1024" }
        if sendBlockBytes < 256 || sendBlockBytes > (1 << 20) { return "sendBlockBytes must be 256...1048576" }
        if sendCoalesceMaxFrameBytes < 0 || sendCoalesceMaxFrameBytes > sendBlockBytes { return "sendCoalesceMaxFrameBytes must be 0...sendBlockBytes" }
        if maxSendBlocksPerShard < 0 || maxSendBlocksPerShard > (1 << 24) { return "maxSendBlocksPerShard must be 0...16777216" }
        if sendBlocksKeptFree < 0 || sendBlocksKeptFree > maxSendBlocksPerShard { return "sendBlocksKeptFree must be 0...maxSendBlocksPerShard" }
        if replyCorkBytes < 0 || replyCorkBytes > (1 << 20) { return "replyCorkBytes must be 0...1048576" }
        if batchWaitMicroseconds < 0 || batchWaitMicroseconds > 10_000 { return "batchWaitMicroseconds must be 0...10000" }
        if batchWaitCompletions < 1 || batchWaitCompletions > ringEntries { return "batchWaitCompletions must be 1...ringEntries" }
        if batchWaitMinimumConnections < 1 { return "batchWaitMinimumConnections must be >= 1" }
        if uringWorkerThreads < 1 || uringWorkerThreads > 1024 { return "uringWorkerThreads must be 1...1024" }
        if epollReadBytes < (16 << 10) || epollReadBytes > (4 << 20) { return "epollReadBytes must be 16384...4194304" }
        if mallocTrimThresholdBytes != 0 && !((1 << 20)...(1 << 30)).contains(mallocTrimThresholdBytes) {
            return "mallocTrimThresholdBytes must be 0 or 1048576...1073741824"
        }
        if idleTimeoutMilliseconds < 1 || requestTimeoutMilliseconds < 1 || lingerTimeoutMilliseconds < 1 { return "timeouts must be positive" }
        // Timer deadlines are kept in 32 bits (TimerList): 2^30 ms is 12.4 days.
        let maxTimeout = TimerList.maxDurationMilliseconds
        if idleTimeoutMilliseconds > maxTimeout || requestTimeoutMilliseconds > maxTimeout || lingerTimeoutMilliseconds > maxTimeout {
            return "timeouts must be at most \(maxTimeout) ms"
        }
        if tickMilliseconds < 1 || tickMilliseconds > 1000 { return "tickMilliseconds must be 1...1000" }
        if inboxCapacity < 2 { return "inboxCapacity must be >= 2" }
        if let problem = tls?.validate() { return problem }
        return nil
    }
}

#if canImport(Glibc)
import Glibc
#endif
