import SwitchboardRESP

/// Redis Cluster's key-to-slot function: CRC16 (XMODEM) of the key's hash tag (the bytes
/// between the first `{` and the first `}` after it, when not empty) or of the whole key,
/// modulo 16384. Pure.
package enum ClusterSlots {
    package static let count = 16_384

    package static func slot<C: Collection>(of key: C) -> Int where C.Element == UInt8 {
        var hashed = key[...]
        if let open = key.firstIndex(of: UInt8(ascii: "{")) {
            let afterOpen = key.index(after: open)
            if let close = key[afterOpen...].firstIndex(of: UInt8(ascii: "}")), close != afterOpen {
                hashed = key[afterOpen..<close]
            }
        }
        var crc: UInt16 = 0
        for byte in hashed {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return Int(crc) % count
    }
}

/// One range of `CLUSTER SLOTS`' answer: its slots and the master serving them.
package struct ClusterSlotRange: Sendable, Equatable {
    package let slots: ClosedRange<Int>
    package let host: String
    package let port: Int

    package init(slots: ClosedRange<Int>, host: String, port: Int) {
        self.slots = slots
        self.host = host
        self.port = port
    }

    /// `CLUSTER SLOTS`' answer (`[[start, end, [host, port, id, ...], replicas...], ...]`)
    /// taken apart; nil when it is not one (an error, a server not in cluster mode).
    package static func parse(_ value: RESPValue) -> [ClusterSlotRange]? {
        guard case .array(let entries) = value else { return nil }
        var ranges: [ClusterSlotRange] = []
        for entry in entries {
            guard case .array(let fields) = entry, fields.count >= 3, case .integer(let start) = fields[0],
                  case .integer(let end) = fields[1], 0 <= start, start <= end, end < ClusterSlots.count,
                  case .array(let master) = fields[2], master.count >= 2, case .bulkString(let host) = master[0],
                  case .integer(let port) = master[1], (1...65_535).contains(port) else { return nil }
            ranges.append(ClusterSlotRange(slots: Int(start)...Int(end), host: String(decoding: host, as: UTF8.self), port: Int(port)))
        }
        return ranges
    }
}

/// A Redis Cluster redirection: `MOVED slot host:port` (the slot lives there now: update the
/// map) or `ASK slot host:port` (this one command goes there, preceded by ASKING).
package struct ClusterRedirection: Sendable, Equatable {
    package let ask: Bool
    package let slot: Int
    package let host: String
    package let port: Int

    /// From an error reply's text; nil when it is no redirection.
    package init?(_ error: String) {
        let parts = error.split(separator: " ")
        guard parts.count == 3, parts[0] == "MOVED" || parts[0] == "ASK", let slot = Int(parts[1]), (0..<ClusterSlots.count).contains(slot),
              let colon = parts[2].lastIndex(of: ":"), let port = Int(parts[2][parts[2].index(after: colon)...]),
              (1...65_535).contains(port) else { return nil }
        ask = parts[0] == "ASK"
        self.slot = slot
        host = String(parts[2][..<colon])
        self.port = port
    }
}
