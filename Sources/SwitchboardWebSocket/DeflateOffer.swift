/// One permessage-deflate offer from `Sec-WebSocket-Extensions` (RFC 7692 §7.1), and our answer to it.
struct DeflateOffer: Equatable {
    var serverNoContextTakeover = false
    var clientNoContextTakeover = false
    /// nil when not offered.
    var serverMaxWindowBits: Int?
    /// `.some(nil)` when offered without a value (the client supports the parameter, any value).
    var clientMaxWindowBits: Int??

    /// Parses the parameters of one offer (`name` already known to be permessage-deflate).
    /// Returns nil (decline this offer) on unknown or duplicate parameters or bad values.
    init?(parameters: [(name: String, value: String?)]) {
        var seen = Set<String>()
        for (rawName, value) in parameters {
            let name = rawName.lowercased()
            guard seen.insert(name).inserted else { return nil }
            switch name {
            case "server_no_context_takeover":
                guard value == nil else { return nil }
                serverNoContextTakeover = true
            case "client_no_context_takeover":
                guard value == nil else { return nil }
                clientNoContextTakeover = true
            case "server_max_window_bits":
                guard let value, let bits = Self.windowBits(value) else { return nil }
                serverMaxWindowBits = bits
            case "client_max_window_bits":
                if let value {
                    guard let bits = Self.windowBits(value) else { return nil }
                    clientMaxWindowBits = .some(bits)
                } else {
                    clientMaxWindowBits = .some(nil)
                }
            default:
                return nil
            }
        }
    }

    /// RFC 7692 §7.1.2: a decimal 8...15 with no leading zero.
    static func windowBits(_ text: String) -> Int? {
        guard let first = text.utf8.first, first != UInt8(ascii: "0"), text.utf8.count <= 2,
              text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let bits = Int(text), (8...15).contains(bits) else { return nil }
        return bits
    }

    /// The parameters we run with when accepting this offer. We accept every valid offer as is:
    /// each parameter only asks us to do less (smaller window, resets), which we can always honour.
    var parameters: PerMessageDeflateParameters {
        PerMessageDeflateParameters(
            serverNoContextTakeover: serverNoContextTakeover,
            clientNoContextTakeover: clientNoContextTakeover,
            serverMaxWindowBits: serverMaxWindowBits ?? 15,
            clientMaxWindowBits: (clientMaxWindowBits ?? nil) ?? 15)
    }

    /// The `Sec-WebSocket-Extensions` response value: echoes each parameter the client sent.
    /// A valueless client_max_window_bits is a capability hint and is left out (the client then
    /// uses 15, which our inflater handles).
    var responseValue: String {
        var value = "permessage-deflate"
        if serverNoContextTakeover { value += "; server_no_context_takeover" }
        if clientNoContextTakeover { value += "; client_no_context_takeover" }
        if let serverMaxWindowBits { value += "; server_max_window_bits=\(serverMaxWindowBits)" }
        if case .some(.some(let bits)) = clientMaxWindowBits { value += "; client_max_window_bits=\(bits)" }
        return value
    }

    /// Splits header values into extension offers: `name; param[=value]; ...`, comma-separated,
    /// values possibly quoted. Returns nil for a syntactically broken header (decline all).
    static func parseExtensions(_ values: [String]) -> [(name: String, parameters: [(name: String, value: String?)])]? {
        var result: [(name: String, parameters: [(name: String, value: String?)])] = []
        for value in values {
            // Split on commas and semicolons outside quotes.
            var elements: [[String]] = [[]]
            var current = ""
            var inQuotes = false
            for character in value {
                if inQuotes {
                    if character == "\"" { inQuotes = false } else { current.append(character) }
                    continue
                }
                switch character {
                case "\"": inQuotes = true
                case ";":
                    elements[elements.count - 1].append(current)
                    current = ""
                case ",":
                    elements[elements.count - 1].append(current)
                    current = ""
                    elements.append([])
                default: current.append(character)
                }
            }
            if inQuotes { return nil }
            elements[elements.count - 1].append(current)
            for element in elements {
                let parts = element.map { trim($0) }
                guard let name = parts.first, !name.isEmpty else {
                    // Empty list elements are allowed by the #rule (RFC 9110 §5.6.1).
                    if parts.allSatisfy({ $0.isEmpty }) { continue }
                    return nil
                }
                var parameters: [(name: String, value: String?)] = []
                for part in parts.dropFirst() {
                    if let equals = part.firstIndex(of: "=") {
                        parameters.append((trim(String(part[..<equals])), trim(String(part[part.index(after: equals)...]))))
                    } else {
                        parameters.append((part, nil))
                    }
                }
                result.append((name, parameters))
            }
        }
        return result
    }

    /// `text` without leading and trailing spaces and tabs (HTTP's optional white space).
    static func trim<Text: StringProtocol>(_ text: Text) -> String {
        var scalars = Substring(text)
        while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(scalars)
    }

    /// The first acceptable permessage-deflate offer in the client's list, if any.
    static func firstAcceptable(_ values: [String]) -> DeflateOffer? {
        guard let extensions = parseExtensions(values) else { return nil }
        for candidate in extensions where candidate.name.lowercased() == "permessage-deflate" {
            if let offer = DeflateOffer(parameters: candidate.parameters) { return offer }
        }
        return nil
    }
}
