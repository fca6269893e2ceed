/// The broadcaster template: the fan-out scenario with the broadcaster protocol's messages
/// filled in, so a user gives a deployment, a channel and its credentials instead of the
/// `--subscribe-template`/`--setup-replies`/`--publish-http` lines of
/// Benchmarks/scripts/broadcaster-bench.sh. Each subscriber sends `auth` (when `--token` is
/// given) and `subscribe`, and counts as subscribed once every answer came; the publisher POSTs
/// `{"channel","event","payload"}` to `--publish-path` with `Authorization: Bearer API_KEY`
/// (every answer must be 200) or sends `auth` + WebSocket `publish` calls. The fan-out
/// scenario verifies every delivery per subscriber (count, order, gaps).
public func broadcasterFanoutOptions(_ t: TemplateOptions) -> BenchOptions {
    var o = BenchOptions(scenario: .fanout, url: t.url)
    o.subscribers = t.subscribers
    o.publishers = 1
    o.channels = 1
    o.size = t.size
    o.window = t.window
    o.durationNanos = t.durationNanos
    o.messages = t.messages
    o.warmupNanos = t.warmupNanos
    o.drainNanos = t.drainNanos
    o.connectTimeoutNanos = t.connectTimeoutNanos
    o.serverPID = t.serverPID
    o.quiet = t.quiet
    o.allowRemote = t.allowRemote
    o.headers = t.headers
    o.maxFailedConnections = t.maxFailedConnections
    if let cpu = t.cpu { o.cpus = [cpu] }
    let channel = jsonQuoted(t.channel)
    var subscribe: [String] = []
    if let token = t.token { subscribe.append("{\"id\":1,\"method\":\"auth\",\"params\":{\"token\":\(jsonQuoted(token))}}") }
    subscribe.append("{\"id\":2,\"method\":\"subscribe\",\"params\":{\"channel\":\(channel)}}")
    o.subscribeTemplates = subscribe
    o.setupReplies = subscribe.count
    if t.publishOverREST {
        o.publishHTTPPath = t.publishPath
        if let key = t.apiKey { o.publishHTTPHeaders = ["Authorization: Bearer \(key)"] }
        o.publishTemplate = "{\"channel\":\(channel),\"event\":\"e\",\"payload\":\"{{payload}}\"}"
    } else {
        if let token = t.publishToken {
            o.publisherSetupTemplates = ["{\"id\":1,\"method\":\"auth\",\"params\":{\"token\":\(jsonQuoted(token))}}"]
        }
        o.publishTemplate = "{\"id\":2,\"method\":\"publish\",\"params\":{\"channel\":\(channel),\"event\":\"e\",\"payload\":\"{{payload}}\"}}"
    }
    return o
}
