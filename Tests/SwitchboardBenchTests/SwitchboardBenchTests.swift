import Foundation
import Synchronization
import SwitchboardBenchCore
import SwitchboardTestSupport
import SwitchboardWebSocket
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: - A tiny WebSocket server for the tests

/// Blocking sockets, one thread per connection. Does the handshake, unmasks frames, records
/// what it saw, and either echoes each message or broadcasts it to every connection of the
/// same request path (one channel per path, sender included, like switchboard-echo's
/// `/broadcast/NAME`), or (`silent`) reads everything and answers nothing.
final class TestWebSocketServer: @unchecked Sendable {
    enum Mode {
        case echo, broadcast, silent
        /// Each text message goes to this closure (connection fd, payload); it answers with
        /// `sendText` (a scripted protocol server for the template tests).
        case script(@Sendable (TestWebSocketServer, Int32, [UInt8]) -> Void)
    }

    struct FrameRecord {
        var opcode: UInt8
        var masked: Bool
        /// 7, 16 or 64: the length form used.
        var lengthForm: Int
        var length: Int
        var mask: UInt32
        /// Payload matched the harness's fixed pattern (byte i == 'a' + i % 26).
        var patternOK: Bool
    }

    struct State {
        var requests: [String] = []
        var handshakeProblems: [String] = []
        var frames: [FrameRecord] = []
        var dataMessages = 0
        var pongs: [[UInt8]] = []
        /// Open connections and the request path each one upgraded on.
        var clients: [(fd: Int32, path: String)] = []
    }

    let mode: Mode
    let wrongAccept: Bool
    let pingFirst: Bool
    /// Upgrades this many connections; every later one gets 503 and is closed.
    let upgradeLimit: Int
    let listenFD: Int32
    let port: Int
    let state = Mutex(State())
    private let writeLock = NSLock()
    private let upgraded = Mutex(0)

    init(mode: Mode = .echo, wrongAccept: Bool = false, pingFirst: Bool = false, upgradeLimit: Int = .max) throws {
        self.mode = mode
        self.wrongAccept = wrongAccept
        self.pingFirst = pingFirst
        self.upgradeLimit = upgradeLimit
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(s, 512) == 0 else { throw POSIXError(.EADDRINUSE) }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) }
        }
        listenFD = s
        port = Int(UInt16(bigEndian: bound.sin_port))
        let t = Thread { [self] in acceptLoop() }
        t.start()
    }

    func stop() {
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
    }

    private func acceptLoop() {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return
            }
            let t = Thread { [self] in serve(fd) }
            t.start()
        }
    }

    private func readExactly(_ fd: Int32, _ n: Int, into buf: inout [UInt8]) -> Bool {
        buf = [UInt8](repeating: 0, count: n)
        var off = 0
        while off < n {
            let r = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + off, n - off, 0) }
            if r <= 0 { if r < 0 && errno == EINTR { continue }; return false }
            off += r
        }
        return true
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        writeLock.lock()
        defer { writeLock.unlock() }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
            off += n
        }
    }

    static func serverFrame(opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
        var f: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            f.append(UInt8(payload.count))
        } else if payload.count < 65_536 {
            f.append(126)
            f += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            f.append(127)
            for i in (0..<8).reversed() { f.append(UInt8((payload.count >> (i * 8)) & 0xFF)) }
        }
        return f + payload
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        // Handshake.
        var head: [UInt8] = []
        var byte: [UInt8] = []
        while !(head.count >= 4 && head.suffix(4) == [13, 10, 13, 10]) {
            guard readExactly(fd, 1, into: &byte) else { return }
            head += byte
            if head.count > 16_384 { return }
        }
        let request = String(decoding: head, as: UTF8.self)
        var problems: [String] = []
        let lines = request.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        if lines.first.map({ $0.hasPrefix("GET ") && $0.hasSuffix(" HTTP/1.1") }) != true { problems.append("request line: \(lines.first ?? "")") }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { problems.append("bad header \(line)"); continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if headers["upgrade"]?.lowercased() != "websocket" { problems.append("upgrade") }
        if headers["connection"]?.lowercased().contains("upgrade") != true { problems.append("connection") }
        if headers["sec-websocket-version"] != "13" { problems.append("version") }
        if headers["host"] == nil { problems.append("host") }
        let key = headers["sec-websocket-key"] ?? ""
        if Data(base64Encoded: key)?.count != 16 { problems.append("key '\(key)' is not base64 of 16 bytes") }
        state.withLock {
            $0.requests.append(request)
            $0.handshakeProblems += problems
        }
        let admitted = upgraded.withLock { n -> Bool in
            guard n < upgradeLimit else { return false }
            n += 1
            return true
        }
        guard admitted else {
            writeAll(fd, Array("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
            return
        }
        let accept = wrongAccept ? WebSocketHandshake.acceptValue(forKey: "not-the-key") : WebSocketHandshake.acceptValue(forKey: key)
        writeAll(fd, Array("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: \(accept)\r\n\r\n".utf8))
        if wrongAccept {
            // A client that accepts the bad value would send frames now; count them.
        }
        let path = lines.first.map { $0.split(separator: " ").dropFirst().first.map(String.init) ?? "" } ?? ""
        state.withLock { $0.clients.append((fd, path)) }
        defer { state.withLock { $0.clients.removeAll { $0.fd == fd } } }
        if pingFirst { writeAll(fd, Self.serverFrame(opcode: 9, Array("hello".utf8))) }

        var hdr: [UInt8] = []
        while true {
            guard readExactly(fd, 2, into: &hdr) else { return }
            let opcode = hdr[0] & 0x0F
            let masked = hdr[1] & 0x80 != 0
            var length = Int(hdr[1] & 0x7F)
            var form = 7
            var ext: [UInt8] = []
            if length == 126 {
                guard readExactly(fd, 2, into: &ext) else { return }
                length = Int(ext[0]) << 8 | Int(ext[1]); form = 16
            } else if length == 127 {
                guard readExactly(fd, 8, into: &ext) else { return }
                length = ext.reduce(0) { $0 << 8 | Int($1) }; form = 64
            }
            var maskBytes: [UInt8] = [0, 0, 0, 0]
            if masked { guard readExactly(fd, 4, into: &maskBytes) else { return } }
            var payload: [UInt8] = []
            guard readExactly(fd, length, into: &payload) else { return }
            for i in 0..<payload.count { payload[i] ^= maskBytes[i & 3] }
            let maskValue = maskBytes.withUnsafeBytes { $0.load(as: UInt32.self) }
            let patternOK = payload.enumerated().allSatisfy { $0.element == UInt8(97 + $0.offset % 26) }
            state.withLock {
                $0.frames.append(FrameRecord(opcode: opcode, masked: masked, lengthForm: form, length: length, mask: maskValue, patternOK: patternOK))
            }
            switch opcode {
            case 1, 2:
                state.withLock { $0.dataMessages += 1 }
                let frame = Self.serverFrame(opcode: opcode, payload)
                switch mode {
                case .echo: writeAll(fd, frame)
                case .broadcast: for c in state.withLock({ $0.clients }) where c.path == path { writeAll(c.fd, frame) }
                case .silent: break
                case .script(let answer): answer(self, fd, payload)
                }
            case 8:
                writeAll(fd, Self.serverFrame(opcode: 8, Array(payload.prefix(2))))
                return
            case 10:
                state.withLock { $0.pongs.append(payload) }
            default:
                break
            }
        }
    }

    var snapshot: State { state.withLock { $0 } }

    /// Sends one text frame to connection `fd` (serialized with every other write).
    func sendText(_ fd: Int32, _ text: String) {
        writeAll(fd, Self.serverFrame(opcode: 1, Array(text.utf8)))
    }
}

func options(_ args: [String]) throws -> BenchOptions {
    do {
        return try parseArguments(args + ["--quiet"])
    } catch {
        Issue.record("unexpected usage error: \(error.message)")
        throw error
    }
}

/// Waits for the server threads to catch up with what the client already saw: polls with a
/// deadline (SwitchboardTestSupport's waitUntil) and records an issue when it never happens.
func eventually(_ what: Comment, sourceLocation: SourceLocation = #_sourceLocation, _ condition: () -> Bool) {
    if !waitUntil(timeoutMilliseconds: 5000, condition) { Issue.record("never happened: \(what)", sourceLocation: sourceLocation) }
}

// MARK: - Tests

@Suite struct HandshakeTests {
    @Test func acceptMatchesRFC6455Example() {
        #expect(WebSocketHandshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func validateChecksTheAcceptValue() {
        let url = try! WebSocketURL.parse("ws://127.0.0.1:9/chat")
        let hs = WebSocketClientHandshake(url: url, key: "dGhlIHNhbXBsZSBub25jZQ==")
        let request = String(decoding: hs.request, as: UTF8.self)
        #expect(request.hasPrefix("GET /chat HTTP/1.1\r\n"))
        #expect(request.contains("\r\nHost: 127.0.0.1:9\r\n"))
        #expect(request.contains("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"))
        #expect(request.contains("\r\nSec-WebSocket-Version: 13\r\n"))
        #expect(request.hasSuffix("\r\n\r\n"))
        func check(_ text: String) -> WebSocketClientHandshake.Outcome {
            let bytes = Array(text.utf8)
            return bytes.withUnsafeBytes { hs.validate($0) }
        }
        let good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        #expect(check(good) == .accepted(headBytes: good.utf8.count, deflate: nil, subprotocol: nil))
        #expect(check(String(good.dropLast(2))) == .incomplete)
        let bad = good.replacingOccurrences(of: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", with: "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        guard case .rejected(let why) = check(bad) else { Issue.record("wrong accept value was accepted"); return }
        #expect(why.contains("Sec-WebSocket-Accept"))
        guard case .rejected = check(good.replacingOccurrences(of: "101", with: "200")) else { Issue.record("200 accepted"); return }
    }

    @Test func clientSendsACorrectHandshake() throws {
        let server = try TestWebSocketServer()
        defer { server.stop() }
        let result = try runBenchmark(options(["echo", "ws://127.0.0.1:\(server.port)/ws?x=1", "-c", "3", "-n", "3",
                                               "--header", "X-Test: yes"]), progress: false)
        #expect(result.established == 3)
        #expect(result.received == 3)
        let s = server.snapshot
        #expect(s.requests.count == 3)
        #expect(s.handshakeProblems.isEmpty, "\(s.handshakeProblems)")
        #expect(s.requests.allSatisfy { $0.hasPrefix("GET /ws?x=1 HTTP/1.1\r\n") && $0.contains("\r\nX-Test: yes\r\n") })
        let keys = Set(s.requests.compactMap { r in r.components(separatedBy: "\r\n").first { $0.hasPrefix("Sec-WebSocket-Key: ") } })
        #expect(keys.count == 3, "each connection uses a fresh random key")
    }

    @Test func clientRejectsAWrongAcceptValue() throws {
        let server = try TestWebSocketServer(wrongAccept: true)
        defer { server.stop() }
        let result = try runBenchmark(options(["echo", "ws://127.0.0.1:\(server.port)/", "-c", "2", "-n", "10",
                                               "--connect-timeout", "3s"]), progress: false)
        #expect(result.established == 0)
        #expect(result.failedConnections == 2)
        #expect(result.errors.contains { $0.contains("Sec-WebSocket-Accept") }, "\(result.errors)")
        #expect(result.received == 0)
        // Both connections are over on the server side (its reader saw the client close), so
        // every frame the client could have sent has been counted.
        eventually("the server saw both handshakes and both connections end") {
            let s = server.snapshot
            return s.requests.count == 2 && s.clients.isEmpty
        }
        #expect(server.snapshot.dataMessages == 0, "no frames after a rejected handshake")
    }
}

@Suite struct FrameTests {
    @Test(arguments: [(10, 7), (300, 16), (70_000, 64)])
    func clientFramesAreMaskedInEveryLengthForm(size: Int, form: Int) throws {
        let server = try TestWebSocketServer(pingFirst: true)
        defer { server.stop() }
        let result = try runBenchmark(options(["echo", "ws://127.0.0.1:\(server.port)/", "-n", "5", "-s", "\(size)", "--binary"]), progress: false)
        #expect(result.received == 5)
        #expect(result.bytesInPerSecond > 0)
        eventually("the server got the pong") { server.snapshot.pongs.count == 1 }
        let s = server.snapshot
        let data = s.frames.filter { $0.opcode == 2 }
        #expect(data.count == 5)
        #expect(data.allSatisfy { $0.masked && $0.lengthForm == form && $0.length == size && $0.patternOK })
        #expect(Set(data.map(\.mask)).count > 1, "a fresh mask per frame")
        #expect(s.frames.allSatisfy { $0.masked })
        #expect(s.pongs == [Array("hello".utf8)], "ping answered with a pong carrying the same payload")
    }

    @Test func encodeClientFrameLayout() {
        let f = encodeClientFrame(opcode: .text, payload: Array("Hello".utf8), mask: 0x7DE1_3D37)
        // RFC 6455 5.7 example: mask 37 fa 21 3d in memory order.
        #expect(f == [0x81, 0x85, 0x37, 0x3D, 0xE1, 0x7D] + zip(Array("Hello".utf8), [0x37, 0x3D, 0xE1, 0x7D, 0x37]).map { $0 ^ $1 })
        #expect(encodeClientFrame(opcode: .binary, payload: [UInt8](repeating: 1, count: 300), mask: 1)[1] == 0x80 | 126)
        #expect(encodeClientFrame(opcode: .binary, payload: [UInt8](repeating: 1, count: 70_000), mask: 1)[1] == 0x80 | 127)
    }
}

@Suite struct ScenarioTests {
    @Test func echoWithAMessageCountIsExact() throws {
        let server = try TestWebSocketServer()
        defer { server.stop() }
        let result = try runBenchmark(options(["echo", "ws://127.0.0.1:\(server.port)/", "-c", "4", "-w", "4",
                                               "-n", "1000", "-s", "64"]), progress: false)
        #expect(result.sent == 1000)
        #expect(result.received == 1000)
        #expect(result.expected == 1000)
        #expect(result.lost == 0)
        eventually("the server saw 1000 messages") { server.snapshot.dataMessages == 1000 }
        #expect(server.snapshot.dataMessages == 1000)
        let l = try #require(result.latency)
        #expect(l.count == 1000)
        #expect(l.p50 <= l.p99)
        #expect(l.p99 <= l.max)
        #expect(l.max > 0)
        #expect(result.messagesPerSecond > 0)
        #expect(result.json.contains("\"received\":1000"))
    }

    @Test func fanoutRawDeliversEverything() throws {
        let server = try TestWebSocketServer(mode: .broadcast)
        defer { server.stop() }
        let result = try runBenchmark(options(["fanout", "ws://127.0.0.1:\(server.port)/broadcast", "--subscribers", "3",
                                               "--publishers", "2", "-n", "200", "-w", "8", "--settle", "50ms"]), progress: false)
        #expect(result.sent == 200)
        #expect(result.expected == 600)
        #expect(result.received == result.expected)
        #expect(result.unmatched == 0)
        #expect(result.latency?.count == 600)
    }

    @Test func fanoutChannelsCountsExpectedPerChannel() throws {
        let server = try TestWebSocketServer(mode: .broadcast)
        defer { server.stop() }
        // 20 subscribers over 4 channels (5 each), publishers default to 4 (one per channel).
        let result = try runBenchmark(options(["fanout", "--raw", "ws://127.0.0.1:\(server.port)/broadcast", "--subscribers", "20",
                                               "--channels", "4", "-n", "400", "-w", "8", "--settle", "50ms"]), progress: false)
        #expect(result.options.publishers == 4)
        #expect(result.established == 24)
        #expect(result.sent == 400)
        #expect(result.expected == 400 * 5)
        #expect(result.received == result.expected)
        #expect(result.unmatched == 0)
        #expect(result.latency?.count == 2000)
        #expect(result.summary.contains("channels 4"))
        #expect(result.json.contains("\"channels\":4"))
        // Each channel path saw its 5 subscribers and its publisher; nothing used the bare path.
        let targets = server.snapshot.requests.compactMap { $0.components(separatedBy: "\r\n").first }
        for ch in 0..<4 {
            #expect(targets.filter { $0 == "GET /broadcast/\(ch) HTTP/1.1" }.count == 6, "\(targets)")
        }
        #expect(targets.count == 24)
        // Publishers get their own copies back (sender included) and those are not counted.
        eventually("the server saw 400 published messages") { server.snapshot.dataMessages == 400 }
        #expect(result.publisherReceived <= 400)
    }

    @Test func fanoutChannelsUnevenSplit() throws {
        let server = try TestWebSocketServer(mode: .broadcast)
        defer { server.stop() }
        // 10 subscribers over 4 channels: 3, 3, 2, 2. 6 publishers on channels 0, 1, 2, 3, 0, 1,
        // 100 messages each: expected 100 * (3 + 3 + 2 + 2 + 3 + 3) = 1600. Six threads put one
        // publisher on each worker (so each gets exactly its 100-message share of -n), most of
        // them away from their channel's ack tracker (acks by polling).
        let result = try runBenchmark(options(["fanout", "--raw", "ws://127.0.0.1:\(server.port)/b/", "--subscribers", "10",
                                               "--channels", "4", "--publishers", "6", "-n", "600", "-w", "4", "-t", "6",
                                               "--settle", "50ms"]),
                                      progress: false)
        #expect(result.sent == 600)
        #expect(result.expected == 1600)
        #expect(result.received == result.expected)
        let targets = server.snapshot.requests.compactMap { $0.components(separatedBy: "\r\n").first }
        #expect(targets.filter { $0 == "GET /b/0 HTTP/1.1" }.count == 5)
        #expect(targets.filter { $0 == "GET /b/3 HTTP/1.1" }.count == 3)
    }

    @Test func fanoutWithTemplates() throws {
        let server = try TestWebSocketServer(mode: .broadcast)
        defer { server.stop() }
        let result = try runBenchmark(options(["fanout", "ws://127.0.0.1:\(server.port)/", "--subscribers", "2",
                                               "-n", "50", "-r", "2000", "-s", "40", "--settle", "50ms",
                                               "--subscribe-template", "{\"type\":\"subscribe\",\"channel\":\"c\"}",
                                               "--publish-template", "{\"type\":\"publish\",\"channel\":\"c\",\"data\":\"{{payload}}\"}"]),
                                      progress: false)
        #expect(result.expected == 100)
        #expect(result.received == 100)
        #expect(server.snapshot.requests.count == 3)
    }

    /// `client_late` (`Benchmarks/scripts/lib.sh`) on a run's summary: what the benchmark tables
    /// append to a latency cell whose client fell behind its schedule ("" when it kept it).
    func clientLate(_ summary: String) throws -> String {
        let lib = RepositoryTools.packageRoot.path + "/Benchmarks/scripts/lib.sh"
        let result = try runTool("/bin/bash", ["-c", "source \"$1\" && client_late /dev/stdin", "client-late", lib], input: summary)
        #expect(result.status == 0, "\(result.output)")
        return result.output
    }

    @Test func latencyOpenLoopSendsOnSchedule() throws {
        let server = try TestWebSocketServer()
        defer { server.stop() }
        let result = try runBenchmark(options(["latency", "ws://127.0.0.1:\(server.port)/", "-c", "2", "-r", "1000", "-n", "200"]), progress: false)
        #expect(result.received == 200)
        #expect(result.latency?.count == 200)
        // 200 messages at 1000/s take about 0.2 s of schedule.
        #expect(result.measuredSeconds > 0.15)
    }

    /// --busy-poll: the schedule is kept without a timer (every message still on time and
    /// answered), and the report says how long the client's own loop turns were: a turn of
    /// 500 µs or more is time the client lost, a latency tail it shares with the server.
    @Test func latencyBusyPollKeepsTheScheduleAndReportsClientStalls() throws {
        let server = try TestWebSocketServer()
        defer { server.stop() }
        #expect(try parseArguments(["latency", "ws://127.0.0.1:1/", "-r", "1"]).busyPoll == false)
        let result = try runBenchmark(options(["latency", "--busy-poll", "ws://127.0.0.1:\(server.port)/", "-c", "2", "-r", "1000", "-n", "200"]),
                                      progress: false)
        #expect(result.received == 200)
        #expect(result.latency?.count == 200)
        // On schedule, not as fast as it can: 200 messages at 1000/s take about 0.2 s.
        #expect(result.measuredSeconds > 0.15)
        let longest = try #require(result.clientLongestTurnNanos)
        #expect(longest > 0)
        #expect(result.summary.contains("\n  client loop (busy-poll): \(result.clientStalls) turns of 500 µs or more, longest "), "\(result.summary)")
        // The schedule's lateness is reported for every scheduled run.
        #expect(result.maxSendLagNanos != nil)
        #expect(result.summary.contains("\n  schedule: \(result.lateSends) of 200 sends left 100 µs or more late, the latest by "), "\(result.summary)")
        #expect(try clientLate(result.summary) == (result.lateSends == 0 ? "" : " (client late on \(result.lateSends) of 200 sends)"))
        // Without the flag there is no such line (a sleeping loop's turns include its sleeps).
        let sleeping = try runBenchmark(options(["latency", "ws://127.0.0.1:\(server.port)/", "-c", "2", "-r", "1000", "-n", "50"]), progress: false)
        #expect(sleeping.clientLongestTurnNanos == nil)
        #expect(!sleeping.summary.contains("client loop"))
    }

    /// A rate the client cannot keep is reported as such: 2,000 messages due within 200 µs
    /// cannot all leave on time (one `sendto` each), so most leave 100 µs or more late and the
    /// summary says the latency includes the client's own queue. An unscheduled run (echo)
    /// has no schedule line.
    @Test func latencyReportsAClientThatFellBehindItsRate() throws {
        let server = try TestWebSocketServer()
        defer { server.stop() }
        let result = try runBenchmark(options(["latency", "ws://127.0.0.1:\(server.port)/", "-c", "2", "-r", "10000000", "-n", "2000"]),
                                      progress: false)
        #expect(result.received == 2000)
        #expect(result.lateSends >= 1000, "\(result.lateSends) late sends")
        let lag = try #require(result.maxSendLagNanos)
        #expect(lag >= 100_000)
        #expect(result.summary.contains("(the client fell behind its rate: the latency includes its own queue)\n"), "\(result.summary)")
        // The benchmark scripts' latency cells say so too.
        #expect(try clientLate(result.summary) == " (client late on \(result.lateSends) of 2000 sends)")
        let echo = try runBenchmark(options(["echo", "ws://127.0.0.1:\(server.port)/", "-c", "2", "-n", "50"]), progress: false)
        #expect(echo.maxSendLagNanos == nil)
        #expect(!echo.summary.contains("schedule:"))
    }

    @Test func connectHoldsConnections() throws {
        let server = try TestWebSocketServer()
        defer { server.stop() }
        let result = try runBenchmark(options(["connect", "ws://127.0.0.1:\(server.port)/", "-c", "20", "-d", "200ms",
                                               "--server-pid", "\(getpid())"]), progress: false)
        #expect(result.established == 20)
        #expect(result.failedConnections == 0)
        #expect(result.serverRSSBeforeKiB != nil && result.serverRSSAfterKiB != nil)
        // The base RSS's anonymous part (RssAnon) is part of it, and is in the report the
        // scripts parse (memory-bench.sh, issue16-bench.sh: "anonymous N KiB before").
        let anonymous = try #require(result.serverAnonymousRSSBeforeKiB)
        let before = try #require(result.serverRSSBeforeKiB)
        #expect(anonymous > 0 && anonymous <= before)
        #expect(result.summary.contains("; anonymous \(anonymous) KiB before\n"), "\(result.summary)")
    }

    /// tls-bench.sh divides the server's user and system time by the round trips: both are
    /// reported apart, and they add up to the total the other scripts read.
    @Test func serverCPUIsReportedAsUserAndSystem() throws {
        let server = try TestWebSocketServer()
        defer { server.stop() }
        // The "server" is this process (the test server's threads), so the window has work in it.
        let result = try runBenchmark(options(["echo", "ws://127.0.0.1:\(server.port)/", "-c", "4", "-n", "4000",
                                               "--server-pid", "\(getpid())"]), progress: false)
        #expect(result.received == 4000)
        let cpu = try #require(result.serverCPU)
        #expect(cpu.userSeconds >= 0 && cpu.systemSeconds >= 0)
        #expect(cpu.totalSeconds > 0)
        #expect(result.serverCPUSeconds == cpu.totalSeconds)
        let line = try #require(result.summary.split(separator: "\n").first { $0.contains("server CPU:") })
        #expect(line.contains("%), user ") && line.hasSuffix(" s") && line.contains(" s, system "))
        #expect(result.json.contains("\"serverCpuUserSeconds\":") && result.json.contains("\"serverCpuSystemSeconds\":"))
    }

    @Test func cpuTimesSubtractPerField() throws {
        let start = try #require(readCPUTimes(pid: getpid()))
        // Spin until user time moves (a clock tick, 10 ms at the usual 100 Hz): on a loaded
        // machine a fixed wall-clock spin may not get a whole tick of CPU.
        let deadline = DispatchTime.now().uptimeNanoseconds + 10_000_000_000
        var x: UInt64 = 1
        var spent = CPUTimes(userSeconds: 0, systemSeconds: 0)
        while spent.userSeconds == 0 && DispatchTime.now().uptimeNanoseconds < deadline {
            for _ in 0..<100_000 { x = x &* 6364136223846793005 &+ 1 }
            spent = try #require(readCPUTimes(pid: getpid())) - start
        }
        #expect(x != 0)
        #expect(spent.userSeconds > 0)
        #expect(spent.systemSeconds >= 0)
        #expect(spent.totalSeconds == spent.userSeconds + spent.systemSeconds)
    }
}

@Suite struct ArgumentTests {
    func usageError(_ args: [String]) -> UsageError? {
        do { _ = try parseArguments(args); return nil } catch { return error }
    }

    @Test func nonLoopbackTargetsNeedAllowRemote() throws {
        for target in ["ws://10.1.2.3:80/", "ws://example.com:8080/ws", "ws://[2001:db8::1]:80/", "ws://128.0.0.1/"] {
            let e = try #require(usageError(["echo", target]), "\(target) accepted")
            #expect(e.message.contains("--allow-remote"))
            #expect(usageError(["echo", target, "--allow-remote"]) == nil)
        }
        for target in ["ws://127.0.0.1:80/", "ws://127.9.8.7:1/x", "ws://localhost:9000", "ws://[::1]:80/ws", "wss://127.0.0.1:443/"] {
            #expect(usageError(["echo", target]) == nil, "\(target) refused")
        }
    }

    @Test func badArgumentsGiveUsage() throws {
        let cases: [[String]] = [
            [],
            ["bogus", "ws://127.0.0.1:1/"],
            ["echo"],
            ["echo", "http://127.0.0.1:1/"],
            ["echo", "wss://"],
            ["echo", "ws://127.0.0.1:1/", "--nope"],
            ["echo", "ws://127.0.0.1:1/", "-c"],
            ["echo", "ws://127.0.0.1:1/", "-c", "0"],
            ["echo", "ws://127.0.0.1:1/", "-d", "ten"],
            ["echo", "ws://127.0.0.1:1/", "-s", "huge"],
            ["latency", "ws://127.0.0.1:1/"],
            ["fanout", "ws://127.0.0.1:1/", "--publish-template", "no placeholder"],
            ["connect", "ws://127.0.0.1:1/", "-n", "5"],
            ["echo", "ws://127.0.0.1:1/", "ws://127.0.0.1:2/"],
            ["fanout", "ws://127.0.0.1:1/", "--channels", "0"],
            ["fanout", "ws://127.0.0.1:1/", "--channels", "x"],
            ["fanout", "ws://127.0.0.1:1/", "--channels", "11"],
            ["fanout", "ws://127.0.0.1:1/", "--subscribers", "20", "--channels", "21"],
            ["fanout", "ws://127.0.0.1:1/", "--channels", "2", "--publish-template", "{{payload}}"],
            ["echo", "ws://127.0.0.1:1/", "--channels", "2"],
        ]
        for args in cases {
            let e = try #require(usageError(args), "\(args) parsed")
            #expect(e.description.contains("switchboard-bench <echo|fanout|connect|latency> [options] ws://HOST:PORT/path"), "\(args)")
            #expect(!e.helpRequested)
        }
        #expect(usageError(["--help"])?.helpRequested == true)
        #expect(usageError(["fanout", "-h"])?.helpRequested == true)
    }

    /// `--help` lists every option the benchmark scripts and the README use.
    @Test func helpListsEveryOption() throws {
        let help = try #require(usageError(["--help"])).description
        for option in ["-c, --connections", "-t, --threads", "--cpu", "-d, --duration", "-n, --messages", "--warmup",
                       "-s, --size", "--binary", "--connect-timeout", "--header", "--json", "--server-pid",
                       "--max-failed-connections", "-q, --quiet", "--allow-remote", "--url", "-w, --window", "-r, --rate",
                       "--drain", "--busy-poll", "--subscribers", "--publishers", "--channels", "--subscribe-template",
                       "--publish-template", "--raw", "--settle", "echo", "fanout", "connect", "latency", "Exit status"] {
            #expect(help.contains(option), "--help does not mention \(option)")
        }
    }

    @Test func toleranceParses() throws {
        #expect(try parseArguments(["echo", "ws://127.0.0.1:1/"]).maxFailedConnections == .count(0))
        #expect(try parseArguments(["echo", "ws://127.0.0.1:1/", "--max-failed-connections", "5"]).maxFailedConnections == .count(5))
        #expect(try parseArguments(["echo", "ws://127.0.0.1:1/", "--max-failed-connections=2.5%"]).maxFailedConnections == .percent(2.5))
        #expect(usageError(["echo", "ws://127.0.0.1:1/", "--max-failed-connections", "lots"])?.message.contains("N or N%") == true)
    }

    @Test func valuesParse() throws {
        let o = try parseArguments(["fanout", "--url=ws://127.0.0.1:8080/b", "--subscribers", "7", "--publishers=2", "-r", "500",
                                    "-s", "1KiB", "--warmup", "2s", "-d", "1500ms", "-t", "3", "--cpu", "1,2", "--raw"])
        #expect(o.scenario == .fanout && o.url.port == 8080 && o.url.resource == "/b")
        #expect(o.subscribers == 7 && o.publishers == 2 && o.rate == 500 && o.size == 1024)
        #expect(o.warmupNanos == 2_000_000_000 && o.durationNanos == 1_500_000_000)
        #expect(o.threads == 3 && o.cpus == [1, 2] && o.rawFanout)
        let c = try parseArguments(["fanout", "--raw", "ws://127.0.0.1:1/broadcast?x=1", "--subscribers", "10000", "--channels", "1000"])
        #expect(c.channels == 1000 && c.publishers == 1000 && c.totalConnections == 11_000)
        #expect(c.path(forChannel: 17) == "/broadcast/17?x=1" && c.subscribers(onChannel: 999) == 10)
        let d = try parseArguments(["fanout", "ws://127.0.0.1:1/b", "--subscribers", "10", "--channels", "4", "--publishers", "2"])
        #expect(d.publishers == 2 && d.subscribers(onChannel: 1) == 3 && d.subscribers(onChannel: 2) == 2)
        let e = try parseArguments(["fanout", "ws://127.0.0.1:1/b"])
        #expect(e.channels == 1 && e.publishers == 1 && e.path(forChannel: 0) == "/b" && e.subscribers(onChannel: 0) == 10)
        #expect(parseSize("20") == 20 && parseSize("1k") == 1024 && parseSize("2MiB") == 2 << 20)
        #expect(parseDuration("10s") == 10_000_000_000 && parseDuration("2m") == 120_000_000_000 && parseDuration("3") == 3_000_000_000)
    }
}

// MARK: - A failed run is reported as failed

@Suite struct VerdictTests {
    @Test func fanoutAgainstAServerThatDeliversNothingFails() throws {
        let server = try TestWebSocketServer(mode: .silent)
        defer { server.stop() }
        // One publisher, window 16: it publishes 16 messages and waits for acks that never come.
        let result = try runBenchmark(options(["fanout", "ws://127.0.0.1:\(server.port)/broadcast", "--subscribers", "3",
                                               "-d", "300ms", "--drain", "200ms", "--settle", "20ms"]), progress: false)
        #expect(result.established == 4)
        #expect(result.sent == 16)
        #expect(result.expected == 48)
        #expect(result.received == 0)
        #expect(!result.passed)
        #expect(result.failures.contains("48 of 48 deliveries missing (received 0)"), "\(result.failures)")
        // Every subscriber is missing all 16 sequence numbers of the publisher.
        #expect(result.verifiedSubscribers == 3)
        #expect(result.sequenceMissing == 48)
        #expect(result.summary.contains("result: FAILED"))
        #expect(result.summary.contains("failed: 48 of 48 deliveries missing"))
        #expect(result.json.contains("\"passed\":false"))
    }

    @Test func fanoutThatPublishedNothingMeasuredFails() throws {
        let server = try TestWebSocketServer(mode: .silent)
        defer { server.stop() }
        // The window fills during the warm-up and is never acked: 0 measured publishes (the
        // "published 0, expected deliveries 0, received 0" run that used to exit 0).
        let result = try runBenchmark(options(["fanout", "ws://127.0.0.1:\(server.port)/broadcast", "--subscribers", "2",
                                               "--warmup", "100ms", "-d", "200ms", "--drain", "100ms", "--settle", "20ms"]),
                                      progress: false)
        #expect(result.sent == 0 && result.expected == 0 && result.received == 0)
        #expect(result.failures.contains("nothing was published in the measured window"), "\(result.failures)")
        #expect(result.sequenceMissing == 32, "the 16 warm-up messages never reached either subscriber")
    }

    @Test func fanoutWithAMessageCountStopsWhenTheServerStalls() throws {
        let server = try TestWebSocketServer(mode: .silent)
        defer { server.stop() }
        // -n 100 can never complete (the window is never acked): the stall guard ends the run.
        let result = try runBenchmark(options(["fanout", "ws://127.0.0.1:\(server.port)/b", "--subscribers", "1",
                                               "-n", "100", "--drain", "300ms", "--settle", "20ms"]), progress: false)
        #expect(result.stalledNanos != nil)
        #expect(result.failures.contains { $0.hasPrefix("stopped early: nothing was sent or received") }, "\(result.failures)")
    }

    @Test func echoWithMostConnectionsRefusedFails() throws {
        let server = try TestWebSocketServer(upgradeLimit: 2)
        defer { server.stop() }
        let args = ["echo", "ws://127.0.0.1:\(server.port)/", "-c", "10", "-n", "100", "--connect-timeout", "3s"]
        let result = try runBenchmark(options(args), progress: false)
        #expect(result.established == 2)
        #expect(result.failedConnections == 8)
        #expect(result.received == 100, "the two upgraded connections did all the work")
        #expect(!result.passed)
        #expect(result.failures == ["8 of 10 connections failed to open and 0 were closed by the server: 8 lost, more than the 0 allowed (--max-failed-connections 0)"])
        #expect(result.errors.contains { $0.contains("503") }, "\(result.errors)")
        // A stated tolerance is honoured both ways.
        let tolerated = try runBenchmark(options(args + ["--max-failed-connections", "80%"]), progress: false)
        #expect(tolerated.failedConnections == 10, "the server upgrades 2 connections in all, the first run had them")
        #expect(!tolerated.passed, "no connection at all is never tolerated: \(tolerated.failures)")
        #expect(tolerated.failures.first?.hasPrefix("no connection was established") == true)
    }

    @Test func echoAgainstARefusingPortFails() throws {
        let refusing = try RefusingPort()
        let result = try runBenchmark(options(["echo", "ws://127.0.0.1:\(refusing.port)/", "-c", "5", "-n", "10",
                                               "--max-failed-connections", "100%"]), progress: false)
        #expect(result.failedConnections == 5)
        #expect(result.errors.contains { $0.contains("Connection refused") }, "\(result.errors)")
        #expect(result.failures == ["no connection was established (5 of 5 failed)"], "even with every failure tolerated")
    }

    @Test func connectionToleranceCountsAndPercentages() throws {
        let server = try TestWebSocketServer(upgradeLimit: 7)
        defer { server.stop() }
        let base = ["echo", "ws://127.0.0.1:\(server.port)/", "-c", "10", "-n", "20"]
        let within = try runBenchmark(options(base + ["--max-failed-connections", "3"]), progress: false)
        #expect(within.established == 7 && within.failedConnections == 3)
        #expect(within.passed, "\(within.failures)")
        #expect(ConnectionTolerance.parse("30%")?.allowedFailures(of: 10) == 3)
        #expect(ConnectionTolerance.parse("29%")?.allowedFailures(of: 10) == 2)
        #expect(ConnectionTolerance.parse("2")?.allowedFailures(of: 10) == 2)
        for bad in ["-1", "101%", "x", "%", "1.5"] { #expect(ConnectionTolerance.parse(bad) == nil, "\(bad)") }
    }

    @Test func passingRunsSayPassed() throws {
        let server = try TestWebSocketServer(mode: .broadcast)
        defer { server.stop() }
        let result = try runBenchmark(options(["fanout", "ws://127.0.0.1:\(server.port)/b", "--subscribers", "4",
                                               "--publishers", "2", "-n", "100", "--settle", "20ms"]), progress: false)
        #expect(result.passed, "\(result.failures)")
        #expect(result.verifiedSubscribers == 4)
        #expect(result.sequenceMissing == 0 && result.reordered == 0 && result.misrouted == 0)
        #expect(result.summary.contains("order per subscriber (4 checked): 0 missing, 0 reordered, 0 from another channel"))
        #expect(result.summary.hasSuffix("result: PASSED\n"))
    }
}

@Suite struct SequenceCheckerTests {
    @Test func inOrderRunsPass() {
        var c = SequenceChecker(publishers: 2)
        for seq in 0..<5 { c.record(publisher: 0, seq: Int64(seq)); c.record(publisher: 1, seq: Int64(seq)) }
        c.finish(published: [5, 5])
        #expect(c.inOrder == 10 && c.missing == 0 && c.reordered == 0 && c.foreign == 0)
    }

    @Test func aGapIsCounted() {
        var c = SequenceChecker(publishers: 1)
        for seq: Int64 in [0, 1, 4, 5] { c.record(publisher: 0, seq: seq) }
        #expect(c.missing == 2, "2 and 3 never came")
        #expect(c.reordered == 0)
        c.finish(published: [6])
        #expect(c.missing == 2)
        #expect(c.inOrder == 3)
    }

    @Test func aReorderAndADuplicateAreCounted() {
        var c = SequenceChecker(publishers: 1)
        for seq: Int64 in [0, 2, 1, 3, 3] { c.record(publisher: 0, seq: seq) }
        #expect(c.missing == 1, "1 was skipped over when 2 came")
        #expect(c.reordered == 2, "1 came late, the second 3 is a duplicate")
    }

    @Test func aLostTailAndAMissingStartAreCounted() {
        var c = SequenceChecker(publishers: 2)
        c.record(publisher: 0, seq: 0)
        c.record(publisher: 1, seq: 3)  // 0, 1, 2 never came
        c.finish(published: [4, 4])
        #expect(c.missing == 3 + 3, "publisher 0: 1, 2, 3 lost at the end; publisher 1: 0, 1, 2")
    }

    @Test func aPublisherOfAnotherChannelIsForeign() {
        var c = SequenceChecker(publishers: 1)
        c.record(publisher: 1, seq: 0)
        c.record(publisher: -1, seq: 0)
        #expect(c.foreign == 2 && c.inOrder == 0)
    }
}
