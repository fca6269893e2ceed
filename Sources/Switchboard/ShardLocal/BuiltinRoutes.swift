import SwitchboardHTTP

/// The routes the broker answers itself, before the handler: health and Prometheus metrics.
struct BuiltinRoutes {
    enum Route {
        case health
        case metrics
    }

    let healthPath: String
    let metricsPath: String
    let renderMetrics: @Sendable () -> String

    /// The health route's answer: the same for every request (`ResponseCache` keeps it serialized).
    static let health = WireResponse(status: 200, headers: ["Content-Type": "application/json"], body: #"{"status":"ok"}"#)

    /// The built-in route `request` asks for, or nil when it is the handler's.
    func route(for request: ParsedRequest) -> Route? {
        guard request.method == "GET" || request.method == "HEAD" else { return nil }
        if !healthPath.isEmpty && request.path == healthPath { return .health }
        if !metricsPath.isEmpty && request.path == metricsPath { return .metrics }
        return nil
    }

    /// The answer of `route`.
    func response(_ route: Route) -> WireResponse {
        switch route {
        case .health: return Self.health
        case .metrics: return WireResponse(status: 200, headers: ["Content-Type": "text/plain; version=0.0.4"], body: renderMetrics())
        }
    }
}
