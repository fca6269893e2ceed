@testable import Switchboard
import SwitchboardIO
import SwitchboardHTTP
import SwitchboardWebSocket
import Testing

/// `ConnectionTable` keeps no id per slot (issue 16 item 2): a 4-byte tenant word holds the
/// generation, so these check that stale ids, ids of another shard or node, and ids beyond the
/// slots used are all refused, as the stored id refused them before.
@Suite("Connection table: tenants without stored ids")
struct ConnectionTableTests {
    private func session() -> HTTPSession { HTTPSession(limits: HTTPLimits()) }

    @Test("current, stale, foreign and unused ids")
    func tenants() {
        let table = ConnectionTable(capacity: 8, shard: 3, node: 2)
        let a = SocketID(node: 2, shard: 3, slot: 1, generation: 7)
        #expect(!table.isCurrent(a))  // slot not used yet
        table.open(a, session())
        #expect(table.highWater == 2)
        #expect(table.isCurrent(a))
        #expect(table.http(a) != nil)
        #expect(table.webSocket(a) == nil)
        #expect(table.acceptsChannelFrames(a))
        // The same slot under another generation, shard or node.
        #expect(!table.isCurrent(SocketID(node: 2, shard: 3, slot: 1, generation: 8)))
        #expect(!table.isCurrent(SocketID(node: 2, shard: 3, slot: 1, generation: 7 | 1 << 23)))
        #expect(!table.isCurrent(SocketID(node: 2, shard: 4, slot: 1, generation: 7)))
        #expect(!table.isCurrent(SocketID(node: 1, shard: 3, slot: 1, generation: 7)))
        // Slot 0 was initialized on the way to slot 1 but holds no tenant.
        #expect(!table.isCurrent(SocketID(node: 2, shard: 3, slot: 0, generation: 0)))
        #expect(table.currentIDs == [a])

        table.insertSubscription(a, ChannelName("room"))
        table.stopChannelFrames(a)
        #expect(!table.acceptsChannelFrames(a))
        #expect(table.isCurrent(a))  // stopping channel frames does not end the tenancy

        let old = table.release(a)
        #expect(old.subscriptions == [ChannelName("room")])
        #expect(!table.isCurrent(a))
        #expect(table.currentIDs.isEmpty)

        // The slot's next tenant, with the largest generation.
        let b = SocketID(node: 2, shard: 3, slot: 1, generation: SocketID.generationMask)
        table.open(b, session())
        #expect(table.isCurrent(b))
        #expect(!table.isCurrent(a))
        #expect(table.acceptsChannelFrames(b))
        #expect(table.slots[1].subscriptions.isEmpty)
        #expect(table.currentIDs == [b])
        _ = table.release(b)
    }

    /// The event loops prefetch a slot's session through the table's first word per slot
    /// (`ConnectionTable.prefetchTable`, issue 16 item 3). A wrong mask would only make the
    /// prefetch useless, never fault, so this is what shows it: for both kinds of session, at
    /// several slots, the masked word is the session's address.
    @Test("the prefetch table finds each slot's session at its address")
    func prefetchTableFindsSessions() {
        let table = ConnectionTable(capacity: 8, shard: 0, node: 0)
        let prefetch = table.prefetchTable
        #expect(prefetch.base == UnsafeRawPointer(table.slots))
        #expect(prefetch.strideBytes == MemoryLayout<ConnectionSlot>.stride)
        #expect(prefetch.hotFirstByte == WebSocketSession.hotBytes.lowerBound)
        #expect(prefetch.hotLastByte == WebSocketSession.hotBytes.upperBound - 1)
        func address(_ slot: Int) -> UInt {
            (prefetch.base + slot * prefetch.strideBytes).load(as: UInt.self) & prefetch.referenceMask
        }
        // Never opened (an outbound connection's slot is not): readable, and no session.
        for slot in 0..<8 { #expect(address(slot) == 0, "slot \(slot) before any open") }
        var ids: [SocketID] = []
        for slot in 0..<8 {
            let id = SocketID(node: 0, shard: 0, slot: slot, generation: UInt32(slot + 1))
            ids.append(id)
            let http = session()
            table.open(id, http)
            #expect(address(slot) == UInt(bitPattern: Unmanaged.passUnretained(http).toOpaque()), "HTTP session at slot \(slot)")
            let ws = WebSocketSession(WebSocketConnection(settings: WebSocketCodecSettings()), token: nil, compresses: false)
            table.setPhase(id, .webSocket(ws))
            #expect(address(slot) == UInt(bitPattern: Unmanaged.passUnretained(ws).toOpaque()), "WebSocket session at slot \(slot)")
        }
        for id in ids { _ = table.release(id) }
        // A released slot refers to nothing: the loops skip it.
        #expect(address(3) == 0)
    }
}
