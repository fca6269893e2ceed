import SwitchboardIO

/// One shard's index `channel -> local subscribers`, with O(1) add and remove.
///
/// Subscribers are kept in an array (delivery walks it) plus a position map (removal swaps the
/// last one into the hole). The per-socket side (which channels a socket is in) lives with the
/// socket's protocol state, so a closing socket leaves every channel without a scan.
final class LocalChannel {
    var subscribers: [SocketID] = []
    var position: [SocketID: Int] = [:]
    /// Position of the last message of this channel delivered on this shard (nil: none since
    /// the entry was created).
    var lastPosition: ChannelPosition? = nil

    func add(_ id: SocketID) -> Bool {
        guard position[id] == nil else { return false }
        position[id] = subscribers.count
        subscribers.append(id)
        assert(position.count == subscribers.count, "every subscriber has exactly one position")
        return true
    }

    func remove(_ id: SocketID) -> Bool {
        guard let i = position.removeValue(forKey: id) else { return false }
        let last = subscribers.removeLast()
        if i < subscribers.count {
            subscribers[i] = last
            position[last] = i
        }
        assert(position.count == subscribers.count, "every subscriber has exactly one position")
        return true
    }
}

struct LocalChannelIndex {
    private(set) var channels: [ChannelName: LocalChannel] = [:]
    private(set) var subscriptionCount = 0

    var channelCount: Int { channels.count }

    func subscribers(of channel: ChannelName) -> LocalChannel? { channels[channel] }

    /// Adds; creates the channel entry when `mayCreate`.
    mutating func add(_ id: SocketID, to channel: ChannelName, mayCreate: Bool) -> SubscribeResult {
        if let c = channels[channel] {
            guard c.add(id) else { return .alreadySubscribed }
        } else {
            guard mayCreate else { return .tooManyChannels }
            let c = LocalChannel()
            _ = c.add(id)
            channels[channel] = c
        }
        subscriptionCount += 1
        return .subscribed
    }

    mutating func remove(_ id: SocketID, from channel: ChannelName) -> Bool {
        guard let c = channels[channel], c.remove(id) else { return false }
        subscriptionCount -= 1
        assert(subscriptionCount >= 0)
        if c.subscribers.isEmpty {
            channels.removeValue(forKey: channel)
            // A dictionary keeps its peak capacity: once no channel is left, give it back.
            if channels.isEmpty && channels.capacity > 1024 { channels = [:] }
        }
        return true
    }
}
