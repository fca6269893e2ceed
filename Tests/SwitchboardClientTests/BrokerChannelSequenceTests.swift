import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import SwitchboardClient

/// What a flooding scripted broker did: frames fully written, and whether it is parked in
/// `poll` because the client's socket took no more (TCP flow control: the client stopped
/// reading).
private final class Flood: Sendable {
    let written = Atomic<Int>(0)
    let parked = Atomic<Bool>(false)
    let stalls = Atomic<Int>(0)

    /// Writes `frames` without blocking; on EAGAIN records the stall and waits for POLLOUT.
    func write(_ frames: [[UInt8]], to fd: Int32) {
        for frame in frames {
            var offset = 0
            while offset < frame.count {
                let n = frame.withUnsafeBytes {
                    Glibc.send(fd, $0.baseAddress! + offset, frame.count - offset, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                }
                if n > 0 {
                    offset += n
                    continue
                }
                guard n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) else { return }
                stalls.add(1, ordering: .relaxed)
                parked.store(true, ordering: .sequentiallyConsistent)
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&pfd, 1, -1)  // the test's stop() shuts the socket down: POLLHUP ends it
                parked.store(false, ordering: .sequentiallyConsistent)
            }
            written.add(1, ordering: .sequentiallyConsistent)
        }
    }
}

/// `channel_message` frames on channel "ch", payloads `{"seq":i,"pad":"x…"}` of about `padBytes`.
private func channelMessages(_ range: Range<Int>, padBytes: Int) -> [[UInt8]] {
    let pad = String(repeating: "x", count: padBytes)
    return range.map { i in
        RawPeer.frame(opcode: 1, payload: Array(#"{"type":"channel_message","id":\#(1000 + i),"channelId":"ch","payload":{"seq":\#(i),"pad":"\#(pad)"}}"#.utf8))
    }
}

/// A scripted broker: registers, opens channel "ch" to whoever asks, and on `list_by_role`
/// runs `onList(peer, role)` (which answers it, or not).
private func channelBroker(_ onList: @escaping @Sendable (RawPeer, String, Any) -> Void) -> RawServer {
    registeringBroker { peer, request in
        let id = request["id"] ?? 0
        switch request["type"] as? String {
        case "open":
            peer.sendJSON(["type": "channel_opened", "id": 2, "replyTo": id, "channelId": "ch", "targetId": request["targetId"] ?? ""])
        case "list_by_role":
            onList(peer, request["role"] as? String ?? "", id)
        default: break
        }
    }
}

private func options(capacity: Int, overflow: InboundOverflowPolicy) -> BrokerClientOptions {
    var options = BrokerClientOptions(requestTimeout: .seconds(60), connectTimeout: .seconds(10))
    options.maxBufferedChannelMessages = capacity
    options.eventOverflow = overflow
    return options
}

private func seq(_ payload: JSONValue?) -> Int { payload?["seq"]?.intValue ?? -1 }

@Suite("BrokerChannel.messages: the bounded channel sequence", .serialized)
struct BrokerChannelSequenceTests {
    /// `.suspendReading` with room for 4: a consumer that does not read stops the client
    /// reading its socket, so the broker's writes stall (EAGAIN) with 4 payloads buffered and
    /// nothing dropped, and the reply queued behind the flood does not arrive; once the
    /// consumer reads, every payload arrives, in order, then the reply.
    @Test func suspendStopsReadingTheSocketAndLosesNothing() async throws {
        // 64 KiB × 800 = 50 MiB: more than the loopback socket buffers can hold (tcp_rmem max
        // 32 MiB + tcp_wmem max 4 MiB), so the broker must stall while nobody reads.
        let count = 800
        let frames = channelMessages(0..<count, padBytes: 64 << 10)
        let flood = Flood()
        let server = channelBroker { peer, _, id in
            flood.write(frames, to: peer.fd)
            peer.sendJSON(["type": "connections", "id": 3, "replyTo": id, "ids": []])
        }
        defer { server.stop() }
        let client = BrokerClient(url: server.url, options: options(capacity: 4, overflow: .suspendReading))
        try await client.connect(role: "r")
        let channel = try await client.openChannel("peer")
        let sequence = channel.messages  // a consumer is attached, and does not read yet
        let replied = Atomic<Bool>(false)
        let list = Task {
            _ = try await client.listByRole("flood")
            replied.store(true, ordering: .sequentiallyConsistent)
        }
        #expect(await eventually(timeout: .seconds(60)) {
            flood.parked.load(ordering: .sequentiallyConsistent) && channel.bufferedMessageCount == 4
        }, "the broker stalls while 4 payloads wait: written \(flood.written.load(ordering: .relaxed)), buffered \(channel.bufferedMessageCount)")
        let writtenWhileStalled = flood.written.load(ordering: .sequentiallyConsistent)
        let repliedWhileStalled = replied.load(ordering: .sequentiallyConsistent)
        #expect(writtenWhileStalled < count)
        #expect(channel.droppedMessageCount == 0)
        #expect(!repliedWhileStalled, "the reply is behind the unread flood")

        var received: [Int] = []
        for await payload in sequence {
            received.append(seq(payload))
            if received.count == count { break }
        }
        #expect(received == Array(0..<count))
        try await list.value
        let writtenAtEnd = flood.written.load(ordering: .sequentiallyConsistent)
        let stalls = flood.stalls.load(ordering: .relaxed)
        #expect(writtenAtEnd == count)
        #expect(stalls > 0)
        #expect(channel.droppedMessageCount == 0)
        await client.disconnect()
    }

    /// `.dropNewest` with room for 4: of 50 unread payloads the first 4 are kept and exactly 46
    /// dropped and counted; the connection keeps reading, so the reply behind them arrives.
    @Test func dropNewestCountsEveryDropExactly() async throws {
        let frames = channelMessages(0..<50, padBytes: 8)
        let server = channelBroker { peer, _, id in
            for frame in frames { peer.send(frame) }
            peer.sendJSON(["type": "connections", "id": 3, "replyTo": id, "ids": []])
        }
        defer { server.stop() }
        let client = BrokerClient(url: server.url, options: options(capacity: 4, overflow: .dropNewest))
        try await client.connect(role: "r")
        let channel = try await client.openChannel("peer")
        let sequence = channel.messages
        // The reply comes after the 50 payloads, which the client handles in order before it.
        _ = try await client.listByRole("flood")
        #expect(channel.droppedMessageCount == 46)
        #expect(sequence.droppedCount == 46)
        #expect(channel.bufferedMessageCount == 4)
        var iterator = sequence.makeAsyncIterator()
        var kept: [Int] = []
        for _ in 0..<4 { kept.append(seq(await iterator.next())) }
        #expect(kept == [0, 1, 2, 3])
        await client.disconnect()
        #expect(await iterator.next() == nil, "the sequence ends when the channel closes")
    }

    /// `onMessage` is a consumer of the sequence: through a buffer of 2 under `.suspendReading`
    /// (the reader waits for the callback task again and again) 300 payloads reach it in order,
    /// then `onClosed`, then the client's `onDisconnected`.
    @Test func callbacksDeliverInOrderThenClosedThenDisconnected() async throws {
        let frames = channelMessages(0..<300, padBytes: 8)
        let server = channelBroker { peer, _, id in
            peer.sendJSON(["type": "connections", "id": 3, "replyTo": id, "ids": []])
            for frame in frames { peer.send(frame) }
            peer.sendJSON(["type": "channel_closed_notification", "id": 4, "channelId": "ch"])
            peer.shutdown()
        }
        defer { server.stop() }
        let client = BrokerClient(url: server.url, options: options(capacity: 2, overflow: .suspendReading))
        let events = Recorder<String>()
        client.onDisconnected = { events.append("disconnected") }
        try await client.connect(role: "r")
        let channel = try await client.openChannel("peer")
        channel.onMessage = { payload in
            events.append("\(seq(payload))")
            usleep(100)  // a slow handler: the buffer of 2 fills, the reader waits
        }
        channel.onClosed = { events.append("closed") }
        _ = try await client.listByRole("go")
        #expect(await eventually(timeout: .seconds(30)) { events.count == 302 }, "\(events.count) events")
        #expect(events.all == (0..<300).map(String.init) + ["closed", "disconnected"])
        #expect(channel.droppedMessageCount == 0)
    }

    /// Cancelling the task that iterates `messages` ends its loop, not the channel: payloads
    /// that arrive later wait in the buffer, and a new consumer gets them, in order.
    @Test func cancellingTheConsumerEndsItsLoopNotTheChannel() async throws {
        let server = channelBroker { peer, role, id in
            let range = role == "first" ? 0..<3 : 3..<5
            for frame in channelMessages(range, padBytes: 8) { peer.send(frame) }
            peer.sendJSON(["type": "connections", "id": 3, "replyTo": id, "ids": []])
        }
        defer { server.stop() }
        let client = BrokerClient(url: server.url, options: options(capacity: 8, overflow: .suspendReading))
        try await client.connect(role: "r")
        let channel = try await client.openChannel("peer")
        let seen = Recorder<Int>()
        let consumer = Task {
            for await payload in channel.messages { seen.append(seq(payload)) }
            return "loop ended"
        }
        _ = try await client.listByRole("first")
        #expect(await eventually { seen.count == 3 })
        consumer.cancel()  // it waits in next() for a fourth payload
        #expect(await consumer.value == "loop ended")
        #expect(!channel.isClosed)

        _ = try await client.listByRole("second")  // two more, while nobody iterates
        #expect(channel.bufferedMessageCount == 2)
        var iterator = channel.messages.makeAsyncIterator()
        #expect(seq(await iterator.next()) == 3)
        #expect(seq(await iterator.next()) == 4)
        #expect(seen.all == [0, 1, 2])
        await client.disconnect()
        #expect(await iterator.next() == nil)
    }
}

/// The cap on DNS lookup threads (`HostResolver`, `ConcurrencyLimit`).
@Suite("HostResolver: a capped number of lookup threads", .serialized)
struct HostLookupLimitTests {
    /// Lookups that block until the test opens the gate.
    final class Gate: Sendable {
        private let open = Mutex(false)
        let entered = Atomic<Int>(0)
        func wait() {
            entered.add(1, ordering: .sequentiallyConsistent)
            while !open.withLock({ $0 }) { usleep(1_000) }
        }
        func release() { open.withLock { $0 = true } }
    }

    private static let address: [HostResolver.Address] = {
        var storage = sockaddr_storage()
        storage.ss_family = sa_family_t(AF_INET)
        return [HostResolver.Address(family: AF_INET, storage: storage, length: socklen_t(MemoryLayout<sockaddr_in>.size))]
    }()

    @Test func defaultCapIsFour() {
        #expect(HostResolver.defaultMaxConcurrentLookups == 4)
        #expect(ClientWebSocket.maxConcurrentHostLookups == 4)
    }

    /// With a cap of 2, a third lookup waits (no thread) until one of the first two ends; a
    /// waiter cancelled meanwhile (a connect timeout) leaves without a thread or a slot.
    @Test func excessLookupsWaitForASlotAndCancellationLeavesTheLine() async throws {
        let limit = ConcurrencyLimit(limit: 2)
        let gate = Gate()
        @Sendable func resolve() async throws -> Int {
            try await HostResolver.resolveOnThread(limit: limit) {
                gate.wait()
                return .success(Self.address)
            }.count
        }
        let first = Task { try await resolve() }
        let second = Task { try await resolve() }
        #expect(await eventually { gate.entered.load(ordering: .sequentiallyConsistent) == 2 })
        let cancelled = Task { try await resolve() }
        let third = Task { try await resolve() }
        #expect(await eventually { limit.waiting == 2 })
        #expect(limit.running == 2)
        cancelled.cancel()
        do {
            _ = try await cancelled.value
            Issue.record("a cancelled waiter resolved")
        } catch {
            #expect(error is CancellationError)
        }
        #expect(limit.waiting == 1)
        let enteredWhileTwoRun = gate.entered.load(ordering: .sequentiallyConsistent)
        #expect(enteredWhileTwoRun == 2, "no third thread while two run")

        gate.release()
        #expect(try await first.value == 1)
        #expect(try await second.value == 1)
        #expect(try await third.value == 1)
        let enteredAtEnd = gate.entered.load(ordering: .sequentiallyConsistent)
        #expect(enteredAtEnd == 3)
        #expect(limit.peakRunning == 2)
        #expect(limit.waitedCount == 2)
        #expect(await eventually { limit.running == 0 && limit.waiting == 0 })
    }

    /// Twenty concurrent lookups of a real name (`localhost` goes through getaddrinfo on a
    /// thread) all resolve, never more than the cap at once.
    @Test func manyRealLookupsStayUnderTheCap() async throws {
        let limit = ConcurrencyLimit(limit: 3)
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    try await HostResolver.resolveOnThread(limit: limit) {
                        HostResolver.lookup(host: "localhost", port: 80, flags: 0)
                    }.count
                }
            }
            for try await count in group { #expect(count > 0) }
        }
        #expect(limit.peakRunning <= 3)
        #expect(limit.running == 0)
    }

    @Test func raisingTheCapAdmitsWaitersAtOnce() async throws {
        let limit = ConcurrencyLimit(limit: 1)
        try await limit.acquire()
        let waiter = Task { try await limit.acquire() }
        #expect(await eventually { limit.waiting == 1 })
        limit.limit = 2
        try await waiter.value
        #expect(limit.running == 2)
        limit.release()
        limit.release()
        #expect(limit.running == 0)
    }
}
