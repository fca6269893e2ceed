import SwitchboardHTTP

/// The routes the broker answers itself, before the handler: health and Prometheus metrics.
struct BuiltinRoutes {
    let healthPath: String
    let metricsPath: String
    let renderMetrics: @Sendable () -> String

    /// The health route's answer, the same for every request: made once, not per request.
    static let health = WireResponse(status: 200, headers: ["Content-Type": "application/json"], body: #"{"status":"ok"}"#)

    /// The built-in answer to `request`, or nil when it is the handler's.
    func response(for request: ParsedRequest) -> WireResponse? {
        guard request.method == "GET" || request.method == "HEAD" else { return nil }
        if !healthPath.isEmpty && request.path == healthPath {
            return Self.health
        }
        if !metricsPath.isEmpty && request.path == metricsPath {
            return WireResponse(status: 200, headers: ["Content-Type": "text/plain; version=0.0.4"], body: renderMetrics())
        }
        return nil
    }
}
