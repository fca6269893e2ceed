/// Resource limits for one connection. Every limit fails the connection with 1009 (message too big).
@usableFromInline package struct WebSocketLimits: Sendable {
    /// Largest declared payload length of a single frame. Checked as soon as the header is read,
    /// so an oversized frame is refused before any of its payload is buffered.
    @usableFromInline package var maxFrameBytes: Int
    /// Largest assembled message, measured after inflating. Checked while inflating, so a
    /// decompression bomb is stopped at this size rather than after expanding fully.
    @usableFromInline package var maxMessageBytes: Int
    /// Most frames one message may span; bounds per-frame work on endlessly fragmented messages.
    @usableFromInline package var maxFragments: Int

    /// Creates limits; the defaults are 16 MiB frames and messages and 2^20 fragments.
    package init(maxFrameBytes: Int = 16 << 20, maxMessageBytes: Int = 16 << 20, maxFragments: Int = 1 << 20) {
        self.maxFrameBytes = maxFrameBytes
        self.maxMessageBytes = maxMessageBytes
        self.maxFragments = maxFragments
    }
}
