#if canImport(Glibc)
import Glibc
#endif

/// What a run with many connections needs from the machine, checked before the first connect
/// (issue 16 item 2: 100,000 held WebSockets): one file descriptor per connection, and one
/// ephemeral port per connection and source address toward the one target. Without the check
/// a run past either limit fails connection by connection (EMFILE, EADDRNOTAVAIL) and reports
/// thousands of failures instead of the reason.
enum ConnectionCapacity {
    /// Descriptors the harness keeps for itself (stdio, threads' eventfds and epoll, output).
    static let reservedDescriptors = 64

    /// The process's descriptor limit (soft, after `sb_raise_nofile_limit` raised it to the hard one).
    static func descriptorLimit() -> Int? {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return nil }
        // RLIM_INFINITY is all ones: anything past Int.max is no limit.
        return rl.rlim_cur >= UInt(Int.max) ? Int.max : Int(rl.rlim_cur)
    }

    /// Ports in `net.ipv4.ip_local_port_range` (28,232 with Linux's default 32768-60999), or
    /// nil when it cannot be read.
    static func ephemeralPorts() -> Int? {
        guard let f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r") else { return nil }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 64)
        guard fgets(&line, Int32(line.count), f) != nil else { return nil }
        let fields = String(decoding: line.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        guard fields.count == 2, fields[1] >= fields[0] else { return nil }
        return fields[1] - fields[0] + 1
    }

    /// nil when `connections` fit, else the reason and what to change. `sources` is the number
    /// of `--source-addresses` (0 = the kernel's choice: one address).
    static func problem(connections: Int, sources: Int, descriptorLimit: Int?, ephemeralPorts: Int?) -> String? {
        if let limit = descriptorLimit, connections + reservedDescriptors > limit {
            return "\(connections) connections need \(connections + reservedDescriptors) file descriptors; "
                + "the limit is \(limit) (raised to the hard limit already): raise `ulimit -Hn` (as root, or "
                + "LimitNOFILE= / --ulimit nofile= for a service or container) and run again"
        }
        if let ports = ephemeralPorts {
            let addresses = max(sources, 1)
            if connections > ports * addresses {
                let needed = (connections + ports - 1) / ports
                return "\(connections) connections need \(needed) source addresses toward one target "
                    + "(\(ports) ephemeral ports each, net.ipv4.ip_local_port_range); got \(addresses): "
                    + "pass --source-addresses 127.0.0.1-\(needed) (loopback targets) or widen the port range"
            }
        }
        return nil
    }
}
