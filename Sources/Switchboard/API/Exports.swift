// The public boundary speaks swift-http-types (method, status, fields), like Hummingbird, so
// an application importing both sees one `HTTPRequest`/`HTTPResponse`: theirs. SwitchboardHTTP's
// parser types stay internal to the broker.
@_exported import HTTPTypes
@_exported import struct SwitchboardIO.SocketID
@_exported import enum SwitchboardIO.IOBackendKind
// BrokerConfiguration.http is the parser's limits.
@_exported import struct SwitchboardHTTP.HTTPLimits
