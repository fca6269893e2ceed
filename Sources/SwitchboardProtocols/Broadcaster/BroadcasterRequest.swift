import SwitchboardJSON

/// Where a client left off in a channel: the last `offset` it saw in that channel's `epoch`.
public struct BroadcasterRecoveryPosition: Equatable, Sendable {
    public var offset: Int
    public var epoch: String

    public init(offset: Int, epoch: String) {
        self.offset = offset
        self.epoch = epoch
    }
}

/// `publish` parameters (WebSocket) or one REST publish body.
public struct BroadcasterPublish: Equatable, Sendable {
    public var channel: String
    public var event: String
    /// The payload's JSON text exactly as received (`null` when absent), forwarded unchanged.
    public var payload: [UInt8]

    public init(channel: String, event: String, payload: [UInt8]) {
        self.channel = channel
        self.event = event
        self.payload = payload
    }
}

/// A method call with its decoded parameters. Channel names are not validated here: which check
/// comes first (channel syntax, authentication, scope) differs per method in the reference, so
/// the handler decides.
public enum BroadcasterCall: Equatable, Sendable {
    case auth(token: String)
    case subscribe(channel: String, since: BroadcasterRecoveryPosition?)
    case unsubscribe(channel: String)
    case publish(BroadcasterPublish)
    case heartbeat

    public var method: BroadcasterMethod {
        switch self {
        case .auth: .auth
        case .subscribe: .subscribe
        case .unsubscribe: .unsubscribe
        case .publish: .publish
        case .heartbeat: .heartbeat
        }
    }
}

public enum BroadcasterMethod: String, Sendable, CaseIterable {
    case auth, subscribe, unsubscribe, publish, heartbeat
}

/// What one inbound text message is.
public enum BroadcasterInbound: Equatable, Sendable {
    /// A call; `id` 0 means a notification (no reply on success, as the reference).
    case call(id: Int, BroadcasterCall)
    /// A well-formed envelope the server answers with an error (unknown method, bad params).
    /// The reference replies to these even when `id` is 0 (then without `requestId`).
    case refused(id: Int, BroadcasterError)
    /// Not a request at all (bad JSON, not an object, `id`/`method` of the wrong type): the
    /// reference closes the connection without a reply; so does Switchboard.
    case malformed(String)
}

/// Decodes client requests. I/O-free; `maxJSONDepth` bounds nesting (payload included).
///
/// Envelope rules mirror Go's `encoding/json` decoding into the reference's structs: `id` must
/// be an integer (absent/`null` → 0), `method` a string (absent/`null` → ""), unknown members are
/// ignored, `params` absent or `null` is "missing params". Within params, a missing or `null`
/// string field is "", a field of the wrong type is "invalid params". Differences (stricter):
/// member names are matched exactly (Go matches them case-insensitively), `id` must be a safe
/// integer (±2^53-1), and the JSON itself must be strict RFC 8259.
public enum BroadcasterRequestDecoder {
    public static func decode(_ bytes: UnsafeBufferPointer<UInt8>, maxJSONDepth: Int) -> BroadcasterInbound {
        let members: [String: JSONMember]
        do {
            members = try JSONReader.parseObject(bytes, maxDepth: maxJSONDepth)
        } catch {
            switch error {
            case .invalid: return .malformed("invalid JSON")
            case .tooDeep: return .malformed("JSON nested too deeply")
            case .notAnObject: return .malformed("request is not a JSON object")
            }
        }
        var id = 0
        if let m = members["id"], m.kind != .null {
            guard m.kind == .number, let v = JSONReader.safeInteger(bytes, m.range) else { return .malformed("invalid id") }
            id = v
        }
        var method = ""
        if let m = members["method"], m.kind != .null {
            guard m.kind == .string, let s = try? JSONReader.decodeString(bytes, m.range) else { return .malformed("invalid method") }
            method = s
        }
        guard let known = BroadcasterMethod(rawValue: method) else {
            return .refused(id: id, BroadcasterError(.notFound, "method not found: " + method))
        }
        if known == .heartbeat { return .call(id: id, .heartbeat) }
        guard let p = members["params"], p.kind != .null else {
            return .refused(id: id, BroadcasterError(.invalidArgument, "missing params"))
        }
        do {
            let params = try Params(bytes, p, maxJSONDepth: maxJSONDepth)
            switch known {
            case .auth: return .call(id: id, .auth(token: try params.string("token")))
            case .subscribe: return .call(id: id, .subscribe(channel: try params.string("channel"), since: try params.since()))
            case .unsubscribe: return .call(id: id, .unsubscribe(channel: try params.string("channel")))
            case .publish: return .call(id: id, .publish(try params.publish()))
            case .heartbeat: preconditionFailure("handled above")
            }
        } catch {
            return .refused(id: id, error)
        }
    }

    /// Decodes a REST publish body: one object, or (batch) an array of objects. Nil when the
    /// body is not JSON of that shape (400 "invalid request body"); an element whose fields
    /// have the wrong types is reported per element.
    public static func decodePublishBody(_ bytes: UnsafeBufferPointer<UInt8>, maxJSONDepth: Int)
        -> (batch: Bool, items: [Result<BroadcasterPublish, BroadcasterError>])?
    {
        if let members = try? JSONReader.parseObject(bytes, maxDepth: maxJSONDepth) {
            let params = Params(bytes: bytes, members: members)
            return (false, [Result { () throws(BroadcasterError) in try params.publish() }])
        }
        guard let elements = try? JSONReader.parseArray(bytes, in: 0..<bytes.count, maxDepth: maxJSONDepth) else { return nil }
        var items: [Result<BroadcasterPublish, BroadcasterError>] = []
        items.reserveCapacity(elements.count)
        for e in elements {
            guard e.kind == .object, let members = try? JSONReader.parseObject(bytes, in: e.range, maxDepth: maxJSONDepth) else {
                items.append(.failure(BroadcasterError(.invalidArgument, "invalid params: expected an object")))
                continue
            }
            let params = Params(bytes: bytes, members: members)
            items.append(Result { () throws(BroadcasterError) in try params.publish() })
        }
        return (true, items)
    }

    /// A params object's members, with Go-like typed field access.
    struct Params {
        let bytes: UnsafeBufferPointer<UInt8>
        let members: [String: JSONMember]

        init(bytes: UnsafeBufferPointer<UInt8>, members: [String: JSONMember]) {
            self.bytes = bytes
            self.members = members
        }

        init(_ bytes: UnsafeBufferPointer<UInt8>, _ member: JSONMember, maxJSONDepth: Int) throws(BroadcasterError) {
            guard member.kind == .object, let members = try? JSONReader.parseObject(bytes, in: member.range, maxDepth: maxJSONDepth) else {
                throw BroadcasterError(.invalidArgument, "invalid params: expected an object")
            }
            self.init(bytes: bytes, members: members)
        }

        func string(_ key: String) throws(BroadcasterError) -> String {
            guard let m = members[key], m.kind != .null else { return "" }
            guard m.kind == .string, let s = try? JSONReader.decodeString(bytes, m.range) else {
                throw BroadcasterError(.invalidArgument, "invalid params: \(key) must be a string")
            }
            return s
        }

        func since() throws(BroadcasterError) -> BroadcasterRecoveryPosition? {
            guard let m = members["since"], m.kind != .null else { return nil }
            let bad = BroadcasterError(.invalidArgument, "invalid params: since must be {\"offset\": integer >= 0, \"epoch\": string}")
            guard m.kind == .object, let inner = try? JSONReader.parseObject(bytes, in: m.range, maxDepth: 2),
                  let o = inner["offset"], o.kind == .number, let offset = JSONReader.safeInteger(bytes, o.range), offset >= 0,
                  let e = inner["epoch"], e.kind == .string, let epoch = try? JSONReader.decodeString(bytes, e.range)
            else { throw bad }
            return BroadcasterRecoveryPosition(offset: offset, epoch: epoch)
        }

        func publish() throws(BroadcasterError) -> BroadcasterPublish {
            let channel = try string("channel")
            let event = try string("event")
            let payload: [UInt8]
            if let m = members["payload"] {
                payload = Array(bytes[m.range])
            } else {
                payload = Array("null".utf8)
            }
            return BroadcasterPublish(channel: channel, event: event, payload: payload)
        }
    }
}
