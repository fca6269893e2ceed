import SwitchboardIO

/// The shard's protocol layer, as the I/O layer sees it: routes each event to the HTTP or
/// WebSocket driver by the connection's phase, and the loop hooks to the channel engine.
/// Thin on purpose: protocol work lives in the drivers. Shard thread only.
final class ShardDispatcher: ShardEventHandler {
    let table: ConnectionTable
    let http: HTTPConnectionDriver
    let webSockets: WebSocketConnectionDriver
    let channels: ChannelEngine
    let context: ShardContext
    let worker: WorkerHandler
    private let metrics: ProtocolMetrics

    /// Made on the shard's thread (the handler factory runs there).
    init(shard: Shard, broker: Broker, configuration: BrokerConfiguration, metrics: ProtocolMetrics,
         fabric: ChannelFabric, routes: BuiltinRoutes, handlerFactory: (ShardContext) -> WorkerHandler) {
        assert(shard.isCurrent, "a dispatcher is made on its shard's thread")
        self.metrics = metrics
        table = ConnectionTable(capacity: shard.configuration.maxConnectionsPerShard, shard: shard.index, node: shard.configuration.nodeID)
        webSockets = WebSocketConnectionDriver(shard: shard, table: table, metrics: metrics,
                                               settings: configuration.webSocket,
                                               logger: broker.logger.forShard(shard.index))
        channels = ChannelEngine(shard: shard, fabric: fabric, table: table, metrics: metrics,
                                 webSockets: webSockets, configuration: configuration)
        http = HTTPConnectionDriver(shard: shard, table: table, metrics: metrics, configuration: configuration,
                                    routes: routes, webSockets: webSockets)
        context = ShardContext(broker: broker, shard: shard, shardCount: fabric.shardCount,
                               webSockets: webSockets, channels: channels, http: http)
        worker = handlerFactory(context)
        http.worker = worker
        http.context = context
        http.broker = broker
        webSockets.worker = worker
    }

    func connectionOpened(_ id: SocketID) {
        table.open(id, http.makeSession())
    }

    func connectionReceived(_ id: SocketID, _ bytes: UnsafeRawBufferPointer) {
        assert(table.isCurrent(id), "bytes for a connection the dispatcher does not know")
        switch table.slots[id.slot].phase {
        case .webSocket:
            // The session is borrowed, not retained, for the call (once per read): the slot
            // holds it until `connectionClosed`, which the shard calls only when it finalizes
            // the connection at the end of a turn, never from within a delivery.
            // `knownOpen`: the shard calls this only for an open connection (ShardEventHandler).
            table.unretainedWebSocket(slot: id.slot)!._withUnsafeGuaranteedRef {
                webSockets.receive(id, $0, bytes, worker: worker, knownOpen: true)
            }
        case .http(let session):
            let consumed = http.receive(id, session, bytes)
            // An upgrade part-way: the rest of the read is the client's first WebSocket bytes.
            if consumed < bytes.count, let ws = table.webSocket(id) {
                // Not `knownOpen`: the upgrade ran the handler, which may have closed the socket.
                webSockets.receive(id, ws, UnsafeRawBufferPointer(rebasing: bytes[consumed...]), worker: worker, knownOpen: false)
            }
        case .free:
            assertionFailure("bytes for a free slot")
        }
    }

    func connectionTimedOut(_ id: SocketID, _ timer: ConnectionTimer) {
        switch table.slots[id.slot].phase {
        case .webSocket(let session): webSockets.timedOut(id, session, timer)
        case .http(let session): http.timedOut(id, session, timer)
        case .free: assertionFailure("a timer for a free slot")
        }
    }

    func connectionClosed(_ id: SocketID) {
        let old = table.release(id)
        channels.socketClosed(id, subscriptions: old.subscriptions)
        switch old.phase {
        case .webSocket(let session): webSockets.closed(id, session)
        case .http(let session): http.closed(id, session)
        case .free: assertionFailure("a free slot closed")
        }
    }

    func shardDraining(_ shard: Shard) {
        // First, so the other nodes drop this one's sockets before they are closed here.
        channels.cluster?.leaveMembership()
        // No remote call is left waiting on a shard that stops (its answer may never be read).
        channels.remoteCalls.drain()
        for id in table.currentIDs {
            switch table.slots[id.slot].phase {
            case .webSocket:
                // WebSockets get a 1001 close handshake; the grace deadline cuts the rest.
                webSockets.close(id, code: .goingAway, reason: "server shutting down")
            case .http(let session):
                http.drain(id, session)
            case .free:
                break
            }
        }
    }

    func shardStarted(_ shard: Shard) {
        shard.handlerSlots = table.prefetchTable
        channels.startCluster(on: shard)
    }

    /// The last turn's `loopTurn` may precede a message pushed by that turn's finalizes: its
    /// shard is still woken, now (`ChannelEngine.ringDueShards`).
    func shardStopped(_ shard: Shard) {
        channels.ringDueShards()
    }

    func loopTurn(_ shard: Shard) {
        webSockets.loopTurn()
        channels.loopTurn()
    }

    func turnEnded(_ shard: Shard) { webSockets.publishTurnCounts() }

    func hasPendingWork(_ shard: Shard) -> Bool { webSockets.hasPendingWork || channels.hasPendingWork }

    func tick(_ shard: Shard, nowMilliseconds: Int64) {
        http.refreshDate()
        channels.tick(nowMilliseconds: nowMilliseconds)
        channels.cluster?.tick(nowMilliseconds: nowMilliseconds)
        channels.expireRemoteCalls(nowMilliseconds: nowMilliseconds)
        http.expireDeferred(nowMilliseconds: nowMilliseconds)
        http.tickStreams()
        webSockets.tick(nowMilliseconds: nowMilliseconds)
    }
}
