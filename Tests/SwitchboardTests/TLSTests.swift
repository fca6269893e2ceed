import Foundation
import Switchboard
import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension TLSFiles {
    func configuration(port: Int = 0) -> TLSConfiguration {
        TLSConfiguration(port: port, certificate: .init(chainPath: chain, privateKeyPath: key))
    }
}

/// HTTP `/hello` plus a WebSocket echo at any path.
final class TLSWorker: WorkerHandler {
    let context: ShardContext
    init(_ context: ShardContext) { self.context = context }
    func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply {
        request.path == "/hello" ? .response(WorkerResponse(status: .ok, body: "hello")) : .notHandled
    }
    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        .accept(token: nil, subprotocol: nil)
    }
    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        // "burst N BIG": N messages "m0".."m<N-1>" and one of BIG bytes after the first N/2,
        // all in this call (one turn: corked together on a TLS connection).
        if case .text(let text) = message, text.hasPrefix("burst ") {
            let words = text.split(separator: " ")
            guard words.count == 3, let n = Int(words[1]), let big = Int(words[2]) else { return }
            for i in 0..<n {
                if i == n / 2 { context.send(socketId, .text(String(repeating: "x", count: big))) }
                context.send(socketId, .text("m\(i)"))
            }
            if n == 0 { context.send(socketId, .text(String(repeating: "x", count: big))) }
            return
        }
        context.send(socketId, message)
    }
    func handleSocketClose(socketId: SocketID, token: [UInt8]?) {}
}

func tlsServer(_ backend: IOBackendKind, _ files: TLSFiles, shards: Int = 2,
               configure: (inout TLSConfiguration) -> Void = { _ in }) throws -> ServerFixture {
    try ServerFixture(backend: backend, shards: shards, configure: { c in
        var tls = files.configuration()
        configure(&tls)
        c.tls = tls
    }, worker: { TLSWorker($0) })
}

func python(_ arguments: [String], input: String? = nil) throws -> (status: Int32, output: String) {
    try runTool(try RepositoryTools.python(), [RepositoryTools.interopScript("tls_client.py")] + arguments, input: input)
}

@Suite("TLS listener (OpenSSL on the shards, memory BIOs)", .serialized)
struct TLSTests {
    @Test("curl, openssl s_client and Python ssl speak https to it; the plain port still serves plaintext", arguments: backends)
    func https(backend: IOBackendKind) throws {
        let files = try TLSFiles()
        let server = try tlsServer(backend, files)
        defer { server.stop() }
        let port = server.broker.tlsPort
        #expect(port != 0 && port != server.port)

        let curl = try runTool("/usr/bin/curl", ["-sS", "--cacert", files.ca, "https://localhost:\(port)/hello"])
        #expect(curl.status == 0 && curl.output == "hello", "\(curl.output)")
        // TLS 1.3: the records after the handshake are Switchboard's own (the default).
        #expect(server.metric("switchboard_tls_own_record_sessions_total") == 1)
        let curl12 = try runTool("/usr/bin/curl", ["-sS", "--tlsv1.2", "--tls-max", "1.2", "--cacert", files.ca, "https://localhost:\(port)/hello"])
        #expect(curl12.status == 0 && curl12.output == "hello", "\(curl12.output)")
        // TLS 1.2 keeps OpenSSL's record layer.
        #expect(server.metric("switchboard_tls_own_record_sessions_total") == 1)

        let sclient = try runTool("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-servername", "localhost",
                                                       "-CAfile", files.ca, "-alpn", "http/1.1", "-verify_return_error", "-brief", "-ign_eof"],
                                  input: "GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        #expect(sclient.output.contains("Protocol version: TLSv1.3"), "\(sclient.output)")
        #expect(sclient.output.contains("Verification: OK"), "\(sclient.output)")
        #expect(sclient.output.contains("HTTP/1.1 200 OK"), "\(sclient.output)")
        // TLS 1.1 and below are refused.
        let old = try runTool("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-tls1_1", "-brief"], input: "")
        #expect(!old.output.contains("Protocol version: TLSv1.1"), "\(old.output)")

        let py = try python(["https", String(port), files.ca, "/hello"])
        #expect(py.output == "TLSv1.3 http/1.1 HTTP/1.1 200 OK hello\n", "\(py.output)")

        let plain = try server.client()
        try plain.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try plain.readResponse().bodyText == "hello")
        #expect(server.metric("switchboard_tls_handshakes_total") >= 4)
        #expect(server.metric("switchboard_tls_handshakes_in_flight") == 0)
    }

    @Test("Python websockets over wss://: echo, a 100 KB binary, a fragmented message, permessage-deflate (both record layers)",
          arguments: backends, TLSConfiguration.RecordLayer.allCases)
    func wss(backend: IOBackendKind, recordLayer: TLSConfiguration.RecordLayer) throws {
        let files = try TLSFiles()
        let server = try tlsServer(backend, files) { $0.recordLayer = recordLayer }
        defer { server.stop() }
        let py = try python(["wss", String(server.broker.tlsPort), files.ca])
        #expect(py.status == 0 && py.output == "ok\n", "\(py.output)")
        #expect(server.metric("switchboard_tls_own_record_sessions_total") == (recordLayer == .switchboard ? 2 : 0),
                "the script opens two connections")
    }

    @Test("a burst sent in one handler call goes out corked: every message in order, in one TLS record per 16 KiB", arguments: backends)
    func corkedBurst(backend: IOBackendKind) throws {
        let files = try TLSFiles()
        let server = try tlsServer(backend, files, shards: 1)
        defer { server.stop() }
        let port = String(server.broker.tlsPort)
        // The same connection's bytes without the burst (handshake, tickets, 101, the big
        // message, closes), then with it: the difference is the burst's ciphertext.
        func sentBytes(_ n: Int) throws -> Int {
            let before = server.metric("switchboard_bytes_sent_total")
            let py = try python(["burst", port, files.ca, String(n), "20000"])
            #expect(py.status == 0 && py.output == "ok\n", "\(py.output)")
            #expect(waitUntil { server.metric("switchboard_connections_open") == 0 })
            return server.metric("switchboard_bytes_sent_total") - before
        }
        let n = 300
        let alone = try sentBytes(0)
        let burst = try sentBytes(n) - alone
        // The frames: "m0".."m299", each with a 2-byte header.
        let frames = (0..<n).reduce(0) { $0 + 2 + "m\($1)".utf8.count }
        // One record per message would add 22 bytes each (5 header, 1 content type, 16 tag:
        // TLS 1.3 AES-GCM), 6,600 in all; corked, the burst and the big message share the 2
        // records the big one needs alone, so the burst adds its frames only. The two runs'
        // handshakes differ by a few bytes (the tickets' encodings): 64 bytes of slack.
        #expect(abs(burst - frames) <= 64, "burst ciphertext \(burst) B for \(frames) B of frames (alone: \(alone) B)")
    }

    @Test("a session ticket resumes the session (and still does after one key rotation)", arguments: backends)
    func resumption(backend: IOBackendKind) throws {
        let files = try TLSFiles()
        let server = try tlsServer(backend, files)
        defer { server.stop() }
        let port = String(server.broker.tlsPort)
        let first = try python(["resume", port, files.ca])
        #expect(first.output == "full=False resumed=True\n", "\(first.output)")
        #expect(server.metric("switchboard_tls_resumed_total") == 1)
        let generations = TLSContextStore.ticketKeyGenerations
        TLSContextStore.rotateTicketKey()
        #expect(TLSContextStore.ticketKeyGenerations == generations + 1)
        let after = try python(["resume", port, files.ca])
        #expect(after.output == "full=False resumed=True\n", "\(after.output)")
    }

    @Test("ticket key rotation: a ticket survives one rotation, not two (then a full handshake)")
    func ticketKeyRotation() throws {
        let files = try TLSFiles()
        let server = try tlsServer(.epoll, files)
        defer { server.stop() }
        for (rotations, expected) in [(1, "full=False resumed=True\n"), (2, "full=False resumed=False\n")] {
            let client = try HeldConnection(port: server.broker.tlsPort, ca: files.ca, mode: "resume-wait")
            for _ in 0..<rotations { TLSContextStore.rotateTicketKey() }
            #expect(try client.request() == expected, "after \(rotations) rotation(s)")
        }
    }

    @Test("plaintext HTTP to the TLS port gets a plaintext 400 and a close", arguments: backends)
    func plaintextOnTLSPort(backend: IOBackendKind) throws {
        let files = try TLSFiles()
        let server = try tlsServer(backend, files)
        defer { server.stop() }
        let client = try TestClient(port: server.broker.tlsPort, receiveTimeoutMilliseconds: 5000)
        try client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        let body = "This port speaks TLS: use https:// or wss://.\n"
        let expected = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        #expect(String(decoding: try client.readToEnd(), as: UTF8.self) == expected)
        #expect(server.metric("switchboard_tls_plaintext_rejected_total") == 1)
    }

    @Test("garbage, a bad ClientHello, a truncated one and a silent client are closed, each counted", arguments: backends)
    func badHandshakes(backend: IOBackendKind) throws {
        let files = try TLSFiles()
        let server = try tlsServer(backend, files) { $0.handshakeTimeoutMilliseconds = 300 }
        defer { server.stop() }
        let port = server.broker.tlsPort
        // Not TLS and not HTTP: closed at once.
        let garbage = try TestClient(port: port, receiveTimeoutMilliseconds: 5000)
        try garbage.send([0x00, 0x01, 0x02, 0x03])
        #expect(try garbage.readToEnd().isEmpty)
        // A handshake record whose body is nonsense: OpenSSL's alert, then the close.
        let bad = try TestClient(port: port, receiveTimeoutMilliseconds: 5000)
        try bad.send([0x16, 0x03, 0x01, 0x00, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        let alert = try bad.readToEnd()
        #expect(alert.first == 0x15, "a TLS alert record: \(alert)")
        #expect(server.metric("switchboard_tls_handshake_failures_total") == 2)
        // A ClientHello cut short, and a client that says nothing: the handshake timeout closes both.
        let truncated = try TestClient(port: port, receiveTimeoutMilliseconds: 5000)
        try truncated.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03])
        let silent = try TestClient(port: port, receiveTimeoutMilliseconds: 5000)
        #expect(try truncated.readToEnd().isEmpty)
        #expect(try silent.readToEnd().isEmpty)
        #expect(server.metric("switchboard_tls_handshake_timeouts_total") == 2)
        #expect(server.waitForNoConnections())
        #expect(server.metric("switchboard_tls_handshakes_in_flight") == 0)
    }

    @Test("a handshake flood beyond the per-shard cap is refused while an established connection keeps working", arguments: backends)
    func handshakeCap(backend: IOBackendKind) throws {
        let files = try TLSFiles()
        let server = try tlsServer(backend, files, shards: 1) { $0.maxHandshakesInFlightPerShard = 2 }
        defer { server.stop() }
        let port = server.broker.tlsPort
        let held = try HeldConnection(port: port, ca: files.ca)
        let silent = try (0..<2).map { _ in try TestClient(port: port, receiveTimeoutMilliseconds: 5000) }
        #expect(waitUntil { server.metric("switchboard_tls_handshakes_in_flight") == 2 })
        let refused = try TestClient(port: port, receiveTimeoutMilliseconds: 5000)
        #expect(try refused.readToEnd().isEmpty)
        #expect(server.metric("switchboard_tls_handshakes_rejected_total") == 1)
        #expect(try held.request() == "HTTP/1.1 200 OK\n")
        _ = silent
    }

    @Test("TLS 1.2 renegotiation is refused and the connection closed", arguments: backends)
    func renegotiation(backend: IOBackendKind) throws {
        let files = try TLSFiles()
        let server = try tlsServer(backend, files)
        defer { server.stop() }
        // s_client renegotiates when a line is "R"; it then reads the server's answer.
        let out = try runTool("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(server.broker.tlsPort)", "-tls1_2",
                                                   "-CAfile", files.ca, "-servername", "localhost"], input: "R\n")
        #expect(out.output.contains("RENEGOTIATING"), "\(out.output)")
        #expect(waitUntil { server.metric("switchboard_tls_renegotiations_refused_total") == 1 }, "\(out.output)")
        #expect(server.waitForNoConnections())
    }

    @Test("start-up fails with a clear message: key that does not match, expired certificate, missing file")
    func badCertificates() throws {
        let files = try TLSFiles()
        let other = try files.issue(name: "other", host: "localhost", serial: 7)
        let expired = try files.issue(name: "expired", host: "localhost", serial: 8, days: -1)
        let cases: [(String, String, String)] = [
            (files.chain, other.key, "the private key does not match the certificate"),
            (expired.chain, expired.key, "the certificate has expired"),
            (files.directory + "/missing.pem", files.key, "cannot load the certificate chain"),
        ]
        for (chain, key, message) in cases {
            var c = BrokerConfiguration()
            c.host = "127.0.0.1"
            c.port = 0
            c.io.shardCount = 1
            c.tls = TLSConfiguration(port: 0, certificate: .init(chainPath: chain, privateKeyPath: key))
            let broker = Broker(configuration: c, logger: .discarding) { TLSWorker($0) }
            do {
                try broker.start()
                broker.shutdown(graceMilliseconds: 0)
                Issue.record("started with \(message)")
            } catch {
                #expect("\(error)".contains(message), "\(error)")
            }
        }
    }

    @Test("reload: new handshakes get the new certificate, an open connection stays, a bad file keeps the old one", arguments: backends)
    func reload(backend: IOBackendKind) throws {
        let files = try TLSFiles()
        let server = try tlsServer(backend, files)
        defer { server.stop() }
        let port = String(server.broker.tlsPort)
        #expect(try python(["serial", port, files.ca]).output == "03E9\n")  // 1001
        let held = try HeldConnection(port: server.broker.tlsPort, ca: files.ca)
        let next = try files.issue(name: "next", host: "localhost", serial: 1002)
        try FileManager.default.removeItem(atPath: files.chain)
        try FileManager.default.removeItem(atPath: files.key)
        try FileManager.default.copyItem(atPath: next.chain, toPath: files.chain)
        try FileManager.default.copyItem(atPath: next.key, toPath: files.key)
        guard case .success = server.broker.reloadTLS() else { Issue.record("reload failed"); return }
        #expect(try python(["serial", port, files.ca]).output == "03EA\n")
        #expect(try held.request() == "HTTP/1.1 200 OK\n")
        try "not a certificate".write(toFile: files.chain, atomically: true, encoding: .utf8)
        guard case .failure(let error) = server.broker.reloadTLS() else { Issue.record("a bad certificate was taken"); return }
        #expect(error.message.contains("cannot load the certificate chain"), "\(error)")
        #expect(try python(["serial", port, files.ca]).output == "03EA\n")
        #expect(server.metric("switchboard_tls_reloads_total") == 1)
        #expect(server.metric("switchboard_tls_reload_failures_total") == 1)
    }

    @Test("SNI picks the extra certificate whose name matches; others get the default")
    func sni() throws {
        let files = try TLSFiles()
        let extra = try files.issue(name: "chat", host: "chat.test", serial: 2001)
        let server = try tlsServer(.epoll, files) { $0.sniCertificates = [.init(chainPath: extra.chain, privateKeyPath: extra.key)] }
        defer { server.stop() }
        let port = String(server.broker.tlsPort)
        #expect(try python(["serial", port, files.ca, "chat.test"]).output == "07D1\n")
        #expect(try python(["serial", port, files.ca, "localhost"]).output == "03E9\n")
    }
}

/// A Python TLS client that finished its handshake and waits; `request()` makes it send a GET
/// on the same connection and returns the status line it got.
final class HeldConnection {
    let process = Process()
    let input = Pipe()
    let output = Pipe()

    init(port: Int, ca: String, mode: String = "hold", _ arguments: [String] = []) throws {
        process.executableURL = URL(fileURLWithPath: try RepositoryTools.python())
        process.arguments = [RepositoryTools.interopScript("tls_client.py"), mode, String(port), ca] + arguments
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let ready = readLine()
        guard ready == "ready\n" else { throw MissingTool("the held TLS connection did not start: \(ready)") }
    }

    private func readLine() -> String {
        var line: [UInt8] = []
        while true {
            let byte = output.fileHandleForReading.readData(ofLength: 1)
            guard let b = byte.first else { break }
            line.append(b)
            if b == UInt8(ascii: "\n") { break }
        }
        return String(decoding: line, as: UTF8.self)
    }

    func request() throws -> String {
        input.fileHandleForWriting.write(Data("go\n".utf8))
        let line = readLine()
        process.waitUntilExit()
        return line
    }

    deinit { if process.isRunning { process.terminate() } }
}
