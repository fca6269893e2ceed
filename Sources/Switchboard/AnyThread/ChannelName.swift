/// A channel's name: any bytes (a UTF-8 string or binary), hashed once.
///
/// The owner shard of a channel is `hash % shardCount`; the hash is FNV-1a 64, fixed, so the
/// same name maps to the same owner on every node of a cluster with the same shard count.
public struct ChannelName: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let bytes: [UInt8]
    public let hash: UInt64

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        hash = h
    }

    public init(_ string: String) { self.init(Array(string.utf8)) }
    public init(stringLiteral value: String) { self.init(value) }

    public static func == (a: ChannelName, b: ChannelName) -> Bool { a.hash == b.hash && a.bytes == b.bytes }
    public func hash(into hasher: inout Hasher) { hasher.combine(hash) }

    public var description: String { String(decoding: bytes, as: UTF8.self) }

    /// The shard that orders this channel's messages.
    func owner(shardCount: Int) -> Int { Int(hash % UInt64(shardCount)) }
}
