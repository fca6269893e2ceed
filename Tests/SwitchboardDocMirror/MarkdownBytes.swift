extension DocMirror {
    /// `raw` as it reads inside a code span of a generated table's row: CR, LF and tab as
    /// `\r`, `\n`, `\t`; `|` escaped (it would end the cell) and a backtick as `'` (it would end
    /// the span); other bytes outside printable ASCII as `\xHH`. A run of more than 8 equal
    /// bytes is written once with its count (`a×8193`), so the long-input rows stay readable.
    public static func markdownBytes(_ raw: [UInt8]) -> String {
        var s = ""
        var i = 0
        while i < raw.count {
            var run = 1
            while i + run < raw.count, raw[i + run] == raw[i] { run += 1 }
            let piece: String
            switch raw[i] {
            case 0x0D: piece = "\\r"
            case 0x0A: piece = "\\n"
            case 0x09: piece = "\\t"
            case 0x7C: piece = "\\|"
            case 0x60: piece = "'"
            case 0x20...0x7E: piece = String(UnicodeScalar(raw[i]))
            default:
                let hex = String(raw[i], radix: 16, uppercase: true)
                piece = "\\x" + (hex.count < 2 ? "0" : "") + hex
            }
            if run > 8 {
                s += "\(piece)×\(run)"
                i += run
            } else {
                s += piece
                i += 1
            }
        }
        return s
    }
}
