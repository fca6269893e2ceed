/// An ordered list of header fields with case-insensitive lookup.
///
/// Names are kept exactly as received or added; duplicates are kept in order, because
/// folding them would lose information (e.g. `Set-Cookie`).
public struct HTTPHeaders: Sendable, Sequence, Equatable, ExpressibleByDictionaryLiteral {
    fileprivate struct Field: Sendable, Equatable {
        var name: String
        var value: String
    }

    private var fields: [Field]

    /// Creates an empty header list.
    public init() { fields = [] }

    /// Creates a header list from `(name, value)` pairs, in order.
    public init(_ pairs: [(String, String)]) {
        fields = pairs.map { Field(name: $0.0, value: $0.1) }
    }

    /// Creates a header list from a dictionary literal, in source order.
    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { Field(name: $0.0, value: $0.1) }
    }

    /// Creates an empty header list with room for `minimumCapacity` fields: a list built
    /// field by field then allocates once (a dictionary literal costs an array of tuples more).
    public init(minimumCapacity: Int) {
        fields = []
        fields.reserveCapacity(minimumCapacity)
    }

    /// Appends a field, keeping any existing fields with the same name.
    public mutating func add(name: String, value: String) {
        fields.append(Field(name: name, value: value))
    }

    /// Replaces the first field named `name` (case-insensitive) and removes the others, or appends one.
    public mutating func replaceOrAdd(name: String, value: String) {
        guard let first = fields.firstIndex(where: { ASCII.caseInsensitiveEquals($0.name, name) }) else {
            add(name: name, value: value)
            return
        }
        fields[first] = Field(name: name, value: value)
        var index = fields.index(after: first)
        while index < fields.endIndex {
            if ASCII.caseInsensitiveEquals(fields[index].name, name) {
                fields.remove(at: index)
            } else {
                index = fields.index(after: index)
            }
        }
    }

    /// Removes every field named `name` (case-insensitive).
    public mutating func remove(name: String) {
        fields.removeAll { ASCII.caseInsensitiveEquals($0.name, name) }
    }

    /// The value of the first field named `name` (case-insensitive), or nil.
    public subscript(name: String) -> String? {
        ASCII.withBytes(name) { wanted in
            for field in fields where Self.named(field, wanted) { return field.value }
            return nil
        }
    }

    /// The values of all fields named `name` (case-insensitive), in order.
    public func values(for name: String) -> [String] {
        ASCII.withBytes(name) { wanted in
            var values: [String] = []
            for field in fields where Self.named(field, wanted) { values.append(field.value) }
            return values
        }
    }

    /// The value of the field named `name` (case-insensitive) when exactly one field has that
    /// name; nil when none or several do (``contains(name:)`` tells which). One pass, no array.
    public func singleValue(for name: String) -> String? {
        ASCII.withBytes(name) { wanted in
            var found: String? = nil
            for field in fields where Self.named(field, wanted) {
                if found != nil { return nil }
                found = field.value
            }
            return found
        }
    }

    /// Whether a field named `name` (case-insensitive) is present.
    public func contains(name: String) -> Bool {
        ASCII.withBytes(name) { wanted in fields.contains { Self.named($0, wanted) } }
    }

    /// Whether any field named `name` holds a comma-separated token list containing `token`
    /// (case-insensitive, surrounding whitespace ignored), e.g. `containsToken("upgrade", in: "Connection")`.
    public func containsToken(_ token: String, in name: String) -> Bool {
        ASCII.withBytes(name) { wanted in
            ASCII.withBytes(token) { tokenBytes in
                for field in fields where Self.named(field, wanted) {
                    let found = ASCII.withBytes(field.value) { bytes -> Bool in
                        var hit = false
                        ASCII.forEachListElement(bytes, 0..<bytes.count) { element in
                            hit = ASCII.equalsIgnoringCase(UnsafeBufferPointer(rebasing: bytes[element]), tokenBytes)
                            return !hit
                        }
                        return hit
                    }
                    if found { return true }
                }
                return false
            }
        }
    }

    /// Whether `field`'s name is `wanted` (case-insensitive). The lengths first: most fields
    /// are told apart by one compare, without touching their bytes.
    @inline(__always)
    private static func named(_ field: Field, _ wanted: UnsafeBufferPointer<UInt8>) -> Bool {
        field.name.utf8.count == wanted.count && ASCII.withBytes(field.name) { ASCII.equalsIgnoringCase($0, wanted) }
    }

    /// Number of fields, duplicates included.
    public var count: Int { fields.count }

    /// Iterates `(name, value)` pairs in order.
    public struct Iterator: IteratorProtocol {
        private var base: IndexingIterator<[Field]>
        fileprivate init(_ fields: [Field]) { base = fields.makeIterator() }
        /// The next `(name, value)` pair, or nil at the end.
        public mutating func next() -> (name: String, value: String)? {
            guard let field = base.next() else { return nil }
            return (field.name, field.value)
        }
    }

    /// Returns an iterator over `(name, value)` pairs in order.
    public func makeIterator() -> Iterator { Iterator(fields) }
}
