import Logging
import SwitchboardIO
import SwitchboardWebSocket
#if canImport(Glibc)
import Glibc
#endif

/// Drives the shard's WebSocket connections: received bytes through the codec to the handler,
/// messages out (with the slow-consumer policy), keep-alive pings, and the close handshake.
/// Shard thread only.
///
/// Work and memory per peer are bounded here: at most `maxMessagesPerTurn` messages of one
/// socket, and no more after `maxTurnMicroseconds` spent on it (the fan-out of its publishes
/// to large channels counted at a tenth, see `fanOutNanoseconds`), are decoded and handled per
/// loop turn, the rest of its input waits in the session's
/// backlog (at most `maxInputBacklogBytes`, charged to the shard budget; beyond it the socket
/// is closed with 1013) and resumes next turn; input of a socket that closed meanwhile is
/// dropped, not executed. Pongs coalesce once `pongCoalesceQueuedBytes` are unsent: a socket
/// that does not drain has at most one pong queued and one waiting. A message still being assembled after
/// `assemblyTimeoutMilliseconds` fails with 1008.
final class WebSocketConnectionDriver {
    unowned(unsafe) let shard: Shard
    /// The same shard for the calls made once per message (`onShard`): through
    /// `_withUnsafeGuaranteedRef` a call takes no retain and release of the shard, which an
    /// `unowned(unsafe)` reference costs around each call (the shard owns this driver, through
    /// its dispatcher, and outlives it).
    private let shardReference: Unmanaged<Shard>
    let table: ConnectionTable
    let metrics: ProtocolMetrics
    let slowConsumerPolicy: SlowConsumerPolicy
    let settings: WebSocketSettings
    /// The broker's logger with this shard's `shard` metadata. Client-caused closes log at
    /// debug (they are counted in metrics; a hostile client must not flood the log), with the
    /// socket id as `socket` metadata (built only when the level is enabled).
    let logger: Logger
    /// Set once by the dispatcher, right after the handler is made.
    var worker: WorkerHandler = DefaultWorkerHandler()
    /// Recycled blocks for the frames `send` queues (see `OutboundFramePool`).
    let framePool = OutboundFramePool()
    /// Where the codec unmasks a message whole in one read for the handler's
    /// `SocketMessageView` (issue 16 item 3: no `String` or array per message): every
    /// connection's, one message at a time (`decodeOne` acts on it before the next decode).
    /// Messages over `lendingBytes` are made into values as before. Its pages are touched only
    /// as far as messages reach.
    let lendingBuffer: UnsafeMutableRawBufferPointer
    static let lendingBytes = 65_536
    #if DEBUG
    /// A handler is using `lendingBuffer` (a decode meanwhile would overwrite its message).
    private var lending = false
    #endif
    private var events: [WebSocketEvent] = []
    /// The events `decodeOne` acts on, swapped with `events` (see there): reused, never copied.
    private var eventsActing: [WebSocketEvent] = []
    /// Frames the codec completes per `decodeEvents` call (`receive`'s `maxFrames`), so the
    /// events collected per call are at most this many plus two: a read of control frames makes
    /// one event each (a 256 KiB read of 8-byte pings, 32,768), and the arrays, which keep their
    /// room from call to call, kept room for the largest such read for good (16 bytes per byte
    /// read: 4 MiB per shard at 256 KiB; `BoundsTests`' ping flood found it). The rest of the
    /// read is decoded by the next call of the same loop (`decode`), not deferred.
    static let maxFramesPerDecode = 64
    /// Counts loop turns: a session's frame allowance is per turn.
    private var turn: UInt64 = 1
    /// This turn's messages handed to the worker and queued for sending, added to
    /// `webSocketMessagesIn` / `webSocketMessagesOut` at the turn's end (`publishTurnCounts`;
    /// the I/O layer's `TurnCounts` says why). Declared beside `turn`, which every message reads.
    private var turnMessagesIn = 0
    private var turnMessagesOut = 0
    /// Sockets with a backlog to resume next turn.
    ///
    /// The three lists below skip the dynamic exclusivity check: `loopTurn` and
    /// `hasPendingWork` read them every loop turn, and each check was a runtime call of ~76
    /// instructions, ~300 per turn for these three (issue 16 item 3; see `Shard.finalizeList`).
    /// Shard thread only, and no access overlaps another: `swap` takes the two resume lists
    /// for itself alone, the loop over `resumeScratch` only appends to `resumeList` (`keep`),
    /// and `sendWaitingPongs` queues pongs through the shard, which never calls back into
    /// `queuePong`.
    @exclusivity(unchecked) private var resumeList: [SocketID] = []
    @exclusivity(unchecked) private var resumeScratch: [SocketID] = []
    /// Sockets with a pong waiting for the previous one to leave.
    @exclusivity(unchecked) private var pongWaiters: [SocketID] = []
    /// Sockets whose message assembly spans reads (checked against the timeout each tick).
    private var assembling: Set<SocketID> = []
    private var expiredScratch: [SocketID] = []
    private let turnSliceNanoseconds: UInt64
    /// Time spent writing channel frames to the queues of large channels' subscribers (see
    /// `ChannelEngine.deliverLocally`) that no socket's slice is charged, a running total: all
    /// of it but `1 / fanOutChargeDivisor`. Charged in full to the publisher, the fan-out cut
    /// the publishes handled per turn, so the frames each subscriber gets per send (one send
    /// per subscriber per turn: more system calls per delivery). Charged at a tenth, it still
    /// has a time bound: at most `fanOutChargeDivisor` slices of fan-out per socket per turn.
    private(set) var fanOutNanoseconds: UInt64 = 0
    /// The share of fan-out time a publisher's slice is charged: 1 / this.
    static let fanOutChargeDivisor: UInt64 = 10

    init(shard: Shard, table: ConnectionTable, metrics: ProtocolMetrics, settings: WebSocketSettings,
         logger: Logger) {
        self.logger = logger
        self.shard = shard
        shardReference = .passUnretained(shard)
        self.table = table
        self.metrics = metrics
        self.slowConsumerPolicy = settings.slowConsumerPolicy
        self.settings = settings
        turnSliceNanoseconds = UInt64(settings.maxTurnMicroseconds) * 1000
        lendingBuffer = .allocate(byteCount: Self.lendingBytes, alignment: 16)
    }

    deinit { lendingBuffer.deallocate() }

    @inline(__always) private func onShard<R>(_ body: (Shard) -> R) -> R {
        shardReference._withUnsafeGuaranteedRef(body)
    }

    /// The connection switched to WebSocket (the 101 is queued).
    func adopt(_ id: SocketID, _ session: WebSocketSession) {
        table.setPhase(id, .webSocket(session))
        metrics.upgrades.increment()
        metrics.webSocketsOpen.set(metrics.webSocketsOpen.value + 1)
    }

    /// The connection is gone: the handler hears of it once.
    func closed(_ id: SocketID, _ session: WebSocketSession) {
        // Everything the session held goes back to the shard's budget.
        session.connection.releaseResources()
        dropBacklog(session)
        session.pendingPong = nil
        assembling.remove(id)
        metrics.webSocketsOpen.set(metrics.webSocketsOpen.value - 1)
        assert(metrics.webSocketsOpen.value >= 0)
        worker.handleSocketClose(socketId: id, token: session.token)
    }

    // MARK: - Receive

    /// `worker` is `self.worker`, passed by the dispatcher from its own `let` (issue 16 item 3:
    /// read from this class's stored property, the existential was retained and released around
    /// every message).
    /// `knownOpen`: the shard has just found the connection open and no handler code ran since
    /// (the dispatcher's call straight from `connectionReceived`, see `ShardEventHandler`): the
    /// first message then skips `handOver`'s check of it.
    func receive(_ id: SocketID, _ session: WebSocketSession, _ bytes: UnsafeRawBufferPointer, worker: WorkerHandler,
                 knownOpen: Bool) {
        assert(worker === self.worker, "a worker other than the driver's")
        guard session.backlogIsEmpty else {
            // Earlier input still waits for its turn: this goes behind it, in order.
            keep(id, session, bytes)
            return
        }
        let used = decode(id, session, bytes, worker, knownOpen: knownOpen)
        if used < bytes.count { keep(id, session, UnsafeRawBufferPointer(rebasing: bytes[used...])) }
    }

    /// Whether a socket has input waiting for the next turn, or a waiting pong may go now
    /// (its predecessor left in this turn's sends): the loop must not sleep.
    /// The common answer (nothing waits) inline in the dispatcher: asked once per sleeping loop
    /// turn, as a call ~25 instructions (issue 16 item 3).
    @inline(__always) var hasPendingWork: Bool {
        if !resumeList.isEmpty { return true }
        return !pongWaiters.isEmpty && pongMayGo
    }

    /// Whether a waiting pong's predecessor has left.
    @inline(never) private var pongMayGo: Bool {
        for id in pongWaiters {
            if let session = table.webSocket(id), shard.sentBytes(id) >= session.pongLeavesAt { return true }
        }
        return false
    }

    /// Start of a loop turn's end: resumes backlogs within this turn's allowance, and sends
    /// pongs whose predecessor has left.
    /// The counter and the two emptiness tests inline in the dispatcher (once per loop turn:
    /// as a call ~30 instructions, issue 16 item 3), the work out of line.
    @inline(__always) func loopTurn() {
        turn &+= 1
        if !pongWaiters.isEmpty { sendWaitingPongs() }
        if !resumeList.isEmpty { resumeBacklogs() }
    }

    /// Adds the turn's message counts to their counters: last in the shard's loop turn
    /// (`ShardEventHandler.turnEnded`), so they are exact whenever the shard may sleep.
    func publishTurnCounts() {
        assert(turnMessagesIn >= 0 && turnMessagesOut >= 0, "a negative count")
        if turnMessagesIn != 0 { metrics.webSocketMessagesIn.increment(by: turnMessagesIn) }
        if turnMessagesOut != 0 { metrics.webSocketMessagesOut.increment(by: turnMessagesOut) }
        turnMessagesIn = 0
        turnMessagesOut = 0
    }

    /// Decodes the backlogs of the sockets in `resumeList` within this turn's allowance.
    @inline(never) private func resumeBacklogs() {
        let worker = self.worker  // one retain for the resumed sockets, not one per message
        swap(&resumeList, &resumeScratch)
        for id in resumeScratch {
            guard table.isCurrent(id), let session = table.webSocket(id) else { continue }
            session.resumeQueued = false
            // A socket that closed (or is closing) meanwhile: its requests are dropped.
            guard shard.isOpen(id), session.lifecycle != .closeQueued else {
                dropBacklog(session)
                continue
            }
            let start = session.backlogHead
            // Checked open just above, and nothing ran since.
            let used = session.backlog.withUnsafeBytes {
                decode(id, session, UnsafeRawBufferPointer(rebasing: $0[start...]), worker, knownOpen: true)
            }
            session.backlogHead += used
            if session.backlogIsEmpty {
                dropBacklog(session)
            } else if !session.resumeQueued {
                session.resumeQueued = true
                resumeList.append(id)
            }
        }
        resumeScratch.removeAll(keepingCapacity: true)
    }

    /// Keeps input the codec did not take this turn (charged to the shard's budget).
    private func keep(_ id: SocketID, _ session: WebSocketSession, _ bytes: UnsafeRawBufferPointer) {
        let held = session.backlog.count - session.backlogHead
        guard held + bytes.count <= settings.maxInputBacklogBytes else {
            // The peer sends more than its turns allow it to be served: it may try again later.
            metrics.webSocketBacklogCloses.increment()
            dropBacklog(session)
            close(id, code: .tryAgainLater, reason: "input backlog over limit", force: true)
            shard.close(id, mode: .afterFlush)
            return
        }
        if session.backlogHead > 0 {
            session.backlog.removeFirst(session.backlogHead)
            session.backlogHead = 0
        }
        session.backlog.append(contentsOf: bytes)
        let capacity = session.backlog.capacity
        if capacity > session.backlogCharge {
            guard shard.memory.tryCharge(capacity - session.backlogCharge, holding: session.backlogCharge) else {
                metrics.webSocketOverBudget.increment()
                dropBacklog(session)
                close(id, code: .tryAgainLater, reason: WebSocketConnection.overBudgetReason, force: true)
                shard.close(id, mode: .afterFlush)
                return
            }
            session.backlogCharge = capacity
        }
        if !session.resumeQueued {
            session.resumeQueued = true
            resumeList.append(id)
        }
    }

    private func dropBacklog(_ session: WebSocketSession) {
        session.backlog = []
        session.backlogHead = 0
        if session.backlogCharge > 0 {
            shard.memory.release(session.backlogCharge)
            session.backlogCharge = 0
        }
    }

    /// Decodes and handles messages within the socket's slice of this turn: at most
    /// `maxMessagesPerTurn` messages and, once one ran, `maxTurnMicroseconds` of time (a single
    /// message always runs, so every socket progresses). Returns the bytes used; the caller
    /// keeps the rest for the next turn. `knownOpen`: see `receive`.
    /// Inlined into `receive` and the resume loop: one frame less per read (issue 16 item 3).
    /// (`receive` itself stays a call: inlined into the dispatcher, the optimizer outlined the
    /// dispatcher's `_withUnsafeGuaranteedRef` closure instead, and the count rose.)
    @inline(__always)
    private func decode(_ id: SocketID, _ session: WebSocketSession, _ bytes: UnsafeRawBufferPointer,
                        _ worker: WorkerHandler, knownOpen: Bool) -> Int {
        if !session.isTurn(turn) {
            session.enterTurn(turn)
            session.messagesThisTurn = 0
            // The slice's clock is read now only if these bytes may hold a second message, the
            // one thing it is needed for (issue 16 item 3: a clock_gettime per read, ~20 ns of
            // user time per echo). Otherwise it starts when a second message of the turn comes
            // (`sliceUsedNanoseconds`), which only happens when the same socket is delivered to
            // again in this turn (a read that filled the shard's buffer, a second TLS record).
            if Self.mayHoldSeveralFrames(session, bytes) {
                startSlice(session)
            } else {
                session.turnStartNanoseconds = Self.sliceNotStarted
            }
        }
        var offset = 0
        var knownOpen = knownOpen
        while offset < bytes.count {
            if session.messagesThisTurn >= settings.maxMessagesPerTurn
                || (session.messagesThisTurn > 0 && sliceUsedNanoseconds(session) >= turnSliceNanoseconds) {
                metrics.webSocketBatchesDeferred.increment()
                break
            }
            offset += decodeOne(id, session, UnsafeRawBufferPointer(rebasing: bytes[offset...]), worker, knownOpen: knownOpen)
            knownOpen = false  // the handler ran (or a control frame was answered): it may have closed the socket
        }
        return offset
    }

    /// `turnStartNanoseconds` of a session whose slice clock was not read yet this turn (the
    /// monotonic clock never reaches it).
    private static let sliceNotStarted = UInt64.max

    /// Starts the socket's slice of this turn now. Out of line: inlined, its `timespec` gave
    /// `decode` a stack protector, paid per message.
    @inline(never) private func startSlice(_ session: WebSocketSession) {
        session.turnStartNanoseconds = monotonicNanoseconds()
        session.turnFanOutStartNanoseconds = fanOutNanoseconds
    }

    /// Whether `bytes`, a socket's first input of the turn, may hold more than one frame.
    /// False only when the codec waits for a frame's first byte and the bytes are at most that
    /// one frame (a 7-bit length: every echo- or chat-sized message). Mid-frame, or with an
    /// extended length, true: the clock is read as before.
    @inline(__always) private static func mayHoldSeveralFrames(_ session: WebSocketSession, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard session.connection.isAtFrameStart() else { return true }
        // Under two bytes: a header in pieces, nothing behind it.
        guard bytes.count >= 2, let base = bytes.baseAddress else { return false }
        let byte1 = base.load(fromByteOffset: 1, as: UInt8.self)
        let length = Int(byte1 & 0x7F)
        guard length < 126 else { return true }
        let frameBytes = 2 + (byte1 & 0x80 != 0 ? 4 : 0) + length
        return bytes.count > frameBytes
    }

    /// The time this socket's slice has used this turn: since it began, less the exempt part
    /// of the fan-out time. A slice not started yet (see `decode`) starts now, with nothing used.
    @inline(__always) private func sliceUsedNanoseconds(_ session: WebSocketSession) -> UInt64 {
        if session.turnStartNanoseconds == Self.sliceNotStarted {
            startSlice(session)
            return 0
        }
        let elapsed = monotonicNanoseconds() &- session.turnStartNanoseconds
        let fanOut = fanOutNanoseconds &- session.turnFanOutStartNanoseconds
        assert(fanOut <= elapsed &+ 1_000, "more fan-out time than time")  // clock reads differ by a few ns
        return elapsed > fanOut ? elapsed - fanOut : 0
    }

    /// Records fan-out time: all but a tenth of it is left out of the publisher's slice (see
    /// `fanOutNanoseconds`).
    @inline(__always) func exemptFanOut(nanoseconds: UInt64) {
        fanOutNanoseconds &+= nanoseconds - nanoseconds / Self.fanOutChargeDivisor
    }

    /// Decodes up to one message (and the control frames before it) and acts on the events.
    /// `knownOpen` (see `receive`) applies to the message of the fast path only: on the other
    /// path control frames ahead of it are answered first, and an answer may close the socket.
    ///
    /// The common message (whole at the front of the bytes, lent, with no events) is decoded
    /// here, inline in `decode`; everything else in `decodeEvents`, out of line (issue 16 item 3:
    /// as one function, the common message paid the other path's large frame, ~30 instructions
    /// of prologue and epilogue per message).
    @inline(__always)
    private func decodeOne(_ id: SocketID, _ session: WebSocketSession, _ bytes: UnsafeRawBufferPointer,
                           _ worker: WorkerHandler, knownOpen: Bool) -> Int {
        #if DEBUG
        assert(!lending, "a decode while a handler holds a lent message")
        #endif
        if let whole = session.connection.receiveWholeMessage(bytes, scratch: lendingBuffer) {
            if session.lifecycle == .awaitingPong { session.lifecycle = .open }
            lend(whole.opcode, count: whole.count, id, session, worker, knownOpen: knownOpen)
            return whole.used
        }
        return decodeEvents(id, session, bytes, worker)
    }

    /// `decodeOne` for everything but the common message: control frames, fragments, large or
    /// compressed messages, frames in pieces, failures.
    @inline(never)
    private func decodeEvents(_ id: SocketID, _ session: WebSocketSession, _ bytes: UnsafeRawBufferPointer,
                              _ worker: WorkerHandler) -> Int {
        // Events are collected first and acted on after the codec returned: the handler may
        // answer (send on this socket, close it) from inside handleSocketMessage, which uses
        // the codec. The common call reports exactly one event (a whole message): it stays in
        // a local, and only the events after it (control frames ahead of the message, a close
        // behind it) go to `events`. Per message this saves the array's bookkeeping and the
        // dynamic exclusivity checks of a class property appended to from the closure.
        var first: WebSocketEvent? = nil
        var message = false
        var more = false
        let used = session.connection.receive(bytes, maxMessages: 1, maxFrames: Self.maxFramesPerDecode, scratch: lendingBuffer) { event in
            switch event {
            case .text, .binary, .textBytes, .inScratch: message = true
            default: break
            }
            if first == nil {
                first = event
            } else {
                events.append(event)
                more = true
            }
        }
        assert(used > 0 || bytes.isEmpty, "the codec made no progress")
        if used > 0 && session.lifecycle == .awaitingPong { session.lifecycle = .open }
        if !message { noteAssembly(id, session) }
        guard let first else { return used }
        // `more`, not `events.isEmpty`: a read of the class property is a dynamic exclusivity check.
        if !more {
            act(on: first, id, session, worker)
        } else {
            act(on: first, id, session, worker)
            // Swapped, not copied: `let batch = events` then `events.removeAll(keepingCapacity:)`
            // made the array non-unique, so the removal allocated a new buffer. Both arrays keep
            // their capacity from message to message.
            swap(&events, &eventsActing)
            assert(eventsActing.count <= Self.maxFramesPerDecode + 2, "more events than the codec's frame bound allows")
            for event in eventsActing { act(on: event, id, session, worker) }
            eventsActing.removeAll(keepingCapacity: true)
        }
        return used
    }

    /// After a decode that delivered no data message: a message whose bytes span reads is
    /// timed (`assemblyTimeoutMilliseconds`). (A call that delivered one stopped right after
    /// it, so then nothing is being assembled.)
    private func noteAssembly(_ id: SocketID, _ session: WebSocketSession) {
        if session.connection.isAssemblingMessage && session.assemblyMessage != session.connection.messagesStarted {
            session.assemblyMessage = session.connection.messagesStarted
            session.assemblyStartedMilliseconds = shard.nowMilliseconds
            assembling.insert(id)
        }
    }

    /// Acts on one event of the codec, in order.
    @inline(__always)
    private func act(on event: WebSocketEvent, _ id: SocketID, _ session: WebSocketSession, _ worker: WorkerHandler) {
        // The handler may have closed the socket (it stays current until the shard finalizes
        // it; a close only changes the lifecycle).
        assert(table.isCurrent(id))
        switch event {
        case .inScratch(let opcode, let count):
            // A message whole in one read behind control frames, unmasked into `lendingBuffer`.
            lend(opcode, count: count, id, session, worker, knownOpen: false)
        case .text(let text):
            // Not from the broker's codecs, which ask for bytes (`textAsBytes`); a view of the value.
            handOver(SocketMessageView(.text(text)), id, session, worker, knownOpen: false)
        case .textBytes(let bytes):
            // Assembled text, or whole in the read but larger than `lendingBuffer` (the settings
            // ask for bytes): lent from the array the codec handed over, with no `String` made.
            bytes.withUnsafeBytes { handOver(SocketMessageView(isText: true, lending: $0), id, session, worker, knownOpen: false) }
        case .binary(let payload):
            // Assembled, empty, or whole but larger than `lendingBuffer`: a view of the array.
            handOver(SocketMessageView(.binary(payload)), id, session, worker, knownOpen: false)
        case .write(let frame) where WebSocketFrame.isPong(frame):
            queuePong(id, session, frame)
        case .write(let frame):
            // A pong, or the close frame that ends the connection (then `.closed` or
            // `.failed` follows at once, with no handler call in between).
            if shard.send(id, OutboundBytes(frame)) == .overLimit { shard.close(id, mode: .immediately) }
        case .pong:
            break
        case .closed:
            // The close handshake is complete: nothing more is expected from the client,
            // and nothing may follow the close frame the codec queued.
            endSending(id, session, .closeQueued)
            shard.close(id, mode: .afterFlushNoLinger)
        case .failed(let code, let reason):
            endSending(id, session, .closeQueued)
            if code == SwitchboardWebSocket.WebSocketCloseCode.tryAgainLater {
                metrics.webSocketOverBudget.increment()
            } else {
                metrics.webSocketProtocolErrors.increment()
            }
            logger.debug("websocket failed: close \(code) \(reason)", metadata: [SwitchboardLogKey.socket: "\(id)"])
            if code == SwitchboardWebSocket.WebSocketCloseCode.messageTooBig { metrics.webSocketTooBig.increment() }
            shard.close(id, mode: .afterFlush)
        }
    }

    /// Hands the handler the message the codec unmasked into `lendingBuffer` (its first
    /// `count` bytes), lent for the call.
    @inline(__always)
    private func lend(_ opcode: WebSocketOpcode, count: Int, _ id: SocketID, _ session: WebSocketSession, _ worker: WorkerHandler,
                      knownOpen: Bool) {
        assert(count <= lendingBuffer.count)
        #if DEBUG
        lending = true
        defer { lending = false }
        #endif
        handOver(SocketMessageView(isText: opcode == .text, lending: UnsafeRawBufferPointer(start: lendingBuffer.baseAddress, count: count)),
                 id, session, worker, knownOpen: knownOpen)
    }

    /// Every message's way to the handler: counted against the turn, then handed over unless
    /// a close came first. `knownOpen`: the shard found the socket open and nothing ran since
    /// (see `receive`), so its check is skipped (issue 16 item 3: a call of ~30 instructions per
    /// message).
    @inline(__always)
    private func handOver(_ view: consuming SocketMessageView, _ id: SocketID, _ session: WebSocketSession, _ worker: WorkerHandler,
                          knownOpen: Bool) {
        assert(table.isCurrent(id))
        assert(!knownOpen || shard.isOpen(id), "a socket said to be open is not")
        session.messagesThisTurn += 1
        // Requests behind a close (the handler's, or the shard's) are not executed.
        guard session.lifecycle.maySend, knownOpen || onShard({ $0.isOpen(id) }) else {
            metrics.webSocketMessagesDiscarded.increment()
            return
        }
        turnMessagesIn &+= 1
        // Without a token, a literal nil: the session's property passed as it is was retained
        // and released around the call, a null reference included (the handler could change
        // the token meanwhile, through `setToken`).
        if session.token == nil {
            worker.handleSocketMessage(view, socketId: id, token: nil)
        } else {
            worker.handleSocketMessage(view, socketId: id, token: session.token)
        }
    }

    // MARK: - Pongs

    /// Below this many unsent bytes on the socket every ping gets its own pong: a client that
    /// reads (Autobahn 2.10/2.11 send 10 pings in one burst and expect 10 pongs) sees one answer
    /// per ping. Above it the socket is not draining, and pongs coalesce.
    static let pongCoalesceQueuedBytes = 4096

    /// Queues a pong, or keeps it waiting while the previous one has not left and the socket's
    /// queue is not draining (a peer that pings without reading holds one pong, not one per
    /// ping; RFC 6455 §5.5.3 allows answering only the latest ping).
    private func queuePong(_ id: SocketID, _ session: WebSocketSession, _ frame: [UInt8]) {
        if shard.sentBytes(id) < session.pongLeavesAt
            && (session.pendingPong != nil || shard.queuedBytes(id) >= Self.pongCoalesceQueuedBytes) {
            if session.pendingPong == nil {
                pongWaiters.append(id)
            } else {
                metrics.webSocketPongsCoalesced.increment()
            }
            session.pendingPong = frame
            return
        }
        sendPong(id, session, frame)
    }

    private func sendPong(_ id: SocketID, _ session: WebSocketSession, _ frame: [UInt8]) {
        if shard.send(id, OutboundBytes(frame)) == .overLimit {
            shard.close(id, mode: .immediately)
            return
        }
        session.pongLeavesAt = shard.sentBytes(id) &+ UInt64(shard.queuedBytes(id))
    }

    @inline(never) private func sendWaitingPongs() {
        var kept = 0
        for i in pongWaiters.indices {
            let id = pongWaiters[i]
            guard table.isCurrent(id), let session = table.webSocket(id), let pong = session.pendingPong else { continue }
            // After a close nothing more may be sent (RFC 6455 §5.5.1).
            guard session.lifecycle.maySend, shard.isOpen(id) else {
                session.pendingPong = nil
                continue
            }
            if shard.sentBytes(id) < session.pongLeavesAt {
                pongWaiters[kept] = id
                kept += 1
                continue
            }
            session.pendingPong = nil
            sendPong(id, session, pong)
        }
        pongWaiters.removeSubrange(kept...)
    }

    // MARK: - Send

    /// Sends a message on a WebSocket of this shard: exact. Its bytes go through
    /// `send(_:_:_:)`, read in place (`withFrameParts`: no copy of the string or array).
    func send(_ id: SocketID, _ message: SocketMessage) -> LocalSendResult {
        message.withFrameParts { send(id, $0, $1) }
    }

    /// Sends a message given as its opcode (text or binary) and bytes (a handler's
    /// `SocketMessageView`, or a `SocketMessage`'s, above).
    func send(_ id: SocketID, _ opcode: WebSocketOpcode, _ payload: UnsafeRawBufferPointer) -> LocalSendResult {
        assert(opcode == .text || opcode == .binary)
        // Not `connection.isOpen`: the codec may already have failed on input that arrived in
        // the same read as the message being answered; the answer still goes before the close.
        // The plain path reads the slot's flags, not the session (no retain of it, no dynamic
        // exclusivity check): `acceptsChannelFrames` is `lifecycle.maySend` (see `endSending`),
        // and `shard.send` refuses a connection that is not open.
        guard table.isWebSocket(id), table.acceptsChannelFrames(id) else { return .closed }
        assert(table.webSocket(id)!.lifecycle.maySend, "the slot's flag and the lifecycle disagree")
        assert(table.compresses(id) == table.webSocket(id)!.compresses, "the slot's deflate flag and the codec disagree")
        // Queued from each branch, not after a merge: a `let frame` assigned in both branches
        // was copied (a retain and release per message).
        guard table.compresses(id) else {
            // A small frame straight into a send block of the shard (no atomic reference
            // counting, see `Shard.send(_:header:headerBytes:copying:)`); the pooled frame when
            // the shard takes none (too large for a block, no block left).
            if payload.count <= Self.shortHeaderMaxPayload {
                let (header, headerBytes) = Self.frameHeader(opcode, payloadCount: payload.count)
                if let sent = onShard({ $0.send(id, header: header, headerBytes: headerBytes, copying: payload) }) {
                    return result(of: sent, id)
                }
            }
            return queue(retained: framePool.retainedFrame(opcode, payload), on: id)
        }
        // The compressor's state advances with every message: only for one that is sent.
        guard let session = table.webSocket(id), shard.isOpen(id) else { return .closed }
        return queue(OutboundBytes(session.connection.encodeMessage(payload, opcode: opcode)), on: id)
    }

    /// Payloads whose unmasked frame header is at most 4 bytes (`frameHeader`).
    static let shortHeaderMaxPayload = 0xFFFF

    /// The header of an unmasked, final, uncompressed frame of `payloadCount` bytes (at most
    /// `shortHeaderMaxPayload`), as `Shard.send(_:header:headerBytes:copying:)` takes it: its
    /// bytes in order from the low bits, and how many there are (2, or 4 with a 16-bit length).
    /// Laid out by `WebSocketFrame.writeHeader`, the one place a frame header is, into a word:
    /// unmasked and with at most a 16-bit length it stores 4 bytes at most.
    @inline(__always) static func frameHeader(_ opcode: WebSocketOpcode, payloadCount: Int) -> (UInt64, Int) {
        assert(payloadCount >= 0 && payloadCount <= shortHeaderMaxPayload)
        var header: UInt64 = 0
        let headerBytes = withUnsafeMutableBytes(of: &header) {
            WebSocketFrame.writeHeader(opcode: opcode, payloadCount: payloadCount, fin: true, rsv1: false, into: $0.baseAddress!)
        }
        assert(headerBytes <= 4, "an unmasked header with a 16-bit length at most")
        // The bytes as stored, first at the lowest address: read back as the little-endian word.
        return (UInt64(littleEndian: header), headerBytes)
    }

    /// Queues an encoded frame, applying the slow-consumer policy at the limit.
    @inline(__always) func queue(_ frame: OutboundBytes, on id: SocketID) -> LocalSendResult {
        result(of: onShard { $0.send(id, frame) }, id)
    }

    /// `queue(_:on:)` for a frame's +1 reference, which the shard takes over (the pool's
    /// frames: no retain by the queue and release here per message).
    @inline(__always) func queue(retained frame: Unmanaged<OutboundBytes.Storage>, on id: SocketID) -> LocalSendResult {
        result(of: onShard { $0.send(id, retained: frame) }, id)
    }

    /// The handler's view of a send's result; counts it, applies the slow-consumer policy.
    @inline(__always) private func result(of sent: SendResult, _ id: SocketID) -> LocalSendResult {
        switch sent {
        case .queued:
            turnMessagesOut &+= 1
            return .queued
        case .notOpen:
            return .closed
        case .overLimit:
            applySlowConsumerPolicy(id)
            return .dropped
        }
    }

    /// Whether a channel frame may go to this subscriber: not once a close frame is queued
    /// (ours or the codec's). A socket still in its upgrade request has no session yet.
    @inline(__always) func mayDeliver(_ id: SocketID) -> Bool {
        // Subscribers leave their channels when they close: every id here is current.
        assert(table.isCurrent(id), "a closed socket is still subscribed")
        let accepts = table.acceptsChannelFrames(id)
        assert(accepts == (table.webSocket(id)?.lifecycle.maySend ?? true), "the slot's flag and the lifecycle disagree")
        return accepts
    }

    /// A close frame is queued (ours or the codec's): nothing more may be sent, channel frames
    /// included. The one place the lifecycle leaves `maySend`, so the slot's flag follows it.
    private func endSending(_ id: SocketID, _ session: WebSocketSession, _ lifecycle: WebSocketLifecycle) {
        assert(!lifecycle.maySend)
        session.lifecycle = lifecycle
        table.stopChannelFrames(id)
    }

    /// A socket's send queue is at its limit: drop the message (counted) or close with 1013.
    func applySlowConsumerPolicy(_ id: SocketID) {
        switch slowConsumerPolicy {
        case .drop:
            metrics.webSocketMessagesDropped.increment()
        case .close:
            metrics.webSocketSlowConsumersClosed.increment()
            logger.debug("websocket closed: slow consumer (1013)", metadata: [SwitchboardLogKey.socket: "\(id)"])
            close(id, code: .tryAgainLater, reason: "slow consumer", force: true)
        }
    }

    // MARK: - Close

    /// Server-initiated close: a close frame, then the client's close (or the request timeout).
    /// `force` drops nothing but lets the close frame pass the queue limit (slow consumer).
    /// Returns whether a close handshake started.
    @discardableResult
    func close(_ id: SocketID, code: WebSocketCloseCode, reason: String, force: Bool = false) -> Bool {
        guard let session = table.webSocket(id), session.lifecycle.maySend, session.connection.isOpen else { return false }
        let frame = session.connection.initiateClose(code: code.rawValue, reason: reason)
        assert(!frame.isEmpty, "an open codec always makes a close frame")
        endSending(id, session, .closeSent)
        // `force`: the queue is at its limit (slow consumer). Frames nothing was written of yet
        // are dropped so the close frame comes next (a peer that stopped reading still learns
        // why, 1013, as soon as it reads again); the connection then has the linger timeout to
        // take it, after which it is cut.
        if force { shard.dropUnsentQueue(id) }
        if shard.send(id, OutboundBytes(frame), overLimit: force) != .queued {
            shard.close(id, mode: .immediately)
            return true
        }
        if force {
            shard.close(id, mode: .afterFlush)
        } else {
            shard.armRequestTimer(id)
        }
        return true
    }

    // MARK: - Timers

    /// Fails messages whose assembly took longer than `assemblyTimeoutMilliseconds` (1008):
    /// an unfinished message must not pin its bytes for as long as the socket stays open.
    func tick(nowMilliseconds now: Int64) {
        guard !assembling.isEmpty else { return }
        for id in assembling {
            guard let session = table.webSocket(id), session.connection.isAssemblingMessage,
                  session.assemblyMessage == session.connection.messagesStarted else {
                expiredScratch.append(id)  // finished or gone: stop watching
                continue
            }
            if now - session.assemblyStartedMilliseconds >= Int64(settings.assemblyTimeoutMilliseconds) {
                expiredScratch.append(id)
                metrics.webSocketAssemblyTimeouts.increment()
                close(id, code: .policyViolation, reason: "message assembly timed out")
            }
        }
        for id in expiredScratch { assembling.remove(id) }
        expiredScratch.removeAll(keepingCapacity: true)
    }

    func timedOut(_ id: SocketID, _ session: WebSocketSession, _ timer: ConnectionTimer) {
        switch (timer, session.lifecycle) {
        case (.request, _):
            // The client did not answer our close frame in time.
            shard.close(id, mode: .immediately)
        case (.idle, .open):
            session.lifecycle = .awaitingPong
            _ = shard.send(id, OutboundBytes(WebSocketConnection.pingFrame([])))
            shard.touch(id)
        case (.idle, .awaitingPong), (.idle, .closeSent):
            metrics.webSocketPingTimeouts.increment()
            logger.debug("websocket closed: no pong to the keep-alive ping", metadata: [SwitchboardLogKey.socket: "\(id)"])
            shard.close(id, mode: .immediately)
        case (.idle, .closeQueued):
            shard.close(id, mode: .immediately)
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds (vDSO: tens of nanoseconds, no system call).
@inline(__always) func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
