import SwitchboardJWT

/// One WebSocket connection's protocol state, on its shard (not Sendable; shard thread only).
final class BroadcasterSession {
    /// nil until a successful `auth`.
    var claims: JWTClaims?
    /// By channel name.
    var subscriptions: [String: BroadcasterSubscription] = [:]

    /// Whether the claims allow subscribing to `channel` (scope and channel list).
    func maySubscribe(_ channel: String) -> Bool {
        guard let c = claims else { return false }
        return c.scope.contains("subscribe") && c.authorizedChannels.contains(channel)
    }
}

/// One subscription: its id, its `seq` counter, and its phase.
struct BroadcasterSubscription {
    enum Phase {
        /// Waiting for the owner's answer to `since` (in a cluster, to every subscribe: Redis's
        /// answer comes once the shard's subscription is in place): live messages received
        /// meanwhile are held back, in owner order.
        case recovering(heldBack: [BroadcasterMessage])
        /// Every message is delivered as it arrives.
        case live
    }

    let id: String
    /// The last `seq` sent (the first broadcast carries 1).
    var seq = 0
    var phase: Phase
    /// Distinguishes this subscription from an earlier one to the same channel (an answer
    /// for an unsubscribed-then-resubscribed channel must be ignored).
    let generation: Int

    init(id: String, generation: Int, recovering: Bool) {
        self.id = id
        self.generation = generation
        self.phase = recovering ? .recovering(heldBack: []) : .live
    }

    /// The next `seq`.
    mutating func nextSeq() -> Int {
        seq += 1
        return seq
    }

    /// What to deliver when the owner's recovery answer arrives: the missed messages, then the
    /// held-back live ones the answer does not already include (offset above the answer's
    /// `lastOffset`). No gap: every message ordered after the owner answered was forwarded
    /// here after the subscription was registered, so it is held back. No duplicate: those at
    /// or below `lastOffset` are dropped from the held-back list.
    static func merge(_ recovery: BroadcasterRecovery, heldBack: [BroadcasterMessage]) -> [BroadcasterMessage] {
        var out: [BroadcasterMessage] = []
        if case .recovered(let missed, _) = recovery { out = missed }
        let after = recovery.lastOffset
        for m in heldBack where m.offset > after { out.append(m) }
        assert(zip(out, out.dropFirst()).allSatisfy { $0.offset < $1.offset } || !recovery.isRecovered, "recovered stream must be ordered")
        return out
    }
}

extension BroadcasterRecovery {
    var isRecovered: Bool { if case .recovered = self { true } else { false } }
}
