@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What an outbound connection reported, in order (written on the shard thread, read by the test).
final class OutboundLog: OutboundConnectionDelegate, @unchecked Sendable {
    enum Event: Equatable {
        case connected
        case received([UInt8])
        case disconnected(OutboundDisconnect, retryInMilliseconds: Int64?)
    }

    private var lock = pthread_mutex_t()
    private var stored: [Event] = []
    /// Bytes sent once connected (each connect), to see the connection carry traffic.
    var greeting: [UInt8] = []
    init() { pthread_mutex_init(&lock, nil) }

    private func append(_ e: Event) { pthread_mutex_lock(&lock); stored.append(e); pthread_mutex_unlock(&lock) }
    var events: [Event] { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return stored }
    var received: [UInt8] {
        events.reduce(into: []) { if case .received(let b) = $1 { $0 += b } }
    }
    var disconnects: [(OutboundDisconnect, Int64?)] {
        events.compactMap { if case .disconnected(let r, let d) = $0 { (r, d) } else { nil } }
    }
    var connects: Int { events.filter { $0 == .connected }.count }

    func outboundConnected(_ connection: OutboundConnection) {
        append(.connected)
        if !greeting.isEmpty { #expect(connection.send(OutboundBytes(greeting)) == .queued) }
    }
    func outboundReceived(_ connection: OutboundConnection, _ bytes: UnsafeRawBufferPointer) { append(.received(Array(bytes))) }
    func outboundDisconnected(_ connection: OutboundConnection, _ reason: OutboundDisconnect, retryInMilliseconds: Int64?) {
        append(.disconnected(reason, retryInMilliseconds: retryInMilliseconds))
    }
}

/// A 127.0.0.1 socket the test controls: bound (refuses connections) until `listen`, then it
/// completes connections in its backlog without ever accepting or answering them.
final class ControlledPort {
    let fd: Int32
    let port: Int
    init() throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) == 0 && getsockname(s, $0, &len) == 0 }
        }
        guard s >= 0, ok else { throw TestClient.Failure.connect(errno) }
        fd = s
        port = Int(UInt16(bigEndian: addr.sin_port))
    }
    func listen(backlog: Int32) { #expect(Glibc.listen(fd, backlog) == 0) }
    deinit { close(fd) }
}

/// An idle shard group (no client ever connects to it) whose shard 0 owns the outbound connections.
func startClientShard(_ backend: IOBackendKind) throws -> ShardGroup {
    let log = EventLog()
    let g = try startEcho(backend, shards: 1, log: log)
    #expect(g.backend == backend)
    return g
}

func open(_ g: ShardGroup, _ options: OutboundOptions, _ log: OutboundLog) -> UnsafeTransfer<OutboundConnection>? {
    onShard(g.shards[0]) { shard in UnsafeTransfer(shard.openOutbound(options, delegate: log)) }
}

/// Hands a shard-confined object back to the test thread (which only passes it back to the shard).
struct UnsafeTransfer<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

@Suite("OutboundConnection: client connections on a shard, both backends", .serialized)
struct OutboundConnectionTests {
    @Test("connects, carries bytes both ways, reconnects after the peer closes", arguments: [IOBackendKind.uring, .epoll])
    func echoAndReconnect(backend: IOBackendKind) throws {
        let serverLog = EventLog()
        let server = try startEcho(backend, shards: 1, log: serverLog)
        defer { server.shutdown(graceMilliseconds: 200) }
        let client = try startClientShard(backend)
        defer { client.shutdown(graceMilliseconds: 200) }
        let log = OutboundLog()
        log.greeting = Array("hello, outbound".utf8)
        var options = OutboundOptions(host: "127.0.0.1", port: server.port)
        options.initialBackoffMilliseconds = 20
        options.jitter = 0
        let connection = try #require(open(client, options, log))
        #expect(waitUntil { log.received == Array("hello, outbound".utf8) }, "echoed: \(log.events)")
        #expect(log.connects == 1)
        // The accepted side is the echo server's; the outbound side is not counted as accepted.
        #expect(client.shards[0].metrics.connectionsAccepted.value == 0)
        #expect(client.shards[0].metrics.outboundConnects.value == 1)

        // The server closes it ("Q" asks the echo handler to): the client reconnects by itself
        // after the first backoff (20 ms, no jitter) and greets again.
        let sent = onShard(client.shards[0]) { _ in connection.value.send(OutboundBytes(Array("Q".utf8))) }
        #expect(sent == .queued)
        #expect(waitUntil { log.connects == 2 }, "\(log.events)")
        #expect(log.disconnects.first.map { $0.0 == .closed && $0.1 == 20 } == true, "\(log.disconnects)")
        #expect(waitUntil { log.received == Array("hello, outboundhello, outbound".utf8) }, "\(log.events)")
        #expect(waitUntil { serverLog.opened.count == 2 && serverLog.closed.count == 1 })

        // Closed for good: one last event, no retry, no further connect.
        _ = onShard(client.shards[0]) { _ in connection.value.close() }
        #expect(waitUntil { log.disconnects.count == 2 })
        #expect(log.disconnects.last.map { $0.0 == .dropped && $0.1 == nil } == true, "\(log.disconnects)")
        #expect(waitUntil { serverLog.closed.count == 2 })
        #expect(log.connects == 2)
    }

    @Test("refused: exponential backoff up to the cap, then connects once the port listens", arguments: [IOBackendKind.uring, .epoll])
    func backoffThenConnect(backend: IOBackendKind) throws {
        let port = try ControlledPort()
        let client = try startClientShard(backend)
        defer { client.shutdown(graceMilliseconds: 200) }
        let log = OutboundLog()
        var options = OutboundOptions(host: "127.0.0.1", port: port.port)
        options.initialBackoffMilliseconds = 10
        options.maxBackoffMilliseconds = 80
        options.jitter = 0
        _ = try #require(open(client, options, log))
        #expect(waitUntil { log.disconnects.count >= 6 }, "\(log.events)")
        let delays = log.disconnects.prefix(6).map { $0.1 }
        #expect(delays == [10, 20, 40, 80, 80, 80], "doubling, capped")
        #expect(log.disconnects.prefix(6).allSatisfy { $0.0 == .connectFailed(errno: ECONNREFUSED) })
        #expect(log.connects == 0)
        port.listen(backlog: 8)
        #expect(waitUntil { log.connects == 1 }, "\(log.events)")
    }

    @Test("jitter takes a random part off each delay, never more than the fraction")
    func jitterBounds() {
        var options = OutboundOptions(host: "127.0.0.1", port: 1)
        options.initialBackoffMilliseconds = 100
        options.maxBackoffMilliseconds = 1_000
        options.jitter = 0.5
        #expect(options.backoffMilliseconds(afterFailures: 1, random: 0) == 100)
        #expect(options.backoffMilliseconds(afterFailures: 1, random: 1) == 50)
        #expect(options.backoffMilliseconds(afterFailures: 3, random: 0.5) == 300)
        #expect(options.backoffMilliseconds(afterFailures: 60, random: 0) == 1_000, "capped, no overflow")
        #expect(options.validate() == nil)
        options.host = "redis.example"
        #expect(options.validate() == "host 'redis.example' is not an IPv4 or IPv6 literal")
    }

    @Test("read timeout: a peer that never answers is dropped and reconnected", arguments: [IOBackendKind.uring, .epoll])
    func readTimeout(backend: IOBackendKind) throws {
        let port = try ControlledPort()
        port.listen(backlog: 8)  // completes connections, never answers
        let client = try startClientShard(backend)
        defer { client.shutdown(graceMilliseconds: 200) }
        let log = OutboundLog()
        var options = OutboundOptions(host: "127.0.0.1", port: port.port)
        options.readTimeoutMilliseconds = 50
        options.initialBackoffMilliseconds = 10
        options.jitter = 0
        let connection = try #require(open(client, options, log))
        #expect(waitUntil { log.connects == 1 })
        // Not awaiting input: an idle connection stays (no idle timeout for outbound ones).
        let quiet = ContinuousClock.now
        while ContinuousClock.now - quiet < .milliseconds(150) { sched_yield() }
        #expect(log.disconnects.isEmpty)
        let start = ContinuousClock.now
        _ = onShard(client.shards[0]) { _ in connection.value.setAwaitingInput(true) }
        #expect(waitUntil { !log.disconnects.isEmpty })
        let elapsed = ContinuousClock.now - start
        #expect(log.disconnects.first.map { $0.0 == .readTimeout } == true, "\(log.events)")
        #expect(elapsed >= .milliseconds(50) && elapsed < .milliseconds(1_000), "\(elapsed)")
        #expect(client.shards[0].metrics.outboundReadTimeouts.value == 1)
        #expect(waitUntil { log.connects == 2 }, "reconnected after the backoff")
    }

    @Test("connect timeout: a SYN nobody answers is abandoned and retried", arguments: [IOBackendKind.uring, .epoll])
    func connectTimeout(backend: IOBackendKind) throws {
        // A listener whose accept queue is full drops further SYNs: the connect hangs. With
        // backlog 0 the queue holds one connection (a second blocking filler would hang itself).
        let port = try ControlledPort()
        port.listen(backlog: 0)
        let filler = try TestClient(port: port.port, receiveTimeoutMilliseconds: 100)
        defer { withExtendedLifetime(filler) {} }
        let client = try startClientShard(backend)
        defer { client.shutdown(graceMilliseconds: 200) }
        let log = OutboundLog()
        var options = OutboundOptions(host: "127.0.0.1", port: port.port)
        options.connectTimeoutMilliseconds = 60
        options.initialBackoffMilliseconds = 10
        options.jitter = 0
        _ = try #require(open(client, options, log))
        #expect(waitUntil { log.disconnects.count >= 2 }, "\(log.events)")
        #expect(log.disconnects.prefix(2).allSatisfy { $0.0 == .connectTimeout }, "\(log.events)")
        #expect(log.connects == 0)
    }

    @Test("a draining shard closes its outbound connections and stops", arguments: [IOBackendKind.uring, .epoll])
    func drainCloses(backend: IOBackendKind) throws {
        let serverLog = EventLog()
        let server = try startEcho(backend, shards: 1, log: serverLog)
        defer { server.shutdown(graceMilliseconds: 200) }
        let client = try startClientShard(backend)
        let log = OutboundLog()
        _ = try #require(open(client, OutboundOptions(host: "127.0.0.1", port: server.port), log))
        #expect(waitUntil { log.connects == 1 })
        let before = ContinuousClock.now
        client.shutdown(graceMilliseconds: 5_000)
        #expect(ContinuousClock.now - before < .seconds(2), "the outbound connection did not hold the shard for the grace period")
        #expect(log.disconnects.count == 1 && log.disconnects[0].1 == nil, "\(log.events)")
        #expect(waitUntil { serverLog.closed.count == 1 })
    }
}
