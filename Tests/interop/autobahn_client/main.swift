// sdk-autobahn-client: the SDK's WebSocket client (SwitchboardClient.ClientWebSocket on the
// client-role codec) against Autobahn|Testsuite's fuzzing *server* (`wstest -m fuzzingserver`),
// driven by deploy/autobahn-client.sh.
//
//   sdk-autobahn-client ws://127.0.0.1:9001 AGENT
//
// Asks the fuzzing server for its case count, runs every case (echoing each message back as it
// came, text as text, binary as binary, until the server closes), then asks it to write the
// reports. Exit status 0 when every case ran (the verdicts are in the server's report).
import Foundation
import SwitchboardClient

@main
struct AutobahnClient {
    static func main() async {
        let arguments = CommandLine.arguments
        guard arguments.count == 3 else {
            FileHandle.standardError.write(Data("usage: sdk-autobahn-client ws://HOST:PORT AGENT\n".utf8))
            exit(2)
        }
        let base = arguments[1], agent = arguments[2]
        var options = ClientWebSocket.Options()
        options.maxMessageBytes = 64 << 20  // case 9.* sends up to 16 MiB; 10.* asks for no limit
        options.connectTimeout = .seconds(30)
        options.closeTimeout = .seconds(5)
        // Cases 3.x-5.x check that the echo of the last good message precedes the 1002: on a
        // loaded CI machine give this echo loop up to 5 s for it, not the 250 ms default.
        options.protocolErrorLinger = .seconds(5)
        // Offered on every case: 12.* and 13.* accept it with their own parameters (window bits,
        // no_context_takeover); the fuzzing server declines it for the other cases.
        options.perMessageDeflate = true
        do {
            let counter = try await ClientWebSocket.connect(to: "\(base)/getCaseCount", options: options)
            var count = 0
            for await message in counter.messages { if case .text(let text) = message { count = Int(text) ?? 0 } }
            await counter.waitUntilFinished()
            print("cases: \(count)")
            for index in 1...max(count, 1) where count > 0 {
                do {
                    let connection = try await ClientWebSocket.connect(to: "\(base)/runCase?case=\(index)&agent=\(agent)", options: options)
                    for await message in connection.messages {
                        switch message {
                        case .text(let text): try? connection.sendText(text)
                        case .binary(let bytes): try? connection.sendBinary(bytes)
                        }
                    }
                    await connection.waitUntilFinished()
                } catch {
                    print("case \(index): \(error)")
                }
            }
            let report = try await ClientWebSocket.connect(to: "\(base)/updateReports?agent=\(agent)", options: options)
            for await _ in report.messages {}
            await report.waitUntilFinished()
        } catch {
            print("failed: \(error)")
            exit(1)
        }
    }
}
