@testable import SwitchboardProtocols
import SwitchboardRESP
import Testing

/// `ClusterKeys.cleanUpInSteps`: the clean-up scripts of the connection broker and RPC run one
/// `HSCAN` step at a time (a stand-in Redis here; real Redis: `ClusterConnectionBrokerTests`
/// `cleanUpSteps`).
@Suite("Cluster clean-up in steps: cursors followed to the end, answers checked")
struct ClusterCleanUpStepsTests {
    static func step(_ cursor: String, _ removed: Int64) -> RESPValue { .array([.bulkString(Array(cursor.utf8)), .integer(removed)]) }

    /// Runs the loop against `answers`, one per step, in order; the cursors it sent and `done`'s total.
    static func run(_ answers: [RESPValue?]) -> (cursors: [String], removed: Int?) {
        var sent: [String] = []
        var remaining = answers[...]
        var total: Int? = nil
        ClusterKeys.cleanUpInSteps({ cursor in [cursor] }, send: { arguments, completion in
            sent.append(String(decoding: arguments[0], as: UTF8.self))
            completion(remaining.popFirst() ?? nil)
        }, done: { total = $0 })
        return (sent, total)
    }

    @Test("each step starts from the cursor the last one returned, until \"0\"; done once, with the sum")
    func followsCursors() {
        let r = Self.run([Self.step("17", 3), Self.step("4", 0), Self.step("0", 2)])
        #expect(r.cursors == ["0", "17", "4"])
        #expect(r.removed == 5)
        #expect(Self.run([Self.step("0", 7)]) == (["0"], 7), "a small hash: one step")
    }

    @Test("a step without an answer or with a malformed one ends the clean-up with what was removed so far")
    func endsEarly() {
        #expect(Self.run([Self.step("9", 4), nil]) == (["0", "9"], 4), "Redis away")
        for bad: RESPValue in [.integer(1), .array([.bulkString(Array("x".utf8)), .integer(1)]), .array([.bulkString([]), .integer(1)]),
                               .array([.bulkString(Array("5".utf8)), .integer(-1)]), .array([.bulkString(Array("5".utf8))]),
                               .simpleError("ERR unknown command"), .array([.integer(5), .integer(1)])] {
            #expect(Self.run([Self.step("9", 4), bad]) == (["0", "9"], 4), "\(bad)")
        }
    }

    @Test("the step size is what the scripts are given")
    func stepSize() {
        let cb = ConnectionBrokerRoleKeys(keyPrefix: "p").nodeDied(3, dead: 5, keep: nil, cursor: Array("42".utf8))
        #expect(cb.map { String(decoding: $0, as: UTF8.self) } == ["EVAL", ConnectionBrokerRoleScripts.nodeDied, "2", "p:{cb}:owned:3", "p:{cb}:node:3",
                                                                     "p:{cb}:role:", "5", "", "42", "1000"])
        #expect(ClusterKeys.cleanUpBatchEntries == 1_000)
    }
}
