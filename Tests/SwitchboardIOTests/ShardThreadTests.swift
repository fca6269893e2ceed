@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
import Atomics

/// The shard thread is the shard's from its first line: the handler factory already runs "on
/// the shard", and no other thread is.
@Suite("Shard thread marking", .serialized)
struct ShardThreadTests {
    @Test("the handler factory runs on a thread already marked as its shard's", arguments: [IOBackendKind.uring, .epoll])
    func factoryRunsOnItsShard(backend: IOBackendKind) throws {
        var c = IOConfiguration()
        c.backend = backend
        c.shardCount = 2
        c.recvBufferCount = 64
        let marked = ManagedAtomic<Int>(0)
        let unmarked = ManagedAtomic<Int>(0)
        let log = EventLog()
        let g = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { shard in
            (shard.isCurrent ? marked : unmarked).wrappingIncrement(ordering: .relaxed)
            return EchoHandler(log: log)
        }
        try g.start()
        defer { g.shutdown(graceMilliseconds: 0) }
        // `start()` returns after every factory ran.
        #expect(marked.load(ordering: .relaxed) == 2)
        #expect(unmarked.load(ordering: .relaxed) == 0)
        // The starting thread is no shard's; each shard's work sees its own mark only.
        #expect(g.shards.allSatisfy { !$0.isCurrent })
        for shard in g.shards {
            let others = g.shards.filter { $0 !== shard }
            #expect(onShard(shard) { s in s.isCurrent && !others.contains { $0.isCurrent } } == true)
        }
    }
}
