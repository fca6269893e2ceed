import Switchboard
import Testing
#if canImport(Glibc)
import Glibc
#endif

func readText(_ path: String) -> String? {
    guard let f = fopen(path, "rb") else { return nil }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        bytes += buf[0..<n]
        if n < buf.count { break }
    }
    return String(decoding: bytes, as: UTF8.self)
}

@Suite("Configuration file")
struct ConfigurationTests {
    @Test func parsesEveryKeyOfTheExample() throws {
        var c = BrokerConfiguration()
        try c.apply(configurationText: """
        # comment
        host = 127.0.0.1
        port = 4000   # trailing comment
        io_backend = epoll
        shards = 3
        max_body_bytes = 2048
        health_path = "/healthz"
        send_date_header = false
        """)
        #expect(c.host == "127.0.0.1")
        #expect(c.port == 4000)
        #expect(c.io.backend == .epoll)
        #expect(c.io.shardCount == 3)
        #expect(c.http.maxBodyBytes == 2048)
        #expect(c.healthPath == "/healthz")
        #expect(c.sendDateHeader == false)
    }

    @Test func everyDocumentedKeyRoundTrips() throws {
        let defaults = BrokerConfiguration()
        for (key, _) in BrokerConfiguration.keys {
            var c = BrokerConfiguration()
            var value = try #require(defaults.value(forKey: key), "\(key) has no value")
            if value.hasPrefix("\"") { value = String(value.dropFirst().dropLast()) }
            try c.set(key, value)
            #expect(c.value(forKey: key) == defaults.value(forKey: key), "\(key)")
        }
        var c = BrokerConfiguration()
        try c.set("ws_allowed_origins", "https://a.example, https://b.example")
        #expect(c.webSocket.allowedOrigins == ["https://a.example", "https://b.example"])
        try c.set("websocket_paths", "/ws,/chat")
        #expect(c.webSocket.paths == ["/ws", "/chat"])
        try c.set("ws_slow_consumer", "drop")
        #expect(c.webSocket.slowConsumerPolicy == .drop)
        try c.set("tls_record_layer", "openssl")
        #expect(c.tls.recordLayer == .openssl)
    }

    // The example file's test moved to Tests/SwitchboardEcosystemTests/ConfigurationLayeringTests.swift:
    // the file now composes the core's section with the connection-broker protocol's.

    @Test func errorsNameTheLine() {
        var c = BrokerConfiguration()
        #expect(throws: ConfigurationError(line: 2, message: "unknown option 'nope'")) {
            try c.apply(configurationText: "port = 1\nnope = 2\n")
        }
        #expect(throws: ConfigurationError(line: 1, message: "port: 'abc' is not an integer")) {
            try c.apply(configurationText: "port = abc")
        }
        #expect(throws: ConfigurationError(line: 1, message: "expected key = value")) {
            try c.apply(configurationText: "port 3004")
        }
        #expect(throws: ConfigurationError(line: 1, message: "io_backend: 'kqueue' is not auto, uring or epoll")) {
            try c.apply(configurationText: "io_backend = kqueue")
        }
        #expect(throws: ConfigurationError(line: 1, message: "tls_record_layer: 'boringssl' is not switchboard or openssl")) {
            try c.apply(configurationText: "tls_record_layer = boringssl")
        }
        #expect(throws: ConfigurationError(line: 1, message: "cross_shard_hold_deliveries: 'maybe' is not true or false")) {
            try c.apply(configurationText: "cross_shard_hold_deliveries = maybe")
        }
        #expect(throws: ConfigurationError(line: 1, message: "cluster_cleanup_batch_entries: 'many' is not an integer")) {
            try c.apply(configurationText: "cluster_cleanup_batch_entries = many")
        }
    }

    @Test func validationCatchesBadLimits() {
        var c = BrokerConfiguration()
        c.io.recvBufferCount = 1000
        #expect(c.validate() != nil)
        c = BrokerConfiguration()
        c.port = 70000
        #expect(c.validate() != nil)
        #expect(BrokerConfiguration().validate() == nil)
    }

    @Test("the input backlog holds at least one read: an epoll read (256 KiB) and an io_uring buffer")
    func backlogHoldsOneRead() {
        var c = BrokerConfiguration()
        c.webSocket.maxInputBacklogBytes = c.io.epollReadBytes - 1
        #expect(c.validate() == "ws_max_input_backlog_bytes must be >= recv_buffer_bytes and epoll_read_bytes (one read)")
        c.io.epollReadBytes = 16 << 10
        #expect(c.validate() == nil)
        c.io.recvBufferBytes = 1 << 20
        #expect(c.validate() != nil)
        c.webSocket.maxInputBacklogBytes = 1 << 20
        #expect(c.validate() == nil)
    }
}
