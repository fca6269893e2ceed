// Syntax checks for the line-shaped parts of a request (RFC 9112 §3, §5, §7.1).
// Pure functions over the parser's buffer; the parser applies their results.

struct RequestLine {
    var method: Range<Int>
    var target: Range<Int>
    var path: Range<Int>
    var query: Range<Int>?
    var version: HTTPVersion
}

enum LineSyntax {
    /// Methods longer than this are not real methods; rejecting early bounds the work.
    static let maxMethodBytes = 32
    /// Hex digits in a chunk size: 16 covers every size a 64-bit length can hold.
    static let maxChunkSizeDigits = 16
    /// `HTTP/1.1` and `HTTP/1.0` as little-endian words (the first byte lowest).
    static let http1_1Bytes: UInt64 = 0x312E_312F_5054_5448
    static let http1_0Bytes: UInt64 = 0x302E_312F_5054_5448

    /// `method SP request-target SP HTTP-version`, single spaces only.
    static func requestLine(_ b: UnsafeBufferPointer<UInt8>, _ line: Range<Int>) -> Result<RequestLine, HTTPParseError> {
        let end = line.upperBound
        var i = line.lowerBound
        while i < end, b[i] != ASCII.sp {
            guard ASCII.isTChar(b[i]) else { return .failure(.badRequest("invalid method")) }
            i &+= 1
        }
        let method = line.lowerBound..<i
        guard !method.isEmpty, method.count <= maxMethodBytes else { return .failure(.badRequest("invalid method length")) }
        guard i < end else { return .failure(.badRequest("missing request-target")) }
        i &+= 1
        let targetStart = i
        // The first `?`, found on the way: an origin-form target splits there.
        var question: Int? = nil
        while i < end, b[i] != ASCII.sp {
            let c = b[i]
            guard c > 0x20, c != 0x7F else { return .failure(.badRequest("invalid byte in request-target")) }
            if c == ASCII.question && question == nil { question = i }
            i &+= 1
        }
        let target = targetStart..<i
        guard !target.isEmpty else { return .failure(.badRequest("empty request-target")) }
        guard i < end else { return .failure(.badRequest("missing version")) }
        let version: HTTPVersion
        switch self.version(b, (i &+ 1)..<end) {
        case .success(let v): version = v
        case .failure(let e): return .failure(e)
        }

        let first = b[target.lowerBound]
        if first == ASCII.slash {
            // origin-form: `RequestTarget.split`'s answer (no authority; the path ends at the
            // first `?`), without a second pass over the target.
            let path = question.map { target.lowerBound..<$0 } ?? target
            let query = question.map { ($0 &+ 1)..<target.upperBound }
            return .success(RequestLine(method: method, target: target, path: path, query: query, version: version))
        } else if first == ASCII.star, target.count == 1 {
            // Methods are case-sensitive, so this is an exact comparison.
            guard ASCII.equalsExactly(b, method, "OPTIONS") else { return .failure(.badRequest("asterisk-form only for OPTIONS")) }
        } else if let authority = RequestTarget.absoluteFormAuthorityStart(b, target) {
            guard authority < target.upperBound, b[authority] != ASCII.slash, b[authority] != ASCII.question
            else { return .failure(.badRequest("absolute-form without authority")) }
        } else {
            return .failure(.badRequest("invalid request-target form"))
        }
        let (path, query) = RequestTarget.split(b, target)
        return .success(RequestLine(method: method, target: target, path: path, query: query, version: version))
    }

    /// `HTTP/1.1` and `HTTP/1.0` are accepted; other `HTTP/d.d` are unsupported (505); anything else is malformed.
    static func version(_ b: UnsafeBufferPointer<UInt8>, _ r: Range<Int>) -> Result<HTTPVersion, HTTPParseError> {
        let s = r.lowerBound
        if r.count == 8 {
            // The two accepted versions, their eight bytes compared at once (the checks below
            // give the same answers for them).
            let word = UInt64(littleEndian: UnsafeRawPointer(b.baseAddress! + s).loadUnaligned(as: UInt64.self))
            if word == http1_1Bytes { return .success(.http1_1) }
            if word == http1_0Bytes { return .success(.http1_0) }
        }
        guard r.count == 8,
              b[s] == 0x48, b[s &+ 1] == 0x54, b[s &+ 2] == 0x54, b[s &+ 3] == 0x50, b[s &+ 4] == ASCII.slash,
              b[s &+ 6] == 0x2E
        else { return .failure(.badRequest("invalid version")) }
        let major = b[s &+ 5] &- 0x30
        let minor = b[s &+ 7] &- 0x30
        guard major <= 9, minor <= 9 else { return .failure(.badRequest("invalid version")) }
        switch (major, minor) {
        case (1, 1): return .success(.http1_1)
        case (1, 0): return .success(.http1_0)
        default: return .failure(.versionNotSupported)
        }
    }

    /// `field-name ":" OWS field-value OWS`; returns the name and the trimmed value.
    static func field(_ b: UnsafeBufferPointer<UInt8>, _ line: Range<Int>) -> Result<FieldRange, HTTPParseError> {
        let end = line.upperBound
        // A line starting with whitespace is obs-fold; unfolding it is a known smuggling vector.
        guard !ASCII.isOWS(b[line.lowerBound]) else { return .failure(.badRequest("obsolete line folding")) }
        var i = line.lowerBound
        while i < end, b[i] != ASCII.colon {
            guard ASCII.isTChar(b[i]) else { return .failure(.badRequest("invalid field name")) }
            i &+= 1
        }
        guard i < end else { return .failure(.badRequest("missing colon in field")) }
        let name = line.lowerBound..<i
        guard !name.isEmpty else { return .failure(.badRequest("empty field name")) }
        let raw = (i &+ 1)..<end
        guard ASCII.allFieldValueBytes(b, raw) else { return .failure(.badRequest("invalid byte in field value")) }
        return .success(FieldRange(name: name, value: ASCII.trimOWS(b, raw)))
    }

    /// `chunk-size [ BWS ";" chunk-ext ]`; extensions are ignored but must not contain control bytes.
    static func chunkSize(_ b: UnsafeBufferPointer<UInt8>, _ line: Range<Int>) -> Result<UInt64, HTTPParseError> {
        let end = line.upperBound
        var i = line.lowerBound
        var size: UInt64 = 0
        while i < end, let digit = ASCII.hexValue(b[i]) {
            guard i &- line.lowerBound < maxChunkSizeDigits else { return .failure(.badRequest("chunk size too long")) }
            size = size << 4 | digit
            i &+= 1
        }
        guard i > line.lowerBound else { return .failure(.badRequest("missing chunk size")) }
        guard i < end else { return .success(size) }
        while i < end, ASCII.isOWS(b[i]) { i &+= 1 }
        guard i < end, b[i] == ASCII.semicolon else { return .failure(.badRequest("invalid chunk size line")) }
        i &+= 1
        while i < end {
            guard ASCII.isFieldValueByte(b[i]) else { return .failure(.badRequest("invalid byte in chunk extension")) }
            i &+= 1
        }
        return .success(size)
    }
}
