import Switchboard
import SwitchboardJSON
import SwitchboardJWT

/// One shard's broadcaster: its WebSocket sessions and local subscribers, and the logs of the
/// channels it owns. Every method runs on the shard's thread (the context asserts it).
final class BroadcasterShardHandler: WorkerHandler {
    let shared: Broadcaster
    let context: ShardContext
    var options: BroadcasterOptions { shared.options }
    var metrics: BroadcasterMetrics { shared.metrics }

    private var sessions: [SocketID: BroadcasterSession] = [:]
    /// Local subscribers by channel (sockets of this shard).
    private var subscribers: [String: Set<SocketID>] = [:]
    /// Logs of the channels this shard owns, with a use counter for eviction.
    private var logs: [String: (log: BroadcasterChannelLog, lastUse: Int)] = [:]
    private var logUseClock = 0
    private var generation = 0

    init(shared: Broadcaster, context: ShardContext) {
        self.shared = shared
        self.context = context
    }

    // MARK: - WebSocket lifecycle

    func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        guard request.path == options.webSocketPath else {
            return .reject(.text("No WebSocket service at this path\n", status: .notFound))
        }
        sessions[socketId] = BroadcasterSession()
        metrics.connections.increment()
        return .accept()
    }

    func handleSocketClose(socketId: SocketID, token: [UInt8]?) {
        guard let session = sessions.removeValue(forKey: socketId) else { return }
        for channel in session.subscriptions.keys { removeSubscriber(socketId, channel) }
        metrics.subscriptions.increment(by: -session.subscriptions.count)
        metrics.connections.decrement()
    }

    func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        guard let session = sessions[socketId] else { return }
        // The reference reads binary messages as JSON too (gorilla's ReadJSON).
        var bytes: [UInt8]
        switch message {
        case .text(let s): bytes = Array(s.utf8)
        case .binary(let b): bytes = b
        }
        if bytes.count > options.maxMessageBytes {
            metrics.closedMessageTooBig.increment()
            context.close(socketId, code: .messageTooBig, reason: "message too big")
            return
        }
        if closeIfExpired(socketId, session) { return }
        let inbound = bytes.withUnsafeBufferPointer { BroadcasterRequestDecoder.decode($0, maxJSONDepth: options.maxJSONDepth) }
        switch inbound {
        case .malformed(let why):
            metrics.closedInvalidRequest.increment()
            context.close(socketId, code: .application(BroadcasterOptions.CloseCode.invalidRequest), reason: why)
        case .refused(let id, let error):
            metrics.countError(nil, error.code)
            reply(socketId, BroadcasterResponse.error(requestId: id, error))
        case .call(let id, let call):
            metrics.countCall(call.method)
            switch call {
            case .auth(let token): auth(socketId, session, id, token)
            case .subscribe(let channel, let since): subscribe(socketId, session, id, channel, since)
            case .unsubscribe(let channel): unsubscribe(socketId, session, id, channel)
            case .publish(let p): publishFromSocket(socketId, session, id, p)
            case .heartbeat:
                if id != 0 {
                    reply(socketId, BroadcasterResponse.result(requestId: id) {
                        $0.string("timestamp", BroadcasterTimestamp.format(unixNanoseconds: shared.now()))
                    })
                }
            }
        }
    }

    private func reply(_ socketId: SocketID, _ text: String) {
        _ = context.send(socketId, .text(text))
    }

    private func fail(_ socketId: SocketID, _ method: BroadcasterMethod, _ id: Int, _ error: BroadcasterError) {
        metrics.countError(method, error.code)
        // As the reference: errors are answered even to notifications (then without requestId).
        reply(socketId, BroadcasterResponse.error(requestId: id, error))
    }

    // MARK: - Methods

    private func auth(_ socketId: SocketID, _ session: BroadcasterSession, _ id: Int, _ token: String) {
        guard let verifier = options.verifier else {
            metrics.authFailures.increment()
            return fail(socketId, .auth, id, BroadcasterError(.unauthenticated, "no token verification key is configured"))
        }
        let claims: JWTClaims
        do {
            claims = try verifier.verify(token, nowSeconds: Int(shared.now() / 1_000_000_000))
        } catch {
            metrics.authFailures.increment()
            switch error {
            case .missingClaim("sub"): return fail(socketId, .auth, id, BroadcasterError(.invalidArgument, "invalid subject claim"))
            case .missingClaim("authorizedChannels"):
                return fail(socketId, .auth, id, BroadcasterError(.invalidArgument, "authorized channels cannot be empty"))
            default: return fail(socketId, .auth, id, BroadcasterError(.unauthenticated, error.description))
            }
        }
        if let current = session.claims {
            // A second auth: a refresh for the same subject, refused for another (as the reference
            // refuses every second auth).
            guard current.subject == claims.subject else {
                metrics.authFailures.increment()
                return fail(socketId, .auth, id, BroadcasterError(.failedPrecondition, "connection is already authenticated"))
            }
            session.claims = claims
            metrics.tokenRefreshes.increment()
            for channel in session.subscriptions.keys.sorted() where !session.maySubscribe(channel) {
                session.subscriptions[channel] = nil
                removeSubscriber(socketId, channel)
                metrics.subscriptions.decrement()
                metrics.subscriptionsEndedByRefresh.increment()
                var w = JSONWriter()
                w.string("method", "unsubscribed")
                w.object("params") {
                    $0.string("channel", channel)
                    $0.string("reason", "the refreshed token does not authorize this channel")
                }
                reply(socketId, w.finish())
            }
        } else {
            session.claims = claims
        }
        metrics.authSuccesses.increment()
        if id != 0 { reply(socketId, BroadcasterResponse.result(requestId: id) { $0.bool("success", true) }) }
    }

    private func validChannel(_ channel: String) -> Bool {
        BroadcasterChannelPattern.matches(channel.utf8, maxBytes: options.maxChannelBytes)
    }

    private func subscribe(_ socketId: SocketID, _ session: BroadcasterSession, _ id: Int, _ channel: String,
                           _ since: BroadcasterRecoveryPosition?) {
        // The reference's order of checks: channel syntax, authentication, scope, channel list.
        guard validChannel(channel) else { return fail(socketId, .subscribe, id, BroadcasterError(.invalidArgument, "invalid channel")) }
        guard let claims = session.claims else {
            return fail(socketId, .subscribe, id, BroadcasterError(.unauthenticated, "authentication required"))
        }
        guard claims.scope.contains("subscribe") else {
            return fail(socketId, .subscribe, id, BroadcasterError(.permissionDenied, "subscribe scope required to subscribe to a channel"))
        }
        guard claims.authorizedChannels.contains(channel) else {
            return fail(socketId, .subscribe, id, BroadcasterError(.unauthenticated, "user not authorized to access this channel"))
        }
        guard session.subscriptions[channel] == nil else {
            return fail(socketId, .subscribe, id, BroadcasterError(.alreadyExists, "already subscribed to this channel"))
        }
        guard session.subscriptions.count < options.maxSubscriptionsPerConnection else {
            return fail(socketId, .subscribe, id, BroadcasterError(.failedPrecondition, "too many subscriptions"))
        }
        generation += 1
        // In a cluster every subscribe waits for Redis (BroadcasterCluster.swift), so that it
        // is exact: answered once this shard's Redis subscription is in place.
        let inCluster = context.clusterNodeID != nil
        let subscription = BroadcasterSubscription(id: BroadcasterMessage.randomID(), generation: generation,
                                                   recovering: since != nil || inCluster)
        session.subscriptions[channel] = subscription
        addSubscriber(socketId, channel)
        metrics.subscriptions.increment()
        if !inCluster, since == nil {
            if id != 0 { reply(socketId, subscribeResult(id, subscription.id, recovery: nil)) }
            return
        }
        // Ask the owner for the missed messages; live ones are held back meanwhile. The owner
        // answers on this shard with `finishRecovery`, or the subscription is undone.
        let gen = subscription.generation
        let undo = { [weak self] in
            guard let self, let s = sessions[socketId], s.subscriptions[channel]?.generation == gen else { return }
            s.subscriptions[channel] = nil
            removeSubscriber(socketId, channel)
            metrics.subscriptions.decrement()
            fail(socketId, .subscribe, id, BroadcasterError(.internal, "the channel's owner is overloaded, try again"))
        }
        guard let since, !inCluster else {
            if !recoverInCluster(socketId, id, channel, since, generation: gen, failed: undo) { undo() }
            return
        }
        let shard = context.shardIndex
        let owner = shared.owner(of: channel, shardCount: context.shardCount)
        let shared = self.shared
        let sent = context.broker.execute(onShard: owner) { ownerContext in
            guard let ownerHandler = shared.handlers[ownerContext] else { return }
            let recovery = ownerHandler.recover(channel, since)
            _ = ownerContext.broker.execute(onShard: shard) { back in
                shared.handlers[back]?.finishRecovery(socketId, channel, gen, id, recovery)
            }
        }
        if sent != .queued { undo() }
    }

    private func subscribeResult(_ id: Int, _ subscriptionId: String, recovery: (BroadcasterRecovery, epoch: String)?) -> String {
        BroadcasterResponse.result(requestId: id) {
            $0.string("subscriptionId", subscriptionId)
            $0.string("timestamp", BroadcasterTimestamp.format(unixNanoseconds: shared.now()))
            if let (r, epoch) = recovery {
                $0.bool("recovered", r.isRecovered)
                $0.int("offset", r.lastOffset)
                $0.string("epoch", epoch)
            }
        }
    }

    /// On the subscriber's shard: the owner's answer to a `since` subscribe (`asked`), or in a
    /// cluster Redis's answer to any subscribe (not `asked`: no recovery to report; held-back
    /// messages up to the answer's offset were ordered before the subscribe and are dropped).
    func finishRecovery(_ socketId: SocketID, _ channel: String, _ generation: Int, _ id: Int,
                        _ answer: (recovery: BroadcasterRecovery, epoch: String), asked: Bool = true) {
        guard let session = sessions[socketId], var subscription = session.subscriptions[channel],
              subscription.generation == generation, case .recovering(let heldBack) = subscription.phase else { return }
        if asked {
            if answer.recovery.isRecovered { metrics.recoveriesHit.increment() } else { metrics.recoveriesMiss.increment() }
        }
        if id != 0 {
            let reported: (BroadcasterRecovery, epoch: String)? = asked ? (answer.recovery, answer.epoch) : nil
            reply(socketId, subscribeResult(id, subscription.id, recovery: reported))
        }
        subscription.phase = .live
        for m in BroadcasterSubscription.merge(answer.recovery, heldBack: heldBack) {
            deliver(socketId, BroadcastFrame(m).text(seq: subscription.nextSeq()))
        }
        session.subscriptions[channel] = subscription
    }

    private func unsubscribe(_ socketId: SocketID, _ session: BroadcasterSession, _ id: Int, _ channel: String) {
        guard validChannel(channel) else { return fail(socketId, .unsubscribe, id, BroadcasterError(.invalidArgument, "invalid channel")) }
        // As the reference: no authentication needed, and unsubscribing from a channel one is
        // not subscribed to succeeds (the reference can crash there; this cannot).
        if session.subscriptions.removeValue(forKey: channel) != nil {
            removeSubscriber(socketId, channel)
            metrics.subscriptions.decrement()
        }
        if id != 0 { reply(socketId, BroadcasterResponse.result(requestId: id) { $0.bool("success", true) }) }
    }

    /// Every change of `subscribers` goes through these two: the first subscriber of a channel
    /// on this shard starts its cluster interest, the last one leaving ends it.
    private func addSubscriber(_ socketId: SocketID, _ channel: String) {
        let first = subscribers[channel] == nil
        subscribers[channel, default: []].insert(socketId)
        if first { clusterInterest(channel, true) }
    }

    private func removeSubscriber(_ socketId: SocketID, _ channel: String) {
        guard subscribers[channel]?.remove(socketId) != nil else { return }
        if subscribers[channel]?.isEmpty == true {
            subscribers[channel] = nil
            clusterInterest(channel, false)
        }
    }

    private func publishFromSocket(_ socketId: SocketID, _ session: BroadcasterSession, _ id: Int, _ p: BroadcasterPublish) {
        // The reference's order: authentication, scope, channel list, channel syntax.
        guard let claims = session.claims else {
            return fail(socketId, .publish, id, BroadcasterError(.unauthenticated, "user not authenticated"))
        }
        guard claims.scope.contains("publish") else {
            return fail(socketId, .publish, id, BroadcasterError(.permissionDenied, "user not authorized to publish messages"))
        }
        guard claims.authorizedChannels.contains(p.channel) else {
            return fail(socketId, .publish, id, BroadcasterError(.permissionDenied, "user not authorized to publish to this channel"))
        }
        guard validChannel(p.channel) else { return fail(socketId, .publish, id, BroadcasterError(.invalidArgument, "invalid channel")) }
        metrics.publishesWebSocket.increment()
        let broker = context.broker
        let refused = submit(p) { [metrics] result in
            // On the owner's shard: answer the publisher on its own shard.
            if id == 0 { return }
            let text: String
            switch result {
            case .success(let m):
                text = BroadcasterResponse.result(requestId: id) { BroadcasterResponse.writeMessage(&$0, m) }
            case .failure(let e):
                metrics.countError(.publish, e.code)
                text = BroadcasterResponse.error(requestId: id, e)
            }
            _ = broker.send(socketId, .text(text))
        } == nil
        if refused {
            metrics.publishesRefused.increment()
            fail(socketId, .publish, id, BroadcasterError(.internal, "the channel's owner is overloaded, try again"))
        }
    }

    // MARK: - Ordering (owner side) and fan-out

    /// Sends `publish` to its channel's owner, which orders it and calls `completion` (on the
    /// owner's thread) with the ordered message. Returns the message as known here (id and
    /// create time; offset 0 until the owner assigns it), or nil when the owner's inbox refused it.
    func submit(_ publish: BroadcasterPublish,
                completion: (@Sendable (Result<BroadcasterMessage, BroadcasterError>) -> Void)? = nil) -> BroadcasterMessage? {
        // In a cluster Redis orders every channel (BroadcasterCluster.swift).
        if context.clusterNodeID != nil { return submitInCluster(publish, completion: completion) }
        let owner = shared.owner(of: publish.channel, shardCount: context.shardCount)
        let shared = self.shared
        let draft = BroadcasterMessage(id: BroadcasterMessage.randomID(), channel: publish.channel, event: publish.event,
                                       payload: publish.payload, createTimeNanoseconds: shared.now(), offset: 0, epoch: "")
        let enqueued = context.broker.execute(onShard: owner) { ownerContext in
            guard let handler = shared.handlers[ownerContext] else {
                completion?(.failure(BroadcasterError(.internal, "internal error")))
                return
            }
            let ordered = handler.order(draft)
            completion?(.success(ordered))
        }
        return enqueued == .queued ? draft : nil
    }

    private func log(for channel: String) -> BroadcasterChannelLog {
        if let entry = logs[channel] { return entry.log }
        if logs.count >= options.maxChannelLogsPerShard, let victim = logs.min(by: { $0.value.lastUse < $1.value.lastUse })?.key {
            // O(n) at the limit only; a forgotten channel starts a new epoch on its next message.
            logs[victim] = nil
            metrics.channelLogsEvicted.increment()
        }
        let limits = BroadcasterHistoryRule.limits(for: channel, in: options.history)
        return BroadcasterChannelLog(epoch: BroadcasterMessage.randomID(), limits: limits)
    }

    /// On the owner: assigns the offset, keeps history, forwards to every shard.
    func order(_ draft: BroadcasterMessage) -> BroadcasterMessage {
        var log = log(for: draft.channel)
        let message = log.append(draft, nowNanoseconds: shared.now())
        logUseClock += 1
        logs[draft.channel] = (log, logUseClock)
        let shared = self.shared
        for shard in 0..<context.shardCount {
            if shard == context.shardIndex {
                fanOut(message)
            } else if context.broker.execute(onShard: shard, { shared.handlers[$0]?.fanOut(message) }) != .queued {
                metrics.forwardsRefused.increment()
            }
        }
        return message
    }

    /// On the owner: the answer to a `since` subscribe.
    func recover(_ channel: String, _ since: BroadcasterRecoveryPosition) -> (recovery: BroadcasterRecovery, epoch: String) {
        var log = log(for: channel)
        let recovery = log.recover(since: since, nowNanoseconds: shared.now())
        logUseClock += 1
        logs[channel] = (log, logUseClock)
        return (recovery, log.epoch)
    }

    /// On every shard: one message to this shard's subscribers of its channel.
    func fanOut(_ message: BroadcasterMessage) {
        guard let sockets = subscribers[message.channel] else { return }
        let frame = BroadcastFrame(message)
        for socketId in sockets {
            guard let session = sessions[socketId], var subscription = session.subscriptions[message.channel] else { continue }
            switch subscription.phase {
            case .recovering(var heldBack):
                heldBack.append(message)
                subscription.phase = .recovering(heldBack: heldBack)
            case .live:
                deliver(socketId, frame.text(seq: subscription.nextSeq()))
            }
            session.subscriptions[message.channel] = subscription
        }
    }

    private func deliver(_ socketId: SocketID, _ text: String) {
        switch context.send(socketId, .text(text)) {
        case .queued: metrics.deliveries.increment()
        case .dropped: metrics.deliveriesDropped.increment()
        case .closed, .notLocal: break
        }
    }

    // MARK: - Token expiry

    /// Closes `socketId` when its token expired (plus leeway); true when it did.
    @discardableResult
    private func closeIfExpired(_ socketId: SocketID, _ session: BroadcasterSession) -> Bool {
        guard options.enforceTokenExpiry, let claims = session.claims else { return false }
        let leeway = options.verifier?.configuration.leewaySeconds ?? 0
        let nowSeconds = Int(shared.now() / 1_000_000_000)
        guard nowSeconds > claims.expiresAtSeconds + leeway else { return false }
        session.claims = nil
        var w = JSONWriter()
        w.string("method", "tokenExpired")
        w.object("params") { $0.string("expireTime", BroadcasterTimestamp.format(unixNanoseconds: Int64(claims.expiresAtSeconds) * 1_000_000_000)) }
        reply(socketId, w.finish())
        metrics.closedTokenExpired.increment()
        context.close(socketId, code: .application(BroadcasterOptions.CloseCode.tokenExpired), reason: "token expired")
        return true
    }

    /// The periodic sweep (every `expiryCheckIntervalMilliseconds`).
    func closeExpiredSessions() {
        for (socketId, session) in sessions { closeIfExpired(socketId, session) }
    }
}
