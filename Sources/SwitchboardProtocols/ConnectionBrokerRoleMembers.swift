/// The members of one role in registration order, on the role's owner shard: an intrusive
/// doubly linked list in a slab, plus an id -> slot index.
///
/// Costs: `append` and `remove` O(1) (amortized: the slab and the index grow like arrays and
/// dictionaries); `first(_:)` visits exactly the entries it returns, so a `list_by_role` answer
/// costs O(result) whatever the role's size (no sort, no scan of the whole role).
/// Freed slots are reused; an empty role is dropped by its owner, so roles nobody uses cost
/// nothing.
///
/// Not thread-safe: owned by one shard's `ConnectionRegistry`.
struct RoleMembers {
    private struct Node {
        var id: UUID4
        var previous: Int32
        var next: Int32
    }

    /// `-1`: no node.
    private static let none: Int32 = -1
    private var nodes: [Node] = []
    private var freeSlots: [Int32] = []
    private var slotOfId: [UUID4: Int32] = [:]
    private var head: Int32 = RoleMembers.none
    private var tail: Int32 = RoleMembers.none

    var count: Int { slotOfId.count }
    var isEmpty: Bool { slotOfId.isEmpty }

    /// Appends `id` as the newest member. `id` must not be a member.
    mutating func append(_ id: UUID4) {
        precondition(slotOfId[id] == nil, "\(id) appended twice")
        let node = Node(id: id, previous: tail, next: Self.none)
        let slot: Int32
        if let free = freeSlots.popLast() {
            slot = free
            nodes[Int(slot)] = node
        } else {
            slot = Int32(nodes.count)
            nodes.append(node)
        }
        if tail == Self.none { head = slot } else { nodes[Int(tail)].next = slot }
        tail = slot
        slotOfId[id] = slot
    }

    /// Removes `id`; false when it was not a member.
    @discardableResult
    mutating func remove(_ id: UUID4) -> Bool {
        guard let slot = slotOfId.removeValue(forKey: id) else { return false }
        let node = nodes[Int(slot)]
        assert(node.id == id)
        if node.previous == Self.none { head = node.next } else { nodes[Int(node.previous)].next = node.next }
        if node.next == Self.none { tail = node.previous } else { nodes[Int(node.next)].previous = node.previous }
        freeSlots.append(slot)
        if slotOfId.isEmpty {
            // Start again from an empty slab rather than keep a free list as long as the
            // role's peak size (the owner drops empty roles anyway).
            nodes.removeAll(keepingCapacity: false)
            freeSlots.removeAll(keepingCapacity: false)
            assert(head == Self.none && tail == Self.none)
        }
        return true
    }

    /// The `limit` oldest members, oldest first. Visits exactly the entries it returns, and
    /// adds each visit to `visited` (the cost a test and a metric can check).
    func first(_ limit: Int, visited: inout Int) -> [UUID4] {
        var out: [UUID4] = []
        out.reserveCapacity(min(max(0, limit), count))
        var slot = head
        while out.count < limit && slot != Self.none {
            let node = nodes[Int(slot)]
            visited += 1
            out.append(node.id)
            slot = node.next
        }
        assert(out.count == min(max(0, limit), count), "list and index disagree")
        return out
    }
}
