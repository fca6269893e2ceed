import Foundation  // tests only: Process to run redis-cli --cluster create

extension RedisServer {
    /// A Redis Cluster started here on 127.0.0.1 and stopped by the caller: 3 masters, each with
    /// `replicas` replicas, their slots spread by `redis-cli --cluster create`, every server at
    /// `cluster_state:ok`. Ports below 55536: each server's cluster bus listens on its port +
    /// 10000. Full coverage is not required, so the slots of a dead master fail alone (without
    /// it the whole cluster refuses every command once the dead master is marked failed).
    /// Missing `redis-cli` is a failure, not a skip: install Debian's redis-tools.
    public static func startCluster(replicas: Int = 0) throws -> [RedisServer] {
        precondition(replicas >= 0)
        let servers = try (0..<(3 * (1 + replicas))).map { _ in
            try RedisServer(extraArguments: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                             "--cluster-node-timeout", "1000", "--cluster-require-full-coverage", "no"],
                            maxPort: 55_535)
        }
        let cli = "/usr/bin/redis-cli"
        guard FileManager.default.isExecutableFile(atPath: cli) else {
            servers.forEach { $0.stop() }
            throw Failure(description: "redis-cli missing: install Debian's redis-tools")
        }
        let create = Process()
        create.executableURL = URL(fileURLWithPath: cli)
        create.arguments = ["--cluster", "create"] + servers.map { "127.0.0.1:\($0.port)" }
            + ["--cluster-replicas", String(replicas), "--cluster-yes"]
        create.standardOutput = FileHandle.nullDevice
        create.standardError = FileHandle.nullDevice
        try create.run()
        create.waitUntilExit()
        guard create.terminationStatus == 0 else {
            servers.forEach { $0.stop() }
            throw Failure(description: "redis-cli --cluster create failed (status \(create.terminationStatus))")
        }
        for server in servers {
            guard waitUntil(timeoutMilliseconds: 20_000, { redisInline(server.port, "CLUSTER INFO").contains("cluster_state:ok") }) else {
                servers.forEach { $0.stop() }
                throw Failure(description: "no cluster_state:ok on \(server.port) within 20 s")
            }
        }
        return servers
    }
}

/// One inline command to the Redis server on `port`; its raw reply as read by one `fill()`
/// ("" when it could not be asked). For small replies and polling, not for RESP parsing.
public func redisInline(_ port: Int, _ command: String) -> String {
    guard let c = try? TestClient(port: port), (try? c.send(command + "\r\n")) != nil, (try? c.fill()) == true else { return "" }
    return String(decoding: c.buffered, as: UTF8.self)
}
