/// The counts the data path makes for every read and write, kept in the shard object during a
/// loop turn and added to their ``Counter``s once at its end (`Shard.publishTurnCounts`).
///
/// Why (issue 16 item 3): at 1,000 connections the kernel's work between two messages evicts
/// whatever a message touched, and a count made straight into its `Counter` reached the
/// counter through the shard's `IOMetrics` object: two cache lines of their own per count,
/// three counts per echo. Perf at 1,000 × 20 B echo on epoll put ~7% of the server's user
/// samples on those loads (`RESULTS.md`, 2026-12-03). Here the counts sit next to the slot
/// table's pointer, a line every event reads anyway.
///
/// What a reader sees: a `Counter` is at most one loop turn behind the data path, and exact
/// whenever the shard waits for events (the turn's end publishes before the loop may sleep).
///
/// Thread rules: shard thread only (a field of the shard, changed by its loop).
package struct TurnCounts {
    /// Bytes the turn's reads delivered (`IOMetrics.bytesReceived`).
    var bytesReceived = 0
    /// Bytes the turn's socket writes took (`IOMetrics.bytesSent`).
    var bytesSent = 0
    /// Socket writes made or submitted (`IOMetrics.sends`).
    var sends = 0

    /// Adds the counts to `metrics` and starts the next turn's at zero.
    mutating func publish(to metrics: IOMetrics) {
        assert(bytesReceived >= 0 && bytesSent >= 0 && sends >= 0, "a negative count")
        // A counter written with zero is left alone: an idle turn touches none of their lines.
        if bytesReceived != 0 { metrics.bytesReceived.increment(by: bytesReceived) }
        if bytesSent != 0 { metrics.bytesSent.increment(by: bytesSent) }
        if sends != 0 { metrics.sends.increment(by: sends) }
        self = TurnCounts()
    }
}
