/// One end of a WebSocket, server or client (``WebSocketRole``): incremental frame decoding
/// straight from receive buffers, message assembly, control frames, the close handshake, UTF-8
/// validation, permessage-deflate, and masking as the role requires (a server refuses unmasked
/// frames, a client refuses masked ones and masks everything it sends).
///
/// A struct holding two reference-typed zlib streams when deflate is negotiated: copying a
/// connection shares those streams, so keep exactly one value per socket. It is not `Sendable`;
/// it belongs to the thread that owns the socket.
///
/// Events are reported through the closure passed to ``receive(_:_:)``; that closure must not call
/// back into the same connection (collect the events, then act on them).
///
/// Non-minimal length encodings (a 16-bit length below 126, a 64-bit length below 65536) are
/// accepted: RFC 6455 only obliges senders to use the minimal form, and rejecting them buys nothing.
///
/// Memory (issue 16 item 2): a server owns one per WebSocket, idle ones included, so the value
/// is kept to 75 bytes (`WebSocketMemoryTests` checks the size). What every connection of an
/// owner shares is one reference to ``WebSocketCodecSettings``; what most connections never use
/// (deflate, masking keys, split headers, control payloads) is out of line in
/// `WebSocketConnectionExtras`; counters are 32-bit where their range allows it, and the
/// fields are declared widest first (Swift lays a struct out in declaration order).
@usableFromInline package struct WebSocketConnection {
    /// Where the decoder is in the byte stream.
    @usableFromInline enum ReceiveState: UInt8 {
        /// Reading a frame header (possibly split across calls).
        case header
        /// Reading the payload of the current frame.
        case payload
        /// Closed or failed: all further input is ignored.
        case done
    }

    /// The close handshake (RFC 6455 §7).
    @usableFromInline enum CloseState: UInt8 {
        case open
        /// We sent a close and wait for the peer's; data frames are dropped meanwhile.
        case closeSent
        /// Both sides are done, or the connection failed.
        case finished
    }

    /// Where the current frame's payload goes.
    enum PayloadSink: UInt8 {
        case control
        case data
        case compressed
        case discard
        /// The frame is a whole uncompressed message and its payload is in the buffer being
        /// read: it goes from there to the owner (`deliverWhole`), never through `messageBuffer`.
        case whole
    }

    /// Deflate state, masking keys, a split header or a control payload; nil on an idle plain
    /// server socket (see `WebSocketConnectionExtras`).
    @usableFromInline var extras: WebSocketConnectionExtras?
    /// Payload bytes of the current frame still to come.
    var frameRemaining = 0
    /// The message being assembled, charged to the owner's budget as it grows. It holds the
    /// reference to the shared settings (`settings`, its last field). Declared after
    /// `frameRemaining` so that what a whole message in one read touches (the settings, the
    /// counters and the state bytes below) is one run of 43 bytes: with the session's own
    /// per-message fields behind it, two cache lines per message wherever malloc puts the
    /// session (`WebSocketSession`).
    @usableFromInline var messageBuffer: AssemblyBuffer
    /// Data messages delivered so far: how ``receive(_:maxMessages:_:)`` bounds its work.
    /// (Set within the module only; `internal(set)` rather than `private(set)` so that the
    /// inlinable `receiveWholeMessage` may count.)
    @usableFromInline package internal(set) var messagesCompleted = 0
    // Current frame.
    var frameKey: UInt32 = 0
    /// Frames of the current message (at most `maxFragments` + 1, which
    /// ``WebSocketCodecSettings`` keeps below `UInt32.max`).
    @usableFromInline var messageFragments: UInt32 = 0
    @usableFromInline var framesCompletedCount: UInt32 = 0
    @usableFromInline var messagesStartedCount: UInt32 = 0
    @usableFromInline var receiveState: ReceiveState = .header
    @usableFromInline var closeState: CloseState = .open
    /// Header bytes held in `extras.headerStorage` (0...13).
    @usableFromInline var headerFilled: UInt8 = 0
    var frameOpcode: WebSocketOpcode = .continuation
    var frameFin = false
    /// Position in the 4-byte mask where the next payload byte falls (0...3).
    var framePhase: UInt8 = 0
    var sink: PayloadSink = .discard
    // Current message: `messageOpcode` is .text or .binary while one is in progress.
    @usableFromInline var messageOpcode: WebSocketOpcode?
    @usableFromInline var messageCompressed = false
    var validator = UTF8Validator()
    @usableFromInline let role: WebSocketRole

    /// The owner's shared limits, budget and zlib memory level.
    @inlinable var settings: WebSocketCodecSettings { messageBuffer.settings }
    @inlinable var limits: WebSocketLimits { settings.limits }
    var budget: (any WebSocketMemoryBudget)? { settings.budget }
    /// Negotiated permessage-deflate parameters, nil when off.
    var deflate: PerMessageDeflateParameters? { extras?.deflate }
    /// permessage-deflate was negotiated: outgoing messages may be compressed. (Inlinable, as
    /// the accessors the server's driver reads per message: a call would copy the codec.)
    @inlinable package var compresses: Bool { extras?.hasDeflate ?? false }

    /// Frames completed so far (every kind; wraps at 2^32).
    package var framesCompleted: Int { Int(framesCompletedCount) }
    /// Data messages begun so far (wraps at 2^32): with ``isAssemblingMessage``, tells the owner
    /// whether the message in progress is the one it started timing. (An owner comparing two
    /// values 2^32 messages apart would take them for the same message: it only decides whether
    /// a timer restarts.)
    @inlinable package var messagesStarted: Int { Int(messagesStartedCount) }

    /// Messages shorter than this are sent uncompressed: deflate cannot gain anything meaningful
    /// on them and RFC 7692 lets every message choose (RSV1 clear = not compressed).
    package static let compressionThreshold = 32

    /// Creates a connection in the open state, speaking for `role`'s end. `deflate` comes from
    /// the handshake result (``WebSocketHandshake`` on a server, ``WebSocketClientHandshake`` on
    /// a client).
    /// `budget`, when given, is charged with the message being assembled as it grows (inflated
    /// output included); a refused growth fails the connection with 1013 (try again later).
    /// `deflateMemoryLevel` is zlib's memLevel (1...9) for the compressor. `releasesIdleStreams`
    /// frees the compressor (decompressor) after each message when our (the peer's) side
    /// negotiated no context takeover, rather than keeping it reset for the next message.
    package init(role: WebSocketRole = .server, limits: WebSocketLimits = WebSocketLimits(),
                deflate: PerMessageDeflateParameters? = nil,
                budget: (any WebSocketMemoryBudget)? = nil, deflateMemoryLevel: Int = 8,
                releasesIdleStreams: Bool = false) {
        self.init(role: role, settings: WebSocketCodecSettings(limits: limits, budget: budget,
                                                               deflateMemoryLevel: deflateMemoryLevel,
                                                               releasesIdleStreams: releasesIdleStreams),
                  deflate: deflate)
    }

    /// Creates a connection in the open state with an owner's shared `settings` (a server shard
    /// passes the same instance to all its sockets).
    package init(role: WebSocketRole = .server, settings: WebSocketCodecSettings,
                 deflate: PerMessageDeflateParameters? = nil) {
        self.role = role
        messageBuffer = AssemblyBuffer(settings: settings)
        // The extras are made here only when the socket needs them for its whole life; the
        // control buffer in them is allocated by the first control frame, not here.
        let maskKeys = role == .client ? WebSocketMaskKeys() : nil
        if deflate != nil || maskKeys != nil {
            extras = WebSocketConnectionExtras(deflate: deflate, maskKeys: maskKeys)
        }
    }

    /// The extras, made on first need (a split header, a control frame).
    mutating func makeExtras() -> WebSocketConnectionExtras {
        if let extras { return extras }
        let made = WebSocketConnectionExtras(deflate: nil, maskKeys: nil)
        extras = made
        return made
    }

    /// Drops the extras when they only held a frame that is over (a plain server socket after a
    /// split header or a control frame): an idle socket goes back to holding nothing.
    mutating func dropExtrasIfUnused() {
        guard let e = extras, !e.isPermanent, headerFilled == 0, receiveState != .payload || sink != .control else { return }
        extras = nil
    }

    /// False after a close was sent or received, or after a failure.
    @inlinable package var isOpen: Bool { closeState == .open && receiveState != .done }

    /// A data message has begun and not ended (its bytes, if any, are held).
    @inlinable package var isAssemblingMessage: Bool { messageOpcode != nil && receiveState != .done }
    /// Whether the next byte received begins a frame (no header or payload in progress), so the
    /// owner may read the frame's length from the input itself. `mutating` though it only reads:
    /// the driver reaches the codec through its session's class property, and as a getter the
    /// whole struct was copied for the call (a retain and release of each of its references,
    /// ~150 instructions), where a mutating call accesses it in place.
    @inlinable package mutating func isAtFrameStart() -> Bool { receiveState == .header && headerFilled == 0 }

    /// Bytes held for the message being assembled (its storage, as charged to the budget).
    package var assemblyBytes: Int { messageBuffer.chargedBytes }

    // MARK: - Receiving

    /// Feeds received bytes (any split works, down to one byte at a time) and calls `handle` for each
    /// event in order. After `.closed` or `.failed`, further input is ignored.
    package mutating func receive(_ bytes: UnsafeRawBufferPointer, _ handle: (consuming WebSocketEvent) -> Void) {
        _ = receive(bytes, maxMessages: .max, handle)
    }

    /// Like ``receive(_:_:)``, but stops once `maxMessages` data messages were delivered, or
    /// `maxFrames` frames of any kind completed, and returns how many bytes it used: the owner
    /// keeps the rest and feeds it later, so one peer's burst of requests cannot hold the thread
    /// (each message is work for the owner's handler), and an owner that collects the events of
    /// a call holds at most `maxFrames` + 2 of them (a read full of pings is one event each).
    /// After `.closed` or `.failed` it reports every byte used (the rest is ignored anyway).
    ///
    /// With a `scratch` buffer, a message whole in `bytes` (one frame, uncompressed, not empty)
    /// of at most `scratch.count` bytes is unmasked (and, if text, validated) into it and
    /// reported as `.inScratch`; the owner must leave the buffer alone until it acted on the
    /// event. Only with `maxMessages` 1: a second message would overwrite the first.
    package mutating func receive(_ bytes: UnsafeRawBufferPointer, maxMessages: Int, maxFrames: Int = .max,
                                 scratch: UnsafeMutableRawBufferPointer? = nil,
                                 _ handle: (consuming WebSocketEvent) -> Void) -> Int {
        precondition(maxMessages > 0 && maxFrames > 0)
        precondition(scratch == nil || maxMessages == 1, "a scratch buffer holds one message")
        guard let base = bytes.baseAddress else { return 0 }
        let end = bytes.count
        let stopAt = messagesCompleted &+ maxMessages
        // Frames are counted in 32 bits (wrapping): a bound of 2^32 or more is no bound.
        let framesAtStart = framesCompletedCount
        let frameBound = UInt32(clamping: maxFrames)
        var offset = 0
        while offset < end {
            if (messagesCompleted == stopAt || framesCompletedCount &- framesAtStart >= frameBound) && receiveState != .done {
                return offset
            }
            switch receiveState {
            case .done:
                return end
            case .header:
                // Fast path: the whole header is in this buffer, parse it in place.
                if headerFilled == 0 && end - offset >= 2 {
                    let need = WebSocketFrameHeader.length(secondByte: base.load(fromByteOffset: offset + 1, as: UInt8.self))
                    if end - offset >= need {
                        offset += need
                        if !beginFrame(base + (offset - need), payloadInBuffer: end - offset, handle) { return end }
                        if sink == .whole && receiveState == .payload {
                            // The common message: one frame, whole in this buffer.
                            let count = frameRemaining
                            if !deliverWhole(base + offset, count: count, scratch: scratch, handle) { return end }
                            offset += count
                        }
                        continue
                    }
                }
                offset += accumulateHeader(base + offset, count: end - offset, handle)
            case .payload:
                let count = min(frameRemaining, end - offset)
                if !consume(base + offset, count: count, handle) { return end }
                offset += count
                frameRemaining -= count
                if frameRemaining == 0 && !finishFrame(handle) { return end }
            }
        }
        return end
    }

    /// The common message, without the event closure or the frame-by-frame state machine
    /// (issue 16 item 3): when `bytes` begins with a whole message in one frame (text or
    /// binary, FIN, no RSV bit, masked as the role requires, not empty, within the limits, no
    /// message in progress, nothing of a header held) that fits `scratch`, it is unmasked into
    /// `scratch` (text validated: valid UTF-8, complete) and its opcode, length and the bytes
    /// it took are returned, the connection left as
    /// ``receive(_:maxMessages:scratch:_:)`` leaves it after the same message (`.inScratch`).
    ///
    /// Anything else returns nil with nothing changed (`scratch` may have been written): the
    /// owner calls `receive`, which handles it, and fails the connection where it must
    /// (invalid text, a frame over the limits). The fields of the current frame are not set:
    /// no frame is in progress after a whole one, and the next header sets them.
    ///
    /// Inlinable, and inlined (issue 16 item 3): it runs once per echoed message, and as a call
    /// from the driver (another module) its frame was ~35 instructions of ~1,020. What it reads
    /// is `@usableFromInline` for that (the limits through the settings, the frame header's
    /// fields, the counters); the non-ASCII text check stays a call (`checkText`).
    @inlinable @inline(__always) package mutating func receiveWholeMessage(_ bytes: UnsafeRawBufferPointer, scratch: UnsafeMutableRawBufferPointer)
        -> (opcode: WebSocketOpcode, count: Int, used: Int)? {
        guard receiveState == .header, headerFilled == 0, closeState == .open, messageOpcode == nil,
              bytes.count >= 2, let base = bytes.baseAddress else { return nil }
        let byte0 = base.load(as: UInt8.self)
        let byte1 = base.load(fromByteOffset: 1, as: UInt8.self)
        // The frame `beginFrame` calls common: every rule of `checkPrefix` holds for it.
        guard byte0 == 0x81 || byte0 == 0x82, (byte1 & 0x80 != 0) == role.expectsMaskedFrames,
              let header = WebSocketFrameHeader.parse(base, available: bytes.count) else { return nil }
        let length = header.payloadLength
        let available = bytes.count - header.headerLength
        // (A length with the top bit set is over every limit: refused by the first test.)
        guard length <= UInt64(limits.maxFrameBytes), length > 0, length <= UInt64(available), length <= UInt64(scratch.count)
        else { return nil }
        let count = Int(length)
        assert(messageBuffer.count == 0, "no message in progress, yet bytes assembled")
        guard count <= limits.maxMessageBytes, limits.maxFragments >= 1 else { return nil }
        let out = scratch.baseAddress!
        let source = base + header.headerLength
        let isText = byte0 == 0x81
        if !isText {
            Self.unmask(source, into: out, count: count, key: header.maskKey)
        } else if Self.unmaskText(source, into: out, count: count, key: header.maskKey) != .valid {
            return nil
        }
        // What `beginFrame` and `deliverWhole` count for it.
        messagesStartedCount &+= 1
        messageCompressed = false
        messageFragments = 1
        framesCompletedCount &+= 1
        messagesCompleted &+= 1
        return (isText ? .text : .binary, count, header.headerLength + count)
    }

    /// Copies header bytes that arrived in pieces; begins the frame once complete. Returns bytes used.
    mutating func accumulateHeader(_ pointer: UnsafeRawPointer, count: Int, _ handle: (consuming WebSocketEvent) -> Void) -> Int {
        let extras = makeExtras()
        var storage = extras.headerStorage
        var filled = Int(headerFilled)
        var used = 0
        let complete: Bool = withUnsafeMutableBytes(of: &storage) { buffer in
            if filled < 2 {
                let take = min(2 - filled, count)
                buffer.baseAddress!.advanced(by: filled).copyMemory(from: pointer, byteCount: take)
                filled += take
                used += take
                if filled < 2 { return false }
            }
            let need = WebSocketFrameHeader.length(secondByte: buffer[1])
            let take = min(need - filled, count - used)
            buffer.baseAddress!.advanced(by: filled).copyMemory(from: pointer + used, byteCount: take)
            filled += take
            used += take
            return filled == need
        }
        if complete {
            headerFilled = 0
            // (No `payloadInBuffer`: a frame whose header came in pieces takes the assembling path.)
            if withUnsafeBytes(of: storage, { beginFrame($0.baseAddress!, payloadInBuffer: 0, handle) }) { dropExtrasIfUnused() }
            return used
        }
        assert(filled < 14)
        extras.headerStorage = storage
        headerFilled = UInt8(filled)
        // Fail as soon as the first two bytes are known to be wrong, without waiting for the rest.
        if filled >= 2 {
            let (byte0, byte1) = withUnsafeBytes(of: storage) { ($0[0], $0[1]) }
            if let (code, reason) = checkPrefix(byte0, byte1) {
                _ = fail(code, reason, handle)
            }
        }
        return used
    }

    /// The rules decidable from the first two header bytes. Returns the failure, or nil.
    func checkPrefix(_ byte0: UInt8, _ byte1: UInt8) -> (UInt16, String)? {
        if byte0 & 0x30 != 0 { return (WebSocketCloseCode.protocolError, "RSV2/RSV3 set") }
        guard let opcode = WebSocketOpcode(rawValue: byte0 & 0x0F) else {
            return (WebSocketCloseCode.protocolError, "reserved opcode")
        }
        if (byte1 & 0x80 != 0) != role.expectsMaskedFrames { return (WebSocketCloseCode.protocolError, role.maskingViolation) }
        let rsv1 = byte0 & 0x40 != 0
        if opcode.isControl {
            if byte0 & 0x80 == 0 { return (WebSocketCloseCode.protocolError, "fragmented control frame") }
            if byte1 & 0x7F > 125 { return (WebSocketCloseCode.protocolError, "control frame over 125 bytes") }
            if rsv1 { return (WebSocketCloseCode.protocolError, "RSV1 on a control frame") }
        } else if opcode == .continuation {
            if messageOpcode == nil { return (WebSocketCloseCode.protocolError, "continuation without a message") }
            if rsv1 { return (WebSocketCloseCode.protocolError, "RSV1 on a continuation frame") }
        } else {
            if messageOpcode != nil { return (WebSocketCloseCode.protocolError, "new message inside a fragmented message") }
            if rsv1 && deflate == nil { return (WebSocketCloseCode.protocolError, "RSV1 without permessage-deflate") }
        }
        return nil
    }

    /// Validates a complete header at `pointer` and sets up the frame. Returns false if the connection failed.
    /// `payloadInBuffer`: payload bytes that follow the header in the caller's buffer; when the
    /// frame is a whole uncompressed message within them, the sink is `.whole` and the caller
    /// delivers it with `deliverWhole`.
    mutating func beginFrame(_ pointer: UnsafeRawPointer, payloadInBuffer: Int, _ handle: (consuming WebSocketEvent) -> Void) -> Bool {
        let byte0 = pointer.load(as: UInt8.self)
        let byte1 = pointer.load(fromByteOffset: 1, as: UInt8.self)
        // The common frame, a whole text or binary message (FIN, no RSV bit) masked as the role
        // requires, with no message in progress, keeps every rule of `checkPrefix`: it is not
        // called for it (a call returning an optional tuple with a string, per message).
        let common = (byte0 == 0x81 || byte0 == 0x82) && (byte1 & 0x80 != 0) == role.expectsMaskedFrames
            && messageOpcode == nil
        if !common, let (code, reason) = checkPrefix(byte0, byte1) { return fail(code, reason, handle) }
        assert(checkPrefix(byte0, byte1) == nil, "a frame the fast path took breaks a rule")
        // Both callers hold the whole header (its length comes from byte1), so parsing cannot fall short.
        guard let header = WebSocketFrameHeader.parse(pointer, available: WebSocketFrameHeader.length(secondByte: byte1)) else {
            preconditionFailure("beginFrame called with a partial header")
        }
        let length = header.payloadLength
        if length >> 63 != 0 { return fail(WebSocketCloseCode.protocolError, "64-bit length with the top bit set", handle) }
        if length > UInt64(limits.maxFrameBytes) {
            return fail(WebSocketCloseCode.messageTooBig, "frame too big", handle)
        }
        let count = Int(length)
        // checkPrefix accepted it; the common frame's without the (outlined) initializer's call.
        let opcode: WebSocketOpcode = byte0 == 0x81 ? .text : byte0 == 0x82 ? .binary : WebSocketOpcode(rawValue: byte0 & 0x0F)!
        // 0 for an unmasked (server-sent) frame: XOR with 0 is the identity, so consume skips it.
        frameKey = header.maskKey
        framePhase = 0
        frameOpcode = opcode
        frameFin = byte0 & 0x80 != 0
        frameRemaining = count

        if opcode.isControl {
            sink = .control
            makeExtras().controlBuffer.removeAll(keepingCapacity: true)
        } else {
            if opcode != .continuation {
                messageStarted()
                messageOpcode = opcode
                messageCompressed = byte0 & 0x40 != 0
                messageFragments = 0
                extras?.compressedBytes = 0
                validator.reset()
            }
            messageFragments += 1
            if Int(messageFragments) > limits.maxFragments {
                return fail(WebSocketCloseCode.messageTooBig, "too many fragments", handle)
            }
            if closeState != .open {
                sink = .discard
            } else if messageCompressed {
                // checkPrefix refused RSV1 without deflate, so the extras exist.
                let extras = extras!
                if extras.inflater == nil && !makeInflater() {
                    return fail(WebSocketCloseCode.tryAgainLater, Self.overBudgetReason, handle)
                }
                extras.compressedBytes += count
                if extras.compressedBytes > settings.compressedLimit {
                    return fail(WebSocketCloseCode.messageTooBig, "message too big", handle)
                }
                sink = .compressed
            } else {
                if count > limits.maxMessageBytes - messageBuffer.count {
                    return fail(WebSocketCloseCode.messageTooBig, "message too big", handle)
                }
                if opcode != .continuation && frameFin && count > 0 && count <= payloadInBuffer {
                    // A whole message in the caller's buffer: `deliverWhole` hands it over from
                    // there. Nothing is reserved or charged to the budget: the codec never holds
                    // it (the budget bounds what it holds between reads; a message handed over
                    // is the owner's, as after `take()`).
                    sink = .whole
                    receiveState = .payload
                    return true
                }
                // Only the first frame reserves (per-fragment exact reserves would defeat geometric growth),
                // and at most 1 MiB: a header alone must not commit 16 MiB per connection.
                if opcode != .continuation
                    && !messageBuffer.reserve(min(count, 1 << 20), ceiling: limits.maxMessageBytes) {
                    return fail(WebSocketCloseCode.tryAgainLater, Self.overBudgetReason, handle)
                }
                sink = .data
            }
        }
        receiveState = .payload
        if count == 0 { return finishFrame(handle) }
        return true
    }

    /// Delivers a message whose single frame is whole at `pointer` (`beginFrame` chose the
    /// `.whole` sink): unmasked once, straight into the value handed over (a text message's
    /// `String` storage, a binary message's array), and validated there. Same events, close
    /// codes and reasons as the assembling path. Returns false if the connection failed.
    /// With a `scratch` buffer it fits in, the message is unmasked there instead and reported as
    /// `.inScratch` (see ``receive(_:maxMessages:scratch:_:)``).
    mutating func deliverWhole(_ pointer: UnsafeRawPointer, count: Int, scratch: UnsafeMutableRawBufferPointer?,
                               _ handle: (consuming WebSocketEvent) -> Void) -> Bool {
        assert(sink == .whole && receiveState == .payload && frameRemaining == count && count > 0)
        assert(messageBuffer.count == 0, "a whole message begins with nothing assembled")
        let key = frameKey
        let isText = messageOpcode == .text
        frameRemaining = 0
        receiveState = .header
        messageOpcode = nil
        if let scratch, count <= scratch.count {
            let out = scratch.baseAddress!
            if !isText {
                Self.unmask(pointer, into: out, count: count, key: key)
            } else if let failure = Self.unmaskText(pointer, into: out, count: count, key: key).failure {
                // Checked before the owner sees any of it.
                return fail(failure.code, failure.reason, handle)
            }
            framesCompletedCount &+= 1
            messagesCompleted &+= 1
            handle(.inScratch(isText ? .text : .binary, count: count))
            return true
        }
        if isText && !settings.textAsBytes {
            // Validated here, in the string's own storage, before the string exists: invalid
            // bytes make an empty string, never a repaired one. (String's initializer checks the
            // bytes again: no public initializer skips that; on ASCII it is a word at a time.)
            var check = TextCheck.valid
            let text = String(unsafeUninitializedCapacity: count) { out in
                check = Self.unmaskText(pointer, into: out.baseAddress!, count: count, key: key)
                return check == .valid ? count : 0
            }
            if let failure = check.failure { return fail(failure.code, failure.reason, handle) }
            assert(text.utf8.count == count)
            framesCompletedCount &+= 1
            messagesCompleted &+= 1
            handle(.text(text))
            return true
        }
        // Binary, or text the owner lends as bytes (`textAsBytes`; no `String` made, the stdlib's
        // second check of the bytes): unmasked into the array handed over, text validated there,
        // as into the scratch buffer above. (A text message over the owner's scratch, whole in
        // one read: up to `epoll_read_bytes` on the broker's epoll shards.)
        var check = TextCheck.valid
        let message = [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
            if isText {
                check = Self.unmaskText(pointer, into: out.baseAddress!, count: count, key: key)
            } else {
                Self.unmask(pointer, into: out.baseAddress!, count: count, key: key)
            }
            initialized = check == .valid ? count : 0
        }
        if let failure = check.failure { return fail(failure.code, failure.reason, handle) }
        framesCompletedCount &+= 1
        messagesCompleted &+= 1
        handle(isText ? .textBytes(message) : .binary(message))
        return true
    }

    /// What a whole text payload turned out to be (`unmaskText`).
    @usableFromInline enum TextCheck {
        case valid
        case invalid
        /// Valid so far, but the message ends inside a UTF-8 sequence.
        case incomplete

        /// The close code and reason a failed check closes with (as the assembling path's).
        var failure: (code: UInt16, reason: String)? {
            switch self {
            case .valid: return nil
            case .invalid: return (WebSocketCloseCode.invalidPayload, "invalid UTF-8 in text message")
            case .incomplete: return (WebSocketCloseCode.invalidPayload, "text message ends inside a UTF-8 sequence")
            }
        }
    }

    /// Unmasks a whole text payload into `destination` and checks it: all ASCII (seen while
    /// unmasking, a word at a time) is valid and complete without the UTF-8 validator.
    @inlinable @inline(__always)
    static func unmaskText(_ source: UnsafeRawPointer, into destination: UnsafeMutableRawPointer, count: Int, key: UInt32) -> TextCheck {
        if Masking.applyReportingASCII(key: key, source: source, destination: destination, count: count) { return .valid }
        return checkText(UnsafeRawPointer(destination), count: count)
    }

    /// `unmaskText`'s text that is not all ASCII, through the validator (out of line: the
    /// inlinable part stays small where `receiveWholeMessage` is inlined).
    @usableFromInline
    static func checkText(_ bytes: UnsafeRawPointer, count: Int) -> TextCheck {
        var checker = UTF8Validator()
        guard checker.validate(bytes, count: count) else { return .invalid }
        return checker.isComplete ? .valid : .incomplete
    }

    /// Copies a frame's payload, unmasking it (`key` 0: an unmasked frame, a plain copy).
    @inlinable @inline(__always)
    static func unmask(_ source: UnsafeRawPointer, into destination: UnsafeMutableRawPointer, count: Int, key: UInt32) {
        if key == 0 {
            destination.copyMemory(from: source, byteCount: count)
        } else {
            _ = Masking.apply(key: key, phase: 0, source: source, destination: destination, count: count)
        }
    }

    /// Unmasks and routes `count` payload bytes. Returns false if the connection failed.
    mutating func consume(_ pointer: UnsafeRawPointer, count: Int, _ handle: (consuming WebSocketEvent) -> Void) -> Bool {
        guard count > 0 else { return true }
        let key = frameKey
        let phase = Int(framePhase)
        switch sink {
        case .whole:
            // `receive` delivers such a frame as soon as `beginFrame` chose this sink.
            preconditionFailure("a whole message's payload is not consumed piecewise")
        case .discard:
            framePhase = UInt8((phase + count) & 3)
        case .control:
            // beginFrame made the extras for this frame.
            let extras = extras!
            let start = extras.controlBuffer.count
            extras.controlBuffer.append(contentsOf: UnsafeRawBufferPointer(start: pointer, count: count))
            let next = key == 0 ? (phase + count) & 3 : extras.controlBuffer.withUnsafeMutableBytes {
                let tail = $0.baseAddress! + start
                return Masking.apply(key: key, phase: phase, source: tail, destination: tail, count: count)
            }
            framePhase = UInt8(next)
        case .data:
            let start = messageBuffer.count
            // One pass: unmasked straight into the assembly buffer, the bits gathered on the way.
            guard let (next, bits) = messageBuffer.appendUnmasking(pointer, count: count, key: key, phase: phase,
                                                                   ceiling: limits.maxMessageBytes) else {
                return fail(WebSocketCloseCode.tryAgainLater, Self.overBudgetReason, handle)
            }
            framePhase = UInt8(next)
            // Validate as bytes arrive so invalid text fails before the rest of the frame comes in;
            // ASCII at a character boundary is valid and leaves the validator where it was.
            if messageOpcode == .text && !(bits & 0x80 == 0 && validator.isComplete) && !validateTail(from: start) {
                return fail(WebSocketCloseCode.invalidPayload, "invalid UTF-8 in text message", handle)
            }
        case .compressed:
            var checker: UTF8Validator? = messageOpcode == .text ? validator : nil
            let (outcome, nextPhase) = extras!.inflater!.inflateMasked(
                pointer, count: count, key: key, phase: phase,
                into: &messageBuffer, limit: limits.maxMessageBytes, textValidator: &checker)
            framePhase = UInt8(nextPhase)
            if let checker { validator = checker }
            if let failure = Self.failure(for: outcome) { return fail(failure.0, failure.1, handle) }
        }
        return true
    }

    /// Maps an inflate outcome to the close code and reason, or nil when it succeeded.
    /// Corrupt compressed data is a protocol error (1002), as in the `websockets` library: the
    /// extension's framing is broken, not the message's content.
    static func failure(for outcome: Inflater.Outcome) -> (UInt16, String)? {
        switch outcome {
        case .ok: return nil
        case .tooBig: return (WebSocketCloseCode.messageTooBig, "message too big")
        case .corrupt: return (WebSocketCloseCode.protocolError, "invalid compressed data")
        case .invalidText: return (WebSocketCloseCode.invalidPayload, "invalid UTF-8 in text message")
        case .overBudget: return (WebSocketCloseCode.tryAgainLater, overBudgetReason)
        }
    }

    /// The close reason when the owner's budget refuses a message's growth (1013).
    package static let overBudgetReason = "server memory budget reached"

    /// Counts a new data message (the owner's assembly timer keys on it).
    private mutating func messageStarted() { messagesStartedCount &+= 1 }

    /// Runs the UTF-8 validator over `messageBuffer[start...]`.
    mutating func validateTail(from start: Int) -> Bool {
        var checker = validator
        let valid = messageBuffer.withUnsafeBytes { checker.validate($0.baseAddress! + start, count: $0.count - start) }
        validator = checker
        return valid
    }

    /// Called when the current frame's payload is complete. Returns false if the connection ended.
    mutating func finishFrame(_ handle: (consuming WebSocketEvent) -> Void) -> Bool {
        receiveState = .header
        framesCompletedCount &+= 1
        if frameOpcode.isControl {
            let open = handleControl(handle)
            if open { dropExtrasIfUnused() }
            return open
        }
        guard frameFin else { return true }
        let opcode = messageOpcode
        messageOpcode = nil
        if sink == .discard { return true }
        if messageCompressed {
            let start = messageBuffer.count
            // RFC 7692 §7.2.2: the sender removed this empty stored block's tail; put it back.
            let tail: (UInt8, UInt8, UInt8, UInt8) = (0x00, 0x00, 0xFF, 0xFF)
            let inflater = extras!.inflater!
            let outcome = withUnsafeBytes(of: tail) {
                inflater.inflate($0.baseAddress!, count: 4, into: &messageBuffer, limit: limits.maxMessageBytes)
            }
            if let failure = Self.failure(for: outcome) { return fail(failure.0, failure.1, handle) }
            if receiveNoContextTakeover {
                // The peer starts its next message from an empty window: ours may go too.
                if settings.releasesIdleStreams { releaseInflater() } else { inflater.reset() }
            }
            if opcode == .text && !validateTail(from: start) {
                return fail(WebSocketCloseCode.invalidPayload, "invalid UTF-8 in text message", handle)
            }
        }
        if opcode == .text && !validator.isComplete {
            return fail(WebSocketCloseCode.invalidPayload, "text message ends inside a UTF-8 sequence", handle)
        }
        messagesCompleted &+= 1
        if opcode == .text {
            // Validated as it arrived (above and in `consume`).
            if settings.textAsBytes {
                handle(.textBytes(messageBuffer.take()))
            } else {
                let text = messageBuffer.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
                messageBuffer.clear()
                handle(.text(text))
            }
        } else {
            handle(.binary(messageBuffer.take()))
        }
        return true
    }

    /// Acts on a complete ping, pong or close. Returns false if the connection ended.
    mutating func handleControl(_ handle: (consuming WebSocketEvent) -> Void) -> Bool {
        switch frameOpcode {
        case .ping:
            // After our close, RFC 6455 §5.5.1 forbids sending anything more, pongs included.
            if closeState == .open {
                let key = nextMaskKey()
                handle(.write(extras!.controlBuffer.withUnsafeBytes { WebSocketFrame.encode(opcode: .pong, payload: $0, maskKey: key) }))
            }
            return true
        case .pong:
            handle(.pong(extras!.controlBuffer))
            return true
        default:
            return handleClose(handle)
        }
    }

    mutating func handleClose(_ handle: (consuming WebSocketEvent) -> Void) -> Bool {
        let payload = extras!.controlBuffer
        var code = WebSocketCloseCode.noStatusReceived
        var reason = ""
        if payload.count == 1 {
            return fail(WebSocketCloseCode.protocolError, "close payload of one byte", handle)
        }
        if payload.count >= 2 {
            code = UInt16(payload[0]) << 8 | UInt16(payload[1])
            if !WebSocketCloseCode.isValidReceived(code) {
                return fail(WebSocketCloseCode.protocolError, "invalid close code", handle)
            }
            var checker = UTF8Validator()
            let valid = payload.withUnsafeBytes { checker.validate($0.baseAddress! + 2, count: $0.count - 2) }
            if !valid || !checker.isComplete {
                return fail(WebSocketCloseCode.invalidPayload, "invalid UTF-8 in close reason", handle)
            }
            reason = String(decoding: payload[2...], as: UTF8.self)
        }
        receiveState = .done
        if closeState == .open {
            // Echo the peer's code (RFC 6455 §5.5.1); an empty close is answered with an empty close.
            let key = nextMaskKey()
            let reply: [UInt8] = payload.count >= 2
                ? WebSocketFrame.close(code: code, reason: "", maskKey: key)
                : WebSocketFrame.encode(opcode: .close, payload: UnsafeRawBufferPointer(start: nil, count: 0), maskKey: key)
            handle(.write(reply))
        }
        closeState = .finished
        messageBuffer.clear()
        handle(.closed(code: code, reason: reason))
        return false
    }

    /// Ends the connection with `code`: a close frame (unless we already sent one), then `.failed`.
    mutating func fail(_ code: UInt16, _ reason: String, _ handle: (consuming WebSocketEvent) -> Void) -> Bool {
        receiveState = .done
        if closeState == .open {
            handle(.write(WebSocketFrame.close(code: code, reason: reason, maskKey: nextMaskKey())))
        }
        closeState = .finished
        messageBuffer.clear()
        handle(.failed(code: code, reason: reason))
        return false
    }

    // MARK: - Sending

    /// The key for the next frame this end sends: a fresh one in the client role, nil (no mask)
    /// in the server role.
    mutating func nextMaskKey() -> UInt32? {
        guard let extras, extras.maskKeys != nil else { return nil }
        return extras.maskKeys!.nextKey()
    }

    /// Which deflate parameters govern each direction: a server inflates what the client
    /// compressed and deflates under the server's parameters; a client the other way round.
    var receiveWindowBits: Int {
        role == .server ? deflate?.clientMaxWindowBits ?? 15 : deflate?.serverMaxWindowBits ?? 15
    }
    var receiveNoContextTakeover: Bool {
        (role == .server ? deflate?.clientNoContextTakeover : deflate?.serverNoContextTakeover) == true
    }
    var sendWindowBits: Int {
        role == .server ? deflate?.serverMaxWindowBits ?? 15 : deflate?.clientMaxWindowBits ?? 15
    }
    var sendNoContextTakeover: Bool {
        (role == .server ? deflate?.serverNoContextTakeover : deflate?.clientNoContextTakeover) == true
    }

    /// Encodes one outgoing data message as a single frame (masked in the client role).
    ///
    /// With permessage-deflate negotiated, messages of at least ``compressionThreshold`` bytes are
    /// compressed (RSV1 set). Under our side's no_context_takeover a message that would not shrink is
    /// sent uncompressed instead; with context takeover it cannot be, because the compressor's
    /// window already holds it and the peer's must match.
    package mutating func encodeMessage(_ payload: UnsafeRawBufferPointer, opcode: WebSocketOpcode) -> [UInt8] {
        guard deflate != nil, !opcode.isControl, opcode != .continuation,
              payload.count >= Self.compressionThreshold, extras!.deflater != nil || makeDeflater(),
              let deflater = extras!.deflater else {
            // (Without a compressor, under a full budget, the message goes uncompressed: RFC
            // 7692 lets every message choose.)
            return WebSocketFrame.encode(opcode: opcode, payload: payload, maskKey: nextMaskKey())
        }
        let compressed = deflater.compress(payload)
        let frame = sendNoContextTakeover && compressed >= payload.count
            ? WebSocketFrame.encode(opcode: opcode, payload: payload, maskKey: nextMaskKey())
            : WebSocketFrame.encode(
                opcode: opcode, payload: UnsafeRawBufferPointer(start: deflater.output, count: compressed), rsv1: true,
                maskKey: nextMaskKey())
        // (The frame is a copy: the compressor's output buffer may go now.)
        if sendNoContextTakeover && settings.releasesIdleStreams {
            releaseDeflater()
        } else {
            if sendNoContextTakeover { deflater.reset() }
            deflater.trimOutput()
        }
        return frame
    }

    /// Starts a close from this end: returns the close frame bytes (empty if a close was already
    /// sent or the connection is finished). Data frames received afterwards are dropped; the peer's
    /// close completes the handshake with `.closed`.
    package mutating func initiateClose(code: UInt16, reason: String) -> [UInt8] {
        guard closeState == .open, receiveState != .done else { return [] }
        closeState = .closeSent
        // The message in progress will never be delivered (data after our close is dropped):
        // its memory goes now, not when the peer answers.
        messageBuffer.clear()
        return WebSocketFrame.close(code: code, reason: reason, maskKey: nextMaskKey())
    }

    /// Drops the message being assembled, giving its bytes back to the budget.
    package mutating func discardMessage() { messageBuffer.clear() }

    /// Gives back everything charged to the budget (message, zlib streams): the owner calls it
    /// when the socket goes away.
    package mutating func releaseResources() {
        messageBuffer.clear()
        guard let extras else { return }
        extras.inflater = nil
        extras.deflater = nil
        if extras.compressionCharge > 0 {
            budget?.release(extras.compressionCharge)
            extras.compressionCharge = 0
        }
    }

    /// Heap a compressor takes (zlib's deflateInit2: window 2^(bits+1) twice over with `prev`,
    /// hash 2^(memLevel+8) twice, pending buffer 2^(memLevel+6) x 4, its ~6 KiB state) plus the
    /// 4 KiB output kept between messages.
    package static func deflaterBytes(windowBits: Int, memoryLevel: Int) -> Int {
        let bits = max(windowBits, 9)
        return (1 << (bits + 2)) + (1 << (memoryLevel + 9)) + 6 * 1024 + Deflater.keptOutputBytes
    }

    /// Heap a decompressor takes: its 2^bits window, ~7 KiB state and the 48 KiB of input and
    /// output scratch.
    package static func inflaterBytes(windowBits: Int) -> Int {
        (1 << windowBits) + 7 * 1024 + Inflater.scratchBytes
    }

    /// Frees the compressor between messages (no context takeover on our side) and gives its
    /// charge back: the next compressed message makes a fresh one.
    mutating func releaseDeflater() {
        // Only a deflate connection compresses, so its extras exist.
        let extras = extras!
        assert(extras.deflater != nil && sendNoContextTakeover)
        extras.deflater = nil
        if let budget {
            let bytes = Self.deflaterBytes(windowBits: sendWindowBits, memoryLevel: settings.deflateMemoryLevel)
            assert(extras.compressionCharge >= bytes)
            budget.release(bytes)
            extras.compressionCharge -= bytes
        }
    }

    /// Frees the decompressor between messages (the peer has no context takeover) and gives
    /// its charge back.
    mutating func releaseInflater() {
        // Only a deflate connection inflates, so its extras exist.
        let extras = extras!
        assert(extras.inflater != nil && receiveNoContextTakeover)
        extras.inflater = nil
        if let budget {
            let bytes = Self.inflaterBytes(windowBits: receiveWindowBits)
            assert(extras.compressionCharge >= bytes)
            budget.release(bytes)
            extras.compressionCharge -= bytes
        }
    }

    /// Makes the decompressor on the first compressed message, if the budget allows it.
    mutating func makeInflater() -> Bool {
        guard let extras, extras.deflate != nil else { return false }
        let bits = receiveWindowBits
        let bytes = Self.inflaterBytes(windowBits: bits)
        guard budget?.tryCharge(bytes, holding: extras.compressionCharge + messageBuffer.chargedBytes) ?? true else { return false }
        guard let made = Inflater(windowBits: bits) else {
            budget?.release(bytes)
            return false
        }
        if budget != nil { extras.compressionCharge += bytes }
        extras.inflater = made
        return true
    }

    /// Makes the compressor on the first message worth compressing, if the budget allows it.
    mutating func makeDeflater() -> Bool {
        guard let extras, extras.deflate != nil else { return false }
        let bits = sendWindowBits
        let level = settings.deflateMemoryLevel
        let bytes = Self.deflaterBytes(windowBits: bits, memoryLevel: level)
        guard budget?.tryCharge(bytes, holding: extras.compressionCharge + messageBuffer.chargedBytes) ?? true else { return false }
        guard let made = Deflater(windowBits: bits, memoryLevel: level) else {
            budget?.release(bytes)
            return false
        }
        if budget != nil { extras.compressionCharge += bytes }
        extras.deflater = made
        return true
    }

    /// A server's ping frame for keep-alive (payload truncated to the 125-byte control frame limit).
    package static func pingFrame(_ payload: [UInt8]) -> [UInt8] {
        payload.prefix(125).withUnsafeBytes { WebSocketFrame.encode(opcode: .ping, payload: $0) }
    }

    /// A ping from this end (masked in the client role; payload truncated to 125 bytes), or
    /// nil once a close was sent (RFC 6455 §5.5.1: nothing follows our close).
    package mutating func encodePing(_ payload: [UInt8]) -> [UInt8]? {
        guard closeState == .open, receiveState != .done else { return nil }
        let key = nextMaskKey()
        return payload.prefix(125).withUnsafeBytes { WebSocketFrame.encode(opcode: .ping, payload: $0, maskKey: key) }
    }
}
