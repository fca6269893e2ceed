/// A promise to answer one HTTP request later: made by `ShardContext.deferResponse()` inside
/// `handleHttpRequest`, returned as `.deferred(slot)`, and answered from any thread or task
/// with ``respond(_:)``.
///
/// - The first answer wins; later ones are ignored.
/// - Responses still leave in request order: an answer for a request behind another that is
///   still owed waits its turn (at most `max_pending_responses_per_connection` are owed).
/// - Not answered within `deferred_response_timeout_ms`, the broker answers 504 in its place.
/// - If the client's connection closed first, the answer is dropped: the slot names the
///   connection with its generation, so it can never reach the slot's next tenant.
public struct ResponseSlot: Sendable {
    let broker: Broker
    let socketId: SocketID
    /// The request's number on its connection.
    let sequence: UInt64

    /// Answers the request. `.queued` means the answer reached the connection's shard (or was
    /// written, when called on it); it is still ignored there if the request was answered
    /// already, timed out, or its client left. `.refused(.full)`: the shard's inbox is full;
    /// retry, or let the timeout answer. Taken during a graceful shutdown (the owed answers go
    /// out in the grace period); `.refused(.stopped)` once the shard stopped.
    @discardableResult
    public func respond(_ response: WorkerResponse) -> Enqueued {
        let wire = response.wire
        return broker.completeDeferred(socketId, sequence, wire)
    }

    /// The connection the request came on.
    public var connection: SocketID { socketId }
}
