@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// Echoes every read, and checks the shard's data-path counters each time the loop may sleep
/// (`hasPendingWork` is asked right before the wait): they must equal what it saw itself.
/// Shard thread only, like every handler; the test reads the atomics.
final class CountCheckingEcho: ShardEventHandler, @unchecked Sendable {
    weak var shard: Shard?
    private var delivered = 0
    private var open: [SocketID] = []
    private var turnEndedSinceDispatch = true
    /// Checks made before a sleep, and the first disagreement found (nil: none).
    let checks = ManagedAtomic<Int>(0)
    let mismatch = ResultBox<String>()

    func shardStarted(_ shard: Shard) { self.shard = shard }
    func connectionOpened(_ id: SocketID) { open.append(id) }
    func connectionTimedOut(_ id: SocketID, _ timer: ConnectionTimer) {}
    func connectionClosed(_ id: SocketID) { open.removeAll { $0 == id } }

    func connectionReceived(_ id: SocketID, _ bytes: UnsafeRawBufferPointer) {
        delivered += bytes.count
        turnEndedSinceDispatch = false
        _ = shard?.send(id, OutboundBytes(Array(bytes)))
    }

    func turnEnded(_ shard: Shard) { turnEndedSinceDispatch = true }

    func hasPendingWork(_ shard: Shard) -> Bool {
        let m = shard.metrics
        let sent = open.reduce(0) { $0 + Int(shard.sentBytes($1)) }
        var problems: [String] = []
        if !turnEndedSinceDispatch { problems.append("the handler's turnEnded did not run before the sleep") }
        if m.bytesReceived.value != delivered { problems.append("bytes received \(m.bytesReceived.value), delivered \(delivered)") }
        if m.bytesSent.value != sent { problems.append("bytes sent \(m.bytesSent.value), the connections' \(sent)") }
        if m.sends.value < 0 || (sent > 0 && m.sends.value == 0) { problems.append("sends \(m.sends.value) with \(sent) bytes sent") }
        if !problems.isEmpty, mismatch.value == nil { mismatch.set(problems.joined(separator: "; ")) }
        checks.wrappingIncrement(ordering: .relaxed)
        return false
    }
}

/// The data path counts into `Shard.turnCounts` and publishes once per loop turn: the counters
/// must still be exact whenever the shard may sleep, and exact once it stops.
@Suite("TurnCounts: the data path's counters, published per loop turn", .serialized)
struct TurnCountsTests {
    @Test("bytes received and sent are exact before every sleep", arguments: [IOBackendKind.uring, .epoll])
    func exactBeforeEverySleep(backend: IOBackendKind) throws {
        raiseFileLimit()
        let handler = CountCheckingEcho()
        var c = smallConfiguration(backend, shards: 1)
        // Ticks a second apart: a count left for the next turn would show at a sleep.
        c.tickMilliseconds = 1000
        let group = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in handler }
        try group.start()
        var stopped = false
        defer { if !stopped { group.shutdown(graceMilliseconds: 500) } }
        let clients = try (0..<3).map { _ in try TestClient(port: group.port) }
        var echoed = [Int](repeating: 0, count: clients.count)
        for round in 0..<40 {
            for (i, client) in clients.enumerated() {
                // Sizes from 1 byte to 5 KiB: over one provided buffer (4 KiB) on io_uring.
                let payload = [UInt8](repeating: UInt8(65 + i), count: 1 + (round * 131 + i * 977) % 5_000)
                try client.send(payload)
                try client.fill(atLeast: echoed[i] + payload.count)
                #expect(Array(client.buffered[echoed[i]...]) == payload)
                echoed[i] += payload.count
            }
        }
        let received = clients.reduce(0) { $0 + $1.buffered.count }
        #expect(waitUntil { group.shards[0].metrics.bytesSent.value >= received })
        let metrics = group.shards[0].metrics
        #expect(metrics.bytesReceived.value == received, "the server read what the clients sent")
        #expect(metrics.bytesSent.value == received, "every echoed byte counted once")
        #expect(metrics.sends.value >= 120 && metrics.sends.value <= metrics.bytesSent.value)
        #expect(handler.checks.load(ordering: .relaxed) > 0, "the shard never slept between reads")
        #expect(handler.mismatch.value == nil, "\(handler.mismatch.value ?? "")")
        // After the loop ends (its last publish), the figures stay exact.
        group.shutdown(graceMilliseconds: 500)
        stopped = true
        #expect(metrics.bytesReceived.value == received)
        #expect(metrics.bytesSent.value == received)
    }
}
