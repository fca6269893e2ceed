import Foundation
@testable import SwitchboardProtocols
import Switchboard
import SwitchboardCluster
import Testing

/// The RPC core's writes of the cluster directory (RPCCluster.swift) on in-memory shards,
/// with a stand-in for the shard's Redis connection that answers or fails each command as
/// the test says. The same flows over a real redis-server: `ClusterRPCTests`.
@Suite("RPC: cluster directory writes, retries and refreshes (in-memory shards, a stand-in Redis)")
struct RPCDirectorySyncTests {
    static let node = 7

    /// One shard in cluster node 7; retries every 20 ms; no periodic refresh unless asked.
    static func shards(batchIds: Int = 256) -> FakeShards {
        let shards = FakeShards(shards: 1, options: RPCCoreTests.options {
            $0.clusterDirectoryRetryMilliseconds = 20
            $0.clusterDirectoryRefreshMilliseconds = 0
            $0.clusterDirectoryBatchIds = batchIds
        })
        shards.ios[0].joinCluster(node: node)
        return shards
    }

    /// A directory write of node 7 as the ids it adds (tagged with `incarnation`) and removes;
    /// nil for anything else.
    static func write(_ c: FakeIO.RedisCommand) -> (added: [String], removed: [String], incarnation: String?)? {
        let a = c.arguments
        let ownedKey = "switchboard:{rpc}:owned:\(node)"
        if a.count == 8, a[0] == "EVAL", a[1] == RPCClusterKeys.announce, a[2] == "2", a[3] == "switchboard:{rpc}:id:\(a[6])",
           a[4] == ownedKey, a[5] == "\(node)" {
            return ([a[6]], [], a[7])
        }
        if a.count == 7, a[0] == "EVAL", a[1] == RPCClusterKeys.withdraw, a[2] == "2", a[3] == "switchboard:{rpc}:id:\(a[6])",
           a[4] == ownedKey, a[5] == "\(node)" {
            return ([], [a[6]], nil)
        }
        guard a.count >= 9, a[0] == "EVAL", a[1] == RPCClusterKeys.sync, a[2] == "1", a[3] == ownedKey,
              a[4] == "switchboard:{rpc}:id:", a[5] == "\(node)", let added = Int(a[7]), added <= a.count - 8 else { return nil }
        return (Array(a[8...].prefix(added)), Array(a[8...].dropFirst(added)), a[6])
    }

    /// A clean-up of node `node`'s entries: the incarnation it removes ("" for all) and the
    /// one it keeps ("" for none); nil for anything else.
    static func cleanUp(_ c: FakeIO.RedisCommand, node: Int) -> (dead: String, keep: String)? {
        let a = c.arguments
        guard a.count == 11, a[0] == "EVAL", a[1] == RPCClusterKeys.nodeDied, a[2] == "2", a[3] == "switchboard:{rpc}:owned:\(node)",
              a[4] == "switchboard:{rpc}:node:\(node)", a[5] == "switchboard:{rpc}:id:", a[6] == "\(node)",
              a[9] == "0", a[10] == String(ClusterConfiguration().cleanUpBatchEntries) else { return nil }
        return (a[7], a[8])
    }

    /// What Redis holds for node 7 after the answered commands, applied in order (the failed
    /// ones never reached it): id -> the incarnation that wrote it. The clean-up script's rule
    /// is applied to node 7's clean-ups (and `lateCleanUps` after all, as other processes may
    /// run them). Fails on a command that is neither.
    static func redisEntries(_ io: FakeIO, lateCleanUps: [String] = []) throws -> [String: String] {
        var entries: [String: String] = [:]
        func clean(_ dead: String, keep: String = "") { entries = entries.filter { (dead != "" && $0.value != dead) || $0.value == keep } }
        for c in io.redisCommands where c.answered {
            if let (dead, keep) = cleanUp(c, node: node) { clean(dead, keep: keep); continue }
            let w = try #require(write(c), "a directory write: \(c.arguments.prefix(2))")
            for id in w.added { entries[id] = w.incarnation }
            for id in w.removed { entries[id] = nil }
        }
        for dead in lateCleanUps { clean(dead) }
        return entries
    }

    static func redisIds(_ io: FakeIO) throws -> Set<String> { Set(try redisEntries(io).keys) }

    static func unsynced(_ shards: FakeShards) -> Int { shards.sync(0) { $0.directoryUnsyncedCount } }

    @Test("a write Redis does not answer is written again after the retry interval, as the directory says then; init does not wait for it")
    func retry() async throws {
        let shards = Self.shards()
        let io = shards.ios[0], metrics = shards.shared.metrics
        let alpha = try await shards.connect(shard: 0, id: "alpha")
        #expect(io.redisCommands.map { Self.write($0)?.added } == [["alpha"]])
        #expect(try Self.redisIds(io) == ["alpha"])
        #expect(Self.unsynced(shards) == 0)

        // Redis goes away: beta still gets init (it works within this process); its announce
        // and alpha's withdrawal wait for a retry, which fails again while Redis is away.
        io.redisAnswers(false)
        _ = try await shards.connect(shard: 0, id: "beta")
        alpha.disconnect()
        try await waitUntil { metrics.directoryWriteFailures.value >= 4 }  // the first two, then a retry of both
        #expect(Self.unsynced(shards) == 2)
        #expect(try Self.redisIds(io) == ["alpha"])

        // Redis is back: the next retry lands, and nothing is left to write.
        io.redisAnswers(true)
        try await waitUntil { Self.unsynced(shards) == 0 }
        #expect(try Self.redisIds(io) == ["beta"])
        #expect(shards.sync(0) { $0.directoryCount("beta") } == 1 && shards.sync(0) { $0.directoryCount("alpha") } == 0)
        let last = try #require(io.redisCommands.last.flatMap(Self.write))
        #expect(Set(last.added) == ["beta"] && Set(last.removed) == ["alpha"], "one batch for both")
    }

    @Test("an id that leaves before its failed announce is retried is withdrawn, not announced")
    func leftBeforeRetry() async throws {
        let shards = Self.shards()
        let io = shards.ios[0]
        _ = try await shards.connect(shard: 0, id: "other")
        io.redisAnswers(false)
        let gamma = try await shards.connect(shard: 0, id: "gamma")
        gamma.disconnect()
        shards.sync(0) { _ in }  // the unregister posted to the owner shard ran
        io.redisAnswers(true)
        try await waitUntil { Self.unsynced(shards) == 0 }
        #expect(try Self.redisIds(io) == ["other"])
        for c in io.redisCommands.dropFirst(3) {
            #expect(Self.write(c)?.added == [], "only withdrawals are retried")
        }
    }

    @Test("a retry writes at most clusterDirectoryBatchIds ids per interval")
    func retryBatches() async throws {
        let shards = Self.shards(batchIds: 2)
        let io = shards.ios[0]
        io.redisAnswers(false)
        for i in 0..<5 { _ = try await shards.connect(shard: 0, id: "id\(i)") }
        io.redisAnswers(true)
        try await waitUntil { Self.unsynced(shards) == 0 }
        #expect(try Self.redisIds(io) == Set((0..<5).map { "id\($0)" }))
        for c in io.redisCommands {
            let w = try #require(Self.write(c))
            #expect(w.added.count + w.removed.count <= 2)
        }
    }

    @Test("declared dead by the others while alive: the old incarnation's entries are removed, every owned id is written again under the new one, and a late clean-up of the old one leaves them")
    func ownDeath() async throws {
        let shards = Self.shards()
        let io = shards.ios[0], metrics = shards.shared.metrics
        for id in ["a", "b", "c"] { _ = try await shards.connect(shard: 0, id: id) }
        #expect(io.redisCommands.count == 3)
        #expect(try Self.redisEntries(io) == ["a": "100", "b": "100", "c": "100"], "tagged with the writer")
        // The engine renews the incarnation, then delivers the death of the old one.
        let old = io.renewIncarnation()
        shards.sync(0) { $0.peerNodeDied(Self.node, incarnation: old) }
        #expect(io.redisCommands.count == 4 && Self.cleanUp(io.redisCommands[3], node: Self.node).map { [$0.dead, $0.keep] } == ["100", ""],
                "the old incarnation's clean-up, at once")
        try await waitUntil { io.redisCommands.count == 5 }
        let refresh = try #require(Self.write(io.redisCommands[4]))
        #expect(Set(refresh.added) == ["a", "b", "c"] && refresh.removed.isEmpty && refresh.incarnation == "101")
        #expect(metrics.directoryRefreshes.value == 1)
        #expect(try Self.redisEntries(io) == ["a": "101", "b": "101", "c": "101"])
        // Another process cleaning up after the old incarnation, late: nothing of the new goes;
        // a clean-up of the new one, or of every incarnation, takes them all.
        #expect(try Self.redisEntries(io, lateCleanUps: ["100"]) == ["a": "101", "b": "101", "c": "101"])
        #expect(try Self.redisEntries(io, lateCleanUps: ["101"]) == [:])
        #expect(try Self.redisEntries(io, lateCleanUps: [""]) == [:])
        // Another process's death: shard 0 removes the ids its dead incarnation wrote; by hand,
        // those of every incarnation.
        shards.sync(0) { $0.peerNodeDied(3, incarnation: 42) }
        #expect(io.redisCommands.last?.arguments == ["EVAL", RPCClusterKeys.nodeDied, "2", "switchboard:{rpc}:owned:3", "switchboard:{rpc}:node:3", "switchboard:{rpc}:id:", "3", "42", "", "0", "1000"])
        shards.sync(0) { $0.peerNodeDied(3, incarnation: nil) }
        #expect(io.redisCommands.last?.arguments == ["EVAL", RPCClusterKeys.nodeDied, "2", "switchboard:{rpc}:owned:3", "switchboard:{rpc}:node:3", "switchboard:{rpc}:id:", "3", "", "", "0", "1000"])
        // This node declared dead by hand: no clean-up of its own, the ids are written again.
        let count = io.redisCommands.count
        shards.sync(0) { $0.peerNodeDied(Self.node, incarnation: nil) }
        try await waitUntil { io.redisCommands.count == count + 1 }
        #expect(Self.write(io.redisCommands[count])?.incarnation == "101")
    }

    @Test("at each Redis connection shard 0 removes the ids this node's other incarnations wrote, keeping the current one's; other shards do not")
    func earlierProcesses() async throws {
        let shards = FakeShards(shards: 2, options: RPCCoreTests.options { $0.clusterDirectoryRefreshMilliseconds = 0 })
        for io in shards.ios { io.joinCluster(node: Self.node) }
        let io = shards.ios[0], metrics = shards.shared.metrics
        func cleanUps(_ io: FakeIO) -> [[String]] { io.redisCommands.compactMap { Self.cleanUp($0, node: Self.node).map { [$0.dead, $0.keep] } } }
        shards.sync(0) { $0.clusterConnected() }
        shards.sync(1) { $0.clusterConnected() }
        #expect(cleanUps(io) == [["", "100"]], "every incarnation's but this one's")
        #expect(shards.ios[1].redisCommands.isEmpty, "shard 1 has no ids and runs no clean-up")
        #expect(metrics.staleDirectoryIds.value == 1, "the stand-in answers 1 removed")
        _ = io.renewIncarnation()
        shards.sync(0) { $0.clusterConnected() }
        #expect(cleanUps(io) == [["", "100"], ["", "101"]], "the incarnation now is kept")
    }

    @Test("a dead incarnation's clean-up Redis does not answer goes out again at shard 0's next Redis connection, once; one declared by hand does not")
    func unansweredCleanUp() async throws {
        let shards = FakeShards(shards: 1, options: RPCCoreTests.options { $0.clusterDirectoryRefreshMilliseconds = 0 })
        shards.ios[0].joinCluster(node: Self.node)
        let io = shards.ios[0], metrics = shards.shared.metrics
        /// Node `node`'s clean-ups sent so far: the dead incarnation ("" for every one) and whether it was answered.
        func cleanUps(of node: Int) -> [String] {
            io.redisCommands.compactMap { c in Self.cleanUp(c, node: node).map { "\($0.dead) \(c.answered ? "answered" : "unanswered")" } }
        }
        io.redisAnswers(false)
        shards.sync(0) { $0.peerNodeDied(3, incarnation: 42) }
        shards.sync(0) { $0.peerNodeDied(4, incarnation: nil) }
        #expect(cleanUps(of: 3) == ["42 unanswered"])
        #expect(cleanUps(of: 4) == [" unanswered"])
        io.redisAnswers(true)
        shards.sync(0) { $0.clusterConnected() }
        #expect(cleanUps(of: 3) == ["42 unanswered", "42 answered"], "resumed from the step that went unanswered (cursor 0)")
        #expect(cleanUps(of: 4) == [" unanswered"], "by hand: not kept")
        #expect(metrics.directoryCleanUpsResumed.value == 1)
        shards.sync(0) { $0.clusterConnected() }
        #expect(cleanUps(of: 3).count == 2, "finished: not sent again")
        #expect(metrics.directoryCleanUpsResumed.value == 1)
    }

    @Test("a clean-up cut by a full backlog goes on when shard 0's backlog drains, once; another shard's drain sends nothing")
    func backlogDrained() async throws {
        let shards = FakeShards(shards: 2, options: RPCCoreTests.options { $0.clusterDirectoryRefreshMilliseconds = 0 })
        for io in shards.ios { io.joinCluster(node: Self.node) }
        let io = shards.ios[0], metrics = shards.shared.metrics
        func cleanUps(of node: Int) -> [String] {
            io.redisCommands.compactMap { c in Self.cleanUp(c, node: node).map { "\($0.dead) \(c.answered ? "answered" : "unanswered")" } }
        }
        io.redisAnswers(false)
        shards.sync(0) { $0.peerNodeDied(3, incarnation: 42) }
        #expect(cleanUps(of: 3) == ["42 unanswered"])
        io.redisAnswers(true)
        shards.sync(1) { $0.clusterBacklogDrained() }
        #expect(cleanUps(of: 3) == ["42 unanswered"], "shard 1 runs no clean-up")
        #expect(shards.ios[1].redisCommands.isEmpty)
        shards.sync(0) { $0.clusterBacklogDrained() }
        #expect(cleanUps(of: 3) == ["42 unanswered", "42 answered"], "resumed from the step that went unanswered")
        #expect(metrics.directoryCleanUpsResumed.value == 1)
        shards.sync(0) { $0.clusterBacklogDrained() }
        shards.sync(0) { $0.clusterConnected() }
        #expect(cleanUps(of: 3).count == 2, "finished: not sent again")
        #expect(metrics.directoryCleanUpsResumed.value == 1)
    }

    @Test("the periodic refresh writes every owned id")
    func periodicRefresh() async throws {
        let shards = FakeShards(shards: 1, options: RPCCoreTests.options {
            $0.clusterDirectoryRefreshMilliseconds = 1000
        })
        shards.ios[0].joinCluster(node: Self.node)
        let io = shards.ios[0]
        for id in ["x", "y"] { _ = try await shards.connect(shard: 0, id: id) }
        // The first refresh is due one second after the shard started, perhaps between the two
        // connections on a loaded machine: wait for one that writes both.
        try await waitUntil(seconds: 10) {
            io.redisCommands.dropFirst(2).contains { c in Self.write(c).map { Set($0.added) == ["x", "y"] && $0.removed.isEmpty } == true }
        }
        #expect(shards.shared.metrics.directoryRefreshes.value >= 1)
    }

    @Test("batches: consecutive, in order, at most the size each, none for nothing")
    func batches() {
        #expect([1, 2, 3, 4, 5].batches(of: 2).map(Array.init) == [[1, 2], [3, 4], [5]])
        #expect([1, 2, 3, 4].batches(of: 2).map(Array.init) == [[1, 2], [3, 4]])
        #expect([1, 2].batches(of: 256).map(Array.init) == [[1, 2]])
        #expect([Int]().batches(of: 3).isEmpty)
    }

    @Test("options: the directory's bounds are validated")
    func validation() {
        var o = RPCServerOptions()
        #expect(o.validate() == nil)
        o.clusterDirectoryRetryMilliseconds = 0
        #expect(o.validate() == "rpc clusterDirectoryRetryMilliseconds must be in 1...60000, got 0")
        o = RPCServerOptions()
        o.clusterDirectoryRefreshMilliseconds = 999
        #expect(o.validate() == "rpc clusterDirectoryRefreshMilliseconds must be 0 (off) or at least 1000, got 999")
        o.clusterDirectoryRefreshMilliseconds = 0
        #expect(o.validate() == nil)
        o.clusterDirectoryBatchIds = 4097
        #expect(o.validate() == "rpc clusterDirectoryBatchIds must be in 1...4096, got 4097")
    }
}
