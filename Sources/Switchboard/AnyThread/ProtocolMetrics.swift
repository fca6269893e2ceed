import SwitchboardIO

/// Per-shard HTTP and WebSocket counters.
final class ProtocolMetrics: Sendable {
    let requests = Counter("switchboard_http_requests_total", help: "Complete HTTP requests received")
    let responses2xx = Counter("switchboard_http_responses_2xx_total", help: "2xx responses")
    let responses4xx = Counter("switchboard_http_responses_4xx_total", help: "4xx responses")
    let responses5xx = Counter("switchboard_http_responses_5xx_total", help: "5xx responses")
    let badRequest = Counter("switchboard_http_bad_request_total", help: "Requests refused with 400 (malformed)")
    let requestTimeout = Counter("switchboard_http_request_timeout_total", help: "Requests cut off with 408 (too slow)")
    let bodyTooLarge = Counter("switchboard_http_body_too_large_total", help: "Requests refused with 413 (body over maxBodyBytes)")
    let uriTooLong = Counter("switchboard_http_uri_too_long_total", help: "Requests refused with 414 (request line over maxRequestLineBytes)")
    let headersTooLarge = Counter("switchboard_http_headers_too_large_total", help: "Requests refused with 431 (head over maxHeaderBytes or maxHeaderCount)")
    let notImplemented = Counter("switchboard_http_not_implemented_total", help: "Requests refused with 501 (unsupported transfer coding)")
    let versionNotSupported = Counter("switchboard_http_version_not_supported_total", help: "Requests refused with 505")
    let responseTooLarge = Counter("switchboard_http_response_over_send_limit_total", help: "Responses dropped because the connection's send queue was full (connection closed)")
    let deferredResponses = Counter("switchboard_http_deferred_total", help: "HTTP responses a handler deferred (HTTPReply.deferred)")
    let deferredPending = Counter("switchboard_http_deferred_pending", help: "Deferred HTTP responses not answered yet")
    let deferredTimeouts = Counter("switchboard_http_deferred_timeouts_total", help: "Deferred HTTP responses answered 504 at deferred_response_timeout_ms")
    let deferredAbandoned = Counter("switchboard_http_deferred_abandoned_total", help: "Deferred HTTP responses dropped because the client's connection closed first")
    let pendingLimitHits = Counter("switchboard_http_pending_limit_hits_total", help: "Requests answered 503 (then close) at max_pending_responses_per_connection")
    let upgrades = Counter("switchboard_ws_upgrades_total", help: "WebSocket upgrades accepted")
    let upgradesRefused = Counter("switchboard_ws_upgrades_refused_total", help: "WebSocket upgrades refused (bad handshake, origin, handler, draining)")
    let webSocketsOpen = Counter("switchboard_ws_open", help: "WebSockets currently open")
    let webSocketMessagesIn = Counter("switchboard_ws_messages_received_total", help: "WebSocket messages received")
    let webSocketMessagesOut = Counter("switchboard_ws_messages_sent_total", help: "WebSocket messages queued for sending")
    let webSocketMessagesDropped = Counter("switchboard_ws_messages_dropped_total", help: "Messages dropped by the drop slow-consumer policy")
    let webSocketSlowConsumersClosed = Counter("switchboard_ws_slow_consumers_closed_total", help: "WebSockets closed by the close slow-consumer policy")
    let webSocketProtocolErrors = Counter("switchboard_ws_protocol_errors_total", help: "WebSockets failed for a protocol violation or a limit (1002, 1007, 1009)")
    let webSocketTooBig = Counter("switchboard_ws_too_big_total", help: "WebSockets closed with 1009 (frame, message or inflated size over the limit)")
    let channels = Counter("switchboard_channels_local", help: "Channels with at least one subscriber on this shard")
    let subscriptions = Counter("switchboard_subscriptions", help: "Subscriptions held by this shard's sockets")
    let publishes = Counter("switchboard_publishes_total", help: "Messages ordered by this shard as a channel owner")
    let publishesRefused = Counter("switchboard_publishes_refused_total", help: "Publishes refused: the ring to the channel's owner was full, or the owner's delivery backlog was at its bound")
    let fanoutDeliveries = Counter("switchboard_fanout_deliveries_total", help: "Channel messages queued to subscribers")
    let crossShardDeliveriesHeld = Counter("switchboard_cross_shard_deliveries_held_total", help: "Turns in which a shard left an owner's deliveries in their ring for one turn, to take them with those of the publishes it forwarded to that owner (cross_shard_hold_deliveries)")
    let crossShardBackpressure = Counter("switchboard_cross_shard_backpressure_total", help: "Deliveries that waited because a ring to another shard was full")
    let crossShardPending = Counter("switchboard_cross_shard_pending", help: "Deliveries waiting for room in a ring to another shard")
    let subscriptionLimitHits = Counter("switchboard_subscription_limit_hits_total", help: "Subscribes refused at max_subscriptions_per_socket")
    let channelLimitHits = Counter("switchboard_channel_limit_hits_total", help: "Subscribes refused at max_channels_per_shard")
    let channelOffsetsEvicted = Counter("switchboard_channel_offsets_evicted_total", help: "Owned channel offsets forgotten at max_channels_per_shard")
    let channelOffsetsExpired = Counter("switchboard_channel_offsets_expired_total", help: "Owned channel offsets forgotten after channel_offset_retention_ms without a publish")
    let channelOffsets = Counter("switchboard_channel_offsets", help: "Channels this shard owns and remembers (epoch and offset)")
    let publishBacklogLimitHits = Counter("switchboard_publish_backlog_limit_hits_total", help: "Publishes on the owner shard or through its inbox refused because the delivery backlog was at max_pending_deliveries")
    let crossShardPendingPeak = Counter("switchboard_cross_shard_pending_peak", help: "Highest number of deliveries that waited for room in a ring to another shard")
    let webSocketPingTimeouts = Counter("switchboard_ws_ping_timeouts_total", help: "WebSockets closed because a keep-alive ping got no answer")
    let webSocketAssemblyTimeouts = Counter("switchboard_ws_assembly_timeouts_total", help: "WebSockets closed with 1008 because a message was still being assembled at ws_assembly_timeout_ms")
    let webSocketOverBudget = Counter("switchboard_ws_over_budget_total", help: "WebSockets closed with 1013 because the shard's memory budget (max_buffered_bytes_per_shard) refused a message's or input backlog's growth")
    let webSocketBacklogCloses = Counter("switchboard_ws_input_backlog_closes_total", help: "WebSockets closed with 1013 because their unprocessed input went over ws_max_input_backlog_bytes")
    let webSocketBatchesDeferred = Counter("switchboard_ws_batches_deferred_total", help: "Times decoding a socket's input stopped at ws_max_messages_per_turn and resumed next turn")
    let webSocketMessagesDiscarded = Counter("switchboard_ws_messages_discarded_total", help: "Decoded messages not handed to the handler because their socket was closing")
    let bodyStreams = Counter("switchboard_http_body_streams_total", help: "HTTP request bodies delivered as streams (BodyDelivery.streamed)")
    let bodyStreamPauses = Counter("switchboard_http_body_stream_pauses_total", help: "Times a connection stopped being read because its streamed bodies held http_body_stream_buffer_bytes not taken by their consumers")
    let bodyStreamErrors = Counter("switchboard_http_body_stream_errors_total", help: "Streamed bodies ended early (client gone, 408, 413, bad framing, answered before read)")
    let bodyStreamBufferedBytes = Counter("switchboard_http_body_stream_buffered_bytes", help: "Bytes of streamed request bodies received and not yet taken by their consumers (sampled each tick)")
    let webSocketPongsCoalesced = Counter("switchboard_ws_pongs_coalesced_total", help: "Pongs replaced by a later one before they could be queued (the peer was not reading)")

    var all: [Counter] {
        [requests, responses2xx, responses4xx, responses5xx, badRequest, requestTimeout, bodyTooLarge, uriTooLong,
         headersTooLarge, notImplemented, versionNotSupported, responseTooLarge, deferredResponses, deferredPending,
         deferredTimeouts, deferredAbandoned, pendingLimitHits, upgrades, upgradesRefused, webSocketsOpen,
         webSocketMessagesIn, webSocketMessagesOut, webSocketMessagesDropped, webSocketSlowConsumersClosed,
         webSocketProtocolErrors, webSocketTooBig, webSocketPingTimeouts, channels, subscriptions, publishes,
         publishesRefused, fanoutDeliveries, crossShardBackpressure, crossShardDeliveriesHeld, crossShardPending, subscriptionLimitHits,
         channelLimitHits, channelOffsetsEvicted, channelOffsetsExpired, channelOffsets, publishBacklogLimitHits,
         crossShardPendingPeak, webSocketAssemblyTimeouts, webSocketOverBudget, webSocketBacklogCloses,
         webSocketBatchesDeferred, webSocketMessagesDiscarded, webSocketPongsCoalesced,
         bodyStreams, bodyStreamPauses, bodyStreamErrors, bodyStreamBufferedBytes]
    }

    func countParseError(status: Int) {
        switch status {
        case 400: badRequest.increment()
        case 408: requestTimeout.increment()
        case 413: bodyTooLarge.increment()
        case 414: uriTooLong.increment()
        case 431: headersTooLarge.increment()
        case 501: notImplemented.increment()
        case 505: versionNotSupported.increment()
        default: break
        }
    }

    func countResponse(status: Int) {
        switch status {
        case 200..<300: responses2xx.increment()
        case 400..<500: responses4xx.increment()
        case 500..<600: responses5xx.increment()
        default: break
        }
    }
}
