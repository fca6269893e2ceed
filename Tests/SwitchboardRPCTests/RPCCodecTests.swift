@testable import SwitchboardProtocols
import Foundation
import Testing

/// The wire codec against the reference's exact bytes (amqp-swarm 0.3.2) and every malformed
/// shape. docs-pending/rpc.md mirrors the malformed table (`docMirrorsReasons`).
@Suite("RPC: message codec")
struct RPCCodecTests {
    let decoder = RPCMessageDecoder()

    func decode(_ text: String, limits: RPCLimits = RPCLimits()) -> Result<RPCMessage, RPCMalformedMessage> {
        RPCMessageDecoder(limits: limits).decode(text: text)
    }

    // MARK: Encoding: byte for byte as JSON.stringify of the reference's object literals

    @Test("every message type encodes as the reference writes it")
    func encodeExact() {
        let c = RPCCorrelationID("53f55691-e6a9-4440-a3cc-38981f54124d")
        let cases: [(RPCMessage, String)] = [
            (.initialize, #"{"type":"init"}"#),
            (.close, #"{"type":"close"}"#),
            (.ping(correlationId: RPCCorrelationID("foo")), #"{"type":"ping","correlationId":"foo"}"#),
            (.pong(correlationId: RPCCorrelationID("bar")), #"{"type":"pong","correlationId":"bar"}"#),
            (.request(RPCRequest(name: "what about", args: ["attack", ["by": "droids", "on": "wookies"]], correlationId: c)),
             #"{"type":"request","name":"what about","args":["attack",{"by":"droids","on":"wookies"}],"correlationId":"53f55691-e6a9-4440-a3cc-38981f54124d"}"#),
            (.response(correlationId: c, result: "go, i will. good relations with the wookies, i have"),
             #"{"type":"response","correlationId":"53f55691-e6a9-4440-a3cc-38981f54124d","result":"go, i will. good relations with the wookies, i have"}"#),
            (.response(correlationId: RPCCorrelationID(validatedJSON: "7"), result: nil), #"{"type":"response","correlationId":7,"result":null}"#),
            (.error(correlationId: c, .endpoint("take a seat", data: ["council": true, "master": false])),
             #"{"errorType":"endpoint","errorSubtype":null,"message":"take a seat","data":{"council":true,"master":false},"type":"error","correlationId":"53f55691-e6a9-4440-a3cc-38981f54124d"}"#),
            (.error(correlationId: RPCCorrelationID("k"), .unhandled("kamino")),
             #"{"errorType":"protocol","errorSubtype":"unhandled","message":"No handler found for request 'kamino'","data":{"requestName":"kamino"},"type":"error","correlationId":"k"}"#),
            (.error(correlationId: RPCCorrelationID("t"), .timeout),
             #"{"errorType":"protocol","errorSubtype":"timeout","message":"Request timed out","data":null,"type":"error","correlationId":"t"}"#),
            (.error(correlationId: nil, .malformed(RPCMalformedMessage(.notJSON))),
             #"{"errorType":"protocol","errorSubtype":null,"message":"Message is not valid JSON","data":{"reason":"notJSON"},"type":"error","correlationId":null}"#),
            (.application(type: "x-hello", body: ["type": "x-hello", "a": 1]), #"{"type":"x-hello","a":1}"#),
        ]
        for (message, expected) in cases {
            #expect(RPCMessageEncoder.text(message) == expected)
        }
    }

    @Test("numbers are written as JavaScript's Number#toString", arguments: [
        (0.0, "0"), (-0.0, "0"), (1.0, "1"), (-1.0, "-1"), (1.5, "1.5"), (0.1, "0.1"), (100.0, "100"),
        (1e21, "1e+21"), (1e20, "100000000000000000000"), (123456789012345680000.0, "123456789012345680000"),
        (1e-6, "0.000001"), (1e-7, "1e-7"), (1.5e-7, "1.5e-7"), (0.00001, "0.00001"), (2.5e30, "2.5e+30"),
        (9007199254740991.0, "9007199254740991"), (Double.leastNonzeroMagnitude, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
        (Double.nan, "null"), (Double.infinity, "null"), (123.456, "123.456"),
    ] as [(Double, String)])
    func numbers(_ value: Double, _ expected: String) {
        #expect(RPCValue.number(value).jsonText == expected)
    }

    @Test("strings escape as JSON.stringify does")
    func strings() {
        #expect(RPCValue.string("a\"b\\c/d\n\r\t\u{8}\u{C}\u{1}é😀\u{2028}").jsonText == #""a\"b\\c/d\n\r\t\b\f\u0001é😀"# + "\u{2028}\"")
    }

    @Test("values round-trip, member order kept, duplicate keys last-wins in first position")
    func values() throws {
        let text = #"{"b":1,"a":[true,false,null,"s",{"z":{}}],"b":2}"#
        let v = try RPCValue.parse(text)
        #expect(v.jsonText == #"{"b":2,"a":[true,false,null,"s",{"z":{}}]}"#)
        #expect(try RPCValue.parse(" [1, 2.5e3 ,-0.5] ").jsonText == "[1,2500,-0.5]")
        #expect(throws: RPCValueError.invalid) { try RPCValue.parse("[1,]") }
        #expect(throws: RPCValueError.tooDeep) { try RPCValue.parse(String(repeating: "[", count: 10) + String(repeating: "]", count: 10), maxDepth: 9) }
        #expect(try RPCValue.parse(String(repeating: "[", count: 9) + String(repeating: "]", count: 9), maxDepth: 9).arrayValue != nil)
        let o: RPCValue = ["a": 1, "b": 2]
        let p: RPCValue = ["b": 2, "a": 1]
        #expect(o == p)  // JSON semantics: order does not matter for equality
    }

    // MARK: Decoding

    @Test("every message type decodes, text and binary alike")
    func decodeEveryType() {
        let c = RPCCorrelationID("c1")
        let cases: [(String, RPCMessage)] = [
            (#"{"type":"init"}"#, .initialize),
            (#"{"type":"close"}"#, .close),
            (#"{"type":"ping","correlationId":"c1"}"#, .ping(correlationId: c)),
            (#"{"type":"pong","correlationId":"c1"}"#, .pong(correlationId: c)),
            (#"{"type":"ping","correlationId":42}"#, .ping(correlationId: RPCCorrelationID(validatedJSON: "42"))),
            (#"{"type":"request","name":"echo","args":[1,"a",{"k":null}],"correlationId":"c1"}"#,
             .request(RPCRequest(name: "echo", args: [1, "a", ["k": nil]], correlationId: c))),
            (#"{"type":"request","name":"","args":[],"correlationId":"c1"}"#, .request(RPCRequest(name: "", args: [], correlationId: c))),
            (#"{"type":"response","correlationId":"c1","result":[1]}"#, .response(correlationId: c, result: [1])),
            // JSON.stringify drops `result: undefined`: the reference client sends this.
            (#"{"type":"response","correlationId":"c1"}"#, .response(correlationId: c, result: nil)),
            (#"{"errorType":"endpoint","errorSubtype":null,"message":"clone","data":null,"type":"error","correlationId":"c1"}"#,
             .error(correlationId: c, .endpoint("clone"))),
            (#"{"errorType":"protocol","errorSubtype":"unhandled","message":"No handler found for request 'x'","data":{"requestName":"x"},"type":"error","correlationId":"c1"}"#,
             .error(correlationId: c, .unhandled("x"))),
            // lib/received-error.js: unknown errorType -> protocol, missing fields -> ""/null.
            (#"{"type":"error","errorType":"weird","correlationId":"c1"}"#,
             .error(correlationId: c, RPCErrorPayload(errorType: .protocol, message: ""))),
            (#"{"type":"error"}"#, .error(correlationId: nil, RPCErrorPayload(errorType: .protocol, message: ""))),
            (#"{"type":"x-cursor","x":1,"y":[2]}"#, .application(type: "x-cursor", body: ["type": "x-cursor", "x": 1, "y": [2]])),
        ]
        for (text, expected) in cases {
            #expect(decoder.decode(text: text) == .success(expected), "\(text)")
            let bytes = Array(text.utf8)
            #expect(bytes.withUnsafeBufferPointer { decoder.decode(binary: $0) } == .success(expected), "binary \(text)")
        }
    }

    @Test("encode then decode is the identity for every type")
    func roundTrip() {
        let c = RPCCorrelationID("r")
        let messages: [RPCMessage] = [
            .initialize, .close, .ping(correlationId: c), .pong(correlationId: c),
            .request(RPCRequest(name: "n\u{0}é", args: [1.25, ["deep": [[["x"]]]], nil, false], correlationId: c)),
            .response(correlationId: c, result: ["a": [1, 2]]),
            .error(correlationId: c, .endpoint("m", data: [1])), .error(correlationId: c, .timeout),
            .application(type: "x-a", body: ["type": "x-a", "v": "w"]),
        ]
        for m in messages {
            #expect(decoder.decode(text: RPCMessageEncoder.text(m)) == .success(m), "\(m)")
        }
    }

    /// Every malformed shape, with the correlationId salvaged for the answer when readable.
    static let malformed: [(String, RPCMalformedMessage)] = {
        let c = RPCCorrelationID("c")
        let deep = String(repeating: "[", count: 70) + String(repeating: "]", count: 70)
        return [
            ("", RPCMalformedMessage(.notJSON)),
            ("hello", RPCMalformedMessage(.notJSON)),
            (#"{"type":"request""#, RPCMalformedMessage(.notJSON)),
            (#"{'type':'ping'}"#, RPCMalformedMessage(.notJSON)),
            ("null", RPCMalformedMessage(.notAnObject)),
            ("[]", RPCMalformedMessage(.notAnObject)),
            (#""init""#, RPCMalformedMessage(.notAnObject)),
            ("42", RPCMalformedMessage(.notAnObject)),
            (#"{"type":"request","name":"a","args":"# + deep + #","correlationId":"c"}"#, RPCMalformedMessage(.tooDeep)),
            (#"{"correlationId":"c"}"#, RPCMalformedMessage(.missingType, correlationId: c)),
            (#"{"type":null,"correlationId":"c"}"#, RPCMalformedMessage(.typeNotString, correlationId: c)),
            (#"{"type":7}"#, RPCMalformedMessage(.typeNotString)),
            (#"{"type":"hello","correlationId":"c"}"#, RPCMalformedMessage(.unknownType, correlationId: c, type: "hello")),
            (#"{"type":"REQUEST","correlationId":"c"}"#, RPCMalformedMessage(.unknownType, correlationId: c, type: "REQUEST")),
            (#"{"type":"server-request","correlationId":"c"}"#, RPCMalformedMessage(.unknownType, correlationId: c, type: "server-request")),
            (#"{"type":"request","name":"a","args":[]}"#, RPCMalformedMessage(.missingCorrelationId, type: "request")),
            (#"{"type":"request","name":"a","args":[],"correlationId":null}"#, RPCMalformedMessage(.missingCorrelationId, type: "request")),
            (#"{"type":"request","name":"a","args":[],"correlationId":{"a":1}}"#, RPCMalformedMessage(.badCorrelationId, type: "request")),
            (#"{"type":"request","name":"a","args":[],"correlationId":true}"#, RPCMalformedMessage(.badCorrelationId, type: "request")),
            (#"{"type":"request","name":"a","args":[],"correlationId":""# + String(repeating: "x", count: 300) + #""}"#,
             RPCMalformedMessage(.correlationIdTooLong, type: "request")),
            (#"{"type":"ping"}"#, RPCMalformedMessage(.missingCorrelationId, type: "ping")),
            (#"{"type":"pong","correlationId":[1]}"#, RPCMalformedMessage(.badCorrelationId, type: "pong")),
            (#"{"type":"response","result":1}"#, RPCMalformedMessage(.missingCorrelationId, type: "response")),
            (#"{"type":"request","args":[],"correlationId":"c"}"#, RPCMalformedMessage(.nameNotString, correlationId: c, type: "request")),
            (#"{"type":"request","name":5,"args":[],"correlationId":"c"}"#, RPCMalformedMessage(.nameNotString, correlationId: c, type: "request")),
            (#"{"type":"request","name":""# + String(repeating: "n", count: 257) + #"","args":[],"correlationId":"c"}"#,
             RPCMalformedMessage(.nameTooLong, correlationId: c, type: "request")),
            (#"{"type":"request","name":""# + String(repeating: "n", count: 100_000) + #"","args":[],"correlationId":"c"}"#,
             RPCMalformedMessage(.nameTooLong, correlationId: c, type: "request")),
            (#"{"type":"request","name":""# + String(repeating: #"\u00e9"#, count: 129) + #"","args":[],"correlationId":"c"}"#,
             RPCMalformedMessage(.nameTooLong, correlationId: c, type: "request")),
            (#"{"type":"request","name":"a","correlationId":"c"}"#, RPCMalformedMessage(.argsNotArray, correlationId: c, type: "request")),
            (#"{"type":"request","name":"a","args":"x","correlationId":"c"}"#, RPCMalformedMessage(.argsNotArray, correlationId: c, type: "request")),
            (#"{"type":"request","name":"a","args":{"0":1},"correlationId":"c"}"#, RPCMalformedMessage(.argsNotArray, correlationId: c, type: "request")),
            (#"{"type":"request","name":"a","args":null,"correlationId":"c"}"#, RPCMalformedMessage(.argsNotArray, correlationId: c, type: "request")),
            (#"{"type":"request","name":"a","args":[""# + String(repeating: "a", count: 1 << 20) + #""],"correlationId":"c"}"#,
             RPCMalformedMessage(.argsTooLarge, correlationId: c, type: "request")),
        ]
    }()

    @Test("every malformed shape is refused with its reason", arguments: 0..<RPCCodecTests.malformed.count)
    func malformedShapes(_ index: Int) {
        let (text, expected) = Self.malformed[index]
        #expect(decoder.decode(text: text) == .failure(expected), "\(text.prefix(120))")
    }

    @Test("every reason occurs in the table")
    func everyReasonCovered() {
        var seen = Set(Self.malformed.map(\.1.reason.rawValue))
        seen.insert(RPCMalformedReason.invalidUTF8.rawValue)  // binaryNotUTF8 below
        #expect(seen == Set(RPCMalformedReason.allCases.map(\.rawValue)))
    }

    @Test("binary that is not UTF-8 is refused")
    func binaryNotUTF8() {
        let bytes: [UInt8] = Array(#"{"type":"ping","correlationId":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
        #expect(bytes.withUnsafeBufferPointer { decoder.decode(binary: $0) } == .failure(RPCMalformedMessage(.invalidUTF8)))
    }

    @Test("limits are configurable and exact at the boundary")
    func limitBoundaries() {
        var l = RPCLimits()
        l.maxNameBytes = 3
        l.maxArgsBytes = 5
        l.maxCorrelationIdBytes = 5
        #expect(decode(#"{"type":"request","name":"abc","args":[1,2],"correlationId":"abc"}"#, limits: l)
                == .success(.request(RPCRequest(name: "abc", args: [1, 2], correlationId: RPCCorrelationID("abc")))))
        #expect(decode(#"{"type":"request","name":"abcd","args":[1,2],"correlationId":"abc"}"#, limits: l)
                == .failure(RPCMalformedMessage(.nameTooLong, correlationId: RPCCorrelationID("abc"), type: "request")))
        #expect(decode(#"{"type":"request","name":"abc","args":[1,23],"correlationId":"abc"}"#, limits: l)
                == .failure(RPCMalformedMessage(.argsTooLarge, correlationId: RPCCorrelationID("abc"), type: "request")))
        #expect(decode(#"{"type":"request","name":"abc","args":[1,2],"correlationId":"abcd"}"#, limits: l)
                == .failure(RPCMalformedMessage(.correlationIdTooLong, type: "request")))
        var bad = RPCLimits()
        bad.maxDepth = 2
        #expect(bad.validate() != nil)
        #expect(RPCLimits().validate() == nil)
    }

    @Test("malformed answers are protocol errors echoing a salvaged correlationId")
    func malformedAnswer() {
        guard case .failure(let f) = decoder.decode(text: #"{"type":"hello","correlationId":"q"}"#) else { Issue.record(); return }
        #expect(RPCMessageEncoder.text(.error(correlationId: f.correlationId, .malformed(f)))
                == #"{"errorType":"protocol","errorSubtype":null,"message":"Unknown message type 'hello'","data":{"reason":"unknownType","type":"hello"},"type":"error","correlationId":"q"}"#)
    }
}

@Suite("RPC: documentation")
struct RPCDocumentationTests {
    /// The malformed-message table lives in docs-pending/rpc.md until it is folded into
    /// README.md; whichever holds it must list every reason with its exact message.
    @Test("the malformed-message table lists every reason and message")
    func docMirrorsReasons() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let candidates = ["docs-pending/rpc.md", "README.md"].map { root.appendingPathComponent($0) }
        let text = try candidates.compactMap { try? String(contentsOf: $0, encoding: .utf8) }
            .first { $0.contains("| `notJSON` |") }
            .unwrap("no document holds the RPC malformed-message table")
        for reason in RPCMalformedReason.allCases {
            let message = reason.message(type: "T")
            #expect(text.contains("| `\(reason.rawValue)` |"), "\(reason) missing")
            #expect(text.contains("| `\(message)` |"), "message of \(reason) missing: \(message)")
        }
    }
}

extension Optional {
    func unwrap(_ why: String) throws -> Wrapped {
        guard let v = self else { throw RPCTestFailure(why) }
        return v
    }
}

struct RPCTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

@Suite("RPC: codec under random input")
struct RPCCodecFuzzTests {
    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            return state &* 2_685_821_657_736_338_717
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    @Test("mutated messages never crash; whatever decodes re-encodes to an equal message")
    func mutations() {
        let seeds = [
            #"{"type":"request","name":"what about","args":["attack",{"by":"droids","on":"wookies"}],"correlationId":"53f5"}"#,
            #"{"type":"response","correlationId":"c","result":[1,2.5,-3e-7,true,null,{"a":"\u00e9\n"}]}"#,
            #"{"errorType":"endpoint","errorSubtype":null,"message":"m","data":{"x":[1]},"type":"error","correlationId":"c"}"#,
            #"{"type":"ping","correlationId":"foo"}"#, #"{"type":"x-app","v":{"w":[[]]}}"#, #"{"type":"init"}"#,
        ].map { Array($0.utf8) }
        let alphabet = Array(#"{}[]",:\"0123456789.eE+-truefalsenull xyz\u00"#.utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xA9, 0xFF]
        var rng = Rng(state: 0x9E37_79B9_7F4A_7C15)
        let decoder = RPCMessageDecoder()
        var decoded = 0
        for _ in 0..<20_000 {
            var bytes = seeds[rng.below(seeds.count)]
            for _ in 0...rng.below(4) {
                let i = rng.below(bytes.count + 1)
                switch rng.below(3) {
                case 0: if i < bytes.count { bytes.remove(at: i) }
                case 1: bytes.insert(alphabet[rng.below(alphabet.count)], at: i)
                default: if i < bytes.count { bytes[i] = alphabet[rng.below(alphabet.count)] }
                }
            }
            let result = bytes.withUnsafeBufferPointer { decoder.decode(binary: $0) }
            if case .success(let m) = result {
                decoded += 1
                #expect(decoder.decode(text: RPCMessageEncoder.text(m)) == .success(m), "\(String(decoding: bytes, as: UTF8.self))")
            }
        }
        #expect(decoded > 100)  // the mutations are mild enough that some stay valid
    }
}
