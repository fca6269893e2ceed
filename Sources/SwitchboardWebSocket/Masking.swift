#if !_endian(little)
#error("Masking's word and vector loops take the mask bytes in memory order as a little-endian number")
#endif

/// XOR masking (RFC 6455 §5.3), 32 bytes per step on long payloads, eight on their tails: the server role unmasks with it, the
/// client role masks what it sends, and the load generator does both. The operation is its own
/// inverse, so one function serves every direction.
@usableFromInline package enum Masking {
    /// Builds the mask as a number whose low byte is the first mask byte on the wire.
    @inlinable @inline(__always)
    package static func key(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8) -> UInt32 {
        UInt32(b0) | UInt32(b1) << 8 | UInt32(b2) << 16 | UInt32(b3) << 24
    }

    /// Masks (or unmasks) `count` bytes from `source` into `destination` (which may be the same memory).
    /// `phase` is how many payload bytes of this frame came before, modulo 4; returns the next phase.
    @inlinable @inline(__always)
    package static func apply(
        key: UInt32, phase: Int, source: UnsafeRawPointer, destination: UnsafeMutableRawPointer, count: Int
    ) -> Int {
        // Rotate so that the key's low byte lines up with the first byte we process.
        let shift = UInt32(phase & 3) &* 8
        let rotated = shift == 0 ? key : (key >> shift) | (key << (32 &- shift))
        let wide = UInt64(rotated) | UInt64(rotated) << 32
        var index = applyBulk(wide: wide, source: source, destination: destination, count: count).done
        while index &+ 8 <= count {
            let word = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            destination.storeBytes(of: (word ^ wide).littleEndian, toByteOffset: index, as: UInt64.self)
            index &+= 8
        }
        var keyBytes = rotated
        while index < count {
            let byte = source.load(fromByteOffset: index, as: UInt8.self) ^ UInt8(truncatingIfNeeded: keyBytes)
            destination.storeBytes(of: byte, toByteOffset: index, as: UInt8.self)
            keyBytes = (keyBytes >> 8) | (keyBytes << 24)
            index &+= 1
        }
        return (phase &+ count) & 3
    }

    /// ``apply(key:phase:source:destination:count:)`` from phase 0 that also tells whether every
    /// byte it wrote is ASCII (below 0x80): the high bits of the words it writes are gathered
    /// on the way, so a text message's ASCII payload (the common one) needs no separate UTF-8
    /// pass over it (issue 16 item 3). `key` 0 copies. `destination` must not overlap `source`:
    /// a count of at least 8 ends with one word over the last 8 bytes, partly written already,
    /// read again from `source` (the same bytes again, not a loop over up to 7).
    @inlinable @inline(__always)
    package static func applyReportingASCII(
        key: UInt32, source: UnsafeRawPointer, destination: UnsafeMutableRawPointer, count: Int
    ) -> Bool {
        assert(destination + count <= source || source + count <= destination, "unmasking in place")
        // Under a word: byte by byte, the bits gathered on the way.
        guard count >= 8 else {
            return applyGatheringBits(key: key, phase: 0, source: source, destination: destination, count: count).bits & 0x80 == 0
        }
        let wide = UInt64(key) | UInt64(key) << 32
        let (bulk, vector) = applyBulk(wide: wide, source: source, destination: destination, count: count)
        var highBits = vector[0] | vector[1]
        var index = bulk
        while index &+ 8 <= count {
            let word = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: index, as: UInt64.self)) ^ wide
            destination.storeBytes(of: word.littleEndian, toByteOffset: index, as: UInt64.self)
            highBits |= word
            index &+= 8
        }
        if index < count {
            // The last 8 bytes as one word, the key rotated to their phase.
            let start = count &- 8
            let shift = UInt32(start & 3) &* 8
            let rotated = shift == 0 ? key : (key >> shift) | (key << (32 &- shift))
            let word = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: start, as: UInt64.self))
                ^ (UInt64(rotated) | UInt64(rotated) << 32)
            destination.storeBytes(of: word.littleEndian, toByteOffset: start, as: UInt64.self)
            highBits |= word
        }
        return highBits & 0x8080_8080_8080_8080 == 0
    }

    /// The bulk of a long payload, 32 bytes a step as two 16-byte vectors (SSE2, the x86-64
    /// baseline; NEON on arm64): unmasks `source[0..<n]` into `destination` for the largest
    /// multiple of 32 `n` within `count`, with `wide` the key rotated to the first byte's phase
    /// and repeated (a multiple of 4 bytes keeps it in phase), and ORs every byte written into
    /// the returned vector. Where the words-at-a-time loop did 16 bytes in ~8 instructions, this
    /// does 32 in ~9: a 64 KiB message assembled from reads took 3.7 µs to unmask (perf, epoll).
    /// The lanes are the bytes in memory order on a little-endian machine, which every target
    /// of this package is (checked at the top of this file).
    @inlinable @inline(__always) @usableFromInline
    static func applyBulk(
        wide: UInt64, source: UnsafeRawPointer, destination: UnsafeMutableRawPointer, count: Int
    ) -> (done: Int, gathered: SIMD2<UInt64>) {
        let key = SIMD2<UInt64>(repeating: wide)
        var gathered = SIMD2<UInt64>(repeating: 0)
        var index = 0
        while index &+ 32 <= count {
            let a = source.loadUnaligned(fromByteOffset: index, as: SIMD2<UInt64>.self) ^ key
            let b = source.loadUnaligned(fromByteOffset: index &+ 16, as: SIMD2<UInt64>.self) ^ key
            destination.storeBytes(of: a, toByteOffset: index, as: SIMD2<UInt64>.self)
            destination.storeBytes(of: b, toByteOffset: index &+ 16, as: SIMD2<UInt64>.self)
            gathered |= a | b
            index &+= 32
        }
        return (index, gathered)
    }

    /// ``apply(key:phase:source:destination:count:)`` that also gathers the bits of every byte
    /// it writes: the result's high bit is clear when all of them were ASCII. For a message
    /// assembled from pieces (`UnmaskedPayload`): the unmasked text's ASCII check comes with
    /// the one pass that writes it, so the UTF-8 validator is left for text that is not ASCII.
    /// `destination` may be `source` (in place) or apart from it, not partly over it.
    @inlinable @inline(__always)
    package static func applyGatheringBits(
        key: UInt32, phase: Int, source: UnsafeRawPointer, destination: UnsafeMutableRawPointer, count: Int
    ) -> (nextPhase: Int, bits: UInt8) {
        let shift = UInt32(phase & 3) &* 8
        let rotated = shift == 0 ? key : (key >> shift) | (key << (32 &- shift))
        let wide = UInt64(rotated) | UInt64(rotated) << 32
        let (bulk, vector) = applyBulk(wide: wide, source: source, destination: destination, count: count)
        var gathered = vector[0] | vector[1]
        var index = bulk
        while index &+ 8 <= count {
            let word = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: index, as: UInt64.self)) ^ wide
            destination.storeBytes(of: word.littleEndian, toByteOffset: index, as: UInt64.self)
            gathered |= word
            index &+= 8
        }
        var keyBytes = rotated
        var last: UInt8 = 0
        while index < count {
            let byte = source.load(fromByteOffset: index, as: UInt8.self) ^ UInt8(truncatingIfNeeded: keyBytes)
            destination.storeBytes(of: byte, toByteOffset: index, as: UInt8.self)
            last |= byte
            keyBytes = (keyBytes >> 8) | (keyBytes << 24)
            index &+= 1
        }
        // Fold the eight lanes into one byte.
        var folded = gathered | gathered >> 32
        folded |= folded >> 16
        folded |= folded >> 8
        return ((phase &+ count) & 3, UInt8(truncatingIfNeeded: folded) | last)
    }
}
