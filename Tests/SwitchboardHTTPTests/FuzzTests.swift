import Testing
@testable import SwitchboardHTTP

/// SplitMix64: tiny, fast and deterministic, so failures reproduce from the iteration number.
private struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
}

@Suite struct FuzzTests {
    // Small limits so that mutated inputs actually reach every limit.
    private static let limits = HTTPLimits(maxRequestLineBytes: 128, maxHeaderBytes: 384, maxHeaderCount: 8, maxBodyBytes: 256, maxChunkLineBytes: 24)

    private static let seeds: [[UInt8]] = [
        "GET /a/b?c=d HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwiki\r\n5\r\npedia\r\n0\r\nT: v\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
        "\r\nOPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n",
    ].map { Array($0.utf8) }

    private static let tokens: [[UInt8]] = [
        "\r\n", "\r", "\n", " ", "\t", ":", ";", ",", "0", "f", "ffffffff", "HTTP/1.1", "HTTP/2.0",
        "Content-Length: 3\r\n", "Transfer-Encoding: chunked\r\n", "Host: x\r\n", " folded\r\n", "\r\n\r\n",
        "\u{0}", "\u{7F}", "\u{FF}",
    ].map { Array($0.utf8) }

    private func mutate(_ input: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var out = input
        for _ in 0..<(1 + rng.below(4)) {
            switch rng.below(6) {
            case 0 where !out.isEmpty: // flip a byte
                out[rng.below(out.count)] = UInt8(truncatingIfNeeded: rng.next())
            case 1 where !out.isEmpty: // delete a range
                let start = rng.below(out.count)
                out.removeSubrange(start..<min(out.count, start + 1 + rng.below(8)))
            case 2: // insert a token
                out.insert(contentsOf: Self.tokens[rng.below(Self.tokens.count)], at: rng.below(out.count + 1))
            case 3 where !out.isEmpty: // duplicate a range (repeats headers, grows lines)
                let start = rng.below(out.count)
                let slice = out[start..<min(out.count, start + 1 + rng.below(64))]
                out.insert(contentsOf: slice, at: rng.below(out.count + 1))
            case 4: // append another seed (pipelining)
                out += Self.seeds[rng.below(Self.seeds.count)]
            default: // insert random bytes
                for _ in 0..<(1 + rng.below(16)) {
                    out.insert(UInt8(truncatingIfNeeded: rng.next()), at: rng.below(out.count + 1))
                }
            }
        }
        return out
    }

    /// Feeds `input` in the given chunk sizes; checks the invariants after every call.
    private func run(_ input: [UInt8], chunks: [Int]) -> (events: [Event], ok: Bool) {
        var parser = HTTPRequestParser(limits: Self.limits)
        var events: [Event] = []
        var ok = true
        let bound = Self.limits.maxHeaderBytes + Self.limits.maxBodyBytes
        input.withUnsafeBytes { raw in
            var position = 0
            var chunkIndex = 0
            while position < raw.count {
                let end = min(raw.count, position + chunks[chunkIndex % chunks.count])
                chunkIndex += 1
                var offset = position
                while offset < end {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[offset..<end])
                    let (consumed, result) = parser.parse(slice)
                    if consumed < 0 || consumed > slice.count { ok = false }
                    if parser.bufferedByteCount > bound { ok = false }
                    offset += consumed
                    switch result {
                    case .needMore, .expectContinue:
                        if offset != end { ok = false }
                    case .request(let r):
                        events.append(.request(RequestSummary(r)))
                        if consumed == 0 && r.body.isEmpty && offset == position { ok = false }
                    case .error(let e):
                        events.append(.error(e))
                        return
                    }
                    if case .error = result { return }
                }
                position = end
            }
        }
        return (events, ok)
    }

    @Test func mutatedAndRandomInputs() {
        var rng = SplitMix64(state: 0x5EED_CAFE)
        let corpus = Self.seeds + badInputs.map(\.raw).filter { $0.count < 600 }
        var requests = 0
        var errors = 0
        for iteration in 0..<20_000 {
            let input: [UInt8]
            if iteration % 10 == 0 {
                input = (0..<rng.below(300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                // Half valid seeds (deep paths), half rejected rows (edges of each rule).
                let base = rng.below(2) == 0 ? Self.seeds[rng.below(Self.seeds.count)] : corpus[rng.below(corpus.count)]
                input = mutate(base, &rng)
            }
            let whole = run(input, chunks: [input.count + 1])
            let chunks = (0..<4).map { _ in 1 + rng.below(24) }
            let split = run(input, chunks: chunks)
            if !whole.ok || !split.ok {
                Issue.record("invariant broken at iteration \(iteration): \(input)")
                return
            }
            // Splitting the stream differently must never change what is parsed.
            if whole.events != split.events {
                Issue.record("split-dependent result at iteration \(iteration) chunks \(chunks): \(input)\n\(whole.events)\n\(split.events)")
                return
            }
            for e in whole.events {
                if case .error = e { errors += 1 } else { requests += 1 }
            }
        }
        // The fuzzer must exercise both outcomes to mean anything.
        #expect(requests > 2_000, "requests: \(requests)")
        #expect(errors > 5_000, "errors: \(errors)")
    }
    /// The streamed path (`parseEvents`, every body streamed) must parse exactly what the
    /// buffered one does: the same requests with the same bodies, the same errors, for any split.
    @Test func streamedPathAgreesWithBuffered() {
        var rng = SplitMix64(state: 0x57EA_4ED0)
        let corpus = Self.seeds + badInputs.map(\.raw).filter { $0.count < 600 }
        var bodies = 0
        for iteration in 0..<20_000 {
            let base = rng.below(2) == 0 ? Self.seeds[rng.below(Self.seeds.count)] : corpus[rng.below(corpus.count)]
            let input = mutate(base, &rng)
            let buffered = run(input, chunks: [input.count + 1]).events
            let step = rng.below(3) == 0 ? input.count + 1 : 1 + rng.below(24)
            // A head followed by its body is the buffered path's request; a head whose body
            // never completed (cut off, or an error) is nothing there.
            var streamed: [Event] = []
            var head: RequestSummary? = nil
            for event in streamEvents(input, step: step, limits: Self.limits) {
                switch event {
                case .head(let h): head = h
                case .body(let b):
                    guard var h = head else { Issue.record("a body without a head at iteration \(iteration)"); return }
                    h.body = b
                    streamed.append(.request(h))
                    head = nil
                    bodies += 1
                case .request(let r): streamed.append(.request(r))
                case .error(let e): streamed.append(.error(e))
                }
            }
            if streamed != buffered {
                Issue.record("streamed differs at iteration \(iteration), step \(step): \(input)\n\(buffered)\n\(streamed)")
                return
            }
        }
        #expect(bodies > 400, "streamed bodies: \(bodies)")
    }

    /// The broker's bare path (`parseEvents(_:bare:)`: a built-in route's request without its
    /// Strings and header list) must report exactly the requests the general path would
    /// route there, with the same facts, and everything else exactly as the general path does,
    /// for any split of the stream.
    @Test func bareRoutesAgreeWithBuilt() {
        var rng = SplitMix64(state: 0xBA8E_0001)
        let paths = ["/health", "/metrics", "/"]
        let routes = HTTPBareRoutes(paths: paths)
        let bareSeeds: [[UInt8]] = [
            "GET /health HTTP/1.1\r\nHost: h\r\n\r\n",
            "HEAD /metrics?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "GET http://h HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            "GET HTTPS://h/health?q HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
        ].map { Array($0.utf8) }
        let corpus = Self.seeds + bareSeeds + badInputs.map(\.raw).filter { $0.count < 600 }
        var bare = 0
        var built = 0
        for iteration in 0..<20_000 {
            let base = rng.below(2) == 0 ? bareSeeds[rng.below(bareSeeds.count)] : corpus[rng.below(corpus.count)]
            let input = rng.below(4) == 0 ? base : mutate(base, &rng)
            // What the general path routes to a bare route, written from the public request.
            let expected = run(input, chunks: [input.count + 1]).events.map { event -> BareEvent in
                switch event {
                case .request(let r):
                    if r.method == "GET" || r.method == "HEAD", !r.isUpgrade, r.body.isEmpty,
                       !r.headers.contains(name: "Transfer-Encoding"),
                       let route = paths.firstIndex(where: { Array($0.utf8) == Array(r.path.utf8) }) {
                        return .bare(HTTPBareRequest(route: route, headOnly: r.method == "HEAD", version: r.version, keepAlive: r.keepAlive))
                    }
                    return .request(r)
                case .error(let e): return .error(e)
                case .expectContinue: return .expectContinue
                }
            }.filter { $0 != .expectContinue }
            let step = rng.below(3) == 0 ? input.count + 1 : 1 + rng.below(24)
            let got = bareEvents(input, step: step, routes: routes)
            if got != expected {
                Issue.record("bare path differs at iteration \(iteration), step \(step): \(input)\n\(expected)\n\(got)")
                return
            }
            for e in got {
                if case .bare = e { bare += 1 } else if case .request = e { built += 1 }
            }
        }
        #expect(bare > 2_000, "bare: \(bare)")
        #expect(built > 2_000, "built: \(built)")
    }

    private enum BareEvent: Equatable {
        case request(RequestSummary)
        case bare(HTTPBareRequest)
        case error(HTTPParseError)
        case expectContinue
    }

    /// Feeds `input` `step` bytes per call to `parseEvents(_:bare:)`, bodies buffered (heads
    /// and 100-continue skipped), as the broker's driver does.
    private func bareEvents(_ input: [UInt8], step: Int, routes: HTTPBareRoutes) -> [BareEvent] {
        var parser = HTTPRequestParser(limits: Self.limits)
        var events: [BareEvent] = []
        var start = 0
        while start < input.count || parser.hasEventPending {
            let end = min(input.count, start + step)
            let piece = Array(input[start..<end])
            var stop = false
            piece.withUnsafeBytes { raw in
                var offset = 0
                repeat {
                    let (consumed, event) = parser.parseEvents(UnsafeRawBufferPointer(rebasing: raw[offset...]), bare: routes)
                    offset += consumed
                    switch event {
                    case .bare(let b):
                        events.append(.bare(b))
                        if parser.hasPartialRequest { Issue.record("a bare request left the parser mid-request") }
                    case .event(.request(let r)): events.append(.request(RequestSummary(r)))
                    case .event(.error(let e)): events.append(.error(e)); stop = true
                    case .event(.needMore), .event(.expectContinue), .event(.head): break
                    case .event(.bodyPart), .event(.bodyEnd): Issue.record("a body streamed without streamBody()"); stop = true
                    }
                } while !stop && (offset < raw.count || parser.hasEventPending)
            }
            if stop { break }
            start = end
        }
        return events
    }
}
