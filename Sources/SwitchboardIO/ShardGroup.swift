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
///
/// `@unchecked Sendable`: `start()`, `beginShutdown`, `wait()` and `shutdown` are called by one
/// controlling thread (the owner, e.g. `Broker`), never concurrently; `shards` and `backend`
/// are written only by `start()` and meant to be read by other threads after it returned (the
/// caller's hand-off orders it). `port` and `tlsPort` are atomics: any thread may poll them
/// while `start()` runs (as `Broker.port` under a ServiceGroup allows) and reads 0 until the
/// listener is bound. The shards themselves are reached only through their any-thread API.
package final class ShardGroup: @unchecked Sendable {
    package let configuration: IOConfiguration
    package let host: String
    package let requestedPort: Int
    /// The bound port, 0 until `start()` has bound the listener. Any thread.
    package var port: Int { boundPort.load(ordering: .acquiring) }
    /// Stored once by `start()` (releasing), loaded by any thread (acquiring): a reader that
    /// sees the port also sees the listener set up before it.
    private let boundPort = ManagedAtomic<Int>(0)
    package private(set) var backend: IOBackendKind = .auto
    package private(set) var shards: [Shard] = []
    private var threads: [OSThread] = []
    private var acceptor: Acceptor?
    private var tlsAcceptor: Acceptor?
    /// The bound TLS port, 0 without a TLS listener or until `start()` has bound it. Any thread.
    package var tlsPort: Int { boundTLSPort.load(ordering: .acquiring) }
    /// Like `boundPort`, for the TLS listener.
    private let boundTLSPort = ManagedAtomic<Int>(0)
    /// The TLS certificates in force (nil without a TLS listener); `reloadTLS()` swaps them.
    package private(set) var tlsContexts: TLSContextStore?
    private let handlerFactory: @Sendable (Shard) -> ShardEventHandler
    private let logger: Logger
    private let stoppedFlag = ManagedAtomic<Bool>(false)
    /// Called once in `start()` with every shard, after they exist and before any shard thread
    /// runs (a place to wire shared structures that handlers use).
    package var prepare: (@Sendable ([Shard]) -> Void)?
    /// Tests only: called on each shard thread after its set-up succeeded; an error returned
    /// makes that shard's set-up fail as if the kernel had refused it (io_uring refused).
    var setUpFaultForTesting: (@Sendable (Int) -> IOError?)?

    package var acceptorMetrics: AcceptorMetrics? { acceptor?.metrics }

    /// - Parameter handlerFactory: called once per shard, on that shard's thread (already
    ///   marked as the shard's, so `shard.isCurrent` holds), before its loop starts.
    package init(configuration: IOConfiguration, host: String, port: Int,
                logger: Logger = Logger(label: "switchboard", factory: { _ in SwiftLogNoOpLogHandler() }),
                handlerFactory: @escaping @Sendable (Shard) -> ShardEventHandler) {
        self.configuration = configuration
        self.host = host
        self.requestedPort = port
        self.logger = logger
        self.handlerFactory = handlerFactory
    }

    /// Whether io_uring with the features the shards need can be set up here.
    package static func probeUring() -> Result<Void, IOError> {
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
    package func start() throws(IOError) {
        precondition(shards.isEmpty && acceptor == nil, "ShardGroup.start() runs once")
        if let problem = configuration.validate() { throw .invalidConfiguration(problem) }
        _ = sb_ignore_sigpipe()
        if !MallocTrim.apply(trimThresholdBytes: configuration.mallocTrimThresholdBytes) {
            logger.notice("malloc_trim_threshold_bytes: the allocator did not take \(configuration.mallocTrimThresholdBytes) (not glibc's malloc?)")
        }
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
        boundPort.store(Int(sb_local_port(listenFD)), ordering: .releasing)
        var tlsListenFD: Int32 = -1
        if let tls = configuration.tls {
            tlsListenFD = host.withCString { sb_listen_tcp($0, Int32(tls.port), Int32(configuration.listenBacklog), false) }
            if tlsListenFD < 0 {
                Glibc.close(listenFD)
                throw .system("listen (TLS) on \(host):\(tls.port)", -tlsListenFD)
            }
            boundTLSPort.store(Int(sb_local_port(tlsListenFD)), ordering: .releasing)
        }
        do {
            try startShardsAndAcceptor(listenFD: listenFD, tlsListenFD: tlsListenFD)
        } catch {
            // `startShardsAndAcceptor` left nothing running; a listener is ours unless its
            // acceptor took it (then it is closed already).
            if acceptor == nil { Glibc.close(listenFD) }
            if tlsListenFD >= 0 && tlsAcceptor == nil { Glibc.close(tlsListenFD) }
            acceptor = nil
            tlsAcceptor = nil
            throw error
        }
    }

    /// The part of `start()` after binding. On a throw, every thread it started has been
    /// joined and every shard's descriptors released; `acceptor` is nil unless it took the
    /// listener and then failed (its `stop()` already closed it).
    private func startShardsAndAcceptor(listenFD: Int32, tlsListenFD: Int32) throws(IOError) {
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
        if let store = tlsContexts {
            for s in shards { s.tlsState = TLSShardState(store: store, maxConnections: configuration.maxConnectionsPerShard) }
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
                // From here this thread is the shard's: set-up and the handler factory may
                // already use shard-only API (and pass its debug assertions).
                shard.bindToCurrentThread()
                do {
                    try shard.setUpOnThread()
                    if let injected = fault?(shard.index) { throw injected }
                } catch {
                    // This thread is the inbox's consumer: refuse what was posted meanwhile.
                    shard.abandon()
                    shard.unbindFromCurrentThread()
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
        if tlsListenFD >= 0 {
            do {
                let t = try Acceptor(listenFD: tlsListenFD, shards: shards, useUring: backend == .uring, tls: true)
                // From here the TLS acceptor owns its listener.
                tlsAcceptor = t
                try t.start()
            } catch {
                tlsAcceptor?.stop()
                a.stop()
                unwindShards()
                throw error
            }
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

    /// Reads the TLS certificate and key files again (SIGHUP, or an operator's API call). New
    /// handshakes use the new certificate; existing connections keep theirs. A bad new
    /// certificate leaves the old one in force; the error is logged and returned. Any thread.
    @discardableResult
    package func reloadTLS() -> Result<Void, TLSError> {
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
    package var tlsAcceptorMetrics: AcceptorMetrics? { tlsAcceptor?.metrics }

    /// Stops accepting, asks every shard to drain, and force-closes what is left after
    /// `graceMilliseconds`. Returns at once; `wait()` joins the threads.
    package func beginShutdown(graceMilliseconds: Int) {
        acceptor?.stop()
        tlsAcceptor?.stop()
        let deadline = monotonicMilliseconds() + Int64(graceMilliseconds)
        for s in shards {
            // The inbox may be momentarily full; a drain must not be lost. A stopped shard
            // refuses it, and needs none.
            while s.post(.drain(deadlineMilliseconds: deadline)) == .refused(.inboxFull) { usleep(1000) }
        }
    }

    /// Joins every shard thread (after `beginShutdown`).
    package func wait() {
        for t in threads { t.join() }
        threads = []
        for s in shards { s.releaseResources() }
        stoppedFlag.store(true, ordering: .sequentiallyConsistent)
    }

    package func shutdown(graceMilliseconds: Int) {
        beginShutdown(graceMilliseconds: graceMilliseconds)
        wait()
    }

    /// Total open connections (approximate, any thread).
    package var openConnections: Int { shards.reduce(0) { $0 + $1.metrics.connectionsOpen.value } }
}
