import Switchboard
@testable import SwitchboardProtocols
import Testing

/// The node-inbox formats of the protocols across cluster nodes: every message survives a
/// round trip, and every truncation or trailing byte is refused (they come from Redis, never
/// trusted).
@Suite("Cluster wire formats of the protocols")
struct ClusterWireTests {
    /// Every strict prefix of `bytes`, and `bytes` plus one byte, is refused.
    func refusesDamaged(_ bytes: [UInt8], _ decode: (UnsafeRawBufferPointer) -> Bool, sourceLocation: SourceLocation = #_sourceLocation) {
        for n in 0..<bytes.count {
            let accepted = Array(bytes[..<n]).withUnsafeBytes { decode($0) }
            #expect(!accepted, "prefix \(n) of \(bytes.count)", sourceLocation: sourceLocation)
        }
        let trailing = (bytes + [0]).withUnsafeBytes { decode($0) }
        #expect(!trailing, "a trailing byte", sourceLocation: sourceLocation)
    }

    @Test func connectionBrokerMessages() {
        let a = UUID4.random(home: 1, shardCount: 2, node: 7), b = UUID4.random(home: 0, shardCount: 2, node: 9)
        #expect(a.node == 7 && b.node == 9 && a.home(shardCount: 2) == 1)
        let c = UUID4.random(home: 0, shardCount: 2, node: 9)
        let s = SocketID(node: 7, shard: 1, slot: 5, generation: 3)
        let messages: [ConnectionBrokerRemote] = [
            .accept(target: b, opener: a, openerSocket: s, ticket: 42),
            .openAnswered(socket: s, ticket: 42, me: a, target: b, answer: .opened(c, targetSocket: SocketID(node: 9, shard: 0, slot: 1, generation: 1))),
            .openAnswered(socket: s, ticket: 43, me: a, target: b, answer: .targetTooMany),
            .deliver(channel: c, sender: a, party: b, text: #"{"type":"channel_message","payload":"é"}"#),
            .deliverReporting(channel: c, sender: a, party: b, text: "x", replySocket: s, ticket: 1, payloadBytes: 3),
            .peerClosed(channel: c, closer: a, party: b),
            .peerClosedReporting(channel: c, closer: a, party: b, replySocket: s, ticket: 2),
            .routedAnswered(socket: s, ticket: 2, delivery: .gone, payloadBytes: 0),
            .peersGone(gone: a, ends: [(c, b), (a, b)]),
            .probe(query: .channel, id: c, replySocket: s, ticket: 3),
            .probeAnswered(socket: s, ticket: 3, found: true),
        ]
        for m in messages {
            let bytes = m.encode()
            let again = bytes.withUnsafeBytes { ConnectionBrokerRemote.decode($0) }
            #expect(again.map { $0.encode() } == bytes, "\(m)")
            refusesDamaged(bytes) { ConnectionBrokerRemote.decode($0) != nil }
        }
        // A peersGone whose count the bytes cannot hold is refused before any allocation.
        var huge = ConnectionBrokerRemote.peersGone(gone: a, ends: [(c, b)]).encode()
        for i in 17..<25 { huge[i] = 0xFF }
        #expect(huge.withUnsafeBytes { ConnectionBrokerRemote.decode($0) } == nil)
    }

    @Test func broadcasterMessages() {
        let m = BroadcasterMessage(id: "abc", channel: "room", event: "e", payload: Array(#"{"n":1}"#.utf8),
                                   createTimeNanoseconds: -5, offset: 0, epoch: "")
        let body = BroadcasterClusterWire.body(m)
        let decoded = body.withUnsafeBytes { BroadcasterClusterWire.decode($0, offset: 17, epoch: "123") }
        var expected = m
        expected.offset = 17
        expected.epoch = "123"
        #expect(decoded == expected)
        // Every prefix that cuts into the header (id, time, channel, event) is refused; the
        // payload is the rest, whatever its length.
        for n in 0..<(body.count - m.payload.count) {
            #expect(Array(body[..<n]).withUnsafeBytes { BroadcasterClusterWire.decode($0, offset: 1, epoch: "1") } == nil, "prefix \(n)")
        }
    }

    /// Recovery in a cluster is the single-node log's (`BroadcasterChannelLog.recover`) over
    /// what Redis holds; a history that is not consecutive up to the last offset is none.
    @Test func broadcasterRecoveryRules() {
        func msg(_ offset: Int, _ t: Int64 = 0) -> BroadcasterMessage {
            BroadcasterMessage(id: "\(offset)", channel: "c", event: "", payload: [0x31], createTimeNanoseconds: t, offset: offset, epoch: "E")
        }
        let limits = BroadcasterHistoryLimits(maxMessages: 3, maxBytes: 100)
        let history = [msg(4), msg(5), msg(6)]
        func recover(_ offset: Int, _ epoch: String = "E", _ h: [BroadcasterMessage] = history, _ l: BroadcasterHistoryLimits = limits) -> BroadcasterRecovery {
            var log = BroadcasterChannelLog(epoch: "E", lastOffset: 6, history: h, limits: l)
            return log.recover(since: .init(offset: offset, epoch: epoch), nowNanoseconds: 0)
        }
        #expect(recover(3) == .recovered([msg(4), msg(5), msg(6)], lastOffset: 6))
        #expect(recover(5) == .recovered([msg(6)], lastOffset: 6))
        #expect(recover(6) == .recovered([], lastOffset: 6))
        #expect(recover(2) == .notRecovered(lastOffset: 6), "the history starts at 4")
        #expect(recover(7) == .notRecovered(lastOffset: 6), "ahead of the stream")
        #expect(recover(5, "other") == .notRecovered(lastOffset: 6), "another epoch")
        #expect(recover(5, "E", []) == .notRecovered(lastOffset: 6), "no history")
        #expect(recover(3, "E", history, .init(maxMessages: 2, maxBytes: 100)) == .notRecovered(lastOffset: 6), "trimmed to 2")
        #expect(recover(3, "E", [msg(4), msg(6)]) == .notRecovered(lastOffset: 6), "a hole at 5")
        #expect(recover(3, "E", [msg(3), msg(4), msg(5)]) == .notRecovered(lastOffset: 6), "not up to the last offset")
    }

    @Test func rpcMessages() {
        let decoder = RPCMessageDecoder(limits: RPCLimits())
        let call = RPCNodeCall(kind: .remoteClient, name: "greet", args: ["hi", 7, ["k": nil]], sender: "alpha", target: "beta",
                               callerShard: 1, callerKey: 99, callerNode: 3)
        let bytes = RPCClusterWire.call(call)
        guard case .call(let back)? = bytes.withUnsafeBytes({ RPCClusterWire.decode($0, decoder: decoder) }) else {
            Issue.record("no call")
            return
        }
        #expect(back.kind == .remoteClient && back.name == "greet" && back.args == call.args && back.sender == "alpha"
                && back.target == "beta" && back.callerShard == 1 && back.callerKey == 99 && back.callerNode == 3)
        for result: Result<RPCValue, RPCError> in [.success(["a": 1]), .failure(.unhandled(name: "x")), .failure(.disconnected)] {
            let answer = RPCClusterWire.answer(shard: 1, key: 5, result)
            guard case .answer(1, 5, let r)? = answer.withUnsafeBytes({ RPCClusterWire.decode($0, decoder: decoder) }) else {
                Issue.record("no answer for \(result)")
                continue
            }
            #expect(r == result)
        }
        for n in 0..<(bytes.count - 1) {
            let ok = Array(bytes[..<n]).withUnsafeBytes { RPCClusterWire.decode($0, decoder: decoder) } != nil
            #expect(!ok, "prefix \(n)")
        }
    }
}
