/// A random (version 4) UUID, the broker's connection and channel id. Its text form is the
/// canonical lowercase 8-4-4-4-12; only that exact form is accepted from clients (ids are
/// compared as strings in the protocol, so "ABC..." never names the same thing as "abc...").
///
/// A connection id also names the shard that owns its record (its *home*): `low % shardCount`.
/// The broker draws connection ids so that this is the socket's own shard
/// (`random(home:shardCount:)`), so any shard finds a target or a peer from its id alone.
struct UUID4: Hashable, Sendable, CustomStringConvertible {
    let high: UInt64
    let low: UInt64

    /// The variant bits (`10` in the two top bits of `low`), for random ids.
    private static let variantMask: UInt64 = 0xC000_0000_0000_0000
    private static let variantBits: UInt64 = 0x8000_0000_0000_0000

    /// 122 random bits from the system's CSPRNG (`getrandom` on Linux), version 4 and variant
    /// 10xx set.
    static func random() -> UUID4 {
        var g = SystemRandomNumberGenerator()
        let h = g.next() as UInt64, l = g.next() as UInt64
        return UUID4(high: (h & ~0xF000) | 0x4000, low: (l & ~variantMask) | variantBits)
    }

    /// A random id whose home is `home`: a random id with `low` rounded down to a multiple of
    /// `shardCount`, plus `home`. Each id of that residue class is equally likely (the map is
    /// `shardCount`-to-one onto it); the rare draw (about `shardCount` in 2^62) whose result
    /// leaves the variant bits draws again.
    ///
    /// In a cluster (`node` not nil) the top byte of `high` is the node's number (0...255),
    /// so any node finds an id's node from the id alone, as it finds its shard; 114 bits stay
    /// random.
    static func random(home: Int, shardCount: Int, node: Int? = nil) -> UUID4 {
        precondition(shardCount > 0 && home >= 0 && home < shardCount, "home \(home) outside 0..<\(shardCount)")
        precondition(node.map { (0...255).contains($0) } ?? true, "node \(node ?? -1) outside 0...255")
        let n = UInt64(shardCount)
        while true {
            let u = random()
            let (low, overflow) = (u.low - u.low % n).addingReportingOverflow(UInt64(home))
            guard !overflow, low & variantMask == variantBits else { continue }
            let high = node.map { u.high & 0x00FF_FFFF_FFFF_FFFF | UInt64($0) << 56 } ?? u.high
            let id = UUID4(high: high, low: low)
            assert(id.home(shardCount: shardCount) == home)
            return id
        }
    }

    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The node of an id drawn with `random(home:shardCount:node:)` (cluster only).
    @inline(__always) var node: Int { Int(high >> 56) }

    /// The shard owning this connection id's record.
    @inline(__always) func home(shardCount: Int) -> Int { Int(low % UInt64(shardCount)) }

    /// Parses the canonical lowercase text form (any version); nil for anything else.
    init?(_ text: String) {
        var h: UInt64 = 0, l: UInt64 = 0, n = 0, i = 0
        for c in text.utf8 {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard c == UInt8(ascii: "-") else { return nil }
            } else {
                let v: UInt64
                switch c {
                case 0x30...0x39: v = UInt64(c - 0x30)
                case 0x61...0x66: v = UInt64(c - 0x61 + 10)
                default: return nil
                }
                if n < 16 { h = h << 4 | v } else { l = l << 4 | v }
                n += 1
            }
            i += 1
            if i > 36 { return nil }
        }
        guard i == 36 else { return nil }
        high = h
        low = l
    }

    var description: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(36)
        for k in 0..<32 {
            if k == 8 || k == 12 || k == 16 || k == 20 { out.append(UInt8(ascii: "-")) }
            let word = k < 16 ? high : low
            let shift = UInt64(60 - 4 * (k % 16))
            out.append(digits[Int((word >> shift) & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The shard owning a role's member list: FNV-1a 64 of the role's UTF-8 bytes, modulo the
/// shard count — the same fixed hash as the core's channel owners, so it is stable across
/// processes (tests and operators can compute it).
func roleOwner(_ role: String, shardCount: Int) -> Int {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in role.utf8 {
        h ^= UInt64(b)
        h = h &* 0x0000_0100_0000_01B3
    }
    return Int(h % UInt64(shardCount))
}
