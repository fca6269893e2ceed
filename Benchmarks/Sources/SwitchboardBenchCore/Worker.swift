import SwitchboardWebSocket
import CLiburing
import COpenSSL
import Histogram
import SwitchboardIO
#if canImport(Glibc)
import Glibc
#endif

enum Role: UInt8 { case echo, latency, subscriber, publisher, idle }
enum ConnState: UInt8 { case pending, connecting, handshaking, open, closed }

/// One client connection. Owned by exactly one worker thread.
final class Conn {
    let slot: Int
    let role: Role
    /// Index among all connections of the run (subscriber ch < K is the fanout ack tracker of channel ch).
    let globalIndex: Int
    /// fanout publishers: 0..<P; -1 otherwise.
    let publisherIndex: Int
    /// fanout: the channel (0..<K) of a subscriber or publisher; 0 otherwise.
    let channel: Int
    var fd: Int32 = -1
    var state = ConnState.pending
    var out = ByteBuffer()
    /// An incomplete frame (or handshake head) carried over to the next read.
    var pendingIn = ByteBuffer()
    var writeBlocked = false
    var dirty = false
    var deadline: Int64 = 0
    var handshake: WebSocketClientHandshake? = nil
    /// Send (echo) or intended-send (latency) times of messages awaiting their echo.
    var inflight = TimeRing()
    var messageBytes = 0
    var markerFound = false
    var markerPublisher = 0
    var markerSeq: Int64 = 0
    var markerNanos: Int64 = 0
    var closeSent = false
    /// fanout publishers: messages published so far (the next marker's SEQ).
    var pubSeq: Int64 = 0
    /// The handshake succeeded at some point (the connection may have closed since).
    var wasEstablished = false
    /// fanout subscribers: per-publisher order and gap check of what arrived.
    var sequence: SequenceChecker? = nil
    /// fanout subscribers: setup replies (`--setup-replies`) still awaited; the connection
    /// counts as resolved when this reaches 0.
    var setupRepliesPending = 0
    /// wss://: the TLS client (memory BIOs); `out` holds plaintext until `flush` seals it
    /// into `cipherOut`, which is what goes to the socket.
    var tls: OpaquePointer? = nil
    var tlsReady = false
    var cipherOut = ByteBuffer()

    init(slot: Int, role: Role, globalIndex: Int, publisherIndex: Int, channel: Int) {
        self.slot = slot
        self.role = role
        self.globalIndex = globalIndex
        self.publisherIndex = publisherIndex
        self.channel = channel
    }

    deinit {
        out.free()
        pendingIn.free()
        inflight.free()
        cipherOut.free()
        if let t = tls { sb_tls_conn_free(t) }
    }
}

/// What one worker is asked to do.
struct WorkerPlan: @unchecked Sendable {
    var index: Int
    var cpu: Int?
    var specs: [(role: Role, globalIndex: Int, publisherIndex: Int)]
    /// Measured messages this worker sends (echo/latency) or publishes (fanout); nil = duration.
    var quota: Int?
    /// Scheduled messages/s for this worker (latency, fanout publishers), 0 = none/window-bound.
    var rate: Double
    /// Connections opened per second by this worker (0 = as fast as possible).
    var openRate: Double
}

/// Immutable, run-wide inputs shared by the workers.
final class RunContext: @unchecked Sendable {
    let options: BenchOptions
    let address: [UInt8]
    let family: Int32
    let shared: SharedState
    /// fanout: what a subscriber / a publisher sends once connected, in order.
    let subscribeMessages: [[UInt8]]
    let publisherSetupMessages: [[UInt8]]
    /// fanout --publish-http: the request head up to (not including) Content-Length.
    let httpPublishHead: [UInt8]?
    let publishPrefix: [UInt8]
    let publishSuffix: [UInt8]
    let dataOpcode: UInt8
    /// Handshake target per channel (one entry unless fanout --channels K > 1).
    let channelURLs: [WebSocketURL]
    /// fanout: subscribers on each channel (a publisher's message is due to that many).
    let subscribersPerChannel: [Int]
    /// `--source-addresses` as sockaddr_in bytes; connection j binds to entry j % count.
    let sourceAddresses: [[UInt8]]

    init(options: BenchOptions, address: [UInt8], family: Int32, shared: SharedState) {
        self.options = options
        self.address = address
        self.family = family
        self.shared = shared
        subscribeMessages = options.subscribeTemplates.map { Array($0.utf8) }
        publisherSetupMessages = options.publisherSetupTemplates.map { Array($0.utf8) }
        httpPublishHead = options.publishHTTPPath.map { path in
            Array(("POST \(path) HTTP/1.1\r\nHost: \(options.url.hostHeader)\r\nContent-Type: application/json\r\n"
                   + options.publishHTTPHeaders.map { $0 + "\r\n" }.joined()).utf8)
        }
        if let t = options.publishTemplate, let (pre, suf) = splitTemplate(Array(t.utf8)) {
            publishPrefix = pre
            publishSuffix = suf
        } else {
            publishPrefix = []
            publishSuffix = []
        }
        dataOpcode = options.binary && options.publishTemplate == nil ? WebSocketOpcode.binary.rawValue : WebSocketOpcode.text.rawValue
        let k = options.scenario == .fanout ? max(options.channels, 1) : 1
        channelURLs = (0..<k).map { ch in
            var u = options.url
            u.resource = options.path(forChannel: ch)
            return u
        }
        subscribersPerChannel = (0..<k).map { options.subscribers(onChannel: $0) }
        sourceAddresses = options.sourceAddresses.map(SourceAddresses.socketAddress)
    }
}

/// Splits a publish template at its first "{{payload}}".
func splitTemplate(_ t: [UInt8]) -> ([UInt8], [UInt8])? {
    let needle = Array("{{payload}}".utf8)
    guard t.count >= needle.count else { return nil }
    for i in 0...(t.count - needle.count) where t[i..<(i + needle.count)].elementsEqual(needle) {
        return (Array(t[..<i]), Array(t[(i + needle.count)...]))
    }
    return nil
}

/// Highest latency the histograms track (60 s in ns); larger values are clamped.
let histogramHighest: UInt64 = 60_000_000_000

func makeHistogram() -> Histogram<UInt64> {
    Histogram<UInt64>(highestTrackableValue: histogramHighest, numberOfSignificantValueDigits: .three)
}

/// One client thread: its own epoll loop over its share of the connections.
final class Worker: @unchecked Sendable {
    let plan: WorkerPlan
    let ctx: RunContext
    let options: BenchOptions
    let counters: WorkerCounters
    var conns: [Conn] = []

    // Loop resources.
    private var epfd: Int32 = -1
    private var timerFD: Int32 = -1
    private var armedTimer: Int64 = 0
    private var scratch: UnsafeMutableRawPointer
    private var scratchCapacity: Int
    private let maxEvents = 256
    private let eventData: UnsafeMutablePointer<UInt64>
    private let eventFlags: UnsafeMutablePointer<UInt32>
    private var dirtyList: [Int] = []
    /// Masking keys: batched from the CSPRNG (SwitchboardWebSocket), no system call per frame.
    private var maskKeys = WebSocketMaskKeys()
    private let payload: UnsafeMutableRawPointer
    private var publishTemplate: UnsafeMutableRawPointer
    private var publishTemplateDirty = false
    private static let timerToken: UInt64 = .max
    private let maxConnecting = 256
    /// wss://: one client context for the worker's connections; received ciphertext lands in
    /// `tlsScratch` before it is decrypted into `scratch`.
    private var tlsContext: OpaquePointer? = nil
    private var tlsScratch: UnsafeMutableRawPointer? = nil
    private let tlsScratchBytes = 65_536
    private let outLimit = 64 << 20

    // Connection bookkeeping.
    private var nextToOpen = 0
    private var connecting = 0
    private var resolved = 0
    private var openStart: Int64 = 0
    private var nextOpenDue: Int64 = 0
    private var lastTimeoutScan: Int64 = 0
    private(set) var ready = false
    private var stopping = false

    // Phases.
    private var started = false
    private var loadBegun = false
    private var startNanos: Int64 = 0
    private(set) var measureStart: Int64 = .max
    private(set) var measureEnd: Int64 = .max
    private let durationMode: Bool
    private var quotaLeft: Int
    private var sendingStopped = false
    private var sendingDoneReported = false

    // Schedule (latency, fanout publishers at a fixed rate).
    private var scheduleConns: [Conn] = []
    private var scheduleK: Int64 = 0
    private var nextDue: Int64 = .max
    private var intervalNanos: Double = 0
    private var publisherConns: [Conn] = []
    private var needsAckPolling = false

    // Results (read by the main thread after join).
    var histogram = makeHistogram()
    private(set) var sentMeasured = 0
    /// Deliveries due for the measured messages sent (echo/latency: 1 each; fanout: the
    /// subscriber count of the publisher's channel each).
    private(set) var expectedMeasured = 0
    private(set) var receivedMeasured = 0
    private(set) var lostMeasured = 0
    private(set) var bytesInMeasured = 0
    private(set) var bytesOutMeasured = 0
    private(set) var completedAll = 0
    private(set) var bytesInAll = 0
    private(set) var lastReceive: Int64 = 0
    private(set) var lastSend: Int64 = 0
    private(set) var established = 0
    private(set) var openNow = 0
    private(set) var failedConnects = 0
    private(set) var closedByServer = 0
    private(set) var unmatched = 0
    /// fanout subscribers: setup replies received (`--setup-replies`), not counted in `unmatched`.
    private(set) var setupRepliesReceived = 0
    private(set) var unexpected = 0
    private(set) var publisherReceived = 0
    private(set) var skipped = 0
    /// --busy-poll, measured window: loop turns of at least `Worker.stallNanos` (the client
    /// was descheduled, interrupted or stolen from: a latency tail it shares with the server),
    /// and the longest turn.
    private(set) var stalls = 0
    private(set) var longestTurnNanos: Int64 = 0
    private var previousTurnNanos: Int64 = 0
    static let stallNanos: Int64 = 500_000
    /// Scheduled runs (latency, fanout at a rate), measured window: messages that left
    /// `Worker.lateSendNanos` or more after their due time, and the largest delay.
    private(set) var lateSends = 0
    private(set) var maxSendLagNanos: Int64 = 0
    static let lateSendNanos: Int64 = 100_000
    private(set) var overflow = 0
    private(set) var lastOpened: Int64 = 0
    private(set) var errors: [String] = []

    init(plan: WorkerPlan, context: RunContext) {
        self.plan = plan
        ctx = context
        options = context.options
        counters = context.shared.counters[plan.index]
        durationMode = context.options.messages == nil
        quotaLeft = plan.quota ?? Int.max
        scratchCapacity = 256 * 1024
        scratch = .allocate(byteCount: scratchCapacity, alignment: 64)
        eventData = .allocate(capacity: maxEvents)
        eventFlags = .allocate(capacity: maxEvents)
        let size = context.options.size
        payload = .allocate(byteCount: max(size, 1), alignment: 16)
        for i in 0..<size { payload.storeBytes(of: UInt8(97 + i % 26), toByteOffset: i, as: UInt8.self) }
        let templateBytes = context.publishPrefix.count + max(size, 64) + context.publishSuffix.count
        publishTemplate = .allocate(byteCount: templateBytes, alignment: 16)
        resetPublishTemplate()
        for (i, s) in plan.specs.enumerated() {
            let channel: Int
            switch s.role {
            case .subscriber: channel = context.options.channel(ofSubscriber: s.globalIndex)
            case .publisher: channel = context.options.channel(ofPublisher: s.publisherIndex)
            default: channel = 0
            }
            let c = Conn(slot: i, role: s.role, globalIndex: s.globalIndex, publisherIndex: s.publisherIndex, channel: channel)
            if s.role == .subscriber { c.sequence = SequenceChecker(publishers: context.options.publishers(onChannel: channel)) }
            conns.append(c)
            if s.role == .latency { scheduleConns.append(c) }
            if s.role == .publisher { publisherConns.append(c); if plan.rate > 0 { scheduleConns.append(c) } }
        }
        if plan.rate > 0 { intervalNanos = 1e9 / plan.rate }
        dirtyList.reserveCapacity(conns.count)
        if context.options.url.secure {
            tlsContext = sb_tls_bench_client_ctx_new()
            tlsScratch = .allocate(byteCount: tlsScratchBytes, alignment: 64)
        }
    }

    deinit {
        scratch.deallocate()
        eventData.deallocate()
        eventFlags.deallocate()
        payload.deallocate()
        publishTemplate.deallocate()
        tlsScratch?.deallocate()
        if let t = tlsContext { sb_tls_ctx_free(t) }
        if epfd >= 0 { close(epfd) }
        if timerFD >= 0 { close(timerFD) }
    }

    private func resetPublishTemplate() {
        let pre = ctx.publishPrefix, suf = ctx.publishSuffix, size = options.size
        pre.withUnsafeBytes { if $0.count > 0 { publishTemplate.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        memset(publishTemplate + pre.count, 120, size)  // 'x'
        suf.withUnsafeBytes { if $0.count > 0 { (publishTemplate + pre.count + size).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        publishTemplateDirty = false
    }

    // MARK: Errors

    private func note(_ error: String) {
        if errors.count < 8 && !errors.contains(error) { errors.append(error) }
    }

    private func errnoText(_ what: String, _ e: Int32) -> String {
        "\(what): \(String(cString: strerror(e)))"
    }

    // MARK: Loop

    func run() {
        if let cpu = plan.cpu { _ = sb_set_thread_affinity(Int32(cpu)) }
        epfd = sb_epoll_create()
        guard epfd >= 0 else {
            note(errnoText("epoll_create", -epfd))
            failAllUnopened()
            counters.ready.store(1)
            counters.sendingDone.store(1)
            return
        }
        timerFD = TimerFD.create()
        if timerFD >= 0 { _ = sb_epoll_ctl(epfd, SB_EPOLL_CTL_ADD, timerFD, SB_EPOLLIN, Self.timerToken) }
        openStart = sb_monotonic_ns()
        let openInterval = plan.openRate > 0 ? 1e9 / plan.openRate : 0

        while ctx.shared.stop.load() == 0 {
            var timeout: Int32 = 10
            var wake: Int64 = .max
            if !ready && nextOpenDue > 0 { wake = nextOpenDue }
            if started {
                if !loadBegun { wake = min(wake, startNanos) }
                else if !sendingStopped && nextDue != .max { wake = min(wake, nextDue) }
                if needsAckPolling && !sendingStopped { timeout = 1 }
            }
            // --busy-poll while load runs: no sleep, so no timer either; the schedule is
            // checked every turn.
            let polling = options.busyPoll && started && !sendingStopped
            if polling { timeout = 0 } else if wake != .max { armTimer(wake) }
            let n = sb_epoll_wait(epfd, eventData, eventFlags, Int32(maxEvents), timeout)
            if n > 0 {
                for i in 0..<Int(n) { dispatch(eventData[i], eventFlags[i]) }
            }
            let now = sb_monotonic_ns()
            if polling {
                // A busy-polling turn never sleeps: a long one is time the client lost.
                let turn = now - previousTurnNanos
                if previousTurnNanos >= measureStart && now <= measureEnd {
                    if turn >= Self.stallNanos { stalls += 1 }
                    longestTurnNanos = max(longestTurnNanos, turn)
                }
                previousTurnNanos = now
            } else {
                previousTurnNanos = 0
            }
            if !ready {
                openMore(now, interval: openInterval)
                if now - lastTimeoutScan > 10_000_000 { scanTimeouts(now); lastTimeoutScan = now }
                if resolved == conns.count {
                    ready = true
                    counters.ready.store(1)
                }
            }
            if ready && !started {
                let s = ctx.shared.startNanos.load()
                if s != 0 { begin(s) }
            }
            if started { tick(now) }
            flushDirty()
            publishCounters()
        }
        shutdownConnections()
        publishCounters()
    }

    private func publishCounters() {
        counters.completed.store(Int64(completedAll))
        counters.bytesIn.store(Int64(bytesInAll))
        counters.open.store(Int64(openNow))
        counters.failed.store(Int64(failedConnects))
        counters.sentMeasured.store(Int64(sentMeasured))
        counters.expectedMeasured.store(Int64(expectedMeasured))
        counters.receivedMeasured.store(Int64(receivedMeasured + lostMeasured))
        if sendingStopped && !sendingDoneReported {
            sendingDoneReported = true
            counters.sendingDone.store(1)
        }
    }

    private func armTimer(_ at: Int64) {
        guard timerFD >= 0, at != armedTimer else { return }
        armedTimer = at
        TimerFD.arm(timerFD, absoluteNanos: at)
    }

    @inline(__always) private func dispatch(_ token: UInt64, _ ev: UInt32) {
        if token == Self.timerToken {
            var buf: UInt64 = 0
            _ = read(timerFD, &buf, 8)
            armedTimer = 0
            return
        }
        let c = conns[Int(token)]
        switch c.state {
        case .closed, .pending:
            return
        case .connecting:
            if ev & (SB_EPOLLOUT | SB_EPOLLERR | SB_EPOLLHUP) != 0 { completeConnect(c) }
        case .handshaking, .open:
            if ev & SB_EPOLLOUT != 0 && c.writeBlocked { flush(c) }
            if c.state != .closed && ev & (SB_EPOLLIN | SB_EPOLLRDHUP | SB_EPOLLHUP | SB_EPOLLERR) != 0 {
                readConn(c)
                // Answer right away (still one send for everything this read produced) so the
                // server gets work while this loop goes on with the other connections, instead
                // of idling until the end of the turn.
                if c.dirty && !c.writeBlocked && c.state == .open { flush(c) }
            }
        }
    }

    // MARK: Opening

    private func openMore(_ now: Int64, interval: Double) {
        while nextToOpen < conns.count && connecting < maxConnecting {
            if interval > 0 {
                let due = openStart + Int64(Double(nextToOpen) * interval)
                if due > now { nextOpenDue = due; return }
            }
            startConnect(conns[nextToOpen], now)
            nextToOpen += 1
        }
        nextOpenDue = 0
    }

    private func startConnect(_ c: Conn, _ now: Int64) {
        connecting += 1
        c.deadline = now + options.connectTimeoutNanos
        let fd = socket(ctx.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { c.state = .connecting; fail(c, errnoText("socket", errno)); return }
        c.fd = fd
        _ = sb_set_nodelay(fd)
        if !ctx.sourceAddresses.isEmpty {
            let e = SourceAddresses.bind(fd, ctx.sourceAddresses[c.globalIndex % ctx.sourceAddresses.count])
            guard e == 0 else { c.state = .connecting; fail(c, errnoText("bind source address", e)); return }
        }
        let rc = ctx.address.withUnsafeBytes { connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
        if rc == 0 {
            c.state = .connecting
            guard sb_epoll_ctl(epfd, SB_EPOLL_CTL_ADD, fd, SB_EPOLLIN | SB_EPOLLOUT | SB_EPOLLRDHUP, UInt64(c.slot)) == 0 else {
                fail(c, "epoll_ctl add"); return
            }
            completeConnect(c)
            return
        }
        let e = errno
        c.state = .connecting
        guard e == EINPROGRESS || e == EINTR else { fail(c, errnoText("connect", e)); return }
        guard sb_epoll_ctl(epfd, SB_EPOLL_CTL_ADD, fd, SB_EPOLLIN | SB_EPOLLOUT | SB_EPOLLRDHUP, UInt64(c.slot)) == 0 else {
            fail(c, "epoll_ctl add"); return
        }
    }

    private func completeConnect(_ c: Conn) {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { err = errno }
        if err != 0 { fail(c, errnoText("connect", err)); return }
        c.state = .handshaking
        _ = sb_epoll_ctl(epfd, SB_EPOLL_CTL_MOD, c.fd, SB_EPOLLIN | SB_EPOLLRDHUP, UInt64(c.slot))
        if c.role == .publisher && ctx.httpPublishHead != nil {
            // An HTTP publisher has no handshake: open once connected.
            becameOpen(c, sb_monotonic_ns())
            return
        }
        let hs = WebSocketClientHandshake(url: ctx.channelURLs[c.channel], headers: options.headers)
        c.handshake = hs
        hs.request.withUnsafeBytes { c.out.append($0.baseAddress!, $0.count) }
        if let tctx = tlsContext {
            // The upgrade request waits in `out` until the TLS handshake is done.
            guard let t = sb_tls_conn_new_client(tctx) else { fail(c, "TLS: cannot create a session"); return }
            // The client's records are Switchboard's own after a TLS 1.3 handshake (unless
            // --openssl-records): OpenSSL's cost per record would make the client, not the
            // server, the limit of a TLS run.
            if !options.opensslRecords { sb_tls_set_own_records(t, 1) }
            c.tls = t
            c.tlsReady = false
            guard sb_tls_handshake(t) >= 0 else { fail(c, "TLS handshake failed"); return }
        }
        markDirty(c)
    }

    private func scanTimeouts(_ now: Int64) {
        for i in 0..<nextToOpen {
            let c = conns[i]
            if (c.state == .connecting || c.state == .handshaking) && c.deadline < now {
                fail(c, c.state == .connecting ? "connect timed out" : "handshake timed out")
            }
        }
    }

    private func failAllUnopened() {
        for c in conns where c.state == .pending {
            c.state = .closed
            failedConnects += 1
            resolved += 1
        }
    }

    private func becameOpen(_ c: Conn, _ now: Int64) {
        c.state = .open
        c.handshake = nil
        connecting -= 1
        established += 1
        openNow += 1
        lastOpened = now
        c.wasEstablished = true
        if c.role == .subscriber { ctx.shared.establishedSubscribers[c.channel].add(1) }
        // A subscriber awaiting setup replies resolves when the last one arrives (or it fails).
        if c.role == .subscriber && ctx.options.setupReplies > 0 {
            c.setupRepliesPending = ctx.options.setupReplies
        } else {
            resolved += 1
        }
        let setup = c.role == .subscriber ? ctx.subscribeMessages : c.role == .publisher ? ctx.publisherSetupMessages : []
        for m in setup {
            let mask = nextMask()
            m.withUnsafeBytes { appendMaskedFrame(&c.out, opcode: WebSocketOpcode.text.rawValue, payload: $0.baseAddress, count: $0.count, mask: mask) }
        }
        if !setup.isEmpty { markDirty(c) }
        if loadBegun && c.role == .echo { fillEcho(c, now) }
    }

    /// Closes the socket and does the bookkeeping. `reason` nil = orderly (shutdown).
    private func fail(_ c: Conn, _ reason: String?, byServer: Bool = false) {
        let previous = c.state
        if c.fd >= 0 { close(c.fd); c.fd = -1 }
        c.state = .closed
        if previous == .connecting || previous == .handshaking {
            connecting -= 1
            resolved += 1
            failedConnects += 1
        } else if previous == .open {
            openNow -= 1
            if c.setupRepliesPending > 0 {
                // Never subscribed: resolved (as failed), so the run does not wait for it.
                c.setupRepliesPending = 0
                resolved += 1
                failedConnects += 1
            }
            if byServer && !stopping { closedByServer += 1 }
        }
        if let r = reason, !stopping { note(r) }
        // Messages still in flight at shutdown are not lost, just unanswered when time ran out.
        while let ts = c.inflight.pop() { if ts >= measureStart && !stopping { lostMeasured += 1 } }
        c.out.free()
        c.pendingIn.free()
        c.cipherOut.free()
        if let t = c.tls { sb_tls_conn_free(t); c.tls = nil }
    }

    // MARK: Writing

    @inline(__always) private func markDirty(_ c: Conn) {
        if !c.dirty { c.dirty = true; dirtyList.append(c.slot) }
    }

    private func flushDirty() {
        guard !dirtyList.isEmpty else { return }
        for slot in dirtyList {
            let c = conns[slot]
            c.dirty = false
            if c.state != .closed && c.state != .connecting && !c.writeBlocked { flush(c) }
        }
        dirtyList.removeAll(keepingCapacity: true)
    }

    /// Encrypts what `out` holds (once the TLS handshake is done) and moves the ciphertext
    /// OpenSSL produced into `cipherOut`. false when the connection failed.
    private func seal(_ c: Conn, _ t: OpaquePointer) -> Bool {
        if c.tlsReady && !c.out.isEmpty {
            guard sb_tls_write(t, c.out.readPointer, c.out.count) == Int32(c.out.count) else {
                fail(c, "TLS write failed")
                return false
            }
            c.out.clear()
        }
        let pending = sb_tls_pending_out(t)
        if pending > 0 {
            let p = c.cipherOut.reserve(pending)
            c.cipherOut.commit(Int(sb_tls_take_out(t, p, pending)))
        }
        return true
    }

    /// One send(2) of everything queued for the connection (more only after a partial write).
    /// wss://: the queued plaintext is sealed first and the ciphertext is what is sent.
    private func flush(_ c: Conn) {
        let isTLS = c.tls != nil
        if let t = c.tls, !seal(c, t) { return }
        while !(isTLS ? c.cipherOut.isEmpty : c.out.isEmpty) {
            let n = isTLS ? send(c.fd, c.cipherOut.readPointer, c.cipherOut.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                          : send(c.fd, c.out.readPointer, c.out.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            if n > 0 { if isTLS { c.cipherOut.consume(n) } else { c.out.consume(n) }; continue }
            let e = errno
            if n < 0 && e == EINTR { continue }
            if n < 0 && (e == EAGAIN || e == EWOULDBLOCK) {
                if !c.writeBlocked {
                    c.writeBlocked = true
                    _ = sb_epoll_ctl(epfd, SB_EPOLL_CTL_MOD, c.fd, SB_EPOLLIN | SB_EPOLLOUT | SB_EPOLLRDHUP, UInt64(c.slot))
                }
                return
            }
            fail(c, errnoText("send", e), byServer: true)
            return
        }
        if c.writeBlocked {
            c.writeBlocked = false
            _ = sb_epoll_ctl(epfd, SB_EPOLL_CTL_MOD, c.fd, SB_EPOLLIN | SB_EPOLLRDHUP, UInt64(c.slot))
        }
    }

    @inline(__always) private func nextMask() -> UInt32 { maskKeys.nextKey() }

    /// Queues one data message carrying the fixed payload; `stamp` goes to the in-flight FIFO.
    @inline(__always) private func sendPayload(_ c: Conn, stamp: Int64) -> Bool {
        if c.out.count > outLimit { overflow += 1; return false }
        appendMaskedFrame(&c.out, opcode: ctx.dataOpcode, payload: payload, count: options.size, mask: nextMask())
        c.inflight.push(stamp)
        markDirty(c)
        return true
    }

    /// Queues one published message whose marker carries `stamp`.
    @inline(__always) private func publish(_ c: Conn, stamp: Int64) -> Bool {
        if c.out.count > outLimit { overflow += 1; return false }
        let pre = ctx.publishPrefix.count
        let size = options.size
        let markerLength = writeMarker(publishTemplate + pre, publisher: c.publisherIndex, seq: c.pubSeq, nanos: stamp)
        var payloadLength = size
        if markerLength > size {
            payloadLength = markerLength
            ctx.publishSuffix.withUnsafeBytes { if $0.count > 0 { (publishTemplate + pre + markerLength).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            publishTemplateDirty = true
        } else if publishTemplateDirty {
            memset(publishTemplate + pre + markerLength, 120, size - markerLength)
            ctx.publishSuffix.withUnsafeBytes { if $0.count > 0 { (publishTemplate + pre + size).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            publishTemplateDirty = false
        }
        let total = pre + payloadLength + ctx.publishSuffix.count
        if let head = ctx.httpPublishHead {
            let lengthLine = Array("Content-Length: \(total)\r\n\r\n".utf8)
            head.withUnsafeBytes { c.out.append($0.baseAddress!, $0.count) }
            lengthLine.withUnsafeBytes { c.out.append($0.baseAddress!, $0.count) }
            c.out.append(publishTemplate, total)
        } else {
            appendMaskedFrame(&c.out, opcode: ctx.dataOpcode, payload: publishTemplate, count: total, mask: nextMask())
        }
        c.pubSeq += 1
        markDirty(c)
        return true
    }

    // MARK: Reading

    private func readConn(_ c: Conn) {
        let carried = c.pendingIn.count
        if scratchCapacity - carried < 65_536 {
            let newCapacity = carried + 256 * 1024
            scratch.deallocate()
            scratch = .allocate(byteCount: newCapacity, alignment: 64)
            scratchCapacity = newCapacity
        }
        if carried > 0 { scratch.copyMemory(from: c.pendingIn.readPointer, byteCount: carried) }
        if let t = c.tls {
            readTLS(c, t, carried: carried)
            return
        }
        guard let n = receive(c, into: scratch + carried, scratchCapacity - carried) else { return }
        c.pendingIn.clear()
        process(c, carried + n, now: sb_monotonic_ns())
    }

    /// One recv(2) of `c`'s socket, for the plain and the TLS read alike. nil when there is
    /// nothing to process: no bytes were ready, or the server closed or the socket failed (then
    /// the connection is failed here, with the reason the run reports).
    @inline(__always) private func receive(_ c: Conn, into buffer: UnsafeMutableRawPointer, _ capacity: Int) -> Int? {
        let n = recv(c.fd, buffer, capacity, 0)
        if n == 0 {
            fail(c, c.state == .handshaking ? "server closed during the handshake" : "server closed the connection", byServer: true)
            return nil
        }
        if n < 0 {
            let e = errno
            if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return nil }
            fail(c, errnoText("recv", e), byServer: true)
            return nil
        }
        return n
    }

    /// wss:// reads: ciphertext into `tlsScratch`, the handshake advanced, plaintext decrypted
    /// into `scratch` after the carried bytes, then the same `process` as plaintext.
    private func readTLS(_ c: Conn, _ t: OpaquePointer, carried: Int) {
        guard let n = receive(c, into: tlsScratch!, tlsScratchBytes) else { return }
        guard sb_tls_feed(t, tlsScratch!, n) == Int32(n) else { fail(c, "TLS feed failed"); return }
        if !c.tlsReady {
            let r = sb_tls_handshake(t)
            if r < 0 { fail(c, "TLS handshake failed", byServer: true); return }
            if r == 1 { c.tlsReady = true }
            markDirty(c)  // handshake messages, or the upgrade request once ready
            if !c.tlsReady { return }
        }
        var total = carried
        while true {
            if scratchCapacity - total < 17_408 {
                let newCapacity = scratchCapacity * 2
                let fresh = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 64)
                fresh.copyMemory(from: scratch, byteCount: total)
                scratch.deallocate()
                scratch = fresh
                scratchCapacity = newCapacity
            }
            let r = sb_tls_read(t, scratch + total, scratchCapacity - total)
            if r > 0 { total += Int(r); continue }
            if r == 0 { break }
            fail(c, r == -1 ? "server closed the connection" : "TLS record error", byServer: true)
            return
        }
        if sb_tls_pending_out(t) > 0 { markDirty(c) }
        guard total > carried else { return }
        c.pendingIn.clear()
        process(c, total, now: sb_monotonic_ns())
    }

    private func process(_ c: Conn, _ total: Int, now: Int64) {
        if c.role == .publisher && ctx.httpPublishHead != nil { processHTTPResponses(c, total); return }
        var off = 0
        if c.state == .handshaking {
            switch c.handshake!.validate(UnsafeRawBufferPointer(start: scratch, count: total)) {
            case .incomplete:
                c.pendingIn.append(scratch, total)
                return
            case .rejected(let why):
                fail(c, "handshake rejected: " + why)
                return
            case .accepted(let headBytes, _, _):
                off = headBytes
                becameOpen(c, now)
            }
        }
        while c.state == .open {
            guard let h = WebSocketFrameHeader.parse(scratch + off, available: total - off) else { break }
            if h.payloadLength > 1 << 62 { fail(c, "frame length out of range"); return }
            let length = Int(h.payloadLength)
            let frameLength = h.headerLength + length
            if total - off < frameLength { break }
            let p = scratch + off + h.headerLength
            if h.isMasked { _ = Masking.apply(key: h.maskKey, phase: 0, source: p, destination: p, count: length) }
            handleFrame(c, h, length, p, now)
            off += frameLength
        }
        if c.state != .closed && off < total { c.pendingIn.append(scratch + off, total - off) }
    }

    /// fanout --publish-http: counts the complete responses in `scratch[0..<total]` (status line,
    /// headers, a Content-Length body) and keeps the incomplete rest; anything but 200 fails
    /// the connection (and so the run).
    private func processHTTPResponses(_ c: Conn, _ total: Int) {
        let bytes = UnsafeRawBufferPointer(start: scratch, count: total)
        var off = 0
        while off < total {
            var headEnd = -1
            var i = off
            while i + 3 < total {
                if bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 { headEnd = i + 4; break }
                i += 1
            }
            guard headEnd > 0 else { break }
            let head = String(decoding: bytes[off..<headEnd], as: UTF8.self)
            let lines = head.split(separator: "\r\n")
            let status = lines.first.map { $0.split(separator: " ") }.flatMap { $0.count >= 2 ? Int($0[1]) : nil }
            var contentLength = 0
            for line in lines.dropFirst() {
                let parts = line.split(separator: ":", maxSplits: 1)
                if parts.count == 2 && parts[0].lowercased() == "content-length" {
                    contentLength = Int(parts[1].drop { $0 == " " }) ?? -1
                }
            }
            guard let status, contentLength >= 0 else { fail(c, "unparsable HTTP response: \(lines.first ?? "")"); return }
            if total - headEnd < contentLength { break }
            guard status == 200 else {
                let body = String(decoding: bytes[headEnd..<(headEnd + contentLength)], as: UTF8.self)
                fail(c, "HTTP publish answered \(status): \(body.prefix(200))", byServer: true)
                return
            }
            publisherReceived += 1
            off = headEnd + contentLength
        }
        if c.state != .closed && off < total { c.pendingIn.append(scratch + off, total - off) }
    }

    @inline(__always) private func handleFrame(_ c: Conn, _ h: WebSocketFrameHeader, _ length: Int, _ p: UnsafeMutableRawPointer, _ now: Int64) {
        switch h.opcodeBits {
        case 1, 2:
            c.messageBytes = length
            c.markerFound = false
            scanMarker(c, p, length)
            if h.fin { messageDone(c, now) }
        case 0:
            c.messageBytes += length
            scanMarker(c, p, length)
            if h.fin { messageDone(c, now) }
        case 8:
            if !c.closeSent {
                c.closeSent = true
                appendMaskedFrame(&c.out, opcode: WebSocketOpcode.close.rawValue, payload: p, count: min(length, 2), mask: nextMask())
                flush(c)
            }
            if c.state != .closed { fail(c, "server sent a close frame", byServer: true) }
        case 9:
            appendMaskedFrame(&c.out, opcode: WebSocketOpcode.pong.rawValue, payload: p, count: min(length, 125), mask: nextMask())
            markDirty(c)
        case 10:
            break
        default:
            fail(c, "unknown opcode \(h.opcodeBits)")
        }
    }

    @inline(__always) private func scanMarker(_ c: Conn, _ p: UnsafeRawPointer, _ n: Int) {
        guard c.role == .subscriber, !c.markerFound, n >= 10 else { return }
        if let m = findMarker(p, n) {
            c.markerFound = true
            c.markerPublisher = m.publisher
            c.markerSeq = m.seq
            c.markerNanos = m.nanos
        }
    }

    @inline(__always) private func record(_ latency: Int64) {
        histogram.record(UInt64(clamping: min(max(latency, 0), Int64(histogramHighest))))
    }

    @inline(__always) private func messageDone(_ c: Conn, _ now: Int64) {
        switch c.role {
        case .echo, .latency:
            completedAll += 1
            bytesInAll += c.messageBytes
            guard let ts = c.inflight.pop() else { unexpected += 1; return }
            if ts >= measureStart && (!durationMode || now <= measureEnd) {
                receivedMeasured += 1
                bytesInMeasured += c.messageBytes
                record(now - ts)
                lastReceive = now
            }
            if c.role == .echo { fillEcho(c, now) }
        case .subscriber:
            completedAll += 1
            bytesInAll += c.messageBytes
            guard c.markerFound else {
                if c.setupRepliesPending > 0 {
                    setupRepliesReceived += 1
                    c.setupRepliesPending -= 1
                    if c.setupRepliesPending == 0 { resolved += 1 }
                } else {
                    unmatched += 1
                }
                return
            }
            // Publisher j is on channel j % K and is the (j / K)-th publisher of that channel
            // (one channel, the common case, skips the division on this per-delivery path).
            let k = ctx.subscribersPerChannel.count
            let local = k == 1 ? c.markerPublisher : (c.markerPublisher % k == c.channel ? c.markerPublisher / k : -1)
            c.sequence?.record(publisher: local, seq: c.markerSeq)
            // Subscriber ch (< K) is on channel ch: it acks for that channel's publishers.
            if c.globalIndex < ctx.subscribersPerChannel.count, c.markerPublisher >= 0, c.markerPublisher < ctx.shared.acks.count {
                let a = ctx.shared.acks[c.markerPublisher]
                if c.markerSeq > a.load() { a.store(c.markerSeq) }
            }
            if c.markerNanos >= measureStart {
                receivedMeasured += 1
                bytesInMeasured += c.messageBytes
                record(now - c.markerNanos)
                lastReceive = now
            }
        case .publisher:
            publisherReceived += 1
        case .idle:
            unexpected += 1
        }
    }

    // MARK: Load generation

    private func begin(_ start: Int64) {
        started = true
        startNanos = start
        measureStart = start + options.warmupNanos
        measureEnd = durationMode ? measureStart + options.durationNanos : .max
        if !scheduleConns.isEmpty { nextDue = start }
        // Publishers whose channel's ack tracker (subscriber `channel`) lives on another
        // worker learn about acks only by polling.
        var localTrackers = Set<Int>()
        for c in conns where c.role == .subscriber && c.globalIndex < ctx.subscribersPerChannel.count { localTrackers.insert(c.globalIndex) }
        needsAckPolling = options.scenario == .fanout && plan.rate == 0
            && publisherConns.contains { !localTrackers.contains($0.channel) }
        let sends: Bool
        switch options.scenario {
        case .echo, .latency: sends = !conns.isEmpty
        case .fanout: sends = !publisherConns.isEmpty
        case .connect: sends = false
        }
        if !sends || (plan.quota ?? 1) == 0 { sendingStopped = true }
    }

    /// May a message stamped `stamp` be sent? Counts it as measured when it is.
    @inline(__always) private func admit(_ stamp: Int64) -> Bool {
        if sendingStopped { return false }
        if stamp < measureStart { return true }
        if durationMode {
            if stamp >= measureEnd { sendingStopped = true; return false }
            return true
        }
        if quotaLeft <= 0 { sendingStopped = true; return false }
        return true
    }

    @inline(__always) private func countSent(_ stamp: Int64, bytes: Int, deliveries: Int = 1) {
        lastSend = stamp
        if stamp >= measureStart {
            sentMeasured += 1
            expectedMeasured += deliveries
            bytesOutMeasured += bytes
            if !durationMode {
                quotaLeft -= 1
                if quotaLeft == 0 { sendingStopped = true }
            }
        }
    }

    private func fillEcho(_ c: Conn, _ now: Int64) {
        guard loadBegun, c.state == .open else { return }
        while c.inflight.count < options.window && admit(now) {
            guard sendPayload(c, stamp: now) else { return }
            countSent(now, bytes: options.size)
        }
    }

    private func tick(_ now: Int64) {
        if !loadBegun {
            if now < startNanos { return }
            loadBegun = true
            if options.scenario == .echo { for c in conns where c.role == .echo { fillEcho(c, now) } }
        }
        switch options.scenario {
        case .echo:
            if durationMode && now >= measureEnd { sendingStopped = true }
            if openNow == 0 { sendingStopped = true }
        case .latency, .fanout:
            if !scheduleConns.isEmpty {
                runSchedule(now)
            } else if !publisherConns.isEmpty {
                fillPublishers(now)
            }
            if options.scenario == .fanout && durationMode && now >= measureEnd { sendingStopped = true }
            if openNow == 0 { sendingStopped = true }
        case .connect:
            break
        }
    }

    /// Open loop: message k is due at start + k * interval, round-robin over the connections.
    /// Latency is taken from the due time, so a late send (or a stalled loop) is charged.
    private func runSchedule(_ now: Int64) {
        while nextDue <= now && admit(nextDue) {
            let c = scheduleConns[Int(scheduleK % Int64(scheduleConns.count))]
            let stamp = nextDue
            scheduleK += 1
            nextDue = startNanos + Int64(Double(scheduleK) * intervalNanos)
            if stamp >= measureStart {
                // How late the client is: a message that leaves after its due time is charged
                // that delay, and past a point the latency is the client's own queue.
                let lagNanos = sb_monotonic_ns() - stamp
                if lagNanos >= Self.lateSendNanos { lateSends += 1 }
                if lagNanos > maxSendLagNanos { maxSendLagNanos = lagNanos }
            }
            if c.state == .open {
                let ok = c.role == .publisher ? publish(c, stamp: stamp) : sendPayload(c, stamp: stamp)
                if ok {
                    countSent(stamp, bytes: options.size, deliveries: c.role == .publisher ? deliveries(c) : 1)
                } else if stamp >= measureStart { skipped += 1 }
            } else if stamp >= measureStart {
                skipped += 1
            }
        }
        if sendingStopped { nextDue = .max }
    }

    /// Deliveries due for one message of publisher `c`: the subscribers of its channel that
    /// connected (final once load has begun).
    @inline(__always) private func deliveries(_ c: Conn) -> Int {
        Int(ctx.shared.establishedSubscribers[c.channel].load())
    }

    /// Closed loop for publishers at rate 0: at most `window` messages per publisher that
    /// its channel's ack tracker (subscriber `channel`; subscriber 0 with one channel) has
    /// not yet received.
    private func fillPublishers(_ now: Int64) {
        for c in publisherConns where c.state == .open {
            let acks = ctx.shared.acks[c.publisherIndex]
            while c.pubSeq - 1 - acks.load() < Int64(options.window) && admit(now) {
                guard publish(c, stamp: now) else { break }
                countSent(now, bytes: options.size, deliveries: deliveries(c))
            }
        }
    }

    // MARK: Shutdown

    private func shutdownConnections() {
        stopping = true
        for c in conns where c.state != .closed && c.state != .pending {
            if c.state == .open && !c.closeSent {
                c.closeSent = true
                var code = UInt16(1000).bigEndian
                appendMaskedFrame(&c.out, opcode: WebSocketOpcode.close.rawValue, payload: &code, count: 2, mask: nextMask())
                if !c.writeBlocked { _ = send(c.fd, c.out.readPointer, c.out.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            }
            fail(c, nil)
        }
    }
}

/// timerfd through dlsym: Swift's Glibc module does not export <sys/timerfd.h>.
enum TimerFD {
    typealias Create = @convention(c) (Int32, Int32) -> Int32
    typealias SetTime = @convention(c) (Int32, Int32, UnsafePointer<itimerspec>?, UnsafeMutablePointer<itimerspec>?) -> Int32
    static let functions: (Create, SetTime)? = {
        guard let h = dlopen(nil, RTLD_NOW), let c = dlsym(h, "timerfd_create"), let s = dlsym(h, "timerfd_settime") else { return nil }
        return (unsafeBitCast(c, to: Create.self), unsafeBitCast(s, to: SetTime.self))
    }()

    /// A non-blocking CLOCK_MONOTONIC timerfd, or -1.
    static func create() -> Int32 {
        guard let f = functions else { return -1 }
        return f.0(CLOCK_MONOTONIC, 0o4000 | 0o2000000)  // TFD_NONBLOCK | TFD_CLOEXEC
    }

    static func arm(_ fd: Int32, absoluteNanos: Int64) {
        guard let f = functions else { return }
        var spec = itimerspec()
        spec.it_value.tv_sec = Int(max(absoluteNanos, 1) / 1_000_000_000)
        spec.it_value.tv_nsec = Int(max(absoluteNanos, 1) % 1_000_000_000)
        _ = f.1(fd, 1, &spec, nil)  // TFD_TIMER_ABSTIME
    }
}
