import Foundation
import SwitchboardJSON

/// An arbitrary JSON value: channel payloads are opaque JSON, so the SDK carries them as this.
///
/// Numbers are `Double` (as in JavaScript); integers beyond 2^53 lose precision.
public enum JSONValue: Sendable, Equatable, Hashable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else if let value = try? container.decode([String: JSONValue].self) {
            self = .object(value)
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a JSON value")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    // MARK: Accessors

    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    public var doubleValue: Double? { if case .number(let d) = self { d } else { nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { b } else { nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { o } else { nil } }
    public var isNull: Bool { self == .null }

    /// The number as an `Int` when it is integral and in range.
    public var intValue: Int? {
        guard case .number(let d) = self, d.rounded() == d, d.magnitude < 9.0e15 else { return nil }
        return Int(d)
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { o[key] } else { nil }
    }

    public subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, a.indices.contains(index) { a[index] } else { nil }
    }

    // MARK: Serialization

    /// Compact JSON text, object keys sorted, `/` not escaped (as JSONEncoder with
    /// `.sortedKeys` and `.withoutEscapingSlashes` wrote it, without its Encoder machinery:
    /// 9% of cb-bench's CPU). Throws `BrokerClientError.protocolError` for non-finite numbers.
    public func jsonString() throws -> String {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        try append(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private func append(to out: inout [UInt8]) throws(BrokerClientError) {
        switch self {
        case .null:
            out.append(contentsOf: "null".utf8)
        case .bool(let value):
            out.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let value):
            guard value.isFinite else {
                throw .protocolError("payload is not representable as JSON: \(value) is not a finite number")
            }
            // Integers up to 2^53 as integers ("3", not "3.0"); others in Swift's shortest
            // round-trip form ("0.1", "1e-07", "1e+20"), all valid JSON numbers.
            if value == value.rounded(), abs(value) < 9_007_199_254_740_992 {
                out.append(contentsOf: String(Int(value)).utf8)
            } else {
                out.append(contentsOf: "\(value)".utf8)
            }
        case .string(let value):
            JSONWriter.appendString(&out, value)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                try value.append(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.appendString(&out, key)
                out.append(UInt8(ascii: ":"))
                try members[key]!.append(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Parses JSON text (any top-level value).
    public init(jsonString: String) throws {
        try self.init(jsonData: Data(jsonString.utf8))
    }

    public init(jsonData: Data) throws {
        // Fast path: SwitchboardJSON's strict reader, which knows each value's kind before
        // building it. `init(from:)` (Codable) finds a value's kind by trying Bool, Double,
        // String, array, object in turn, and every failed try builds a DecodingError: that was
        // a third of cb-bench's CPU. Input nested deeper than `fastPathMaxDepth` goes to
        // JSONDecoder (its own limit is 512), so the reader's re-validation of nested ranges
        // stays O(bytes × fastPathMaxDepth).
        var bytes = [UInt8]()
        bytes.reserveCapacity(jsonData.count + 2)
        bytes.append(UInt8(ascii: "["))  // any top-level value, as the only element of an array
        bytes.append(contentsOf: jsonData)
        bytes.append(UInt8(ascii: "]"))
        let fast = bytes.withUnsafeBufferPointer { buffer -> Result<JSONValue, JSONError> in
            do throws(JSONError) {
                let elements = try JSONReader.parseArray(buffer, in: 0..<buffer.count, maxDepth: Self.fastPathMaxDepth + 1)
                guard elements.count == 1 else { throw .invalid }
                return .success(try Self.value(buffer, elements[0].kind, elements[0].range))
            } catch {
                return .failure(error)
            }
        }
        switch fast {
        case .success(let value):
            self = value
        case .failure(.tooDeep):
            do {
                self = try JSONDecoder().decode(JSONValue.self, from: jsonData)
            } catch {
                throw BrokerClientError.protocolError("invalid JSON: \(error)")
            }
        case .failure(let error):
            throw BrokerClientError.protocolError("invalid JSON: \(error)")
        }
    }

    /// Nesting the fast parser handles (deeper goes to JSONDecoder).
    static let fastPathMaxDepth = 32

    /// Builds the value of kind `kind` at `buffer[range]` (already validated by the reader).
    private static func value(_ buffer: UnsafeBufferPointer<UInt8>, _ kind: JSONKind, _ range: Range<Int>) throws(JSONError) -> JSONValue {
        switch kind {
        case .null:
            return .null
        case .bool:
            return .bool(buffer[range.lowerBound] == UInt8(ascii: "t"))
        case .number:
            // The reader validated the RFC 8259 grammar; Double(String) (strtod) converts it.
            guard let number = Double(String(decoding: UnsafeBufferPointer(rebasing: buffer[range]), as: UTF8.self)),
                  number.isFinite else { throw .invalid }
            return .number(number)
        case .string:
            return .string(try JSONReader.decodeString(buffer, range))
        case .array:
            var values: [JSONValue] = []
            for element in try JSONReader.parseArray(buffer, in: range, maxDepth: fastPathMaxDepth) {
                values.append(try value(buffer, element.kind, element.range))
            }
            return .array(values)
        case .object:
            var members: [String: JSONValue] = [:]
            for (key, member) in try JSONReader.parseObject(buffer, in: range, maxDepth: fastPathMaxDepth, maxMembers: .max) {
                members[key] = try value(buffer, member.kind, member.range)
            }
            return .object(members)
        }
    }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

extension JSONValue: CustomStringConvertible {
    public var description: String { (try? jsonString()) ?? "<invalid JSON>" }
}
