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
    private var tlsAcceptor: Acceptor?
    /// The bound TLS port, 0 without a TLS listener. Valid after `start()`.
    public private(set) var tlsPort: Int = 0
    /// The TLS certificates in force (nil without a TLS listener); `reloadTLS()` swaps them.
    public private(set) var tlsContexts: TLSContextStore?
    private let handlerFactory: @Sendable (Shard) -> ShardEventHandler
    private let logger: Logger
    private let stoppedFlag = ManagedAtomic<Bool>(false)
    /// Called once in `start()` with every shard, after they exist and before any shard thread
    /// runs (a place to wire shared structures that handlers use).
    public var prepare: (@Sendable ([Shard]) -> Void)?

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
        // Certificates first: a bad one fails start-up with its reason before anything binds.
        if let tls = configuration.tls {
            do { tlsContexts = try TLSContextStore(configuration: tls) } catch {
                throw .invalidConfiguration("TLS: \(error.message)")
            }
        }
        let listenFD = host.withCString { sb_listen_tcp($0, Int32(requestedPort), Int32(configuration.listenBacklog), false) }
        if listenFD < 0 { throw .system("listen on \(host):\(requestedPort)", -listenFD) }
        port = Int(sb_local_port(listenFD))
        var tlsListenFD: Int32 = -1
        if let tls = configuration.tls {
            tlsListenFD = host.withCString { sb_listen_tcp($0, Int32(tls.port), Int32(configuration.listenBacklog), false) }
            if tlsListenFD < 0 {
                Glibc.close(listenFD)
                throw .system("listen (TLS) on \(host):\(tls.port)", -tlsListenFD)
            }
            tlsPort = Int(sb_local_port(tlsListenFD))
        }

        let count = configuration.resolvedShardCount
        do {
            for i in 0..<count {
                shards.append(backend == .uring
                    ? try UringShard(index: i, configuration: configuration)
                    : try EpollShard(index: i, configuration: configuration))
            }
        } catch {
            Glibc.close(listenFD)
            if tlsListenFD >= 0 { Glibc.close(tlsListenFD) }
            shards = []
            throw error
        }
        if let store = tlsContexts {
            for s in shards { s.tlsState = TLSShardState(store: store, maxConnections: configuration.maxConnectionsPerShard) }
        }

        prepare?(shards)
        let ready = ManagedAtomic<Int>(0)
        let failure = ManagedAtomic<Int>(0)
        let factory = handlerFactory
        let pin = configuration.pinThreads
        let cpus = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        for shard in shards {
            guard let t = OSThread.spawn(name: "sb-shard-\(shard.index)", {
                if pin { _ = sb_set_thread_affinity(Int32(shard.index % cpus)) }
                do {
                    try shard.setUpOnThread()
                } catch {
                    failure.wrappingIncrement(ordering: .sequentiallyConsistent)
                    ready.wrappingIncrement(ordering: .sequentiallyConsistent)
                    return
                }
                shard.handler = factory(shard)
                ready.wrappingIncrement(ordering: .sequentiallyConsistent)
                shard.runLoop()
            }) else {
                throw .system("pthread_create", EAGAIN)
            }
            threads.append(t)
        }
        while ready.load(ordering: .sequentiallyConsistent) < shards.count { usleep(200) }
        if failure.load(ordering: .sequentiallyConsistent) > 0 {
            Glibc.close(listenFD)
            if tlsListenFD >= 0 { Glibc.close(tlsListenFD) }
            for s in shards { s.post(.drain(deadlineMilliseconds: 0)) }
            for t in threads { t.join() }
            throw .unavailable("a shard failed to set up its \(backend.rawValue) loop")
        }
        let a = try Acceptor(listenFD: listenFD, shards: shards, useUring: backend == .uring, logger: logger)
        try a.start()
        acceptor = a
        if tlsListenFD >= 0 {
            let t = try Acceptor(listenFD: tlsListenFD, shards: shards, useUring: backend == .uring, logger: logger, tls: true)
            try t.start()
            tlsAcceptor = t
        }
    }

    /// Reads the TLS certificate and key files again (SIGHUP, or an operator's API call). New
    /// handshakes use the new certificate; existing connections keep theirs. A bad new
    /// certificate leaves the old one in force; the error is logged and returned. Any thread.
    @discardableResult
    public func reloadTLS() -> Result<Void, TLSError> {
        guard let store = tlsContexts else { return .failure(TLSError("no TLS listener is configured")) }
        let result = store.reload()
        switch result {
        case .success:
            logger.notice("TLS certificates reloaded from \(store.configuration.certificate.chainPath)")
        case .failure(let error):
            logger.error("TLS reload refused, the previous certificate stays in force: \(error.message)")
        }
        return result
    }

    /// TLS acceptor counters (nil without a TLS listener).
    public var tlsAcceptorMetrics: AcceptorMetrics? { tlsAcceptor?.metrics }

    /// Stops accepting, asks every shard to drain, and force-closes what is left after
    /// `graceMilliseconds`. Returns at once; `wait()` joins the threads.
    public func beginShutdown(graceMilliseconds: Int) {
        acceptor?.stop()
        tlsAcceptor?.stop()
        let deadline = monotonicMilliseconds() + Int64(graceMilliseconds)
        for s in shards {
            // The inbox may be momentarily full; a drain must not be lost.
            while !s.post(.drain(deadlineMilliseconds: deadline)) { usleep(1000) }
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
