import Switchboard
import Testing

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

    @Test func everyDocumentedKeyIsAccepted() throws {
        for (key, _) in BrokerConfiguration.keys {
            var c = BrokerConfiguration()
            let value: String
            switch key {
            case "host": value = "127.0.0.1"
            case "io_backend": value = "uring"
            case "pin_threads", "send_date_header": value = "true"
            case "health_path", "metrics_path": value = "/x"
            case "recv_buffer_count": value = "512"
            default: value = "4096"
            }
            try c.set(key, value)
        }
    }

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
}
