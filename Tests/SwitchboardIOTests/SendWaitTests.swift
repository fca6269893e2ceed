@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A shard that sleeps between messages sleeps once per message: on io_uring the sleep that
/// submits an echo's send waits for the send's completion and one more (`UringShard`'s
/// `sendsSinceSubmit`), where it used to wake at once on the send's own completion and sleep
/// again in a second turn.
@Suite("One message at a time: one loop turn per echo", .serialized)
struct SendWaitTests {
    @Test("echoes one at a time cost about one loop turn each", arguments: [IOBackendKind.uring, .epoll])
    func oneTurnPerEcho(backend: IOBackendKind) throws {
        var c = smallConfiguration(backend, shards: 1)
        c.tickMilliseconds = 1000  // ticks add no turns to speak of
        let log = EventLog()
        let group = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in EchoHandler(log: log) }
        try group.start()
        defer { group.shutdown(graceMilliseconds: 500) }
        let client = try TestClient(port: group.port)
        let message = Array("sixteen bytes ..".utf8)
        func roundTrip() throws {
            try client.send(message)
            try client.fill(atLeast: message.count)
            #expect(client.buffered.prefix(message.count).elementsEqual(message))
            client.removeBuffered(message.count)
        }
        try roundTrip()  // the connection is open and the shard asleep
        let echoes = 300
        let before = group.shards[0].metrics.loopTurns.value
        for _ in 0..<echoes { try roundTrip() }
        let turnsPerEcho = Double(group.shards[0].metrics.loopTurns.value - before) / Double(echoes)
        // One turn wakes on the message and sends its echo; it is then asleep until the next.
        // Two per echo was the io_uring shard that woke on its own send's completion.
        #expect(turnsPerEcho >= 0.9 && turnsPerEcho <= 1.3, "\(turnsPerEcho) loop turns per echo")
    }
}
