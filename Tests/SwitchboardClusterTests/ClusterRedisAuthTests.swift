import Foundation  // tests only: the password file
@testable import SwitchboardCluster
import SwitchboardRESP
import SwitchboardTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Redis AUTH: `switchboard-echo` nodes against a real redis-server that requires a password
/// (`--requirepass`) or an ACL user (`--user`), started here on ephemeral ports. `/broadcast/room`
/// sockets subscribe on upgrade and publish what they send.
@Suite("Cluster over Redis: AUTH", .serialized)
struct ClusterRedisAuthTests {
    static let channel = "/broadcast/room"
    static let redisChannel = "switchboard:ch:/broadcast/room"

    func startNode(_ id: Int, url: String, _ extra: [String] = []) throws -> NodeProcess {
        try NodeProcess("switchboard-echo", [
            "--host", "127.0.0.1", "--port", "0", "--shards", "1",
            "--set", "cluster_engine=redis", "--set", "cluster_redis_url=\(url)",
            "--set", "cluster_node_id=\(id)", "--set", "tick_ms=10",
            "--set", "cluster_redis_backoff_ms=20", "--set", "cluster_redis_max_backoff_ms=200",
        ] + extra.flatMap { ["--set", $0] })
    }

    func socket(_ node: NodeProcess) throws -> TestClient {
        let ws = try TestClient(port: node.port, receiveTimeoutMilliseconds: 10_000)
        #expect(try ws.upgrade(path: Self.channel).status == 101)
        return ws
    }

    /// Reads text frames until `text` arrives (earlier ones, e.g. a publisher's own echo, skipped).
    func read(_ ws: TestClient, until text: String) throws {
        for _ in 0..<16 where try ws.readFrame().text == text { return }
        Issue.record("'\(text)' never arrived")
    }

    /// A publish on `from` reaches a subscriber on `to`, through Redis.
    func delivered(from: NodeProcess, to: NodeProcess, probe: RedisProbe, subscribers: Int64, text: String) throws {
        let subscriber = try socket(to)
        let publisher = try socket(from)
        #expect(waitUntil { (try? probe.subscriberCount(Self.redisChannel)) == subscribers }, "every node subscribed in Redis")
        try publisher.sendText(text)
        try read(subscriber, until: text)
    }

    @Test("requirepass: one node reads the password from a file, one from the URL; a publish crosses; the password is never logged")
    func requirepass() throws {
        let password = "s3cret-\(UInt32.random(in: 0 ... .max))"
        let redis = try RedisServer(extraArguments: ["--requirepass", password])
        defer { redis.stop() }
        let file = NSTemporaryDirectory() + "switchboard-redis-password-\(getpid())"
        try (password + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let a = try startNode(1, url: "redis://127.0.0.1:\(redis.port)", ["cluster_redis_password_file=\(file)"])
        defer { a.stop() }
        let b = try startNode(2, url: "redis://:\(password)@127.0.0.1:\(redis.port)")
        defer { b.stop() }
        let probe = try RedisProbe(port: redis.port)
        #expect(try probe.call(["AUTH", password]) == .simpleString("OK"))
        try delivered(from: a, to: b, probe: probe, subscribers: 2, text: "over-requirepass")
        for node in [a, b] {
            #expect(try node.metric("switchboard_cluster_redis_auth_failures_total") == 0)
            #expect(try node.metric("switchboard_cluster_redis_connected") == 1)
            try node.readError { $0.contains("connected to Redis") }
            #expect(!node.errorText.contains(password), "the password is not logged")
        }
    }

    @Test("ACL user (default user off): nodes authenticate as it; a publish crosses")
    func aclUser() throws {
        let redis = try RedisServer(extraArguments: ["--user", "default", "off", "--user", "switchboard", "on", ">alicepw", "~*", "&*", "+@all"])
        defer { redis.stop() }
        let a = try startNode(1, url: "redis://127.0.0.1:\(redis.port)", ["cluster_redis_username=switchboard", "cluster_redis_password=alicepw"])
        defer { a.stop() }
        let b = try startNode(2, url: "redis://switchboard:alicepw@127.0.0.1:\(redis.port)")
        defer { b.stop() }
        let probe = try RedisProbe(port: redis.port)
        #expect(try probe.call(["AUTH", "switchboard", "alicepw"]) == .simpleString("OK"))
        try delivered(from: b, to: a, probe: probe, subscribers: 2, text: "over-acl")
        #expect(try a.metric("switchboard_cluster_redis_auth_failures_total") == 0)
    }

    @Test("wrong password: no subscription, publishes refused, refusals counted and logged at 1, 2, 4... in a row; once Redis takes it, the next retry connects")
    func wrongPasswordThenFixed() throws {
        let redis = try RedisServer(extraArguments: ["--requirepass", "right"])
        defer { redis.stop() }
        let good = try startNode(1, url: "redis://:right@127.0.0.1:\(redis.port)")
        defer { good.stop() }
        let bad = try startNode(2, url: "redis://127.0.0.1:\(redis.port)", ["cluster_redis_password=bad-pw-7x"])
        defer { bad.stop() }
        let probe = try RedisProbe(port: redis.port)
        #expect(try probe.call(["AUTH", "right"]) == .simpleString("OK"))

        let subscriber = try socket(bad)
        #expect(waitUntil { ((try? bad.metric("switchboard_cluster_redis_auth_failures_total")) ?? 0) >= 3 }, "refusals counted, retried")
        #expect(try bad.metric("switchboard_cluster_redis_connected") == 0)
        let publisher = try socket(good)
        #expect(waitUntil { (try? probe.subscriberCount(Self.redisChannel)) == 1 }, "only the good node is subscribed")
        // The refused node's own publish fails fast, as in an outage.
        try subscriber.sendText("refused")
        #expect(waitUntil { ((try? bad.metric("switchboard_cluster_publishes_unavailable_total")) ?? 0) == 1 })
        try publisher.sendText("before-fix")
        #expect(waitUntil { ((try? good.metric("switchboard_cluster_publishes_total")) ?? 0) == 1 }, "the good node published it")

        // Redis now takes "bad-pw-7x" too (a second password of the default user): the next retry connects.
        #expect(try probe.call(["ACL", "SETUSER", "default", ">bad-pw-7x"]) == .simpleString("OK"))
        #expect(waitUntil { (try? probe.subscriberCount(Self.redisChannel)) == 2 }, "the node connected and subscribed")
        try bad.readError { $0.contains("connected to Redis") }
        let refusals = try bad.metric("switchboard_cluster_redis_auth_failures_total")
        let lines = bad.errorText.components(separatedBy: "refused the credentials of user 'default'").count - 1
        #expect(lines == Int.bitWidth - refusals.leadingZeroBitCount, "logged at 1, 2, 4... refusals: \(lines) lines for \(refusals)")
        #expect(!bad.errorText.contains("bad-pw-7x"), "the password is not logged")
        try publisher.sendText("after-fix")
        var texts: [String] = []
        while texts.count < 16, texts.last != "after-fix" { texts.append(try subscriber.readFrame().text) }
        #expect(texts.last == "after-fix")
        #expect(!texts.contains("before-fix"), "nothing reached the node while Redis refused it: \(texts)")
    }

    @Test("Redis Cluster mode: three masters with requirepass; every master's link authenticates; a publish crosses")
    func redisClusterWithPassword() throws {
        let password = "cluster-pw"
        let servers = try (0..<3).map { _ in
            try RedisServer(extraArguments: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
                                             "--requirepass", password, "--masterauth", password], maxPort: 55_535)
        }
        defer { for s in servers { s.stop() } }
        let cli = "/usr/bin/redis-cli"
        try #require(FileManager.default.isExecutableFile(atPath: cli), "redis-cli missing: install Debian's redis-tools")
        let create = Process()
        create.executableURL = URL(fileURLWithPath: cli)
        create.arguments = ["-a", password, "--no-auth-warning", "--cluster", "create"] + servers.map { "127.0.0.1:\($0.port)" } + ["--cluster-yes"]
        create.standardOutput = FileHandle.nullDevice
        create.standardError = FileHandle.nullDevice
        try create.run()
        create.waitUntilExit()
        try #require(create.terminationStatus == 0, "redis-cli --cluster create failed")
        let probes = try servers.map { try RedisProbe(port: $0.port) }
        for probe in probes {
            #expect(try probe.call(["AUTH", password]) == .simpleString("OK"))
            try #require(waitUntil(timeoutMilliseconds: 20_000) {
                ClusterRedisClusterTests.text(try? probe.call(["CLUSTER", "INFO"])).contains("cluster_state:ok")
            }, "cluster_state:ok")
        }
        let nodes = try (1...2).map { id in
            try NodeProcess("switchboard-echo", [
                "--host", "127.0.0.1", "--port", "0", "--shards", "1",
                "--set", "cluster_engine=redis", "--set", "cluster_redis_mode=cluster",
                "--set", "cluster_redis_url=redis://:\(password)@127.0.0.1:\(servers[0].port)",
                "--set", "cluster_node_id=\(id)", "--set", "tick_ms=10",
                "--set", "cluster_redis_backoff_ms=20", "--set", "cluster_redis_max_backoff_ms=200",
            ])
        }
        defer { for n in nodes { n.stop() } }
        for node in nodes {
            #expect(waitUntil(timeoutMilliseconds: 10_000) { (try? node.metric("switchboard_cluster_redis_connected")) == 3 }, "a link per master, authenticated")
        }
        let subscriber = try socket(nodes[1])
        let publisher = try socket(nodes[0])
        let shardChannel = "switchboard:{c:\(Self.channel)}:pub"
        #expect(waitUntil(timeoutMilliseconds: 10_000) {
            probes.map { (try? $0.shardSubscriberCount(shardChannel)) ?? 0 }.reduce(0, +) == 2
        }, "both nodes subscribed on the channel's master")
        try publisher.sendText("over-cluster-auth")
        try read(subscriber, until: "over-cluster-auth")
        for node in nodes { #expect(try node.metric("switchboard_cluster_redis_auth_failures_total") == 0) }
    }

    @Test func credentialsInConfiguration() {
        #expect(ClusterConfiguration.splitRedisURL("redis://u:p%40ss@h:1/2")! == ("u", "p@ss", "redis://h:1/2"))
        #expect(ClusterConfiguration.splitRedisURL("redis://:pw@h:1")! == (nil, "pw", "redis://h:1"))
        #expect(ClusterConfiguration.splitRedisURL("redis://h:1")! == (nil, nil, "redis://h:1"))
        #expect(ClusterConfiguration.splitRedisURL("redis://u:%zz@h:1") == nil)
        var c = ClusterConfiguration()
        c.redisURL = "redis://u:pw@127.0.0.1:6379"
        #expect(c.validate() == nil)
        #expect(c.redactedRedisURL == "redis://u:***@127.0.0.1:6379")
        guard case .success(let endpoint) = c.resolvedOutboundOptions() else { Issue.record("resolves"); return }
        #expect(endpoint.credentials == RedisCredentials(username: "u", password: "pw"))
        #expect(!"\(endpoint.credentials!)".contains("pw"))
        c.redisPassword = "other"
        #expect(c.validate() == "give the Redis password once: in cluster_redis_url, cluster_redis_password or cluster_redis_password_file")
        c = ClusterConfiguration()
        c.redisUsername = "u"
        #expect(c.validate() == "a Redis user (cluster_redis_username or in cluster_redis_url) needs a password")
        c.redisPassword = "pw"
        #expect(c.validate() == nil)
        guard case .success(let second) = c.resolvedOutboundOptions() else { Issue.record("resolves"); return }
        #expect(second.credentials == RedisCredentials(username: "u", password: "pw"))
        c = ClusterConfiguration()
        c.redisPasswordFile = "/nonexistent/switchboard-password"
        #expect(c.resolvedOutboundOptions().failure == .unreadablePasswordFile("/nonexistent/switchboard-password"))
        #expect(ClusterConfiguration().resolvedOutboundOptions().success?.credentials == nil)
    }
}

private extension Result {
    var failure: Failure? { if case .failure(let f) = self { f } else { nil } }
    var success: Success? { if case .success(let s) = self { s } else { nil } }
}
