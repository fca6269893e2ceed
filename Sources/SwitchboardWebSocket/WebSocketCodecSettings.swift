/// What every ``WebSocketConnection`` of one owner shares: its limits, the memory budget its
/// messages are charged to, zlib's memory level, whether idle zlib streams are freed, and the
/// bound on compressed bytes derived from the limits. One instance per owner (a server shard
/// makes one for all its sockets), so a connection carries a single reference to it instead of
/// ~60 bytes of copies (issue 16 item 2: an idle WebSocket's memory is mostly this kind of
/// per-socket duplication).
///
/// Immutable; not `Sendable`, because the budget belongs to the owner's thread.
@usableFromInline package final class WebSocketCodecSettings {
    @usableFromInline package let limits: WebSocketLimits
    /// Charged with the message being assembled as it grows (inflated output included) and with
    /// the zlib streams; a refused growth fails the connection with 1013 (try again later).
    package let budget: (any WebSocketMemoryBudget)?
    /// zlib's memLevel (1...9) for the compressor.
    package let deflateMemoryLevel: Int
    /// Free a zlib stream after each message when its direction has no context takeover (nothing
    /// in it is needed by the next message), giving its charge back, instead of resetting it: an
    /// idle socket then holds no zlib state in that direction, at the price of making the stream
    /// again per message. The broker sets it; the client role's default keeps the stream.
    package let releasesIdleStreams: Bool
    /// Report a text message the codec hands over as a value (assembled from fragments, across
    /// reads or inflated, or whole in the bytes given but over the owner's scratch buffer) as
    /// ``WebSocketEvent/textBytes(_:)``, its validated bytes, instead of as a `String`: making
    /// the `String` copied an assembled message and validated every one a second time (stdlib's
    /// own check), ~3 µs of a 64 KiB echo's ~17 µs of user time (issue 16). The broker sets it:
    /// it lends the bytes to its handler. The client role's default keeps `String`s.
    package let textAsBytes: Bool
    /// Bound on compressed bytes per message: incompressible data expands by at most 5 bytes per
    /// 16 KiB stored block, so this never refuses a message whose output fits the message limit.
    let compressedLimit: Int

    /// The codec counts a message's fragments in 32 bits: a `maxFragments` above this is
    /// taken as this (each fragment is at least 2 bytes, so that is 8 GiB of frame headers).
    static let maxFragmentsCounted = Int(UInt32.max) - 1

    /// - Precondition: `deflateMemoryLevel` in 1...9.
    package init(limits: WebSocketLimits = WebSocketLimits(), budget: (any WebSocketMemoryBudget)? = nil,
                 deflateMemoryLevel: Int = 8, releasesIdleStreams: Bool = false, textAsBytes: Bool = false) {
        precondition((1...9).contains(deflateMemoryLevel))
        var limits = limits
        limits.maxFragments = min(limits.maxFragments, Self.maxFragmentsCounted)
        self.limits = limits
        self.budget = budget
        self.deflateMemoryLevel = deflateMemoryLevel
        self.releasesIdleStreams = releasesIdleStreams
        self.textAsBytes = textAsBytes
        let slack = limits.maxMessageBytes / 3000 + 1024
        let (sum, overflow) = limits.maxMessageBytes.addingReportingOverflow(slack)
        compressedLimit = overflow ? Int.max : sum
    }
}
