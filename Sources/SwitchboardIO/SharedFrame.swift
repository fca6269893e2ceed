import CLiburing

/// One encoded frame on its way to many send queues of one shard (a fan-out), with the
/// references those queues will hold taken in one step.
///
/// Every queued copy of a frame owns one reference to it (`SendQueue`, "Ownership"). Taken
/// one by one, that is an atomic increment per subscriber and message; here the fan-out takes
/// `references` of them at once (`swift_retain_n`: one atomic add), each `Shard.send(_:_:)`
/// that queues the frame hands one to its queue, and whatever no queue took (subscribers that
/// were skipped, refused, or are TLS connections, which queue ciphertext instead) is given
/// back in one step when the value ends (`swift_release_n`). The queues still release one by
/// one as each subscriber's bytes leave: those releases happen at different times.
///
/// Non-copyable, so the count of references not yet handed out has exactly one owner and its
/// `deinit` cannot be skipped or run twice. Shard thread only (it lives for one fan-out loop).
package struct SharedFrame: ~Copyable {
    /// The frame, retained `unusedReferences` times on behalf of this value.
    private let frame: Unmanaged<OutboundBytes.Storage>
    /// References taken and not yet handed to a queue.
    private var unusedReferences: UInt32

    /// Takes `references` references to `frame` (one per recipient that may queue it).
    package init(_ frame: OutboundBytes, references: Int) {
        precondition(references >= 0 && references <= Int(UInt32.max), "references out of range: \(references)")
        self.frame = Unmanaged.passUnretained(frame.storage)
        unusedReferences = UInt32(truncatingIfNeeded: references)
        if references > 0 { sb_swift_retain_n(self.frame.toOpaque(), unusedReferences) }
    }

    /// The frame's payload size.
    var count: Int { frame._withUnsafeGuaranteedRef { OutboundBytes.bytes(of: $0).count } }

    /// The frame's bytes, valid while the fan-out's caller holds the frame (for a queue that
    /// copies them into a send block instead of taking a reference).
    var payload: UnsafeRawBufferPointer { frame._withUnsafeGuaranteedRef { OutboundBytes.bytes(of: $0) } }

    /// The frame, borrowed (for a path that copies or encrypts it instead of queueing it).
    var bytes: OutboundBytes { OutboundBytes(storage: frame.takeUnretainedValue()) }

    /// Hands one reference to a queue, which owns it from then on.
    @inline(__always) mutating func take() -> Unmanaged<OutboundBytes.Storage> {
        precondition(unusedReferences > 0, "more recipients than references taken for the fan-out")
        unusedReferences -= 1
        return frame
    }

    /// References not handed out yet (tests).
    package var unused: Int { Int(unusedReferences) }

    deinit {
        if unusedReferences > 0 { sb_swift_release_n(frame.toOpaque(), unusedReferences) }
    }
}
