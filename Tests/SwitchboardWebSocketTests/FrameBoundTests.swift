import Testing
@testable import SwitchboardWebSocket

/// `receive(_:maxMessages:maxFrames:scratch:_:)`'s frame bound: a call stops after `maxFrames`
/// frames of any kind, so an owner collecting a call's events holds at most that many plus two
/// however many control frames one read brings (the broker's driver passes 64).
@Suite("Codec: frames per receive call bounded")
struct FrameBoundTests {
    /// Feeds `stream` in calls of at most `maxFrames` frames; the events of each call.
    private func calls(_ stream: [UInt8], maxFrames: Int) -> [[Event]] {
        var codec = WebSocketConnection()
        var out: [[Event]] = []
        stream.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count && codec.isOpen {
                var seen: [Event] = []
                let used = codec.receive(UnsafeRawBufferPointer(rebasing: all[offset...]), maxMessages: .max, maxFrames: maxFrames) {
                    seen.append(Event($0))
                }
                #expect(used > 0, "no progress at \(offset)")
                offset += used
                out.append(seen)
            }
        }
        return out
    }

    @Test("ten pings in one buffer: calls of three frames, every pong in order, the same as unbounded")
    func pings() {
        let stream = (0..<10).flatMap { frame(9, [UInt8($0)]) }
        let bounded = calls(stream, maxFrames: 3)
        #expect(bounded.map(\.count) == [3, 3, 3, 1])
        let unbounded = calls(stream, maxFrames: .max)
        #expect(unbounded.count == 1)
        #expect(bounded.flatMap { $0 } == unbounded.flatMap { $0 })
        #expect(unbounded.flatMap { $0 }.count == 10)
    }

    @Test("a fragmented message and pings between its fragments: bounded calls give the same events")
    func fragmented() {
        let stream = text("Hel", fin: false) + frame(9, [1]) + frame(0, Array("lo".utf8), fin: false)
            + frame(9, [2]) + frame(0, Array(" there".utf8)) + frame(9, [3]) + text("next")
        let unbounded = calls(stream, maxFrames: .max).flatMap { $0 }
        #expect(unbounded.count == 5, "\(unbounded)")
        for bound in 1...4 {
            let bounded = calls(stream, maxFrames: bound)
            #expect(bounded.allSatisfy { $0.count <= bound + 2 })
            #expect(bounded.flatMap { $0 } == unbounded, "maxFrames \(bound)")
        }
    }
}
