import Testing
import SwitchboardProtocols

@Suite("Broadcaster: channel-name scanner")
struct ChannelPatternTests {
    /// Matches of `^([\w-]+:?)*\w$` under Go's RE2 (checked by hand against the grammar).
    @Test(arguments: [
        "a", "Z", "0", "_", "abc", "test-channel", "chat:room-1", "a:b:c", "-a", "--a", "a-b_c:D-9",
        "a:-b", "a-:b", "x:y-z:w", "user_42", "a:b", "9", "a_", "ab:c_d:e-f:g",
    ])
    func accepted(_ name: String) {
        #expect(BroadcasterChannelPattern.matches(name))
    }

    @Test(arguments: [
        "", "-", ":", "a:", "a-", ":a", "a::b", "::", "a:b:", "a b", "a.b", "a/b", "é", "aé", "a\n", "\na",
        "a\u{0}", "a\u{7F}", "a:b::c", "a--", "-:", "a:-", "café", "a\tb", "a$", "a*",
    ])
    func refused(_ name: String) {
        #expect(!BroadcasterChannelPattern.matches(name))
    }

    @Test func lengthLimit() {
        #expect(BroadcasterChannelPattern.matches(String(repeating: "a", count: 255), maxBytes: 255))
        #expect(!BroadcasterChannelPattern.matches(String(repeating: "a", count: 256), maxBytes: 255))
    }

    /// Inputs that send a backtracking engine into exponential time on the nested quantifiers:
    /// a long `[\w-]` run (which `([\w-]+:?)*` can split 2^(n-1) ways) followed by a byte that
    /// makes the final `\w$` fail. A linear scanner decides each of these at once; the test
    /// bounds the time generously (a backtracker needs ~2^30 steps for the shortest).
    @Test(arguments: [
        String(repeating: "a", count: 30) + "!", String(repeating: "a-", count: 5000) + "-",
        String(repeating: "a", count: 100_000) + ":", String(repeating: "a:", count: 50_000) + ":",
        String(repeating: "-", count: 100_000), String(repeating: "ab:", count: 30_000) + "é",
    ])
    func pathological(_ name: String) {
        let clock = ContinuousClock()
        var result = true
        let elapsed = clock.measure { result = BroadcasterChannelPattern.matches(name) }
        #expect(!result)
        #expect(elapsed < .milliseconds(500), "took \(elapsed)")
    }

    /// Cross-check against a brute-force recognizer of the grammar on every string of length
    /// <= 6 over the alphabet {a, -, :, !}.
    @Test func exhaustiveSmallStrings() {
        let alphabet: [UInt8] = Array("a-:!".utf8)
        var checked = 0
        func recurse(_ s: [UInt8]) {
            #expect(BroadcasterChannelPattern.matches(s) == reference(s), "\(String(decoding: s, as: UTF8.self))")
            checked += 1
            if s.count == 6 { return }
            for c in alphabet { recurse(s + [c]) }
        }
        recurse([])
        #expect(checked == 5461)
    }

    /// `^([\w-]+:?)*\w$` by dynamic programming over the regex structure (no backtracking):
    /// `star[i]` says whether s[0..<i] is a concatenation of groups `[\w-]+:?`.
    private func reference(_ s: [UInt8]) -> Bool {
        func isWord(_ c: UInt8) -> Bool { c == UInt8(ascii: "a") }
        func isWordOrDash(_ c: UInt8) -> Bool { isWord(c) || c == UInt8(ascii: "-") }
        guard let last = s.last, isWord(last) else { return false }
        let n = s.count - 1
        var star = [Bool](repeating: false, count: n + 1)
        star[0] = true
        for end in 1...max(1, n) where end <= n {
            for start in 0..<end where star[start] {
                var j = end
                if s[j - 1] == UInt8(ascii: ":") { j -= 1 }
                if j > start && s[start..<j].allSatisfy(isWordOrDash) { star[end] = true; break }
            }
        }
        return star[n]
    }
}
