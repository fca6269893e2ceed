#if canImport(Glibc)
import Glibc
#endif

/// Local addresses the harness's connections come from (`--source-addresses`), so that one
/// target can take more connections than one source address has ephemeral ports (about 28,000
/// with the default `ip_local_port_range`): 100,000 connections to 127.0.0.1:PORT need four
/// loopback sources, e.g. 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4 (all of 127.0.0.0/8 is
/// loopback on Linux, no set-up needed).
public enum SourceAddresses {
    /// Parses "A,B,C" or "127.0.0.1-8" (the last octet as a range) into IPv4 addresses.
    /// nil for anything else (IPv6 sources are not supported).
    public static func parse(_ text: String) -> [String]? {
        var out: [String] = []
        for part in text.split(separator: ",") {
            if let dash = part.firstIndex(of: "-") {
                let first = String(part[..<dash])
                guard let lastDot = first.lastIndex(of: "."), let low = Int(first[first.index(after: lastDot)...]),
                      let high = Int(part[part.index(after: dash)...]), low <= high, high <= 255 else { return nil }
                let prefix = first[...lastDot]
                for octet in low...high { out.append("\(prefix)\(octet)") }
            } else {
                out.append(String(part))
            }
        }
        for a in out {
            var v4 = in_addr()
            guard inet_pton(AF_INET, a, &v4) == 1 else { return nil }
        }
        return out.isEmpty ? nil : out
    }

    /// sockaddr_in bytes (port 0) of an IPv4 address that `parse` accepted.
    static func socketAddress(_ address: String) -> [UInt8] {
        var v4 = sockaddr_in()
        v4.sin_family = sa_family_t(AF_INET)
        v4.sin_port = 0
        let ok = inet_pton(AF_INET, address, &v4.sin_addr)
        precondition(ok == 1, "source address \(address) was not validated")
        return withUnsafeBytes(of: &v4) { Array($0) }
    }

    /// Binds `fd` to `address` (port 0) with IP_BIND_ADDRESS_NO_PORT, so the kernel picks the
    /// port at connect time per destination instead of reserving one per bind. Returns errno or 0.
    static func bind(_ fd: Int32, _ address: [UInt8]) -> Int32 {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_IP), 24 /* IP_BIND_ADDRESS_NO_PORT */, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = address.withUnsafeBytes { Glibc.bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
        return rc == 0 ? 0 : errno
    }
}
