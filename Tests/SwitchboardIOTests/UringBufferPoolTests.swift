@testable import SwitchboardIO
import SwitchboardTestSupport
import CLiburing
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 16 item 2: io_uring's provided receive buffers follow the load. A shard provides
/// `4` at start (their pages are all an idle shard ever
/// touches) and doubles the pool whenever a receive finds none, without losing a byte.
@Suite("io_uring provided-buffer pool sized by load", .serialized)
struct UringBufferPoolTests {
    @Test("starts at recvBufferInitialCount buffers, grows on ENOBUFS up to recvBufferCount, every byte echoed")
    func poolGrowsUnderABurst() throws {
        raiseFileLimit()
        var c = IOConfiguration()
        c.backend = .uring
        c.shardCount = 1
        c.recvBufferCount = 512
        c.recvBufferBytes = 4096
        // The kernel runs a few dozen deferred receives per io_uring_enter and the shard
        // recycles between batches: start with 4 so that a 300-socket burst runs out.
        c.recvBufferInitialCount = 4
        c.tickMilliseconds = 10
        let log = EventLog()
        let g = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in EchoHandler(log: log) }
        try g.start()
        defer { g.shutdown(graceMilliseconds: 500) }
        let shard = try #require(g.shards.first as? UringShard)
        #expect(onShard(shard) { ($0 as! UringShard).providedBuffers } == 4)

        let clientCount = 300
        var clients: [TestClient] = []
        for _ in 0..<clientCount { clients.append(try TestClient(port: g.port)) }
        #expect(waitUntil { log.opened.count == clientCount })
        #expect(onShard(shard) { ($0 as! UringShard).providedBuffers } == 4,
                "connections alone (no bytes yet) must not grow the pool")

        // Hold the shard thread while every client sends: when it next enters the ring, 300
        // sockets have data and 64 buffers are provided, so most receives end with ENOBUFS.
        let exhaustedBefore = shard.metrics.recvBuffersExhausted.value
        let holding = ResultBox<Bool>()
        _ = shard.execute { _ in
            holding.set(true)
            usleep(300_000)
        }
        #expect(waitUntil { holding.value == true })
        for (i, client) in clients.enumerated() { try client.send("client \(i);") }
        for (i, client) in clients.enumerated() {
            let expected = Array("client \(i);".utf8)
            try client.fill(atLeast: expected.count)
            #expect(client.buffered == expected, "client \(i) got \(client.buffered.count) bytes")
        }
        let provided = onShard(shard) { ($0 as! UringShard).providedBuffers } ?? 0
        #expect(shard.metrics.recvBuffersExhausted.value > exhaustedBefore, "the burst should have run out of buffers")
        #expect(provided > 4 && provided <= 512, "provided \(provided)")
        #expect(provided & (provided - 1) == 0, "the pool doubles: \(provided)")
        // Idle for a second: the pool's pages go back to the kernel (DEFER_TASKRUN kernels),
        // and the next receive still lands intact.
        if shard.appliedFlags & SB_SETUP_DEFER_TASKRUN != 0 {
            #expect(waitUntil { (onShard(shard) { ($0 as! UringShard).poolTrims } ?? 0) > 0 })
            try clients[0].send("after trim")
            try clients[0].fill(atLeast: Array("client 0;after trim".utf8).count)
            #expect(clients[0].buffered == Array("client 0;after trim".utf8))
        }
    }
}
