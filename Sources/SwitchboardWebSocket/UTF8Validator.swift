/// Streaming UTF-8 validator (RFC 3629): rejects overlongs, surrogates (U+D800-DFFF), code points
/// above U+10FFFF and stray continuation bytes, at the first offending byte, with the state of a
/// partial sequence carried across calls.
///
/// ASCII runs are skipped eight bytes at a time; multibyte sequences go through a small state machine.
@usableFromInline package struct UTF8Validator: Sendable {
    /// Where we are inside a multibyte sequence. The restricted states exist because the second
    /// byte's range depends on the lead byte (RFC 3629 §4 table).
    @usableFromInline
    enum State: UInt8, Sendable {
        case ground          // between characters
        case need1           // one more 80...BF
        case need2           // two more 80...BF
        case need3           // three more 80...BF
        case afterE0         // A0...BF (no overlongs), then need1
        case afterED         // 80...9F (no surrogates), then need1
        case afterF0         // 90...BF (no overlongs), then need2
        case afterF4         // 80...8F (<= U+10FFFF), then need2
        case invalid         // sticky until reset()
    }

    @usableFromInline
    var state: State = .ground

    /// Creates a validator at a character boundary.
    package init() {}

    /// Whether the bytes so far end at a character boundary (and were all valid).
    @inlinable
    package var isComplete: Bool { state == .ground }

    /// Forgets any partial sequence or earlier failure.
    @inlinable
    package mutating func reset() { state = .ground }

    /// Validates the next bytes. Returns false at the first invalid byte; the failure is sticky.
    package mutating func validate(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return state != .invalid }
        return validate(base, count: bytes.count)
    }

    /// Pointer form of ``validate(_:)``.
    package mutating func validate(_ base: UnsafeRawPointer, count: Int) -> Bool {
        var state = self.state
        defer { self.state = state }
        if state == .invalid { return false }
        var index = 0
        while index < count {
            if state == .ground {
                // ASCII fast path: eight bytes at a time while no high bit is set.
                while index &+ 8 <= count {
                    let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                    if word & 0x8080_8080_8080_8080 != 0 { break }
                    index &+= 8
                }
                while index < count && base.load(fromByteOffset: index, as: UInt8.self) < 0x80 {
                    index &+= 1
                }
                if index == count { return true }
            }
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            index &+= 1
            state = Self.step(state, byte)
            if state == .invalid { return false }
        }
        return true
    }

    @inline(__always)
    static func step(_ state: State, _ byte: UInt8) -> State {
        switch state {
        case .ground:
            switch byte {
            case 0x00...0x7F: return .ground
            case 0xC2...0xDF: return .need1
            case 0xE0: return .afterE0
            case 0xE1...0xEC, 0xEE...0xEF: return .need2
            case 0xED: return .afterED
            case 0xF0: return .afterF0
            case 0xF1...0xF3: return .need3
            case 0xF4: return .afterF4
            default: return .invalid  // 80-C1 (stray continuation, 2-byte overlong), F5-FF
            }
        case .need1: return byte & 0xC0 == 0x80 ? .ground : .invalid
        case .need2: return byte & 0xC0 == 0x80 ? .need1 : .invalid
        case .need3: return byte & 0xC0 == 0x80 ? .need2 : .invalid
        case .afterE0: return (0xA0...0xBF).contains(byte) ? .need1 : .invalid
        case .afterED: return (0x80...0x9F).contains(byte) ? .need1 : .invalid
        case .afterF0: return (0x90...0xBF).contains(byte) ? .need2 : .invalid
        case .afterF4: return (0x80...0x8F).contains(byte) ? .need2 : .invalid
        case .invalid: return .invalid
        }
    }
}
