import Testing
@testable import SwitchboardRESP

@Suite struct WriterTests {
    @Test func commandBytes() {
        var out: [UInt8] = []
        RESPWriter.writeCommand(["SET", "key", "va\r\nlue"], into: &out)
        #expect(out == bytes("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$7\r\nva\r\nlue\r\n"))
        out.removeAll()
        RESPWriter.writeCommand([[0x00, 0xFF], []], into: &out)
        #expect(out == [0x2A, 0x32, 0x0D, 0x0A, 0x24, 0x32, 0x0D, 0x0A, 0x00, 0xFF, 0x0D, 0x0A, 0x24, 0x30, 0x0D, 0x0A, 0x0D, 0x0A])
        // A command is what a server reads as an array of bulk strings.
        out.removeAll()
        RESPWriter.writeCommand(["HELLO", "3"], into: &out)
        #expect(single(out) == .array([bulk("HELLO"), bulk("3")]))
    }

    @Test func valueBytes() {
        func written(_ v: RESPValue) -> String {
            var out: [UInt8] = []
            RESPWriter.write(v, into: &out)
            return String(decoding: out, as: UTF8.self)
        }
        #expect(written(.simpleString("OK")) == "+OK\r\n")
        #expect(written(.simpleString("a\r\nb")) == "+a  b\r\n")
        #expect(written(.simpleError("ERR x")) == "-ERR x\r\n")
        #expect(written(.integer(-5)) == ":-5\r\n")
        #expect(written(.null) == "_\r\n")
        #expect(written(.boolean(true)) == "#t\r\n")
        #expect(written(.double(1.5)) == ",1.5\r\n")
        #expect(written(.double(-.infinity)) == ",-inf\r\n")
        #expect(written(.double(1e20)) == ",1e+20\r\n")
        #expect(written(.bigNumber("-123")) == "(-123\r\n")
        #expect(written(.bulkError(bytes("E x"))) == "!3\r\nE x\r\n")
        #expect(written(.verbatimString(format: "txt", text: bytes("hi"))) == "=6\r\ntxt:hi\r\n")
        #expect(written(.map([entry(.simpleString("k"), .integer(1))])) == "%1\r\n+k\r\n:1\r\n")
        #expect(written(.set([.null])) == "~1\r\n_\r\n")
        #expect(written(.push([])) == ">0\r\n")
        #expect(written(.attribute([entry(.simpleString("a"), .boolean(false))], .integer(1))) == "|1\r\n+a\r\n#f\r\n:1\r\n")
    }

    /// Every value the writer produces parses back to itself, whole and byte by byte.
    @Test func roundTripOfEveryType() {
        let values: [RESPValue] = [
            .simpleString("PONG"), .simpleError("WRONGTYPE Operation"), .integer(.min), .integer(.max),
            .bulkString([0, 13, 10, 255]), .bulkString([]), .null, .boolean(false), .double(0.1), .double(-0.0),
            .double(.leastNonzeroMagnitude), .double(.greatestFiniteMagnitude), .double(.infinity), .bigNumber("+98765432109876543210"),
            .bulkError(bytes("ERR\r\nmulti")), .verbatimString(format: "mkd", text: bytes("# title\r\n")),
            .array([.array([]), .map([]), .set([])]),
            .map([entry(.array([.integer(1)]), .set([bulk("x")])), entry(.null, .null)]),
            .attribute([entry(bulk("ttl"), .integer(5))], .array([.attribute([], .integer(1))])),
            .push([bulk("message"), bulk("channel"), .bulkString(Array(repeating: 7, count: 300))]),
        ]
        for value in values {
            var out: [UInt8] = []
            RESPWriter.write(value, into: &out)
            #expect(single(out) == value, "\(value)")
        }
    }
}
