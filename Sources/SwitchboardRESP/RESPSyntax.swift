/// The grammar of RESP's numeric lines. Stricter than `Int(_:)` and `Double(_:)`, which accept
/// forms (`+`, `0x1p3`, `infinity`) no RESP sender produces: each function accepts exactly the
/// documented form.
enum RESPSyntax {
    /// A length or count: decimal digits, no sign, no leading zero (except `0` itself), fitting `Int`.
    static func length(_ text: UnsafeBufferPointer<UInt8>) -> Int? {
        guard !text.isEmpty, text.count <= 19 else { return nil }  // Int.max has 19 digits
        if text.count > 1 && text[0] == ASCII.zero { return nil }
        var value = 0
        for byte in text {
            guard byte >= ASCII.zero && byte <= ASCII.nine else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int(byte &- ASCII.zero))
            if o1 || o2 { return nil }
            value = sum
        }
        return value
    }

    /// `-1`: the RESP2 null bulk string and null array.
    static func isMinusOne(_ text: UnsafeBufferPointer<UInt8>) -> Bool {
        text.count == 2 && text[0] == ASCII.minus && text[1] == ASCII.zero &+ 1
    }

    /// An integer: optional `+` or `-`, decimal digits without a leading zero, within Int64.
    static func integer(_ text: UnsafeBufferPointer<UInt8>) -> Int64? {
        var i = 0
        var negative = false
        if let first = text.first, first == ASCII.plus || first == ASCII.minus {
            negative = first == ASCII.minus
            i = 1
        }
        let digits = text.count &- i
        guard digits > 0, digits <= 19 else { return nil }
        if digits > 1 && text[i] == ASCII.zero { return nil }
        // Accumulate negatively so Int64.min parses without overflow.
        var value: Int64 = 0
        while i < text.count {
            let byte = text[i]
            guard byte >= ASCII.zero && byte <= ASCII.nine else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = times10.subtractingReportingOverflow(Int64(byte &- ASCII.zero))
            if o1 || o2 { return nil }
            value = next
            i &+= 1
        }
        if negative { return value }
        return value == Int64.min ? nil : -value
    }

    /// A double: `inf`, `-inf`, `nan`, or `[+-]digits[.digits][(e|E)[+-]digits]`.
    static func double(_ text: UnsafeBufferPointer<UInt8>) -> Double? {
        let string = String(decoding: text, as: UTF8.self)
        switch string {
        case "inf", "+inf": return .infinity
        case "-inf": return -.infinity
        case "nan": return .nan
        default: break
        }
        var i = 0
        func digits() -> Int {
            let start = i
            while i < text.count && text[i] >= ASCII.zero && text[i] <= ASCII.nine { i &+= 1 }
            return i &- start
        }
        if i < text.count && (text[i] == ASCII.plus || text[i] == ASCII.minus) { i &+= 1 }
        guard digits() > 0 else { return nil }
        if i < text.count && text[i] == ASCII.dot {
            i &+= 1
            guard digits() > 0 else { return nil }
        }
        if i < text.count && (text[i] == ASCII.lowerE || text[i] == ASCII.upperE) {
            i &+= 1
            if i < text.count && (text[i] == ASCII.plus || text[i] == ASCII.minus) { i &+= 1 }
            guard digits() > 0 else { return nil }
        }
        guard i == text.count else { return nil }
        return Double(string)
    }

    /// A big number: optional `+` or `-`, then one or more decimal digits.
    static func isBigNumber(_ text: UnsafeBufferPointer<UInt8>) -> Bool {
        var i = 0
        if let first = text.first, first == ASCII.plus || first == ASCII.minus { i = 1 }
        guard i < text.count else { return false }
        while i < text.count {
            guard text[i] >= ASCII.zero && text[i] <= ASCII.nine else { return false }
            i &+= 1
        }
        return true
    }
}
