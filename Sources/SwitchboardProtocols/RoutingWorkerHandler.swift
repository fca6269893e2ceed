import Switchboard
import SwitchboardCluster

/// Mounts several handlers on one broker, by WebSocket subprotocol or by path.
///
/// An upgrade goes to the first route whose subprotocol the client offered, else to the
/// first route whose path matches (exact, or a prefix ending in `/`, or `*`). The socket stays
/// with that handler for its whole life; its messages and its close go there. HTTP requests
/// go to the routes in order until one answers. A request's body comes as the first route
/// matching its path asks (`bodyDelivery`); a streamed one then goes only to the routes that
/// stream it (the others would see an empty `body`). One instance per shard, like every handler.
public final class RoutingWorkerHandler: WorkerHandler {
    public struct Route {
        public var paths: [String]
        public var subprotocol: String?
        public var handler: WorkerHandler
        public init(paths: [String], subprotocol: String? = nil, handler: WorkerHandler) {
            self.paths = paths
            self.subprotocol = subprotocol
            self.handler = handler
        }

        func matches(path: String) -> Bool {
            paths.contains { $0 == "*" || $0 == path || ($0.hasSuffix("/") && path.hasPrefix($0)) }
        }
    }

    public let routes: [Route]
    /// Which route owns each upgraded socket (entries leave on close, so this is bounded by the
    /// shard's connections).
    private var owners: [SocketID: Int] = [:]

    public init(routes: [Route]) {
        self.routes = routes
    }

    public func bodyDelivery(for head: WorkerRequest, context: ShardContext) -> BodyDelivery {
        guard let route = routes.first(where: { $0.matches(path: head.path) }) else { return .buffered }
        return route.handler.bodyDelivery(for: head, context: context)
    }

    public func handleHttpRequest(_ request: WorkerRequest, context: ShardContext) -> HTTPReply {
        for route in routes where route.matches(path: request.path) {
            if request.bodyStream != nil && route.handler.bodyDelivery(for: request, context: context) != .streamed { continue }
            let reply = route.handler.handleHttpRequest(request, context: context)
            if case .notHandled = reply { continue }
            return reply
        }
        return .notHandled
    }

    public func handleUpgrade(_ request: WorkerRequest, socketId: SocketID) -> UpgradeDecision {
        let offered = request.headerFields[values: .secWebSocketProtocol]
            .flatMap { $0.split(separator: ",").map { String($0).trimmingSpaces() } }
        let index = routes.firstIndex { r in r.subprotocol.map { offered.contains($0) } ?? false }
            ?? routes.firstIndex { $0.matches(path: request.path) }
        guard let i = index else {
            return .reject(.text("No WebSocket service at this path\n", status: .notFound))
        }
        let decision = routes[i].handler.handleUpgrade(request, socketId: socketId)
        if case .accept(let token, let subprotocol) = decision {
            owners[socketId] = i
            if subprotocol == nil, let sp = routes[i].subprotocol, offered.contains(sp) {
                return .accept(token: token, subprotocol: sp)
            }
        }
        return decision
    }

    /// Forwards the view, so a route's handler gets the message through whichever method it
    /// implements (its view method's default makes the value for the other).
    public func handleSocketMessage(_ message: borrowing SocketMessageView, socketId: SocketID, token: [UInt8]?) {
        guard let i = owners[socketId] else { return }
        routes[i].handler.handleSocketMessage(message, socketId: socketId, token: token)
    }

    /// A message given as a value (the broker calls the view method): forwarded as a view of it.
    public func handleSocketMessage(_ message: SocketMessage, socketId: SocketID, token: [UInt8]?) {
        handleSocketMessage(SocketMessageView(message), socketId: socketId, token: token)
    }

    public func handleSocketClose(socketId: SocketID, token: [UInt8]?) {
        guard let i = owners.removeValue(forKey: socketId) else { return }
        routes[i].handler.handleSocketClose(socketId: socketId, token: token)
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}

/// Cluster messages (issue 13) go to the first route whose handler takes their protocol tag.
extension RoutingWorkerHandler: ClusterMessageReceiver, ClusterChannelReceiver {
    package func receiveClusterMessage(tag: UInt8, _ bytes: UnsafeRawBufferPointer) -> Bool {
        routes.contains { ($0.handler as? ClusterMessageReceiver)?.receiveClusterMessage(tag: tag, bytes) == true }
    }

    /// A protocol channel's message goes to the first route whose handler takes its space.
    package func receiveClusterChannelMessage(_ channel: ClusterChannel, _ payload: UnsafeRawBufferPointer, position: ClusterPosition) -> Bool {
        routes.contains { ($0.handler as? ClusterChannelReceiver)?.receiveClusterChannelMessage(channel, payload, position: position) == true }
    }

    /// Every route hears of a node's death (each protocol cleans up what it owned there).
    public func handleClusterNodeDied(_ node: Int, incarnation: UInt64) {
        for route in routes { route.handler.handleClusterNodeDied(node, incarnation: incarnation) }
    }

    /// Every route hears that this shard's Redis connection is up (each writes its state again).
    public func handleClusterConnected() {
        for route in routes { route.handler.handleClusterConnected() }
    }

    /// Every route hears that this shard's Redis backlog drained (each sends what it kept).
    public func handleClusterBacklogDrained() {
        for route in routes { route.handler.handleClusterBacklogDrained() }
    }

    /// Every route hears of a gap in a channel (each decides whether its sockets care).
    public func handleChannelGap(_ channel: ChannelName, recovered: Bool, subscribers: [SocketID]) {
        for route in routes { route.handler.handleChannelGap(channel, recovered: recovered, subscribers: subscribers) }
    }
}
