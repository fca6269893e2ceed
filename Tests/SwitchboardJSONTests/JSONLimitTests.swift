import Testing
@testable import SwitchboardJSON
#if canImport(Glibc)
import Glibc
#endif

/// Issue 17: huge-object and duplicate-key JSON is refused by the member limit or costs
/// linear time with a small constant.
@Suite("JSON reader: member limit")
struct JSONLimitTests {
    func parse(_ text: String, maxMembers: Int) -> Result<[String: JSONMember], JSONError> {
        var t = text
        return t.withUTF8 { buf in
            Result { () throws(JSONError) in try JSONReader.parseObject(buf, maxDepth: 64, maxMembers: maxMembers) }
        }
    }

    func object(keys: Int, distinct: Bool) -> String {
        var s = "{"
        for i in 0..<keys {
            if i > 0 { s += "," }
            s += distinct ? "\"k\(i)\":1" : "\"k\":\(i)"
        }
        return s + "}"
    }

    @Test("members up to the limit are read; one more is refused, duplicates counted")
    func limit() throws {
        #expect((try? parse(object(keys: 4, distinct: true), maxMembers: 4).get())?.count == 4)
        #expect(throws: JSONError.invalid) { try parse(object(keys: 5, distinct: true), maxMembers: 4).get() }
        #expect(throws: JSONError.invalid) { try parse(object(keys: 5, distinct: false), maxMembers: 4).get() }
        let last = try parse(object(keys: 4, distinct: false), maxMembers: 4).get()
        #expect(last.count == 1)
    }

    @Test("1M distinct keys are refused after the 1,024th member, without reading the rest")
    func hugeObject() throws {
        let text = object(keys: 1_000_000, distinct: true)
        let start = clock()
        #expect(throws: JSONError.invalid) { try parse(text, maxMembers: JSONReader.defaultMaxMembers).get() }
        let seconds = Double(clock() - start) / Double(CLOCKS_PER_SEC)
        // The refusal comes at member 1,025: microseconds, where reading all cost 0.8 s (release).
        #expect(seconds < 0.05, "\(seconds) s")
    }
}
