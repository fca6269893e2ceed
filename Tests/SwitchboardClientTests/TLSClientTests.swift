import Switchboard
import SwitchboardClient
import SwitchboardIO
import SwitchboardProtocols
import SwitchboardTestSupport
import Testing

func startTLSConnectionBroker(_ backend: IOBackendKind, _ files: TLSFiles) throws -> (Broker, ConnectionBroker) {
    raiseFileLimit()
    var c = BrokerConfiguration()
    c.host = "127.0.0.1"
    c.port = 0
    c.io.backend = backend
    c.io.shardCount = 2
    c.io.recvBufferCount = 256
    c.tls = TLSConfiguration(port: 0, certificate: .init(chainPath: files.chain, privateKeyPath: files.key))
    let cb = ConnectionBroker()
    let broker = Broker(configuration: c, logger: .discarding, handlerFactory: cb.handlerFactory())
    try broker.start()
    return (broker, cb)
}

@Suite("SDK over wss:// against Switchboard's TLS listener", .serialized)
struct TLSClientTests {
    @Test("two clients exchange confirmed messages over wss:// (custom CA, host name checked)", arguments: [IOBackendKind.uring, .epoll])
    func wss(backend: IOBackendKind) async throws {
        let files = try TLSFiles()
        let (broker, _) = try startTLSConnectionBroker(backend, files)
        defer { broker.shutdown(graceMilliseconds: 1000) }
        var options = BrokerClientOptions()
        options.tlsCAFile = files.ca
        let url = "wss://localhost:\(broker.tlsPort)/"
        let a = BrokerClient(url: url, options: options), b = BrokerClient(url: url, options: options)
        try await a.connect(role: "alpha")
        try await b.connect(role: "beta")
        let bID = try #require(b.myId)
        let atB = Inbox()
        b.onIncomingChannel = { channel in channel.onMessage = { atB.add($0) } }
        let channel = try await a.openChannel(bID)
        let big = String(repeating: "x", count: 100_000)  // several TLS records
        for i in 0..<50 { try await channel.send(["n": .number(Double(i)), "big": .string(i == 0 ? big : "")]) }
        #expect(await eventuallyTrue { atB.values.count == 50 })
        #expect(atB.values.first?["big"] == .string(big))
        await a.disconnect()
        await b.disconnect()
        #expect(broker.metricSamples().filter { $0.name == "switchboard_tls_handshakes_total" }.reduce(0) { $0 + $1.value } >= 2)
    }

    @Test("verification is on by default: a private CA not given is refused, and so is a name the certificate lacks")
    func verification() async throws {
        let files = try TLSFiles()
        // The server's certificate names other.test (and 127.0.0.1), not localhost.
        try files.issue(name: "server", host: "other.test", serial: 5)
        let (broker, _) = try startTLSConnectionBroker(.epoll, files)
        defer { broker.shutdown(graceMilliseconds: 1000) }
        let client = BrokerClient(url: "wss://localhost:\(broker.tlsPort)/")
        do {
            try await client.connect(role: "x")
            Issue.record("connected to a server whose CA is not trusted")
        } catch {
            #expect("\(error)".contains("certificate verification failed"), "\(error)")
        }
        var options = BrokerClientOptions()
        options.tlsCAFile = files.ca
        let wrongName = BrokerClient(url: "wss://localhost:\(broker.tlsPort)/", options: options)
        do {
            try await wrongName.connect(role: "x")
            Issue.record("connected although the certificate does not name localhost")
        } catch {
            #expect("\(error)".contains("certificate verification failed"), "\(error)")
        }
        // The same CA and a name the certificate carries: accepted.
        let right = BrokerClient(url: "wss://127.0.0.1:\(broker.tlsPort)/", options: options)
        try await right.connect(role: "x")
        #expect(right.isConnected)
        await right.disconnect()
    }
}
