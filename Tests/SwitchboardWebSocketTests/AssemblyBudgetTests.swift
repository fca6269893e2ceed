import Testing
import SwitchboardWebSocket

/// A budget that records its high-water mark.
final class RecordingBudget: WebSocketMemoryBudget {
    let limit: Int
    var used = 0
    var highest = 0
    var refusals = 0
    init(limit: Int) { self.limit = limit }
    func tryCharge(_ bytes: Int, holding: Int) -> Bool {
        guard used + bytes <= limit else { refusals += 1; return false }
        used += bytes
        highest = max(highest, used)
        return true
    }
    func release(_ bytes: Int) { used -= bytes; precondition(used >= 0) }
}

/// Issue 17: message assembly is charged to the owner's budget as it grows (inflated output
/// included), and the codec's work per call can be bounded in frames.
@Suite("Codec: assembly budget and frame batches")
struct AssemblyBudgetTests {
    @Test("an unfinished compressed bomb is refused with 1013 while it grows, never past the budget")
    func inflatedOutputCountsAsItGrows() {
        let client = TestZlib(deflateBits: 15)
        let compressed = client.process([UInt8](repeating: 0, count: 8 << 20))
        let budget = RecordingBudget(limit: 1 << 20)
        var connection = WebSocketConnection(deflate: PerMessageDeflateParameters(), budget: budget)
        // fin = false: the message would never be complete; it must fail on its growth alone.
        let events = run(frame(2, compressed, fin: false, rsv: 4), connection: &connection)
        #expect(events.last == .failed(1013))
        #expect(budget.highest <= budget.limit)
        #expect(budget.refusals == 1)
        // The failed message gave its bytes back; the decompressor stays charged until release.
        #expect(budget.used == WebSocketConnection.inflaterBytes(windowBits: 15))
        connection.releaseResources()
        #expect(budget.used == 0)
    }

    @Test("uncompressed fragments are charged by capacity and given back on delivery and on discard")
    func chargesFollowTheMessage() {
        let budget = RecordingBudget(limit: 1 << 20)
        var connection = WebSocketConnection(budget: budget)
        var events = run(frame(2, [UInt8](repeating: 1, count: 1000), fin: false), connection: &connection)
        #expect(events.isEmpty)
        #expect(budget.used >= 1000 && budget.used == connection.assemblyBytes)
        #expect(connection.isAssemblingMessage)
        events = run(frame(0, [UInt8](repeating: 2, count: 1000)), connection: &connection)
        #expect(events == [.binary([UInt8](repeating: 1, count: 1000) + [UInt8](repeating: 2, count: 1000))])
        #expect(budget.used == 0 && !connection.isAssemblingMessage)
        _ = run(frame(2, [UInt8](repeating: 1, count: 1000), fin: false), connection: &connection)
        #expect(budget.used > 0)
        connection.discardMessage()
        #expect(budget.used == 0)
        // Over the budget: 1013, nothing kept.
        let small = RecordingBudget(limit: 500)
        var refused = WebSocketConnection(budget: small)
        events = run(frame(2, [UInt8](repeating: 1, count: 1000), fin: false), connection: &refused)
        #expect(events.last == .failed(1013))
        #expect(small.used == 0)
    }

    @Test("receive(maxMessages:) stops after that many messages and resumes where it stopped")
    func frameBatches() {
        var connection = WebSocketConnection()
        var input: [UInt8] = []
        for i in 0..<10 { input += frame(9, [UInt8(i)]) + text("m\(i)") }
        var events: [Event] = []
        var offset = 0
        var calls = 0
        while offset < input.count {
            let used = input[offset...].withUnsafeBytes { connection.receive($0, maxMessages: 3) { events.append(Event($0)) } }
            #expect(used > 0)
            offset += used
            calls += 1
        }
        #expect(calls == 4)
        #expect(events.count == 20)  // a pong write before each message
        #expect(events[1] == .text(Array("m0".utf8)))
        #expect(connection.framesCompleted == 20)
        #expect(connection.messagesCompleted == 10)
        #expect(connection.messagesStarted == 10)
    }
}
