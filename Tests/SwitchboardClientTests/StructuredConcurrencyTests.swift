import Foundation
import Switchboard
import SwitchboardIO
import SwitchboardProtocols
import SwitchboardTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import SwitchboardClient

/// Resident set size of this process, from /proc/self/statm (pages).
private func residentBytes() -> Int {
    let text = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? ""
    let fields = text.split(separator: " ")
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}

/// This process's TCP sockets whose peer is 127.0.0.1:`port` (any state): its descriptors
/// (socket inodes under /proc/self/fd) matched against /proc/net/tcp. Other tests running in
/// the same process do not disturb the count, unlike a count of all descriptors.
private func socketsTo(port: Int) -> Int {
    let fdDirectory = "/proc/self/fd"
    var inodes = Set<Substring>()
    for name in (try? FileManager.default.contentsOfDirectory(atPath: fdDirectory)) ?? [] {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: fdDirectory + "/" + name),
              target.hasPrefix("socket:[") else { continue }
        inodes.insert(Substring(target.dropFirst(8).dropLast()))
    }
    // Read to the end: procfs reports size 0, and the table spans many pages under load.
    let table = String(decoding: FileHandle(forReadingAtPath: "/proc/net/tcp")?.readDataToEndOfFile() ?? Data(), as: UTF8.self)
    let remote = String(format: "0100007F:%04X", port)
    return table.split(separator: "\n").dropFirst().filter { line in
        let fields = line.split(separator: " ")
        return fields.count > 9 && fields[2] == Substring(remote) && inodes.contains(fields[9])
    }.count
}

@Suite("SDK core: bounded inbound sequence, cancellation, reconnect storm", .serialized)
struct StructuredConcurrencyTests {
    /// 1 GiB in 1 MiB binary messages through a 4-message buffer that suspends the reader:
    /// while the application does not read, the server stalls (TCP flow control); while it
    /// reads, memory stays flat.
    @Test func gibibyteThroughTheBoundedSequenceWithFlatMemory() async throws {
        let messageBytes = 1 << 20, messages = 1024
        let written = Atomic<Int>(0)
        let server = RawServer { peer in
            try peer.handshake()
            var payload = [UInt8](repeating: 0, count: messageBytes)
            for i in 0..<messages {
                payload[0] = UInt8(truncatingIfNeeded: i)
                payload[messageBytes - 1] = UInt8(truncatingIfNeeded: i &* 7)
                peer.sendFrame(opcode: 2, payload: payload)
                written.add(messageBytes, ordering: .relaxed)
            }
            peer.sendFrame(opcode: 8, payload: [0x03, 0xE8])
        }
        var options = ClientWebSocket.Options()
        options.inboundCapacity = 4
        options.inboundOverflow = .suspendReading
        options.maxMessageBytes = 2 << 20
        let connection = try await ClientWebSocket.connect(to: server.url, options: options)
        // Nobody reads yet: the reader fills the buffer, then stops reading the socket.
        #expect(await eventually { connection.messages.inbox.bufferedCount == 4 })
        // Give a reader that did not stop time to show it (the assertion below fails then).
        try await Task.sleep(for: .milliseconds(300))
        let stalledAt = written.load(ordering: .relaxed)
        #expect(stalledAt < 64 << 20, "the server kept writing while nobody read: \(stalledAt) bytes")

        let baseline = residentBytes()
        var peak = baseline, received = 0, count = 0
        for await message in connection.messages {
            guard case .binary(let bytes) = message else { Issue.record("unexpected \(message)"); break }
            #expect(bytes.count == messageBytes && bytes[0] == UInt8(truncatingIfNeeded: count)
                    && bytes[messageBytes - 1] == UInt8(truncatingIfNeeded: count &* 7))
            received += bytes.count
            count += 1
            if count % 64 == 0 { peak = max(peak, residentBytes()) }
        }
        #expect(received == messageBytes * messages)
        await connection.waitUntilFinished()
        #expect(connection.closeReason == ClientWebSocket.CloseReason(code: 1000, reason: "", clean: true))
        #expect(peak - baseline < 64 << 20, "RSS grew by \(peak - baseline) bytes over 1 GiB")
    }

    /// Drop-and-count: a full buffer drops new messages and counts them; nothing blocks.
    @Test func dropNewestCountsWhatDidNotFit() async throws {
        let server = RawServer { peer in
            try peer.handshake()
            for i in 0..<100 { peer.sendText("m\(i)") }
            peer.sendFrame(opcode: 8, payload: [0x03, 0xE8])
            _ = try? peer.readFrame()  // the client's close reply
        }
        var options = ClientWebSocket.Options()
        options.inboundCapacity = 2
        options.inboundOverflow = .dropNewest
        let connection = try await ClientWebSocket.connect(to: server.url, options: options)
        await connection.waitUntilFinished()  // everything arrived before anyone read
        var got: [ClientMessage] = []
        for await message in connection.messages { got.append(message) }
        #expect(got == [.text("m0"), .text("m1")])
        #expect(connection.messages.droppedCount == 98)
        #expect(connection.closeReason?.clean == true)
    }

    /// Cancelling the task that iterates ends its loop and leaves the connection open;
    /// cancelling a connect that hangs in the handshake ends it at once and closes its socket.
    @Test func cancellation() async throws {
        let echoed = Recorder<String>()
        let server = RawServer { peer in
            try peer.handshake()
            while let frame = try? peer.readFrame(), frame.opcode == 1 { echoed.append(frame.text) }
        }
        let connection = try await ClientWebSocket.connect(to: server.url)
        let iterating = Task { for await _ in connection.messages {} }
        iterating.cancel()
        await iterating.value
        try connection.sendText("still open")
        #expect(await eventually { echoed.all == ["still open"] })
        await connection.close(timeout: .milliseconds(200))

        let silent = RawServer { peer in while (try? peer.readFrame()) != nil {} }  // never answers the upgrade
        let start = ContinuousClock.now
        let attempt = Task { try await ClientWebSocket.connect(to: silent.url) }
        #expect(await eventually { socketsTo(port: silent.port) == 1 })  // connected, waiting for the 101
        attempt.cancel()
        await #expect(throws: CancellationError.self) { try await attempt.value }
        #expect(ContinuousClock.now - start < .seconds(5), "cancellation must not wait for the 10 s connect timeout")
        #expect(socketsTo(port: silent.port) == 0, "the abandoned attempt's socket is closed")
    }

    /// The broker restarted 20 times on the same port while clients keep sending requests:
    /// every client comes back each time (backoff with jitter), and afterwards no socket and no
    /// connection (with its tasks) is left behind.
    @Test func reconnectStormLeaksNothing() async throws {
        raiseFileLimit()
        func startBroker(port: Int) throws -> Broker {
            var c = BrokerConfiguration()
            c.host = "127.0.0.1"
            c.port = port
            c.io.backend = .epoll
            c.io.shardCount = 1
            c.io.recvBufferCount = 64
            let broker = Broker(configuration: c, logger: .discarding, handlerFactory: ConnectionBroker().handlerFactory())
            try broker.start()
            return broker
        }
        var broker = try startBroker(port: 0)
        let port = broker.port
        let options = BrokerClientOptions(requestTimeout: .seconds(2), connectTimeout: .seconds(2), autoReconnect: true,
                                          reconnectDelay: .milliseconds(5), maxReconnectDelay: .milliseconds(100))
        let clients = (0..<4).map { _ in BrokerClient(url: "ws://127.0.0.1:\(port)/", options: options) }
        for client in clients { try await client.connect(role: "storm") }
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for client in clients {
                    group.addTask {
                        while !Task.isCancelled {
                            // While disconnected a request fails at once: pace the retries so
                            // four loops do not occupy the cooperative pool's threads.
                            if (try? await client.listByRole("storm")) == nil { try? await Task.sleep(for: .milliseconds(5)) }
                        }
                    }
                }
            }
        }
        for round in 1...20 {
            broker.shutdown(graceMilliseconds: 0)
            broker = try startBroker(port: port)
            let back = await eventually(timeout: .seconds(10)) {
                clients.allSatisfy { $0.isConnected && $0.reconnectCount == round }
            }
            #expect(back, "round \(round): reconnect counts \(clients.map(\.reconnectCount))")
            if !back { break }
        }
        load.cancel()
        await load.value
        for client in clients { await client.disconnect() }
        broker.shutdown(graceMilliseconds: 1000)
        #expect(await eventually(timeout: .seconds(5)) { ClientWebSocket.liveCount(port: UInt16(port)) == 0 },
                "connections (with their tasks) still alive: \(ClientWebSocket.liveCount(port: UInt16(port)))")
        #expect(socketsTo(port: port) == 0, "sockets to the broker left open: \(socketsTo(port: port))")
    }
}
