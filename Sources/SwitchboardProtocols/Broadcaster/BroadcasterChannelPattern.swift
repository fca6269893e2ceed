/// The reference broadcaster's channel-name rule, `^([\w-]+:?)*\w$` with RE2 semantics
/// (`\w` is ASCII `[0-9A-Za-z_]`, `$` is end of text), decided by one linear pass.
///
/// The regular expression's language, spelled out: a non-empty string of `[0-9A-Za-z_-]` and
/// `:` that does not start with `:`, has no `::`, and ends with a word character. (Each `:` must
/// close a non-empty `[\w-]+` run; the final `\w` is the last byte.) A backtracking engine
/// explores exponentially many ways to split a long `[\w-]` run between the nested `+` and `*`
/// before failing on a bad last byte ("aaaa…a!"); this scanner looks at each byte once.
public enum BroadcasterChannelPattern {
    /// Whether `name` matches, and is at most `maxBytes` long (a limit the reference does not
    /// have; its 1 KiB message limit bounds it indirectly).
    public static func matches<C: Collection>(_ name: C, maxBytes: Int = .max) -> Bool where C.Element == UInt8 {
        guard !name.isEmpty, name.count <= maxBytes else { return false }
        // True at the start, so that a leading ':' is refused like a doubled one.
        var afterColon = true
        var lastIsWord = false
        for c in name {
            if isWord(c) {
                afterColon = false
                lastIsWord = true
            } else if c == UInt8(ascii: "-") {
                afterColon = false
                lastIsWord = false
            } else if c == UInt8(ascii: ":") {
                if afterColon { return false }
                afterColon = true
                lastIsWord = false
            } else {
                return false
            }
        }
        return lastIsWord
    }

    public static func matches(_ name: String, maxBytes: Int = .max) -> Bool { matches(name.utf8, maxBytes: maxBytes) }

    @inline(__always)
    static func isWord(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "_"): true
        default: false
        }
    }
}
