// TEMPORARY (never committed): the seams phase-1 names, so cbshards can run before the merge.
import SwitchboardIO

public enum Enqueued: Sendable, Equatable {
    case queued
    case refused(RefusalReason)
    public enum RefusalReason: Sendable, Equatable { case full, stopped, unknownShard }
    public var isQueued: Bool { self == .queued }
}

public enum LocalSendResult: Sendable, Equatable { case queued, dropped, closed, notLocal }

public struct ShimCloseCode: Sendable {
    public let rawValue: UInt16
    public static let tryAgainLater = ShimCloseCode(rawValue: 1013)
}

public final class PerShard<Value>: @unchecked Sendable {
    private let storage: UnsafeMutablePointer<Value?>
    public init() {
        storage = .allocate(capacity: 256)
        storage.initialize(repeating: nil, count: 256)
    }
    public subscript(context: ShardContext) -> Value? {
        get { storage[context.shardIndex] }
        set { storage[context.shardIndex] = newValue }
    }
}

extension ShardContext {
    public func send(_ socketId: SocketID, _ message: SocketMessage) -> LocalSendResult {
        broker.send(socketId, message) ? .queued : .closed
    }
    @discardableResult
    public func close(_ socketId: SocketID, code: ShimCloseCode, reason: String = "") -> Bool {
        broker.close(socketId, code: code.rawValue, reason: reason)
        return true
    }
}
