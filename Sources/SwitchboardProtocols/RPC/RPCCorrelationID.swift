// The strict JSON reader/writer lives in SwitchboardProtocols today and moves to the
// SwitchboardJSON target (branch broadcaster); this import makes both layouts build.
#if canImport(SwitchboardJSON)
import SwitchboardJSON
#endif

/// A `correlationId` as it appeared on the wire: the exact JSON text of a string or a number,
/// echoed back byte for byte in the answer. The reference generates UUID v4 strings; the seed's
/// example session uses short strings (`"foo"`); raw clients sometimes use numbers.
public struct RPCCorrelationID: Hashable, Sendable, CustomStringConvertible {
    /// The JSON text, e.g. `"\"53f5…\""` or `"7"`.
    public let jsonText: String

    /// An id that is this string (written as a JSON string).
    public init(_ string: String) {
        var out: [UInt8] = []
        JSONWriter.appendString(&out, string)
        jsonText = String(decoding: out, as: UTF8.self)
    }

    /// Already-validated JSON text of a string or a number (the decoder's path).
    init(validatedJSON text: String) {
        jsonText = text
    }

    public var description: String { jsonText }
}
