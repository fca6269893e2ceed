import Dispatch
import Foundation
import Switchboard
@testable import SwitchboardProtocols
import SwitchboardTestSupport
import Synchronization
import Testing

/// The share-nothing registry (ConnectionRegistry.swift): records on their owner shards,
/// cross-shard posts, ordering, clean-up, bounded inboxes.
@Suite("Connection broker: share-nothing registry", .serialized)
struct ConnectionBrokerShardingTests {
    /// Registers clients with `role` until one sits on each of `shards` (in that order); the
    /// others stay registered in the pool (returned too, so the caller keeps them alive).
    private func clients(on shards: [Int], role: String, server: CBServer) throws -> (picked: [CBClient], pool: [CBClient]) {
        var picked = [CBClient?](repeating: nil, count: shards.count)
        var pool: [CBClient] = []
        for _ in 0..<64 where picked.contains(where: { $0 == nil }) {
            let c = try server.registered(role)
            let home = try #require(server.cb.shard(ofConnectionId: c.connectionId!))
            #expect(home == server.cb.socketId(forConnectionId: c.connectionId!)?.shard, "the id names its socket's shard")
            if let i = shards.indices.first(where: { shards[$0] == home && picked[$0] == nil }) {
                picked[i] = c
            } else {
                pool.append(c)
            }
        }
        return (try picked.map { try #require($0, "no client landed on every shard of \(shards)") }, pool)
    }

    /// A role name whose owner is `shard` (FNV-1a % shardCount).
    private func roleName(ownedBy shard: Int, shardCount: Int, prefix: String) -> String {
        (0...).lazy.map { "\(prefix)-\($0)" }.first { roleOwner($0, shardCount: shardCount) == shard }!
    }

    @Test("open, messages, close and list_by_role with opener, target and role on three different shards",
          arguments: [IOBackendKind.uring, .epoll])
    func threeOwners(backend: IOBackendKind) throws {
        let server = try CBServer(shards: 3, configure: { $0.io.backend = backend })
        defer { server.stop() }
        let role = roleName(ownedBy: 2, shardCount: 3, prefix: "tri")
        let (picked, pool) = try clients(on: [0, 1], role: role, server: server)
        let a = picked[0], b = picked[1]
        #expect(roleOwner(role, shardCount: 3) == 2)

        // list_by_role crosses to shard 2 and back; registration order, the caller included.
        let everyone = try a.list(role)
        #expect(Set(everyone) == Set((pool + [a, b]).map { $0.connectionId! }))
        #expect(everyone.count == pool.count + 2)

        let channel = try a.open(to: b)  // shard 0 -> shard 1 -> shard 0
        var sent: [Int] = []
        for i in 0..<200 { sent.append(try a.request("message", "\"channelId\":\"\(channel)\",\"payload\":\(i)")) }
        for i in 0..<200 {
            let m = try b.read()
            b.check(m, "channel_message", replyTo: nil, ["channelId": channel], extraKeys: ["payload"])
            #expect(m["payload"] as? Int == i)
        }
        for id in sent { try a.expect("channel_message_sent", replyTo: id, ["channelId": channel]) }
        // The other way, then a close by the target: the opener's notification comes after
        // every message the target sent before closing.
        var back: [Int] = []
        for i in 0..<50 { back.append(try b.request("message", "\"channelId\":\"\(channel)\",\"payload\":\(i)")) }
        let closeId = try b.request("close", "\"channelId\":\"\(channel)\"")
        for i in 0..<50 {
            let m = try a.read()
            a.check(m, "channel_message", replyTo: nil, ["channelId": channel], extraKeys: ["payload"])
            #expect(m["payload"] as? Int == i)
        }
        try a.expect("channel_closed_notification", replyTo: nil, ["channelId": channel])
        for id in back { try b.expect("channel_message_sent", replyTo: id, ["channelId": channel]) }
        try b.expect("channel_closed", replyTo: closeId, ["channelId": channel])
        #expect(waitUntil { server.cb.counts.channels == 0 })
        #expect(server.cb.metrics.crossShardRefused.load(ordering: .relaxed) == 0)
        #expect(server.cb.metrics.messagesDropped.load(ordering: .relaxed) == 0)
    }

    @Test("list_by_role keeps registration order after removals at the head, middle and tail, and slot reuse")
    func listOrderAfterRemovals() throws {
        let server = try CBServer(shards: 3)
        defer { server.stop() }
        let role = roleName(ownedBy: 1, shardCount: 3, prefix: "order")
        var members: [CBClient] = []
        for _ in 0..<12 { members.append(try server.registered(role)) }
        let observer = try server.registered("observer")
        #expect(try observer.list(role) == members.map { $0.connectionId! })
        // Remove the oldest, two in the middle and the newest.
        for i in [0, 5, 6, 11] { members[i].socket.shutdownWrite() }
        let left = [1, 2, 3, 4, 7, 8, 9, 10].map { members[$0].connectionId! }
        #expect(waitUntil { (try? observer.list(role)) == left })
        // New members go to the end, whatever slots they reuse.
        var lateClients: [CBClient] = []
        for _ in 0..<3 { lateClients.append(try server.registered(role)) }
        let late = lateClients.map { $0.connectionId! }
        #expect(try observer.list(role) == left + late)
        let visited = server.cb.metrics.listEntriesVisited.load(ordering: .relaxed)
        _ = try observer.list(role)
        #expect(server.cb.metrics.listEntriesVisited.load(ordering: .relaxed) - visited == left.count + late.count)
    }

    @Test("a role of 10,000 members: list_by_role visits only the entries it returns")
    func listCostIndependentOfRoleSize() {
        var registry = ConnectionRegistry()
        let ids = (0..<10_000).map { _ in UUID4.random() }
        var admitted = 0
        for id in ids where registry.admit(id, to: "big", maxPerRole: 100_000) { admitted += 1 }
        #expect(admitted == 10_000)
        for id in ids.prefix(10) { _ = registry.admit(id, to: "small", maxPerRole: 100_000) }
        func list(_ role: String, _ limit: Int) -> (ids: [UUID4], total: Int, visited: Int) {
            var visited = 0
            let answer = registry.members(of: role, limit: limit, visited: &visited)
            return (answer.ids, answer.total, visited)
        }
        let big = list("big", 10), small = list("small", 10)
        #expect(big.ids == Array(ids.prefix(10)) && big.total == 10_000 && big.visited == 10)
        #expect(small.ids == Array(ids.prefix(10)) && small.total == 10 && small.visited == 10)
        // Removing the oldest half leaves nothing to skip: still 10 visits for 10 ids.
        for id in ids.prefix(5_000) { registry.removeMember(id, from: "big") }
        let after = list("big", 10)
        #expect(after.ids == Array(ids[5_000..<5_010]) && after.total == 5_000 && after.visited == 10)
        let all = list("big", 100_000)
        #expect(all.ids == Array(ids.suffix(5_000)) && all.visited == 5_000)
        // Removing every member drops the role.
        for id in ids.suffix(5_000) { registry.removeMember(id, from: "big") }
        #expect(list("big", 10).visited == 0 && registry.roleCount == 1)
    }

    @Test("a disconnect closes channels on three other shards and leaves the role on a fourth",
          arguments: [IOBackendKind.uring, .epoll])
    func disconnectAcrossShards(backend: IOBackendKind) throws {
        let server = try CBServer(shards: 4, configure: { $0.io.backend = backend })
        defer { server.stop() }
        // The role is owned by shard 3; the leaver sits on 0, its peers on 1, 2 and 3.
        let role = roleName(ownedBy: 3, shardCount: 4, prefix: "leave")
        let (picked, pool) = try clients(on: [0, 1, 2, 3], role: role, server: server)
        _ = pool
        let leaver = picked[0], peers = Array(picked[1...])
        var channels: [String] = []
        for (i, p) in peers.enumerated() {
            // Two channels to each peer: one each way.
            channels.append(try leaver.open(to: p))
            channels.append(try p.open(to: leaver))
            #expect(channels.count == 2 * (i + 1))
        }
        // The peers keep a channel between them that must survive.
        let survivor = try peers[0].open(to: peers[2])
        #expect(server.cb.counts.channels == 7)
        let before = server.cb.metrics.channelsClosedByDisconnect.load(ordering: .relaxed)
        leaver.socket.shutdownWrite()
        for (i, p) in peers.enumerated() {
            var notified: Set<String> = []
            for _ in 0..<2 { notified.insert(try p.expect("channel_closed_notification", replyTo: nil, ["channelId": nil])["channelId"] as! String) }
            #expect(notified == [channels[2 * i], channels[2 * i + 1]])
            // After its notification, a peer finds the leaver gone from the role and as a target.
            #expect(!(try p.list(role)).contains(leaver.connectionId!))
            let id = try p.request("open", "\"targetId\":\"\(leaver.connectionId!)\"")
            try p.expectFailure("channel_open_failed", replyTo: id, "Target connection not found", ["targetId": leaver.connectionId!])
        }
        #expect(server.cb.metrics.channelsClosedByDisconnect.load(ordering: .relaxed) - before == 6)
        #expect(waitUntil { server.cb.counts.channels == 1 })
        let id = try peers[0].request("message", "\"channelId\":\"\(survivor)\",\"payload\":\"still\"")
        try peers[2].expect("channel_message", replyTo: nil, ["channelId": survivor, "payload": "still"])
        try peers[0].expect("channel_message_sent", replyTo: id, ["channelId": survivor])
        for p in peers { #expect(p.receivesNothing(milliseconds: 50)) }
    }

    @Test("a full inbox refuses cross-shard messages with Delivery failed, counted; clean-ups wait and arrive",
          arguments: [IOBackendKind.uring, .epoll])
    func refusedPostUnderFullInbox(backend: IOBackendKind) throws {
        let server = try CBServer(shards: 2, configure: { $0.io.inboxCapacity = 16; $0.io.backend = backend })
        defer { server.stop() }
        let role = roleName(ownedBy: 0, shardCount: 2, prefix: "full")
        let (picked, _) = try clients(on: [0, 1, 0], role: role, server: server)
        let a = picked[0], b = picked[1], leaver = picked[2]
        let channel = try a.open(to: b)
        let leaverChannel = try leaver.open(to: b)

        // Stall shard 1 (b's home) inside one of its own tasks.
        let started = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        #expect(server.broker.execute(onShard: 1) { _ in started.signal(); release.wait() }.isQueued)
        started.wait()
        defer { release.signal() }

        // a floods messages to b: the first ones fill shard 1's inbox, the rest are refused.
        let n = 40
        var ids: [Int] = []
        for i in 0..<n { ids.append(try a.request("message", "\"channelId\":\"\(channel)\",\"payload\":\(i)")) }
        var accepted = 0, refused = 0
        for id in ids {
            let m = try a.read()
            if m["type"] as? String == "channel_message_sent" {
                #expect(refused == 0, "a refusal is never followed by an acceptance while the inbox stays full")
                a.check(m, "channel_message_sent", replyTo: id, ["channelId": channel])
                accepted += 1
            } else {
                a.check(m, "channel_message_failed", replyTo: id, ["channelId": channel, "error": "Delivery failed"])
                refused += 1
            }
        }
        #expect(accepted > 0 && refused > 0 && accepted + refused == n)
        #expect(server.cb.metrics.crossShardRefused.load(ordering: .relaxed) == refused)
        #expect(server.cb.metrics.deliveryFailed.load(ordering: .relaxed) == refused)

        // Every request whose first hop is refused fails and changes nothing: list_by_role (the
        // role is owned by shard 1), close (the peer's home), open (the target's home).
        let busyRole = roleName(ownedBy: 1, shardCount: 2, prefix: "busy")
        var r = try a.request("list_by_role", "\"role\":\(jsonString(busyRole))")
        try a.expectFailure("list_by_role_failed", replyTo: r, "Server busy")
        r = try a.request("close", "\"channelId\":\"\(channel)\"")
        try a.expectFailure("channel_close_failed", replyTo: r, "Delivery failed", ["channelId": channel])
        r = try a.request("open", "\"targetId\":\"\(b.connectionId!)\"")
        try a.expectFailure("channel_open_failed", replyTo: r, "Delivery failed", ["targetId": b.connectionId!])
        #expect(server.cb.metrics.crossShardRefused.load(ordering: .relaxed) == refused + 3)
        #expect(server.cb.counts.channels == 2)

        // A disconnect on shard 0 must tell b: its post is refused now, kept, and sent later.
        leaver.socket.shutdownWrite()
        #expect(waitUntil { server.cb.metrics.crossShardRetried.load(ordering: .relaxed) >= 1 })

        release.signal()
        // b gets exactly the accepted messages, in order, then the notification.
        for i in 0..<accepted {
            let m = try b.read()
            b.check(m, "channel_message", replyTo: nil, ["channelId": channel], extraKeys: ["payload"])
            #expect(m["payload"] as? Int == i)
        }
        try b.expect("channel_closed_notification", replyTo: nil, ["channelId": leaverChannel])
        #expect(b.receivesNothing())
        #expect(waitUntil { server.cb.counts.channels == 1 })
        // The channel still works both ways once the inbox drained.
        let id = try b.request("message", "\"channelId\":\"\(channel)\",\"payload\":\"back\"")
        try a.expect("channel_message", replyTo: nil, ["channelId": channel, "payload": "back"])
        try b.expect("channel_message_sent", replyTo: id, ["channelId": channel])
    }

    @Test("a connection that leaves while its register or open waits for another shard: the answer is undone")
    func answersForConnectionsThatLeft() throws {
        let server = try CBServer(shards: 2)
        defer { server.stop() }
        let role = roleName(ownedBy: 1, shardCount: 2, prefix: "undo")
        let (picked, _) = try clients(on: [0, 1, 0], role: "undo-pool", server: server)
        let opener = picked[0], target = picked[1], observer = picked[2]

        func stallShard1() -> DispatchSemaphore {
            let started = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
            #expect(server.broker.execute(onShard: 1) { _ in started.signal(); release.wait() }.isQueued)
            started.wait()
            return release
        }
        let open = server.broker.openConnections

        // An open waits for shard 1 (the target's home) while the opener leaves.
        var release = stallShard1()
        try opener.request("open", "\"targetId\":\"\(target.connectionId!)\"")
        opener.socket.shutdownWrite()
        #expect(waitUntil { server.broker.openConnections == open - 1 })
        release.signal()
        let m = try target.expect("incoming_channel", replyTo: nil, ["from": opener.connectionId!, "channelId": nil])
        try target.expect("channel_closed_notification", replyTo: nil, ["channelId": m["channelId"] as? String])
        #expect(waitUntil { server.cb.counts.channels == 0 })

        // A register waits for shard 1 (the role's owner) while its socket leaves. Only a socket
        // on shard 0 shows it (its close is handled while shard 1 stalls); try a few.
        var exercised = false
        for _ in 0..<4 where !exercised {
            let c = try server.client()
            let before = server.broker.openConnections
            release = stallShard1()
            try c.request("register", "\"role\":\(jsonString(role))")
            c.socket.shutdownWrite()
            exercised = waitUntil(timeoutMilliseconds: 1000) { server.broker.openConnections == before - 1 }
            release.signal()
            #expect(waitUntil { (try? observer.list(role)) == [] })
        }
        #expect(exercised, "no socket landed on shard 0")
        #expect(target.receivesNothing(milliseconds: 50))
    }

    @Test("requests behind one that waits for another shard are answered in order; too many close the socket with 1013")
    func parkedRequests() throws {
        var o = ConnectionBrokerOptions.strictProfile()
        o.maxQueuedRequestBytes = 2_000
        let server = try CBServer(shards: 2, options: o)
        defer { server.stop() }
        let localRole = roleName(ownedBy: 0, shardCount: 2, prefix: "park")
        let (picked, _) = try clients(on: [0, 1, 0], role: localRole, server: server)
        let a = picked[0], b = picked[1], c = picked[2]
        let local = try a.open(to: c)  // both ends on shard 0
        func stallShard1() -> DispatchSemaphore {
            let started = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
            #expect(server.broker.execute(onShard: 1) { _ in started.signal(); release.wait() }.isQueued)
            started.wait()
            return release
        }

        // a's open to b waits for shard 1; a's next requests are all local but wait behind it.
        var release = stallShard1()
        let openId = try a.request("open", "\"targetId\":\"\(b.connectionId!)\"")
        let listId = try a.request("list_by_role", "\"role\":\(jsonString(localRole))")
        let messageId = try a.request("message", "\"channelId\":\"\(local)\",\"payload\":1")
        try a.sendRaw("not json")
        #expect(c.receivesNothing(milliseconds: 100), "the message waits behind the open")
        release.signal()
        let opened = try a.expect("channel_opened", replyTo: openId, ["channelId": nil, "targetId": b.connectionId!])
        try b.expect("incoming_channel", replyTo: nil, ["from": a.connectionId!, "channelId": opened["channelId"] as? String])
        a.check(try a.read(), "connections", replyTo: listId, extraKeys: ["ids"])
        c.check(try c.read(), "channel_message", replyTo: nil, ["channelId": local], extraKeys: ["payload"])
        try a.expect("channel_message_sent", replyTo: messageId, ["channelId": local])
        try a.expectFailure("error", replyTo: nil, "Invalid JSON")

        // Over maxQueuedRequestBytes while waiting: the socket is closed with 1013.
        release = stallShard1()
        try a.request("open", "\"targetId\":\"\(b.connectionId!)\"")
        for _ in 0..<40 { try a.request("message", "\"channelId\":\"\(local)\",\"payload\":\"\(String(repeating: "x", count: 100))\"") }
        var close: TestFrame? = nil
        while close == nil {
            let f = try a.socket.readFrame()
            if f.opcode == 8 { close = f }
        }
        #expect(close?.closeCode == 1013)
        a.socket.shutdownWrite()  // instead of the close reply: the connection ends now
        release.signal()
        #expect(server.cb.metrics.requestQueueFull.load(ordering: .relaxed) == 1)
        // No parked message ran after the close: c's next message is the disconnect's.
        try c.expect("channel_closed_notification", replyTo: nil, ["channelId": local])
        #expect(c.receivesNothing(milliseconds: 100))
    }

    @Test("a connection id names its home shard and stays a canonical version-4 UUID")
    func idsNameTheirHome() {
        for shardCount in [1, 2, 3, 4, 7, 64, 256] {
            var seen = Set<UUID4>()
            for home in 0..<shardCount {
                for _ in 0..<20 {
                    let id = UUID4.random(home: home, shardCount: shardCount)
                    #expect(id.home(shardCount: shardCount) == home)
                    #expect(isUUIDv4(id.description), "\(id)")
                    #expect(UUID4(id.description) == id)
                    seen.insert(id)
                }
            }
            #expect(seen.count == shardCount * 20)
        }
    }

    @Test("role members: removal anywhere, slot reuse, and order by arrival")
    func roleMembersOrder() {
        var members = RoleMembers()
        let ids = (0..<6).map { _ in UUID4.random() }
        var visited = 0
        for id in ids.prefix(4) { members.append(id) }
        #expect(members.remove(ids[1]) && !members.remove(ids[1]))
        members.append(ids[4])  // reuses ids[1]'s slot, still the newest
        #expect(members.first(10, visited: &visited) == [ids[0], ids[2], ids[3], ids[4]])
        #expect(members.remove(ids[0]) && members.remove(ids[4]))
        #expect(members.first(10, visited: &visited) == [ids[2], ids[3]])
        #expect(members.first(1, visited: &visited) == [ids[2]])
        #expect(members.remove(ids[2]) && members.remove(ids[3]) && members.isEmpty)
        members.append(ids[5])
        #expect(members.first(10, visited: &visited) == [ids[5]] && members.count == 1)
        #expect(visited == 4 + 2 + 1 + 1)
    }

    @Test("random traffic on 4 shards: every batch answered in request order, everything cleaned up")
    func randomTraffic() throws {
        let server = try CBServer(shards: 4)
        defer { server.stop() }
        let roles = ["r0", "r1", "r2"]
        let clients = try (0..<12).map { i in try server.registered(roles[i % 3]) }
        let ids = clients.map { $0.connectionId! }
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: clients.count) { k in
            let me = clients[k]
            var rng = SystemRandomNumberGenerator()
            var mine: [String] = []  // channels this client knows are open at its end
            do {
                for round in 0..<40 {
                    // A batch of up to 4 pipelined requests.
                    var batch: [(id: Int, type: String)] = []
                    for _ in 0..<Int.random(in: 1...4, using: &rng) {
                        switch Int.random(in: 0..<10, using: &rng) {
                        case 0..<3:
                            let target = ids[Int.random(in: 0..<ids.count, using: &rng)]
                            batch.append((try me.request("open", "\"targetId\":\"\(target)\""), "open"))
                        case 3..<6 where !mine.isEmpty:
                            let ch = mine.randomElement(using: &rng)!
                            batch.append((try me.request("message", "\"channelId\":\"\(ch)\",\"payload\":{\"r\":\(round)}"), "message"))
                        case 6..<8 where !mine.isEmpty:
                            let ch = mine.randomElement(using: &rng)!
                            batch.append((try me.request("close", "\"channelId\":\"\(ch)\""), "close"))
                        default:
                            batch.append((try me.request("list_by_role", "\"role\":\"\(roles.randomElement(using: &rng)!)\""), "list"))
                        }
                    }
                    var next = 0
                    while next < batch.count {
                        let m = try me.read()
                        let type = m["type"] as? String ?? ""
                        switch type {
                        case "incoming_channel": mine.append(m["channelId"] as! String)
                        case "channel_closed_notification": mine.removeAll { $0 == m["channelId"] as? String }
                        case "channel_message": break
                        default:
                            guard m["replyTo"] as? Int == batch[next].id else {
                                throw Failure("client \(k): expected reply to \(batch[next]), got \(m)")
                            }
                            if type == "channel_opened" { mine.append(m["channelId"] as! String) }
                            if type == "channel_closed" { mine.removeAll { $0 == m["channelId"] as? String } }
                            if type == "error" || (type.hasSuffix("_failed") && ![
                                "Channel not found", "Cannot open a channel to yourself", "Too many open channels",
                                "Target has too many open channels", "Target connection not found",
                            ].contains(m["error"] as? String ?? "")) {
                                throw Failure("client \(k): unexpected \(m)")
                            }
                            next += 1
                        }
                    }
                    // A third of the clients leave halfway.
                    if round == 20 && k % 3 == 2 {
                        me.socket.shutdownWrite()
                        return
                    }
                }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0 } == [])
        for c in clients { c.socket.shutdownWrite() }
        #expect(waitUntil { server.cb.counts == (0, 0) })
        #expect(server.cb.metrics.crossShardRefused.load(ordering: .relaxed) == 0)
        // Not vacuous: channels were opened, used and closed by both causes.
        let m = server.cb.metrics
        #expect(m.channelsOpened.load(ordering: .relaxed) > 50 && m.messagesRouted.load(ordering: .relaxed) > 50)
        #expect(m.channelsClosed.load(ordering: .relaxed) > 10 && m.channelsClosedByDisconnect.load(ordering: .relaxed) > 10)
    }
}

/// A peer whose socket is closing (the server closed it: it sent its Close frame and waits for
/// the peer's, so the close callback, which removes the peer's record, has not run yet) is
/// answered for as gone, as a single-threaded broker (the reference) would: the record would
/// already be deleted there. Not "Delivery failed", which is kept for a peer that is there and
/// cannot take the message.
@Suite("Connection broker: a peer whose socket is closing counts as gone", .serialized)
struct ClosingPeerTests {
    /// `c` sends a text frame that is not UTF-8; the server closes it with 1007 and waits for
    /// `c`'s Close frame, which does not come: `c`'s socket stays closing on the server.
    private func startClosing(_ c: CBClient) throws {
        try c.socket.sendFrame(opcode: 1, payload: [0xFF])
        let close = closeFrame(c)
        #expect(close?.code == 1007)
    }

    private func server() throws -> CBServer {
        // One shard: the message goes to its peer on the sender's shard (the path that answers
        // at once).
        try CBServer(shards: 1)
    }

    @Test("open to a target whose socket is closing: channel_open_failed, Target connection not found")
    func openToClosingTarget() throws {
        let server = try server()
        defer { server.stop() }
        let a = try server.registered("a"), b = try server.registered("b")
        try startClosing(b)
        let target = b.connectionId!
        let id = try a.request("open", "\"targetId\":\"\(target)\"")
        try a.expectFailure("channel_open_failed", replyTo: id, "Target connection not found", ["targetId": target])
        #expect(server.cb.metrics.deliveryFailed.load(ordering: .relaxed) == 0)
        #expect(server.cb.metrics.targetNotFound.load(ordering: .relaxed) == 1)
        // Nothing was left behind: b's end was removed with the refusal, a holds none.
        b.socket.shutdownWrite()
        #expect(waitUntil { server.cb.counts == (1, 0) })
    }

    @Test("message on a channel whose peer's socket is closing: channel_message_failed, Channel not found")
    func messageToClosingPeer() throws {
        let server = try server()
        defer { server.stop() }
        let a = try server.registered("a"), b = try server.registered("b")
        let channel = try a.open(to: b)
        try startClosing(b)
        let id = try a.request("message", "\"channelId\":\"\(channel)\",\"payload\":{\"n\":1}")
        try a.expectFailure("channel_message_failed", replyTo: id, "Channel not found", ["channelId": channel])
        #expect(server.cb.metrics.deliveryFailed.load(ordering: .relaxed) == 0)
        // When b's socket is finally closed, a hears that the channel closed, as after any disconnect.
        b.socket.shutdownWrite()
        let m = try a.read()
        #expect(m["type"] as? String == "channel_closed_notification" && m["channelId"] as? String == channel, "\(m)")
        #expect(waitUntil { server.cb.counts == (1, 0) })
    }

    @Test("reference profile: open to a closing target and a message to a closing peer get the reference's errors")
    func referenceProfile() throws {
        let server = try CBServer(shards: 1, options: ConnectionBrokerOptions())
        defer { server.stop() }
        let a = try server.registered("a"), b = try server.registered("b"), c = try server.registered("c")
        let channel = try a.open(to: c)
        try startClosing(b)
        try startClosing(c)
        var id = try a.request("open", "\"targetId\":\"\(b.connectionId!)\"")
        try expectReferenceError(a, replyToJSON: "\(id)", "Target connection not found")
        id = try a.request("message", "\"channelId\":\"\(channel)\",\"payload\":1")
        try expectReferenceError(a, replyToJSON: "\(id)", "Channel not found")
        #expect(server.cb.metrics.deliveryFailed.load(ordering: .relaxed) == 0)
    }
}
