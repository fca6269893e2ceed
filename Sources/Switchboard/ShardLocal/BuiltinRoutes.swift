import SwitchboardHTTP

/// The routes the broker answers itself, before the handler: health and Prometheus metrics.
struct BuiltinRoutes {
    /// In precedence order (a request for a path configured for both is health's); the raw
    /// value is the route's index in `bare`.
    enum Route: Int, CaseIterable {
        case health
        case metrics
    }

    let healthPath: String
    let metricsPath: String
    let renderMetrics: @Sendable () -> String
    /// The same routes for the parser: their requests come out bare (no Strings, no header
    /// list), with the route found as `route(for:)` finds it.
    let bare: HTTPBareRoutes

    init(healthPath: String, metricsPath: String, renderMetrics: @escaping @Sendable () -> String) {
        self.healthPath = healthPath
        self.metricsPath = metricsPath
        self.renderMetrics = renderMetrics
        bare = HTTPBareRoutes(paths: Route.allCases.map { route in
            switch route {
            case .health: return healthPath
            case .metrics: return metricsPath
            }
        })
    }

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
