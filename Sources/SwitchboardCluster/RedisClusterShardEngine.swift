import Logging
import SwitchboardIO
import SwitchboardRESP

/// One shard's engine over a Redis Cluster (`cluster_redis_mode = cluster`): one
/// `RedisShardEngine` link (one outbound connection) per master, chosen per channel by its
/// hash slot. Shard thread only, like the links; nothing is shared with other shards.
///
/// - Slot map: read with `CLUSTER SLOTS` from the configured master once it connects, again
///   after a `MOVED`, when a master drops a shard subscription unasked (`sunsubscribe`: the
///   slot moved away), on every tick while no map is known, and every `cluster_heartbeat_ms`
///   while a master of the map is unreachable (its replica may have been promoted: the new
///   map moves its channels' subscriptions and publishes there).
/// - Publish: the channel script (`SPUBLISH` inside it: the channel's keys and its shard
///   channel share the tag `{c:NAME}`, so one slot, one master, one order) on the slot's
///   master. `MOVED`: the map is updated at once, read again, and the publish sent to the new
///   master; `ASK`: the publish goes to the named master after `ASKING`, the map unchanged.
///   At most `maxRedirects` per publish (then it is dropped, counted, logged).
/// - Subscribers: `SSUBSCRIBE` of the channel on its slot's master; when the map moves the
///   slot, the channel is unsubscribed from the old master and subscribed on the new one.
/// - Membership and node inboxes use the fixed tag `{nodes}`: the master of that slot
///   carries all of them.
/// - A master that is down: publishes to its slots are refused at once (`.unavailable`,
///   `switchboard_cluster_publishes_unavailable_total`, one log line per outage); the other
///   masters' slots keep working.
package final class RedisClusterShardEngine: ClusterShardEngine {
    /// Redirections one publish may follow: a slot moving twice while one publish is in
    /// flight is already rare; more means a map that does not settle.
    static let maxRedirects = 3

    package weak var delegate: ClusterEngineDelegate? {
        didSet { for link in links.values { link.delegate = delegate } }
    }
    package let metrics: ClusterMetrics
    private let configuration: ClusterConfiguration
    private let seed: OutboundOptions
    /// Every master's connection authenticates with these (one ACL for the whole cluster).
    private let credentials: RedisCredentials?
    private let shardIndex: Int
    private let logger: Logger
    private var shard: Shard?
    /// One link per master ("host:port"), opened when the map first names it; kept while
    /// the shard lives (a master that left the map keeps reconnecting, harmless).
    private var links: [String: RedisShardEngine] = [:]
    /// Slot -> link key; empty until the first map.
    private var owners: [String] = []
    /// Channels with local subscribers, and the link each is subscribed on.
    private var interest: [ClusterChannel: String] = [:]
    private var slotMapRequested = false
    /// The masters of the current map, and when it was last asked for: while one of them is
    /// down the map is read again every `cluster_heartbeat_ms` (a replica may have taken its
    /// slots: failover sends no MOVED to a shard that cannot reach the old master).
    private var masters: Set<String> = []
    private var lastRefreshMilliseconds: Int64 = .min / 2
    /// The tag of membership and inboxes, and what was asked of it before a map was known.
    private let nodesSlot: Int
    private var nodesLink: String?
    private var inbox: (node: Int, handler: (UnsafeRawBufferPointer) -> Void)?
    private var membership: (node: Int, onNodeDied: (Int, UInt64) -> Void)?
    private let names: ClusterChannelNames
    /// `cluster_max_pending_publishes` is per shard: every link counts into this one.
    private let shardPending = PendingPublishCount()
    /// The process's incarnation: every link announces it, so a new `{nodes}` link is no
    /// restart to the others.
    private let incarnation: ClusterIncarnation

    package init(configuration: ClusterConfiguration, options: OutboundOptions, credentials: RedisCredentials? = nil,
                 shardIndex: Int, metrics: ClusterMetrics, logger: Logger, incarnation: ClusterIncarnation = ClusterIncarnation()) {
        assert(configuration.redisMode == .cluster)
        self.configuration = configuration
        self.incarnation = incarnation
        self.credentials = credentials
        seed = options
        self.shardIndex = shardIndex
        self.metrics = metrics
        self.logger = logger
        names = ClusterChannelNames(keyPrefix: configuration.keyPrefix, sharded: true)
        nodesSlot = ClusterSlots.slot(of: Array((configuration.keyPrefix + ":{nodes}:members").utf8))
    }

    package func start(on shard: Shard) {
        self.shard = shard
        _ = link(host: seed.host, port: seed.port)
    }

    /// Debug builds: traps unless called on the engine's shard thread (once `start` gave it
    /// one), at every entry point, refusals and forwards included (the link it forwards to
    /// checks again, but a refusal here never reaches a link). In release builds: one load.
    private func assertOnShard(_ function: StaticString = #function) {
        shard?.assertOnShardThread(function)
    }

    private func key(_ host: String, _ port: Int) -> String { "\(host):\(port)" }

    /// The link to a master, opened on first use.
    private func link(host: String, port: Int) -> RedisShardEngine {
        let name = key(host, port)
        if let link = links[name] { return link }
        var options = seed
        options.host = host
        options.port = port
        let link = RedisShardEngine(configuration: configuration, options: options, database: 0, credentials: credentials, shardIndex: shardIndex,
                                    metrics: metrics, logger: logger, shardPending: shardPending, incarnation: incarnation)
        link.delegate = delegate
        link.onConnected = { [unowned self] in
            if owners.isEmpty || name == key(seed.host, seed.port) { refreshSlotMap(via: name) }
        }
        link.onSlotLost = { [unowned self] in refreshSlotMap() }
        link.onRedirect = { [unowned self] redirection, arguments, redirects, answer in
            redirected(redirection, arguments: arguments, redirects: redirects, answer: answer)
        }
        links[name] = link
        if let shard { link.start(on: shard) }
        return link
    }

    /// A channel's slot: that of its keys and its shard channel (same tag).
    private func slot(of channel: ClusterChannel) -> Int {
        ClusterSlots.slot(of: names.meta(channel))
    }

    private func owner(ofChannel channel: ClusterChannel) -> RedisShardEngine? {
        guard !owners.isEmpty else { return nil }
        return links[owners[slot(of: channel)]]
    }

    // MARK: - Slot map

    /// Reads the slot map through `name`'s link (or the first connected one); one request at a time.
    private func refreshSlotMap(via name: String? = nil) {
        guard !slotMapRequested else { return }
        guard let via = name.flatMap({ links[$0] }).flatMap({ $0.isConnected ? $0 : nil }) ?? links.values.first(where: { $0.isConnected }) else {
            return  // no master reachable: the next link to connect asks (`onConnected`)
        }
        slotMapRequested = true
        lastRefreshMilliseconds = shard?.nowMilliseconds ?? 0
        via.clusterSlots { [unowned self] ranges in
            slotMapRequested = false
            guard let ranges, !ranges.isEmpty else {
                return logger.error("cluster: CLUSTER SLOTS gave no slot map (is cluster_redis_url a Redis Cluster node? cluster_redis_mode = cluster)")
            }
            apply(ranges)
        }
    }

    private func apply(_ ranges: [ClusterSlotRange]) {
        metrics.slotMapRefreshes.increment()
        var map = owners.isEmpty ? [String](repeating: "", count: ClusterSlots.count) : owners
        for range in ranges {
            let name = key(range.host, range.port)
            _ = link(host: range.host, port: range.port)
            for slot in range.slots { map[slot] = name }
        }
        setOwners(map)
    }

    /// Installs a map and moves what lives on a slot whose master changed.
    private func setOwners(_ map: [String]) {
        let first = owners.isEmpty
        owners = map
        masters = Set(map.filter { !$0.isEmpty })
        if first { logger.notice("cluster: Redis Cluster slot map read: \(Set(map.filter { !$0.isEmpty }).count) masters") }
        var moved: [ClusterChannel] = []
        for (channel, on) in interest {
            let name = owners[slot(of: channel)]
            guard !name.isEmpty, name != on, let now = links[name] else { continue }
            links[on]?.interestRemoved(channel)
            now.interestAdded(channel)
            interest[channel] = name
            if !on.isEmpty, now.isConnected { moved.append(channel) }
        }
        // Subscribed anew on another master (failover, reshard): what was published meanwhile
        // may be missing; the delegate may read it back (after the SSUBSCRIBE, same link).
        if !moved.isEmpty { delegate?.clusterResubscribed(moved) }
        let nodes = owners[nodesSlot]
        if !nodes.isEmpty, nodes != nodesLink, let link = links[nodes] {
            // The first map (or the `{nodes}` slot moved): membership and inboxes go there.
            // A move after the first map is not followed by the old link (it keeps its
            // subscription until its master drops it): see docs-pending/cl13rc.md.
            nodesLink = nodes
            if let inbox { link.receiveNodeInbox(inbox.node, handler: inbox.handler) }
            if let membership { link.announceMembership(membership.node, onNodeDied: membership.onNodeDied) }
        }
    }

    /// A read or command answered MOVED or ASK after `redirects` redirections: false (counted
    /// in `_redirects_exhausted_total`, logged) at `maxRedirects`; else counted, a MOVED
    /// applied to the map, and true: the caller sends it again.
    private func follows(_ redirection: ClusterRedirection, after redirects: Int, _ what: String) -> Bool {
        guard redirects < Self.maxRedirects else {
            metrics.redirectsExhausted.increment()
            logger.error("cluster: \(what) on slot \(redirection.slot) was given up after \(redirects + 1) redirections (last to \(redirection.host):\(redirection.port))")
            return false
        }
        metrics.redirects.increment()
        redirected(redirection, arguments: [], redirects: redirects, answer: nil)
        return true
    }

    private func redirected(_ redirection: ClusterRedirection, arguments: [[UInt8]], redirects: Int, answer: ((ClusterPosition?) -> Void)?) {
        let target = link(host: redirection.host, port: redirection.port)
        if !redirection.ask, !owners.isEmpty {
            // MOVED: the slot lives there now; the rest of the map may have moved too.
            var map = owners
            map[redirection.slot] = key(redirection.host, redirection.port)
            setOwners(map)
            refreshSlotMap()
        }
        guard !arguments.isEmpty else { return }  // a subscription: moved by setOwners
        guard redirects < Self.maxRedirects,
              target.publish(arguments: arguments, redirects: redirects + 1, asking: redirection.ask, answer: answer) == .sent else {
            metrics.redirectsExhausted.increment()
            metrics.publishErrors.increment()
            answer?(nil)
            return logger.error("cluster: a publish to slot \(redirection.slot) was dropped after \(redirects + 1) redirections (last to \(redirection.host):\(redirection.port), \(target.isConnected ? "connected" : "not connected"))")
        }
        metrics.redirects.increment()
    }

    // MARK: - Engine

    package func publish(_ channel: ClusterChannel, kind: ClusterMessageKind, payload: UnsafeRawBufferPointer,
                         history: ClusterHistoryLimits?, answer: ((ClusterPosition?) -> Void)?) -> ClusterPublishResult {
        assertOnShard()
        guard let link = owner(ofChannel: channel) else {
            metrics.publishesUnavailable.increment()
            refreshSlotMap()
            return .unavailable
        }
        return link.publish(channel, kind: kind, payload: payload, history: history, answer: answer)
    }

    /// On the channel's master: the link that carries its shard subscription, so the read
    /// comes after it. `MOVED` (a stale map): the map is updated (the channel's subscription
    /// moves to the new master first) and the read is sent there; `ASK` (mid-migration): to
    /// the named master after `ASKING`, the map unchanged. At most `maxRedirects` times.
    package func readStream(_ channel: ClusterChannel, ttlMilliseconds: Int, completion: @escaping (ClusterStream?) -> Void) {
        assertOnShard()
        readStream(channel, ttlMilliseconds: ttlMilliseconds, redirects: 0, asked: nil, completion: completion)
    }

    private func readStream(_ channel: ClusterChannel, ttlMilliseconds: Int, redirects: Int, asked: RedisShardEngine?,
                            completion: @escaping (ClusterStream?) -> Void) {
        guard let link = asked ?? owner(ofChannel: channel) else { return completion(nil) }
        link.readStream(channel, ttlMilliseconds: ttlMilliseconds, redirects: redirects, asking: asked != nil, redirected: { [unowned self] redirection in
            guard follows(redirection, after: redirects, "a stream read") else { return completion(nil) }
            let asked = redirection.ask ? self.link(host: redirection.host, port: redirection.port) : nil
            readStream(channel, ttlMilliseconds: ttlMilliseconds, redirects: redirects + 1, asked: asked, completion: completion)
        }, completion: completion)
    }

    package func interestAdded(_ channel: ClusterChannel) {
        assertOnShard()
        guard interest[channel] == nil else { return }
        // Before the first map the channel waits (`setOwners` subscribes it); "" marks it.
        interest[channel] = ""
        guard let link = owner(ofChannel: channel) else { return }
        interest[channel] = owners[slot(of: channel)]
        link.interestAdded(channel)
    }

    package func interestRemoved(_ channel: ClusterChannel) {
        assertOnShard()
        guard let on = interest.removeValue(forKey: channel) else { return }
        links[on]?.interestRemoved(channel)
    }

    /// On the link carrying the channel's subscription (so the answer splits its messages
    /// exactly), else its slot's master. `MOVED`: the map is updated (the subscription moves
    /// to the new master first) and the read is sent there; `ASK` (the slot is migrating): the
    /// read goes to the named master after `ASKING`, the map unchanged. At most
    /// `maxRedirects` times, then the missed messages count as lost (`.failed`).
    package func readHistory(_ channel: ClusterChannel, after position: ClusterPosition, maxMessages: Int,
                             completion: @escaping (ClusterHistoryRead) -> Void) {
        assertOnShard()
        readHistory(channel, after: position, maxMessages: maxMessages, redirects: 0, asked: nil, completion: completion)
    }

    private func readHistory(_ channel: ClusterChannel, after position: ClusterPosition, maxMessages: Int, redirects: Int,
                             asked: RedisShardEngine?, completion: @escaping (ClusterHistoryRead) -> Void) {
        guard let link = asked ?? interest[channel].flatMap({ links[$0] }) ?? owner(ofChannel: channel) else { return completion(.unavailable) }
        link.readHistory(channel, after: position, maxMessages: maxMessages, asking: asked != nil, redirected: { [unowned self] redirection in
            guard follows(redirection, after: redirects, "a history read") else { return completion(.lost(.failed)) }
            let asked = redirection.ask ? self.link(host: redirection.host, port: redirection.port) : nil
            readHistory(channel, after: position, maxMessages: maxMessages, redirects: redirects + 1, asked: asked, completion: completion)
        }, completion: completion)
    }

    package func sendToNode(_ node: Int, _ message: [UInt8]) -> ClusterPublishResult {
        assertOnShard()
        guard let nodesLink, let link = links[nodesLink] else { metrics.publishesUnavailable.increment(); return .unavailable }
        return link.sendToNode(node, message)
    }

    package func sendToNode(_ node: Int, _ message: [UInt8], receivers: @escaping (Int?) -> Void) -> ClusterPublishResult {
        assertOnShard()
        guard let nodesLink, let link = links[nodesLink] else { metrics.publishesUnavailable.increment(); return .unavailable }
        return link.sendToNode(node, message, receivers: receivers)
    }

    /// Runs on the master owning the command's first key (EVAL/EVALSHA: the first of its
    /// KEYS; else the first argument). The protocols tag every key of one command alike
    /// (`{cb}`, `{rpc}`), so one master holds them all. `MOVED` (the slot moved: a reshard or
    /// a failover this shard has not read yet): the map is updated and the command sent to
    /// the new master; `ASK` (mid-migration): to the named master after `ASKING`. Redis
    /// refuses a redirected command before running it, so it runs once. At most
    /// `maxRedirects` times; then the last redirection is the answer.
    package func command(_ arguments: [[UInt8]], completion: @escaping (RESPValue?) -> Void) {
        assertOnShard()
        guard !owners.isEmpty, let key = Self.firstKey(of: arguments) else { return completion(nil) }
        guard let link = links[owners[ClusterSlots.slot(of: key)]] else { return completion(nil) }
        command(arguments, on: link, redirects: 0, asking: false, completion: completion)
    }

    private func command(_ arguments: [[UInt8]], on link: RedisShardEngine, redirects: Int, asking: Bool,
                         completion: @escaping (RESPValue?) -> Void) {
        link.command(arguments, redirects: redirects, asking: asking) { [unowned self] reply in
            guard case .simpleError(let e)? = reply, let redirection = ClusterRedirection(e) else { return completion(reply) }
            // Given up: the last redirection is the command's answer.
            guard follows(redirection, after: redirects, "a command") else { return completion(reply) }
            command(arguments, on: self.link(host: redirection.host, port: redirection.port), redirects: redirects + 1,
                    asking: redirection.ask, completion: completion)
        }
    }

    private static func firstKey(of arguments: [[UInt8]]) -> [UInt8]? {
        guard let name = arguments.first else { return nil }
        let upper = String(decoding: name, as: UTF8.self).uppercased()
        if upper == "EVAL" || upper == "EVALSHA" {
            guard arguments.count > 3, let count = Int(String(decoding: arguments[2], as: UTF8.self)), count > 0 else { return nil }
            return arguments[3]
        }
        return arguments.count > 1 ? arguments[1] : nil
    }

    package func sendToAllNodes(_ message: [UInt8]) -> ClusterPublishResult {
        assertOnShard()
        guard let nodesLink, let link = links[nodesLink] else { metrics.publishesUnavailable.increment(); return .unavailable }
        return link.sendToAllNodes(message)
    }

    package func receiveNodeInbox(_ node: Int, handler: @escaping (UnsafeRawBufferPointer) -> Void) {
        assertOnShard()
        inbox = (node, handler)
        if let nodesLink { links[nodesLink]?.receiveNodeInbox(node, handler: handler) }
    }

    package func announceMembership(_ node: Int, onNodeDied: @escaping (Int, UInt64) -> Void) {
        assertOnShard()
        membership = (node, onNodeDied)
        if let nodesLink { links[nodesLink]?.announceMembership(node, onNodeDied: onNodeDied) }
    }

    package func leaveMembership() {
        assertOnShard()
        guard membership != nil else { return }
        membership = nil
        if let nodesLink { links[nodesLink]?.leaveMembership() }
    }

    package func members(_ completion: @escaping ([Int]?) -> Void) {
        assertOnShard()
        guard let nodesLink, let link = links[nodesLink] else { return completion(nil) }
        link.members(completion)
    }

    package func tick(nowMilliseconds: Int64) {
        assertOnShard()
        for link in links.values { link.tick(nowMilliseconds: nowMilliseconds) }
        if owners.isEmpty {
            refreshSlotMap()
        } else if nowMilliseconds - lastRefreshMilliseconds >= Int64(configuration.heartbeatMilliseconds),
                  masters.contains(where: { links[$0]?.isConnected != true }) {
            refreshSlotMap()
        }
    }
}
