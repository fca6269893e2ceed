import Testing
@testable import SwitchboardRESP
import SwitchboardDocMirror

struct BadInput: CustomTestStringConvertible, Sendable {
    var name: String
    var raw: [UInt8]
    var expected: RESPParseError
    var testDescription: String { name }
}

private func row(_ name: String, _ raw: String, _ expected: RESPParseError) -> BadInput {
    BadInput(name: name, raw: Array(raw.utf8), expected: expected)
}

/// The limits the table runs with: small, so the limit rows stay short.
let badInputLimits = RESPLimits(maxBulkBytes: 64, maxLineBytes: 32, maxAggregateCount: 16, maxDepth: 4, maxValueBytes: 256)

/// Every parsing rule, violated once. Mirrored in Sources/SwitchboardRESP/BAD_INPUTS.md.
let badInputs: [BadInput] = [
    // Type byte
    row("unknown type byte", "?x\r\n", .invalidTypeByte(0x3F)),
    row("inline command instead of a value", "PING\r\n", .invalidTypeByte(0x50)),
    row("empty line instead of a value", "\r\n", .invalidTypeByte(0x0D)),
    row("unknown type byte inside an array", "*1\r\n@\r\n", .invalidTypeByte(0x40)),
    row("streamed string", "$?\r\n;4\r\nHell\r\n;0\r\n", .streamingUnsupported),
    row("streamed array", "*?\r\n:1\r\n.\r\n", .streamingUnsupported),
    row("streamed chunk marker", ";4\r\nHell\r\n", .streamingUnsupported),
    // Line endings
    row("bare LF after simple string", "+OK\n", .invalidLineEnding),
    row("bare LF after integer", ":1\n", .invalidLineEnding),
    row("bare LF after length", "$1\nx\r\n", .invalidLineEnding),
    row("CR inside simple string", "+O\rK\r\n", .invalidFraming),
    row("CR inside simple error", "-ERR a\rb\r\n", .invalidFraming),
    row("bulk payload longer than declared", "$3\r\nabcd\r\n", .invalidFraming),
    row("bulk payload followed by bare LF", "$3\r\nabc\n", .invalidFraming),
    row("bulk payload followed by LF CR", "$3\r\nabc\n\r", .invalidFraming),
    // Lengths
    row("empty length", "$\r\n", .invalidLength),
    row("length with plus sign", "$+3\r\nabc\r\n", .invalidLength),
    row("length with leading zero", "$03\r\nabc\r\n", .invalidLength),
    row("length with space", "$ 3\r\nabc\r\n", .invalidLength),
    row("hex length", "$0x3\r\nabc\r\n", .invalidLength),
    row("negative length", "$-2\r\n", .invalidLength),
    row("length overflowing 64 bits", "$99999999999999999999\r\n", .invalidLength),
    row("negative count", "*-2\r\n", .invalidLength),
    row("null map", "%-1\r\n", .invalidLength),
    row("null set", "~-1\r\n", .invalidLength),
    row("null push", ">-1\r\n", .invalidLength),
    row("null bulk error", "!-1\r\n", .invalidLength),
    row("null verbatim string", "=-1\r\n", .invalidLength),
    row("count with letters", "*2a\r\n", .invalidLength),
    // Simple values
    row("empty integer", ":\r\n", .invalidInteger),
    row("integer with space", ": 1\r\n", .invalidInteger),
    row("integer with leading zero", ":01\r\n", .invalidInteger),
    row("integer sign only", ":-\r\n", .invalidInteger),
    row("integer with fraction", ":1.5\r\n", .invalidInteger),
    row("integer above Int64", ":9223372036854775808\r\n", .invalidInteger),
    row("integer below Int64", ":-9223372036854775809\r\n", .invalidInteger),
    row("empty double", ",\r\n", .invalidDouble),
    row("double with trailing dot", ",1.\r\n", .invalidDouble),
    row("double with leading dot", ",.5\r\n", .invalidDouble),
    row("hex double", ",0x1p3\r\n", .invalidDouble),
    row("double spelled infinity", ",infinity\r\n", .invalidDouble),
    row("double NaN in capitals", ",NaN\r\n", .invalidDouble),
    row("double with empty exponent", ",1e\r\n", .invalidDouble),
    row("double with text after it", ",1.5x\r\n", .invalidDouble),
    row("empty boolean", "#\r\n", .invalidBoolean),
    row("boolean true spelled out", "#true\r\n", .invalidBoolean),
    row("boolean in capitals", "#T\r\n", .invalidBoolean),
    row("empty big number", "(\r\n", .invalidBigNumber),
    row("big number sign only", "(-\r\n", .invalidBigNumber),
    row("big number with fraction", "(1.5\r\n", .invalidBigNumber),
    row("null with content", "_x\r\n", .invalidNull),
    // Verbatim strings
    row("verbatim shorter than its format", "=3\r\ntxt\r\n", .invalidVerbatim),
    row("verbatim without colon", "=7\r\ntxt-abc\r\n", .invalidVerbatim),
    row("verbatim format with a control byte", "=7\r\nt\u{1}t:abc\r\n", .invalidVerbatim),
    row("verbatim format with a colon", "=7\r\nt:t:abc\r\n", .invalidVerbatim),
    // Push
    row("push inside an array", "*1\r\n>1\r\n+x\r\n", .nestedPush),
    row("push as a map value", "%1\r\n+k\r\n>0\r\n", .nestedPush),
    row("push inside an attribute", "|1\r\n+k\r\n>0\r\n", .nestedPush),
    // Limits (maxBulkBytes 64, maxLineBytes 32, maxAggregateCount 16, maxDepth 4, maxValueBytes 256)
    row("bulk string over maxBulkBytes", "$65\r\n", .bulkTooLong),
    row("bulk error over maxBulkBytes", "!65\r\n", .bulkTooLong),
    row("verbatim string over maxBulkBytes", "=65\r\n", .bulkTooLong),
    row("simple string over maxLineBytes", "+" + String(repeating: "a", count: 33) + "\r\n", .lineTooLong),
    row("simple string over maxLineBytes without end", "+" + String(repeating: "a", count: 40), .lineTooLong),
    row("length line over maxLineBytes", "$" + String(repeating: "0", count: 33) + "\r\n", .lineTooLong),
    row("array over maxAggregateCount", "*17\r\n", .aggregateTooLarge),
    row("map over maxAggregateCount", "%17\r\n", .aggregateTooLarge),
    row("attribute over maxAggregateCount", "|17\r\n", .aggregateTooLarge),
    row("arrays nested over maxDepth", "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", .tooDeep),
    row("maps nested over maxDepth", "%1\r\n+k\r\n%1\r\n+k\r\n%1\r\n+k\r\n%1\r\n+k\r\n~1\r\n:1\r\n", .tooDeep),
    row("bulk strings summing over maxValueBytes", "*5\r\n" + String(repeating: "$50\r\n" + String(repeating: "x", count: 50) + "\r\n", count: 5), .valueTooLarge),
    row("count the value budget cannot hold", "*4\r\n" + String(repeating: "$64\r\n" + String(repeating: "x", count: 64) + "\r\n", count: 3) + "*16\r\n", .valueTooLarge),
    row("lines summing over maxValueBytes", "*16\r\n" + String(repeating: "+" + String(repeating: "s", count: 30) + "\r\n", count: 16), .valueTooLarge),
]

@Suite struct BadInputTests {
    @Test func tableCoversEveryRule() {
        #expect(badInputs.count >= 50)
        #expect(Set(badInputs.map(\.name)).count == badInputs.count, "row names are unique")
        // Every error case appears at least once.
        let kinds = Set(badInputs.map { "\($0.expected)".prefix(while: { $0 != "(" }) })
        #expect(kinds.count == 17, "error kinds covered: \(kinds.sorted())")
    }

    @Test(arguments: badInputs)
    func rejected(_ input: BadInput) {
        let (whole, split) = errorOf(input.raw, limits: badInputLimits)
        #expect(whole == input.expected, "whole: got \(String(describing: whole))")
        #expect(split == input.expected, "byte by byte: got \(String(describing: split))")
    }

    /// The Markdown copy for the docs must list exactly the table above.
    @Test func markdownMirrorsTable() throws {
        let rendered = renderBadInputsMarkdown()
        let onDisk = try DocMirror.committed("Sources/SwitchboardRESP/BAD_INPUTS.md", rendered: rendered, regenerate: "REGENERATE_BAD_INPUTS")
        #expect(onDisk == rendered, "run the tests with REGENERATE_BAD_INPUTS=1 to rewrite BAD_INPUTS.md")
    }
}

func renderBadInputsMarkdown() -> String {
    let l = badInputLimits
    var out = """
    # Rejected inputs

    Every stream below is rejected by `RESPParser` with the given error, whether fed whole or one
    byte at a time, with the limits maxBulkBytes \(l.maxBulkBytes), maxLineBytes \(l.maxLineBytes),
    maxAggregateCount \(l.maxAggregateCount), maxDepth \(l.maxDepth), maxValueBytes \(l.maxValueBytes).
    Generated from `Tests/SwitchboardRESPTests/BadInputTests.swift` (`markdownMirrorsTable` fails
    when they drift apart).

    | Rule | Input | Error |
    |---|---|---|

    """
    for input in badInputs {
        out += "| \(input.name) | `\(DocMirror.markdownBytes(input.raw))` | \(input.expected) |\n"
    }
    return out
}
