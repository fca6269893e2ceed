@testable import SwitchboardProtocols
import Switchboard
import SwitchboardCluster
import SwitchboardRESP
import Testing

/// `ClusterKeys.cleanUpInSteps`: the clean-up scripts of the connection broker and RPC run one
/// `HSCAN` step at a time (a stand-in Redis here; real Redis: `ClusterConnectionBrokerTests`
/// `cleanUpSteps`).
@Suite("Cluster clean-up in steps: cursors followed to the end, answers checked")
struct ClusterCleanUpStepsTests {
    static func step(_ cursor: String, _ removed: Int64) -> RESPValue { .array([.bulkString(Array(cursor.utf8)), .integer(removed)]) }

    /// Runs the loop against `answers`, one per step, in order, from `cursor`; the cursors it
    /// sent, `done`'s total and the cursor of the step left unanswered (calls of `done`: one).
    static func run(_ answers: [RESPValue?], from cursor: String = "0") -> (cursors: [String], removed: Int?, unanswered: String?) {
        var sent: [String] = []
        var remaining = answers[...]
        var total: Int? = nil, unanswered: String? = nil, calls = 0
        ClusterKeys.cleanUpInSteps({ cursor in [cursor] }, send: { arguments, completion in
            sent.append(String(decoding: arguments[0], as: UTF8.self))
            completion(remaining.popFirst() ?? nil)
        }, from: Array(cursor.utf8), done: { removed, cursor in
            calls += 1
            total = removed
            unanswered = cursor.map { String(decoding: $0, as: UTF8.self) }
        })
        #expect(calls == 1, "done once")
        return (sent, total, unanswered)
    }

    @Test("each step starts from the cursor the last one returned, until \"0\"; done once, with the sum")
    func followsCursors() {
        let r = Self.run([Self.step("17", 3), Self.step("4", 0), Self.step("0", 2)])
        #expect(r.cursors == ["0", "17", "4"])
        #expect(r.removed == 5)
        #expect(r.unanswered == nil)
        #expect(Self.run([Self.step("0", 7)]) == (["0"], 7, nil), "a small hash: one step")
        #expect(Self.run([Self.step("4", 1), Self.step("0", 2)], from: "17") == (["17", "4"], 3, nil), "resumed at a kept cursor")
    }

    @Test("a step without an answer, or with an error reply, ends the clean-up with what was removed so far and that step's cursor; a malformed one without a cursor")
    func endsEarly() {
        #expect(Self.run([Self.step("9", 4), nil]) == (["0", "9"], 4, "9"), "Redis away")
        #expect(Self.run([nil]) == (["0"], 0, "0"), "Redis away at the first step")
        for error: RESPValue in [.simpleError("LOADING Redis is loading the dataset in memory"), .simpleError("ERR unknown command"),
                                 .bulkError(Array("BUSY".utf8))] {
            #expect(Self.run([Self.step("9", 4), error]) == (["0", "9"], 4, "9"), "\(error)")
        }
        for bad: RESPValue in [.integer(1), .array([.bulkString(Array("x".utf8)), .integer(1)]), .array([.bulkString([]), .integer(1)]),
                               .array([.bulkString(Array("5".utf8)), .integer(-1)]), .array([.bulkString(Array("5".utf8))]),
                               .null, .array([.integer(5), .integer(1)])] {
            #expect(Self.run([Self.step("9", 4), bad]) == (["0", "9"], 4, nil), "\(bad)")
        }
    }

    @Test("unfinished clean-ups: one per node id, a later death of the node replaces the kept one, taken all at once by node id")
    func unfinished() {
        var kept = UnfinishedCleanUps()
        #expect(kept.takeAll().isEmpty)
        kept.keep(.init(node: 7, incarnation: 70, cursor: Array("12".utf8)))
        kept.keep(.init(node: 3, incarnation: 30, cursor: Array("0".utf8)))
        kept.keep(.init(node: 7, incarnation: 71, cursor: Array("5".utf8)))
        #expect(kept.count == 2)
        #expect(kept.takeAll() == [.init(node: 3, incarnation: 30, cursor: Array("0".utf8)), .init(node: 7, incarnation: 71, cursor: Array("5".utf8))])
        #expect(kept.count == 0)
        #expect(kept.takeAll().isEmpty, "taken once")
        for node in UnfinishedCleanUps.nodeIds { kept.keep(.init(node: node, incarnation: 1, cursor: Array("0".utf8))) }
        #expect(kept.count == 256, "the bound: every node id once")
        kept.keep(.init(node: 256, incarnation: 1, cursor: Array("0".utf8)))
        kept.keep(.init(node: -1, incarnation: 1, cursor: Array("0".utf8)))
        #expect(kept.count == 256, "an id outside 0...255 is not kept")
    }

    @Test("the step size is what the scripts are given")
    func stepSize() {
        let cb = ConnectionBrokerRoleKeys(keyPrefix: "p", cleanUpBatchEntries: 250).nodeDied(3, dead: 5, keep: nil, cursor: Array("42".utf8))
        #expect(cb.map { String(decoding: $0, as: UTF8.self) } == ["EVAL", ConnectionBrokerRoleScripts.nodeDied, "2", "p:{cb}:owned:3", "p:{cb}:node:3",
                                                                     "p:{cb}:role:", "5", "", "42", "250"])
        let rpc = RPCClusterKeys(prefix: "p", cleanUpBatchEntries: 7).nodeDied(3, dead: nil, keep: 9, cursor: Array("0".utf8))
        #expect(rpc.map { String(decoding: $0, as: UTF8.self) } == ["EVAL", RPCClusterKeys.nodeDied, "2", "p:{rpc}:owned:3", "p:{rpc}:node:3",
                                                                      "p:{rpc}:id:", "3", "", "9", "0", "7"])
        // cluster_cleanup_batch_entries: default, range, and the configuration key.
        var c = ClusterConfiguration()
        #expect(c.cleanUpBatchEntries == 1_000 && c.validate() == nil)
        for bad in [0, 100_001] {
            c.cleanUpBatchEntries = bad
            #expect(c.validate() == "cluster_cleanup_batch_entries must be 1...100000")
        }
        c.cleanUpBatchEntries = 1
        #expect(c.validate() == nil)
        var b = BrokerConfiguration()
        #expect(throws: Never.self) { try b.set("cluster_cleanup_batch_entries", "40") }
        #expect(b.cluster.cleanUpBatchEntries == 40)
        #expect(b.value(forKey: "cluster_cleanup_batch_entries") == "40")
    }
}
