// The strict JSON reader/writer lives in SwitchboardProtocols today and moves to the
// SwitchboardJSON target (branch broadcaster); this import makes both layouts build.
#if canImport(SwitchboardJSON)
import SwitchboardJSON
#endif

/// Why a message could not be read. Each one is answered with a `protocol` error whose
/// `data.reason` is the raw value (docs-pending/rpc.md lists them; a test keeps the list and
/// this enum in sync).
public enum RPCMalformedReason: String, Sendable, Equatable, CaseIterable {
    case invalidUTF8
    case notJSON
    case tooDeep
    case notAnObject
    case missingType
    case typeNotString
    case unknownType
    case missingCorrelationId
    case badCorrelationId
    case correlationIdTooLong
    case nameNotString
    case nameTooLong
    case argsNotArray
    case argsTooLarge

    /// The error's `message` text.
    public func message(type: String?) -> String {
        switch self {
        case .invalidUTF8: "Message is not valid UTF-8"
        case .notJSON: "Message is not valid JSON"
        case .tooDeep: "Message is nested too deeply"
        case .notAnObject: "Message is not a JSON object"
        case .missingType: "Message has no type"
        case .typeNotString: "Message type is not a string"
        case .unknownType: "Unknown message type '\(type ?? "")'"
        case .missingCorrelationId: "Message has no correlationId"
        case .badCorrelationId: "correlationId must be a string or a number"
        case .correlationIdTooLong: "correlationId is too long"
        case .nameNotString: "Request name is missing or not a string"
        case .nameTooLong: "Request name is too long"
        case .argsNotArray: "Request args is missing or not an array"
        case .argsTooLarge: "Request args are too large"
        }
    }
}

/// A message that could not be read: the rule it broke, and what could be salvaged for the
/// answer (its `correlationId`, when readable and within limits, and its `type`).
public struct RPCMalformedMessage: Error, Sendable, Equatable {
    public var reason: RPCMalformedReason
    public var correlationId: RPCCorrelationID?
    public var type: String?

    public init(_ reason: RPCMalformedReason, correlationId: RPCCorrelationID? = nil, type: String? = nil) {
        self.reason = reason
        self.correlationId = correlationId
        self.type = type
    }
}

/// Reads one RPC message from a WebSocket message's bytes. I/O-free and stateless.
///
/// Strict where the reference crashes (non-JSON text, `null`, deep nesting: each becomes an
/// `RPCMalformedMessage`), lenient where the reference is lenient on input it accepts
/// (an `error`'s fields are coerced as `lib/received-error.js` does; a `response` without
/// `result` reads as `null`). Limits are checked on the raw text before any value is built.
public struct RPCMessageDecoder: Sendable {
    public let limits: RPCLimits

    public init(limits: RPCLimits = RPCLimits()) {
        precondition(limits.validate() == nil, limits.validate() ?? "")
        self.limits = limits
    }

    /// Decodes a text message (already UTF-8-validated by the WebSocket layer).
    public func decode(text: String) -> Result<RPCMessage, RPCMalformedMessage> {
        var copy = text
        return copy.withUTF8 { decode(utf8: $0) }
    }

    /// Decodes a binary message: the reference client sends every message as a binary frame
    /// holding UTF-8 JSON, so binary is accepted once it is checked to be UTF-8.
    public func decode(binary bytes: UnsafeBufferPointer<UInt8>) -> Result<RPCMessage, RPCMalformedMessage> {
        guard String(validating: bytes, as: UTF8.self) != nil else { return .failure(RPCMalformedMessage(.invalidUTF8)) }
        return decode(utf8: bytes)
    }

    /// Decodes UTF-8 bytes the caller has validated.
    public func decode(utf8 bytes: UnsafeBufferPointer<UInt8>) -> Result<RPCMessage, RPCMalformedMessage> {
        do throws(RPCMalformedMessage) {
            return .success(try read(bytes))
        } catch {
            return .failure(error)
        }
    }

    private func read(_ bytes: UnsafeBufferPointer<UInt8>) throws(RPCMalformedMessage) -> RPCMessage {
        let members: [String: JSONMember]
        do {
            members = try JSONReader.parseObject(bytes, maxDepth: limits.maxDepth)
        } catch .tooDeep {
            throw RPCMalformedMessage(.tooDeep)
        } catch .notAnObject {
            throw RPCMalformedMessage(.notAnObject)
        } catch {
            throw RPCMalformedMessage(.notJSON)
        }

        // The correlationId first, so that every later failure can be answered to it.
        var correlationId: RPCCorrelationID? = nil
        var correlationProblem: RPCMalformedReason? = .missingCorrelationId
        if let m = members["correlationId"] {
            if m.kind != .string && m.kind != .number {
                correlationProblem = m.kind == .null ? .missingCorrelationId : .badCorrelationId
            } else if m.range.count > limits.maxCorrelationIdBytes {
                correlationProblem = .correlationIdTooLong
            } else {
                correlationId = RPCCorrelationID(validatedJSON: String(decoding: UnsafeBufferPointer(rebasing: bytes[m.range]), as: UTF8.self))
                correlationProblem = nil
            }
        }

        guard let typeMember = members["type"] else { throw RPCMalformedMessage(.missingType, correlationId: correlationId) }
        guard typeMember.kind == .string else { throw RPCMalformedMessage(.typeNotString, correlationId: correlationId) }
        let type = string(bytes, typeMember)
        func fail(_ reason: RPCMalformedReason) -> RPCMalformedMessage {
            RPCMalformedMessage(reason, correlationId: correlationId, type: type)
        }
        func requireCorrelationId() throws(RPCMalformedMessage) -> RPCCorrelationID {
            if let correlationProblem { throw fail(correlationProblem) }
            return correlationId!
        }

        switch type {
        case "init":
            return .initialize
        case "close":
            return .close
        case "ping":
            return .ping(correlationId: try requireCorrelationId())
        case "pong":
            return .pong(correlationId: try requireCorrelationId())
        case "request":
            let id = try requireCorrelationId()
            guard let nameMember = members["name"], nameMember.kind == .string else { throw fail(.nameNotString) }
            // The raw length (with quotes and escapes) bounds the decoded length from above, so
            // oversized names are refused before they are decoded.
            guard nameMember.range.count - 2 <= limits.maxNameBytes * 6 else { throw fail(.nameTooLong) }
            let name = string(bytes, nameMember)
            guard name.utf8.count <= limits.maxNameBytes else { throw fail(.nameTooLong) }
            guard let argsMember = members["args"], argsMember.kind == .array else { throw fail(.argsNotArray) }
            guard argsMember.range.count <= limits.maxArgsBytes else { throw fail(.argsTooLarge) }
            guard case .array(let args) = try value(bytes, argsMember.range) else { throw fail(.argsNotArray) }
            return .request(RPCRequest(name: name, args: args, correlationId: id))
        case "response":
            let id = try requireCorrelationId()
            let result = try members["result"].map { (m) throws(RPCMalformedMessage) in try value(bytes, m.range) } ?? .null
            return .response(correlationId: id, result: result)
        case "error":
            // As lib/received-error.js: an unknown errorType reads as protocol; a falsy subtype
            // as null; a missing message as "" and missing data as null. An error without a
            // usable correlationId is still an error (it is never answered: no reply loops).
            var payload = RPCErrorPayload(errorType: .protocol, message: "")
            if let m = members["errorType"], m.kind == .string, string(bytes, m) == "endpoint" { payload.errorType = .endpoint }
            if let m = members["errorSubtype"], m.kind == .string {
                let s = string(bytes, m)
                if let known = RPCErrorSubtype(rawValue: s) { payload.errorSubtype = known } else if !s.isEmpty { payload.otherSubtype = s }
            }
            if let m = members["message"], m.kind == .string { payload.message = string(bytes, m) }
            if let m = members["data"] { payload.data = try value(bytes, m.range) }
            return .error(correlationId: correlationId, payload)
        default:
            if type.hasPrefix("x-") {
                guard case .object(let body) = try value(bytes, 0..<bytes.count) else {
                    throw fail(.notAnObject)
                }
                return .application(type: type, body: body)
            }
            throw fail(.unknownType)
        }
    }

    private func string(_ bytes: UnsafeBufferPointer<UInt8>, _ m: JSONMember) -> String {
        assert(m.kind == .string)
        // Validated by the reader, so decoding cannot fail; "" keeps this total regardless.
        return (try? JSONReader.decodeString(bytes, m.range)) ?? ""
    }

    /// The value in `range` (validated by the reader already).
    private func value(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) throws(RPCMalformedMessage) -> RPCValue {
        do {
            return try RPCValue.build(bytes, range)
        } catch {
            throw RPCMalformedMessage(.notJSON)
        }
    }
}
