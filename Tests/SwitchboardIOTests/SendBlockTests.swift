@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 16 items 1 and 6: small frames queued behind others are copied into pooled send
/// blocks, so that a flush sends a run of them as one iovec. What must hold: the peer gets
/// exactly the bytes, in order; no byte the kernel may be reading is moved or overwritten; the
/// queue's cost and the shard's budget stay exact; every block goes back to the pool; the pool
/// stays within its bounds and frees what it keeps once idle.
@Suite("SendQueue send blocks")
struct SendBlockTests {
    final class Pool {
        let exhausted = Counter("e", help: "")
        let blocks: SendBlockPool
        let budget: ShardMemoryBudget
        init(blockBytes: Int = 1024, maxFrameBytes: Int = 512, maxBlocks: Int = 8, keptFree: Int = 4) {
            blocks = SendBlockPool(blockBytes: blockBytes, maxFrameBytes: maxFrameBytes, maxBlocks: maxBlocks,
                                   keptFree: keptFree, exhausted: exhausted, gauge: Counter("g", help: ""))
            budget = ShardMemoryBudget(limitBytes: 1 << 40, gauge: Counter("b", help: ""), hits: Counter("h", help: ""), blocks: blocks)
        }
    }

    static func pending(_ q: BudgetedQueue) -> [[UInt8]] {
        var runs: [[UInt8]] = []
        q.forEachPending(max: 1000) { runs.append(Array($0)) }
        return runs
    }

    static func copy(_ q: inout BudgetedQueue, _ bytes: [UInt8], inFlightBytes: Int = 0) -> Bool {
        bytes.withUnsafeBytes { q.appendCoalescing($0, inFlightBytes: inFlightBytes, pool: q.pool) }
    }

    @Test("small frames behind another share one block: exact bytes, exact cost, the frame's reference given back")
    func coalesces() {
        let p = Pool()
        var q = BudgetedQueue(budget: p.budget)
        weak var front: OutboundBytes.Storage?
        do {
            let a = OutboundBytes([1, 2, 3])
            front = a.storage
            let copied = q.appendCoalescing(a.bytes, inFlightBytes: 0, pool: p.blocks)
            #expect(!copied, "an empty queue takes a reference")
            q.append(a)
        }
        #expect(front != nil)
        let ok1 = Self.copy(&q, [4, 5])
        #expect(ok1)
        #expect(front == nil, "the lone frame moved into the block and its reference went back")
        #expect(Self.pending(q) == [[1, 2, 3, 4, 5]])
        #expect(q.chunkCount == 1 && q.queuedBytes == 5 && q.costBytes == 5 + SendQueue.entryOverheadBytes)
        #expect(p.budget.usedBytes == q.costBytes)
        // A large frame is a reference; the small ones after it start a new block.
        let large = [UInt8](repeating: 9, count: 2000)
        q.append(OutboundBytes(large))
        let ok2 = Self.copy(&q, [6])
        #expect(ok2)
        let ok3 = Self.copy(&q, [7, 8])
        #expect(ok3)
        #expect(Self.pending(q) == [[1, 2, 3, 4, 5], large, [6, 7, 8]])
        #expect(q.costBytes == 2008 + 3 * SendQueue.entryOverheadBytes && p.budget.usedBytes == q.costBytes)
        #expect(p.blocks.blockCount == 2 && p.blocks.freeCount == 0)
        // A block fills up, then the next one starts.
        let filler = [UInt8](repeating: 5, count: 500)
        let ok4 = Self.copy(&q, filler) && Self.copy(&q, filler) && Self.copy(&q, filler)
        #expect(ok4)
        #expect(Self.pending(q).map(\.count) == [5, 2000, 1003, 500])
        #expect(p.blocks.blockCount == 3)
        q.consume(q.queuedBytes)
        #expect(q.isEmpty && p.budget.usedBytes == 0)
        #expect(p.blocks.blockCount == 3 && p.blocks.freeCount == 3, "every block back in the pool")
        q.removeAll()
    }

    @Test("a started block takes no more frames: bytes being sent are never touched, dropUnstarted drops only what came after")
    func startedBlocksStayClosed() {
        let p = Pool()
        var q = BudgetedQueue(budget: p.budget)
        q.append(OutboundBytes([1, 2, 3]))
        let ok5 = Self.copy(&q, [4, 5])
        #expect(ok5)
        q.consume(2)  // a partial write
        let ok6 = Self.copy(&q, [6])
        #expect(ok6)
        #expect(Self.pending(q) == [[3, 4, 5], [6]], "written into a new block, not behind the partly sent bytes")
        q.dropUnstarted(keepingBytes: 0)
        #expect(Self.pending(q) == [[3, 4, 5]])
        #expect(p.blocks.freeCount == 1, "the dropped block went back")
        #expect(p.budget.usedBytes == q.costBytes)
        q.removeAll()
        #expect(p.budget.usedBytes == 0 && p.blocks.freeCount == p.blocks.blockCount)

        // In flight (io_uring): neither the block nor a lone frame in the kernel's hands moves
        // or grows.
        q.append(OutboundBytes([1, 2, 3]))
        let ok7 = Self.copy(&q, [4])
        #expect(ok7)
        let ok8 = Self.copy(&q, [5], inFlightBytes: 4)
        #expect(ok8)
        let ok9 = Self.copy(&q, [6], inFlightBytes: 4)
        #expect(ok9, "the new block is not in flight: it takes more")
        #expect(Self.pending(q) == [[1, 2, 3, 4], [5, 6]])
        q.removeAll()
        weak var lone: OutboundBytes.Storage?
        do {
            let a = OutboundBytes([7, 7])
            lone = a.storage
            q.append(a)
        }
        let ok10 = Self.copy(&q, [8], inFlightBytes: 2)
        #expect(ok10)
        #expect(lone != nil, "a frame in flight stays where the kernel reads it")
        #expect(Self.pending(q) == [[7, 7], [8]])
        q.removeAll()
        #expect(lone == nil && p.budget.usedBytes == 0)
    }

    @Test("a chunk keeps the kind it was queued as: a block goes back untouched and comes out of take empty; a frame is released")
    func chunkKinds() {
        let p = Pool(maxBlocks: 2, keptFree: 2)
        var q = BudgetedQueue(budget: p.budget)
        weak var frame: OutboundBytes.Storage?
        do {
            let a = OutboundBytes([1, 2, 3])
            frame = a.storage
            q.append(a)  // a frame by reference: a chunk that is not a block
        }
        let block = p.blocks.take()!
        let wrote = [UInt8](repeating: 7, count: 40).withUnsafeBytes { p.blocks.append($0, to: block) }
        #expect(wrote)
        q.append(retained: block, isBlock: true)  // a block appended the way `Shard.send(_:header:...)` does
        q.forEachChunk { chunk in
            #expect(chunk.isBlock == p.blocks.isBlock(chunk.bytes), "a chunk's kind disagrees with its bytes' type")
        }
        #expect(Self.pending(q) == [[1, 2, 3], [UInt8](repeating: 7, count: 40)])
        q.consume(q.queuedBytes)
        #expect(frame == nil, "the frame's reference went back")
        #expect(p.blocks.freeCount == 1 && p.blocks.blockCount == 1, "the block went back to the pool")
        // Recycled without a touch: it still holds its count until `take` empties it.
        let again = p.blocks.take()!
        #expect(again.toOpaque() == block.toOpaque(), "the block freed last is taken first")
        #expect(OutboundBytes.bytes(of: again.takeUnretainedValue()).count == 0, "take hands out an empty block")
        p.blocks.recycle(again)
        q.removeAll()
        #expect(p.budget.usedBytes == 0)
    }

    @Test("an exhausted pool refuses and counts; returned blocks are kept; an idle tick frees them all")
    func poolBounds() {
        let p = Pool(maxBlocks: 2, keptFree: 1)
        var queues = (0..<3).map { _ in BudgetedQueue(budget: p.budget) }
        for i in queues.indices {
            queues[i].append(OutboundBytes([UInt8(i)]))
        }
        let ok11 = Self.copy(&queues[0], [10]) && Self.copy(&queues[1], [11])
        #expect(ok11)
        #expect(p.exhausted.value == 0)
        let ok12 = !Self.copy(&queues[2], [12])
        #expect(ok12, "no block left: the caller queues a reference")
        #expect(p.exhausted.value == 1)
        #expect(Self.pending(queues[2]) == [[2]] && p.budget.usedBytes == queues.reduce(0) { $0 + $1.costBytes })
        queues[0].consume(2)
        queues[1].consume(2)
        #expect(p.blocks.blockCount == 2 && p.blocks.freeCount == 2, "both kept: the next turn takes them again")
        p.blocks.tick()  // blocks were taken in this interval: kept
        #expect(p.blocks.freeCount == 2)
        p.blocks.tick()  // none taken since: freed
        #expect(p.blocks.blockCount == 0 && p.blocks.freeCount == 0)
        for i in queues.indices { queues[i].removeAll() }
        #expect(p.budget.usedBytes == 0)
    }

    /// A fan-out takes a block per subscriber every turn: the pool must hand the same blocks
    /// back turn after turn (malloc's churn here was 12% of the server's CPU at 1 -> 10,000),
    /// and give back, one tick later, what a burst left unused.
    @Test("a turn's blocks are reused the next turn; a tick frees those unused all interval, down to the kept floor")
    func poolSizedByLoad() {
        let p = Pool(maxBlocks: 64, keptFree: 4)
        var queues = (0..<40).map { _ in BudgetedQueue(budget: p.budget) }
        func turn(_ n: Int) {
            for i in 0..<n {
                queues[i].append(OutboundBytes([UInt8(i)]))
                let ok = Self.copy(&queues[i], [UInt8(i), 1])
                #expect(ok)
            }
            for i in 0..<n { queues[i].consume(3) }
        }
        turn(40)
        #expect(p.blocks.blockCount == 40 && p.blocks.freeCount == 40, "every block kept free")
        for _ in 0..<3 { turn(40) }
        #expect(p.blocks.blockCount == 40, "later turns take the free blocks: none made")
        p.blocks.tick()
        #expect(p.blocks.freeCount == 40, "all were taken in the interval: kept")
        // A quieter interval: 10 blocks a turn. 30 stay free all interval: the tick frees them.
        turn(10)
        turn(10)
        #expect(p.blocks.fewestFreeSinceTick == 30)
        p.blocks.tick()
        #expect(p.blocks.blockCount == 10 && p.blocks.freeCount == 10, "the interval's working set is kept")
        turn(10)
        p.blocks.tick()
        #expect(p.blocks.blockCount == 10, "all 10 taken: none freed")
        // 2 a turn: 8 unused all interval, but the floor keeps 4 free.
        turn(2)
        p.blocks.tick()
        #expect(p.blocks.blockCount == 4 && p.blocks.freeCount == 4, "freed down to the kept floor")
        p.blocks.tick()
        #expect(p.blocks.blockCount == 0 && p.blocks.freeCount == 0, "an idle tick frees all")
        #expect(p.exhausted.value == 0)
        for i in queues.indices { queues[i].removeAll() }
        #expect(p.budget.usedBytes == 0)
    }

    @Test("the send block limits are validated")
    func configuration() {
        var c = IOConfiguration()
        #expect(c.validate() == nil)
        #expect(c.sendCoalesceMaxFrameBytes == 512 && c.sendBlockBytes == 1024 && c.maxSendBlocksPerShard == 65_536 && c.sendBlocksKeptFree == 1024)
        c.sendBlockBytes = 255
        #expect(c.validate() != nil)
        c = IOConfiguration()
        c.sendBlockBytes = (1 << 20) + 1
        #expect(c.validate() != nil)
        c = IOConfiguration()
        c.sendCoalesceMaxFrameBytes = c.sendBlockBytes + 1
        #expect(c.validate() != nil)
        c.sendCoalesceMaxFrameBytes = -1
        #expect(c.validate() != nil)
        c.sendCoalesceMaxFrameBytes = 0
        #expect(c.validate() == nil)
        c = IOConfiguration()
        c.maxSendBlocksPerShard = -1
        #expect(c.validate() != nil)
        c = IOConfiguration()
        c.sendBlocksKeptFree = c.maxSendBlocksPerShard + 1
        #expect(c.validate() != nil)
        c.maxSendBlocksPerShard = 0
        c.sendBlocksKeptFree = 0
        #expect(c.validate() == nil)
        // The reply cork: 0 (off) ... 1 MiB.
        c = IOConfiguration()
        #expect(c.replyCorkBytes == 16_384)
        c.replyCorkBytes = -1
        #expect(c.validate() != nil)
        c.replyCorkBytes = (1 << 20) + 1
        #expect(c.validate() != nil)
        c.replyCorkBytes = 0
        #expect(c.validate() == nil)
        c.replyCorkBytes = 1 << 20
        #expect(c.validate() == nil)
    }
}

/// The same through real sockets on both backends, driven from the shard thread.
@Suite("SendQueue send blocks on sockets", .serialized)
struct SendBlockSocketTests {
    /// `processDescriptors`: io_uring sockets stay process descriptors (not direct ones), for a
    /// test that sets a socket option through `Connection.fd`.
    /// `coalescing: false` turns small-frame coalescing off (`sendCoalesceMaxFrameBytes` 0);
    /// `tls` adds a TLS listener.
    static func start(_ backend: IOBackendKind, log: EventLog, maxBlocks: Int = 16_384, keptFree: Int = 1024,
                      processDescriptors: Bool = false, coalescing: Bool = true, tls: TLSConfiguration? = nil) throws -> ShardGroup {
        raiseFileLimit()
        var c = IOConfiguration()
        c.backend = backend
        c.shardCount = 1
        c.recvBufferCount = 64
        c.recvBufferBytes = 4096
        c.tickMilliseconds = 10
        c.maxSendBlocksPerShard = maxBlocks
        c.sendBlocksKeptFree = keptFree
        c.uringDirectDescriptors = !processDescriptors
        if !coalescing { c.sendCoalesceMaxFrameBytes = 0 }
        c.tls = tls
        let g = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in EchoHandler(log: log) }
        try g.start()
        return g
    }

    /// Frames of many sizes: mostly small (copied), every seventh large (referenced), each
    /// filled with its own pattern so a byte out of place shows.
    static func frames(_ count: Int, seed: Int) -> [[UInt8]] {
        (0..<count).map { i in
            let size = i % 7 == 3 ? 600 + (i * 131) % 3000 : 1 + (i * 37 + seed) % 512
            return (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i &+ seed) }
        }
    }

    /// Blocks in existence and free on the shard, and its budget in use.
    static func poolState(_ shard: Shard) -> (blocks: Int, free: Int, usedBytes: Int)? {
        onShard(shard) { s in (s.memory.blocks.blockCount, s.memory.blocks.freeCount, s.memory.usedBytes) }
    }

    /// Sets the server socket's SO_SNDBUF to 4 KiB (a started connection of a group started with
    /// `processDescriptors`): setsockopt's result.
    static func shrinkSendBuffer(_ shard: Shard, _ id: SocketID) -> Int32? {
        onShard(shard) { s in
            var size: Int32 = 4096
            return setsockopt(s.connections[id.slot].fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    static func readAll(_ c: TestClient, _ count: Int) throws -> [UInt8] {
        var received: [UInt8] = []
        while received.count < count {
            guard try c.fill() else { break }
            received += c.takeBuffered()
        }
        return received
    }

    @Test("copied and referenced frames interleaved arrive exact and in order; blocks go back; an idle connection holds none",
          arguments: [IOBackendKind.uring, .epoll])
    func interleaved(backend: IOBackendKind) throws {
        let log = EventLog()
        let g = try Self.start(backend, log: log)
        defer { g.shutdown(graceMilliseconds: 500) }
        let shard = g.shards[0]
        let c = try TestClient(port: g.port)
        #expect(waitUntil { log.opened.count == 1 })
        let id = log.opened[0]
        var expected: [UInt8] = []
        for turn in 0..<20 {
            let batch = Self.frames(100, seed: turn)
            expected += batch.joined()
            // One turn of sends, as a fan-out makes them: the small ones after the first share blocks.
            let blocksHeld = onShard(shard) { s in
                for f in batch { _ = s.send(id, OutboundBytes(f)) }
                return s.memory.blocks.blockCount - s.memory.blocks.freeCount
            }
            #expect((blocksHeld ?? 0) > 0, "turn \(turn): nothing was coalesced")
        }
        let received = try Self.readAll(c, expected.count)
        #expect(received.count == expected.count)
        #expect(received == expected)
        #expect(shard.metrics.sendBlocksExhausted.value == 0)
        // Everything written: every block is back in the pool and the budget is empty...
        #expect(waitUntil { onShard(shard) { $0.queuedBytes(id) } == 0 })
        let after = Self.poolState(shard)
        #expect(after?.blocks == after?.free && after?.usedBytes == 0, "\(String(describing: after))")
        // ...and once idle (a tick without use), the pool frees them: the open, idle
        // connection holds no block.
        #expect(waitUntil { Self.poolState(shard)?.blocks == 0 })
        #expect(onShard(shard) { $0.isOpen(id) } == true)
        #expect(waitUntil { shard.metrics.sendBlocks.value == 0 })
    }

    @Test("partial writes resume at the exact byte: tiny socket buffers, a reader that waits",
          arguments: [IOBackendKind.uring, .epoll])
    func partialWrites(backend: IOBackendKind) throws {
        let log = EventLog()
        let g = try Self.start(backend, log: log, processDescriptors: true)
        defer { g.shutdown(graceMilliseconds: 500) }
        let shard = g.shards[0]
        // The server's send buffer is tiny and the client reads only once everything is
        // queued, so writes go partial (the client's receive buffer is left alone: a tiny
        // window with delayed ACKs makes the read take tens of seconds).
        let c = try TestClient(port: g.port, receiveTimeoutMilliseconds: 10_000)
        #expect(waitUntil { log.opened.count == 1 })
        let id = log.opened[0]
        #expect(Self.shrinkSendBuffer(shard, id) == 0, "SO_SNDBUF on the server's socket")
        var expected: [UInt8] = []
        var stuck = 0
        for turn in 0..<60 {
            let batch = Self.frames(60, seed: turn)
            expected += batch.joined()
            let outcome = onShard(shard) { s in
                (refused: batch.filter { s.send(id, OutboundBytes($0)) != .queued }.count, queued: s.queuedBytes(id))
            }
            #expect(outcome?.refused == 0, "turn \(turn)")
            if (outcome?.queued ?? 0) > 0 { stuck += 1 }
        }
        #expect(stuck > 0, "the socket never filled: no partial write was exercised")
        let received = try Self.readAll(c, expected.count)
        #expect(received.count == expected.count)
        #expect(received == expected)
        #expect(waitUntil { onShard(shard) { $0.queuedBytes(id) } == 0 })
        let after = Self.poolState(shard)
        #expect(after?.blocks == after?.free && after?.usedBytes == 0, "\(String(describing: after))")
    }

    @Test("an exhausted pool falls back to references and counts it; the bytes stay exact",
          arguments: [IOBackendKind.uring, .epoll])
    func exhaustion(backend: IOBackendKind) throws {
        let log = EventLog()
        let g = try Self.start(backend, log: log, maxBlocks: 1, keptFree: 1)
        defer { g.shutdown(graceMilliseconds: 500) }
        let shard = g.shards[0]
        let clients = try (0..<2).map { _ in try TestClient(port: g.port) }
        #expect(waitUntil { log.opened.count == 2 })
        let ids = log.opened
        let batch = Self.frames(50, seed: 3).filter { $0.count <= 512 }
        _ = onShard(shard) { s in
            for f in batch { for id in ids { _ = s.send(id, OutboundBytes(f)) } }
            return 0
        }
        #expect(shard.metrics.sendBlocksExhausted.value > 0)
        let expected = Array(batch.joined())
        for (i, c) in clients.enumerated() {
            let received = try Self.readAll(c, expected.count)
            #expect(received == expected, "client \(i)")
        }
        #expect(waitUntil { Self.poolState(shard)?.blocks == 0 })
        #expect(Self.poolState(shard)?.usedBytes == 0)
    }

    @Test("closing a connection with queued blocks gives them back", arguments: [IOBackendKind.uring, .epoll])
    func closeWithQueuedBlocks(backend: IOBackendKind) throws {
        let log = EventLog()
        let g = try Self.start(backend, log: log)
        defer { g.shutdown(graceMilliseconds: 500) }
        let shard = g.shards[0]
        let c = try TestClient(port: g.port)
        var small: Int32 = 4096
        setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        #expect(waitUntil { log.opened.count == 1 })
        let id = log.opened[0]
        var queuedBlocks = 0
        for turn in 0..<20 {
            let batch = Self.frames(60, seed: turn).filter { $0.count <= 512 }
            queuedBlocks = onShard(shard) { s in
                for f in batch { _ = s.send(id, OutboundBytes(f)) }
                return s.memory.blocks.blockCount - s.memory.blocks.freeCount
            } ?? 0
        }
        #expect(queuedBlocks > 1, "the reader that does not read should hold blocks")
        _ = onShard(shard) { s in s.close(id, mode: .immediately) }
        #expect(waitUntil { log.closed.count == 1 })
        let after = Self.poolState(shard)
        #expect(after?.blocks == after?.free && after?.usedBytes == 0, "\(String(describing: after))")
        _ = c
    }
}
