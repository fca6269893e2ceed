import SwitchboardIO
#if canImport(Glibc)
import Glibc
#endif

/// The cluster's settings (keys `cluster_*`, declared by `BrokerConfiguration`). The default
/// is one node in memory: no Redis.
public struct ClusterConfiguration: Sendable, Equatable {
    public var engine: ClusterEngineKind = .memory
    /// One Redis server (`standalone`) or a Redis Cluster (`cluster`: `cluster_redis_url` is any
    /// one of its masters, the slot map is read from it).
    public var redisMode: ClusterRedisMode = .standalone
    /// `redis://HOST:PORT` or `redis://HOST:PORT/DB`, optionally with credentials
    /// (`redis://USER:PASSWORD@HOST:PORT`, `redis://:PASSWORD@HOST:PORT`, percent-encoded).
    /// HOST is an IP literal or a name resolved once at start-up (never on a shard). No TLS.
    public var redisURL: String = "redis://127.0.0.1:6379"
    /// The Redis ACL user (`HELLO 3 AUTH USER PASSWORD`); empty: `default` (the `requirepass`
    /// user). Needs a password (from the URL, `redisPassword` or `redisPasswordFile`).
    public var redisUsername: String = ""
    /// The Redis password; empty: none. Never logged nor printed (prefer `redisPasswordFile`).
    public var redisPassword: String = ""
    /// A file whose content (one trailing newline dropped) is the Redis password, read once at
    /// start-up: keeps the secret out of the configuration file and the process's arguments.
    public var redisPasswordFile: String = ""
    /// The node numbers a cluster may use: socket ids carry the number in one byte.
    public static let nodeIDs = 0...255
    /// This node's number, in `nodeIDs` (socket ids carry it); unique in the cluster.
    public var nodeID: Int = 0
    /// Prefix of every Redis key and pub/sub channel the cluster uses.
    public var keyPrefix: String = "switchboard"
    /// Messages of each channel Redis keeps (its bounded history); 0 keeps none.
    public var historySize: Int = 100
    /// How long Redis keeps a channel's offset and history after its last publish; the next
    /// publish after that starts a new epoch.
    public var historyTTLMilliseconds: Int = 300_000
    /// Publishes one shard may have waiting for Redis's answer; beyond, publishes are refused.
    public var maxPendingPublishes: Int = 4_096
    public var connectTimeoutMilliseconds: Int = 2_000
    /// A Redis connection with replies owed and nothing received for this long is dropped.
    public var readTimeoutMilliseconds: Int = 5_000
    public var initialBackoffMilliseconds: Int = 100
    public var maxBackoffMilliseconds: Int = 5_000
    /// How often a node renews its membership in Redis.
    public var heartbeatMilliseconds: Int = 1_000
    /// How long a membership lasts without a renewal: a node that stopped (crash, partition)
    /// drops out of `Broker.clusterMembers()` within this.
    public var nodeTTLMilliseconds: Int = 5_000
    /// Most messages of one channel a shard reads back from the history to recover what its
    /// subscribers missed (after a reconnect, or a gap in offsets); more missed is reported
    /// as not recovered. 0 turns recovery reads off (every gap is reported as not recovered).
    public var recoveryMaxMessages: Int = 1_000
    /// How long a `subscribe`, `unsubscribe` or `subscriptions(of:)` on a socket of another
    /// node waits for that node's answer before it throws `BrokerError.timedOut`.
    public var remoteCallTimeoutMilliseconds: Int = 2_000
    /// Entries of a dead node's registrations one step of a protocol's clean-up script reads
    /// (the `COUNT` of its `HSCAN`; Redis may return somewhat more). Redis serves nobody else
    /// while a script runs: with 100,000 registrations of one node, one script over all of
    /// them took 68-116 ms removing nothing and 302 ms removing all; in steps of 1,000 the
    /// longest step took 3.5 and 4.0 ms (README, "What a clean-up costs Redis"), and other
    /// commands run between steps. Smaller: shorter stalls of Redis, more round trips.
    public var cleanUpBatchEntries: Int = 1_000
    /// The range `validate` accepts for `cleanUpBatchEntries`.
    public static let cleanUpBatchEntriesRange = 1...100_000

    public init() {}

    /// `redis://HOST:PORT[/DB]` taken apart; nil when malformed.
    package static func parseRedisURL(_ url: String) -> (host: String, port: Int, database: Int)? {
        guard url.hasPrefix("redis://") else { return nil }
        var rest = Substring(url.dropFirst("redis://".count))
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            guard let db = Int(rest[rest.index(after: slash)...]), db >= 0, db < 1 << 16 else { return nil }
            database = db
            rest = rest[..<slash]
        }
        let host: Substring
        let portText: Substring
        if rest.hasPrefix("[") {  // [IPv6]:port
            guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            portText = rest[rest.index(close, offsetBy: 2)...]
        } else {
            guard let colon = rest.lastIndex(of: ":") else { return nil }
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        }
        guard !host.isEmpty, !host.contains("@"), let port = Int(portText), (1...65_535).contains(port) else { return nil }
        return (String(host), port, database)
    }

    /// `redis://[USER[:PASSWORD]@]REST` split into its credentials (percent-decoded; nil when
    /// absent or empty) and `redis://REST`; nil when the user part is malformed.
    package static func splitRedisURL(_ url: String) -> (username: String?, password: String?, url: String)? {
        guard url.hasPrefix("redis://") else { return (nil, nil, url) }
        let rest = url.dropFirst("redis://".count)
        // The user part ends at the last '@' before the path (a password may hold '@' encoded only).
        let authority = rest.prefix { $0 != "/" }
        guard let at = authority.lastIndex(of: "@") else { return (nil, nil, url) }
        let userInfo = authority[..<at]
        let user: Substring
        let password: Substring?
        if let colon = userInfo.firstIndex(of: ":") {
            user = userInfo[..<colon]
            password = userInfo[userInfo.index(after: colon)...]
        } else {
            user = userInfo
            password = nil
        }
        guard let decodedUser = percentDecoded(user) else { return nil }
        var decodedPassword: String?
        if let password {
            guard let decoded = percentDecoded(password) else { return nil }
            decodedPassword = decoded
        }
        return (decodedUser.isEmpty ? nil : decodedUser, decodedPassword.flatMap { $0.isEmpty ? nil : $0 },
                "redis://" + rest[rest.index(after: at)...])
    }

    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var utf8 = text.utf8[...]
        while let byte = utf8.popFirst() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard utf8.count >= 2, let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) else { return nil }
            bytes.append(value)
            utf8 = utf8.dropFirst(2)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// `redisURL` with its password replaced by `***` (for logs and printed configurations).
    public var redactedRedisURL: String {
        guard let split = Self.splitRedisURL(redisURL), split.password != nil else { return redisURL }
        return "redis://" + (split.username ?? "") + ":***@" + split.url.dropFirst("redis://".count)
    }

    /// A problem with the values, or nil.
    public func validate() -> String? {
        guard let split = Self.splitRedisURL(redisURL), Self.parseRedisURL(split.url) != nil else {
            return "cluster_redis_url must be redis://[USER:PASSWORD@]HOST:PORT[/DB]"
        }
        let passwords = [split.password != nil, !redisPassword.isEmpty, !redisPasswordFile.isEmpty].filter { $0 }.count
        if passwords > 1 { return "give the Redis password once: in cluster_redis_url, cluster_redis_password or cluster_redis_password_file" }
        if split.username != nil, !redisUsername.isEmpty { return "give the Redis user once: in cluster_redis_url or cluster_redis_username" }
        if passwords == 0, split.username != nil || !redisUsername.isEmpty { return "a Redis user (cluster_redis_username or in cluster_redis_url) needs a password" }
        if redisMode == .cluster, let (_, _, database) = Self.parseRedisURL(split.url), database != 0 {
            return "cluster_redis_url: a Redis Cluster has database 0 only (cluster_redis_mode = cluster)"
        }
        if !Self.nodeIDs.contains(nodeID) { return "cluster_node_id must be 0...255" }
        if keyPrefix.isEmpty || keyPrefix.utf8.count > 64 || keyPrefix.contains(where: { $0 == "{" || $0 == "}" || $0 == " " }) {
            return "cluster_key_prefix must be 1...64 bytes without spaces or braces"
        }
        if historySize < 0 || historySize > 1_000_000 { return "cluster_history_size must be 0...1000000" }
        if historyTTLMilliseconds < 1_000 || historyTTLMilliseconds > 86_400_000 * 30 { return "cluster_history_ttl_ms must be 1000...2592000000" }
        if maxPendingPublishes < 1 || maxPendingPublishes > 1 << 20 { return "cluster_max_pending_publishes must be 1...1048576" }
        if connectTimeoutMilliseconds < 1 || readTimeoutMilliseconds < 1 { return "cluster_redis_connect_timeout_ms and cluster_redis_read_timeout_ms must be >= 1" }
        if initialBackoffMilliseconds < 1 || maxBackoffMilliseconds < initialBackoffMilliseconds { return "cluster_redis_backoff_ms must be >= 1 and <= cluster_redis_max_backoff_ms" }
        if heartbeatMilliseconds < 10 || nodeTTLMilliseconds < 2 * heartbeatMilliseconds { return "cluster_heartbeat_ms must be >= 10 and cluster_node_ttl_ms >= 2 x cluster_heartbeat_ms" }
        if recoveryMaxMessages < 0 || recoveryMaxMessages > 100_000 { return "cluster_recovery_max_messages must be 0...100000" }
        if remoteCallTimeoutMilliseconds < 1 || remoteCallTimeoutMilliseconds > 600_000 { return "cluster_remote_call_timeout_ms must be 1...600000" }
        if !Self.cleanUpBatchEntriesRange.contains(cleanUpBatchEntries) { return "cluster_cleanup_batch_entries must be 1...100000" }
        return nil
    }

    /// The outbound options of a shard's Redis connection, its host resolved to an address.
    /// Blocking (name resolution): call it at start-up, never on a shard.
    /// Reads `redisPasswordFile` too: the credentials each connection authenticates with.
    package func resolvedOutboundOptions() -> Result<(options: OutboundOptions, database: Int, credentials: RedisCredentials?), ClusterStartError> {
        guard let split = Self.splitRedisURL(redisURL), let (host, port, database) = Self.parseRedisURL(split.url) else {
            return .failure(.badURL(redactedRedisURL))
        }
        var password = split.password ?? (redisPassword.isEmpty ? nil : redisPassword)
        if !redisPasswordFile.isEmpty {
            guard let content = Self.readSmallFile(redisPasswordFile) else { return .failure(.unreadablePasswordFile(redisPasswordFile)) }
            var text = Substring(content)
            if text.hasSuffix("\r\n") { text = text.dropLast(2) } else if text.hasSuffix("\n") { text = text.dropLast() }
            guard !text.isEmpty else { return .failure(.unreadablePasswordFile(redisPasswordFile)) }
            password = String(text)
        }
        let credentials = password.map { RedisCredentials(username: split.username ?? (redisUsername.isEmpty ? "default" : redisUsername), password: $0) }
        guard let address = Self.resolve(host) else { return .failure(.unresolvable(host)) }
        var options = OutboundOptions(host: address, port: port)
        options.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        options.readTimeoutMilliseconds = readTimeoutMilliseconds
        options.initialBackoffMilliseconds = initialBackoffMilliseconds
        options.maxBackoffMilliseconds = maxBackoffMilliseconds
        return .success((options, database, credentials))
    }

    /// A file of at most 64 KiB, or nil. Blocking: start-up only.
    private static func readSmallFile(_ path: String) -> String? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes = [UInt8](repeating: 0, count: 65_537)
        let count = fread(&bytes, 1, bytes.count, file)
        guard count <= 65_536, ferror(file) == 0 else { return nil }
        return String(validating: bytes[..<count], as: UTF8.self)
    }

    private static func resolve(_ host: String) -> String? {
        var probe = in6_addr()
        if inet_pton(AF_INET, host, &probe) == 1 || inet_pton(AF_INET6, host, &probe) == 1 { return host }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(result) }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let ok: Bool
        switch first.pointee.ai_family {
        case AF_INET:
            ok = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                var a = sin.pointee.sin_addr
                return inet_ntop(AF_INET, &a, &text, socklen_t(text.count)) != nil
            }
        case AF_INET6:
            ok = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                var a = sin.pointee.sin6_addr
                return inet_ntop(AF_INET6, &a, &text, socklen_t(text.count)) != nil
            }
        default:
            ok = false
        }
        return ok ? String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
    }
}

/// Which kind of Redis deployment `cluster_engine = redis` talks to.
public enum ClusterRedisMode: String, Sendable {
    /// One Redis server (PUBLISH/SUBSCRIBE).
    case standalone
    /// A Redis Cluster (7.0+): channels map to hash slots, sharded pub/sub (SPUBLISH/SSUBSCRIBE)
    /// on each slot's master, MOVED and ASK followed.
    case cluster
}

/// What every Redis connection authenticates with (`HELLO 3 AUTH USERNAME PASSWORD`).
/// `description` never shows the password.
package struct RedisCredentials: Sendable, Equatable, CustomStringConvertible {
    package var username: String
    package var password: String

    package var description: String { "user '\(username)' (password not shown)" }
}

/// Why the cluster engine cannot start.
public enum ClusterStartError: Error, Sendable, Equatable, CustomStringConvertible {
    case badURL(String)
    case unresolvable(String)
    case unreadablePasswordFile(String)

    public var description: String {
        switch self {
        case .badURL(let url): return "cluster_redis_url '\(url)' is not redis://HOST:PORT[/DB]"
        case .unresolvable(let host): return "cluster_redis_url: cannot resolve '\(host)'"
        case .unreadablePasswordFile(let path): return "cluster_redis_password_file '\(path)' cannot be read, is empty or over 64 KiB"
        }
    }
}
