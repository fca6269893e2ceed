import SwitchboardCluster
import Testing

/// The Redis names of cluster channels: the broker's names as they always were, protocol
/// channels in their own space, every pub/sub name taken back to its channel, and no broker
/// channel ever named like a protocol channel (whatever its bytes).
@Suite("Cluster channel names")
struct ClusterChannelNamesTests {
    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test func shapes() {
        let standalone = ClusterChannelNames(keyPrefix: "sb", sharded: false)
        let sharded = ClusterChannelNames(keyPrefix: "sb", sharded: true)
        let room = ClusterChannel.broker(Array("room".utf8))
        let bc = ClusterChannel.inSpace("bc", Array("room".utf8))
        #expect(text(standalone.meta(room)) == "sb:{room}:meta" && text(standalone.history(room)) == "sb:{room}:history")
        #expect(text(standalone.pubSub(room)) == "sb:ch:room")
        #expect(text(sharded.meta(room)) == "sb:{c:room}:meta" && text(sharded.pubSub(room)) == "sb:{c:room}:pub")
        for names in [standalone, sharded] {
            #expect(text(names.meta(bc)) == "sb:p:{bc:room}:meta" && text(names.history(bc)) == "sb:p:{bc:room}:history")
            #expect(text(names.pubSub(bc)) == "sb:p:{bc:room}:pub")
        }
        // A channel's keys and its pub/sub channel share one slot.
        for names in [standalone, sharded] {
            for c in [bc, ClusterChannel.inSpace("bc", Array("a}b{c".utf8))] {
                let slots = Set([names.meta(c), names.history(c), names.pubSub(c)].map { ClusterSlots.slot(of: $0) })
                #expect(slots.count == 1, "\(text(names.meta(c)))")
            }
        }
        #expect(ClusterSlots.slot(of: sharded.meta(room)) == ClusterSlots.slot(of: sharded.pubSub(room)))
    }

    @Test func roundTripsAndNoClash() {
        let awkward = ["", "room", "bc:room", "p:{bc:room}", "{bc:room}:pub", "x}:pub", "ch:x", ":", "c:room}"]
        for sharded in [false, true] {
            let names = ClusterChannelNames(keyPrefix: "sb", sharded: sharded)
            var seen: [String: ClusterChannel] = [:]
            for name in awkward {
                for channel in [ClusterChannel.broker(Array(name.utf8)), .inSpace("bc", Array(name.utf8)), .inSpace("rpc", Array(name.utf8))] {
                    #expect(names.channel(ofPubSub: names.pubSub(channel)) == channel, "\(name) sharded \(sharded)")
                    for key in [names.meta(channel), names.history(channel), names.pubSub(channel)] {
                        #expect(seen.updateValue(channel, forKey: text(key)).map { $0 == channel } ?? true, "\(text(key)) names one channel only")
                    }
                }
            }
            #expect(names.channel(ofPubSub: Array("sb:node:all".utf8)) == nil && names.channel(ofPubSub: Array("other:ch:x".utf8)) == nil)
            #expect(names.channel(ofPubSub: Array("sb:p:{BC:x}:pub".utf8)) == nil, "a space is lower-case letters")
        }
    }
}
