import CLiburing
import COpenSSL

/// Where a shard's handler keeps its state for each connection slot, so that the event loops
/// can ask for it a few events ahead of dispatching them (issue 16 item 3).
///
/// Why: at 1,000 connections a socket's state is out of the L1 and L2 caches by its next
/// message (the kernel's ~8 µs of send and receive per echo in between evicts it), and the
/// first touch of each of its three places waits for memory: the shard's `Connection` slot,
/// the handler's table entry, and the object that entry refers to (a WebSocket session). Perf
/// at 1,000 × 20 B echo on epoll put ~40% of the server's user-mode samples on those three
/// loads (`RESULTS.md`, 2026-12-03). The loops know the next events' slots (epoll's event array,
/// io_uring's drained completions), so they ask for them early: the slot and the table entry
/// two events ahead (their addresses follow from the slot number), the object one event ahead
/// (its address is read from the entry asked for the event before, by then in cache).
///
/// A prefetch never faults, so a slot of an event that turns out stale, or an entry that refers
/// to nothing, costs a wasted line at worst. The entry itself is read (for the object's
/// address), so the slot number is bounded by the slots in use, and the handler's table must
/// hold readable words there even for slots it never opened (`ConnectionTable` is zeroed).
///
/// Thread rules: set once by the handler in `shardStarted` (`Shard.handlerSlots`), read by the
/// shard's own loop only.
package struct HandlerSlotTable {
    /// The handler's entry for slot 0; slot `s`'s is `strideBytes * s` further.
    package let base: UnsafeRawPointer
    package let strideBytes: Int
    /// The bits of an entry's first word that are the address of the object it refers to (the
    /// others hold the enum case around the reference). The handler checks its own mask
    /// (`ConnectionTable`'s tests).
    package let referenceMask: UInt
    /// The first and last bytes of the referred object that a message touches: one prefetch
    /// each (the same line when they share one).
    package let hotFirstByte: Int
    package let hotLastByte: Int

    package init(base: UnsafeRawPointer, strideBytes: Int, referenceMask: UInt, hotFirstByte: Int, hotLastByte: Int) {
        precondition(strideBytes >= MemoryLayout<UInt>.size, "an entry smaller than its reference")
        precondition(hotFirstByte >= 0 && hotFirstByte <= hotLastByte, "the hot bytes are not a range")
        self.base = base
        self.strideBytes = strideBytes
        self.referenceMask = referenceMask
        self.hotFirstByte = hotFirstByte
        self.hotLastByte = hotLastByte
    }
}

extension Shard {
    /// Open connections from which the event loops prefetch (`prefetchAhead`). Below it a
    /// shard's connection state stays in the L2 cache between messages and the look-ahead is
    /// ~33 instructions per event for nothing (`steady-instructions.sh epoll echo 100 20`: 754
    /// → 787): measured on a 1 MiB-L2 core at 20 B echo, neutral at 300 connections, 0.29 →
    /// 0.32 µs of user time at 100 (more instructions, no miss to hide) and 0.56 → 0.41 at
    /// 1,000 (epoll; `RESULTS.md`, 2026-12-03).
    static let prefetchMinimumConnections = 512

    /// Whether this turn's events are worth the look-ahead (see `prefetchMinimumConnections`):
    /// asked once per turn.
    @inline(__always) final var prefetchesThisTurn: Bool { openConnections >= Self.prefetchMinimumConnections }

    /// Asks for what dispatching the events `index + 1` and `index + 2` of `events` will read
    /// first (see ``HandlerSlotTable``). `events` holds each event's token, the slot number in
    /// its low 32 bits (epoll's event data, io_uring's user data); tokens that name no
    /// connection (the doorbell, an outbound connect) pass the bound or prefetch a line for
    /// nothing. Called by the event loops before dispatching event `index`.
    ///
    /// With a TLS listener, a TLS connection's record-layer state too, in the same two steps:
    /// its entry in `tlsRecords` two events ahead, then (read from that entry) the lines a
    /// record reads first one event ahead (`sb_tls_prefetch`). At 1,000 TLS connections on
    /// io_uring that took ~0.1 µs of user time off an echo (median of ten interleaved rounds,
    /// 0.87 → 0.77 µs); neutral on epoll, where a receive's system call separates the events
    /// (RESULTS.md, 2026-12-05).
    @inline(__always)
    final func prefetchAhead(_ events: UnsafePointer<UInt64>, index: Int, count: Int, _ table: HandlerSlotTable?) {
        let slotsInUse = self.slotsInUse
        let records = tlsRecords
        if index + 2 < count {
            let slot = Int(truncatingIfNeeded: events[index + 2] & 0xFFFF_FFFF)
            if slot < slotsInUse {
                sb_prefetch(connections + slot)
                if let table { sb_prefetch(table.base + slot &* table.strideBytes) }
                if let records { sb_prefetch(records + slot) }
            }
        }
        if index + 1 < count {
            let slot = Int(truncatingIfNeeded: events[index + 1] & 0xFFFF_FFFF)
            if slot < slotsInUse {
                // Asked for two events ago (the previous call): normally in cache by now.
                if let table {
                    let word = (table.base + slot &* table.strideBytes).load(as: UInt.self) & table.referenceMask
                    if let object = UnsafeRawPointer(bitPattern: word) {
                        sb_prefetch(object + table.hotFirstByte)
                        sb_prefetch(object + table.hotLastByte)
                    }
                }
                // The table has an entry for every slot below `slotsInUse` (zeroed: nil).
                if let records, let connection = records[slot] {
                    assert(tlsSessions?[slot]?.takeUnretainedValue().connection == connection,
                           "the look-ahead's TLS table disagrees with the session table")
                    sb_tls_prefetch(connection)
                }
            }
        }
    }
}
