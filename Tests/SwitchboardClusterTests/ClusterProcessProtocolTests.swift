import Foundation  // JSONSerialization
import SwitchboardRESP
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The protocols across nodes with three OS processes of the real server binaries over one
/// real redis-server (issue 13, "What works across nodes"): the connection broker and the
/// broadcaster on `switchboard`, RPC and the broker API on `switchboard-cluster-testnode`
/// (Tests/switchboard-cluster-testnode: no shipped binary exposes them). Nodes 1 and 3 run
/// on io_uring, node 2 on epoll, two shards each. The in-process versions
/// (`ClusterConnectionBrokerTests`, `ClusterBroadcasterTests`, `ClusterRPCTests`) check the
/// finer cases; these check that the same traffic works between processes.
@Suite("Cluster: the protocols across three processes", .serialized)
struct ClusterProcessProtocolTests {
    // MARK: - Connection broker

    /// A connection-broker client whose every message is checked byte for byte (all but `id`).
    final class CBClient {
        let socket: TestClient
        private var nextRequestId = 1
        var connectionId = ""

        init(_ node: NodeProcess) throws {
            socket = try TestClient(port: node.port, receiveTimeoutMilliseconds: 30_000)
            #expect(try socket.upgrade().status == 101)
        }

        @discardableResult
        func request(_ type: String, _ fields: String = "") throws -> Int {
            let id = nextRequestId
            nextRequestId += 1
            try socket.sendText(#"{"type":"\#(type)","id":\#(id)\#(fields.isEmpty ? "" : "," + fields)}"#)
            return id
        }

        /// The next message, whole, without its `id`.
        func next(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
            withoutMessageID(try readJSONObject(socket, sourceLocation: sourceLocation).text)
        }

        func expect(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            #expect(try next(sourceLocation: sourceLocation) == text, sourceLocation: sourceLocation)
        }

        func register(_ role: String) throws {
            let id = try request("register", #""role":"\#(role)""#)
            let reply = try next()
            let prefix = #"{"type":"registered","replyTo":\#(id),"connectionId":""#
            #expect(reply.hasPrefix(prefix) && reply.hasSuffix(#""}"#), "\(reply)")
            connectionId = String(reply.dropFirst(prefix.count).dropLast(2))
            #expect(connectionId.count == 36, "a UUID: \(connectionId)")
        }

        func list(_ role: String) throws -> String {
            let id = try request("list_by_role", #""role":"\#(role)""#)
            return try next().replacingOccurrences(of: #"{"type":"connections","replyTo":\#(id),"#, with: "")
        }
    }

    @Test("connection broker: register, list_by_role in registration order, open/message/close and disconnects between processes; the peer's message before the requester's reply")
    func connectionBroker() throws {
        let cluster = try ProcessCluster("switchboard")
        defer { cluster.stop() }
        #expect(cluster.ready(), "three members, three inboxes")
        let nodes = cluster.nodes

        // Registration order across processes: each register answered before the next is sent.
        var workers: [CBClient] = []
        for n in [0, 1, 2, 0, 1] {
            let c = try CBClient(nodes[n])
            try c.register("worker")
            workers.append(c)
        }
        #expect(workers.map { String($0.connectionId.prefix(2)) } == ["01", "02", "03", "01", "02"], "ids carry their node")
        let listed = #""ids":[\#(workers.map { "\"\($0.connectionId)\"" }.joined(separator: ","))]}"#
        for node in nodes {
            let lister = try CBClient(node)  // the reference profile lists before register
            #expect(try lister.list("worker") == listed, "the same order from every node")
        }

        // open from node 1 to node 2: the target hears incoming_channel, the opener its answer.
        let (a, b, c) = (workers[0], workers[1], workers[2])
        let open = try a.request("open", #""targetId":"\#(b.connectionId)""#)
        let opened = try a.next()
        let openedPrefix = #"{"type":"channel_opened","replyTo":\#(open),"channelId":""#
        #expect(opened.hasPrefix(openedPrefix), "\(opened)")
        let ab = String(opened.dropFirst(openedPrefix.count).prefix(36))
        #expect(opened == openedPrefix + ab + #"","targetId":"\#(b.connectionId)"}"#)
        try b.expect(#"{"type":"incoming_channel","from":"\#(a.connectionId)","channelId":"\#(ab)"}"#)

        // One message at a time, both ways: the peer's channel_message is queued on its node
        // before the requester's channel_message_sent leaves the other (the reference's order),
        // so once the requester has its reply the peer's message is already on its socket.
        for i in 0..<5 {
            let payload = #"{"n":\#(i),"s":"ünï \"q\""}"#
            let sent = try a.request("message", #""channelId":"\#(ab)","payload":\#(payload)"#)
            try a.expect(#"{"type":"channel_message_sent","replyTo":\#(sent),"channelId":"\#(ab)"}"#)
            #expect(readableNow(b.socket), "the peer's message came first (message \(i))")
            try b.expect(#"{"type":"channel_message","channelId":"\#(ab)","payload":\#(payload)}"#)
            let back = try b.request("message", #""channelId":"\#(ab)","payload":[\#(i),null]"#)
            try b.expect(#"{"type":"channel_message_sent","replyTo":\#(back),"channelId":"\#(ab)"}"#)
            #expect(readableNow(a.socket), "the peer's message came first (answer \(i))")
            try a.expect(#"{"type":"channel_message","channelId":"\#(ab)","payload":[\#(i),null]}"#)
        }
        // A burst: per channel and direction, in send order; replies in request order.
        let burst = try (0..<50).map { i in try a.request("message", #""channelId":"\#(ab)","payload":\#(i)"#) }
        for i in 0..<50 { try b.expect(#"{"type":"channel_message","channelId":"\#(ab)","payload":\#(i)}"#) }
        for id in burst { try a.expect(#"{"type":"channel_message_sent","replyTo":\#(id),"channelId":"\#(ab)"}"#) }

        // close: the closer's earlier messages, then the notification, which is on the peer's
        // socket by the time the closer has its channel_closed.
        let last = try a.request("message", #""channelId":"\#(ab)","payload":"last""#)
        try a.expect(#"{"type":"channel_message_sent","replyTo":\#(last),"channelId":"\#(ab)"}"#)
        let close = try a.request("close", #""channelId":"\#(ab)""#)
        try a.expect(#"{"type":"channel_closed","replyTo":\#(close),"channelId":"\#(ab)"}"#)
        #expect(readableNow(b.socket), "the peer's notification came first")
        try b.expect(#"{"type":"channel_message","channelId":"\#(ab)","payload":"last"}"#)
        try b.expect(#"{"type":"channel_closed_notification","channelId":"\#(ab)"}"#)
        let stale = try a.request("message", #""channelId":"\#(ab)","payload":1"#)
        try a.expect(#"{"type":"error","error":"Channel not found","replyTo":\#(stale)}"#)

        // A disconnect on node 3: the peer on node 1 is notified, and a list_by_role made after
        // the notification (on any node) no longer has the connection.
        let open2 = try c.request("open", #""targetId":"\#(a.connectionId)""#)
        let opened2 = try c.next()
        let ca = String(opened2.dropFirst(#"{"type":"channel_opened","replyTo":\#(open2),"channelId":""#.count).prefix(36))
        try a.expect(#"{"type":"incoming_channel","from":"\#(c.connectionId)","channelId":"\#(ca)"}"#)
        try c.socket.sendFrame(opcode: 8, payload: [0x03, 0xE8])
        try a.expect(#"{"type":"channel_closed_notification","channelId":"\#(ca)"}"#)
        let remaining = [workers[0], workers[1], workers[3], workers[4]]
        let listedAfter = #""ids":[\#(remaining.map { "\"\($0.connectionId)\"" }.joined(separator: ","))]}"#
        #expect(try a.list("worker") == listedAfter)
        #expect(try workers[4].list("worker") == listedAfter, "from node 2 too")
        for node in nodes { #expect(try node.metric("switchboard_cb_cross_node_lost_total") == 0) }
        #expect(try nodes[1].metric("switchboard_cluster_addressed_received_total") >= 56, "node 2's inbox carried a's messages")
    }

    // MARK: - Broadcaster

    static let secret = "process-cluster-secret-0123456789abcdef"

    final class BroadcastClient {
        let socket: TestClient
        private var nextRequestId = 1
        init(_ node: NodeProcess, channels: [String]) throws {
            socket = try TestClient(port: node.port, receiveTimeoutMilliseconds: 30_000)
            #expect(try socket.upgrade(path: "/broadcaster/websocket").status == 101)
            let id = try call("auth", #"{"token":"\#(broadcasterToken(secret: ClusterProcessProtocolTests.secret, sub: "u1", channels: channels))"}"#)
            #expect(try readJSONObject(socket).text == #"{"requestId":\#(id),"result":{"success":true}}"#)
        }

        func call(_ method: String, _ params: String) throws -> Int {
            let id = nextRequestId
            nextRequestId += 1
            try socket.sendText(#"{"id":\#(id),"method":"\#(method)","params":\#(params)}"#)
            return id
        }

        /// The result of request `id` (the next message), checked to be one.
        func result(_ id: Int, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
            let (text, object) = try readJSONObject(socket, sourceLocation: sourceLocation)
            #expect(object["requestId"] as? Int == id && object["error"] == nil, "\(text)", sourceLocation: sourceLocation)
            return object["result"] as? [String: Any] ?? [:]
        }

        /// The next broadcast's params: exactly the documented fields.
        func broadcast(sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
            let (text, object) = try readJSONObject(socket, sourceLocation: sourceLocation)
            #expect(object["method"] as? String == "broadcast" && Set(object.keys) == ["method", "params"], "\(text)", sourceLocation: sourceLocation)
            let params = object["params"] as? [String: Any] ?? [:]
            #expect(Set(params.keys) == ["id", "seq", "createTime", "channel", "event", "payload", "offset", "epoch"], "\(text)",
                    sourceLocation: sourceLocation)
            return params
        }
    }

    func restPublish(_ node: NodeProcess, _ body: String) throws -> (status: Int, object: [String: Any]) {
        let c = try TestClient(port: node.port, receiveTimeoutMilliseconds: 30_000)
        try c.send("POST /broadcaster/publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer test-key\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        let response = try c.readResponse()
        let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
        return (response.status, object)
    }

    @Test("broadcaster: a REST publish on A reaches WebSocket subscribers on B and C with the same offsets; a client reconnecting to another node recovers from its last offset")
    func broadcaster() throws {
        let cluster = try ProcessCluster("switchboard", settings: [
            "broadcaster_enabled=true", "broadcaster_jwt_secret=\(Self.secret)", "broadcaster_api_keys=test-key",
            "broadcaster_history=room|10|1048576|600000",
        ])
        defer { cluster.stop() }
        #expect(cluster.ready())
        let nodes = cluster.nodes
        let probe = try RedisProbe(port: cluster.redis.port)
        #expect(waitUntil(timeoutMilliseconds: 30_000) { (try? probe.subscriberCount("switchboard:node:all")) == 3 }, "every node's shard 0 holds the all-nodes inbox")

        let subscribers = try [nodes[1], nodes[2], nodes[1]].map { try BroadcastClient($0, channels: ["room"]) }
        for s in subscribers {
            let id = try s.call("subscribe", #"{"channel":"room"}"#)
            let result = try s.result(id)
            #expect(Set(result.keys) == ["subscriptionId", "timestamp"], "\(result)")
        }

        // Three REST publishes on node A (no subscriber there): every subscriber on B and C gets
        // them in order, with the offsets and the epoch the publisher was answered.
        var answered: [(offset: Int, epoch: String)] = []
        for n in 1...3 {
            let (status, object) = try restPublish(nodes[0], #"{"channel":"room","event":"e","payload":{"n":\#(n)}}"#)
            #expect(status == 200 && object["channel"] as? String == "room" && object["seq"] as? Int == 0, "\(object)")
            answered.append((object["offset"] as? Int ?? -1, object["epoch"] as? String ?? ""))
        }
        #expect(answered.map(\.offset) == [1, 2, 3] && Set(answered.map(\.epoch)).count == 1 && answered[0].epoch != "", "\(answered)")
        let epoch = answered[0].epoch
        for s in subscribers {
            for n in 1...3 {
                let b = try s.broadcast()
                #expect(b["offset"] as? Int == n && b["epoch"] as? String == epoch && b["seq"] as? Int == n, "\(b)")
                #expect(b["channel"] as? String == "room" && b["event"] as? String == "e" && (b["payload"] as? [String: Any])?["n"] as? Int == n, "\(b)")
            }
        }

        // The client on B that saw offset 3 goes away; two more are published (on C); it comes
        // back on node A with `since` = its last position: recovered, then 4 and 5, then live.
        try subscribers[0].socket.sendFrame(opcode: 8, payload: [0x03, 0xE8])
        for n in 4...5 {
            #expect(try restPublish(nodes[2], #"{"channel":"room","event":"e","payload":{"n":\#(n)}}"#).status == 200)
        }
        let moved = try BroadcastClient(nodes[0], channels: ["room"])
        let id = try moved.call("subscribe", #"{"channel":"room","since":{"offset":3,"epoch":"\#(epoch)"}}"#)
        let recovered = try moved.result(id)
        #expect(recovered["recovered"] as? Bool == true && recovered["offset"] as? Int == 5 && recovered["epoch"] as? String == epoch, "\(recovered)")
        for n in 4...5 {
            let b = try moved.broadcast()
            #expect(b["offset"] as? Int == n && (b["payload"] as? [String: Any])?["n"] as? Int == n && b["epoch"] as? String == epoch, "\(b)")
        }
        #expect(try restPublish(nodes[1], #"{"channel":"room","event":"e","payload":{"n":6}}"#).status == 200)
        #expect(try moved.broadcast()["offset"] as? Int == 6, "live after the recovered ones, no gap")
        for s in subscribers[1...] {
            for n in 4...6 { #expect(try s.broadcast()["offset"] as? Int == n) }
        }
        // Too far back (the history keeps 10): recovered false, the current offset.
        for n in 7...20 {
            #expect(try restPublish(nodes[0], #"{"channel":"room","event":"e","payload":{"n":\#(n)}}"#).status == 200)
        }
        let late = try BroadcastClient(nodes[2], channels: ["room"])
        let lateID = try late.call("subscribe", #"{"channel":"room","since":{"offset":2,"epoch":"\#(epoch)"}}"#)
        let lateResult = try late.result(lateID)
        #expect(lateResult["recovered"] as? Bool == false && lateResult["offset"] as? Int == 20, "\(lateResult)")
    }

    // MARK: - RPC

    static let disconnected = #""errorType":"protocol","errorSubtype":null,"message":"Node disconnected","data":{"reason":"disconnected"},"type":"error""#

    @Test("RPC: client, server and remote-client requests between nodes on different processes")
    func rpc() throws {
        let cluster = try ProcessCluster("switchboard-cluster-testnode")
        defer { cluster.stop() }
        #expect(cluster.ready())
        let nodes = cluster.nodes
        let alpha = try RawRPCClient(port: nodes[0].port, id: "alpha")
        let beta = try RawRPCClient(port: nodes[1].port, id: "beta")
        let gamma = try RawRPCClient(port: nodes[2].port, id: "gamma")
        let probe = try RedisProbe(port: cluster.redis.port)
        for name in ["alpha", "beta", "gamma"] {
            #expect(waitUntil(timeoutMilliseconds: 30_000) { (try? probe.call(["SCARD", "switchboard:{rpc}:id:\(name)"])) == .integer(1) },
                    "\(name) in the cluster directory")
        }

        // Client request (alpha's client -> its node 1) that makes a server request to beta on
        // node 2, and back: the answer names both ends.
        let c1 = try alpha.request("call", #"["beta","echo",7,{"k":"v"}]"#)
        #expect(try alpha.read().text == #"{"type":"response","correlationId":"\#(c1)","result":{"from":"alpha","to":"beta","args":[7,{"k":"v"}]}}"#)
        let c2 = try gamma.request("call", #"["alpha","echo","x"]"#)
        #expect(try gamma.read().text == #"{"type":"response","correlationId":"\#(c2)","result":{"from":"gamma","to":"alpha","args":["x"]}}"#)

        // Remote client request: beta (node 2) -> gamma's node (node 3), whose remote-client
        // handler appends a tag, -> gamma's client, whose answer goes back to beta.
        let c3 = try beta.request("relay", #"["gamma","tagged","y"]"#)
        let toGamma = try gamma.read()
        #expect(toGamma.object["type"] as? String == "request" && toGamma.object["name"] as? String == "tagged", "\(toGamma.text)")
        #expect(toGamma.object["args"] as? [String] == ["y", "tag:gamma"], "\(toGamma.text)")
        let gammaCorrelation = try #require(toGamma.object["correlationId"] as? String)
        #expect(toGamma.text == #"{"type":"request","name":"tagged","args":["y","tag:gamma"],"correlationId":"\#(gammaCorrelation)"}"#)
        try gamma.socket.sendText(#"{"type":"response","correlationId":"\#(gammaCorrelation)","result":{"answered":"by gamma"}}"#)
        #expect(try beta.read().text == #"{"type":"response","correlationId":"\#(c3)","result":{"answered":"by gamma"}}"#)
        // The far client's error comes back too.
        let c4 = try alpha.request("relay", #"["beta","tagged"]"#)
        let toBeta = try beta.read()
        let betaCorrelation = try #require(toBeta.object["correlationId"] as? String)
        try beta.socket.sendText(#"{"errorType":"endpoint","errorSubtype":null,"message":"no","data":{"x":1},"type":"error","correlationId":"\#(betaCorrelation)"}"#)
        #expect(try alpha.read().text == #"{"errorType":"endpoint","errorSubtype":null,"message":"no","data":{"x":1},"type":"error","correlationId":"\#(c4)"}"#)

        // Errors across processes: unhandled on the target node; an id no process holds.
        let c5 = try alpha.request("call", #"["gamma","nothing"]"#)
        #expect(try alpha.read().text == #"{"errorType":"protocol","errorSubtype":"unhandled","message":"No handler found for request 'nothing'","data":{"requestName":"nothing"},"type":"error","correlationId":"\#(c5)"}"#)
        let c6 = try alpha.request("call", #"["nobody","echo"]"#)
        #expect(try alpha.read().text == "{" + Self.disconnected + #","correlationId":"\#(c6)"}"#)

        // 30 requests in flight from node 2 to node 1: each answer reaches its own request.
        let pipelined = try (0..<30).map { i in try beta.request("call", #"["alpha","echo",\#(i)]"#) }
        var answers: [String: String] = [:]
        for _ in pipelined {
            let m = try beta.read()
            answers[m.object["correlationId"] as? String ?? "?"] = m.text
        }
        for (i, correlation) in pipelined.enumerated() {
            #expect(answers[correlation] == #"{"type":"response","correlationId":"\#(correlation)","result":{"from":"beta","to":"alpha","args":[\#(i)]}}"#)
        }
        #expect(try nodes[0].metric("switchboard_cluster_addressed_received_total") >= 30)
    }

    // MARK: - Broker API

    /// A `/api` socket of the test node and its id.
    final class APIClient {
        let socket: TestClient
        let id: UInt64
        init(_ node: NodeProcess) throws {
            socket = try TestClient(port: node.port, receiveTimeoutMilliseconds: 30_000)
            #expect(try socket.upgrade(path: "/api").status == 101)
            try socket.sendText("whoami")
            let answer = try socket.readFrame().text
            id = try #require(UInt64(answer.dropFirst("id:".count)), "\(answer)")
        }
        func send(_ text: String) throws { try socket.sendText(text) }
        func next() throws -> String {
            let frame = try socket.readFrame()
            #expect(frame.opcode == 1, "a text frame: \(frame)")
            return frame.text
        }
    }

    @Test("broker API: publish (sendToChannel), send, close and setToken to a socket of another process, copySubscriptions on every node")
    func brokerAPI() throws {
        let cluster = try ProcessCluster("switchboard-cluster-testnode")
        defer { cluster.stop() }
        #expect(cluster.ready())
        let nodes = cluster.nodes
        let probe = try RedisProbe(port: cluster.redis.port)
        // Node 2 has two sockets, one per shard (fewest connections first).
        let a = try APIClient(nodes[0]), b = try APIClient(nodes[1]), b2 = try APIClient(nodes[1]), c = try APIClient(nodes[2])
        #expect([a, b, b2, c].map { $0.id >> 56 } == [1, 2, 2, 3], "socket ids carry their node")
        #expect(Set([b, b2].map { ($0.id >> 48) & 0xFF }) == [0, 1], "one socket on each shard of node 2")

        // publish: subscribers on three processes, two publishers: one order everywhere.
        for s in [a, b, b2, c] {
            try s.send("sub:news")
            #expect(try s.next() == "subscribed:news")
        }
        #expect(waitUntil(timeoutMilliseconds: 30_000) { (try? probe.subscriberCount("switchboard:ch:news")) == 4 }, "four shards subscribed in Redis")
        for i in 0..<20 {
            try a.send("pub:news:a\(i)")
            try c.send("pub:news:c\(i)")
        }
        var sequences: [[String]] = []
        for s in [a, b, b2, c] { sequences.append(try (0..<40).map { _ in try s.next() }) }
        for s in sequences { #expect(s == sequences[0], "one order on every socket of every process") }
        #expect(sequences[0].filter { $0.hasPrefix("a") } == (0..<20).map { "a\($0)" }, "a publisher's order kept")
        #expect(sequences[0].filter { $0.hasPrefix("c") } == (0..<20).map { "c\($0)" })

        // send to sockets of other processes (both shards of node 2), in order.
        for target in [b, b2] {
            for i in 0..<20 { try a.send("to:\(target.id):m\(i)") }
            for i in 0..<20 { #expect(try target.next() == "m\(i)") }
        }
        try c.send("to:\(a.id):back from 3")
        #expect(try a.next() == "back from 3")

        // setToken across processes: set, then a send on the same path (one sending shard, one
        // Redis connection, one inbox, one target shard), so the token is in place when the
        // send arrives; the socket's next message carries it.
        try a.send("token:\(c.id):tüken-1")
        try a.send("to:\(c.id):after token")
        #expect(try c.next() == "after token")
        try c.send("mytoken")
        #expect(try c.next() == "token:tüken-1")
        try b.send("untoken:\(c.id)")
        try b.send("to:\(c.id):after untoken")
        #expect(try c.next() == "after untoken")
        try c.send("mytoken")
        #expect(try c.next() == "token:none")

        // copySubscriptions from node 3: the subscribers of news on every node join digest.
        try c.send("copy:news:digest")
        #expect(waitUntil(timeoutMilliseconds: 30_000) { (try? probe.subscriberCount("switchboard:ch:digest")) == 4 }, "copied on every node")
        try b.send("pub:digest:copied")
        for s in [a, b, b2, c] { #expect(try s.next() == "copied") }

        // close a socket of another process: the close frame with the code and the reason.
        try a.send("close:\(b2.id)")
        let close = try b2.socket.readFrame()
        #expect(close.opcode == 8 && close.closeCode == 4000 && close.payload.dropFirst(2).elementsEqual("addressed".utf8), "\(close)")
        // A socket id of a node that does not exist: counted as undelivered on the sender's node.
        try a.send("to:\(UInt64(9) << 56):lost")
        #expect(waitUntil(timeoutMilliseconds: 30_000) { (try? nodes[0].metric("switchboard_cluster_addressed_undelivered_total")) == 1 })
        // Nobody heard of a death.
        for s in [a, b, c] {
            try s.send("whoami")
            #expect(try s.next() == "id:\(s.id)")
        }
    }
}
