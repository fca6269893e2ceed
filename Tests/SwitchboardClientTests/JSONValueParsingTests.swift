import Foundation
import Testing
@testable import SwitchboardClient

/// `JSONValue(jsonString:)` parses with SwitchboardJSON's reader (deep input falls back to
/// JSONDecoder): it must give what the Codable path gives, and refuse what it refuses.
@Suite("JSONValue: the fast parser agrees with JSONDecoder")
struct JSONValueParsingTests {
    static let valid = [
        #"{"type":"channel_message","id":7,"channelId":"c-1","payload":{"seq":3,"pad":"xx"}}"#,
        #"{"a":[1,-2.5,3e2,0,-0,1E-3,true,false,null,"s"],"b":{},"c":[],"d":{"e":{"f":[[]]}}}"#,
        #"  {"esc":"q\" b\\ s\/ \b\f\n\r\t u\u00e9\ud83d\ude00 ✓"}  "#,
        #""just a string""#, "42", "-0.125", "true", "null", "[]", "{}",
        #"{"big":12345678901234567890,"small":1e-300,"int":9007199254740993}"#,
        String(repeating: "[", count: 40) + String(repeating: "]", count: 40),  // deeper than the fast path
    ]
    static let invalid = [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{'a':1}", "01", "+1", ".5", "1.", "NaN", "Infinity",
        "[1] [2]", "1 2", "{\"a\" 1}", "\"\u{01}\"", #""\x""#, #""\ud800""#, "tru", "nul", "1e400",
        #"{"a":1}x"#,
    ]

    private func codable(_ text: String) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    @Test(arguments: valid)
    func validInputGivesTheCodableValue(_ text: String) throws {
        let fast = try JSONValue(jsonString: text)
        #expect(fast == codable(text), "\(text)")
    }

    @Test(arguments: invalid)
    func invalidInputIsRefused(_ text: String) {
        #expect(throws: BrokerClientError.self, "\(text)") { try JSONValue(jsonString: text) }
    }

    /// Duplicate keys: the last wins, as in JavaScript's `JSON.parse` (the reference SDK's
    /// parser); JSONDecoder kept the first.
    @Test func duplicateKeysLastWins() throws {
        #expect(try JSONValue(jsonString: #"{"dup":1,"dup":2}"#) == ["dup": 2])
    }

    /// The hand-written serializer writes what JSONEncoder (sorted keys, slashes unescaped)
    /// wrote, up to number spelling, which is compared as parsed values.
    @Test(arguments: valid.filter { !$0.hasPrefix("[[") })
    func serializerAgreesWithJSONEncoder(_ text: String) throws {
        let value = try JSONValue(jsonString: text)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        let reference = String(decoding: try encoder.encode(value), as: UTF8.self)
        let ours = try value.jsonString()
        #expect(try JSONValue(jsonString: ours) == value)
        if !Self.hasFractionalOrHugeNumber(value) {
            #expect(ours == reference, "\(text)")
        }
    }

    private static func hasFractionalOrHugeNumber(_ value: JSONValue) -> Bool {
        switch value {
        case .number(let n): n != n.rounded() || abs(n) >= 9_007_199_254_740_992
        case .array(let values): values.contains(where: hasFractionalOrHugeNumber)
        case .object(let members): members.values.contains(where: hasFractionalOrHugeNumber)
        default: false
        }
    }

    @Test func valuesRoundTripThroughText() throws {
        let value: JSONValue = ["n": 1.5, "s": "é\n\"", "a": [nil, true, ["k": []]], "o": [:]]
        #expect(try JSONValue(jsonString: value.jsonString()) == value)
    }
}
