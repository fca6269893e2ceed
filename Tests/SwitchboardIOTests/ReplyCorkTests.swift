@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs a line-based script on each connection, so that a read's replies take every path of
/// epoll's reply cork (`ReplyCork`) and of the queue beside it. One line, one action:
///   `s<text>`  a small frame `<` + text through `send(_:header:headerBytes:copying:)` (the cork's path)
///   `S<n>`     `<` + n pattern bytes the same way; where the shard takes none (nil: too large for
///              a send block and not corked) through `send(_:_:)`, as the WebSocket driver does
///   `L<n>`     n pattern bytes through `send(_:_:)` (a reference in the queue: the cork moves first)
///   `M`        records `sentBytes + queuedBytes` (the mark a pong waits for)
///   `C`        records the bytes in the cork now (`corked`)
///   `D`        `dropUnsentQueue`;  `Q` close after the flush;  `X` close at once
/// Shard thread only, like every handler.
final class ScriptHandler: ShardEventHandler, @unchecked Sendable {
    weak var shard: Shard?
    private var pending: [SocketID: [UInt8]] = [:]
    /// Marks (`M`) and refused sends, read by the test once the shard is quiet.
    let marks = ResultBox<[UInt64]>()
    let refusals = ResultBox<[String]>()
    /// `C`: the cork's byte count at that point of the read.
    let corked = ResultBox<[Int]>()
    /// Connections in the order they opened.
    let opened = ResultBox<[SocketID]>()

    func shardStarted(_ shard: Shard) { self.shard = shard }
    func connectionOpened(_ id: SocketID) { opened.set((opened.value ?? []) + [id]) }
    func connectionTimedOut(_ id: SocketID, _ timer: ConnectionTimer) { shard?.close(id, mode: .immediately) }
    func connectionClosed(_ id: SocketID) { pending[id] = nil }

    func connectionReceived(_ id: SocketID, _ bytes: UnsafeRawBufferPointer) {
        pending[id, default: []] += bytes
        while let newline = pending[id]!.firstIndex(of: UInt8(ascii: "\n")) {
            let line = Array(pending[id]![..<newline])
            pending[id]!.removeFirst(newline + 1)
            run(line, id)
        }
    }

    static func pattern(_ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) } }

    private func run(_ line: [UInt8], _ id: SocketID) {
        guard let shard, let op = line.first else { return }
        let argument = Array(line.dropFirst())
        switch op {
        case UInt8(ascii: "s"):
            let result = argument.withUnsafeBytes { shard.send(id, header: UInt64(UInt8(ascii: "<")), headerBytes: 1, copying: $0) }
            if result != .queued { refusals.set((refusals.value ?? []) + ["s\(argument.count): \(String(describing: result))"]) }
        case UInt8(ascii: "S"):
            let count = Int(String(decoding: argument, as: UTF8.self))!
            let payload = Self.pattern(count)
            let result = payload.withUnsafeBytes { shard.send(id, header: UInt64(UInt8(ascii: "<")), headerBytes: 1, copying: $0) }
                ?? shard.send(id, OutboundBytes([UInt8(ascii: "<")] + payload))
            if result != .queued { refusals.set((refusals.value ?? []) + ["S\(count): \(result)"]) }
        case UInt8(ascii: "L"):
            let count = Int(String(decoding: argument, as: UTF8.self))!
            let result = shard.send(id, OutboundBytes(Self.pattern(count)))
            if result != .queued { refusals.set((refusals.value ?? []) + ["L\(count): \(result)"]) }
        case UInt8(ascii: "M"):
            marks.set((marks.value ?? []) + [shard.sentBytes(id) &+ UInt64(shard.queuedBytes(id))])
        case UInt8(ascii: "C"):
            corked.set((corked.value ?? []) + [shard.cork.count])
        case UInt8(ascii: "D"):
            shard.dropUnsentQueue(id)
        case UInt8(ascii: "Q"):
            shard.close(id, mode: .afterFlush)
        case UInt8(ascii: "X"):
            shard.close(id, mode: .immediately)
        default:
            refusals.set((refusals.value ?? []) + ["unknown op \(op)"])
        }
    }
}

/// A one-shard server running a `ScriptHandler`, and a client connected to it. `stop()` in a
/// `defer` (not a deinit: a value may be released after its last use, before the scope ends).
final class CorkFixture {
    let handler = ScriptHandler()
    let group: ShardGroup
    let client: TestClient
    var shard: Shard { group.shards[0] }
    var metrics: IOMetrics { group.shards[0].metrics }

    /// `replyCorkBytes` nil: the default (16 KiB).
    init(_ backend: IOBackendKind, replyCorkBytes: Int? = nil, receiveTimeoutMilliseconds: Int = 5000) throws {
        raiseFileLimit()
        var c = smallConfiguration(backend, shards: 1)
        c.recvBufferBytes = 65_536
        // `partialWrite` sets SO_SNDBUF through `Connection.fd`: a process descriptor on io_uring too.
        c.uringDirectDescriptors = false
        if let replyCorkBytes { c.replyCorkBytes = replyCorkBytes }
        let handler = self.handler
        group = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in handler }
        try group.start()
        client = try TestClient(port: group.port, receiveTimeoutMilliseconds: receiveTimeoutMilliseconds)
    }

    func stop() { group.shutdown(graceMilliseconds: 500) }

    /// One reply there and back, so the connection is open and idle; then the shard's write
    /// and spill counts, to measure from.
    func warmUp() throws -> (sends: Int, spills: Int) {
        try client.send("swarm\n")
        #expect(try ReplyCorkTests.read(client, 5) == ReplyCorkTests.small("warm"))
        // The client can read a reply before the shard counts its write.
        #expect(waitUntil { self.metrics.sends.value >= 1 })
        return (metrics.sends.value, metrics.replyCorkSpills.value)
    }
}

/// Epoll writes a read's replies to its own connection from a cork when the handler returns
/// (`ReplyCork`); io_uring queues them. What must hold on both: the peer gets exactly the bytes,
/// in the order they were sent, whatever mix of paths they took; closes and drops treat the
/// cork's bytes as queued ones; the marks a pong waits for count them; and a socket that takes
/// only part of a cork gets the rest from the queue. On epoll, an echo is one write from the
/// cork (no send block, no flush).
@Suite("Reply cork: a read's replies, written when its handler returns", .serialized)
struct ReplyCorkTests {
    static let backends: [IOBackendKind] = [.epoll, .uring]

    static func small(_ text: String) -> [UInt8] { Array("<\(text)".utf8) }

    /// Reads exactly `count` bytes (fails the test on an early end).
    static func read(_ c: TestClient, _ count: Int) throws -> [UInt8] {
        try c.fill(atLeast: count)
        defer { c.removeBuffered(count) }
        return Array(c.buffered.prefix(count))
    }

    @Test("small, large and small in one read arrive in order; on epoll the first goes into the queue ahead of the large one", arguments: backends)
    func mixedPathsKeepOrder(backend: IOBackendKind) throws {
        let f = try CorkFixture(backend)
        defer { f.stop() }
        let spills = f.metrics.replyCorkSpills.value
        // 20,000 bytes do not fit the 16 KiB cork: queued by reference, behind "<A".
        try f.client.send("sA\nL20000\nsB\n")
        let expected = Self.small("A") + ScriptHandler.pattern(20_000) + Self.small("B")
        #expect(try Self.read(f.client, expected.count) == expected)
        #expect(f.handler.refusals.value == nil)
        // The large send moved the cork's "<A" into the queue first.
        #expect(f.metrics.replyCorkSpills.value - spills == (backend == .epoll ? 1 : 0))
    }

    @Test("encoded frames (send(_:_:)) join the cork, small or over a send block: a read's replies of both kinds are one write on epoll", arguments: backends)
    func encodedFramesJoin(backend: IOBackendKind) throws {
        let f = try CorkFixture(backend)
        defer { f.stop() }
        let (sends, spills) = try f.warmUp()
        try f.client.send("sA\nL100\nsB\nL512\nL2000\n")
        let expected = Self.small("A") + ScriptHandler.pattern(100) + Self.small("B") + ScriptHandler.pattern(512) + ScriptHandler.pattern(2000)
        #expect(try Self.read(f.client, expected.count) == expected)
        // The client can read the bytes before the shard counts the write: wait for the count.
        #expect(waitUntil { f.metrics.sends.value - sends >= 1 })
        #expect(f.metrics.sends.value - sends == 1, "one write for the read's five replies (io_uring: one vectored send of the queue)")
        #expect(f.metrics.replyCorkSpills.value == spills)
        #expect(f.handler.refusals.value == nil)
    }

    @Test("an echo's reply is one write from the cork on epoll, with no spill", arguments: backends)
    func oneWrite(backend: IOBackendKind) throws {
        let f = try CorkFixture(backend)
        defer { f.stop() }
        try Self.oneWritePerReply(f, rounds: 20, script: { "s\($0)\n" }, reply: { Self.small("\($0)") })
    }

    /// Sends `rounds` scripts one at a time, reads each one's reply, and checks that each was
    /// one write and that nothing spilled.
    static func oneWritePerReply(_ f: CorkFixture, rounds: Int, script: (Int) -> String, reply: (Int) -> [UInt8]) throws {
        let (sends, spills) = try f.warmUp()
        for i in 0..<rounds {
            try f.client.send(script(i))
            let expected = reply(i)
            #expect(try read(f.client, expected.count) == expected)
        }
        // The client can read the last reply before the shard counts its write: wait for it.
        #expect(waitUntil { f.metrics.sends.value - sends >= rounds })
        #expect(f.metrics.sends.value - sends == rounds, "one write per reply")
        #expect(f.metrics.replyCorkSpills.value == spills)
        #expect(f.handler.refusals.value == nil)
    }

    @Test("an echo of 1 KiB (a 1,028-byte frame, over a send block and the coalescing size) is one write from the cork on epoll, with no spill", arguments: backends)
    func kibibyteEcho(backend: IOBackendKind) throws {
        let f = try CorkFixture(backend)
        defer { f.stop() }
        let frame = [UInt8(ascii: "<")] + ScriptHandler.pattern(1027)
        try Self.oneWritePerReply(f, rounds: 20, script: { _ in "S1027\nC\n" }, reply: { _ in frame })
        // In the cork when the handler returned (io_uring: queued).
        #expect(f.handler.corked.value == Array(repeating: backend == .epoll ? 1028 : 0, count: 20))
    }

    @Test("replies over the default 16 KiB cork in one read: the first ones from the cork's bytes in the queue, the rest by reference, in order", arguments: backends)
    func overflowDefault(backend: IOBackendKind) throws {
        let f = try CorkFixture(backend)
        defer { f.stop() }
        let spills = f.metrics.replyCorkSpills.value
        // Five frames of 5,001 bytes: three fit (15,003 bytes), the fourth does not.
        try f.client.send("S5000\nS5000\nS5000\nS5000\nS5000\n")
        let frame = [UInt8(ascii: "<")] + ScriptHandler.pattern(5000)
        let expected = Array([[UInt8]](repeating: frame, count: 5).joined())
        #expect(try Self.read(f.client, expected.count) == expected)
        #expect(f.handler.refusals.value == nil)
        #expect(f.metrics.replyCorkSpills.value - spills == (backend == .epoll ? 1 : 0))
    }

    @Test("replies over a 1 KiB cork in one read arrive complete and in order", arguments: backends)
    func overflow(backend: IOBackendKind) throws {
        let f = try CorkFixture(backend, replyCorkBytes: 1024)
        defer { f.stop() }
        // 200 replies of 21 bytes: 4,200 bytes, four times the 1 KiB cork.
        var script = ""
        var expected: [UInt8] = []
        for i in 0..<200 {
            let text = String(repeating: Character(UnicodeScalar(UInt8(65 + i % 26))), count: 17) + String(format: "%03d", i)
            script += "s\(text)\n"
            expected += Self.small(text)
        }
        try f.client.send(script)
        #expect(try Self.read(f.client, expected.count) == expected)
        #expect(f.handler.refusals.value == nil)
    }

    @Test("close after the flush sends the cork's bytes first; an immediate close drops them", arguments: backends)
    func closes(backend: IOBackendKind) throws {
        let f = try CorkFixture(backend)
        defer { f.stop() }
        try f.client.send("sfirst\nsbye\nQ\n")
        #expect(try f.client.readToEnd() == Self.small("first") + Self.small("bye"))
        let b = try TestClient(port: f.group.port)
        try b.send("sgone\nX\n")
        #expect(try b.readToEnd() == [])
        // The cork did not leak into the next read of another connection.
        let c = try TestClient(port: f.group.port)
        try c.send("sstill\n")
        #expect(try Self.read(c, 6) == Self.small("still"))
    }

    @Test("dropUnsentQueue treats the cork's bytes as the queue's first run: they stay, what came after them goes", arguments: backends)
    func drop(backend: IOBackendKind) throws {
        let f = try CorkFixture(backend, receiveTimeoutMilliseconds: 300)
        defer { f.stop() }
        // Alone: the first run always stays (`SendQueue.dropUnstarted`), and so do the cork's bytes.
        try f.client.send("sfirst\nD\nsnext\n")
        #expect(try Self.read(f.client, 11) == Self.small("first") + Self.small("next"))
        // Behind the first run: the large frame and the small one after it are dropped.
        try f.client.send("sA\nL20000\nsB\nD\nsC\n")
        #expect(try Self.read(f.client, 4) == Self.small("A") + Self.small("C"))
        #expect(throws: TestClient.Failure.self) { try f.client.fill() }  // nothing else arrives
    }

    @Test("sentBytes + queuedBytes counts the cork's bytes, and sentBytes reaches the mark once they left", arguments: backends)
    func marks(backend: IOBackendKind) throws {
        let f = try CorkFixture(backend)
        defer { f.stop() }
        try f.client.send("sabc\nM\nsde\nM\n")
        #expect(try Self.read(f.client, 7) == Self.small("abc") + Self.small("de"))
        #expect(f.handler.marks.value == [4, 7])
        try f.client.send("sx\n")
        #expect(try Self.read(f.client, 2) == Self.small("x"))
        let id = try #require(f.handler.opened.value?.first)
        #expect(onShard(f.shard) { s in s.sentBytes(id) } == 9)
    }

    @Test("a socket that takes only part of a cork gets the rest from the queue, in order", arguments: backends)
    func partialWrite(backend: IOBackendKind) throws {
        let f = try CorkFixture(backend, replyCorkBytes: 65_536, receiveTimeoutMilliseconds: 10_000)
        defer { f.stop() }
        let c = f.client
        // 64 KiB socket buffers on both sides and a 64 KiB cork: the server's
        // writes run out of room after a few batches while the client does not read. (With
        // 4 KiB buffers the loopback connection stopped carrying the client's bytes as well.)
        var bufferBytes: Int32 = 65_536
        setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &bufferBytes, socklen_t(MemoryLayout<Int32>.size))
        let shard = f.shard
        #expect(waitUntil { f.handler.opened.value?.count == 1 })
        let id = try #require(f.handler.opened.value?.first)
        let set = onShard(shard) { s -> Bool in
            guard let slot = s.liveSlot(id) else { return false }
            var bytes: Int32 = 65_536
            return setsockopt(s.connections[slot].fd, SOL_SOCKET, SO_SNDBUF, &bytes, socklen_t(MemoryLayout<Int32>.size)) == 0
        }
        #expect(set == true)
        let spills = shard.metrics.replyCorkSpills.value
        let receivedBefore = shard.metrics.bytesReceived.value
        // Batches of 2,000 lines, each read on its own (the test waits until the server read it)
        // and answered with 50,000 bytes from the cork: the socket fills, until a cork goes in
        // part (or not at all) and the rest is queued (on epoll, about the fifth batch). On
        // io_uring, 20 batches through the queue.
        var expected: [UInt8] = []
        var sentBytes = 0
        var line = 0
        for _ in 0..<(backend == .epoll ? 400 : 20) {
            var script = ""
            for _ in 0..<2_000 {
                let text = String(format: "%07d-payload-of-reply", line)
                script += "s\(text)\n"
                expected += Self.small(text)
                line += 1
            }
            try c.send(script)
            sentBytes += script.utf8.count
            guard waitUntil(timeoutMilliseconds: 10_000, { shard.metrics.bytesReceived.value - receivedBefore >= sentBytes }) else {
                Issue.record("the server did not read batch \(line / 2_000)")
                break
            }
            if shard.metrics.replyCorkSpills.value > spills { break }
        }
        if backend == .epoll {
            #expect(shard.metrics.replyCorkSpills.value > spills, "the socket filled up while a cork was written")
        }
        var received: [UInt8] = []
        while received.count < expected.count {
            guard try c.fill() else { Issue.record("closed after \(received.count) bytes"); break }
            received += c.buffered
            c.clearBuffer()
        }
        #expect(received == expected)
        #expect(f.handler.refusals.value == nil)
    }
}
