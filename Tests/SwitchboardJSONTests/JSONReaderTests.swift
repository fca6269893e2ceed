@testable import SwitchboardJSON
import Testing

@Suite("Strict JSON reader and writer")
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

    @Test("nested objects and arrays re-parse in place, ranges stay absolute")
    func nested() throws {
        var t = #"{"p":{"a":[1,"x",{"b":null}],"s":"é"},"arr":[ ],"n":[[1],[2]]}"#
        try t.withUTF8 { buf in
            let top = try JSONReader.parseObject(buf, maxDepth: 8)
            let p = try JSONReader.parseObject(buf, in: top["p"]!.range, maxDepth: 7)
            #expect(try JSONReader.decodeString(buf, p["s"]!.range) == "é")
            let a = try JSONReader.parseArray(buf, in: p["a"]!.range, maxDepth: 6)
            #expect(a.map(\.kind) == [.number, .string, .object])
            #expect(JSONReader.safeInteger(buf, a[0].range) == 1)
            #expect(try JSONReader.decodeString(buf, a[1].range) == "x")
            #expect(try JSONReader.parseObject(buf, in: a[2].range, maxDepth: 1)["b"]?.kind == .null)
            #expect(try JSONReader.parseArray(buf, in: top["arr"]!.range, maxDepth: 1).isEmpty)
            #expect(throws: JSONError.tooDeep) { try JSONReader.parseArray(buf, in: top["n"]!.range, maxDepth: 1) }
            #expect(throws: JSONError.notAnObject) { try JSONReader.parseArray(buf, in: top["p"]!.range, maxDepth: 8) }
            #expect(throws: JSONError.notAnObject) { try JSONReader.parseObject(buf, in: top["arr"]!.range, maxDepth: 8) }
            // A range that cuts a value is invalid, never read past.
            let cut = top["p"]!.range.lowerBound..<(top["p"]!.range.upperBound - 1)
            #expect(throws: JSONError.invalid) { try JSONReader.parseObject(buf, in: cut, maxDepth: 8) }
        }
        for bad in ["[1,]", "[,1]", "[1 2]", "[", "]", "[1]x"] {
            var b = bad
            _ = b.withUTF8 { buf in
                #expect(throws: JSONError.invalid) { try JSONReader.parseArray(buf, in: 0..<buf.count, maxDepth: 4) }
            }
        }
    }

    @Test("truncated integers for NumericDate claims")
    func truncated() throws {
        var t = #"{"a":12,"b":12.9,"c":-12.9,"d":1.5e3,"e":1e300,"f":9007199254740991.5,"g":1E-400}"#
        try t.withUTF8 { buf in
            let m = try JSONReader.parseObject(buf, maxDepth: 2)
            #expect(JSONReader.truncatedInteger(buf, m["a"]!.range) == 12)
            #expect(JSONReader.truncatedInteger(buf, m["b"]!.range) == 12)
            #expect(JSONReader.truncatedInteger(buf, m["c"]!.range) == -12)
            #expect(JSONReader.truncatedInteger(buf, m["d"]!.range) == 1500)
            #expect(JSONReader.truncatedInteger(buf, m["e"]!.range) == nil)
            #expect(JSONReader.truncatedInteger(buf, m["g"]!.range) == 0)
        }
    }

    @Test("writer: nested objects, booleans, raw bytes")
    func writerNesting() {
        var w = JSONWriter()
        w.int("requestId", 1)
        w.object("result") { r in
            r.bool("success", true)
            r.object("inner") { $0.bool("no", false) }
            r.raw("payload", Array("[1]".utf8))
        }
        w.string("after", "x")
        #expect(String(decoding: w.finishBytes(), as: UTF8.self)
                == #"{"requestId":1,"result":{"success":true,"inner":{"no":false},"payload":[1]},"after":"x"}"#)
        var empty = JSONWriter()
        empty.object("e") { _ in }
        #expect(empty.finish() == #"{"e":{}}"#)
    }
}
