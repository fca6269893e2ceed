@testable import SwitchboardProtocols
import Testing

@Suite("Connection broker: strict JSON reader and writer")
struct JSONReaderTests {
    func parse(_ text: String, maxDepth: Int = 64) -> Result<[String: JSONMember], JSONError> {
        var t = text
        return t.withUTF8 { buf in Result { () throws(JSONError) in try JSONReader.parseObject(buf, maxDepth: maxDepth) } }
    }

    @Test("valid documents are accepted and members keep their raw text", arguments: [
        #"{}"#, #" { } "#, "\t{\n\"a\"\r:\n1}\n", #"{"a":[]}"#, #"{"a":{}}"#, #"{"a":[1,-1,0,-0,1.5,-0.25e+10,1E-3,0.0e0]}"#,
        #"{"a":"\"\\\/\b\f\n\r\t\u0000\uFFFF\ud83d\ude00"}"#, #"{"a":true,"b":false,"c":null}"#,
        #"{"a":[[[[{"b":[{"c":[]}]}]]]]}"#, #"{"é✓😀":"é✓😀"}"#, #"{"a":1,"a":2}"#, #"{"":""}"#,
    ])
    func valid(_ text: String) {
        guard case .success(let members) = parse(text) else { Issue.record("rejected: \(text)"); return }
        var t = text
        t.withUTF8 { buf in
            for m in members.values {
                let raw = String(decoding: UnsafeBufferPointer(rebasing: buf[m.range]), as: UTF8.self)
                #expect(text.contains(raw))
                #expect(raw.first != " " && raw.last != " ")
            }
        }
    }

    @Test("invalid documents are rejected", arguments: [
        "", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\":1 \"b\":2}", "{\"a\":[1,]}",
        "{\"a\":[,1]}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.1}", "{\"a\":1e}", "{\"a\":-}", "{\"a\":+1}",
        "{\"a\":0x1}", "{\"a\":Infinity}", "{\"a\":nul}", "{\"a\":True}", "{\"a\":'x'}", "{'a':1}", "{a:1}",
        "{\"a\":\"\\u12\"}", "{\"a\":\"\\uD800\\u0041\"}", "{\"a\":\"\\uDC00\"}", "{\"a\":\"\\a\"}",
        "{\"a\":\"\u{7}\"}", "{\"a\":\"x}", "{}x", "{} {}", "{\"a\":[}]}", "{\"a\":{]}", "\u{FEFF}{}",
    ])
    func invalid(_ text: String) {
        #expect(throws: JSONError.invalid) { try parse(text).get() }
    }

    @Test("non-objects and depth")
    func shapes() {
        #expect(throws: JSONError.notAnObject) { try parse("[]").get() }
        #expect(throws: JSONError.notAnObject) { try parse(" 1 ").get() }
        #expect(throws: JSONError.invalid) { try parse("[1,]").get() }
        #expect(throws: JSONError.tooDeep) { try parse(#"{"a":[[1]]}"#, maxDepth: 2).get() }
        #expect((try? parse(#"{"a":[[1]]}"#, maxDepth: 3).get()) != nil)
        #expect(throws: JSONError.tooDeep) { try parse(String(repeating: "[", count: 1_000_000), maxDepth: 64).get() }
        #expect((try? parse("{\"a\":" + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "}",
                            maxDepth: 6000).get()) != nil)  // iterative: no stack overflow
    }

    @Test("decoded strings, safe integers, writer escaping round trip")
    func decodeAndWrite() throws {
        var t = #"{"s":"a\"b\\c\/d\u00e9\ud83d\ude00\n","i":-9007199254740991,"f":1.0,"e":1e2,"big":9007199254740992}"#
        try t.withUTF8 { buf in
            let m = try JSONReader.parseObject(buf, maxDepth: 8)
            #expect(try JSONReader.decodeString(buf, m["s"]!.range) == "a\"b\\c/dé😀\n")
            #expect(JSONReader.safeInteger(buf, m["i"]!.range) == -9_007_199_254_740_991)
            #expect(JSONReader.safeInteger(buf, m["f"]!.range) == nil)
            #expect(JSONReader.safeInteger(buf, m["e"]!.range) == nil)
            #expect(JSONReader.safeInteger(buf, m["big"]!.range) == nil)
        }
        let nasty = "q\"\\/\u{0}\u{1}\u{1f}\u{7f}\n\r\t\u{8}\u{c}é\u{2028}😀"
        var w = JSONWriter()
        w.string("type", nasty)
        w.int("id", -3)
        var out = w.finish()
        #expect(out == #"{"type":"q\"\\/\u0000\u0001\u001f"# + "\u{7f}" + #"\n\r\t\b\f"# + "é\u{2028}😀\",\"id\":-3}")
        try out.withUTF8 { buf in
            let m = try JSONReader.parseObject(buf, maxDepth: 2)
            #expect(try JSONReader.decodeString(buf, m["type"]!.range) == nasty)
        }
    }
}
