import Synchronization

/// One counter, readable from any thread.
public final class RPCCounter: Sendable {
    public let name: String
    public let help: String
    private let storage = Atomic<Int>(0)

    init(_ name: String, _ help: String) {
        self.name = name
        self.help = help
    }

    func increment(by n: Int = 1) { storage.wrappingAdd(n, ordering: .relaxed) }
    func decrement() { storage.wrappingSubtract(1, ordering: .relaxed) }
    public var value: Int { storage.load(ordering: .relaxed) }
}

/// Counters of the RPC protocol, shared by every shard (relaxed atomics). `prometheusText`
/// renders them for `/metrics` (`broker.additionalMetrics`).
public final class RPCMetrics: Sendable {
    public let nodes = RPCCounter("switchboard_rpc_nodes", "RPC nodes connected now (gauge)")
    public let requestsFromClients = RPCCounter("switchboard_rpc_client_requests_total", "Requests received from clients")
    public let requestsToClients = RPCCounter("switchboard_rpc_requests_to_clients_total", "Requests nodes sent to their clients")
    public let nodeRequests = RPCCounter("switchboard_rpc_node_requests_total", "Server and remote client requests sent between nodes")
    public let timeouts = RPCCounter("switchboard_rpc_timeouts_total", "Requests that timed out")
    public let unhandled = RPCCounter("switchboard_rpc_unhandled_total", "Requests with no handler for their name")
    public let disconnectedFailures = RPCCounter("switchboard_rpc_disconnected_total", "Requests failed because a node or client went away")
    public let overloaded = RPCCounter("switchboard_rpc_overloaded_total", "Requests refused because a bounded table was full (pending, in flight, inbox)")
    public let strayAnswers = RPCCounter("switchboard_rpc_stray_answers_total", "Responses, errors and pongs for unknown correlation ids (ignored)")
    public let pingTimeouts = RPCCounter("switchboard_rpc_ping_timeouts_total", "Nodes closed because a ping was not answered in time")
    public let duplicateIds = RPCCounter("switchboard_rpc_duplicate_node_ids_total", "Connections whose node id was already live (handled per policy)")
    public let applicationMessages = RPCCounter("switchboard_rpc_application_messages_total", "x- messages received")
    public let lostAnswers = RPCCounter("switchboard_rpc_lost_answers_total", "Answers that could not be delivered (shard inbox full or stopped)")
    /// Malformed messages, one counter per reason (`data.reason` on the wire).
    public let malformed: [RPCMalformedReason: RPCCounter] = Dictionary(uniqueKeysWithValues: RPCMalformedReason.allCases.map {
        ($0, RPCCounter("switchboard_rpc_malformed_total", "Malformed messages answered with a protocol error, by reason"))
    })

    public init() {}

    public var all: [RPCCounter] {
        [nodes, requestsFromClients, requestsToClients, nodeRequests, timeouts, unhandled, disconnectedFailures,
         overloaded, strayAnswers, pingTimeouts, duplicateIds, applicationMessages, lostAnswers]
    }

    /// Prometheus text exposition.
    public var prometheusText: String {
        var out = ""
        for c in all {
            out += "# HELP \(c.name) \(c.help)\n# TYPE \(c.name) \(c.name.hasSuffix("_total") ? "counter" : "gauge")\n\(c.name) \(c.value)\n"
        }
        out += "# HELP switchboard_rpc_malformed_total Malformed messages answered with a protocol error, by reason\n# TYPE switchboard_rpc_malformed_total counter\n"
        for r in RPCMalformedReason.allCases {
            out += "switchboard_rpc_malformed_total{reason=\"\(r.rawValue)\"} \(malformed[r]!.value)\n"
        }
        return out
    }
}
