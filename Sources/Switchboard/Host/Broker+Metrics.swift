import SwitchboardIO

extension Broker {
    /// Every counter and gauge of the broker, read now: per shard (I/O and protocol counters,
    /// dimension `shard`), the acceptor's, and `additionalMetricSamples` (a protocol's).
    ///
    /// Any thread. Each value is one relaxed load of a counter its shard writes without locks,
    /// so a list is not one consistent snapshot across counters; each value is exact at the
    /// instant it was read.
    public func metricSamples() -> [MetricSample] {
        var out: [MetricSample] = []
        func add(_ counters: [SwitchboardIO.Counter], shard: Int?) {
            let dimensions = shard.map { [MetricSample.Dimension("shard", String($0))] } ?? []
            for c in counters {
                out.append(MetricSample(name: c.name, help: c.help, dimensions: dimensions, value: c.value))
            }
        }
        for s in group.shards {
            add(s.metrics.all, shard: s.index)
            if group.tlsContexts != nil { add(s.tlsMetrics.all, shard: s.index) }
            add(protocolMetrics[s.index].all, shard: s.index)
            if configuration.cluster.engine != .memory { add(clusterMetrics[s.index].all, shard: s.index) }
        }
        if let a = group.acceptorMetrics { add([a.accepted, a.acceptErrors, a.handoffFailures], shard: nil) }
        if let t = group.tlsContexts { add([t.reloads, t.reloadFailures], shard: nil) }
        // Process-wide: malloc's arenas are shared by every shard (and by the application).
        // Cached: this may run on a shard thread for any client that asks for /metrics.
        let heap = mallocStatistics.statistics(nowNanoseconds: monotonicNanoseconds())
        out.append(MetricSample(name: "switchboard_malloc_in_use_bytes", help: "Bytes the process's malloc has allocated (arenas and mmapped chunks), glibc's mallinfo2", value: heap.inUseBytes))
        out.append(MetricSample(name: "switchboard_malloc_free_bytes", help: "Free bytes malloc holds in its arenas instead of returning them to the kernel (bounded at each arena's top by malloc_trim_threshold_bytes), glibc's mallinfo2", value: heap.freeBytes))
        if let extra = additionalMetricSamples { out += extra() }
        return out
    }
}
