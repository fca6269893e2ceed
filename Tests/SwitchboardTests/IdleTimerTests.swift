import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Idle timers over real sockets (issue 16 item 3): the idle list rounds deadlines up to the
/// tick and leaves a timer re-armed within the same tick where it is. These check that this
/// changes nothing a client can see: input moves the deadline (a socket active before it is not
/// pinged or closed), no timer fires before its exact deadline, and one fires within a tick
/// (plus the test machine's scheduling) after it. Times are the client's, on the same monotonic
/// clock as the server's: the server's time of an input is no earlier than its send here, and
/// no later than the reply's arrival.
@Suite("Idle timers over real sockets", .serialized)
struct IdleTimerTests {
    /// Long against the test's own steps (a quarter of it between inputs, a round trip), so a
    /// loaded machine (load average 15-20 in CI runs) does not push an input past a deadline.
    static let idleMilliseconds = 1000
    static let tickMilliseconds = 100
    /// Scheduling delay allowed on a loaded machine (the upper bounds only). Less than a
    /// timeout: a timer that fired a whole timeout late still fails.
    static let slackMilliseconds: Int64 = 600

    @Test("a WebSocket active before its idle deadline is not pinged; pinged one idle timeout after its last input", arguments: backends)
    func activityMovesTheDeadline(backend: IOBackendKind) throws {
        let recorder = WSRecorder()
        let server = try wsServer(backend, recorder) {
            $0.io.idleTimeoutMilliseconds = Self.idleMilliseconds
            $0.io.tickMilliseconds = Self.tickMilliseconds
        }
        defer { server.stop() }
        let c = try server.client()
        _ = try c.upgrade()
        // Six messages, each a quarter of the idle timeout after the one before: the socket is
        // active for longer than the timeout, over many tick boundaries. Had a deadline not
        // moved, the ping would come before an echo (the next frame read would be opcode 9).
        var lastSent: Int64 = 0
        var lastEcho: Int64 = 0
        for i in 0..<6 {
            if i > 0 {
                let due = lastSent + Int64(Self.idleMilliseconds / 4)
                // The stimulus' timing, not a wait for an event: the next input is due then.
                _ = waitUntil(timeoutMilliseconds: Self.idleMilliseconds) { monotonicMilliseconds() >= due }
            }
            lastSent = monotonicMilliseconds()
            try c.sendText("m\(i)")
            let frame = try c.readFrame()
            lastEcho = monotonicMilliseconds()
            #expect(frame == TestFrame(fin: true, rsv1: false, opcode: 1, payload: Array("m\(i)".utf8)), "message \(i)")
            #expect(lastEcho - lastSent < Int64(Self.idleMilliseconds / 2), "the test thread fell behind: message \(i) took \(lastEcho - lastSent) ms")
        }
        // Now idle: the keep-alive ping comes one idle timeout after the last input, not before,
        // and within a tick after it.
        let ping = try c.readFrame()
        let pinged = monotonicMilliseconds()
        #expect(ping.opcode == 9 && ping.payload.isEmpty)
        #expect(pinged - lastSent >= Int64(Self.idleMilliseconds), "pinged \(pinged - lastSent) ms after the last input")
        #expect(pinged - lastEcho <= Int64(Self.idleMilliseconds + Self.tickMilliseconds) + Self.slackMilliseconds,
                "pinged \(pinged - lastEcho) ms after the last echo")
        // Answered: the socket stays, and the answer counts as input like any other. The time
        // is read before the send, as `lastSent` is: on loopback the server can read the pong
        // (and its clock) before the client's send returns, so a time read after it was up to
        // a millisecond late (a clean-clone run saw 999 ms against 1,000).
        let answered = monotonicMilliseconds()
        try c.sendFrame(opcode: 10, payload: [])
        let second = try c.readFrame()
        let pingedAgain = monotonicMilliseconds()
        #expect(second.opcode == 9)
        #expect(pingedAgain - answered >= Int64(Self.idleMilliseconds), "pinged again \(pingedAgain - answered) ms after the pong")
        #expect(recorder.closes.isEmpty)
        #expect(server.metric("switchboard_ws_ping_timeouts_total") == 0)
    }

    @Test("an idle keep-alive HTTP connection is closed one idle timeout after its last request, within a tick", arguments: backends)
    func idleConnectionClosedOnTime(backend: IOBackendKind) throws {
        let server = try ServerFixture(backend: backend) {
            $0.io.idleTimeoutMilliseconds = Self.idleMilliseconds
            $0.io.tickMilliseconds = Self.tickMilliseconds
        }
        defer { server.stop() }
        let c = try server.client()
        // Two requests half an idle timeout apart (the second re-arms the timer in another
        // tick), then nothing.
        var sent = monotonicMilliseconds()
        try c.send(get("/n/1"))
        #expect(try c.readResponse().bodyText == "1")
        let due = sent + Int64(Self.idleMilliseconds) / 2
        _ = waitUntil(timeoutMilliseconds: Self.idleMilliseconds) { monotonicMilliseconds() >= due }
        sent = monotonicMilliseconds()
        try c.send(get("/n/2"))
        #expect(try c.readResponse().bodyText == "2")
        let answered = monotonicMilliseconds()
        #expect(answered - sent < Int64(Self.idleMilliseconds) / 2, "the test thread fell behind: \(answered - sent) ms")
        #expect(c.isClosedByServer())
        let closed = monotonicMilliseconds()
        #expect(closed - sent >= Int64(Self.idleMilliseconds), "closed \(closed - sent) ms after the last request")
        #expect(closed - answered <= Int64(Self.idleMilliseconds + Self.tickMilliseconds) + Self.slackMilliseconds,
                "closed \(closed - answered) ms after the last response")
        #expect(server.metric("switchboard_idle_timeouts_total") == 1)
    }
}
