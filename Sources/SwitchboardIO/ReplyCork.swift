/// The replies a read produces for its own connection, gathered while the handler runs and
/// written with one `send(2)` straight from here when it returns (epoll only).
///
/// Why: an echo's reply took a send block, went into the connection's queue, was listed for the
/// end-of-turn flush and written from there, and the block went back to the pool: ~260 user
/// instructions of a ~1,000-instruction echo (callgrind, issue 16 items 3 and 6). The C++ peer
/// corks a callback's writes in one loop-wide 16 KiB buffer and writes them when the callback
/// returns; this is the same: a WebSocket reply written in place
/// (`Shard.send(_:header:headerBytes:copying:)`), or any encoded frame or response
/// (`send(_:_:)`, `send(_:retained:)`: an HTTP response, a protocol's reply), copied, while it
/// fits. Everything else is as before: sends to other connections, a fan-out's frames, frames
/// that do not fit, TLS and outbound connections (whose reads do not take this path) and
/// io_uring (whose send buffer must outlive the call) use the queue.
///
/// Order: a connection's bytes go out in the order they were sent. The cork takes bytes only
/// while its connection's queue is empty, so everything sent before them is already in the
/// kernel's hands; every other way to queue on, measure or close that connection first moves
/// the cork's bytes into its queue (`Shard.settleCork`), and they keep their place.
///
/// Limits: `capacityBytes` is `reply_cork_bytes` (16 KiB by default; 0: no cork): a reply that
/// would not fit moves the cork's bytes into the queue (a send block when they fit one) and is
/// queued itself, by reference. Until 12-02 the cork was one send block (1 KiB), so an echo of
/// 1 KiB (a 1,028-byte frame) took the pooled frame, the queue and the end-of-turn flush
/// (issue 16: 0.89x the peer's rate on epoll). The buffer is the shard's, allocated once. The
/// cork's bytes count against the connection's send-queue limit as a queued run would
/// (`Shard.admitSend`); they are not charged to the shard's memory budget (they are not held
/// past the read, and there is one cork per shard).
///
/// Thread rules: shard thread only, a field of the shard (`Shard.cork`).
struct ReplyCork {
    /// `slot` outside a read.
    static let none = -1

    /// The connection whose read the handler is handling (`Shard.deliver`), or `none`.
    var slot = ReplyCork.none
    /// Bytes gathered, at most `capacityBytes`. Invariant: non-zero only while `slot` names a
    /// connection that is open and whose send queue is empty.
    var count = 0
    /// 0: the backend does not cork (io_uring), and `buffer` is nil.
    let capacityBytes: Int
    let buffer: UnsafeMutableRawPointer?

    init(capacityBytes: Int) {
        precondition(capacityBytes >= 0, "a cork's capacity is not negative")
        self.capacityBytes = capacityBytes
        buffer = capacityBytes > 0 ? .allocate(byteCount: capacityBytes + Self.storeSlackBytes, alignment: 64) : nil
    }

    /// The gathered bytes.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: buffer, count: count) }

    /// Whether `total` more bytes fit.
    @inline(__always) func hasRoom(for total: Int) -> Bool { count &+ total <= capacityBytes }

    /// Appends a frame given as its header word (`headerBytes` of it count, the first in the low
    /// bits) and payload. The caller checked `hasRoom(for: headerBytes + payload.count)`. The
    /// header is one 8-byte store, of which only `headerBytes` are counted: the buffer has
    /// `storeSlackBytes` past `capacityBytes` for it.
    @inline(__always) mutating func append(header: UInt64, headerBytes: Int, payload: UnsafeRawBufferPointer) {
        let total = headerBytes &+ payload.count
        assert(headerBytes > 0 && headerBytes <= MemoryLayout<UInt64>.size, "a header of 1 to 8 bytes")
        assert(hasRoom(for: total), "a frame that does not fit in the cork")
        let start = buffer.unsafelyUnwrapped + count
        start.storeBytes(of: header.littleEndian, as: UInt64.self)
        if let source = payload.baseAddress { (start + headerBytes).copyMemory(from: source, byteCount: payload.count) }
        count = count &+ total
    }

    /// Appends bytes (an encoded frame or response). The caller checked `hasRoom(for: bytes.count)`.
    @inline(__always) mutating func append(_ bytes: UnsafeRawBufferPointer) {
        assert(hasRoom(for: bytes.count), "bytes that do not fit in the cork")
        if let source = bytes.baseAddress { (buffer.unsafelyUnwrapped + count).copyMemory(from: source, byteCount: bytes.count) }
        count = count &+ bytes.count
    }

    /// Room past `capacityBytes` for `append`'s 8-byte header store.
    private static let storeSlackBytes = MemoryLayout<UInt64>.size

    func deallocate() { buffer?.deallocate() }
}
