@testable import Switchboard
@testable import SwitchboardCluster
import SwitchboardIO
import SwitchboardRESP
import Testing

/// The remote socket call's wire format, the history script's answer as recovery reads it,
/// the pending-call table and the configuration keys (no Redis).
@Suite("Cluster recovery and remote calls: wire formats")
struct ClusterRecoveryUnitTests {
    func withBytes<T>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) -> T) -> T { bytes.withUnsafeBytes(body) }

    @Test func requestRoundTripAndExactBytes() {
        let request = RemoteSocketCall.Request(operation: .subscribe, socket: SocketID(rawValue: 0x0201_0000_0000_0009),
                                               fromNode: 255, fromShard: 0x0102, call: 0x0A0B, channel: "room")
        let bytes = RemoteSocketCall.encode(request)
        #expect(bytes == [0x71, 0x73, 2, 1, 0, 0, 0, 0, 0, 9, 255, 1, 2, 0, 0, 0, 0, 0, 0, 0x0A, 0x0B] + Array("room".utf8))
        #expect(withBytes(bytes) { RemoteSocketCall.decodeRequest($0) } == request)
        let list = RemoteSocketCall.Request(operation: .subscriptions, socket: SocketID(rawValue: 1), fromNode: 0, fromShard: 0,
                                            call: 1, channel: ChannelName([]))
        #expect(withBytes(RemoteSocketCall.encode(list)) { RemoteSocketCall.decodeRequest($0) } == list)
        // Malformed: short, unknown operation, a channel where none belongs.
        for bad: [UInt8] in [Array(bytes.prefix(20)), [0x71, 0x7A] + Array(bytes.dropFirst(2)),
                             RemoteSocketCall.encode(list) + [0x61]] {
            #expect(withBytes(bad) { RemoteSocketCall.decodeRequest($0) } == nil, "\(bad)")
        }
    }

    @Test(arguments: [RemoteSocketAnswer.subscribe(.subscribed), .subscribe(.tooManyChannels), .subscribe(.notFound),
                      .unsubscribe(true), .unsubscribe(false), .subscriptions([]), .subscriptions(["a", "bb", ""]), .unknownShard])
    func answerRoundTrip(answer: RemoteSocketAnswer) {
        let a = RemoteSocketCall.Answer(toShard: 3, call: 77, answer: answer)
        let bytes = RemoteSocketCall.encode(a)
        #expect(Array(bytes.prefix(11)) == [0x72, 0, 3, 0, 0, 0, 0, 0, 0, 0, 77])
        #expect(withBytes(bytes) { RemoteSocketCall.decodeAnswer($0) } == a)
        // Every cut of it is malformed, except where a list happens to end on a channel.
        if case .subscriptions = answer {} else {
            for n in 0..<bytes.count { #expect(withBytes(Array(bytes.prefix(n))) { RemoteSocketCall.decodeAnswer($0) } == nil) }
        }
    }

    @Test func malformedAnswers() {
        let head: [UInt8] = [0x72, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        for bad: [[UInt8]] in [[head + [0x73, 9]], [head + [0x75, 2]], [head + [0x6C, 0, 0, 0, 5, 0x61]], [head + [0x78, 0]], [head + [0x3F]]] {
            #expect(withBytes(bad[0]) { RemoteSocketCall.decodeAnswer($0) } == nil, "\(bad[0])")
        }
    }

    func framed(_ epoch: UInt64, _ offset: UInt64, _ text: String) -> RESPValue {
        .bulkString(Array("\(epoch):\(offset):t\(text)".utf8))
    }

    @Test func historyAnswers() {
        let after = ClusterPosition(epoch: 42, offset: 5)
        // Two missed, both there: recovered, in order.
        let two = RedisChannelScript.decodeHistory(.array([.bulkString(Array("42".utf8)), .integer(7), .array([framed(42, 6, "f"), framed(42, 7, "g")])]), after: after)
        #expect(two == .messages([ClusterHistoryEntry(position: .init(epoch: 42, offset: 6), kind: .text, payload: Array("f".utf8)),
                                  ClusterHistoryEntry(position: .init(epoch: 42, offset: 7), kind: .text, payload: Array("g".utf8))]))
        // Nothing missed.
        #expect(RedisChannelScript.decodeHistory(.array([.bulkString(Array("42".utf8)), .integer(5), .array([])]), after: after) == .messages([]))
        // Another epoch, or none (Redis lost the stream).
        #expect(RedisChannelScript.decodeHistory(.array([.bulkString(Array("43".utf8)), .integer(7), .array([])]), after: after) == .lost(.epochChanged))
        #expect(RedisChannelScript.decodeHistory(.array([.bulkString([]), .integer(0), .array([])]), after: after) == .lost(.epochChanged))
        // Trimmed: fewer than missed, or offsets that do not follow.
        #expect(RedisChannelScript.decodeHistory(.array([.bulkString(Array("42".utf8)), .integer(7), .array([framed(42, 7, "g")])]), after: after) == .lost(.trimmed))
        #expect(RedisChannelScript.decodeHistory(.array([.bulkString(Array("42".utf8)), .integer(7), .array([framed(42, 7, "g"), framed(42, 6, "f")])]), after: after) == .lost(.trimmed))
        #expect(RedisChannelScript.decodeHistory(.array([.bulkString(Array("42".utf8)), .integer(3), .array([])]), after: after) == .lost(.trimmed))
        // Over the limit (the script read nothing).
        #expect(RedisChannelScript.decodeHistory(.array([.bulkString(Array("42".utf8)), .integer(9000), .integer(-1)]), after: after) == .lost(.overLimit))
        // Not the script's answer.
        #expect(RedisChannelScript.decodeHistory(.simpleError("MOVED 1 127.0.0.1:7000"), after: after) == nil)
        #expect(RedisChannelScript.decodeHistory(.array([.bulkString(Array("42".utf8)), .integer(6), .array([.bulkString(Array("junk".utf8))])]), after: after) == nil)
    }

    @Test func pendingCalls() {
        let calls = RemoteSocketCalls()
        var ended: [String] = []
        let first = calls.add(deadlineMilliseconds: 100) { ended.append("1:\($0)") }!
        let second = calls.add(deadlineMilliseconds: 200) { ended.append("2:\($0)") }!
        _ = calls.add(deadlineMilliseconds: 300) { ended.append("3:\($0)") }
        #expect(calls.complete(second, .success(.unsubscribe(true))))
        #expect(!calls.complete(second, .success(.unsubscribe(true))), "once")
        #expect(calls.expire(nowMilliseconds: 99) == 0)
        #expect(calls.expire(nowMilliseconds: 250) == 1, "the answered one is not expired again")
        #expect(!calls.complete(first, .success(.unsubscribe(true))))
        calls.drain()
        #expect(calls.count == 0)
        #expect(calls.add(deadlineMilliseconds: 400) { ended.append("4:\($0)") } == nil)
        #expect(ended == ["2:success(Switchboard.RemoteSocketAnswer.unsubscribe(true))", "1:failure(Switchboard.BrokerError.timedOut)",
                          "3:failure(Switchboard.BrokerError.stopped)", "4:failure(Switchboard.BrokerError.stopped)"])
    }

    @Test func configurationKeys() throws {
        var c = ClusterConfiguration()
        #expect(c.recoveryMaxMessages == 1_000 && c.remoteCallTimeoutMilliseconds == 2_000)
        c.recoveryMaxMessages = 100_001
        #expect(c.validate() == "cluster_recovery_max_messages must be 0...100000")
        c.recoveryMaxMessages = 0
        #expect(c.validate() == nil)
        c.remoteCallTimeoutMilliseconds = 0
        #expect(c.validate() == "cluster_remote_call_timeout_ms must be 1...600000")
        var b = BrokerConfiguration()
        try b.set("cluster_recovery_max_messages", "7")
        try b.set("cluster_remote_call_timeout_ms", "250")
        #expect(b.cluster.recoveryMaxMessages == 7 && b.cluster.remoteCallTimeoutMilliseconds == 250)
    }
}
