@testable import SwitchboardIO
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `epoll_read_bytes`: how much one epoll read asks for. The handler sees one delivery per read,
/// so the largest delivery is the read size when more than that waits in the socket.
@Suite("epoll read size", .serialized)
struct EpollReadBytesTests {
    /// Records each delivery's size; pauses reading after the first byte until told to go on, so
    /// that the test can fill the socket's receive queue before the server reads again.
    final class SizeRecorder: ShardEventHandler, @unchecked Sendable {
        weak var shard: Shard?
        private var lock = pthread_mutex_t()
        private var sizes: [Int] = []
        private var pausedID: SocketID?
        init() { pthread_mutex_init(&lock, nil) }
        func shardStarted(_ shard: Shard) { self.shard = shard }
        func connectionOpened(_ id: SocketID) {}
        func connectionReceived(_ id: SocketID, _ bytes: UnsafeRawBufferPointer) {
            pthread_mutex_lock(&lock)
            let first = sizes.isEmpty
            sizes.append(bytes.count)
            if first { pausedID = id }
            pthread_mutex_unlock(&lock)
            if first { shard?.pauseReading(id) }
        }
        func connectionTimedOut(_ id: SocketID, _ timer: ConnectionTimer) {}
        func connectionClosed(_ id: SocketID) {}
        var deliveries: [Int] { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return sizes }
        var paused: SocketID? { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return pausedID }
    }

    /// Sends one byte, waits until the server paused reading after it, queues `bytes` more
    /// (what the socket's buffers take), lets the server read and returns its deliveries.
    func deliveries(readBytes: Int?, queued bytes: Int) throws -> [Int] {
        var c = IOConfiguration()
        c.backend = .epoll
        c.shardCount = 1
        if let readBytes { c.epollReadBytes = readBytes }
        #expect(c.validate() == nil)
        let recorder = SizeRecorder()
        let group = ShardGroup(configuration: c, host: "127.0.0.1", port: 0) { _ in recorder }
        try group.start()
        defer { group.shutdown(graceMilliseconds: 500) }
        let client = try TestClient(port: group.port)
        try client.send([0x21])
        let id = try #require({ () -> SocketID? in
            _ = waitUntil { recorder.paused != nil }
            return recorder.paused
        }())
        try client.send([UInt8](repeating: 0x5A, count: bytes))
        let shard = try #require(recorder.shard)
        shard.execute { $0.resumeReading(id) }
        #expect(waitUntil(timeoutMilliseconds: 10_000) { recorder.deliveries.reduce(0, +) == bytes + 1 },
                "delivered \(recorder.deliveries.reduce(0, +)) of \(bytes + 1)")
        return recorder.deliveries
    }

    @Test("validation: 16 KiB ... 4 MiB; the default is 256 KiB")
    func validation() {
        var c = IOConfiguration()
        #expect(c.epollReadBytes == 256 << 10)
        for bad in [0, (16 << 10) - 1, (4 << 20) + 1] {
            c.epollReadBytes = bad
            #expect(c.validate() != nil, "\(bad) accepted")
        }
        for good in [16 << 10, 4 << 20] {
            c.epollReadBytes = good
            #expect(c.validate() == nil, "\(good) refused")
        }
    }

    @Test("a read asks for epoll_read_bytes: 16 KiB reads of a queued 100 KB, and reads larger than the former 64 KiB by default")
    func readSize() throws {
        let small = try deliveries(readBytes: 16 << 10, queued: 100_000)
        #expect(small.max() == 16 << 10, "\(small)")
        let large = try deliveries(readBytes: nil, queued: 100_000)
        print("deliveries of 100,001 bytes: \(small.count) with 16 KiB reads, \(large) by default")
        #expect(large.dropFirst().max() ?? 0 > 65_536, "\(large): no read above 64 KiB")
        #expect(large.allSatisfy { $0 <= 256 << 10 })
    }
}
