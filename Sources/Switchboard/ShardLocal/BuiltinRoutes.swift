import SwitchboardHTTP

/// The routes the broker answers itself, before the handler: health and Prometheus metrics.
struct BuiltinRoutes {
    let healthPath: String
    let metricsPath: String
    let renderMetrics: @Sendable () -> String

    /// The built-in answer to `request`, or nil when it is the handler's.
    func response(for request: ParsedRequest) -> WireResponse? {
        guard request.method == "GET" || request.method == "HEAD" else { return nil }
        if !healthPath.isEmpty && request.path == healthPath {
            return WireResponse(status: 200, headers: ["Content-Type": "application/json"], body: #"{"status":"ok"}"#)
        }
        if !metricsPath.isEmpty && request.path == metricsPath {
            return WireResponse(status: 200, headers: ["Content-Type": "text/plain; version=0.0.4"], body: renderMetrics())
        }
        return nil
    }
}
