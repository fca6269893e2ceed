import SwitchboardJSON

/// One published message as the channel's owner shard ordered it. Immutable and shared by every
/// shard's fan-out; each subscriber's frame differs only in `seq` (see `BroadcastFrame`).
public struct BroadcasterMessage: Sendable, Equatable {
    /// Random 21-character id (the reference uses nanoid ids of this shape).
    public var id: String
    public var channel: String
    public var event: String
    /// JSON text, forwarded exactly as published.
    public var payload: [UInt8]
    public var createTimeNanoseconds: Int64
    /// Position in the channel (1, 2, …) within `epoch`, assigned by the owner shard.
    public var offset: Int
    /// Identifies one lifetime of the channel's history on its owner; a new epoch means offsets
    /// restarted and a client cannot recover across it.
    public var epoch: String

    public init(id: String, channel: String, event: String, payload: [UInt8], createTimeNanoseconds: Int64, offset: Int, epoch: String) {
        self.id = id
        self.channel = channel
        self.event = event
        self.payload = payload
        self.createTimeNanoseconds = createTimeNanoseconds
        self.offset = offset
        self.epoch = epoch
    }

    /// A fresh random id: 21 characters of `A–Z a–z 0–9 _ -` (126 random bits).
    public static func randomID() -> String {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-".utf8)
        assert(alphabet.count == 64)
        var out = [UInt8](repeating: 0, count: 21)
        for i in 0..<21 { out[i] = alphabet[Int(generator.next() & 63)] }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A broadcast notification for one message, encoded once per shard as the bytes before and
/// after the per-subscriber `seq` (so fan-out to N subscribers costs N small concatenations):
/// `{"method":"broadcast","params":{"id":…,"seq":` SEQ `,"createTime":…,"channel":…,"event":…,
/// "payload":…,"offset":…,"epoch":…}}`. Field order follows the reference; `offset` and
/// `epoch` are additions that reference clients ignore.
public struct BroadcastFrame: Sendable {
    public let prefix: [UInt8]
    public let suffix: [UInt8]

    public init(_ m: BroadcasterMessage) {
        var p: [UInt8] = Array(#"{"method":"broadcast","params":{"id":"#.utf8)
        JSONWriter.appendString(&p, m.id)
        p.append(contentsOf: #","seq":"#.utf8)
        var s: [UInt8] = Array(#","createTime":"#.utf8)
        s.reserveCapacity(m.payload.count + m.channel.utf8.count + m.event.utf8.count + 128)
        JSONWriter.appendString(&s, BroadcasterTimestamp.format(unixNanoseconds: m.createTimeNanoseconds))
        s.append(contentsOf: #","channel":"#.utf8)
        JSONWriter.appendString(&s, m.channel)
        s.append(contentsOf: #","event":"#.utf8)
        JSONWriter.appendString(&s, m.event)
        s.append(contentsOf: #","payload":"#.utf8)
        s.append(contentsOf: m.payload)
        s.append(contentsOf: #","offset":"#.utf8)
        s.append(contentsOf: String(m.offset).utf8)
        s.append(contentsOf: #","epoch":"#.utf8)
        JSONWriter.appendString(&s, m.epoch)
        s.append(contentsOf: "}}".utf8)
        prefix = p
        suffix = s
    }

    /// The notification text for a subscriber at `seq`.
    public func text(seq: Int) -> String {
        var out = prefix
        out.reserveCapacity(prefix.count + 20 + suffix.count)
        out.append(contentsOf: String(seq).utf8)
        out.append(contentsOf: suffix)
        return String(decoding: out, as: UTF8.self)
    }
}
