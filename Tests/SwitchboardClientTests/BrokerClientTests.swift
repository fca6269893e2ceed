import Foundation
import Synchronization
import Testing
@testable import SwitchboardClient

let fastOptions = BrokerClientOptions(requestTimeout: .seconds(5), connectTimeout: .seconds(5))

/// Every kind of JSON value, nested.
let allKindsOfPayloads: [JSONValue] = [
    .null, true, false, 0, 42, -7, 3.25, 1e300, -1.5e-10, "", "plain", "quotes \" and \\ and / and \n\t and ✓ 😀 \u{0}",
    [], [1, "two", nil, false, [3.5]], [:],
    ["type": "greeting", "message": "Hello!", "nested": ["deep": ["deeper": [1, 2, ["k": nil]]]], "flag": true],
    .string(String(repeating: "x", count: 100_000)),
]

/// Needs the Python venv (RepositoryTools.python()); without it every test here fails, saying how
/// to create it.
@Suite("BrokerClient against the reference broker")
struct BrokerClientReferenceTests {
    @Test func connectRegisterAndListByRole() async throws {
        let broker = try ReferenceBroker()
        let a = BrokerClient(url: broker.url, options: fastOptions)
        let b = BrokerClient(url: broker.url, options: fastOptions)
        let c = BrokerClient(url: broker.url, options: fastOptions)
        #expect(a.myId == nil)
        try await a.connect(role: "alpha")
        try await b.connect(role: "beta")
        try await c.connect(role: "beta")
        let ids = [a.myId, b.myId, c.myId].compactMap { $0 }
        #expect(ids.count == 3)
        #expect(Set(ids).count == 3)
        for id in ids { #expect(UUID(uuidString: id) != nil, "\(id) is not a UUID") }
        #expect(try await a.listByRole("alpha") == [a.myId!])
        #expect(Set(try await a.listByRole("beta")) == Set([b.myId!, c.myId!]))
        #expect(try await b.listByRole("nobody") == [])
        #expect(await brokerError { try await a.connect(role: "again") } == .alreadyConnected)

        await c.disconnect()
        #expect(c.myId == nil)
        // The broker forgets c once it has processed the close (shortly after the handshake).
        var beta = try await a.listByRole("beta")
        for _ in 0..<100 where beta.count != 1 {
            try await Task.sleep(for: .milliseconds(20))
            beta = try await a.listByRole("beta")
        }
        #expect(beta == [b.myId!])
        #expect(await brokerError { _ = try await c.listByRole("beta") } == .notConnected)
        // A disconnected client can connect again and gets a new id.
        try await c.connect(role: "beta")
        #expect(c.myId != nil && !ids.contains(c.myId!))
        await a.disconnect()
        await b.disconnect()
        await c.disconnect()
    }

    @Test func channelsCarryEveryKindOfJSONBothWays() async throws {
        let broker = try ReferenceBroker()
        let a = BrokerClient(url: broker.url, options: fastOptions)
        let b = BrokerClient(url: broker.url, options: fastOptions)
        try await a.connect(role: "opener")
        try await b.connect(role: "target")
        let atB = Recorder<JSONValue>()
        let atA = Recorder<JSONValue>()
        let incoming = Recorder<BrokerChannel>()
        b.onIncomingChannel = { channel in
            channel.onMessage = { atB.append($0) }
            incoming.append(channel)
        }
        let channel = try await a.openChannel(b.myId!)
        channel.onMessage = { atA.append($0) }
        #expect(channel.peerId == b.myId)
        #expect(UUID(uuidString: channel.id) != nil)
        #expect(await eventually { incoming.count == 1 })
        let other = try #require(incoming.all.first)
        #expect(other.id == channel.id)
        #expect(other.peerId == a.myId)
        #expect(other.getPeerId() == a.myId)

        for payload in allKindsOfPayloads { try await channel.send(payload) }
        for payload in allKindsOfPayloads.reversed() { try await other.send(payload) }
        #expect(await eventually { atB.count == allKindsOfPayloads.count && atA.count == allKindsOfPayloads.count })
        #expect(atB.all == allKindsOfPayloads)
        #expect(atA.all == allKindsOfPayloads.reversed())

        // Concurrent sends from both sides: all confirmed, all delivered.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<100 {
                group.addTask { try await channel.send(["n": .number(Double(i))]) }
                group.addTask { try await other.send(["m": .number(Double(i))]) }
            }
            try await group.waitForAll()
        }
        #expect(await eventually { atB.count == allKindsOfPayloads.count + 100 && atA.count == allKindsOfPayloads.count + 100 })
        let ns = Set(atB.all.dropFirst(allKindsOfPayloads.count).compactMap { $0["n"]?.intValue })
        #expect(ns == Set(0..<100))
        await a.disconnect()
        await b.disconnect()
    }

    @Test func messagesBeforeOnMessageAreBufferedInOrder() async throws {
        let broker = try ReferenceBroker()
        let a = BrokerClient(url: broker.url, options: fastOptions)
        let b = BrokerClient(url: broker.url, options: fastOptions)
        try await a.connect(role: "a")
        try await b.connect(role: "b")
        let incoming = Recorder<BrokerChannel>()
        b.onIncomingChannel = { incoming.append($0) }  // no onMessage yet
        let channel = try await a.openChannel(b.myId!)
        for i in 1...5 { try await channel.send(.number(Double(i))) }
        #expect(await eventually { incoming.count == 1 })
        let received = Recorder<JSONValue>()
        incoming.all[0].onMessage = { received.append($0) }
        try await channel.send(6)
        #expect(await eventually { received.count == 6 })
        #expect(received.all == [1, 2, 3, 4, 5, 6])
        await a.disconnect()
        await b.disconnect()
    }

    @Test func closeNotifiesThePeer() async throws {
        let broker = try ReferenceBroker()
        let a = BrokerClient(url: broker.url, options: fastOptions)
        let b = BrokerClient(url: broker.url, options: fastOptions)
        try await a.connect(role: "a")
        try await b.connect(role: "b")
        let incoming = Recorder<BrokerChannel>()
        let closedAtB = Recorder<String>()
        b.onIncomingChannel = { channel in
            channel.onClosed = { closedAtB.append(channel.id) }
            incoming.append(channel)
        }
        let channel = try await a.openChannel(b.myId!)
        let closedAtA = Recorder<String>()
        channel.onClosed = { closedAtA.append(channel.id) }
        #expect(await eventually { incoming.count == 1 })
        let other = incoming.all[0]

        try await channel.close()
        #expect(channel.isClosed)
        #expect(await eventually { closedAtB.count == 1 })
        #expect(closedAtB.all.first == channel.id)
        #expect(other.isClosed)
        #expect(await eventually { closedAtA.count == 1 })
        #expect(await brokerError { try await channel.send("late") } == .channelClosed)
        #expect(await brokerError { try await other.send("late") } == .channelClosed)
        try await channel.close()  // idempotent
        try await settled(a, b)  // every notification due so far has reached its callback
        #expect(closedAtA.count == 1 && closedAtB.count == 1, "onClosed fires once")
        #expect(incoming.count == 1)

        // onClosed set after the channel closed still fires (once).
        let third = try await a.openChannel(b.myId!)
        try await third.close()
        let late = Recorder<Bool>()
        third.onClosed = { late.append(true) }
        #expect(await eventually { late.count == 1 })
        third.onClosed = { late.append(true) }
        try await settled(a)
        #expect(late.count == 1)
        #expect(await eventually { incoming.count == 2 })

        // The peer going away closes the channel too (server-side cleanup).
        let second = try await a.openChannel(b.myId!)
        let secondClosed = Recorder<Bool>()
        second.onClosed = { secondClosed.append(true) }
        #expect(await eventually { incoming.count == 3 })
        await b.disconnect()
        #expect(await eventually { secondClosed.count == 1 })
        #expect(incoming.all[2].isClosed, "local channels close on disconnect")
        await a.disconnect()
    }

    @Test func manyMessagesArriveInOrder() async throws {
        let broker = try ReferenceBroker()
        let a = BrokerClient(url: broker.url, options: fastOptions)
        let b = BrokerClient(url: broker.url, options: fastOptions)
        try await a.connect(role: "a")
        try await b.connect(role: "b")
        let received = Recorder<Int>()
        b.onIncomingChannel = { $0.onMessage = { received.append($0["seq"]?.intValue ?? -1) } }
        let channel = try await a.openChannel(b.myId!)
        let start = ContinuousClock.now
        for i in 0..<1_000 { try await channel.send(["seq": .number(Double(i)), "pad": "0123456789abcdef"]) }
        #expect(await eventually { received.count == 1_000 })
        #expect(received.all == Array(0..<1_000))
        #expect(ContinuousClock.now - start < .seconds(20))
        await a.disconnect()
        await b.disconnect()
    }

    @Test func brokerFailuresSurfaceAsFailed() async throws {
        let broker = try ReferenceBroker()
        let a = BrokerClient(url: broker.url, options: fastOptions)
        try await a.connect(role: "a")
        let error = await brokerError { _ = try await a.openChannel("00000000-0000-0000-0000-000000000000") }
        #expect(error == .failed("Target connection not found"))
        // The client still works afterwards.
        #expect(try await a.listByRole("a") == [a.myId!])
        await a.disconnect()
    }

    @Test func autoReconnectReRegistersAfterTheServerDrops() async throws {
        let broker = try ReferenceBroker()
        var options = fastOptions
        options.autoReconnect = true
        options.reconnectDelay = .milliseconds(50)
        options.maxReconnectDelay = .milliseconds(200)
        let logged = RecordingLogger()
        let a = BrokerClient(url: broker.url, logger: logged, options: options)
        let b = BrokerClient(url: broker.url, options: fastOptions)
        let reconnected = Recorder<String>()
        let disconnected = Recorder<Bool>()
        a.onReconnected = { reconnected.append($0) }
        a.onDisconnected = { disconnected.append(true) }
        try await a.connect(role: "survivor")
        try await b.connect(role: "other")
        let firstId = try #require(a.myId)
        let channel = try await a.openChannel(b.myId!)
        let channelClosed = Recorder<Bool>()
        channel.onClosed = { channelClosed.append(true) }

        broker.kill()
        #expect(await eventually { disconnected.count == 1 })
        #expect(await eventually { channelClosed.count == 1 }, "old channels close")
        #expect(await brokerError { try await channel.send("x") } == .channelClosed)
        // b has no autoReconnect: it stays down.
        #expect(await eventually { b.myId == nil })
        // While down, requests fail fast.
        #expect(await brokerError { _ = try await a.listByRole("survivor") } == .notConnected)
        // A few failed attempts against the dead port (counted in the client's log), then restart.
        #expect(await eventually { logged.lines.filter { $0.contains("reconnect attempt") && $0.contains("failed") }.count >= 2 })

        try broker.start()  // same port
        #expect(await eventually(timeout: .seconds(10)) { reconnected.count == 1 })
        let newId = try #require(a.myId)
        #expect(newId != firstId)
        #expect(reconnected.all == [newId])
        #expect(a.reconnectCount == 1)
        #expect(try await a.listByRole("survivor") == [newId])
        #expect(!b.isConnected)
        await a.disconnect()
        await b.disconnect()
    }
}

@Suite("BrokerClient against scripted brokers")
struct BrokerClientScriptedTests {
    @Test func requestIdsAutoIncrementFromOneAndRepliesMatchByReplyTo() async throws {
        let requests = Recorder<String>()
        let server = scriptedBroker { peer, request in
            let type = request["type"] as? String ?? ""
            let id = request["id"] as? Int ?? -1
            requests.append("\(type) \(id)")
            switch type {
            case "register":
                // An unsolicited message and an unknown reply first: both must be ignored.
                peer.sendJSON(["type": "mystery", "id": 100])
                peer.sendJSON(["type": "connections", "id": 101, "replyTo": 999, "ids": []])
                peer.sendJSON(["type": "registered", "id": 102, "replyTo": id, "connectionId": "me"])
            case "list_by_role":
                peer.sendJSON(["type": "connections", "id": 103, "replyTo": id, "ids": ["x-\(id)"]])
            default: break
            }
        }
        let client = BrokerClient(url: server.url, options: fastOptions)
        try await client.connect(role: "r")
        #expect(client.myId == "me")
        #expect(try await client.listByRole("q") == ["x-2"])
        #expect(try await client.listByRole("q") == ["x-3"])
        #expect(requests.all == ["register 1", "list_by_role 2", "list_by_role 3"])
        await client.disconnect()
    }

    @Test func requestsAreWellFormedJSON() async throws {
        let requests = Recorder<String>()
        let server = registeringBroker { peer, request in
            let data = try! JSONSerialization.data(withJSONObject: request, options: [.sortedKeys])
            requests.append(String(decoding: data, as: UTF8.self))
            let id = request["id"]!
            switch request["type"] as? String {
            case "open":
                peer.sendJSON(["type": "channel_opened", "id": 5, "replyTo": id, "channelId": "ch", "targetId": request["targetId"]!])
            case "message":
                peer.sendJSON(["type": "channel_message_sent", "id": 6, "replyTo": id, "channelId": "ch"])
            case "close":
                peer.sendJSON(["type": "channel_closed", "id": 7, "replyTo": id, "channelId": "ch"])
            default: break
            }
        }
        let client = BrokerClient(url: server.url, options: fastOptions)
        try await client.connect(role: "r")
        let channel = try await client.openChannel("peer-1")
        #expect(channel.id == "ch" && channel.peerId == "peer-1")
        try await channel.send(["any": "data", "n": 1])
        try await channel.close()
        #expect(requests.all == [
            #"{"id":2,"targetId":"peer-1","type":"open"}"#,
            #"{"channelId":"ch","id":3,"payload":{"any":"data","n":1},"type":"message"}"#,
            #"{"channelId":"ch","id":4,"type":"close"}"#,
        ])
        await client.disconnect()
    }

    /// How a scripted server words its replies.
    enum ReplyStyle: CaseIterable {
        /// Switchboard's strict profile: typed successes, typed `*_failed` failures.
        case typedFailures
        /// The reference broker (and Switchboard's default profile's failures):
        /// `{"type":"error","error":T,"replyTo":N,"id":M}`; its successes carry no `type`.
        case referenceErrors
    }

    @Test(arguments: ReplyStyle.allCases)
    func failureResponsesCarryTheServersErrorText(style: ReplyStyle) async throws {
        @Sendable func failure(_ type: String, _ id: Any, _ n: Int, _ error: String) -> [String: Any] {
            switch style {
            case .typedFailures: ["type": type, "id": n, "replyTo": id, "error": error]
            case .referenceErrors: ["type": "error", "error": error, "replyTo": id, "id": n]
            }
        }
        @Sendable func success(_ type: String, _ id: Any, _ n: Int, _ fields: [String: Any]) -> [String: Any] {
            var reply: [String: Any] = ["id": n, "replyTo": id]
            if style == .typedFailures { reply["type"] = type }
            return reply.merging(fields) { a, _ in a }
        }
        let server = scriptedBroker { peer, request in
            let id = request["id"]!
            switch request["type"] as? String {
            case "register":
                if request["role"] as? String == "forbidden" {
                    peer.sendJSON(failure("register_failed", id, 1, "Role not allowed"))
                } else {
                    peer.sendJSON(success("registered", id, 1, ["connectionId": "me"]))
                }
            case "list_by_role":
                peer.sendJSON(failure("list_by_role_failed", id, 2, "No listing today"))
            case "open":
                peer.sendJSON(success("channel_opened", id, 3, ["channelId": "ch"]))
            case "message":
                peer.sendJSON(failure("channel_message_failed", id, 4, "Channel not found"))
            case "close":
                peer.sendJSON(failure("channel_close_failed", id, 5, "Not authorized for this channel"))
            default: break
            }
        }
        let refused = BrokerClient(url: server.url, options: fastOptions)
        #expect(await brokerError { try await refused.connect(role: "forbidden") } == .failed("Role not allowed"))
        #expect(refused.myId == nil && !refused.isConnected)

        let client = BrokerClient(url: server.url, options: fastOptions)
        try await client.connect(role: "ok")
        #expect(await brokerError { _ = try await client.listByRole("x") } == .failed("No listing today"))
        #expect(client.myId == "me")
        let channel = try await client.openChannel("t")
        #expect(channel.id == "ch" && channel.peerId == "t")
        #expect(await brokerError { try await channel.send("x") } == .failed("Channel not found"))
        let closed = Recorder<Bool>()
        channel.onClosed = { closed.append(true) }
        #expect(await brokerError { try await channel.close() } == .failed("Not authorized for this channel"))
        #expect(channel.isClosed)
        #expect(await eventually { closed.count == 1 })
        await client.disconnect()
    }

    @Test func registerTimesOutAgainstASilentServer() async throws {
        let server = scriptedBroker { _, _ in }  // completes the handshake, never answers
        let client = BrokerClient(url: server.url, options: .init(requestTimeout: .milliseconds(300)))
        let start = ContinuousClock.now
        #expect(await brokerError { try await client.connect(role: "r") } == .timeout)
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect(!client.isConnected)
    }

    @Test func requestTimesOutAndTheClientKeepsWorking() async throws {
        let server = registeringBroker { peer, request in
            // Only answers the second listByRole.
            if request["role"] as? String == "answered" {
                peer.sendJSON(["type": "connections", "id": 9, "replyTo": request["id"]!, "ids": ["z"]])
            }
        }
        let client = BrokerClient(url: server.url, options: .init(requestTimeout: .milliseconds(300)))
        try await client.connect(role: "r")
        let start = ContinuousClock.now
        #expect(await brokerError { _ = try await client.listByRole("ignored") } == .timeout)
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(3))
        #expect(try await client.listByRole("answered") == ["z"])
        #expect(client.isConnected)
        await client.disconnect()
    }

    @Test func disconnectFailsPendingRequestsAndClosesChannels() async throws {
        let seen = Recorder<String>()
        let server = registeringBroker { peer, request in
            seen.append(request["type"] as? String ?? "?")
            if request["type"] as? String == "open" {
                peer.sendJSON(["type": "channel_opened", "id": 3, "replyTo": request["id"]!, "channelId": "ch1", "targetId": "t"])
            }
        }
        let client = BrokerClient(url: server.url, options: .init(requestTimeout: .seconds(30)))
        let disconnected = Recorder<Bool>()
        client.onDisconnected = { disconnected.append(true) }
        try await client.connect(role: "r")
        let channel = try await client.openChannel("t")
        let closed = Recorder<Bool>()
        channel.onClosed = { closed.append(true) }
        let pending = Task { await brokerError { _ = try await client.listByRole("never") } }
        let pendingSend = Task { await brokerError { try await channel.send("never confirmed") } }
        // Both requests are pending once the broker has them (it never answers them).
        #expect(await eventually { Set(seen.all).isSuperset(of: ["list_by_role", "message"]) }, "\(seen.all)")
        let start = ContinuousClock.now
        await client.disconnect()
        #expect(await pending.value == .disconnected)
        #expect(await pendingSend.value == .disconnected)
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect(await eventually { closed.count == 1 && disconnected.count == 1 })
        #expect(client.myId == nil)
        #expect(await brokerError { _ = try await client.listByRole("x") } == .notConnected)
        await client.disconnect()  // idempotent
    }

    /// A channel without `onMessage` buffers at most `maxBufferedChannelMessages` payloads and
    /// counts the rest; setting the handler delivers the buffered ones in order.
    @Test func channelBufferIsBoundedUntilOnMessageIsSet() async throws {
        let server = registeringBroker { peer, request in
            guard request["type"] as? String == "list_by_role" else { return }
            peer.sendJSON(["type": "incoming_channel", "id": 2, "from": "peer", "channelId": "in1"])
            for i in 0..<5 { peer.sendJSON(["type": "channel_message", "id": 3 + i, "channelId": "in1", "payload": i]) }
            peer.sendJSON(["type": "connections", "id": 9, "replyTo": request["id"] ?? 0, "ids": []])
        }
        var options = BrokerClientOptions(requestTimeout: .seconds(5))
        options.maxBufferedChannelMessages = 2
        let client = BrokerClient(url: server.url, options: options)
        let incoming = Recorder<BrokerChannel>()
        client.onIncomingChannel = { incoming.append($0) }
        try await client.connect(role: "r")
        try await settled(client)  // the five payloads reached the channel before anyone listened
        let channel = try #require(incoming.all.first)
        #expect(channel.droppedMessageCount == 3)
        let got = Recorder<JSONValue>()
        channel.onMessage = { got.append($0) }
        #expect(await eventually { got.count == 2 })
        #expect(got.all == [.number(0), .number(1)])
        await client.disconnect()
    }

    @Test func serverDropFailsPendingRequestsAndClosesChannels() async throws {
        let server = registeringBroker { peer, request in
            switch request["type"] as? String {
            case "list_by_role":
                // Announce an incoming channel with a message, then drop the TCP connection. No
                // pause needed: TCP delivers both frames before the FIN (shutdown, not a reset).
                peer.sendJSON(["type": "incoming_channel", "id": 2, "from": "peer", "channelId": "in1"])
                peer.sendJSON(["type": "channel_message", "id": 3, "channelId": "in1", "payload": ["hi": true]])
                peer.shutdown()
            default: break
            }
        }
        let client = BrokerClient(url: server.url, options: .init(requestTimeout: .seconds(30)))
        let incoming = Recorder<BrokerChannel>()
        let events = Recorder<String>()
        client.onIncomingChannel = { channel in
            incoming.append(channel)
            channel.onMessage = { events.append("message \($0)") }
            channel.onClosed = { events.append("closed \(channel.id)") }
        }
        client.onDisconnected = { events.append("disconnected") }
        try await client.connect(role: "r")
        #expect(await brokerError { _ = try await client.listByRole("x") } == .disconnected)
        #expect(await eventually { events.count == 3 })
        #expect(Set(events.all) == [#"message {"hi":true}"#, "closed in1", "disconnected"])
        #expect(events.all.first == #"message {"hi":true}"#, "messages are delivered before the close")
        #expect(incoming.all.first?.peerId == "peer")
        #expect(client.myId == nil && !client.isConnected)
    }

    @Test func serverCloseFrameEndsTheConnectionCleanly() async throws {
        let server = registeringBroker { peer, request in
            peer.sendFrame(opcode: 8, payload: [0x03, 0xE9])
        }
        let client = BrokerClient(url: server.url, options: fastOptions)
        let disconnected = Recorder<Bool>()
        client.onDisconnected = { disconnected.append(true) }
        try await client.connect(role: "r")
        #expect(await brokerError { _ = try await client.listByRole("x") } == .disconnected)
        #expect(await eventually { disconnected.count == 1 })
    }

    @Test func cancellationFailsTheRequest() async throws {
        let seen = Recorder<String>()
        let server = registeringBroker { _, request in seen.append(request["type"] as? String ?? "?") }
        let client = BrokerClient(url: server.url, options: .init(requestTimeout: .seconds(30)))
        try await client.connect(role: "r")
        let task = Task { try await client.listByRole("x") }
        // Cancel while the request is in flight: the broker has it and never answers.
        #expect(await eventually { seen.all.contains("list_by_role") })
        task.cancel()
        do {
            _ = try await task.value
            Issue.record("expected cancellation")
        } catch {
            #expect(error is CancellationError)
        }
        #expect(client.isConnected)
        await client.disconnect()
    }

    @Test func autoReconnectBacksOffWhileTheServerRefusesToRegister() async throws {
        // Every connection after the first gets register_failed a few times, then succeeds;
        // the first connection is dropped by the server after registering.
        let attempts = Mutex(0)
        let server = RawServer { peer in
            try peer.handshake()
            while let request = peer.readJSON() {
                let n = attempts.withLock { $0 += 1; return $0 }
                let id = request["id"]!
                if n == 1 {
                    // The reply arrives before the FIN (TCP order), so connect() completes first.
                    peer.sendJSON(["type": "registered", "id": 1, "replyTo": id, "connectionId": "first"])
                    peer.shutdown()
                } else if n < 4 {
                    peer.sendJSON(["type": "register_failed", "id": 1, "replyTo": id, "error": "busy"])
                } else {
                    peer.sendJSON(["type": "registered", "id": 1, "replyTo": id, "connectionId": "id-\(n)",
                                   "echoRole": request["role"] ?? ""])
                }
            }
        }
        var options = fastOptions
        options.autoReconnect = true
        options.reconnectDelay = .milliseconds(20)
        options.maxReconnectDelay = .milliseconds(100)
        let client = BrokerClient(url: server.url, options: options)
        let reconnected = Recorder<String>()
        client.onReconnected = { reconnected.append($0) }
        try await client.connect(role: "r")
        #expect(await eventually { reconnected.count == 1 })
        #expect(reconnected.all == ["id-4"])
        #expect(client.myId == "id-4")
        await client.disconnect()
    }

    @Test func reconnectBackoffDoublesAndCaps() {
        let options = BrokerClientOptions(reconnectDelay: .seconds(1), maxReconnectDelay: .seconds(30))
        #expect((0..<8).map { options.reconnectDelay(attempt: $0) } ==
            [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(30), .seconds(30)])
        #expect(options.reconnectDelay(attempt: 1000) == .seconds(30))
        let defaults = BrokerClientOptions()
        #expect(defaults.requestTimeout == .seconds(10))
        #expect(defaults.autoReconnect == false)
    }

    @Test func loggerSeesTraffic() async throws {
        final class Log: BrokerClientLogger {
            let lines = Recorder<String>()
            func log(_ level: BrokerLogLevel, _ message: String) { lines.append("\(level) \(message)") }
        }
        let log = Log()
        let server = registeringBroker()
        let client = BrokerClient(url: server.url, logger: log, options: fastOptions)
        try await client.connect(role: "logged")
        await client.disconnect()
        #expect(log.lines.all.contains { $0.hasPrefix("debug -> ") && $0.contains(#""type":"register""#) })
        #expect(log.lines.all.contains { $0.hasPrefix("info registered as") })
    }
}

@Suite("JSONValue")
struct JSONValueTests {
    @Test func roundTripsEveryKind() throws {
        for value in allKindsOfPayloads {
            let text = try value.jsonString()
            #expect(try JSONValue(jsonString: text) == value, "\(text.prefix(80))")
        }
        #expect(try JSONValue(jsonString: #"{"a":[1,true,null,"s",{"b":-2.5}]}"#)
            == ["a": [1, true, nil, "s", ["b": -2.5]]])
        #expect(try JSONValue(jsonString: "true") == .bool(true))
        #expect(try JSONValue(jsonString: "1") == .number(1))
        #expect(try JSONValue.number(3).jsonString() == "3")
        #expect(try JSONValue.string("a/b").jsonString() == #""a/b""#)
        #expect(throws: BrokerClientError.self) { try JSONValue.number(.nan).jsonString() }
        #expect(throws: BrokerClientError.self) { try JSONValue(jsonString: "{") }
    }

    @Test func accessors() {
        let v: JSONValue = ["n": 5, "s": "x", "a": [true], "o": [:], "z": nil, "f": 1.5]
        #expect(v["n"]?.intValue == 5)
        #expect(v["f"]?.intValue == nil)
        #expect(v["f"]?.doubleValue == 1.5)
        #expect(v["s"]?.stringValue == "x")
        #expect(v["a"]?[0]?.boolValue == true)
        #expect(v["a"]?[1] == nil)
        #expect(v["o"]?.objectValue == [:])
        #expect(v["z"]?.isNull == true)
        #expect(v["missing"] == nil)
    }
}
