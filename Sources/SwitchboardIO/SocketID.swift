/// Identifies one connection for its whole life, and routes without a lookup.
///
/// Layout (most significant first): 8 bits node (0 on a single node), 8 bits shard,
/// 24 bits generation, 24 bits slot. The generation is bumped every time a slot is freed, so an
/// id kept after its connection closed is detected as stale and never reaches the slot's next
/// tenant.
public struct SocketID: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(node: Int = 0, shard: Int, slot: Int, generation: UInt32) {
        precondition(shard >= 0 && shard < 256 && slot >= 0 && slot < (1 << 24) && node >= 0 && node < 256)
        rawValue = UInt64(node) << 56 | UInt64(shard) << 48
            | UInt64(generation & SocketID.generationMask) << 24 | UInt64(slot)
    }

    public static let generationMask: UInt32 = (1 << 24) - 1
    public static let maxSlots = 1 << 24

    public var node: Int { Int(rawValue >> 56) }
    public var shard: Int { Int((rawValue >> 48) & 0xFF) }
    public var generation: UInt32 { UInt32((rawValue >> 24) & 0xFF_FFFF) }
    public var slot: Int { Int(rawValue & 0xFF_FFFF) }

    public var description: String { String(rawValue) }
    public static func < (a: SocketID, b: SocketID) -> Bool { a.rawValue < b.rawValue }
}
