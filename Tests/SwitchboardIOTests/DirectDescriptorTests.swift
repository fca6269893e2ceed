@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
import Dispatch
import CLiburing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 16 item 2: an io_uring shard holds its sockets as direct descriptors, in the ring's
/// registered file table (`IOConfiguration.uringDirectDescriptors`), so a connection costs the
/// process no descriptor and a server holds more connections than `ulimit -n`. The tests count
/// this process's descriptors: its test clients hold one each, the server none.
@Suite("io_uring direct descriptors: sockets in the ring's file table", .serialized)
struct DirectDescriptorTests {
    private func start(direct: Bool, slots: Int? = nil, idleTimeoutMilliseconds: Int = 60_000, workerThreads: Int = 2,
                       log: EventLog) throws -> ShardGroup {
        raiseFileLimit()
        var c = smallConfiguration(.uring, shards: 1)  // maxConnectionsPerShard 1024: the table's size below
        c.idleTimeoutMilliseconds = idleTimeoutMilliseconds
        c.uringWorkerThreads = workerThreads
        c.uringDirectDescriptors = direct
        c.uringDirectDescriptorSlotsForTesting = slots
        let g = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in EchoHandler(log: log) }
        try g.start()
        return g
    }

    /// Sends a distinct line on every client and expects it back, byte for byte.
    private func echoEach(_ clients: [TestClient], tag: String) throws {
        for (i, client) in clients.enumerated() { try client.send("\(tag) \(i);") }
        for (i, client) in clients.enumerated() {
            let expected = Array("\(tag) \(i);".utf8)
            try client.fill(atLeast: expected.count)
            #expect(client.buffered == expected, "client \(i)")
            client.clearBuffer()
        }
    }

    @Test("40 connections cost the server no descriptor (direct) or 40 (off); echo, lingering close, reopen", arguments: [true, false])
    func noProcessDescriptors(direct: Bool) throws {
        let log = EventLog()
        let g = try start(direct: direct, log: log)
        defer { g.shutdown(graceMilliseconds: 500) }
        let shard = try #require(g.shards.first as? UringShard)
        #expect(onShard(shard) { ($0 as! UringShard).directDescriptorSlots } == (direct ? 1024 : 0))
        let before = openFileDescriptorCount()

        let count = 40
        var clients: [TestClient] = try (0..<count).map { _ in try TestClient(port: g.port) }
        #expect(waitUntil { log.opened.count == count })
        // Each client holds one descriptor; the server one more per connection only when off.
        let serverShare = direct ? 0 : count
        #expect(waitUntil { openFileDescriptorCount() - before == count + serverShare },
                "descriptors: \(openFileDescriptorCount() - before), expected \(count + serverShare)")
        try echoEach(clients, tag: "first")

        // A lingering close ("Q"): the server shuts down its write side (on a direct
        // descriptor, an io_uring shutdown), the client sees EOF, then closes; the slot is freed.
        for client in clients.prefix(10) {
            try client.send("Q")
            #expect(try client.readToEnd() == [])
        }
        clients.removeFirst(10)
        #expect(waitUntil { log.closed.count == 10 })
        #expect(waitUntil { openFileDescriptorCount() - before == (count - 10) + (direct ? 0 : count - 10) })

        // Slots freed by those closes are reused: the table slot a new socket takes was emptied.
        clients += try (0..<10).map { _ in try TestClient(port: g.port) }
        #expect(waitUntil { log.opened.count == count + 10 })
        try echoEach(clients, tag: "second")
        #expect(waitUntil { openFileDescriptorCount() - before == count + serverShare })

        clients.removeAll()
        #expect(waitUntil { log.closed.count == count + 10 })
        #expect(waitUntil { openFileDescriptorCount() == before }, "descriptors left: \(openFileDescriptorCount() - before)")
        #expect(shard.metrics.directDescriptorFallbacks.value == 0)
    }

    @Test("slots past the table fall back to process descriptors, counted; both kinds echo and close")
    func fallbackPastTheTable() throws {
        let log = EventLog()
        let g = try start(direct: true, slots: 4, log: log)
        defer { g.shutdown(graceMilliseconds: 500) }
        let shard = try #require(g.shards.first as? UringShard)
        #expect(onShard(shard) { ($0 as! UringShard).directDescriptorSlots } == 4)
        let before = openFileDescriptorCount()

        for round in 1...2 {
            var clients: [TestClient] = try (0..<10).map { _ in try TestClient(port: g.port) }
            #expect(waitUntil { log.opened.count == 10 * round })
            // Slots 0-3 are direct, 4-9 process descriptors: 10 client + 6 server descriptors.
            #expect(waitUntil { openFileDescriptorCount() - before == 16 }, "round \(round): \(openFileDescriptorCount() - before)")
            #expect(shard.metrics.directDescriptorFallbacks.value == 6 * round)
            try echoEach(clients, tag: "round \(round)")
            clients.removeAll()
            #expect(waitUntil { log.closed.count == 10 * round })
            #expect(waitUntil { openFileDescriptorCount() == before }, "round \(round): left \(openFileDescriptorCount() - before)")
        }
    }

    @Test("a burst of lingering closes runs on at most uring_worker_threads kernel workers; the rest wait, counted")
    func workerThreadLimit() throws {
        let log = EventLog()
        let g = try start(direct: true, workerThreads: 1, log: log)
        defer { g.shutdown(graceMilliseconds: 500) }
        let shard = try #require(g.shards.first as? UringShard)
        // The kernel's own state for the shard thread, not the configured value.
        let limits = onShard(shard) { ($0 as! UringShard).workerThreadLimits() }.flatMap { $0 }
        #expect(limits?.bounded == 1 && limits?.unbounded == 1, "the kernel reports \(String(describing: limits))")
        let shardThread = try #require(onShard(shard) { _ in sb_gettid() })

        let count = 64
        var clients: [TestClient] = try (0..<count).map { _ in try TestClient(port: g.port) }
        #expect(waitUntil { log.opened.count == count })
        // Hold the shard thread while every client asks for a lingering close ("Q"), so that
        // it handles them in one turn and submits their shutdowns together.
        let held = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        #expect(shard.execute { _ in held.signal(); release.wait() })
        held.wait()
        for client in clients { try client.send("Q") }
        release.signal()

        // The kernel names a worker thread after the thread whose ring it serves.
        let workerName = "iou-wrk-\(shardThread)"
        var mostWorkers = 0
        for (i, client) in clients.enumerated() {
            mostWorkers = max(mostWorkers, threadCount(named: workerName))
            #expect(try client.readToEnd() == [], "client \(i) should see the server's end")
        }
        clients.removeAll()  // the clients' ends finish the lingering closes
        #expect(waitUntil { log.closed.count == count })
        // An idle worker lives 5 s, so the count after the burst is its peak as well.
        mostWorkers = max(mostWorkers, threadCount(named: workerName))
        #expect(mostWorkers == 1, "\(mostWorkers) worker threads named \(workerName)")
        #expect(shard.metrics.uringWorkerWaits.value >= 1, "no shutdown waited for the one worker")
        #expect(shard.metrics.uringWorkerLimitRefused.value == 0)
    }

    @Test("the worker thread limit is validated")
    func workerThreadLimitValidation() {
        var c = IOConfiguration()
        #expect(c.uringWorkerThreads == 2 && c.validate() == nil)
        for (threads, problem) in [(0, "uringWorkerThreads must be 1...1024"), (1025, "uringWorkerThreads must be 1...1024"),
                                   (1, nil), (1024, nil)] as [(Int, String?)] {
            c.uringWorkerThreads = threads
            #expect(c.validate() == problem, "\(threads)")
        }
    }

    @Test("a close with a send in flight ends the send (cancelled) and frees the slot", arguments: [true, false])
    func closeWithSendInFlight(direct: Bool) throws {
        let log = EventLog()
        // The idle timer closes the connection immediately (EchoHandler.connectionTimedOut)
        // while its echo waits on a client that does not read.
        let g = try start(direct: direct, idleTimeoutMilliseconds: 300, log: log)
        defer { g.shutdown(graceMilliseconds: 500) }
        let before = openFileDescriptorCount()
        let client = try TestClient(port: g.port)
        #expect(waitUntil { log.opened.count == 1 })
        // Send without reading until the kernel takes no more: the server echoes until the
        // client's receive buffer is full, and its send then waits in the kernel.
        let flags = fcntl(client.fd, F_GETFL, 0)
        _ = fcntl(client.fd, F_SETFL, flags | O_NONBLOCK)
        let chunk = [UInt8](repeating: 0x61, count: 65_536)
        var sent = 0
        var stalledSince: Int64? = nil
        while sent < 64 << 20 {
            let n = chunk.withUnsafeBytes { Glibc.send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; stalledSince = nil; continue }
            // Stalled for 100 ms: both directions' buffers are full.
            let now = nowMilliseconds()
            if let since = stalledSince, now - since > 100 { break }
            if stalledSince == nil { stalledSince = now }
            usleep(1000)
        }
        #expect(sent < 64 << 20, "the server kept reading: nothing is pending")
        let id = try #require(log.opened.first)
        let shard = try #require(g.shards.first)
        #expect((onShard(shard) { $0.queuedBytes(id) } ?? 0) > 0, "an echo should be waiting on the client")
        // The idle timeout closes it: its send must end now, though the client never reads.
        #expect(waitUntil(timeoutMilliseconds: 5000) { log.closed.count == 1 }, "the close waited on the send")
        #expect(waitUntil { openFileDescriptorCount() - before == 1 }, "server descriptors left: \(openFileDescriptorCount() - before - 1)")
        // The socket itself is gone (a direct descriptor's slot emptied), not only the slot's
        // connection: the client reads what was sent, then the end.
        #expect(client.isClosedByServer(), "the server's socket is still open")
    }
}

/// Threads of this process whose name (`comm`) is `name`.
private func threadCount(named name: String) -> Int {
    guard let dir = opendir("/proc/self/task") else { return 0 }
    defer { closedir(dir) }
    var count = 0
    while let entry = readdir(dir) {
        let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard tid.first?.isNumber == true, let file = fopen("/proc/self/task/\(tid)/comm", "r") else { continue }
        var line = [CChar](repeating: 0, count: 64)
        if fgets(&line, Int32(line.count), file) != nil,
           String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) == name {
            count += 1
        }
        fclose(file)
    }
    return count
}

private func nowMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
