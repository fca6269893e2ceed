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

/// One subscription: its id, its `seq` counter, and, while a `since` recovery is in flight,
/// the live messages held back until the owner's answer arrives.
struct BroadcasterSubscription {
    let id: String
    /// The last `seq` sent (the first broadcast carries 1).
    var seq = 0
    /// Non-nil while recovering: live messages received meanwhile, in owner order.
    var heldBack: [BroadcasterMessage]?
    /// Distinguishes this subscription from an earlier one to the same channel (an answer
    /// for an unsubscribed-then-resubscribed channel must be ignored).
    let generation: Int

    init(id: String, generation: Int, recovering: Bool) {
        self.id = id
        self.generation = generation
        self.heldBack = recovering ? [] : nil
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
