import COpenSSL
@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// TLS ciphertext goes straight from the record layer into send blocks
/// (`SendQueue.appendInBlock`, `Shard.queueCiphertext`): it is copied out anyway, and a block
/// costs no malloc. What must hold: the client decrypts exactly the plaintext sent, in order
/// (a byte written into a block the kernel is reading, or out of place, breaks a record's tag);
/// the queue's cost and the budget stay exact; every block goes back; ciphertext larger than a
/// block, an exhausted pool and coalescing turned off take their own buffer as before.
@Suite("TLS ciphertext in send blocks")
struct TLSSendBlockQueueTests {
    static func run(_ q: inout BudgetedQueue, _ bytes: [UInt8], inFlightBytes: Int = 0) -> Bool {
        q.appendInBlock(count: bytes.count, inFlightBytes: inFlightBytes, pool: q.pool) { to in
            bytes.withUnsafeBytes { to.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
    }

    static func pending(_ q: BudgetedQueue) -> [[UInt8]] { SendBlockTests.pending(q) }

    @Test("an empty queue takes a block; unstarted blocks grow; started, in-flight or full ones are closed; exact cost")
    func appendInBlock() {
        let p = SendBlockTests.Pool()
        let (blocks, budget) = (p.blocks, p.budget)
        var q = BudgetedQueue(budget: budget)
        #expect(Self.run(&q, [1, 2, 3]), "an empty queue: a block, not a refusal")
        #expect(Self.pending(q) == [[1, 2, 3]])
        #expect(q.chunkCount == 1 && q.costBytes == 3 + SendQueue.entryOverheadBytes && budget.usedBytes == q.costBytes)
        var kinds: [Bool] = []
        q.forEachChunk { kinds.append($0.isBlock) }
        #expect(kinds == [true], "queued as a block, given back to the pool when sent")
        #expect(Self.run(&q, [4, 5]))
        #expect(Self.pending(q) == [[1, 2, 3, 4, 5]] && q.chunkCount == 1, "behind an unstarted block: the same chunk")
        #expect(budget.usedBytes == 5 + SendQueue.entryOverheadBytes)
        // Partly written: the rest stays where it is, the next run takes a new block.
        q.consume(2)
        #expect(Self.run(&q, [6]))
        #expect(Self.pending(q) == [[3, 4, 5], [6]])
        // In flight (io_uring): the block the kernel holds does not grow; one behind what it
        // holds does.
        #expect(Self.run(&q, [7], inFlightBytes: 3))
        #expect(Self.pending(q) == [[3, 4, 5], [6, 7]], "the block behind the one in flight grows")
        #expect(Self.run(&q, [8], inFlightBytes: 5))
        #expect(Self.pending(q) == [[3, 4, 5], [6, 7], [8]])
        // A run that does not fit the last block starts the next one; one of exactly a block fits an empty one.
        let big = [UInt8](repeating: 0xAB, count: 1024)
        #expect(Self.run(&q, big))
        #expect(Self.pending(q).map(\.count) == [3, 2, 1, 1024])
        #expect(Self.run(&q, [9]))
        #expect(Self.pending(q).map(\.count) == [3, 2, 1, 1024, 1])
        #expect(budget.usedBytes == q.costBytes && q.costBytes == 1031 + 5 * SendQueue.entryOverheadBytes)
        // Behind a frame held by reference: a new block, the frame stays as it is.
        q.removeAll()
        weak var frame: OutboundBytes.Storage?
        do {
            let f = OutboundBytes([1, 1])
            frame = f.storage
            q.append(f)
        }
        #expect(Self.run(&q, [2]))
        #expect(frame != nil && Self.pending(q) == [[1, 1], [2]])
        q.consume(q.queuedBytes)
        #expect(q.isEmpty && budget.usedBytes == 0 && frame == nil)
        #expect(blocks.blockCount == blocks.freeCount, "every block back in the pool")
        q.removeAll()
    }

    @Test("an exhausted pool refuses without calling the writer, queues nothing and counts it")
    func exhausted() {
        let p = SendBlockTests.Pool(maxBlocks: 1, keptFree: 1)
        let (blocks, budget, exhausted) = (p.blocks, p.budget, p.exhausted)
        var q = BudgetedQueue(budget: budget)
        let filler = [UInt8](repeating: 1, count: 1000)
        #expect(Self.run(&q, filler))
        var called = false
        let queued = q.appendInBlock(count: 100, inFlightBytes: 0, pool: q.pool) { _ in called = true }
        #expect(!queued && !called)
        #expect(q.queuedBytes == 1000 && q.chunkCount == 1 && budget.usedBytes == q.costBytes)
        #expect(exhausted.value == 1 && blocks.blockCount == 1)
        q.removeAll()
        #expect(budget.usedBytes == 0 && blocks.freeCount == 1)
    }
}

/// A TLS client on a loopback socket: the load generator's C client (`sb_tls_conn_new_client`)
/// through memory buffers, the socket read and written by the test's thread.
final class SocketTLSClient {
    let tcp: TestClient
    private let context: OpaquePointer
    private let conn: OpaquePointer
    private var plaintext: [UInt8] = []

    init(port: Int) throws {
        tcp = try TestClient(port: port, receiveTimeoutMilliseconds: 10_000)
        guard let ctx = sb_tls_bench_client_ctx_new() else { throw MissingTool("TLS client context") }
        context = ctx
        conn = sb_tls_conn_new_client(ctx)!
        // TLS 1.3 is one and a half round trips; 20 turns bound a server that stalls.
        var done: Int32 = 0
        for _ in 0..<20 {
            done = sb_tls_handshake(conn)
            try #require(done >= 0, "handshake failed: \(Self.lastError())")
            try flushOut()
            if done == 1 { break }
            try #require(try tcp.fill(), "the server closed during the handshake")
            feed(tcp.takeBuffered())
        }
        try #require(done == 1, "no handshake in 20 round trips")
    }

    deinit {
        sb_tls_conn_free(conn)
        sb_tls_ctx_free(context)
    }

    static func lastError() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        sb_tls_error(&buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func flushOut() throws {
        let pending = sb_tls_pending_out(conn)
        guard pending > 0 else { return }
        var bytes = [UInt8](repeating: 0, count: pending)
        let n = bytes.withUnsafeMutableBytes { Int(sb_tls_take_out(conn, $0.baseAddress!, $0.count)) }
        try tcp.send(Array(bytes.prefix(n)))
    }

    private func feed(_ bytes: [UInt8]) {
        let n = bytes.withUnsafeBytes { sb_tls_feed(conn, $0.baseAddress, $0.count) }
        precondition(Int(n) == bytes.count, "the client's read buffer refused ciphertext")
    }

    func write(_ bytes: [UInt8]) throws {
        let n = bytes.withUnsafeBytes { sb_tls_write(conn, $0.baseAddress, $0.count) }
        try #require(Int(n) == bytes.count, "client write: \(Self.lastError())")
        try flushOut()
    }

    /// The next `count` bytes of plaintext (fewer if the server closed first); a record that
    /// does not decrypt fails the test.
    func read(_ count: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 16_640)
        while plaintext.count < count {
            let n = buffer.withUnsafeMutableBytes { sb_tls_read(conn, $0.baseAddress, $0.count) }
            if n > 0 { plaintext += buffer[..<Int(n)]; continue }
            try #require(n == 0, "client read \(n): \(Self.lastError())")
            guard try tcp.fill() else { break }
            feed(tcp.takeBuffered())
        }
        let out = Array(plaintext.prefix(count))
        plaintext.removeFirst(out.count)
        return out
    }
}

/// The same through a real TLS listener on both backends, driven from the shard thread.
@Suite("TLS ciphertext in send blocks on sockets", .serialized)
struct TLSSendBlockSocketTests {
    /// The plaintext of turn `turn`: small mostly (its ciphertext fits a block), every ninth
    /// larger than a block (its own buffer), each byte from its turn and place.
    static func message(_ turn: Int) -> [UInt8] {
        let size = turn % 9 == 4 ? 1500 + turn % 700 : 1 + (turn * 37) % 400
        return (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ turn) }
    }

    @Test("a backlog of small ciphertext sits in blocks behind partial writes and decrypts exactly; every block goes back",
          arguments: [IOBackendKind.uring, .epoll], [true, false])
    func backlog(backend: IOBackendKind, coalescing: Bool) throws {
        let files = try TLSFiles()
        let log = EventLog()
        // Process descriptors on io_uring too: the test sets SO_SNDBUF through `Connection.fd`.
        let g = try SendBlockSocketTests.start(backend, log: log, processDescriptors: true, coalescing: coalescing,
                                               tls: TLSConfiguration(port: 0, certificate: .init(chainPath: files.chain, privateKeyPath: files.key)))
        defer { g.shutdown(graceMilliseconds: 500) }
        let shard = g.shards[0]
        let client = try SocketTLSClient(port: g.tlsPort)
        #expect(waitUntil { log.opened.count == 1 })
        let id = log.opened[0]
        // An echo through the record layer: the server's session is established from here on.
        try client.write(Array("ping".utf8))
        #expect(try client.read(4) == Array("ping".utf8))
        #expect(SendBlockSocketTests.shrinkSendBuffer(shard, id) == 0, "SO_SNDBUF on the server's socket")
        // One message per shard turn, none read yet: each turn's flush seals a record and
        // queues its ciphertext behind what the full socket left.
        var expected: [UInt8] = []
        var heldInBlocks = 0
        var maxBlocks = 0
        for turn in 0..<400 {
            let m = Self.message(turn)
            expected += m
            let state = onShard(shard) { s in
                (queued: s.send(id, OutboundBytes(m)) == .queued, blocks: s.memory.blocks.blockCount,
                 held: s.memory.blocks.blockCount - s.memory.blocks.freeCount, backlog: s.queuedBytes(id))
            }
            #expect(state?.queued == true, "turn \(turn)")
            // The turn's flush runs after the closure: read the state the previous turns left.
            if let state, state.backlog > 0 && state.held > 0 { heldInBlocks += 1 }
            maxBlocks = max(maxBlocks, state?.blocks ?? 0)
        }
        if coalescing {
            #expect(heldInBlocks > 0, "no ciphertext was held in a block behind a full socket")
        } else {
            #expect(maxBlocks == 0, "coalescing is off: ciphertext takes its own buffers")
        }
        let received = try client.read(expected.count)
        #expect(received.count == expected.count)
        #expect(received == expected)
        #expect(shard.metrics.sendBlocksExhausted.value == 0)
        #expect(waitUntil { onShard(shard) { $0.queuedBytes(id) } == 0 })
        let after = SendBlockSocketTests.poolState(shard)
        #expect(after?.blocks == after?.free && after?.usedBytes == 0, "\(String(describing: after))")
        // Still a working session: an echo after the backlog.
        try client.write(Array("pong".utf8))
        #expect(try client.read(4) == Array("pong".utf8))
    }
}
