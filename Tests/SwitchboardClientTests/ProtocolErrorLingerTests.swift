import Foundation
import Testing
@testable import SwitchboardClient

/// After a protocol error the client waits for the application to handle the messages received
/// before it, but no longer than `Options.protocolErrorLinger`, not `closeTimeout`.
@Suite("ClientWebSocket: the wait before a protocol-error close is bounded")
struct ProtocolErrorLingerTests {
    /// A message, then a frame with a reserved opcode; the application never reads. With
    /// `closeTimeout` 60 s and `protocolErrorLinger` 100 ms the 1002 close reaches the server
    /// within its 5 s read timeout: the linger, not the close timeout, ended the wait (the old
    /// bound would have held the close for 60 s and this test would see no close frame).
    @Test func aStalledApplicationDelaysTheCloseByTheLingerOnly() async throws {
        let closeCodes = Recorder<Int>()
        let server = RawServer { peer in
            try peer.handshake()
            peer.sendText("before the error")
            peer.sendFrame(opcode: 3, payload: [])  // reserved non-control opcode: 1002
            while true {
                let frame = try peer.readFrame()
                if frame.opcode == 8 {
                    closeCodes.append(Int(frame.closeCode ?? 0))
                    return
                }
            }
        }
        defer { server.stop() }
        var options = ClientWebSocket.Options()
        options.closeTimeout = .seconds(60)
        options.protocolErrorLinger = .milliseconds(100)
        let connection = try await ClientWebSocket.connect(to: server.url, options: options)
        // Nobody iterates connection.messages: the message before the error stays unread.
        #expect(await eventually(timeout: .seconds(10)) { closeCodes.count == 1 })
        #expect(closeCodes.all == [1002])
        connection.abort()
        await connection.waitUntilFinished()
        #expect(connection.closeReason?.reason.hasPrefix("protocol error") == true, "\(String(describing: connection.closeReason))")
    }

    @Test func theDefaultIsAQuarterSecond() {
        #expect(ClientWebSocket.Options().protocolErrorLinger == .milliseconds(250))
    }
}
