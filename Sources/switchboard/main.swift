import Switchboard
import SwitchboardProtocols
#if canImport(Glibc)
import Glibc
#endif

/// `switchboard [--port N] [--host H] [--config FILE] [--io-backend auto|uring|epoll] [--shards N]`
///
/// Options are applied in order: defaults, then the configuration file, then flags.

let usage = """
usage: switchboard [options]
  --port N                TCP port (default 3004; 0 = ephemeral)
  --host ADDR             address to listen on (default 0.0.0.0)
  --config FILE           key = value configuration file (see Config/switchboard.example.conf)
  --io-backend KIND       auto | uring | epoll (default auto)
  --shards N              shard threads (default: one per CPU)
  --print-config-keys     list every configuration key with its meaning
  --print-default-config  print a configuration file with every option at its default
  --version               print the version
  -h, --help              this text
"""

func fail(_ message: String) -> Never {
    Broker.standardErrorLog("switchboard: \(message)")
    exit(2)
}

func readFile(_ path: String) -> String? {
    guard let f = fopen(path, "rb") else { return nil }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
        if n < chunk.count { break }
        if bytes.count > 1 << 20 { return nil }  // a configuration file is small
    }
    return String(decoding: bytes, as: UTF8.self)
}

var configuration = BrokerConfiguration()
var flags: [(String, String)] = []
var configPath: String?
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let arg = arguments.next() {
    func value() -> String {
        guard let v = arguments.next() else { fail("\(arg) needs a value\n\(usage)") }
        return v
    }
    switch arg {
    case "--port": flags.append(("port", value()))
    case "--host": flags.append(("host", value()))
    case "--io-backend": flags.append(("io_backend", value()))
    case "--shards": flags.append(("shards", value()))
    case "--config": configPath = value()
    case "--print-config-keys":
        for (key, help) in BrokerConfiguration.keys { print("\(key)\t\(help)") }
        exit(0)
    case "--print-default-config":
        print(BrokerConfiguration().exampleFile(), terminator: "")
        exit(0)
    case "--version": print("switchboard 0.1.0"); exit(0)
    case "-h", "--help": print(usage); exit(0)
    default: fail("unknown argument '\(arg)'\n\(usage)")
    }
}

var broadcasterFileValues: [String: String] = [:]  // broadcaster_* keys (BroadcasterSetup)
if let path = configPath {
    guard let text = readFile(path) else { fail("cannot read configuration file \(path)") }
    let (bcValues, rest) = BroadcasterSetup.extract(configurationText: text)
    broadcasterFileValues = bcValues
    do { try configuration.apply(configurationText: rest) } catch { fail("\(path): \(error)") }
}
for (key, value) in flags {
    do { try configuration.set(key, value) } catch { fail("\(error)") }
}
// The broadcaster protocol (docs-pending/broadcaster.md): config keys, SWITCHBOARD_BROADCASTER_*
// environment, or the reference's environment when started as `broadcaster`.
let bc: BroadcasterSetup.Resolved
do {
    bc = try BroadcasterSetup.resolve(fileValues: broadcasterFileValues, environment: BroadcasterSetup.processEnvironment(),
                                      executablePath: CommandLine.arguments[0], readFile: readFile)
} catch { fail("\(error)") }
if let port = bc.port, !flags.contains(where: { $0.0 == "port" }) { configuration.port = port }
let broadcaster = bc.enabled ? Broadcaster(options: bc.options) : nil
if let problem = configuration.validate() { fail("invalid configuration: \(problem)") }

// The built-in protocols, mounted by path (and by subprotocol): the connection-broker
// protocol on every path by default, as `connection-broker --port 3004` serves it.
let protocolOptions = configuration.protocolOptions
func option(_ key: String) -> String { protocolOptions[key] ?? BrokerConfiguration.protocolDefaults[key]! }
var cbOptions = ConnectionBrokerOptions()
cbOptions.maxRoleBytes = Int(option("cb_max_role_bytes"))!
cbOptions.maxConnectionsPerRole = Int(option("cb_max_connections_per_role"))!
cbOptions.maxListResults = Int(option("cb_max_list_results"))!
cbOptions.maxChannelsPerConnection = Int(option("cb_max_channels_per_connection"))!
cbOptions.maxJSONDepth = Int(option("cb_max_json_depth"))!
cbOptions.allowSelfChannels = ["true", "yes", "1"].contains(option("cb_allow_self_channels"))
cbOptions.maxMessageBytes = configuration.webSocket.maxMessageBytes
let connectionBroker = ConnectionBroker(options: cbOptions)
let cbFactory = connectionBroker.handlerFactory()
let cbPaths = option("connection_broker_paths").split(separator: ",").map { String($0).trimmingCharacters() }

let finalConfiguration = configuration
let broker = Broker(configuration: finalConfiguration) { context in
    RoutingWorkerHandler(routes: (broadcaster.map { [.init(paths: [$0.options.basePath + "/"], handler: $0.makeHandler(context))] } ?? []) + [
        .init(paths: cbPaths, subprotocol: "connection-broker", handler: cbFactory(context)),
    ])
}
broker.additionalMetrics = {
    var out = ""
    for m in connectionBroker.metrics.all {
        out += "# HELP switchboard_\(m.name) \(m.help)\n# TYPE switchboard_\(m.name) \(m.name.hasSuffix("_total") ? "counter" : "gauge")\nswitchboard_\(m.name) \(m.value)\n"
    }
    return out + (broadcaster?.metrics.render() ?? "")
}
do {
    try broker.run()
} catch {
    fail("\(error)")
}

extension StringProtocol {
    func trimmingCharacters() -> String {
        var t = Substring(self)
        while t.first == " " { t = t.dropFirst() }
        while t.last == " " { t = t.dropLast() }
        return String(t)
    }
}
