import HBTestSupport
import Switchboard
import Testing
@testable import hummingbird_chat_example

@Suite("Hummingbird router served by Switchboard's shards (one port)", .serialized)
struct OnePortTests {
    @Test func restRoutesAndWebSocketsShareThePort() async throws {
        let app = try await RunningExample.start()
        let port = app.port
        let ws = try TestClient(port: port)
        #expect(try await io { try ws.upgrade(path: "/ws?room=lobby&name=ada") }.status == 101)

        let http = try TestClient(port: port)
        let members = try await io { try http.request("GET", "/rooms/lobby/members") }
        #expect(members.status == 200)
        #expect(members.bodyText == "1\n", "the socket subscribed before its 101: counted exactly")
        #expect(members.header("Content-Type") == "text/plain; charset=utf-8")

        // A route publishes through the broker in its request context.
        let posted = try await io { try http.request("POST", "/rooms/lobby/messages", body: Array("hello from REST".utf8)) }
        #expect(posted.status == 202)
        #expect(posted.header("Content-Type") == "application/json")
        #expect(posted.header("Content-Length") == "\(posted.body.count)")
        #expect(posted.header("Date") != nil, "the broker frames the response")
        #expect(posted.bodyText == #"{"room":"lobby","bytes":15}"#)
        #expect(try await io { try ws.readFrame() }.text == "<api> hello from REST")

        // The WebSocket side is the Switchboard handler's.
        let echoed = try await io { try ws.sendText("hi all"); return try ws.readFrame() }
        #expect(echoed.text == "<ada> hi all")

        // Errors: Hummingbird's HTTPError, its 404, and a refused upgrade.
        let empty = try await io { try http.request("POST", "/rooms/lobby/messages") }
        #expect(empty.status == 400)
        #expect(empty.bodyText.contains("empty message"), "\(empty)")
        #expect(try await io { try http.request("GET", "/nowhere") }.status == 404)
        let refused = try await io { try TestClient(port: port).upgrade(path: "/ws?name=nobody") }
        #expect(refused.status == 400)

        try await app.stop()
    }

    @Test func oneMebibyteBodyAndTheLimitPastIt() async throws {
        let app = try await RunningExample.start()
        let port = app.port
        let ws = try TestClient(port: port, receiveTimeoutMilliseconds: 10_000)
        #expect(try await io { try ws.upgrade(path: "/ws?room=big&name=reader") }.status == 101)
        let mebibyte = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
        let posted = try await io {
            try TestClient(port: port, receiveTimeoutMilliseconds: 10_000).request("POST", "/rooms/big/messages", body: mebibyte)
        }
        #expect(posted.status == 202)
        #expect(posted.bodyText == #"{"room":"big","bytes":1048576}"#)
        let frame = try await io { try ws.readFrame() }
        #expect(frame.payload.count == 6 + (1 << 20))
        #expect(frame.payload.prefix(6) == Array("<api> ".utf8)[...])
        // One byte more than http.max_body_bytes: the shard refuses it before the router runs.
        let tooBig = try await io {
            try TestClient(port: port, receiveTimeoutMilliseconds: 10_000).request("POST", "/rooms/big/messages", body: mebibyte + [0x78])
        }
        #expect(tooBig.status == 413)
        try await app.stop()
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        let app = try await RunningExample.start()
        let http = try TestClient(port: app.port)
        // Ten requests in one write, of three routes; the router's tasks may finish in any
        // order, the answers leave in request order.
        var batch: [UInt8] = []
        for i in 1...10 {
            switch i % 3 {
            case 0: batch += Array("GET /rooms/pipe/members HTTP/1.1\r\nHost: t\r\n\r\n".utf8)
            case 1: batch += Array("GET /missing/\(i) HTTP/1.1\r\nHost: t\r\n\r\n".utf8)
            default:
                let body = String(repeating: "b", count: i)
                batch += Array("POST /rooms/pipe/messages HTTP/1.1\r\nHost: t\r\nContent-Length: \(i)\r\n\r\n\(body)".utf8)
            }
        }
        let request = batch
        let responses = try await io { try http.send(request); return try (1...10).map { _ in try http.readResponse() } }
        for (index, response) in responses.enumerated() {
            let i = index + 1
            switch i % 3 {
            case 0: #expect(response.status == 200 && response.bodyText == "0\n", "request \(i): \(response)")
            case 1: #expect(response.status == 404, "request \(i): \(response)")
            default: #expect(response.status == 202 && response.bodyText == #"{"room":"pipe","bytes":\#(i)}"#, "request \(i): \(response)")
            }
        }
        try await app.stop()
    }

    @Test func streamedUploadRoute() async throws {
        // A 64 KiB stream buffer: an 8 MiB upload must arrive in many parts, read as it comes.
        let app = try await RunningExample.start { configuration, logger, metrics in
            var configuration = configuration
            configuration.httpBodyStreamBufferBytes = 65_536
            configuration.http.maxBodyBytes = 16 << 20
            return makeChatApplication(configuration: configuration, logger: logger, metricsFactory: metrics)
        }
        let port = app.port
        let eight = 8 << 20
        let fixed = try await io {
            try TestClient(port: port, receiveTimeoutMilliseconds: 30_000).request("POST", "/uploads", body: [UInt8](repeating: 0x75, count: eight))
        }
        #expect(fixed.status == 200)
        #expect(fixed.header("Content-Type") == "application/json")
        let parts = Int(fixed.bodyText.split(separator: ":").last?.dropLast() ?? "") ?? 0
        #expect(fixed.bodyText == #"{"bytes":\#(eight),"parts":\#(parts)}"#, "\(fixed)")
        #expect(parts > 8, "streamed in parts, not one buffer: \(fixed.bodyText)")

        // Chunked (no declared length: always streamed), a request pipelined behind it, and a
        // small upload that goes the buffered way: answers in request order.
        var batch = Array("POST /uploads HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        for _ in 0..<3 { batch += Array("4000\r\n".utf8) + [UInt8](repeating: 0x63, count: 0x4000) + Array("\r\n".utf8) }
        batch += Array("0\r\n\r\n".utf8)
        batch += Array("GET /rooms/up/members HTTP/1.1\r\nHost: t\r\n\r\n".utf8)
        batch += Array("POST /uploads HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nsmall".utf8)
        let request = batch
        let http = try TestClient(port: port, receiveTimeoutMilliseconds: 10_000)
        let answers = try await io { try http.send(request); return try (0..<3).map { _ in try http.readResponse() } }
        #expect(answers[0].status == 200 && answers[0].bodyText.hasPrefix(#"{"bytes":49152,"parts":"#), "\(answers[0])")
        #expect(answers[1].status == 200 && answers[1].bodyText == "0\n", "\(answers[1])")
        #expect(answers[2].bodyText == #"{"bytes":5,"parts":1}"#, "\(answers[2])")

        // A chunked upload past http.max_body_bytes: 413 in its place, the connection closes.
        let tooBig = try await io {
            let c = try TestClient(port: port, receiveTimeoutMilliseconds: 10_000)
            var head = Array("POST /uploads HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            head += Array("1000001\r\n".utf8)  // one chunk of 16 MiB + 1
            try c.send(head)
            return try c.readResponse()
        }
        #expect(tooBig.status == 413)
        let streams = app.broker.metricsText().split(separator: "\n")
            .filter { $0.hasPrefix("switchboard_http_body_streams_total") }
            .compactMap { Int($0.split(separator: " ").last ?? "") }.reduce(0, +)
        #expect(streams == 3, "the 8 MiB, the chunked and the refused upload were streamed; the small one was not")
        try await app.stop()
    }

    @Test func brokerLogsAndCountsThroughTheApplication() async throws {
        let app = try await RunningExample.start()
        let http = try TestClient(port: app.port)
        let statuses = try await io { try (0..<4).map { _ in try http.request("GET", "/rooms/x/members").status } }
        #expect(statuses == [200, 200, 200, 200])
        // The app's logger got the broker's lines; its metrics backend the broker's counters.
        #expect(app.logs.all.contains { $0.contains("switchboard listening on 127.0.0.1:\(app.port) with 2 shards") })
        // The exporter reports every 10 s and once more when the group shuts down.
        try await app.stop()
        let total = (0..<2).compactMap { app.metrics.counter("switchboard_http_requests_total", [("shard", "\($0)")]) }.reduce(0, +)
        #expect(total == 4, "four requests exported to the app's swift-metrics backend")
    }

    @Test func gracefulShutdownOfTheWholeGroup() async throws {
        let app = try await RunningExample.start()
        let port = app.port
        let ws = try TestClient(port: port)
        #expect(try await io { try ws.upgrade(path: "/ws?room=bye&name=last") }.status == 101)
        try await app.stop()
        // The socket got a close frame (going away), then the connection closed; the port is shut.
        let close = try await io { try ws.readFrame() }
        #expect(close.opcode == 8)
        #expect(close.closeCode == 1001)
        #expect(try await io { ws.isClosedByServer() })
        #expect(throws: TestClient.Failure.self) { _ = try TestClient(port: port) }
        #expect(app.logs.all.contains { $0.contains("switchboard: stopped") })
    }
}
