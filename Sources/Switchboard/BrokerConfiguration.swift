import SwitchboardIO
import SwitchboardHTTP
import SwitchboardCluster

/// Everything a broker is started with. Every size, count and time is a limit with a default.
///
/// The core's `ConfigurationSection`: a protocol's options are its own section (e.g.
/// `ConnectionBrokerOptions`), composed with this one by the executable.
public struct BrokerConfiguration: ConfigurationSection {
    /// Address to listen on (IPv4 or IPv6 literal).
    public var host: String = "0.0.0.0"
    /// TCP port; 0 picks an ephemeral port (see `Broker.port`).
    public var port: Int = 3004
    public var io = IOConfiguration()
    /// The TLS listener (keys `tls_*`); off until `tls_certificate` names a file. Copied into
    /// `io.tls` when the broker starts (unless `io.tls` was set directly).
    public var tls = TLSConfiguration()
    public var http = HTTPLimits()
    /// Path answering `200 {"status":"ok"}`; empty disables it.
    public var healthPath: String = "/health"
    /// Path serving Prometheus text metrics; empty disables it.
    public var metricsPath: String = "/metrics"
    /// How old the process-wide malloc gauges in the metrics may be: glibc's `mallinfo2` locks
    /// every arena while it walks them, so `/metrics` (answered on a shard thread) and the
    /// exporter run it at most once per this many milliseconds. 0 reads it every time.
    public var mallocStatisticsIntervalMilliseconds: Int = 1_000
    /// On SIGTERM/SIGINT: how long in-flight requests get before connections are cut.
    public var shutdownGraceMilliseconds: Int = 5_000
    /// Add a `Date` header to responses.
    public var sendDateHeader: Bool = true
    public var webSocket = WebSocketSettings()
    /// Channels one socket may be subscribed to.
    public var maxSubscriptionsPerSocket: Int = 4096
    /// Channels with local subscribers one shard may hold (and channel offsets it keeps as owner).
    public var maxChannelsPerShard: Int = 1_000_000
    /// Capacity of each cross-shard ring (one per ordered pair of shards, for publishes and for
    /// deliveries). A full publish ring refuses the publish; a full delivery ring makes the owner
    /// hold its deliveries and stop taking publishes until there is room.
    public var crossShardRingCapacity: Int = 16_384
    /// Deliveries an owner shard may hold while rings to other shards are full. A publish is
    /// ordered only if its fan-out (one delivery per other shard) fits: from another shard it
    /// waits in its ring, on the owner or through its inbox it is refused
    /// (`switchboard_publish_backlog_limit_hits_total`). Raised to `shards - 1` if lower.
    public var maxPendingDeliveries: Int = 262_144
    /// Whether a shard holds an owner's deliveries for one turn while publishes it forwarded
    /// to that owner are not taken yet, so they leave together (see
    /// `ChannelEngine.holdsDeliveries`): a closed-loop publisher on a shard that does not own
    /// its channel then writes its whole window per socket write, not half. `false` takes
    /// deliveries as they come.
    public var crossShardHoldDeliveries: Bool = true
    /// How long a channel's owner remembers its epoch and offset after its last publish; the
    /// next publish after that starts a new epoch (see `ChannelPosition`). 0 forgets at the
    /// next tick.
    public var channelOffsetRetentionMilliseconds: Int = 60_000
    /// How long a deferred HTTP response (`HTTPReply.deferred`) may take before the broker
    /// answers 504 in its place (`switchboard_http_deferred_timeouts_total`).
    public var deferredResponseTimeoutMilliseconds: Int = 30_000
    /// Responses one HTTP connection may owe at once (deferred ones, and ready ones waiting
    /// behind them for their turn). The request beyond gets 503 in its turn and the connection
    /// closes after it (`switchboard_http_pending_limit_hits_total`).
    public var maxPendingResponsesPerConnection: Int = 1024
    /// Bytes of one connection's streamed request bodies (``BodyDelivery/streamed``) that may
    /// wait for their consumer; at this many the shard stops reading the socket until the
    /// consumer took half (`switchboard_http_body_stream_pauses_total`).
    public var httpBodyStreamBufferBytes: Int = 262_144
    /// Several nodes as one broker (keys `cluster_*`, BrokerConfiguration+Cluster.swift).
    public var cluster = ClusterConfiguration()
    public init() {}

    /// A problem with the values, or nil.
    public func validate() -> String? {
        if port < 0 || port > 65_535 { return "port must be 0...65535" }
        if tls.isEnabled, let problem = tls.validate() { return problem }
        if let p = io.validate() { return p }
        if http.maxRequestLineBytes < 16 || http.maxHeaderBytes < http.maxRequestLineBytes { return "maxHeaderBytes must be >= maxRequestLineBytes >= 16" }
        if http.maxHeaderCount < 1 { return "maxHeaderCount must be >= 1" }
        if http.maxBodyBytes < 0 { return "maxBodyBytes must be >= 0" }
        if shutdownGraceMilliseconds < 0 { return "shutdownGraceMilliseconds must be >= 0" }
        if !healthPath.isEmpty && !healthPath.hasPrefix("/") { return "healthPath must start with /" }
        if !metricsPath.isEmpty && !metricsPath.hasPrefix("/") { return "metricsPath must start with /" }
        if !(0...3_600_000).contains(mallocStatisticsIntervalMilliseconds) { return "metrics_malloc_interval_ms must be 0...3600000" }
        if webSocket.maxFrameBytes < 125 || webSocket.maxMessageBytes < 125 { return "ws_max_frame_bytes and ws_max_message_bytes must be >= 125" }
        if webSocket.maxFragments < 1 { return "ws_max_fragments must be >= 1" }
        if webSocket.assemblyTimeoutMilliseconds < 1 || webSocket.assemblyTimeoutMilliseconds > 86_400_000 { return "ws_assembly_timeout_ms must be 1...86400000" }
        if webSocket.maxMessagesPerTurn < 1 || webSocket.maxMessagesPerTurn > 1 << 20 { return "ws_max_messages_per_turn must be 1...1048576" }
        if webSocket.maxTurnMicroseconds < 1 || webSocket.maxTurnMicroseconds > 1_000_000 { return "ws_max_turn_us must be 1...1000000" }
        // One read's leftover goes to the backlog whole: a smaller limit would close a client
        // for pipelining what one read brings.
        if webSocket.maxInputBacklogBytes < max(io.recvBufferBytes, io.epollReadBytes) {
            return "ws_max_input_backlog_bytes must be >= recv_buffer_bytes and epoll_read_bytes (one read)"
        }
        if !(1...9).contains(webSocket.deflateMemoryLevel) { return "ws_deflate_mem_level must be 1...9" }
        if !(9...15).contains(webSocket.deflateServerWindowBits) { return "ws_deflate_server_window_bits must be 9...15" }
        if maxSubscriptionsPerSocket < 1 || maxChannelsPerShard < 1 { return "max_subscriptions_per_socket and max_channels_per_shard must be >= 1" }
        if crossShardRingCapacity < 2 || crossShardRingCapacity > (1 << 24) { return "cross_shard_ring_capacity must be 2...16777216" }
        if maxPendingDeliveries < 1 { return "max_pending_deliveries must be >= 1" }
        if channelOffsetRetentionMilliseconds < 0 { return "channel_offset_retention_ms must be >= 0" }
        if deferredResponseTimeoutMilliseconds < 1 || deferredResponseTimeoutMilliseconds > 86_400_000 { return "deferred_response_timeout_ms must be 1...86400000" }
        if httpBodyStreamBufferBytes < 1024 || httpBodyStreamBufferBytes > (1 << 30) { return "http_body_stream_buffer_bytes must be 1024...1073741824" }
        if maxPendingResponsesPerConnection < 1 || maxPendingResponsesPerConnection > (1 << 20) { return "max_pending_responses_per_connection must be 1...1048576" }
        if let problem = cluster.validate() { return problem }
        return nil
    }

    /// Every key the configuration file accepts, with its documentation (also the source of
    /// `Config/switchboard.example.conf`).
    public static let keys: [(key: String, help: String)] = [
        ("host", "address to listen on (IPv4 or IPv6 literal)"),
        ("port", "TCP port, 0 for an ephemeral port"),
        ("io_backend", "auto | uring | epoll (auto: io_uring when it can be set up, else epoll; logged)"),
        ("shards", "shard threads, 0 = one per CPU"),
        ("pin_threads", "true | false: pin shard i to CPU i"),
        ("max_connections_per_shard", "connections one shard holds; beyond, new sockets are closed (metric switchboard_connections_rejected_total)"),
        ("ring_entries", "io_uring submission queue entries per shard"),
        ("recv_buffer_count", "provided receive buffers per shard (power of two)"),
        ("recv_buffer_bytes", "size of each receive buffer"),
        ("max_send_queue_bytes", "bytes queued for sending per connection before the slow-consumer policy applies, counted with 112 bytes of overhead per queued frame"),
        ("max_buffered_bytes_per_shard", "bytes one shard holds for all its peers (send queues with overhead, WebSocket messages being assembled and input backlogs, compression state); at the limit sends to connections over their fair share get the slow-consumer policy and new allocations are refused with 1013 (metric switchboard_shard_memory_budget_hits_total, gauge switchboard_shard_buffered_bytes)"),
        ("max_iovecs_per_send", "chunks gathered into one vectored send"),
        ("send_coalesce_max_frame_bytes", "a frame of at most this many bytes queued behind others on a plain connection is copied into a pooled send block, so a run of small frames is sent as one iovec; 0 turns it off; at most send_block_bytes"),
        ("send_block_bytes", "size of one pooled send block (256...1048576)"),
        ("max_send_blocks_per_shard", "send blocks one shard may have (queued and free); beyond, small frames are queued by reference (metric switchboard_send_blocks_exhausted_total, gauge switchboard_send_blocks); 0 turns coalescing off"),
        ("send_blocks_kept_free", "free send blocks a shard keeps through a busy tick; a returned block is kept free, each tick frees those unused through the whole interval down to this many, and all after a tick in which none was used"),
        ("reply_cork_bytes", "epoll: bytes of each shard's reply cork, where a read's replies to its own connection gather and leave in one write when the handler returns (0...1048576, 0 turns it off); a reply that does not fit is queued (metric switchboard_reply_cork_spills_total)"),
        ("uring_direct_descriptors", "true | false: io_uring shards hold sockets in the ring's registered file table, not the process's descriptor table, so connections are not bounded by ulimit -n (each shard's table holds up to RLIMIT_NOFILE); metric switchboard_direct_descriptor_fallbacks_total"),
        ("uring_worker_threads", "io_uring: at most this many kernel worker threads per shard, for the operations the kernel hands to a thread (the shutdown of a lingering close on a direct descriptor); more wait in the kernel's queue (1...1024; metric switchboard_uring_worker_waits_total)"),
        ("batch_wait_us", "io_uring: a wait that may sleep, on a shard with at least batch_wait_min_connections open, waits up to this long for batch_wait_completions completions before any one ends it (Linux 6.12 min_wait; 0...10000, 0 turns it off; metric switchboard_batch_waits_total)"),
        ("batch_wait_completions", "io_uring: completions that end a batch wait at once (1...ring_entries)"),
        ("batch_wait_min_connections", "io_uring: open connections from which a shard batches its waits"),
        ("epoll_read_bytes", "epoll: bytes each read asks for, into one buffer per shard (16384...4194304); a full read is followed by another, up to the connection's read budget"),
        ("malloc_trim_threshold_bytes", "process-wide: free heap glibc's malloc keeps before it returns memory to the kernel (M_TRIM_THRESHOLD, and the mmap threshold at half of it, at most 32 MiB), set when the broker starts; 0 leaves malloc as it is, else 1048576...1073741824"),
        ("idle_timeout_ms", "close a connection that received nothing for this long"),
        ("request_timeout_ms", "time to receive a whole HTTP request once its first byte arrived (408); also how long a WebSocket close handshake the server started may take"),
        ("linger_timeout_ms", "after a final response, how long input is drained before the socket is closed"),
        ("tick_ms", "timer granularity"),
        ("inbox_capacity", "tasks a shard's inbox holds (work posted from other threads)"),
        ("listen_backlog", "listen(2) backlog"),
        ("max_request_line_bytes", "longest HTTP request line (414)"),
        ("max_header_bytes", "largest HTTP head: request line and headers (431)"),
        ("max_header_count", "most HTTP headers (431)"),
        ("max_body_bytes", "largest HTTP request body (413)"),
        ("max_chunk_line_bytes", "longest chunk-size line of a chunked body (400)"),
        ("health_path", "path of the health endpoint, empty to disable"),
        ("metrics_path", "path of the Prometheus metrics endpoint, empty to disable"),
        ("metrics_malloc_interval_ms", "how old the malloc gauges (glibc's mallinfo2, which locks every arena while it runs) may be when metrics are read; 0 reads them every time, else at most once per interval (0...3600000)"),
        ("shutdown_grace_ms", "on SIGTERM/SIGINT, time given to in-flight requests"),
        ("send_date_header", "true | false"),
        ("max_subscriptions_per_socket", "channels one socket may be subscribed to"),
        ("max_channels_per_shard", "channels with local subscribers (and owned channel offsets) one shard may hold"),
        ("cross_shard_ring_capacity", "entries of each cross-shard ring; a full ring refuses publishes (metric switchboard_publishes_refused_total)"),
        ("max_pending_deliveries", "deliveries an owner shard may hold while rings are full; publishes beyond it wait or are refused (metric switchboard_publish_backlog_limit_hits_total)"),
        ("cross_shard_hold_deliveries", "true | false: a shard holds an owner's deliveries for one turn while publishes it forwarded to that owner wait, so both leave in the same socket writes (metric switchboard_cross_shard_deliveries_held_total)"),
        ("channel_offset_retention_ms", "how long a channel's owner remembers its epoch and offset after its last publish (metric switchboard_channel_offsets_expired_total)"),
        ("websocket_paths", "comma-separated paths where WebSocket upgrades are accepted; * for every path"),
        ("ws_max_frame_bytes", "largest WebSocket frame payload (close 1009)"),
        ("ws_max_message_bytes", "largest WebSocket message, after decompression (close 1009)"),
        ("ws_max_fragments", "most frames in one WebSocket message (close 1009)"),
        ("ws_permessage_deflate", "true | false: negotiate permessage-deflate (RFC 7692)"),
        ("ws_allowed_origins", "comma-separated Origin values allowed to upgrade (403 otherwise); empty allows any"),
        ("ws_assembly_timeout_ms", "a WebSocket message still being assembled (fragmented or compressed) after this long fails with 1008 (metric switchboard_ws_assembly_timeouts_total)"),
        ("ws_max_messages_per_turn", "WebSocket messages of one socket decoded and handled per event-loop turn; the rest of its input waits for the next turn (metric switchboard_ws_batches_deferred_total)"),
        ("ws_max_turn_us", "time one WebSocket's messages may take per event-loop turn once one message ran, a publish's fan-out to 64 or more local subscribers counted at a tenth; the rest of its input waits for the next turn (metric switchboard_ws_batches_deferred_total)"),
        ("ws_max_input_backlog_bytes", "received bytes of one WebSocket waiting for their turn; beyond, the socket is closed with 1013 (metric switchboard_ws_input_backlog_closes_total)"),
        ("ws_deflate_mem_level", "zlib memLevel 1...9 of a permessage-deflate compressor (hash table and buffers take 2^(level+9) bytes)"),
        ("ws_deflate_server_window_bits", "LZ77 window 9...15 of our permessage-deflate compressor (2^(bits+1) bytes); a smaller window is always readable by the client"),
        ("ws_deflate_context_takeover", "true | false: keep our permessage-deflate compressor's window across messages (better ratio, ~266 KiB held per socket that was sent a compressed message); false answers server_no_context_takeover and frees the compressor after each message (and the decompressor when the client offered client_no_context_takeover)"),
        ("ws_slow_consumer", "close | drop: a socket whose send queue is full is closed with 1013, or the message is dropped and counted"),
        ("deferred_response_timeout_ms", "a deferred HTTP response not given within this time is answered 504 (metric switchboard_http_deferred_timeouts_total)"),
        ("max_pending_responses_per_connection", "responses one HTTP connection may owe (deferred, or ready and waiting their turn); the request beyond gets 503 and the connection closes (metric switchboard_http_pending_limit_hits_total)"),
        ("http_body_stream_buffer_bytes", "bytes of one connection's streamed request bodies waiting for their consumer; at the limit the socket is not read until the consumer took half (metric switchboard_http_body_stream_pauses_total)"),
        ("tls_port", "TCP port of the TLS listener (https/wss), next to the plain one; 0 for an ephemeral port"),
        ("tls_certificate", "PEM certificate chain (leaf first); naming one turns the TLS listener on; reloaded on SIGHUP"),
        ("tls_private_key", "PEM private key of tls_certificate"),
        ("tls_sni_certificates", "extra certificates chosen by SNI: comma-separated chain.pem:key.pem pairs"),
        ("tls_handshake_timeout_ms", "a TLS handshake not finished this long after accept is closed (metric switchboard_tls_handshake_timeouts_total)"),
        ("tls_max_handshakes_per_shard", "TLS handshakes one shard runs at once; beyond, new TLS sockets are closed (metric switchboard_tls_handshakes_rejected_total)"),
        ("tls_ticket_key_rotation_s", "seconds a session-ticket key encrypts new tickets before a fresh one replaces it"),
        ("tls_record_layer", "switchboard | openssl: who seals and opens TLS 1.3 records after the handshake (switchboard: its own record layer, a third of OpenSSL's CPU per record; TLS 1.2 always uses OpenSSL's)"),
    ] + clusterKeys

    /// The current value of an option, as the configuration file writes it.
    public func value(forKey key: String) -> String? {
        switch key {
        case "host": return host
        case "port": return String(port)
        case "io_backend": return io.backend.rawValue
        case "shards": return String(io.shardCount)
        case "pin_threads": return String(io.pinThreads)
        case "max_connections_per_shard": return String(io.maxConnectionsPerShard)
        case "ring_entries": return String(io.ringEntries)
        case "recv_buffer_count": return String(io.recvBufferCount)
        case "recv_buffer_bytes": return String(io.recvBufferBytes)
        case "max_send_queue_bytes": return String(io.maxSendQueueBytes)
        case "max_iovecs_per_send": return String(io.maxIOVecsPerSend)
        case "send_coalesce_max_frame_bytes": return String(io.sendCoalesceMaxFrameBytes)
        case "send_block_bytes": return String(io.sendBlockBytes)
        case "max_send_blocks_per_shard": return String(io.maxSendBlocksPerShard)
        case "send_blocks_kept_free": return String(io.sendBlocksKeptFree)
        case "uring_direct_descriptors": return String(io.uringDirectDescriptors)
        case "uring_worker_threads": return String(io.uringWorkerThreads)
        case "batch_wait_us": return String(io.batchWaitMicroseconds)
        case "batch_wait_completions": return String(io.batchWaitCompletions)
        case "batch_wait_min_connections": return String(io.batchWaitMinimumConnections)
        case "reply_cork_bytes": return String(io.replyCorkBytes)
        case "epoll_read_bytes": return String(io.epollReadBytes)
        case "malloc_trim_threshold_bytes": return String(io.mallocTrimThresholdBytes)
        case "idle_timeout_ms": return String(io.idleTimeoutMilliseconds)
        case "request_timeout_ms": return String(io.requestTimeoutMilliseconds)
        case "linger_timeout_ms": return String(io.lingerTimeoutMilliseconds)
        case "tick_ms": return String(io.tickMilliseconds)
        case "inbox_capacity": return String(io.inboxCapacity)
        case "listen_backlog": return String(io.listenBacklog)
        case "max_request_line_bytes": return String(http.maxRequestLineBytes)
        case "max_header_bytes": return String(http.maxHeaderBytes)
        case "max_header_count": return String(http.maxHeaderCount)
        case "max_body_bytes": return String(http.maxBodyBytes)
        case "max_chunk_line_bytes": return String(http.maxChunkLineBytes)
        case "health_path": return "\"\(healthPath)\""
        case "metrics_path": return "\"\(metricsPath)\""
        case "metrics_malloc_interval_ms": return String(mallocStatisticsIntervalMilliseconds)
        case "shutdown_grace_ms": return String(shutdownGraceMilliseconds)
        case "send_date_header": return String(sendDateHeader)
        case "max_subscriptions_per_socket": return String(maxSubscriptionsPerSocket)
        case "max_channels_per_shard": return String(maxChannelsPerShard)
        case "cross_shard_ring_capacity": return String(crossShardRingCapacity)
        case "max_pending_deliveries": return String(maxPendingDeliveries)
        case "cross_shard_hold_deliveries": return String(crossShardHoldDeliveries)
        case "channel_offset_retention_ms": return String(channelOffsetRetentionMilliseconds)
        case "deferred_response_timeout_ms": return String(deferredResponseTimeoutMilliseconds)
        case "max_pending_responses_per_connection": return String(maxPendingResponsesPerConnection)
        case "http_body_stream_buffer_bytes": return String(httpBodyStreamBufferBytes)
        case "websocket_paths": return webSocket.paths.joined(separator: ",")
        case "ws_max_frame_bytes": return String(webSocket.maxFrameBytes)
        case "ws_max_message_bytes": return String(webSocket.maxMessageBytes)
        case "ws_max_fragments": return String(webSocket.maxFragments)
        case "ws_permessage_deflate": return String(webSocket.perMessageDeflate)
        case "ws_allowed_origins": return "\"\((webSocket.allowedOrigins ?? []).joined(separator: ","))\""
        case "ws_slow_consumer": return webSocket.slowConsumerPolicy.rawValue
        case "tls_port": return String(tls.port)
        case "tls_certificate": return "\"\(tls.certificate.chainPath)\""
        case "tls_private_key": return "\"\(tls.certificate.privateKeyPath)\""
        case "tls_sni_certificates": return "\"\(tls.sniCertificates.map { "\($0.chainPath):\($0.privateKeyPath)" }.joined(separator: ","))\""
        case "tls_handshake_timeout_ms": return String(tls.handshakeTimeoutMilliseconds)
        case "tls_max_handshakes_per_shard": return String(tls.maxHandshakesInFlightPerShard)
        case "tls_ticket_key_rotation_s": return String(tls.ticketKeyRotationSeconds)
        case "tls_record_layer": return tls.recordLayer.rawValue
        case "max_buffered_bytes_per_shard": return String(io.maxBufferedBytesPerShard)
        case "ws_assembly_timeout_ms": return String(webSocket.assemblyTimeoutMilliseconds)
        case "ws_max_messages_per_turn": return String(webSocket.maxMessagesPerTurn)
        case "ws_max_turn_us": return String(webSocket.maxTurnMicroseconds)
        case "ws_max_input_backlog_bytes": return String(webSocket.maxInputBacklogBytes)
        case "ws_deflate_mem_level": return String(webSocket.deflateMemoryLevel)
        case "ws_deflate_server_window_bits": return String(webSocket.deflateServerWindowBits)
        case "ws_deflate_context_takeover": return String(webSocket.deflateContextTakeover)
        default: return clusterValue(forKey: key)
        }
    }

    /// Applies `key = value` lines (`#` starts a comment). Unknown keys and bad values are errors
    /// that name the line. (An executable composing several sections uses `LayeredConfiguration`.)
    public mutating func apply(configurationText text: String) throws(ConfigurationError) {
        var layers = LayeredConfiguration(sections: [BrokerConfiguration.self])
        try layers.addFile(text)
        try layers.apply(to: &self)
    }

    /// Sets one option by its configuration-file key.
    public mutating func set(_ key: String, _ value: String) throws(ConfigurationError) {
        func int() throws(ConfigurationError) -> Int {
            guard let v = Int(value) else { throw ConfigurationError(line: 0, message: "\(key): '\(value)' is not an integer") }
            return v
        }
        func list() -> [String] {
            value.split(separator: ",").map { String(Substring($0).trimmingWhitespace()) }.filter { !$0.isEmpty }
        }
        func bool() throws(ConfigurationError) -> Bool {
            switch value { case "true", "yes", "1": return true; case "false", "no", "0": return false
            default: throw ConfigurationError(line: 0, message: "\(key): '\(value)' is not true or false") }
        }
        switch key {
        case "host": host = value
        case "port": port = try int()
        case "io_backend":
            guard let b = IOBackendKind(rawValue: value) else { throw ConfigurationError(line: 0, message: "io_backend: '\(value)' is not auto, uring or epoll") }
            io.backend = b
        case "shards": io.shardCount = try int()
        case "pin_threads": io.pinThreads = try bool()
        case "max_connections_per_shard": io.maxConnectionsPerShard = try int()
        case "ring_entries": io.ringEntries = try int()
        case "recv_buffer_count": io.recvBufferCount = try int()
        case "recv_buffer_bytes": io.recvBufferBytes = try int()
        case "max_send_queue_bytes": io.maxSendQueueBytes = try int()
        case "max_iovecs_per_send": io.maxIOVecsPerSend = try int()
        case "send_coalesce_max_frame_bytes": io.sendCoalesceMaxFrameBytes = try int()
        case "send_block_bytes": io.sendBlockBytes = try int()
        case "max_send_blocks_per_shard": io.maxSendBlocksPerShard = try int()
        case "send_blocks_kept_free": io.sendBlocksKeptFree = try int()
        case "uring_direct_descriptors": io.uringDirectDescriptors = try bool()
        case "uring_worker_threads": io.uringWorkerThreads = try int()
        case "batch_wait_us": io.batchWaitMicroseconds = try int()
        case "batch_wait_completions": io.batchWaitCompletions = try int()
        case "batch_wait_min_connections": io.batchWaitMinimumConnections = try int()
        case "reply_cork_bytes": io.replyCorkBytes = try int()
        case "epoll_read_bytes": io.epollReadBytes = try int()
        case "malloc_trim_threshold_bytes": io.mallocTrimThresholdBytes = try int()
        case "idle_timeout_ms": io.idleTimeoutMilliseconds = try int()
        case "request_timeout_ms": io.requestTimeoutMilliseconds = try int()
        case "linger_timeout_ms": io.lingerTimeoutMilliseconds = try int()
        case "tick_ms": io.tickMilliseconds = try int()
        case "inbox_capacity": io.inboxCapacity = try int()
        case "listen_backlog": io.listenBacklog = try int()
        case "max_request_line_bytes": http.maxRequestLineBytes = try int()
        case "max_header_bytes": http.maxHeaderBytes = try int()
        case "max_header_count": http.maxHeaderCount = try int()
        case "max_body_bytes": http.maxBodyBytes = try int()
        case "max_chunk_line_bytes": http.maxChunkLineBytes = try int()
        case "health_path": healthPath = value
        case "metrics_path": metricsPath = value
        case "metrics_malloc_interval_ms": mallocStatisticsIntervalMilliseconds = try int()
        case "shutdown_grace_ms": shutdownGraceMilliseconds = try int()
        case "send_date_header": sendDateHeader = try bool()
        case "max_subscriptions_per_socket": maxSubscriptionsPerSocket = try int()
        case "max_channels_per_shard": maxChannelsPerShard = try int()
        case "cross_shard_ring_capacity": crossShardRingCapacity = try int()
        case "max_pending_deliveries": maxPendingDeliveries = try int()
        case "cross_shard_hold_deliveries": crossShardHoldDeliveries = try bool()
        case "channel_offset_retention_ms": channelOffsetRetentionMilliseconds = try int()
        case "deferred_response_timeout_ms": deferredResponseTimeoutMilliseconds = try int()
        case "max_pending_responses_per_connection": maxPendingResponsesPerConnection = try int()
        case "http_body_stream_buffer_bytes": httpBodyStreamBufferBytes = try int()
        case "websocket_paths": webSocket.paths = list()
        case "ws_max_frame_bytes": webSocket.maxFrameBytes = try int()
        case "ws_max_message_bytes": webSocket.maxMessageBytes = try int()
        case "ws_max_fragments": webSocket.maxFragments = try int()
        case "ws_permessage_deflate": webSocket.perMessageDeflate = try bool()
        case "ws_allowed_origins":
            let origins = list()
            webSocket.allowedOrigins = origins.isEmpty ? nil : origins
        case "max_buffered_bytes_per_shard": io.maxBufferedBytesPerShard = try int()
        case "ws_assembly_timeout_ms": webSocket.assemblyTimeoutMilliseconds = try int()
        case "ws_max_messages_per_turn": webSocket.maxMessagesPerTurn = try int()
        case "ws_max_turn_us": webSocket.maxTurnMicroseconds = try int()
        case "ws_max_input_backlog_bytes": webSocket.maxInputBacklogBytes = try int()
        case "ws_deflate_mem_level": webSocket.deflateMemoryLevel = try int()
        case "ws_deflate_server_window_bits": webSocket.deflateServerWindowBits = try int()
        case "ws_deflate_context_takeover": webSocket.deflateContextTakeover = try bool()
        case "ws_slow_consumer":
            guard let p = SlowConsumerPolicy(rawValue: value) else { throw ConfigurationError(line: 0, message: "ws_slow_consumer: '\(value)' is not close or drop") }
            webSocket.slowConsumerPolicy = p
        case "tls_port": tls.port = try int()
        case "tls_certificate": tls.certificate.chainPath = value
        case "tls_private_key": tls.certificate.privateKeyPath = value
        case "tls_sni_certificates":
            var pairs: [TLSConfiguration.Certificate] = []
            for item in list() {
                let parts = item.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw ConfigurationError(line: 0, message: "tls_sni_certificates: '\(item)' is not chain.pem:key.pem")
                }
                pairs.append(TLSConfiguration.Certificate(chainPath: parts[0], privateKeyPath: parts[1]))
            }
            tls.sniCertificates = pairs
        case "tls_handshake_timeout_ms": tls.handshakeTimeoutMilliseconds = try int()
        case "tls_max_handshakes_per_shard": tls.maxHandshakesInFlightPerShard = try int()
        case "tls_ticket_key_rotation_s": tls.ticketKeyRotationSeconds = try int()
        case "tls_record_layer":
            guard let layer = TLSConfiguration.RecordLayer(rawValue: value) else {
                throw ConfigurationError(line: 0, message: "tls_record_layer: '\(value)' is not switchboard or openssl")
            }
            tls.recordLayer = layer
        default: try setCluster(key, value)
        }
    }
}

/// What happens when a WebSocket's send queue is full.
public enum SlowConsumerPolicy: String, Sendable {
    /// Close the socket with 1013 (try again later).
    case close
    /// Drop the message and count it (`switchboard_ws_messages_dropped_total`).
    case drop
}

/// WebSocket options.
public struct WebSocketSettings: Sendable {
    /// Paths where upgrades are accepted; "*" accepts every path.
    public var paths: [String] = ["*"]
    public var maxFrameBytes: Int = 16 << 20
    public var maxMessageBytes: Int = 16 << 20
    public var maxFragments: Int = 1 << 20
    public var perMessageDeflate: Bool = true
    /// nil allows any Origin.
    public var allowedOrigins: [String]? = nil
    public var slowConsumerPolicy: SlowConsumerPolicy = .close
    /// A message still being assembled after this long fails with 1008.
    public var assemblyTimeoutMilliseconds: Int = 30_000
    /// Messages of one socket decoded and handled per loop turn.
    public var maxMessagesPerTurn: Int = 64
    /// Time one socket's messages may take per loop turn once one message ran. A publish's
    /// fan-out to a channel with 64 or more local subscribers counts at a tenth of its time:
    /// it is delivery work for the subscribers (at most ten slices of it per socket per turn).
    // Counted, the fan-out cut the frames batched per subscriber per turn (one send per
    // subscriber per turn: more system calls per delivery); at 20 ms 1 -> 10,000 fan-out ran
    // at 0.23-0.40x of its speed before the bounds on a loaded machine (docs-pending/fanout.md).
    public var maxTurnMicroseconds: Int = 20_000
    /// Received bytes of one socket waiting for their turn; beyond, it is closed with 1013.
    public var maxInputBacklogBytes: Int = 1 << 20
    /// zlib memLevel of a compressor (1...9).
    public var deflateMemoryLevel: Int = 8
    /// LZ77 window of our compressor, 9...15 bits (the negotiated one if smaller).
    public var deflateServerWindowBits: Int = 15
    /// Keep our compressor's LZ77 window across messages. Off by default: the server then
    /// answers `server_no_context_takeover` and frees its compressor after each message, so an
    /// idle compressed socket holds no deflate state (~266 KiB with the defaults) for a few
    /// percent of ratio on similar consecutive messages. The decompressor is freed between
    /// messages only when the client offered `client_no_context_takeover`; otherwise its
    /// window (~87 KiB with scratch) stays, since the client's next message may refer to it.
    public var deflateContextTakeover: Bool = false
    public init() {}

    func routes(_ path: String) -> Bool { paths.contains("*") || paths.contains(path) }
}

/// A configuration problem: a file line, an environment variable, a flag or a value.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    /// Where the bad setting came from; nil for a problem between values (validation) or a
    /// value checked outside a layer.
    public let origin: ConfigurationOrigin?
    public let message: String

    /// The file line, or 0 when the problem is not on a line.
    public var line: Int {
        if case .file(_, let line) = origin { return line }
        return 0
    }

    /// `line` 0: no line (a value checked outside a file).
    public init(line: Int, message: String) {
        self.init(origin: line > 0 ? .file(path: nil, line: line) : nil, message: message)
    }

    public init(origin: ConfigurationOrigin?, message: String) {
        self.origin = origin
        self.message = message
    }

    public var description: String { origin.map { "\($0): \(message)" } ?? message }
}

extension Substring {
    func trimmingWhitespace() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return s
    }
}
