/// Memory a WebSocket codec borrows from its owner while it assembles a message: the owner's
/// shard-wide budget, so that many connections each under their own message limit cannot
/// together take the process's memory. The codec stays I/O-free: it only asks and gives back.
package protocol WebSocketMemoryBudget: AnyObject {
    /// Takes `bytes` from the budget for a socket already holding `holding` bytes of it; false
    /// (nothing taken) when they do not fit (the budget decides: e.g. by a fair share).
    func tryCharge(_ bytes: Int, holding: Int) -> Bool
    /// Gives back bytes taken earlier.
    func release(_ bytes: Int)
}

/// The bytes of the message being assembled, charged to a budget as its storage grows (not
/// when the message is complete): capacity is what is charged, since that is what is held.
///
/// Growth is geometric and done here (not by `Array.append`), so that the amount charged is
/// decided before the memory is taken.
///
/// It reaches the budget through the owner's shared ``WebSocketCodecSettings`` (one reference,
/// 8 bytes, where the budget's existential would take 16 per socket).
@usableFromInline struct AssemblyBuffer {
    private(set) var bytes: [UInt8] = []
    /// Bytes charged to `budget` for `bytes`' storage.
    private(set) var chargedBytes = 0
    /// The owner's settings: the budget, and the codec's limits (the codec reads them here).
    @usableFromInline let settings: WebSocketCodecSettings

    init(settings: WebSocketCodecSettings) { self.settings = settings }

    var budget: (any WebSocketMemoryBudget)? { settings.budget }

    @usableFromInline var count: Int { bytes.count }

    /// Makes room for `needed` bytes in total, growing at least geometrically up to `ceiling`
    /// (the message limit). False when the budget refuses the growth (nothing changes then).
    mutating func reserve(_ needed: Int, ceiling: Int) -> Bool {
        guard needed > bytes.capacity else { return true }
        let target = max(needed, min(bytes.capacity * 2, ceiling))
        if let budget {
            guard budget.tryCharge(target - chargedBytes, holding: chargedBytes) else { return false }
            chargedBytes = target
        }
        bytes.reserveCapacity(target)
        return true
    }

    /// Appends `source` if the budget allows the growth; false (nothing appended) otherwise.
    mutating func append(_ source: UnsafeRawBufferPointer, ceiling: Int) -> Bool {
        guard reserve(bytes.count + source.count, ceiling: ceiling) else { return false }
        bytes.append(contentsOf: source)
        return true
    }

    /// Appends `count` payload bytes from `source`, unmasked with `key` from `phase`, in one
    /// pass (``UnmaskedPayload``), if the budget allows the growth; nil (nothing appended)
    /// otherwise. Returns the next mask phase and the bits of the appended bytes ORed together
    /// (high bit clear: all ASCII).
    mutating func appendUnmasking(_ source: UnsafeRawPointer, count: Int, key: UInt32, phase: Int, ceiling: Int)
        -> (nextPhase: Int, bits: UInt8)? {
        guard reserve(bytes.count + count, ceiling: ceiling) else { return nil }
        var result: (nextPhase: Int, bits: UInt8) = (phase, 0)
        let before = bytes.count
        withUnsafeMutablePointer(to: &result) { result in
            bytes.append(contentsOf: UnmaskedPayload(source: source, count: count, key: key, phase: phase, result: result))
        }
        assert(bytes.count == before + count && result.nextPhase == (phase + count) & 3)
        return result
    }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R { bytes.withUnsafeBytes(body) }

    /// Hands the message over (its memory is the receiver's from now on) and starts empty.
    mutating func take() -> [UInt8] {
        let message = bytes
        clear()
        return message
    }

    /// Drops the bytes and gives their charge back.
    mutating func clear() {
        bytes = []
        if chargedBytes > 0 {
            budget?.release(chargedBytes)
            chargedBytes = 0
        }
    }
}
