import COpenSSL

/// The API keys that may publish over REST, checked in constant time.
///
/// Each key is stored as its SHA-256 digest; a presented key is hashed and compared with every
/// stored digest by `CRYPTO_memcmp`, without stopping at a match. So the time taken reveals
/// neither how many leading bytes matched, nor the keys' lengths, nor which key matched.
public struct APIKeySet: Sendable {
    private let digests: [[UInt8]]

    /// `keys`: the accepted keys; empty keys are ignored (an empty header must never match).
    public init(_ keys: [String]) {
        digests = keys.filter { !$0.isEmpty }.map { APIKeySet.digest(Array($0.utf8)) }
    }

    public var isEmpty: Bool { digests.isEmpty }
    public var count: Int { digests.count }

    /// Whether `presented` is one of the keys.
    public func contains(_ presented: [UInt8]) -> Bool {
        guard !presented.isEmpty else { return false }
        let d = APIKeySet.digest(presented)
        var matched = false
        for stored in digests {
            let equal = stored.withUnsafeBufferPointer { s in d.withUnsafeBufferPointer { p in
                sb_memcmp_consttime(s.baseAddress, p.baseAddress, 32) == 0
            } }
            // No early exit: every key is compared every time.
            matched = matched || equal
        }
        return matched
    }

    /// The key in an `Authorization` header value: the text after `Bearer ` (exact prefix, as the
    /// reference trims it), or the whole value (the reference accepts a bare key too).
    public static func credential(fromAuthorization value: [UInt8]) -> [UInt8] {
        let prefix = Array("Bearer ".utf8)
        if value.count >= prefix.count && Array(value[0..<prefix.count]) == prefix {
            return Array(value[prefix.count...])
        }
        return value
    }

    private static func digest(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let rc = bytes.withUnsafeBufferPointer { b in out.withUnsafeMutableBufferPointer { o in sb_sha256(b.baseAddress, b.count, o.baseAddress) } }
        precondition(rc == 0, "SHA-256 failed")
        return out
    }
}
