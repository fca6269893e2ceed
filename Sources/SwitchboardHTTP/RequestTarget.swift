// Splitting a request-target into path and query, shared by the parser (on the head buffer)
// and by HTTPRequest.init (on a String), so both agree on absolute-form handling.

enum RequestTarget {
    /// Ranges of path and query within `target`.
    ///
    /// Origin-form `/p?q` gives `/p` and `q`. Absolute-form `scheme://authority/p?q` gives `/p` and `q`;
    /// a missing path means `/`, reported as an empty range (the caller substitutes "/").
    /// `*` gives `*` and no query.
    static func split(_ bytes: UnsafeBufferPointer<UInt8>, _ target: Range<Int>) -> (path: Range<Int>, query: Range<Int>?) {
        var pathStart = target.lowerBound
        if let authorityStart = absoluteFormAuthorityStart(bytes, target) {
            // The path starts at the first '/' after the authority; '?' may end an empty path.
            var i = authorityStart
            while i < target.upperBound, bytes[i] != ASCII.slash, bytes[i] != ASCII.question { i &+= 1 }
            pathStart = i
        }
        var i = pathStart
        while i < target.upperBound {
            if bytes[i] == ASCII.question {
                return (pathStart..<i, (i &+ 1)..<target.upperBound)
            }
            i &+= 1
        }
        return (pathStart..<target.upperBound, nil)
    }

    /// Index just after `://` when `target` is absolute-form with an http or https scheme.
    static func absoluteFormAuthorityStart(_ bytes: UnsafeBufferPointer<UInt8>, _ target: Range<Int>) -> Int? {
        let lo = target.lowerBound
        if ASCII.equalsLowercased(bytes, lo..<min(lo &+ 7, target.upperBound), "http://") { return lo &+ 7 }
        if ASCII.equalsLowercased(bytes, lo..<min(lo &+ 8, target.upperBound), "https://") { return lo &+ 8 }
        return nil
    }
}
