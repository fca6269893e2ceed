import Switchboard
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

/// Counters of the RPC protocol, shared by every shard (relaxed atomics). `samples` gives them
/// to the broker (`broker.additionalMetricSamples`), which prints them in `/metrics` and reports
/// them to swift-metrics; `prometheusText` is the same values as text.
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
    public let directoryWriteFailures = RPCCounter("switchboard_rpc_directory_write_failures_total",
                                                   "Ids whose cluster directory write Redis did not answer (retried after clusterDirectoryRetryMilliseconds)")
    public let directoryRefreshes = RPCCounter("switchboard_rpc_directory_refreshes_total", "Rounds, per shard, that wrote every owned id to the cluster directory again (clusterDirectoryRefreshMilliseconds, or after this process was declared dead)")
    public let staleDirectoryIds = RPCCounter("switchboard_rpc_directory_stale_ids_removed_total",
                                              "Directory ids this node's earlier processes (or incarnations) wrote, removed when shard 0 reached Redis")
    public let directoryCleanUpsResumed = RPCCounter("switchboard_rpc_directory_cleanups_resumed_total",
                                                     "Directory clean-ups of a dead incarnation that Redis stopped answering (or refused for a full backlog), resumed from their last step when shard 0 reached Redis again or its backlog drained")
    /// Malformed messages, one counter per reason (`data.reason` on the wire).
    public let malformed: [RPCMalformedReason: RPCCounter] = Dictionary(uniqueKeysWithValues: RPCMalformedReason.allCases.map {
        ($0, RPCCounter("switchboard_rpc_malformed_total", "Malformed messages answered with a protocol error, by reason"))
    })

    public init() {}

    public var all: [RPCCounter] {
        [nodes, requestsFromClients, requestsToClients, nodeRequests, timeouts, unhandled, disconnectedFailures,
         overloaded, strayAnswers, pingTimeouts, duplicateIds, applicationMessages, lostAnswers, directoryWriteFailures,
         directoryRefreshes, staleDirectoryIds, directoryCleanUpsResumed]
    }

    /// Every counter, read now, process-wide (no shard dimension); the malformed counters carry
    /// a `reason` dimension. Any thread.
    public var samples: [MetricSample] {
        var out = all.map { MetricSample(name: $0.name, help: $0.help, value: $0.value) }
        for r in RPCMalformedReason.allCases {
            let c = malformed[r]!
            out.append(MetricSample(name: c.name, help: c.help, kind: .counter,
                                    dimensions: [MetricSample.Dimension("reason", r.rawValue)], value: c.value))
        }
        return out
    }

    /// Prometheus text exposition of `samples` (for hosts that mount text only).
    public var prometheusText: String { PrometheusText.render(samples) }
}
