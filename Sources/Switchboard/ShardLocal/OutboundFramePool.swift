import SwitchboardIO
import SwitchboardWebSocket

/// Heap blocks for the small frames a shard's WebSocket driver sends to one socket (an echo, a
/// reply), recycled instead of allocated and freed per message (issue 16 item 3: the frame's
/// malloc and free were ~300 instructions of an echo's ~3,000).
///
/// A ring of at most `blockCount` blocks of `blockBytes` bytes. A block goes back into use
/// only when the pool holds the sole reference to it: the send queue that took the frame has
/// let go of it (its bytes were written, or the queue was dropped), so no queue, in-flight
/// send or caller can still read the bytes being rewritten (`OutboundBytes` promises bytes
/// that never change while a copy lives, and they do not: no other copy lives). A block still
/// held when its turn in the ring comes is skipped: that frame gets a block of its own, as a
/// frame larger than `blockBytes` does, and the pool stays at its bound.
///
/// Memory: `blockCount` x (`blockBytes` + the 32-byte object header and count) per shard, held
/// for the shard's life: 64 x 1,312 B = 82 KiB by default (a block is made when its slot is
/// first used). 1,280 bytes take a 1 KiB message's frame: with 256-byte blocks each echo of
/// 1 KiB was a malloc and free (~430 instructions: glibc's tcache stops at 1,032 bytes). Frames
/// to many sockets (a channel's fan-out) do not come from here: one frame, shared by every
/// subscriber's queue, is already one allocation per publish.
///
/// Shard thread only.
final class OutboundFramePool {
    /// Blocks in the ring (the bound on what the pool holds).
    let blockCount: Int
    /// Frame bytes (header and payload) a pooled block takes.
    let blockBytes: Int
    /// The ring: nil until a slot's block is first made. The fields below skip the dynamic
    /// exclusivity check: shard thread only, never passed `inout` across a call into other code.
    @exclusivity(unchecked) private var blocks: UnsafeMutablePointer<OutboundBytes.Storage?>
    /// The slot the next small frame tries.
    @exclusivity(unchecked) private var next = 0
    /// Frames that reused a block / that found their slot's block still held (tests read them).
    @exclusivity(unchecked) private(set) var reusedCount = 0
    @exclusivity(unchecked) private(set) var heldCount = 0

    static let defaultBlockCount = 64
    static let defaultBlockBytes = 1_280

    init(blockCount: Int = OutboundFramePool.defaultBlockCount, blockBytes: Int = OutboundFramePool.defaultBlockBytes) {
        precondition(blockCount > 0 && blockBytes >= WebSocketFrame.headerSize(payloadCount: 125))
        self.blockCount = blockCount
        self.blockBytes = blockBytes
        blocks = .allocate(capacity: blockCount)
        blocks.initialize(repeating: nil, count: blockCount)
    }

    deinit {
        blocks.deinitialize(count: blockCount)
        blocks.deallocate()
    }

    /// Blocks the pool holds now (at most `blockCount`).
    var heldBlocks: Int { (0..<blockCount).reduce(0) { $0 + (blocks[$1] == nil ? 0 : 1) } }

    /// One unmasked frame carrying `message`, in a recycled block when it fits in one.
    /// (Inlined into the send: called, it retained and released the message's string.)
    @inline(__always)
    func frame(_ message: SocketMessage) -> OutboundBytes {
        message.withFrameParts { frame($0, $1) }
    }

    /// One unmasked frame with `payload`, in a recycled block when it fits in one.
    @inline(__always)
    func frame(_ opcode: WebSocketOpcode, _ payload: UnsafeRawBufferPointer) -> OutboundBytes {
        OutboundBytes(storage: retainedFrame(opcode, payload).takeRetainedValue())
    }

    /// ``frame(_:_:)`` as the +1 reference a send takes over (`Shard.send(_:retained:)`): no
    /// value whose copy the queue retains and whose end releases.
    @inline(__always)
    func retainedFrame(_ opcode: WebSocketOpcode, _ payload: UnsafeRawBufferPointer) -> Unmanaged<OutboundBytes.Storage> {
        let total = WebSocketFrame.headerSize(payloadCount: payload.count) + payload.count
        guard total <= blockBytes else { return OutboundBytes.retainedWebSocketFrame(opcode, payload) }
        let slot = next
        next = slot + 1 == blockCount ? 0 : slot + 1
        // The block is reached unretained while the frame is written (the pool's reference
        // keeps it), and the frame takes the one reference it needs: a retained local cost a
        // second retain and a release per frame.
        let block: Unmanaged<OutboundBytes.Storage>
        if blocks[slot] == nil {
            // The slot's first frame: its block is made here, for the pool's life.
            let made = OutboundBytes.Storage.create(minimumCapacity: blockBytes) { _ in 0 }
            blocks[slot] = made
            block = .passUnretained(made)
        } else if isKnownUniquelyReferenced(&blocks[slot]) {
            reusedCount &+= 1
            block = .passUnretained(blocks[slot].unsafelyUnwrapped)
        } else {
            // Still queued (or in flight): this frame gets a block of its own.
            heldCount &+= 1
            return OutboundBytes.retainedWebSocketFrame(opcode, payload)
        }
        let (count, bytes) = block._withUnsafeGuaranteedRef {
            ($0.withUnsafeMutablePointerToHeader { $0 }, $0.withUnsafeMutablePointerToElements { $0 })
        }
        count.pointee = OutboundBytes.writeWebSocketFrame(
            opcode, payload, into: UnsafeMutableRawBufferPointer(start: bytes, count: blockBytes))
        return block.retain()
    }
}
