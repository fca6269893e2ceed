import Foundation
import Synchronization
import SwitchboardTestSupport
import Testing
@testable import SwitchboardClient

/// The RPC client's offline queue, observed on the wire. The real RPC server runs request
/// handlers concurrently (as amqp-swarm's async handlers do), so the order in which handlers
/// *start* says nothing about the order the client wrote; a scripted server reading frames one
/// by one does.
@Suite("RPC client: offline queue order on the wire")
struct RPCClientWireOrderTests {
    @Test("requests made before init wait and go out in FIFO order")
    func offlineQueueFIFO() async throws {
        let received = Mutex<[Int]>([])
        let server = RawServer { peer in
            try peer.handshake()
            peer.sendJSON(["type": "init"])
            while let request = peer.readJSON() {
                guard request["type"] as? String == "request",
                      let args = request["args"] as? [Any], let n = args.first as? NSNumber,
                      let id = request["correlationId"] else { continue }
                received.withLock { $0.append(n.intValue) }
                peer.sendJSON(["type": "response", "correlationId": id, "result": NSNull()])
            }
        }
        defer { server.stop() }
        let c = RPCClient(url: "ws://127.0.0.1:\(server.port)/?id=fifo")
        var tasks: [Task<Void, Never>] = []
        for i in 0..<20 {
            // Not started yet: every send queues; start() waits until all 20 are queued.
            tasks.append(Task { _ = try? await c.send("seq", [.number(Double(i))], startIfNeeded: false) })
            #expect(await eventually { c.queuedRequestCount == i + 1 })
        }
        #expect(c.queuedRequestCount == 20)
        c.start()
        for t in tasks { await t.value }
        #expect(received.withLock { $0 } == Array(0..<20))
        #expect(c.queuedRequestCount == 0)
        await c.close()
    }
}
