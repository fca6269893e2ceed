// Byte-level character classes and comparisons shared by the parser, headers and writer.
// Bitmasks instead of lookup tables: no lazy global initialisation on the hot path.

package enum ASCII {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let sp: UInt8 = 0x20
    static let htab: UInt8 = 0x09
    static let colon: UInt8 = 0x3A
    static let comma: UInt8 = 0x2C
    static let semicolon: UInt8 = 0x3B
    static let slash: UInt8 = 0x2F
    static let question: UInt8 = 0x3F
    static let star: UInt8 = 0x2A

    // RFC 9110 tchar, as bits over 0..<64 and 64..<128.
    private static let tcharLow: UInt64 = 0x03ff_6cfa_0000_0000
    private static let tcharHigh: UInt64 = 0x57ff_ffff_c7ff_fffe

    /// RFC 9110 `tchar`: the characters allowed in methods, header names and codings.
    @inline(__always)
    static func isTChar(_ b: UInt8) -> Bool {
        if b < 64 { return (tcharLow >> UInt64(b)) & 1 == 1 }
        if b < 128 { return (tcharHigh >> UInt64(b &- 64)) & 1 == 1 }
        return false
    }

    /// Bytes allowed in a field value: HTAB, visible ASCII, SP and obs-text.
    @inline(__always)
    static func isFieldValueByte(_ b: UInt8) -> Bool {
        (b >= 0x20 && b != 0x7F) || b == htab
    }

    /// Whether every byte of `bytes[range]` is a field-value byte (``isFieldValueByte(_:)``),
    /// eight at a time: a word with no byte below 0x20 and none equal to 0x7F holds only
    /// field-value bytes (0x80-0xFF are obs-text, allowed); a word with one (HTAB included,
    /// which is allowed) is checked byte by byte, as is the tail. A value's bytes cost ~1.5
    /// instructions each instead of ~11 (issue 16, HTTP row).
    static func allFieldValueBytes(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        assert(range.lowerBound >= 0 && range.upperBound <= bytes.count, "a range outside the bytes")
        var i = range.lowerBound
        let end = range.upperBound
        if end &- i >= 8 {
            let base = UnsafeRawPointer(bytes.baseAddress!)
            repeat {
                let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                if mayHoldControl(word) {
                    for index in i..<(i &+ 8) where !isFieldValueByte(bytes[index]) { return false }
                }
                i &+= 8
            } while end &- i >= 8
        }
        while i < end {
            if !isFieldValueByte(bytes[i]) { return false }
            i &+= 1
        }
        return true
    }

    /// Whether some byte of `word` is below 0x20 or is 0x7F; never false when one is (it
    /// may be true when none is: the caller then checks each byte). A byte below 0x20 borrows
    /// out of its own subtraction with its high bit clear, so its high bit is set in
    /// `(word - 0x20…) & ~word`; bytes under the lowest such byte borrow nothing into it. 0x7F
    /// is the zero byte of `word ^ 0x7F…`, found the same way with 0x01.
    @inline(__always)
    static func mayHoldControl(_ word: UInt64) -> Bool {
        let high: UInt64 = 0x8080_8080_8080_8080
        let below20 = (word &- 0x2020_2020_2020_2020) & ~word & high
        let del = word ^ 0x7F7F_7F7F_7F7F_7F7F
        let is7F = (del &- 0x0101_0101_0101_0101) & ~del & high
        return below20 | is7F != 0
    }

    @inline(__always)
    static func isOWS(_ b: UInt8) -> Bool { b == sp || b == htab }

    @inline(__always)
    static func lower(_ b: UInt8) -> UInt8 { (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b }

    @inline(__always)
    static func hexValue(_ b: UInt8) -> UInt64? {
        switch b {
        case 0x30...0x39: return UInt64(b &- 0x30)
        case 0x41...0x46: return UInt64(b &- 0x41 &+ 10)
        case 0x61...0x66: return UInt64(b &- 0x61 &+ 10)
        default: return nil
        }
    }

    /// Case-insensitive equality of `bytes[range]` with `lowercased`, which must be lowercase ASCII.
    @inline(__always)
    static func equalsLowercased(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ lowercased: StaticString) -> Bool {
        guard range.count == lowercased.utf8CodeUnitCount else { return false }
        let literal = lowercased.utf8Start
        var i = 0
        for index in range {
            if lower(bytes[index]) != literal[i] { return false }
            i &+= 1
        }
        return true
    }

    /// Case-sensitive equality of `bytes[range]` with `literal`.
    @inline(__always)
    static func equalsExactly(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        let start = literal.utf8Start
        var i = 0
        for index in range {
            if bytes[index] != start[i] { return false }
            i &+= 1
        }
        return true
    }

    /// Trims SP/HTAB from both ends of `range`.
    @inline(__always)
    static func trimOWS(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Range<Int> {
        var lo = range.lowerBound
        var hi = range.upperBound
        while lo < hi, isOWS(bytes[lo]) { lo &+= 1 }
        while hi > lo, isOWS(bytes[hi &- 1]) { hi &-= 1 }
        return lo..<hi
    }

    /// Calls `body` with each trimmed element of a comma-separated list, skipping empty elements
    /// (RFC 9110 §5.6.1 tells recipients to ignore them). Stops early when `body` returns false.
    @inline(__always)
    static func forEachListElement(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ body: (Range<Int>) -> Bool) {
        var start = range.lowerBound
        var i = range.lowerBound
        while i <= range.upperBound {
            if i == range.upperBound || bytes[i] == comma {
                let element = trimOWS(bytes, start..<i)
                if !element.isEmpty, !body(element) { return }
                start = i &+ 1
            }
            i &+= 1
        }
    }

    /// ASCII case-insensitive string equality without allocating: only A-Z and a-z fold, every
    /// other byte (non-ASCII included) must be equal. An index loop over the contiguous UTF-8
    /// (a `zip` of the two UTF-8 views cost ~120 instructions per byte pair).
    package static func caseInsensitiveEquals(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        return withBytes(a) { x in withBytes(b) { y in equalsIgnoringCase(x, y) } }
    }

    /// Case-insensitive equality of two byte runs of the same length (A-Z and a-z fold).
    @inline(__always)
    static func equalsIgnoringCase(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> Bool {
        guard x.count == y.count else { return false }
        var i = 0
        while i < x.count {
            let p = x[i], q = y[i]
            if p != q && lower(p) != lower(q) { return false }
            i &+= 1
        }
        return true
    }

    /// Calls `body` with `string`'s UTF-8 bytes, without a copy when the string is native
    /// (always, on Linux; a small string is copied to the stack by the standard library).
    @inline(__always)
    static func withBytes<R>(_ string: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let result = string.utf8.withContiguousStorageIfAvailable(body) { return result }
        var copy = string
        return copy.withUTF8(body)
    }
}
