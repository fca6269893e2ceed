import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A handler that registers itself in a `PerShard` from the factory and counts what other
/// shards ask of it.
final class PerShardWorker: WorkerHandler {
    let context: ShardContext
    var pokes = 0
    init(_ context: ShardContext, _ registry: PerShard<PerShardWorker>) {
        self.context = context
        registry[context] = self
    }
}

@Suite("Rooms: ShardContext on its shard, Broker from anywhere")
struct RoomsTests {
    @Test("execute(onShard:) runs on that shard with its context; PerShard reaches its handler there without casts", arguments: backends)
    func executeAndPerShard(backend: IOBackendKind) async throws {
        let registry = PerShard<PerShardWorker>()
        let server = try ServerFixture(backend: backend, shards: 3, worker: { PerShardWorker($0, registry) })
        defer { server.stop() }
        for shard in 0..<3 {
            #expect(server.broker.execute(onShard: shard) { context in
                registry[context]!.pokes += 1
            } == .queued)
            let (index, onShard, pokes) = try await server.broker.perform(onShard: shard) { context in
                (context.shardIndex, context.isOnShard, registry[context]!.pokes)
            }
            #expect(index == shard && onShard && pokes == 1)
        }
        #expect(server.broker.execute(onShard: 3) { _ in } == .refused(.unknownShard))
        await #expect(throws: BrokerError.unknownShard) { try await server.broker.perform(onShard: -1) { _ in 0 } }
    }

    @Test("after shutdown every Broker call is refused or throws .stopped, never waits", arguments: backends)
    func refusedAfterShutdown(backend: IOBackendKind) async throws {
        let server = try ServerFixture(backend: backend)
        server.stop()
        let id = SocketID(shard: 0, slot: 0, generation: 0)
        #expect(server.broker.send(id, .text("x")) == .refused(.stopped))
        #expect(server.broker.close(id, code: .goingAway) == .refused(.stopped))
        #expect(server.broker.publish("c", .text("x")) == .refused(.stopped))
        #expect(server.broker.execute(onShard: 0) { _ in } == .refused(.stopped))
        await #expect(throws: BrokerError.stopped) { try await server.broker.subscribe(id, "c") }
        await #expect(throws: BrokerError.stopped) { try await server.broker.subscriberCount("c") }
        await #expect(throws: BrokerError.stopped) { try await server.broker.perform(onShard: 0) { $0.shardIndex } }
    }

    @Test("WebSocketCloseCode refuses codes that may not be sent")
    func closeCodes() {
        #expect(WebSocketCloseCode(rawValue: 1000) == .normalClosure)
        #expect(WebSocketCloseCode(rawValue: 4001) == .application(4001))
        for forbidden: UInt16 in [0, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
            #expect(WebSocketCloseCode(rawValue: forbidden) == nil, "\(forbidden)")
        }
    }
}
