import Switchboard
import SwitchboardClient
import SwitchboardIO
import SwitchboardProtocols
import SwitchboardTestSupport
import Synchronization
import Testing

/// The Swift SDK against the real Switchboard connection broker (not the Python reference).
final class Inbox: Sendable {
    private let items = Mutex<[JSONValue]>([])
    private let channels = Mutex<[BrokerChannel]>([])
    func add(_ v: JSONValue) { items.withLock { $0.append(v) } }
    func add(_ c: BrokerChannel) { channels.withLock { $0.append(c) } }
    var values: [JSONValue] { items.withLock { $0 } }
    var incoming: [BrokerChannel] { channels.withLock { $0 } }
}

func startConnectionBroker(_ backend: IOBackendKind) throws -> (Broker, ConnectionBroker) {
    raiseFileLimit()
    var c = BrokerConfiguration()
    c.host = "127.0.0.1"
    c.port = 0
    c.io.backend = backend
    c.io.shardCount = 2
    c.io.recvBufferCount = 256
    let cb = ConnectionBroker()
    let broker = Broker(configuration: c, logger: .discarding, handlerFactory: cb.handlerFactory())
    try broker.start()
    return (broker, cb)
}

func eventuallyTrue(_ timeoutMilliseconds: Int = 10_000, _ condition: () -> Bool) async -> Bool {
    var waited = 0
    while waited < timeoutMilliseconds {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(2))
        waited += 2
    }
    return condition()
}

@Suite("SDK end to end against Switchboard", .serialized)
struct EndToEndTests {
    @Test("two clients on different shards exchange confirmed messages both ways", arguments: [IOBackendKind.uring, .epoll])
    func twoClients(backend: IOBackendKind) async throws {
        let (broker, cb) = try startConnectionBroker(backend)
        defer { broker.shutdown(graceMilliseconds: 1000) }
        let url = "ws://127.0.0.1:\(broker.port)/"
        let a = BrokerClient(url: url), b = BrokerClient(url: url)
        try await a.connect(role: "alpha")
        try await b.connect(role: "beta")
        let aID = try #require(a.myId), bID = try #require(b.myId)
        let aShard = try #require(cb.socketId(forConnectionId: aID)).shard
        let bShard = try #require(cb.socketId(forConnectionId: bID)).shard
        #expect(aShard != bShard)
        #expect(try await a.listByRole("beta") == [bID])
        #expect(try await b.listByRole("alpha") == [aID])

        let atB = Inbox(), atA = Inbox()
        b.onIncomingChannel = { channel in
            atB.add(channel)
            channel.onMessage = { atB.add($0) }
        }
        let channel = try await a.openChannel(bID)
        channel.onMessage = { atA.add($0) }
        #expect(channel.peerId == bID)
        for i in 0..<200 {
            try await channel.send(["n": .number(Double(i)), "text": "héllo ✓", "list": [true, .null]])
        }
        #expect(await eventuallyTrue { atB.values.count == 200 })
        #expect(atB.values.enumerated().allSatisfy { $0.element["n"] == .number(Double($0.offset)) })
        let incoming = try #require(atB.incoming.first)
        #expect(incoming.peerId == aID && incoming.id == channel.id)
        try await incoming.send("pong")
        #expect(await eventuallyTrue { atA.values == ["pong"] })

        let closed = Inbox()
        incoming.onClosed = { closed.add(.bool(true)) }
        try await channel.close()
        #expect(await eventuallyTrue { closed.values.count == 1 })
        await a.disconnect()
        await b.disconnect()
    }

    @Test("1,000 channels at once, each with a confirmed message", arguments: [IOBackendKind.uring, .epoll])
    func thousandChannels(backend: IOBackendKind) async throws {
        let (broker, cb) = try startConnectionBroker(backend)
        defer { broker.shutdown(graceMilliseconds: 1000) }
        let url = "ws://127.0.0.1:\(broker.port)/"
        let a = BrokerClient(url: url), b = BrokerClient(url: url)
        try await a.connect(role: "opener")
        try await b.connect(role: "target")
        let bID = try #require(b.myId)
        let received = Inbox()
        b.onIncomingChannel = { channel in channel.onMessage = { received.add($0) } }
        let channels = try await withThrowingTaskGroup(of: BrokerChannel.self) { group in
            for _ in 0..<1000 { group.addTask { try await a.openChannel(bID) } }
            var all: [BrokerChannel] = []
            for try await c in group { all.append(c) }
            return all
        }
        #expect(Set(channels.map(\.id)).count == 1000)
        #expect(cb.counts.channels == 1000)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, c) in channels.enumerated() { group.addTask { try await c.send(.number(Double(i))) } }
            try await group.waitForAll()
        }
        #expect(await eventuallyTrue { received.values.count == 1000 })
        #expect(Set(received.values) == Set((0..<1000).map { JSONValue.number(Double($0)) }))
        await a.disconnect()
        #expect(await eventuallyTrue { cb.counts.channels == 0 })
        await b.disconnect()
    }
}
