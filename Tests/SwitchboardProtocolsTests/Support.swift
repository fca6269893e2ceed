import Foundation
import Switchboard
import SwitchboardProtocols
import SwitchboardTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A real broker running the connection-broker protocol on 127.0.0.1, ephemeral port.
final class CBServer: @unchecked Sendable {
    let broker: Broker
    let cb: ConnectionBroker
    var port: Int { broker.port }
    /// Every broker message id seen by any client of this server (must never repeat).
    private let seen = Mutex<Set<Int>>([])

    init(shards: Int = 2, options: ConnectionBrokerOptions = ConnectionBrokerOptions(),
         configure: (inout BrokerConfiguration) -> Void = { _ in }) throws {
        raiseFileLimit()
        var c = BrokerConfiguration()
        c.host = "127.0.0.1"
        c.port = 0
        c.io.shardCount = shards
        c.io.recvBufferCount = 256
        c.io.tickMilliseconds = 10
        c.sendDateHeader = false
        c.webSocket.perMessageDeflate = false
        configure(&c)
        let cb = ConnectionBroker(options: options)
        self.cb = cb
        broker = Broker(configuration: c, logger: .discarding, handlerFactory: cb.handlerFactory())
        try broker.start()
    }

    func stop() { broker.shutdown(graceMilliseconds: 1000) }

    func client(timeoutMilliseconds: Int = 5000) throws -> CBClient {
        let c = try TestClient(port: port, receiveTimeoutMilliseconds: timeoutMilliseconds)
        let r = try c.upgrade()
        #expect(r.status == 101)
        return CBClient(c, server: self)
    }

    /// A client registered with `role`.
    func registered(_ role: String) throws -> CBClient {
        let c = try client()
        try c.register(role)
        return c
    }

    func record(_ id: Int) -> Bool {
        seen.withLock { $0.insert(id).inserted }
    }

    func shard(of client: CBClient) -> Int? {
        guard let id = client.connectionId else { return nil }
        return cb.shard(ofConnectionId: id)
    }
}

typealias JSON = [String: Any]

/// Used by one thread at a time.
final class CBClient: @unchecked Sendable {
    let socket: TestClient
    unowned let server: CBServer
    var nextId = 1
    var connectionId: String?

    init(_ socket: TestClient, server: CBServer) {
        self.socket = socket
        self.server = server
    }

    func sendRaw(_ text: String) throws { try socket.sendText(text) }

    /// Sends `{"type":T,"id":N,<fields>}` and returns N.
    @discardableResult
    func request(_ type: String, _ fields: String = "") throws -> Int {
        let id = nextId
        nextId += 1
        try sendRaw("{\"type\":\"\(type)\",\"id\":\(id)\(fields.isEmpty ? "" : "," + fields)}")
        return id
    }

    /// The next text frame (pings skipped).
    func readText() throws -> String {
        while true {
            let f = try socket.readFrame()
            if f.opcode == 9 || f.opcode == 10 { continue }
            #expect(f.opcode == 1, "expected a text frame, got \(f)")
            return f.text
        }
    }

    func read() throws -> JSON {
        let text = try readText()
        guard let obj = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) as? JSON else {
            Issue.record("not a JSON object: \(text)")
            return [:]
        }
        return obj
    }

    /// Reads one message and checks it exactly: its type, a fresh positive `id`, `replyTo`
    /// (absent when nil), and precisely these other string fields (nil value: present, any string).
    @discardableResult
    func expect(_ type: String, replyTo: Int?, _ fields: [String: String?] = [:],
                sourceLocation: SourceLocation = #_sourceLocation) throws -> JSON {
        let m = try read()
        check(m, type, replyTo: replyTo, fields, sourceLocation: sourceLocation)
        return m
    }

    func check(_ m: JSON, _ type: String, replyTo: Int?, _ fields: [String: String?] = [:],
               extraKeys: Set<String> = [], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(m["type"] as? String == type, "\(m)", sourceLocation: sourceLocation)
        var keys: Set<String> = ["type", "id"]
        if let replyTo {
            keys.insert("replyTo")
            #expect(m["replyTo"] as? Int == replyTo, "\(m)", sourceLocation: sourceLocation)
        }
        keys.formUnion(fields.keys)
        keys.formUnion(extraKeys)
        #expect(Set(m.keys) == keys, "\(m)", sourceLocation: sourceLocation)
        if let id = m["id"] as? Int {
            #expect(id > 0, sourceLocation: sourceLocation)
            #expect(server.record(id), "duplicate id \(id)", sourceLocation: sourceLocation)
        } else {
            Issue.record("no integer id in \(m)", sourceLocation: sourceLocation)
        }
        for (k, v) in fields {
            #expect(m[k] is String, "\(k) in \(m)", sourceLocation: sourceLocation)
            if let v { #expect(m[k] as? String == v, "\(k) in \(m)", sourceLocation: sourceLocation) }
        }
    }

    /// Failure reply: `<type>` with `error` (plus echoed fields).
    func expectFailure(_ type: String, replyTo: Int?, _ error: String, _ fields: [String: String?] = [:],
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        var f = fields
        f["error"] = error
        try expect(type, replyTo: replyTo, f, sourceLocation: sourceLocation)
    }

    func register(_ role: String) throws {
        let id = try request("register", "\"role\":\(jsonString(role))")
        let m = try expect("registered", replyTo: id, ["connectionId": nil])
        connectionId = m["connectionId"] as? String
        #expect(isUUIDv4(connectionId ?? ""))
    }

    func list(_ role: String) throws -> [String] {
        let id = try request("list_by_role", "\"role\":\(jsonString(role))")
        let m = try read()
        check(m, "connections", replyTo: id, extraKeys: ["ids"])
        return m["ids"] as? [String] ?? ["<not a string array>"]
    }

    /// Opens a channel to `target` and returns its id; `target` gets incoming_channel.
    func open(to target: CBClient) throws -> String {
        let t = target.connectionId!
        let id = try request("open", "\"targetId\":\"\(t)\"")
        let m = try expect("channel_opened", replyTo: id, ["channelId": nil, "targetId": t])
        let channel = m["channelId"] as! String
        #expect(isUUIDv4(channel))
        try target.expect("incoming_channel", replyTo: nil, ["from": connectionId!, "channelId": channel])
        return channel
    }

    /// True when nothing arrives within `milliseconds`.
    func receivesNothing(milliseconds: Int = 200) -> Bool {
        socket.setReceiveTimeout(milliseconds: milliseconds)
        defer { socket.setReceiveTimeout(milliseconds: 5000) }
        do {
            let f = try socket.readFrame()
            Issue.record("unexpected frame: \(f.text)")
            return false
        } catch {
            return true
        }
    }
}

func jsonString(_ s: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: [s], options: [])
    let text = String(decoding: data, as: UTF8.self)
    return String(text.dropFirst().dropLast())
}

func isUUIDv4(_ s: String) -> Bool {
    let u = Array(s.utf8)
    guard u.count == 36 else { return false }
    for (i, c) in u.enumerated() {
        if [8, 13, 18, 23].contains(i) {
            if c != UInt8(ascii: "-") { return false }
        } else if !((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)) {
            return false
        }
    }
    return u[14] == UInt8(ascii: "4") && [UInt8(ascii: "8"), UInt8(ascii: "9"), UInt8(ascii: "a"), UInt8(ascii: "b")].contains(u[19])
}
