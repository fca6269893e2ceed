import DequeModule
import Logging
import SwitchboardIO
import SwitchboardRESP

/// One shard's Redis engine: its own Redis connection (RESP3, on the shard's ring or epoll
/// set), used both to publish (one script per message, `RedisChannelScript`) and to receive the
/// channels this shard has subscribers for (pub/sub pushes on the same connection). Nothing is
/// shared with other shards, so Redis traffic takes no lock. Shard thread only.
///
/// Interest: the shard is SUBSCRIBEd to a channel exactly while it has local subscribers; on
/// every (re)connect it subscribes again to all of them. Publishing is fail-fast: while the
/// connection is down a publish is refused at once and counted, never queued.
///
/// Replies come back in command order; pushes (pub/sub messages and (un)subscribe
/// confirmations) are told apart by their RESP3 type, so one connection carries both.
///
/// Shard 0's engine also receives its node's inbox and the all-nodes inbox (addressed
/// `send`/`close`, `copySubscriptions`) and renews the node's membership on its tick.
package final class RedisShardEngine: ClusterShardEngine, OutboundConnectionDelegate {
    /// What each reply owed on the connection answers, oldest first.
    private enum Pending {
        case hello, select, setName, scriptLoad
        /// A publish: its script arguments (to send again with EVAL if the server lost the
        /// script, or to another master after a redirection), whether it went by SHA, how
        /// many redirections it followed already, and who waits for its position.
        case publish(arguments: [[UInt8]], viaSHA: Bool, redirects: Int, answer: ((ClusterPosition?) -> Void)?)
        /// The ASKING before a publish redirected by ASK (its `+OK`).
        case asking
        /// An SSUBSCRIBE or SUNSUBSCRIBE of one channel (Redis Cluster mode): answered by its
        /// confirmation push (`ssubscribe`/`sunsubscribe` and the channel), or by an error
        /// (MOVED while a slot changes hands).
        case shardSubscription(kind: [UInt8], channel: [UInt8])
        case slots(([ClusterSlotRange]?) -> Void)
        /// An addressed message (PUBLISH to a node's inbox): the reply counts its receivers.
        case addressed
        case heartbeat
        /// The graceful stop's leave script (the connection closes after it is written).
        case leave
        case members(([Int]?) -> Void)
        /// A protocol's command (`command(_:completion:)`), counted with the publishes.
        case command((RESPValue?) -> Void)
        /// A recovery read of a channel's history after a position (`readHistory`); in Redis
        /// Cluster mode a MOVED or ASK answer goes to `redirected`, to follow it.
        case history(after: ClusterPosition, redirected: ((ClusterRedirection) -> Void)?, completion: (ClusterHistoryRead) -> Void)
    }

    package weak var delegate: ClusterEngineDelegate?
    package let metrics: ClusterMetrics
    private let configuration: ClusterConfiguration
    private let options: OutboundOptions
    private let database: Int
    /// What the handshake authenticates with (`HELLO 3 AUTH`); nil: no AUTH.
    private let credentials: RedisCredentials?
    /// Whether Redis accepted this connection's HELLO (and AUTH): until then nothing but the
    /// handshake is sent, and the engine counts as not connected (publishes fail fast).
    private var handshaken = false
    /// Handshakes refused in a row (for the log: one line at 1, 2, 4, 8... refusals, not per retry).
    private var refusedHandshakes = 0
    private let logger: Logger
    private var connection: OutboundConnection?
    private var parser: RESPParser
    private var pending = Deque<Pending>()
    /// Publishes (and addressed messages) awaiting this connection's answer; every change is
    /// carried into `shardPending`, which the limit checks: in Redis Cluster mode the shard's
    /// links share it, so `cluster_max_pending_publishes` bounds the shard, not each link.
    private var pendingPublishes = 0 {
        didSet { shardPending.count += pendingPublishes - oldValue }
    }
    private let shardPending: PendingPublishCount
    /// Channels with local subscribers (the SUBSCRIBE set).
    private var interest = Set<ClusterChannel>()
    /// The script's SHA-1 once SCRIPT LOAD answered on this connection; EVAL until then.
    private var scriptSHA: [UInt8]?
    /// Whether the refusal of this outage was logged (one line per outage, not per publish).
    private var outageLogged = false
    /// Whether this connection counts in `metrics.connected` (between connect and loss).
    private var linkUp = false
    /// Every channel's keys and pub/sub name.
    private let names: ClusterChannelNames
    private let shardName: String
    /// The node inbox this shard receives (pub/sub channel), and what takes its messages.
    private var inbox: (channel: [UInt8], all: [UInt8], handler: (UnsafeRawBufferPointer) -> Void)?
    private let inboxPrefix: [UInt8]
    /// Redis Cluster mode (`cluster_redis_mode = cluster`): sharded pub/sub (SPUBLISH,
    /// SSUBSCRIBE, one channel per command since channels of one master lie in different
    /// slots) and hash-tagged names (`ClusterSlots`), so that a channel's keys and its shard
    /// channel share a slot.
    private let sharded: Bool
    private let scriptSource: String
    /// Redis Cluster mode: a publish answered MOVED or ASK goes back to the engine that owns
    /// the slot map (`RedisClusterShardEngine`), with its arguments.
    package var onRedirect: ((_ redirection: ClusterRedirection, _ arguments: [[UInt8]], _ redirects: Int,
                              _ answer: ((ClusterPosition?) -> Void)?) -> Void)?
    /// Redis Cluster mode: the connection is up (the slot map is read on the first link's).
    package var onConnected: (() -> Void)?
    /// Redis Cluster mode: the master dropped a shard subscription nobody asked to drop (its
    /// slot moved to another master): the slot map is stale.
    package var onSlotLost: (() -> Void)?
    /// The node this shard announces (shard 0 of each node), and when it last did.
    private var membership: Int?
    /// This process's incarnation of the node (shared by its shards and, in Redis Cluster
    /// mode, by every link of this shard): renewed here when the others declared this one dead.
    private let incarnation: ClusterIncarnation
    /// The other nodes as the heartbeats show them (the announcing shard only).
    private var view: ClusterMembershipView?
    private var onNodeDied: ((Int, UInt64) -> Void)?
    /// Far enough in the past for "due now", not so far that the difference overflows.
    private var lastHeartbeatMilliseconds: Int64 = .min / 2
    private let membersKey: [UInt8]
    private let incarnationsKey: [UInt8]
    private let declaredDeadKey: [UInt8]

    package init(configuration: ClusterConfiguration, options: OutboundOptions, database: Int, credentials: RedisCredentials? = nil,
                 shardIndex: Int, metrics: ClusterMetrics, logger: Logger, shardPending: PendingPublishCount = PendingPublishCount(),
                 incarnation: ClusterIncarnation = ClusterIncarnation()) {
        self.configuration = configuration
        self.incarnation = incarnation
        self.credentials = credentials
        self.shardPending = shardPending
        self.options = options
        self.database = database
        self.metrics = metrics
        self.logger = logger
        parser = RESPParser(limits: RESPLimits())
        sharded = configuration.redisMode == .cluster
        // Channels: `ClusterChannelNames`. Membership and inboxes share the fixed tag
        // `{nodes}` in cluster mode (one master carries them).
        names = ClusterChannelNames(keyPrefix: configuration.keyPrefix, sharded: sharded)
        let nodes = configuration.keyPrefix + (sharded ? ":{nodes}" : "")
        inboxPrefix = Array((nodes + ":node:").utf8)
        membersKey = Array((nodes + ":members").utf8)
        incarnationsKey = Array((nodes + ":incarnations").utf8)
        declaredDeadKey = Array((nodes + ":declared-dead").utf8)
        scriptSource = RedisChannelScript.source(publishCommand: sharded ? "SPUBLISH" : "PUBLISH")
        shardName = "switchboard-node\(configuration.nodeID)-shard\(shardIndex)"
    }

    package func start(on shard: Shard) {
        connection = shard.openOutbound(options, delegate: self)
    }

    /// Every entry point asks this (or `assertOnShard`) first, so each checks its thread.
    package var isConnected: Bool {
        assertOnShard()
        return handshaken && connection?.isConnected ?? false
    }

    /// Debug builds: traps unless called on the engine's shard thread (once `start` gave it
    /// one), at every entry point, refusals included. In release builds: one load.
    private func assertOnShard(_ function: StaticString = #function) {
        connection?.shard.assertOnShardThread(function)
    }

    // MARK: - Engine

    package func publish(_ channel: ClusterChannel, kind: ClusterMessageKind, payload: UnsafeRawBufferPointer,
                         history: ClusterHistoryLimits?, answer: ((ClusterPosition?) -> Void)?) -> ClusterPublishResult {
        assertOnShard()
        guard let connection, handshaken, connection.isConnected else {
            metrics.publishesUnavailable.increment()
            if !outageLogged {
                outageLogged = true
                logger.error("cluster publish refused: not connected to Redis at \(options.host):\(options.port) (counted in switchboard_cluster_publishes_unavailable_total until it is back)")
            }
            return .unavailable
        }
        guard shardPending.count < configuration.maxPendingPublishes else {
            refusedOverLimit()
            return .overLimit
        }
        var message = [UInt8]()
        message.reserveCapacity(payload.count + 1)
        message.append(kind.rawValue)
        message.append(contentsOf: payload)
        let limits = history ?? ClusterHistoryLimits(messages: configuration.historySize, ttlMilliseconds: configuration.historyTTLMilliseconds)
        let arguments: [[UInt8]] = [
            names.meta(channel), names.history(channel), names.pubSub(channel), Array(String(UInt64.random(in: 1 ... .max)).utf8),
            Array(String(limits.messages).utf8), Array(String(limits.ttlMilliseconds).utf8), message,
        ]
        let result = publish(arguments: arguments, redirects: 0, asking: false, answer: answer)
        if result == .sent { metrics.publishes.increment() }
        return result
    }

    /// Sends one publish script (a new one, or one redirected here by MOVED or ASK).
    package func publish(arguments: [[UInt8]], redirects: Int, asking: Bool, answer: ((ClusterPosition?) -> Void)?) -> ClusterPublishResult {
        guard let connection, handshaken, connection.isConnected else {
            metrics.publishesUnavailable.increment()
            return .unavailable
        }
        let command: [[UInt8]]
        if let sha = scriptSHA {
            command = [Array("EVALSHA".utf8), sha, Array("2".utf8)] + arguments
        } else {
            command = [Array("EVAL".utf8), Array(scriptSource.utf8), Array("2".utf8)] + arguments
        }
        if asking { sendAsking() }
        // Bounded by the connection's send queue (`max_send_queue_bytes`, the shard's budget):
        // a burst Redis does not take fast enough is refused here, not queued without end.
        // A redirected publish was already admitted once: it passes, like a control command.
        // Only the limit refuses here: `isConnected` above asks the shard, so the socket is open.
        guard write(command, control: redirects > 0) == .queued else {
            refusedOverLimit()
            return .overLimit
        }
        pending.append(.publish(arguments: arguments, viaSHA: scriptSHA != nil, redirects: redirects, answer: answer))
        pendingPublishes += 1
        connection.setAwaitingInput(true)
        return .sent
    }

    /// A publish script's answer, `{epoch, offset}` (the epoch a decimal string: Lua would
    /// round it as a number); nil when it is not one.
    private static func position(_ value: RESPValue) -> ClusterPosition? {
        guard case .array(let items) = value, items.count == 2, case .bulkString(let epoch) = items[0],
              let e = UInt64(String(decoding: epoch, as: UTF8.self)), case .integer(let offset) = items[1], offset > 0 else { return nil }
        return ClusterPosition(epoch: e, offset: UInt64(offset))
    }

    /// (Un)subscribes pub/sub channels: one command in standalone mode, one per channel in
    /// cluster mode (each with its owed confirmation).
    private func subscription(_ subscribe: Bool, _ channels: [[UInt8]]) {
        guard sharded else {
            write([Array((subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE").utf8)] + channels)
            return
        }
        let kind = subscribe ? "ssubscribe" : "sunsubscribe"
        for channel in channels {
            pending.append(.shardSubscription(kind: Array(kind.utf8), channel: channel))
            write([Array(kind.uppercased().utf8), channel])
        }
    }

    /// Redis Cluster mode: the slot map (`CLUSTER SLOTS`); nil when not connected or refused.
    package func clusterSlots(_ completion: @escaping ([ClusterSlotRange]?) -> Void) {
        guard isConnected else { return completion(nil) }
        pending.append(.slots(completion))
        write([Array("CLUSTER".utf8), Array("SLOTS".utf8)])
    }

    package func interestAdded(_ channel: ClusterChannel) {
        guard interest.insert(channel).inserted else { return }
        metrics.subscribedChannels.set(interest.count)
        if isConnected { subscription(true, [names.pubSub(channel)]) }
    }

    package func interestRemoved(_ channel: ClusterChannel) {
        guard interest.remove(channel) != nil else { return }
        metrics.subscribedChannels.set(interest.count)
        if isConnected { subscription(false, [names.pubSub(channel)]) }
    }

    package func readStream(_ channel: ClusterChannel, ttlMilliseconds: Int, completion: @escaping (ClusterStream?) -> Void) {
        readStream(channel, ttlMilliseconds: ttlMilliseconds, redirects: 0, asking: false, redirected: nil, completion: completion)
    }

    /// `readStream`; in Redis Cluster mode a `MOVED` or `ASK` answer (the channel's slot lives
    /// on another master now, or is migrating there) goes to `redirected` instead of
    /// `completion`, to follow it (`redirects` > 0: sent here by one; `asking`: by ASK).
    package func readStream(_ channel: ClusterChannel, ttlMilliseconds: Int, redirects: Int, asking: Bool,
                            redirected: ((ClusterRedirection) -> Void)?, completion: @escaping (ClusterStream?) -> Void) {
        // `command`'s bound and fail-fast; same connection as the channel's (un)subscribe, so
        // Redis runs it after them.
        command([Array("EVAL".utf8), Array(RedisChannelScript.read.utf8), Array("2".utf8), names.meta(channel), names.history(channel),
                 Array(String(UInt64.random(in: 1 ... .max)).utf8), Array(String(ttlMilliseconds).utf8)],
                redirects: redirects, asking: asking) { [metrics, logger] reply in
            guard let reply else { return completion(nil) }
            if let redirected, case .simpleError(let e) = reply, let redirection = ClusterRedirection(e) {
                return redirected(redirection)
            }
            guard let stream = RedisChannelScript.stream(reply) else {
                if case .simpleError(let e) = reply { logger.error("cluster: Redis refused a stream read: \(e)") } else { metrics.protocolErrors.increment() }
                return completion(nil)
            }
            completion(stream)
        }
    }

    package func sendToNode(_ node: Int, _ message: [UInt8]) -> ClusterPublishResult {
        send(to: inboxPrefix + Array(String(node).utf8), message)
    }

    package func sendToNode(_ node: Int, _ message: [UInt8], receivers: @escaping (Int?) -> Void) -> ClusterPublishResult {
        assertOnShard()
        guard let connection, handshaken, connection.isConnected else {
            metrics.publishesUnavailable.increment()
            return .unavailable
        }
        guard shardPending.count < configuration.maxPendingPublishes,
              write([Array((sharded ? "SPUBLISH" : "PUBLISH").utf8), inboxPrefix + Array(String(node).utf8), message],
                    control: false) == .queued else {
            refusedOverLimit()
            return .overLimit
        }
        pending.append(.command { [metrics] reply in
            guard case .integer(let n)? = reply else { return receivers(nil) }
            if n == 0 { metrics.addressedUndelivered.increment() }
            receivers(Int(n))
        })
        pendingPublishes += 1
        connection.setAwaitingInput(true)
        metrics.addressedSent.increment()
        return .sent
    }

    package func sendToAllNodes(_ message: [UInt8]) -> ClusterPublishResult {
        send(to: inboxPrefix + Array("all".utf8), message)
    }

    private func send(to inboxChannel: [UInt8], _ message: [UInt8]) -> ClusterPublishResult {
        assertOnShard()
        guard let connection, handshaken, connection.isConnected else {
            metrics.publishesUnavailable.increment()
            return .unavailable
        }
        guard shardPending.count < configuration.maxPendingPublishes,
              write([Array((sharded ? "SPUBLISH" : "PUBLISH").utf8), inboxChannel, message], control: false) == .queued else {
            refusedOverLimit()
            return .overLimit
        }
        pending.append(.addressed)
        pendingPublishes += 1
        connection.setAwaitingInput(true)
        metrics.addressedSent.increment()
        return .sent
    }

    package func receiveNodeInbox(_ node: Int, handler: @escaping (UnsafeRawBufferPointer) -> Void) {
        let channel = inboxPrefix + Array(String(node).utf8)
        let all = inboxPrefix + Array("all".utf8)
        inbox = (channel, all, handler)
        if isConnected { subscription(true, [channel, all]) }
    }

    package func announceMembership(_ node: Int, onNodeDied: @escaping (Int, UInt64) -> Void) {
        membership = node
        self.onNodeDied = onNodeDied
        // Absence is death only once every live node had time to reconnect and renew after
        // this one did: Redis restarted empty lists nobody until then.
        view = ClusterMembershipView(ownNode: node, graceMilliseconds: Int64(configuration.nodeTTLMilliseconds)
                                     + Int64(configuration.maxBackoffMilliseconds) + Int64(configuration.connectTimeoutMilliseconds))
        if isConnected {
            view?.connected(atMilliseconds: connection?.shard.nowMilliseconds ?? 0)
            heartbeat()
        }
    }

    package func leaveMembership() {
        guard let node = membership, let connection, isConnected else { return }
        // No heartbeat after this one's departure: it would make the node a member again.
        membership = nil
        let all = inboxPrefix + Array("all".utf8)
        let incarnation = incarnation.current
        pending.append(.leave)
        write([Array("EVAL".utf8), Array(RedisChannelScript.leave(publishCommand: sharded ? "SPUBLISH" : "PUBLISH").utf8),
               Array("3".utf8), membersKey, incarnationsKey, declaredDeadKey, Array(String(node).utf8),
               Array(String(incarnation).utf8), all, RedisChannelScript.encodeLeave(node: node, incarnation: incarnation)])
        logger.notice("cluster: node \(node) leaves the membership (graceful stop)")
        // Closing drops what is queued: this connection closes once the script is written.
        connection.closeAfterFlush()
    }

    package func members(_ completion: @escaping ([Int]?) -> Void) {
        guard isConnected else { return completion(nil) }
        pending.append(.members(completion))
        write([Array("EVAL".utf8), Array(RedisChannelScript.members.utf8), Array("3".utf8), membersKey, incarnationsKey, declaredDeadKey])
    }

    package func command(_ arguments: [[UInt8]], completion: @escaping (RESPValue?) -> Void) {
        command(arguments, redirects: 0, asking: false, completion: completion)
    }

    /// `command`, or one sent again here after a MOVED or ASK (Redis Cluster mode; Redis
    /// refuses a redirected command before running it, so sending it again runs it once). A
    /// redirected command was admitted against the pending bound once: it passes, like a
    /// control command. `asking`: ASKING first (the slot is being imported here).
    package func command(_ arguments: [[UInt8]], redirects: Int, asking: Bool, completion: @escaping (RESPValue?) -> Void) {
        assertOnShard()
        assert(redirects >= 0 && (redirects > 0 || !asking), "ASK only ever answers a sent command")
        guard let connection, handshaken, connection.isConnected else { return completion(nil) }
        guard redirects > 0 || shardPending.count < configuration.maxPendingPublishes else {
            refusedOverLimit()
            return completion(nil)
        }
        if asking { sendAsking() }
        guard write(arguments, control: redirects > 0) == .queued else {
            refusedOverLimit()
            return completion(nil)
        }
        pending.append(.command(completion))
        pendingPublishes += 1
        connection.setAwaitingInput(true)
    }

    /// ASKING, so the next command runs on this master while its slot is being imported here
    /// (a command redirected by ASK). Its `+OK` answers `.asking`.
    private func sendAsking() {
        pending.append(.asking)
        write([Array("ASKING".utf8)])
    }

    package func readHistory(_ channel: ClusterChannel, after position: ClusterPosition, maxMessages: Int,
                             completion: @escaping (ClusterHistoryRead) -> Void) {
        readHistory(channel, after: position, maxMessages: maxMessages, asking: false, redirected: nil, completion: completion)
    }

    /// `readHistory`; in Redis Cluster mode a MOVED or ASK answer goes to `redirected` instead
    /// of `completion`, to follow it (`asking`: ASKING first, the read was sent here by ASK).
    package func readHistory(_ channel: ClusterChannel, after position: ClusterPosition, maxMessages: Int, asking: Bool,
                             redirected: ((ClusterRedirection) -> Void)?, completion: @escaping (ClusterHistoryRead) -> Void) {
        assertOnShard()
        guard let connection, handshaken, connection.isConnected else { return completion(.unavailable) }
        if asking { sendAsking() }
        pending.append(.history(after: position, redirected: redirected, completion: completion))
        // A control command: it must follow the subscription it splits, never be refused for
        // room the publishes took (one read per recovering channel, bounded by the caller).
        write([Array("EVAL".utf8), Array(RedisChannelScript.history.utf8), Array("2".utf8),
               names.meta(channel), names.history(channel),
               Array(String(position.offset).utf8), Array(String(maxMessages).utf8)])
        connection.setAwaitingInput(true)
    }

    package func tick(nowMilliseconds: Int64) {
        guard membership != nil, isConnected,
              nowMilliseconds - lastHeartbeatMilliseconds >= Int64(configuration.heartbeatMilliseconds) else { return }
        heartbeat()
    }

    private func heartbeat() {
        guard let node = membership, let connection else { return }
        lastHeartbeatMilliseconds = connection.shard.nowMilliseconds
        pending.append(.heartbeat)
        write([Array("EVAL".utf8), Array(RedisChannelScript.heartbeat.utf8), Array("3".utf8), membersKey, incarnationsKey,
               declaredDeadKey, Array(String(node).utf8), Array(String(incarnation.current).utf8),
               Array(String(configuration.nodeTTLMilliseconds).utf8)])
    }

    /// A heartbeat's answer: `{declared, {node, incarnation, ...}}` (`RedisChannelScript.heartbeat`).
    private func heartbeatAnswered(_ value: RESPValue) {
        guard let node = membership, let connection else { return }
        guard case .array(let answer) = value, answer.count == 2, case .integer(let declared) = answer[0],
              case .array(let pairs) = answer[1], pairs.count % 2 == 0 else {
            if case .simpleError(let e) = value { return logger.error("cluster: Redis refused the heartbeat: \(e)") }
            metrics.protocolErrors.increment()
            return logger.error("cluster: Redis answered the heartbeat with \(value)")
        }
        var live: [Int: UInt64] = [:]
        for i in stride(from: 0, to: pairs.count, by: 2) {
            guard case .bulkString(let n) = pairs[i], case .bulkString(let inc) = pairs[i + 1],
                  let member = Int(String(decoding: n, as: UTF8.self)),
                  let memberIncarnation = UInt64(String(decoding: inc, as: UTF8.self)) else { continue }
            live[member] = memberIncarnation
        }
        metrics.members.set(live.count)
        if declared == 1 {
            // The others dropped this node's sockets: tell this node's shards, and come back
            // as a new incarnation, so that a node that missed the absence sees a restart.
            metrics.declaredDead.increment()
            let dead = incarnation.renew()
            logger.error("cluster: the other nodes declared node \(node) (this one) dead: it was paused or cut off from Redis longer than cluster_node_ttl_ms (\(configuration.nodeTTLMilliseconds) ms); rejoining as a new incarnation")
            onNodeDied?(node, dead)
        }
        guard var view else { return }
        let died = view.update(live: live, nowMilliseconds: connection.shard.nowMilliseconds)
        self.view = view
        for dead in died {
            metrics.nodeDeaths.increment()
            logger.warning("cluster: node \(dead.node) died (membership expired or restarted); its sockets are gone")
            onNodeDied?(dead.node, dead.incarnation)
        }
    }

    /// Another node's departure (`leaveMembership` there), relayed by Redis: its death,
    /// reported at once and once (the view forgets it, so later heartbeats add nothing).
    private func nodeLeft(_ node: Int, incarnation leftIncarnation: UInt64) {
        guard var view, view.left(node, incarnation: leftIncarnation) else { return }
        self.view = view
        metrics.nodeDeaths.increment()
        logger.notice("cluster: node \(node) left (graceful stop); its sockets are gone")
        onNodeDied?(node, leftIncarnation)
    }

    // MARK: - Connection

    /// Queues one command. Control commands (handshake, (un)subscribe: small, and needed for
    /// correctness) pass the send-queue limit; publishes are refused at it.
    @discardableResult
    private func write(_ command: [[UInt8]], control: Bool = true) -> SendResult {
        guard let connection else { return .notOpen }
        var out: [UInt8] = []
        RESPWriter.writeCommand(command, into: &out)
        let result = connection.send(OutboundBytes(adopting: out), overLimit: control)
        connection.setAwaitingInput(!pending.isEmpty)
        return result
    }

    package func outboundConnected(_ connection: OutboundConnection) {
        // The handshake first, pipelined: protocol 3 with AUTH, database, name, script. Nothing
        // else is sent before HELLO is answered (`handshakeAccepted`): with a refused AUTH,
        // Redis answers NOAUTH to the rest, which the reconnect then discards.
        var hello = [Array("HELLO".utf8), Array("3".utf8)]
        if let credentials { hello += [Array("AUTH".utf8), Array(credentials.username.utf8), Array(credentials.password.utf8)] }
        pending.append(.hello)
        write(hello)
        if database != 0 {
            pending.append(.select)
            write([Array("SELECT".utf8), Array(String(database).utf8)])
        }
        pending.append(.setName)
        write([Array("CLIENT".utf8), Array("SETNAME".utf8), Array(shardName.utf8)])
        pending.append(.scriptLoad)
        write([Array("SCRIPT".utf8), Array("LOAD".utf8), Array(scriptSource.utf8)])
    }

    /// Redis accepted HELLO (and AUTH): the link is up; subscribe to every channel of interest.
    private func handshakeAccepted() {
        guard let connection else { return }
        handshaken = true
        refusedHandshakes = 0
        metrics.connects.increment()
        // A count, not a flag: in cluster mode a shard has one link per master on one gauge.
        if !linkUp { metrics.connected.increment() }
        linkUp = true
        outageLogged = false
        view?.connected(atMilliseconds: connection.shard.nowMilliseconds)
        logger.notice("cluster: connected to Redis at \(options.host):\(options.port)\(credentials.map { " as \($0.username)" } ?? ""); subscribing to \(interest.count) channels")
        var batch: [[UInt8]] = []
        if let inbox { batch += [inbox.channel, inbox.all] }
        for channel in interest {
            batch.append(names.pubSub(channel))
            if batch.count == 512 {
                subscription(true, batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !batch.isEmpty { subscription(true, batch) }
        heartbeat()
        // After the SUBSCRIBEs in the pipeline: a history read the delegate sends now answers
        // after them, in order with the channels' messages.
        if !interest.isEmpty { delegate?.clusterResubscribed(Array(interest)) }
        delegate?.clusterConnected()
        onConnected?()
    }

    /// Redis refused HELLO: a wrong password or user, AUTH missing, or no RESP3. The
    /// connection is dropped and retried with the backoff (continued, not restarted), so a
    /// wrong password costs one attempt per backoff step; the node is down meanwhile
    /// (publishes refused as in an outage). Logged at 1, 2, 4, 8... refusals in a row.
    private func handshakeRefused(_ error: String) {
        refusedHandshakes += 1
        let auth = error.hasPrefix("WRONGPASS") || error.hasPrefix("NOAUTH") || error.hasPrefix("NOPERM")
        if auth { metrics.authFailures.increment() }
        if refusedHandshakes & (refusedHandshakes - 1) == 0 {
            let who = credentials.map { "the credentials of user '\($0.username)'" } ?? "a connection without AUTH (set cluster_redis_password or cluster_redis_password_file)"
            logger.error("cluster: Redis at \(options.host):\(options.port) refused \(auth ? who : "the handshake"): \(error); retrying with backoff (\(refusedHandshakes) refusals in a row\(auth ? ", metric switchboard_cluster_redis_auth_failures_total" : ""))")
        }
        connection?.handshakeRefused()
    }

    package func outboundDisconnected(_ connection: OutboundConnection, _ reason: OutboundDisconnect, retryInMilliseconds: Int64?) {
        let wasConnected = linkUp
        handshaken = false
        if linkUp { metrics.connected.increment(by: -1) }
        linkUp = false
        view?.disconnected()
        metrics.disconnects.increment()
        if pendingPublishes > 0 { metrics.publishesUnconfirmed.increment(by: pendingPublishes) }
        let owed = pending
        pending.removeAll()
        // Every waiter hears back exactly once: nil, Redis is gone.
        for entry in owed {
            switch entry {
            case .members(let completion): completion(nil)
            case .command(let completion): completion(nil)
            case .slots(let completion): completion(nil)
            case .publish(_, _, _, let answer?): answer(nil)
            case .history(_, _, let completion): completion(.unavailable)
            default: break
            }
        }
        pendingPublishes = 0
        scriptSHA = nil
        parser = RESPParser(limits: RESPLimits())
        guard let retry = retryInMilliseconds else {
            return logger.notice("cluster: Redis connection closed (the shard is stopping)")
        }
        // One line per outage (the first failure, or the loss of a live connection), not one per
        // retry; a refused handshake logged its own line.
        if wasConnected || (metrics.disconnects.value == 1 && refusedHandshakes == 0) {
            logger.warning("cluster: Redis at \(options.host):\(options.port) unavailable (\(reason)); retrying in \(retry) ms, then with backoff")
        }
    }

    /// A publish, addressed message or command refused at once for `cluster_max_pending_publishes`
    /// or the send queue: counted, and remembered so the shard hears when the backlog drained.
    private func refusedOverLimit() {
        metrics.publishesOverLimit.increment()
        shardPending.refusedSinceDrained = true
    }

    /// After a read: when something was refused since the last drain and the shard's backlog
    /// is down to `PendingPublishCount.drainedCount`, the delegate hears it once, so what a
    /// protocol kept for lack of room (a clean-up step, a role removal) goes out now rather
    /// than at the next reconnect, which a full queue alone never causes. Live: a refusal
    /// means commands were waiting (their replies come, or the connection drops and
    /// `clusterConnected` follows).
    private func noteDrainedBacklog() {
        assertOnShard()
        guard shardPending.refusedSinceDrained,
              shardPending.count <= PendingPublishCount.drainedCount(maxPendingPublishes: configuration.maxPendingPublishes) else { return }
        shardPending.refusedSinceDrained = false
        metrics.backlogsDrained.increment()
        delegate?.clusterBacklogDrained()
    }

    package func outboundReceived(_ connection: OutboundConnection, _ bytes: UnsafeRawBufferPointer) {
        // Also on the early returns: a read that ends mid-reply still answered the replies before it.
        defer { if isConnected { noteDrainedBacklog() } }
        var rest = bytes
        while !rest.isEmpty {
            let (consumed, result) = parser.parse(rest)
            rest = UnsafeRawBufferPointer(rebasing: rest[consumed...])
            switch result {
            case .needMore:
                assert(rest.isEmpty, "the parser stopped short without a value")
                return
            case .value(let value):
                handle(value)
                if !isConnected { return }  // a handler dropped the connection
            case .error(let error):
                metrics.protocolErrors.increment()
                logger.error("cluster: bad reply from Redis (\(error)); reconnecting")
                connection.reconnect()
                return
            }
        }
        connection.setAwaitingInput(!pending.isEmpty)
    }

    private func handle(_ value: RESPValue) {
        if case .push(let items) = value {
            // A shard channel's (un)subscription confirmation answers the owed command;
            // one Redis sends unasked (a slot moved away) finds none and is only counted.
            if sharded, items.count >= 2, case .bulkString(let kind) = items[0], case .bulkString(let channel) = items[1],
               kind == Array("ssubscribe".utf8) || kind == Array("sunsubscribe".utf8) {
                if case .shardSubscription(kind, channel) = pending.first {
                    pending.removeFirst()
                } else if kind == Array("sunsubscribe".utf8) {
                    logger.notice("cluster: Redis at \(options.host):\(options.port) dropped the subscription of \(String(decoding: channel, as: UTF8.self)) (its slot moved); reading the slot map again")
                    onSlotLost?()
                }
                return
            }
            return handlePush(items)
        }
        guard let owed = pending.popFirst() else {
            metrics.protocolErrors.increment()
            logger.error("cluster: a Redis reply nobody asked for; reconnecting")
            return connection?.reconnect() ?? ()
        }
        switch owed {
        case .hello:
            if case .simpleError(let e) = value { return handshakeRefused(e) }
            handshakeAccepted()
        case .select, .setName, .asking:
            if case .simpleError(let e) = value { logger.error("cluster: Redis refused the handshake: \(e)") }
        case .shardSubscription:
            // Only an error answers here (a confirmation is a push): the slot is elsewhere now.
            if case .simpleError(let e) = value {
                logger.warning("cluster: Redis refused a shard subscription: \(e)")
                if let redirection = ClusterRedirection(e) { onRedirect?(redirection, [], 0, nil) }
            }
        case .slots(let completion):
            completion(ClusterSlotRange.parse(value))
        case .scriptLoad:
            if case .bulkString(let sha) = value { scriptSHA = sha }
        case .heartbeat:
            heartbeatAnswered(value)
        case .leave:
            if case .simpleError(let e) = value { logger.error("cluster: Redis refused the leave: \(e)") }
        case .members(let completion):
            guard case .array(let items) = value else {
                logger.error("cluster: Redis answered the membership query with \(value)")
                return completion(nil)
            }
            completion(items.compactMap { if case .bulkString(let b) = $0 { Int(String(decoding: b, as: UTF8.self)) } else { nil } }.sorted())
        case .command(let completion):
            pendingPublishes -= 1
            completion(value)
        case .history(let position, let redirected, let completion):
            if let redirected, case .simpleError(let e) = value, let redirection = ClusterRedirection(e) {
                return redirected(redirection)
            }
            guard let read = RedisChannelScript.decodeHistory(value, after: position) else {
                if case .simpleError = value {} else { metrics.protocolErrors.increment() }
                logger.error("cluster: Redis answered a history read with \(value)")
                return completion(.lost(.failed))
            }
            completion(read)
        case .addressed:
            pendingPublishes -= 1
            if value == .integer(0) { metrics.addressedUndelivered.increment() }
            if case .simpleError(let e) = value {
                metrics.publishErrors.increment()
                logger.error("cluster: Redis refused an addressed message: \(e)")
            }
        case .publish(let arguments, let viaSHA, let redirects, let answer):
            pendingPublishes -= 1
            if case .simpleError(let e) = value {
                if e.hasPrefix("NOSCRIPT"), viaSHA {
                    // The server lost its script cache (SCRIPT FLUSH): send the script itself.
                    scriptSHA = nil
                    pending.append(.publish(arguments: arguments, viaSHA: false, redirects: redirects, answer: answer))
                    pendingPublishes += 1
                    write([Array("EVAL".utf8), Array(scriptSource.utf8), Array("2".utf8)] + arguments)
                    return
                }
                if sharded, let onRedirect, let redirection = ClusterRedirection(e) {
                    return onRedirect(redirection, arguments, redirects, answer)
                }
                metrics.publishErrors.increment()
                logger.error("cluster: Redis refused a publish: \(e)")
                answer?(nil)
                return
            }
            guard let answer else { return }
            let position = Self.position(value)
            if position == nil { metrics.protocolErrors.increment() }
            answer(position)
        }
    }

    private func handlePush(_ items: [RESPValue]) {
        guard items.count == 3, case .bulkString(let kind) = items[0], kind == Array((sharded ? "smessage" : "message").utf8),
              case .bulkString(let redisChannel) = items[1], case .bulkString(let framed) = items[2] else {
            return  // subscribe/unsubscribe confirmations and other pushes
        }
        if let inbox, redisChannel == inbox.channel || redisChannel == inbox.all {
            if redisChannel == inbox.all, let (node, leftIncarnation) = framed.withUnsafeBytes({ RedisChannelScript.decodeLeave($0) }) {
                return nodeLeft(node, incarnation: leftIncarnation)
            }
            metrics.addressedReceived.increment()
            return framed.withUnsafeBytes { inbox.handler($0) }
        }
        guard let channel = names.channel(ofPubSub: redisChannel), let (position, messageKind, start) = RedisChannelScript.decode(framed) else {
            metrics.protocolErrors.increment()
            return
        }
        metrics.deliveries.increment()
        framed.withUnsafeBytes { all in
            delegate?.clusterDeliver(channel: channel, kind: messageKind, payload: UnsafeRawBufferPointer(rebasing: all[start...]), position: position)
        }
    }
}

/// The publishes one shard has awaiting Redis's answer, over all its Redis connections (one in
/// standalone mode, one per master in cluster mode). Shard thread only.
package final class PendingPublishCount {
    package var count = 0
    /// Whether a publish, addressed message or command was refused for the bound (or a full
    /// send queue) since the shard last heard `ClusterEngineDelegate.clusterBacklogDrained`.
    package var refusedSinceDrained = false
    package init() {}

    /// The count at or under which a shard that refused something hears that the backlog
    /// drained: half the bound, so a shard at the bound does not hear it once per reply.
    package static func drainedCount(maxPendingPublishes: Int) -> Int {
        assert(maxPendingPublishes >= 1, "validated: 1...1048576")
        return maxPendingPublishes / 2
    }
}
