import Atomics
import CLiburing
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The running I/O engine: one listening socket, an acceptor thread and N shard threads.
///
/// Start-up order matters: shard rings are created disabled, each shard thread enables its own
/// ring (SINGLE_ISSUER makes the enabling thread the owner), and only when every shard reports
/// ready does the acceptor start handing sockets over (MSG_RING to a disabled ring fails).
public final class ShardGroup: @unchecked Sendable {
    public let configuration: IOConfiguration
    public let host: String
    public let requestedPort: Int
    public private(set) var port: Int = 0
    public private(set) var backend: IOBackendKind = .auto
    public private(set) var shards: [Shard] = []
    private var threads: [OSThread] = []
    private var acceptor: Acceptor?
    private let handlerFactory: @Sendable (Shard) -> ShardEventHandler
    private let logger: Logger
    private let stoppedFlag = ManagedAtomic<Bool>(false)
    /// Called once in `start()` with every shard, after they exist and before any shard thread
    /// runs (a place to wire shared structures that handlers use).
    public var prepare: (@Sendable ([Shard]) -> Void)?
    /// Tests only: called on each shard thread after its set-up succeeded; an error returned
    /// makes that shard's set-up fail as if the kernel had refused it (io_uring refused).
    var setUpFaultForTesting: (@Sendable (Int) -> IOError?)?

    public var acceptorMetrics: AcceptorMetrics? { acceptor?.metrics }

    public init(configuration: IOConfiguration, host: String, port: Int,
                logger: Logger = Logger(label: "switchboard", factory: { _ in SwiftLogNoOpLogHandler() }),
                handlerFactory: @escaping @Sendable (Shard) -> ShardEventHandler) {
        self.configuration = configuration
        self.host = host
        self.requestedPort = port
        self.logger = logger
        self.handlerFactory = handlerFactory
    }

    /// Whether io_uring with the features the shards need can be set up here.
    public static func probeUring() -> Result<Void, IOError> {
        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        defer { ring.deallocate() }
        var applied: UInt32 = 0
        let rc = sb_ring_init(ring, 8, 0, &applied)
        if rc < 0 { return .failure(.system("io_uring_queue_init", -rc)) }
        defer { io_uring_queue_exit(ring) }
        var err: Int32 = 0
        guard let br = sb_setup_buf_ring(ring, 1, 0, &err) else { return .failure(.system("io_uring_register_buf_ring", -err)) }
        sb_free_buf_ring(ring, br, 1, 0)
        return .success(())
    }

    /// Binds, starts the shards and the acceptor. Returns once connections are being accepted.
    public func start() throws(IOError) {
        precondition(shards.isEmpty && acceptor == nil, "ShardGroup.start() runs once")
        if let problem = configuration.validate() { throw .invalidConfiguration(problem) }
        _ = sb_ignore_sigpipe()
        switch configuration.backend {
        case .epoll:
            backend = .epoll
        case .uring:
            if case .failure(let e) = Self.probeUring() { throw .unavailable("io_uring requested but unavailable: \(e)") }
            backend = .uring
        case .auto:
            if case .failure(let e) = Self.probeUring() {
                logger.notice("io backend: epoll (io_uring unavailable: \(e))")
                backend = .epoll
            } else {
                logger.info("io backend: io_uring")
                backend = .uring
            }
        }
        let listenFD = host.withCString { sb_listen_tcp($0, Int32(requestedPort), Int32(configuration.listenBacklog), false) }
        if listenFD < 0 { throw .system("listen on \(host):\(requestedPort)", -listenFD) }
        port = Int(sb_local_port(listenFD))
        do {
            try startShardsAndAcceptor(listenFD: listenFD)
        } catch {
            // `startShardsAndAcceptor` left nothing running; the listener is ours unless the
            // acceptor took it (then it is closed already).
            if acceptor == nil { Glibc.close(listenFD) }
            acceptor = nil
            throw error
        }
    }

    /// The part of `start()` after binding. On a throw, every thread it started has been
    /// joined and every shard's descriptors released; `acceptor` is nil unless it took the
    /// listener and then failed (its `stop()` already closed it).
    private func startShardsAndAcceptor(listenFD: Int32) throws(IOError) {
        let count = configuration.resolvedShardCount
        do {
            for i in 0..<count {
                shards.append(backend == .uring
                    ? try UringShard(index: i, configuration: configuration)
                    : try EpollShard(index: i, configuration: configuration))
            }
        } catch {
            unwindShards()
            throw error
        }

        prepare?(shards)
        let ready = ManagedAtomic<Int>(0)
        let failure = ManagedAtomic<Int>(0)
        let factory = handlerFactory
        let fault = setUpFaultForTesting
        let pin = configuration.pinThreads
        let cpus = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        for shard in shards {
            guard let t = OSThread.spawn(name: "sb-shard-\(shard.index)", {
                if pin { _ = sb_set_thread_affinity(Int32(shard.index % cpus)) }
                do {
                    try shard.setUpOnThread()
                    if let injected = fault?(shard.index) { throw injected }
                } catch {
                    // This thread is the inbox's consumer: refuse what was posted meanwhile.
                    shard.abandon()
                    failure.wrappingIncrement(ordering: .sequentiallyConsistent)
                    ready.wrappingIncrement(ordering: .sequentiallyConsistent)
                    return
                }
                shard.handler = factory(shard)
                ready.wrappingIncrement(ordering: .sequentiallyConsistent)
                shard.runLoop()
            }) else {
                unwindShards()
                throw .system("pthread_create", EAGAIN)
            }
            threads.append(t)
        }
        while ready.load(ordering: .sequentiallyConsistent) < shards.count { usleep(200) }
        if failure.load(ordering: .sequentiallyConsistent) > 0 {
            unwindShards()
            throw .unavailable("a shard failed to set up its \(backend.rawValue) loop")
        }
        let a: Acceptor
        do {
            a = try Acceptor(listenFD: listenFD, shards: shards, useUring: backend == .uring)
        } catch {
            unwindShards()
            throw error
        }
        // From here the acceptor owns the listener.
        acceptor = a
        do {
            try a.start()
        } catch {
            a.stop()
            unwindShards()
            throw error
        }
    }

    /// Undoes a partial start: shards whose thread runs are told to stop at once, shards whose
    /// thread never started are stopped here, every thread is joined and every shard's
    /// descriptors are released.
    private func unwindShards() {
        for (i, shard) in shards.enumerated() {
            if i < threads.count {
                // A shard whose set-up failed already refuses (.stopped): nothing to do.
                while shard.post(.drain(deadlineMilliseconds: 0)) == .refused(.inboxFull) { usleep(1000) }
            } else {
                shard.abandon()
            }
        }
        for t in threads { t.join() }
        threads = []
        for shard in shards { shard.releaseResources() }
        shards = []
    }

    /// Stops accepting, asks every shard to drain, and force-closes what is left after
    /// `graceMilliseconds`. Returns at once; `wait()` joins the threads.
    public func beginShutdown(graceMilliseconds: Int) {
        acceptor?.stop()
        let deadline = monotonicMilliseconds() + Int64(graceMilliseconds)
        for s in shards {
            // The inbox may be momentarily full; a drain must not be lost. A stopped shard
            // refuses it, and needs none.
            while s.post(.drain(deadlineMilliseconds: deadline)) == .refused(.inboxFull) { usleep(1000) }
        }
    }

    /// Joins every shard thread (after `beginShutdown`).
    public func wait() {
        for t in threads { t.join() }
        threads = []
        for s in shards { s.releaseResources() }
        stoppedFlag.store(true, ordering: .sequentiallyConsistent)
    }

    public func shutdown(graceMilliseconds: Int) {
        beginShutdown(graceMilliseconds: graceMilliseconds)
        wait()
    }

    /// Total open connections (approximate, any thread).
    public var openConnections: Int { shards.reduce(0) { $0 + $1.metrics.connectionsOpen.value } }
}
