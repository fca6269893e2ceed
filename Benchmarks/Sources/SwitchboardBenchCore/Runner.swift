import SwitchboardWebSocket
import CLiburing
import Histogram
import SwitchboardIO
#if canImport(Glibc)
import Glibc
#endif

/// Latency figures in nanoseconds.
public struct LatencySummary: Sendable, Equatable {
    public var count: UInt64
    public var min: UInt64
    public var mean: Double
    public var p50: UInt64
    public var p90: UInt64
    public var p99: UInt64
    public var p999: UInt64
    public var max: UInt64
}

/// Everything a run measured.
public struct BenchResult: Sendable {
    public var options: BenchOptions
    public var connectionsRequested = 0
    public var established = 0
    public var failedConnections = 0
    public var closedByServer = 0
    public var errors: [String] = []
    /// Seconds from the first connect to the last connection resolved.
    public var connectSeconds = 0.0
    public var connectionsPerSecond = 0.0
    /// Seconds the figures below are divided by.
    public var measuredSeconds = 0.0
    /// Measured messages sent (echo/latency) or published (fanout).
    public var sent = 0
    /// Measured messages received (echo/latency: round trips; fanout: deliveries to subscribers).
    public var received = 0
    /// fanout: published x subscribers; echo/latency: sent.
    public var expected = 0
    public var lost = 0
    public var unmatched = 0
    /// fanout: replies subscribers awaited before subscribing counted (`--setup-replies`).
    public var setupReplies = 0
    public var publisherReceived = 0
    public var skipped = 0
    public var overflow = 0
    /// --busy-poll: client loop turns of 500 µs or more in the measured window, and the
    /// longest turn (nil without --busy-poll).
    public var clientStalls = 0
    public var clientLongestTurnNanos: Int64? = nil
    /// Scheduled runs (latency; fanout with --rate): measured messages that left 100 µs or
    /// more after their due time, and the largest delay (nil for an unscheduled run). Many
    /// late sends mean the client could not keep the rate: the latency includes its own queue.
    public var lateSends = 0
    public var maxSendLagNanos: Int64? = nil
    /// fanout, per-subscriber check (`SequenceChecker`), summed over the subscribers that
    /// connected: sequence numbers skipped or never delivered,
    public var sequenceMissing: Int64 = 0
    /// deliveries that came after a higher number from the same publisher (late or duplicate),
    public var reordered = 0
    /// deliveries from a publisher of another channel,
    public var misrouted = 0
    /// and how many subscribers were checked.
    public var verifiedSubscribers = 0
    /// The run stopped early: nothing was sent or received for `--drain` (a -n run whose
    /// server stopped answering would otherwise wait forever).
    public var stalledNanos: Int64? = nil
    public var messagesPerSecond = 0.0
    public var bytesInPerSecond = 0.0
    public var bytesOutPerSecond = 0.0
    public var latency: LatencySummary? = nil
    public var clientCPUSeconds = 0.0
    /// Server CPU over the measured window (`--server-pid`), user and system apart: a TLS
    /// figure is mostly user time (crypto), a plaintext one mostly system time (syscalls).
    public var serverCPU: CPUTimes? = nil
    public var serverCPUSeconds: Double? { serverCPU?.totalSeconds }
    public var serverRSSBeforeKiB: Int? = nil
    public var serverRSSAfterKiB: Int? = nil
    /// The anonymous part of `serverRSSBeforeKiB` (RssAnon): the server's own memory, without
    /// the pages of its binary and shared libraries that the kernel maps around every fault.
    public var serverAnonymousRSSBeforeKiB: Int? = nil

    public var rssBytesPerConnection: Double? {
        guard let b = serverRSSBeforeKiB, let a = serverRSSAfterKiB, established > 0 else { return nil }
        return Double(a - b) * 1024 / Double(established)
    }

    /// Harness CPU as a fraction of the measured wall time (1.0 = one core busy).
    /// 0 when less than a millisecond was measured (a run that never started has nothing to divide by).
    public var clientCPUUtilization: Double { measuredSeconds >= 1e-3 ? clientCPUSeconds / measuredSeconds : 0 }
}

public enum BenchError: Error, CustomStringConvertible, Sendable {
    case resolve(String)
    case setup(String)
    public var description: String {
        switch self {
        case .resolve(let s): return "cannot resolve target: \(s)"
        case .setup(let s): return s
        }
    }
}

/// Resolves the target to a sockaddr (localhost -> 127.0.0.1; names only with --allow-remote).
func resolveAddress(_ url: WebSocketURL, allowRemote: Bool) throws(BenchError) -> (bytes: [UInt8], family: Int32) {
    let host = url.host.lowercased() == "localhost" ? "127.0.0.1" : url.host
    var v4 = sockaddr_in()
    if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
        v4.sin_family = sa_family_t(AF_INET)
        v4.sin_port = in_port_t(UInt16(url.port).bigEndian)
        return (withUnsafeBytes(of: &v4) { Array($0) }, AF_INET)
    }
    var v6 = sockaddr_in6()
    if inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 {
        v6.sin6_family = sa_family_t(AF_INET6)
        v6.sin6_port = in_port_t(UInt16(url.port).bigEndian)
        return (withUnsafeBytes(of: &v6) { Array($0) }, AF_INET6)
    }
    guard allowRemote else { throw .resolve("'\(url.host)' is not a loopback address (use --allow-remote)") }
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var res: UnsafeMutablePointer<addrinfo>? = nil
    let rc = getaddrinfo(host, String(url.port), &hints, &res)
    guard rc == 0, let first = res else { throw .resolve("getaddrinfo(\(host)): \(String(cString: gai_strerror(rc)))") }
    defer { freeaddrinfo(res) }
    let bytes = Array(UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
    return (bytes, first.pointee.ai_family)
}

/// VmRSS of a process in KiB, from /proc/PID/status.
public func readRSSKiB(pid: Int32) -> Int? { readStatusKiB(pid: pid, field: "VmRSS") }

/// A `kB` field of /proc/PID/status (`VmRSS`, `RssAnon`, `RssFile`), in KiB.
public func readStatusKiB(pid: Int32, field: String) -> Int? {
    guard let text = readSmallFile("/proc/\(pid)/status") else { return nil }
    let prefix = field + ":"
    for line in text.split(separator: "\n") where line.hasPrefix(prefix) {
        return Int(line.dropFirst(prefix.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
    }
    return nil
}

/// CPU time of a process (all threads), user and system, in seconds.
public struct CPUTimes: Sendable, Equatable {
    public var userSeconds: Double
    public var systemSeconds: Double
    public var totalSeconds: Double { userSeconds + systemSeconds }

    public init(userSeconds: Double, systemSeconds: Double) {
        self.userSeconds = userSeconds
        self.systemSeconds = systemSeconds
    }

    /// The time spent between two readings of the same process.
    public static func - (end: CPUTimes, start: CPUTimes) -> CPUTimes {
        CPUTimes(userSeconds: end.userSeconds - start.userSeconds, systemSeconds: end.systemSeconds - start.systemSeconds)
    }
}

/// utime and stime of a process (all threads), from /proc/PID/stat.
public func readCPUTimes(pid: Int32) -> CPUTimes? {
    guard let text = readSmallFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    // After ')' : state(0) ppid(1) ... utime(11) stime(12)
    guard fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
    let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    return CPUTimes(userSeconds: u / ticksPerSecond, systemSeconds: s / ticksPerSecond)
}

func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

func processCPUSeconds() -> Double {
    var u = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
    return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
}

func sleepNanos(_ ns: Int64) {
    guard ns > 0 else { return }
    var ts = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
    var rem = timespec()
    while nanosleep(&ts, &rem) != 0 && errno == EINTR { ts = rem }
}

func writeStderr(_ s: String) {
    var t = s
    t.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Splits `total` into `parts` near-equal shares (the first ones get the remainder).
func share(_ total: Int, _ parts: Int, _ index: Int) -> Int {
    total / parts + (index < total % parts ? 1 : 0)
}

/// Runs one scenario to completion. `progress` prints a line per second on stderr.
public func runBenchmark(_ options: BenchOptions, progress: Bool = true) throws(BenchError) -> BenchResult {
    let (address, family) = try resolveAddress(options.url, allowRemote: options.allowRemote)
    _ = sb_raise_nofile_limit()
    if let reason = ConnectionCapacity.problem(
        connections: options.totalConnections, sources: options.sourceAddresses.count,
        descriptorLimit: ConnectionCapacity.descriptorLimit(), ephemeralPorts: ConnectionCapacity.ephemeralPorts()) {
        throw .setup(reason)
    }
    if let cpu = options.cpus.first { _ = sb_set_thread_affinity(Int32(cpu)) }

    // Connection layout: connection j goes to worker j % T.
    let total = options.totalConnections
    let threads = max(1, min(options.threads, total))
    var specs: [[(role: Role, globalIndex: Int, publisherIndex: Int)]] = Array(repeating: [], count: threads)
    var quotas = [Int](repeating: 0, count: threads)
    var scheduled = [Int](repeating: 0, count: threads)  // rate-driven connections per worker
    for j in 0..<total {
        let w = j % threads
        switch options.scenario {
        case .echo:
            specs[w].append((.echo, j, -1))
            scheduled[w] += 1
            if let n = options.messages { quotas[w] += share(n, total, j) }
        case .latency:
            specs[w].append((.latency, j, -1))
            scheduled[w] += 1
            if let n = options.messages { quotas[w] += share(n, total, j) }
        case .connect:
            specs[w].append((.idle, j, -1))
            scheduled[w] += 1
        case .fanout:
            if j < options.subscribers {
                specs[w].append((.subscriber, j, -1))
            } else {
                let p = j - options.subscribers
                specs[w].append((.publisher, j, p))
                scheduled[w] += 1
                if let n = options.messages { quotas[w] += share(n, options.publishers, p) }
            }
        }
    }
    let rateDriven = scheduled.reduce(0, +)
    let shared = SharedState(workers: threads, publishers: options.scenario == .fanout ? options.publishers : 0,
                             channels: options.scenario == .fanout ? max(options.channels, 1) : 0)
    let context = RunContext(options: options, address: address, family: family, shared: shared)
    var workers: [Worker] = []
    for w in 0..<threads {
        let fraction = rateDriven > 0 ? Double(scheduled[w]) / Double(rateDriven) : 0
        let plan = WorkerPlan(
            index: w,
            cpu: options.cpus.isEmpty ? nil : options.cpus[w % options.cpus.count],
            specs: specs[w],
            quota: options.messages == nil ? nil : quotas[w],
            rate: options.scheduledRate * fraction,
            openRate: options.scenario == .connect ? options.rate * Double(specs[w].count) / Double(total) : 0
        )
        workers.append(Worker(plan: plan, context: context))
    }

    var result = BenchResult(options: options)
    result.connectionsRequested = total
    if let pid = options.serverPID {
        result.serverRSSBeforeKiB = readRSSKiB(pid: pid)
        result.serverAnonymousRSSBeforeKiB = readStatusKiB(pid: pid, field: "RssAnon")
    }

    let runStart = sb_monotonic_ns()
    var handles: [OSThread] = []
    for w in workers {
        guard let t = OSThread.spawn(name: "bench-\(w.plan.index)", { w.run() }) else {
            shared.stop.store(1)
            for h in handles { h.join() }
            throw .setup("cannot start a client thread")
        }
        handles.append(t)
    }

    let counters = shared.counters
    func sum(_ f: (WorkerCounters) -> AtomicCounter) -> Int64 { counters.reduce(0) { $0 + f($1).load() } }
    var lastProgress = runStart
    var lastCompleted: Int64 = 0
    var lastBytes: Int64 = 0
    func progressLine(_ now: Int64, _ phase: String) {
        guard progress, now - lastProgress >= 1_000_000_000 else { return }
        let dt = Double(now - lastProgress) / 1e9
        let completed = sum { $0.completed }
        let bytes = sum { $0.bytesIn }
        let rate = Double(completed - lastCompleted) / dt
        let mbps = Double(bytes - lastBytes) / dt / 1e6
        lastProgress = now
        lastCompleted = completed
        lastBytes = bytes
        let elapsed = Double(now - runStart) / 1e9
        let channels = options.scenario == .fanout ? "  channels \(options.channels)" : ""
        writeStderr("[\(fixed(elapsed, 1))s] \(phase)  msgs/s \(fixed(rate, 0))  in \(fixed(mbps, 2)) MB/s  open \(sum { $0.open })  failed \(sum { $0.failed })\(channels)\n")
    }

    // Phase 1: connect everything.
    while counters.contains(where: { $0.ready.load() == 0 }) {
        sleepNanos(5_000_000)
        progressLine(sb_monotonic_ns(), "connecting")
    }
    let connectedAt = sb_monotonic_ns()
    let opened = sum { $0.open }

    var clientCPUStart = 0.0
    var serverCPUStart: CPUTimes? = nil
    var measureStartWall: Int64 = 0
    var measureStop: Int64 = 0

    if opened == 0 {
        shared.stop.store(1)
    } else if options.scenario == .connect {
        clientCPUStart = processCPUSeconds()
        serverCPUStart = options.serverPID.flatMap { readCPUTimes(pid: $0) }
        measureStartWall = connectedAt
        shared.startNanos.store(connectedAt)
        let end = connectedAt + options.durationNanos
        while true {
            let now = sb_monotonic_ns()
            if now >= end { break }
            progressLine(now, "holding")
            sleepNanos(min(10_000_000, end - now))
        }
        measureStop = sb_monotonic_ns()
        if let pid = options.serverPID { result.serverRSSAfterKiB = readRSSKiB(pid: pid) }
        shared.stop.store(1)
    } else {
        let start = sb_monotonic_ns() + (options.scenario == .fanout ? options.settleNanos : 0)
        let measureStart = start + options.warmupNanos
        let measureEnd = options.messages == nil ? measureStart + options.durationNanos : Int64.max
        shared.startNanos.store(start)
        var sampled = false
        var drainDeadline: Int64 = 0
        // Stall guard for -n runs (a duration run ends on its own): no message sent or
        // received for --drain ends the run, and the verdict says so.
        var lastActivity: Int64 = -1
        var lastActivityAt = start
        while true {
            let now = sb_monotonic_ns()
            if options.messages != nil && now >= start {
                let activity = sum { $0.completed } + sum { $0.sentMeasured } + sum { $0.receivedMeasured }
                if activity != lastActivity {
                    lastActivity = activity
                    lastActivityAt = now
                } else if now - lastActivityAt >= options.drainNanos {
                    result.stalledNanos = now - lastActivityAt
                    break
                }
            }
            if !sampled && now >= measureStart {
                sampled = true
                clientCPUStart = processCPUSeconds()
                serverCPUStart = options.serverPID.flatMap { readCPUTimes(pid: $0) }
                measureStartWall = now
            }
            if sum({ $0.open }) == 0 { break }
            if options.scenario != .fanout && options.messages == nil {
                if now >= measureEnd { break }
            } else if drainDeadline == 0 {
                if counters.allSatisfy({ $0.sendingDone.load() != 0 }) { drainDeadline = now + options.drainNanos }
            } else {
                let received = sum { $0.receivedMeasured }
                let expected = sum { $0.expectedMeasured }
                if received >= expected || now >= drainDeadline { break }
            }
            let phase = now < start ? "settling" : (now < measureStart ? "warm-up" : (drainDeadline != 0 ? "draining" : "measuring"))
            progressLine(now, phase)
            sleepNanos(options.messages == nil && options.scenario != .fanout ? min(2_000_000, max(measureEnd - now, 0)) : 2_000_000)
        }
        measureStop = sb_monotonic_ns()
        if !sampled {
            clientCPUStart = processCPUSeconds()
            measureStartWall = measureStop
        }
        if let pid = options.serverPID { result.serverRSSAfterKiB = readRSSKiB(pid: pid) }
        shared.stop.store(1)
    }
    let clientCPUEnd = processCPUSeconds()
    let serverCPUEnd = options.serverPID.flatMap { readCPUTimes(pid: $0) }
    for h in handles { h.join() }

    // Merge.
    var histogram = makeHistogram()
    var lastReceive: Int64 = 0
    var lastSend: Int64 = 0
    var lastOpened: Int64 = 0
    var bytesIn = 0, bytesOut = 0
    var expected = 0
    for w in workers {
        histogram.add(w.histogram)
        result.established += w.established
        result.failedConnections += w.failedConnects
        result.closedByServer += w.closedByServer
        for e in w.errors where !result.errors.contains(e) && result.errors.count < 8 { result.errors.append(e) }
        result.sent += w.sentMeasured
        expected += w.expectedMeasured
        result.received += w.receivedMeasured
        result.lost += w.lostMeasured
        result.unmatched += w.unmatched
        result.setupReplies += w.setupRepliesReceived
        result.publisherReceived += w.publisherReceived
        result.skipped += w.skipped
        if options.scheduledRate > 0 {
            result.lateSends += w.lateSends
            result.maxSendLagNanos = max(result.maxSendLagNanos ?? 0, w.maxSendLagNanos)
        }
        if options.busyPoll {
            result.clientStalls += w.stalls
            result.clientLongestTurnNanos = max(result.clientLongestTurnNanos ?? 0, w.longestTurnNanos)
        }
        result.overflow += w.overflow
        bytesIn += w.bytesInMeasured
        bytesOut += w.bytesOutMeasured
        lastReceive = max(lastReceive, w.lastReceive)
        lastSend = max(lastSend, w.lastSend)
        lastOpened = max(lastOpened, w.lastOpened)
    }
    // fanout: per publisher, its measured messages x the subscribers on its channel.
    result.expected = options.scenario == .fanout ? expected : result.sent
    if options.scenario == .fanout { verifySequences(workers, into: &result) }
    result.connectSeconds = Double(max(lastOpened, runStart) - runStart) / 1e9
    if result.established > 0 && result.connectSeconds > 0 {
        result.connectionsPerSecond = Double(result.established) / result.connectSeconds
    }
    let measureStart = workers.first.map { $0.measureStart } ?? 0
    var measuredNanos: Int64
    switch options.scenario {
    case .connect:
        measuredNanos = measureStop - measureStartWall
    case .echo, .latency:
        measuredNanos = options.messages == nil ? options.durationNanos : max(lastReceive, lastSend) - measureStart
    case .fanout:
        measuredNanos = max(lastReceive, lastSend) - measureStart
    }
    if measuredNanos <= 0 { measuredNanos = max(measureStop - measureStartWall, 1) }
    result.measuredSeconds = Double(measuredNanos) / 1e9
    if options.scenario != .connect {
        result.messagesPerSecond = Double(result.received) / result.measuredSeconds
        result.bytesInPerSecond = Double(bytesIn) / result.measuredSeconds
        result.bytesOutPerSecond = Double(bytesOut) / result.measuredSeconds
    }
    result.latency = latencySummary(histogram)
    // CPU over the measured window (scaled if the run ran on a bit: the join is quick).
    result.clientCPUSeconds = max(0, clientCPUEnd - clientCPUStart)
    if let a = serverCPUStart, let b = serverCPUEnd { result.serverCPU = b - a }
    return result
}

/// Finishes every connected subscriber's `SequenceChecker` against what each publisher of its
/// channel published in all, and sums the counts into `result`. Runs after the workers were
/// joined (their connections are no longer touched by any other thread).
func verifySequences(_ workers: [Worker], into result: inout BenchResult) {
    let options = result.options
    let k = max(options.channels, 1)
    var published = [Int64](repeating: 0, count: options.publishers)
    for w in workers {
        for c in w.conns where c.role == .publisher { published[c.publisherIndex] = c.pubSeq }
    }
    for w in workers {
        for c in w.conns where c.role == .subscriber && c.wasEstablished {
            guard var check = c.sequence else { continue }
            // Publishers of channel ch are ch, ch + K, ch + 2K, ...: local index j / K.
            check.finish(published: stride(from: c.channel, to: options.publishers, by: k).map { published[$0] })
            result.sequenceMissing += check.missing
            result.reordered += check.reordered
            result.misrouted += check.foreign
            result.verifiedSubscribers += 1
        }
    }
}

// MARK: - Formatting

func fixed(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return "0" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let r = (v * scale).rounded() / scale
    if digits == 0 { return String(Int64(r)) }
    let whole = Int64(r.magnitude)
    var frac = String(Int64(((r.magnitude - Double(whole)) * scale).rounded()))
    while frac.count < digits { frac = "0" + frac }
    return (r < 0 ? "-" : "") + "\(whole).\(frac)"
}

func micros(_ ns: UInt64) -> String { fixed(Double(ns) / 1000, 1) }

extension BenchResult {
    /// The human summary printed on stdout.
    public var summary: String {
        let o = options
        var s = "switchboard-bench \(o.scenario.rawValue) \(o.url.secure ? "wss" : "ws")://\(o.url.hostHeader)\(o.url.resource)\n"
        switch o.scenario {
        case .echo:
            s += "  connections \(o.connections), threads \(o.threads), size \(o.size) B, window \(o.window)"
        case .latency:
            s += "  connections \(o.connections), threads \(o.threads), size \(o.size) B, rate \(fixed(o.rate, 0)) msg/s (open loop)"
        case .fanout:
            s += "  subscribers \(o.subscribers), publishers \(o.publishers), channels \(o.channels), threads \(o.threads), size \(o.size) B, "
            s += o.rate > 0 ? "rate \(fixed(o.rate, 0)) msg/s" : "window \(o.window)"
            s += o.rawFanout ? ", raw" : ", template"
        case .connect:
            s += "  connections \(o.connections), threads \(o.threads), rate \(o.rate > 0 ? fixed(o.rate, 0) : "max") conn/s, hold \(fixed(Double(o.durationNanos) / 1e9, 1)) s"
        }
        if let n = o.messages { s += ", messages \(n)" } else if o.scenario != .connect { s += ", duration \(fixed(Double(o.durationNanos) / 1e9, 1)) s" }
        if o.warmupNanos > 0 { s += ", warm-up \(fixed(Double(o.warmupNanos) / 1e9, 1)) s" }
        s += "\n"
        s += "  connections: \(established) established, \(failedConnections) failed, \(closedByServer) closed by server"
        s += ", opened in \(fixed(connectSeconds, 3)) s (\(fixed(connectionsPerSecond, 0)) conn/s)\n"
        for e in errors { s += "  error: \(e)\n" }
        switch o.scenario {
        case .echo, .latency:
            s += "  round trips: \(received) in \(fixed(measuredSeconds, 3)) s = \(fixed(messagesPerSecond, 0)) msg/s"
            s += ", \(fixed(bytesInPerSecond / 1e6, 2)) MB/s payload each way\n"
            if lost > 0 || skipped > 0 || overflow > 0 { s += "  lost \(lost), skipped (connection down) \(skipped), not sent (buffer full) \(overflow)\n" }
        case .fanout:
            s += "  published \(sent), expected deliveries \(expected), received \(received)"
            s += " (\(expected > 0 ? fixed(Double(received) * 100 / Double(expected), 2) : "0")%)\n"
            s += "  deliveries: \(fixed(messagesPerSecond, 0)) msg/s over \(fixed(measuredSeconds, 3)) s, \(fixed(bytesInPerSecond / 1e6, 2)) MB/s; published \(fixed(Double(sent) / measuredSeconds, 0)) msg/s\n"
            if unmatched > 0 || publisherReceived > 0 { s += "  messages without a marker \(unmatched), received by publishers \(publisherReceived)\n" }
            if setupReplies > 0 { s += "  setup replies received by subscribers: \(setupReplies)\n" }
            s += "  order per subscriber (\(verifiedSubscribers) checked): \(sequenceMissing) missing, \(reordered) reordered, \(misrouted) from another channel\n"
        case .connect:
            if let b = serverRSSBeforeKiB, let a = serverRSSAfterKiB {
                s += "  server RSS: \(b) KiB before, \(a) KiB after"
                if let per = rssBytesPerConnection { s += ", \(fixed(per, 0)) B per connection" }
                if let anonymous = serverAnonymousRSSBeforeKiB { s += "; anonymous \(anonymous) KiB before" }
                s += "\n"
            }
        }
        if let l = latency {
            s += "  latency µs: p50 \(micros(l.p50))  p90 \(micros(l.p90))  p99 \(micros(l.p99))  p99.9 \(micros(l.p999))  max \(micros(l.max))  (mean \(fixed(l.mean / 1000, 1)), n=\(l.count))\n"
        }
        if let lag = maxSendLagNanos {
            s += "  schedule: \(lateSends) of \(sent) sends left 100 µs or more late, the latest by \(micros(UInt64(lag))) µs"
            s += sent > 0 && lateSends * 100 >= sent ? " (the client fell behind its rate: the latency includes its own queue)\n" : "\n"
        }
        if let longest = clientLongestTurnNanos {
            s += "  client loop (busy-poll): \(clientStalls) turns of 500 µs or more, longest \(micros(UInt64(longest))) µs\n"
        }
        s += "  client CPU: \(fixed(clientCPUSeconds, 2)) s (\(fixed(clientCPUUtilization * 100, 0))% of one core)"
        if let c = serverCPU {
            // "(N%)" stays right after the total: the bench scripts parse it.
            s += ", server CPU: \(fixed(c.totalSeconds, 2)) s (\(fixed(measuredSeconds > 0 ? c.totalSeconds / measuredSeconds * 100 : 0, 0))%)"
            s += ", user \(fixed(c.userSeconds, 2)) s, system \(fixed(c.systemSeconds, 2)) s"
        }
        s += "\n"
        // On its own line (scripts parse the line above): CPU per received message, both parts.
        if let c = serverCPU {
            let u = c.userSeconds, sy = c.systemSeconds
            let perMessage = received > 0 ? ", per message µs: user \(fixed(u * 1e6 / Double(received), 3)) system \(fixed(sy * 1e6 / Double(received), 3))" : ""
            s += "  server CPU split: user \(fixed(u, 2)) s, system \(fixed(sy, 2)) s\(perMessage)\n"
        }
        s += verdictLines(failures)
        return s
    }

    /// Every figure as one JSON object.
    public var json: String {
        let o = options
        return JSONWriter.document { j in
            j.field("scenario", o.scenario.rawValue)
            j.field("url", "\(o.url.secure ? "wss" : "ws")://\(o.url.hostHeader)\(o.url.resource)")
            j.key("options"); j.open()
            j.field("connections", o.connections); j.field("threads", o.threads); j.field("cpus", o.cpus.map(String.init).joined(separator: ","))
            j.field("size", o.size); j.field("window", o.window); j.field("rate", o.rate)
            j.field("durationSeconds", Double(o.durationNanos) / 1e9); j.field("warmupSeconds", Double(o.warmupNanos) / 1e9)
            if let m = o.messages { j.field("messages", m) } else { j.null("messages") }
            j.field("binary", o.binary)
            if o.scenario == .fanout {
                j.field("subscribers", o.subscribers); j.field("publishers", o.publishers); j.field("channels", o.channels)
                j.field("raw", o.rawFanout)
                // One field each (messages separated by newlines): a JSON object has unique keys.
                if !o.subscribeTemplates.isEmpty { j.field("subscribeTemplates", o.subscribeTemplates.joined(separator: "\n")) }
                if !o.publisherSetupTemplates.isEmpty { j.field("publisherSetupTemplates", o.publisherSetupTemplates.joined(separator: "\n")) }
                if o.setupReplies > 0 { j.field("setupReplies", o.setupReplies) }
                if let t = o.publishTemplate { j.field("publishTemplate", t) }
            }
            if let p = o.serverPID { j.field("serverPid", Int(p)) }
            j.close()
            j.key("connections"); j.open()
            j.field("requested", connectionsRequested); j.field("established", established)
            j.field("failed", failedConnections); j.field("closedByServer", closedByServer)
            j.field("maxFailed", options.maxFailedConnections.allowedFailures(of: connectionsRequested))
            j.field("connectSeconds", connectSeconds); j.field("perSecond", connectionsPerSecond)
            j.close()
            j.key("errors"); j.array(errors)
            j.field("passed", failures.isEmpty)
            j.key("failures"); j.array(failures)
            j.field("measuredSeconds", measuredSeconds)
            j.key("messages"); j.open()
            j.field("sent", sent); j.field("received", received); j.field("expected", expected)
            j.field("lost", lost); j.field("unmatched", unmatched); j.field("setupReplies", setupReplies); j.field("publisherReceived", publisherReceived)
            j.field("skipped", skipped); j.field("notSentBufferFull", overflow)
            if o.scenario == .fanout {
                j.field("sequenceMissing", Int(sequenceMissing)); j.field("reordered", reordered); j.field("misrouted", misrouted)
                j.field("verifiedSubscribers", verifiedSubscribers)
            }
            j.field("perSecond", messagesPerSecond); j.field("bytesInPerSecond", bytesInPerSecond); j.field("bytesOutPerSecond", bytesOutPerSecond)
            j.close()
            if let l = latency {
                j.key("latencyMicroseconds"); j.open()
                j.field("count", Int(l.count)); j.field("min", Double(l.min) / 1000); j.field("mean", l.mean / 1000)
                j.field("p50", Double(l.p50) / 1000); j.field("p90", Double(l.p90) / 1000); j.field("p99", Double(l.p99) / 1000)
                j.field("p99_9", Double(l.p999) / 1000); j.field("max", Double(l.max) / 1000)
                j.close()
            } else {
                j.null("latencyMicroseconds")
            }
            j.key("clientCpu"); j.open()
            j.field("seconds", clientCPUSeconds); j.field("utilization", clientCPUUtilization)
            if let lag = maxSendLagNanos {
                j.field("lateSends", lateSends); j.field("maxSendLagMicroseconds", Double(lag) / 1000)
            }
            if let longest = clientLongestTurnNanos {
                j.field("busyPollStalls", clientStalls); j.field("busyPollLongestTurnMicroseconds", Double(longest) / 1000)
            }
            j.close()
            if let c = serverCPU {
                j.field("serverCpuSeconds", c.totalSeconds)
                j.field("serverCpuUserSeconds", c.userSeconds); j.field("serverCpuSystemSeconds", c.systemSeconds)
            } else {
                j.null("serverCpuSeconds"); j.null("serverCpuUserSeconds"); j.null("serverCpuSystemSeconds")
            }
            if let b = serverRSSBeforeKiB { j.field("serverRssBeforeKiB", b) } else { j.null("serverRssBeforeKiB") }
            if let a = serverRSSAfterKiB { j.field("serverRssAfterKiB", a) } else { j.null("serverRssAfterKiB") }
            if let b = serverAnonymousRSSBeforeKiB { j.field("serverAnonymousRssBeforeKiB", b) } else { j.null("serverAnonymousRssBeforeKiB") }
            if let p = rssBytesPerConnection { j.field("serverRssBytesPerConnection", p) } else { j.null("serverRssBytesPerConnection") }
        }
    }
}

/// Minimal JSON emitter (no Foundation).
struct JSONWriter {
    var text = ""
    private var needComma = false

    mutating func open() { comma(); text += "{"; needComma = false }
    mutating func close() { text += "}"; needComma = true }
    mutating func key(_ k: String) { comma(); text += quote(k) + ":"; needComma = false }
    mutating func field(_ k: String, _ v: String) { key(k); text += quote(v); needComma = true }
    mutating func field(_ k: String, _ v: Int) { key(k); text += String(v); needComma = true }
    mutating func field(_ k: String, _ v: Bool) { key(k); text += v ? "true" : "false"; needComma = true }
    mutating func field(_ k: String, _ v: Double) { key(k); text += v.isFinite ? "\(v)" : "null"; needComma = true }
    mutating func null(_ k: String) { key(k); text += "null"; needComma = true }
    mutating func array(_ values: [String]) { text += "[" + values.map(quote).joined(separator: ",") + "]"; needComma = true }
    /// An array of objects, each written by `body` between its braces.
    mutating func objects<Element>(_ elements: [Element], _ body: (inout JSONWriter, Element) -> Void) {
        text += "["
        needComma = false
        for element in elements {
            open()
            body(&self, element)
            close()
        }
        text += "]"
        needComma = true
    }

    /// One object written by `body`, and a newline: the whole text of a `--json` file.
    static func document(_ body: (inout JSONWriter) -> Void) -> String {
        var j = JSONWriter()
        j.open()
        body(&j)
        j.close()
        return j.text + "\n"
    }

    private mutating func comma() { if needComma { text += "," } }

    func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

/// How both summaries end: the verdict, and one `failed:` line per failure (scripts parse them).
func verdictLines(_ failures: [String]) -> String {
    failures.isEmpty ? "  result: PASSED\n" : "  result: FAILED\n" + failures.map { "  failed: \($0)\n" }.joined()
}

/// Writes `text` to `path` (truncating). Returns false on failure.
public func writeFile(_ path: String, _ text: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var t = text
    return t.withUTF8 { buf in
        var off = 0
        while off < buf.count {
            let n = write(fd, buf.baseAddress! + off, buf.count - off)
            if n <= 0 { return false }
            off += n
        }
        return true
    }
}
