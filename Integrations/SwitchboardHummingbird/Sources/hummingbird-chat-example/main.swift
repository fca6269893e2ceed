// A Hummingbird REST API and Switchboard's chat WebSockets on one port.
//
//   swift run hummingbird-chat-example            (port 8080, or $PORT)
//   websocat 'ws://127.0.0.1:8080/ws?room=lobby&name=ada'
//   curl -d 'hello from curl' http://127.0.0.1:8080/rooms/lobby/messages
//   curl http://127.0.0.1:8080/rooms/lobby/members
//   head -c 1000000 /dev/zero | curl -X POST -T - http://127.0.0.1:8080/uploads   (a streamed upload)
//
//   TWO_PORTS=1 swift run hummingbird-chat-example (Hummingbird's server on $PORT, WebSockets on $PORT+1)
import Foundation
import Hummingbird
import Logging
import Switchboard

let logger = Logger(label: "hummingbird-chat-example")
let port = ProcessInfo.processInfo.environment["PORT"].flatMap(Int.init) ?? 8080
var configuration = BrokerConfiguration()
configuration.host = "127.0.0.1"
if ProcessInfo.processInfo.environment["TWO_PORTS"] == "1" {
    configuration.port = port + 1
    let (app, _) = makeTwoPortChatApplication(httpPort: port, configuration: configuration, logger: logger)
    try await app.runService()
} else {
    configuration.port = port
    // One ServiceGroup: the broker, its metrics export to the swift-metrics backend, and
    // whatever else the application adds (`app.addServices`); SIGTERM/SIGINT stop them all.
    try await makeChatApplication(configuration: configuration, logger: logger).runService()
}
