@testable import Switchboard
import SwitchboardIO
import SwitchboardWebSocket
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `OutboundFramePool` (issue 16 item 3): exact frame bytes from new and recycled blocks, a
/// block reused only once nothing else holds it, never more than `blockCount` blocks held, and
/// frames over `blockBytes` outside the pool. (A block is told by its bytes' address, which is
/// its heap block's.)
@Suite("Outbound frame pool: reuse and bound")
struct OutboundFramePoolTests {
    private func frame(_ pool: OutboundFramePool, _ text: String) -> OutboundBytes { pool.frame(.text(text)) }

    private func expected(_ text: String) -> [UInt8] { [0x81, UInt8(text.utf8.count)] + Array(text.utf8) }

    @Test("a released block is reused, with the new frame's bytes and length")
    func reuse() {
        let pool = OutboundFramePool(blockCount: 2, blockBytes: 128)
        var first: UnsafeRawPointer?
        do {
            let a = frame(pool, "a longer first message")
            #expect(a.array == expected("a longer first message"))
            first = a.base
        }
        do {
            let b = frame(pool, "second")  // slot 1: a block of its own
            #expect(b.array == expected("second"))
            #expect(b.base != first)
        }
        let c = frame(pool, "third")  // slot 0 again, released: reused, shorter than before
        #expect(c.base == first)
        #expect(c.array == expected("third"))
        #expect(c.count == 7)
        #expect(pool.reusedCount == 1 && pool.heldCount == 0)
        #expect(pool.heldBlocks == 2)
    }

    @Test("a block still held (a queue has it) is not rewritten: the frame gets its own")
    func heldBlockSkipped() {
        let pool = OutboundFramePool(blockCount: 1, blockBytes: 128)
        let queued = frame(pool, "still queued")
        let next = frame(pool, "next")
        #expect(next.base != queued.base)
        #expect(queued.array == expected("still queued"))
        #expect(next.array == expected("next"))
        #expect(pool.heldCount == 1 && pool.reusedCount == 0)
        #expect(pool.heldBlocks == 1)
    }

    @Test("never more than blockCount blocks; frames over blockBytes bypass the pool")
    func bound() {
        let pool = OutboundFramePool(blockCount: 4, blockBytes: 64)
        var kept: [OutboundBytes] = []
        for i in 0..<20 { kept.append(frame(pool, "message \(i)")) }  // all held: 4 pooled, 16 own
        #expect(pool.heldBlocks == 4)
        #expect(pool.heldCount == 16)
        for (i, f) in kept.enumerated() { #expect(f.array == expected("message \(i)")) }
        kept.removeAll()
        let large = String(repeating: "x", count: 63)  // 65 bytes with its header: over 64
        let big = frame(pool, large)
        #expect(big.array == expected(large))
        #expect(pool.reusedCount == 0, "a large frame took a pooled block")
        for i in 0..<8 { _ = frame(pool, "again \(i)") }
        #expect(pool.reusedCount == 8)
        #expect(pool.heldBlocks == 4)
    }

    @Test("by default a 1 KiB message's frame comes from a pooled block, and the block is reused")
    func kibibyteFramesPooled() {
        let pool = OutboundFramePool(blockCount: 1)
        let payload = (0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let first = pool.frame(.binary(payload))
        #expect(first.array == [0x82, 126, 0x04, 0x00] + payload)
        let base = first.base
        _ = consume first
        let second = pool.frame(.binary(payload.reversed()))
        #expect(second.base == base)
        #expect(second.array == [0x82, 126, 0x04, 0x00] + payload.reversed())
        #expect(pool.reusedCount == 1 && pool.heldCount == 0)
    }

    @Test("binary messages and a 126-byte payload (16-bit length) from a pooled block")
    func binaryAndExtendedLength() {
        let pool = OutboundFramePool(blockCount: 2, blockBytes: 256)
        let payload = (0..<126).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let f = pool.frame(.binary(payload))
        #expect(f.array == [0x82, 126, 0, 126] + payload)
    }
}

/// `WebSocketConnectionDriver.frameHeader`, the header a small reply's send block starts with.
@Suite("Frame header for send blocks")
struct FrameHeaderTests {
    @Test("the header's bytes, low first, are WebSocketFrame.writeHeader's for every short length")
    func matchesWriteHeader() {
        for opcode in [WebSocketOpcode.text, .binary] {
            for count in 0...WebSocketConnectionDriver.shortHeaderMaxPayload {
                let (header, n) = WebSocketConnectionDriver.frameHeader(opcode, payloadCount: count)
                var written = [UInt8](repeating: 0, count: 14)
                let m = written.withUnsafeMutableBytes {
                    WebSocketFrame.writeHeader(opcode: opcode, payloadCount: count, fin: true, rsv1: false, into: $0.baseAddress!)
                }
                let bytes = (0..<8).map { UInt8(truncatingIfNeeded: header >> (8 * UInt64($0))) }
                guard n == m, Array(bytes[..<n]) == Array(written[..<m]), bytes[n...].allSatisfy({ $0 == 0 }) else {
                    Issue.record("opcode \(opcode) length \(count): \(bytes) (\(n)) against \(written) (\(m))")
                    return
                }
            }
        }
    }
}

/// Sends each message it gets back twice: the second frame finds the first still queued, so
/// the shard copies it into a send block (and, on the way, the first one too).
private final class TwiceWorker: WorkerHandler {
    let context: ShardContext
    init(_ context: ShardContext) { self.context = context }
    func handleSocketMessage(_ message: borrowing SocketMessageView, socketId: SocketID, token: [UInt8]?) {
        context.send(socketId, message)
        context.send(socketId, message)
    }
}

/// A value set on a shard thread and read by the test.
private final class ShardReading: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var value: (reused: Int, held: Int)?
    init() { pthread_mutex_init(&lock, nil) }
    func set(_ v: (Int, Int)) { pthread_mutex_lock(&lock); value = (v.0, v.1); pthread_mutex_unlock(&lock) }
    var read: (reused: Int, held: Int)? { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return value }
}

@Suite("Outbound frame pool: references over real sockets", .serialized)
struct OutboundFramePoolSocketTests {
    /// The pool's counters, read on the shard's thread.
    private func poolCounts(_ server: ServerFixture) -> (reused: Int, held: Int)? {
        let reading = ShardReading()
        _ = server.broker.onShard(0) { dispatcher in
            let pool = dispatcher.webSockets.framePool
            reading.set((pool.reusedCount, pool.heldCount))
        }
        #expect(waitUntil { reading.read != nil })
        return reading.read
    }

    /// Sends `rounds` messages of `payloadBytes` to a `TwiceWorker` and checks both replies.
    private func echoTwice(_ server: ServerFixture, rounds: Int, payloadBytes: Int) throws {
        let c = try server.client()
        #expect(try c.upgrade(path: "/ws").status == 101)
        for i in 0..<rounds {
            let text = Array(String(repeating: "\(i % 10)", count: payloadBytes).utf8)
            try c.sendFrame(opcode: 1, payload: text)
            let header: [UInt8] = text.count < 126 ? [0x81, UInt8(text.count)] : [0x81, 126, UInt8(text.count >> 8), UInt8(text.count & 0xFF)]
            let frame = header + text
            #expect(try c.readBytes(2 * frame.count) == frame + frame, "round \(i)")
        }
    }

    /// Frames over the shard's send-block size (`sendCoalesceMaxFrameBytes`) take the pool:
    /// the driver hands the shard each pooled frame's +1 (`Shard.send(_:retained:)`), queued
    /// then written. Either way the block is the pool's alone again by the time its slot comes
    /// round: every frame after the first `blockCount` reuses one, none finds its block held.
    /// Epoll's reply cork is off here: it would take these replies (next test).
    @Test("every pooled frame's reference comes back", arguments: backends)
    func referencesComeBack(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend, shards: 1, configure: {
            $0.webSocket.perMessageDeflate = false
            $0.io.replyCorkBytes = 0
        }, worker: { TwiceWorker($0) })
        defer { server.stop() }
        let rounds = 100
        // 600 + 4 header bytes: over the default 512 of a send block, within the pool's 1,280.
        try echoTwice(server, rounds: rounds, payloadBytes: 600)
        let counts = poolCounts(server)
        #expect(counts?.reused == 2 * rounds - OutboundFramePool.defaultBlockCount)
        #expect(counts?.held == 0)
    }

    /// On epoll a read's replies over a send block go into the reply cork (`ReplyCork`, 16 KiB
    /// by default), written in place: no pooled frame either, and the same bytes.
    @Test("on epoll replies over a send block go into the reply cork, not the pool")
    func largerRepliesCorked() throws {
        let server = try ServerFixture(backend: .epoll, shards: 1, configure: { $0.webSocket.perMessageDeflate = false },
                                       worker: { TwiceWorker($0) })
        defer { server.stop() }
        try echoTwice(server, rounds: 100, payloadBytes: 600)
        try echoTwice(server, rounds: 20, payloadBytes: 5000)
        let counts = poolCounts(server)
        #expect(counts?.reused == 0 && counts?.held == 0, "a reply took the pool")
    }

    /// Small frames go straight into the shard's send blocks
    /// (`Shard.send(_:header:headerBytes:copying:)`, the second one copied behind the first):
    /// the pool is not used. With coalescing off (no send blocks) they take the pool, as
    /// above (epoll's reply cork off too); the replies are the same bytes either way.
    @Test("small frames go into send blocks, or to the pool without them", arguments: backends, [true, false])
    func smallFramesUseSendBlocks(backend: IOBackendKind, blocks: Bool) throws {
        let server = try ServerFixture(backend: backend, shards: 1, configure: {
            $0.webSocket.perMessageDeflate = false
            if !blocks {
                $0.io.sendCoalesceMaxFrameBytes = 0
                $0.io.replyCorkBytes = 0
            }
        }, worker: { TwiceWorker($0) })
        defer { server.stop() }
        let rounds = 100
        try echoTwice(server, rounds: rounds / 2, payloadBytes: 20)
        try echoTwice(server, rounds: rounds / 2, payloadBytes: 300)  // a 16-bit length
        let counts = poolCounts(server)
        if blocks {
            #expect(counts?.reused == 0 && counts?.held == 0, "a small frame took the pool")
        } else {
            #expect(counts?.reused == 2 * rounds - OutboundFramePool.defaultBlockCount)
            #expect(counts?.held == 0)
        }
    }
}
