/// The seven error codes of the broadcaster protocol, spelled as on the wire.
public enum BroadcasterErrorCode: String, Sendable, CaseIterable {
    case invalidArgument = "InvalidArgument"
    case notFound = "NotFound"
    case alreadyExists = "AlreadyExists"
    case failedPrecondition = "FailedPrecondition"
    case permissionDenied = "PermissionDenied"
    case unauthenticated = "Unauthenticated"
    case `internal` = "Internal"
}

/// An error object: `{"code": C, "message": T}`.
public struct BroadcasterError: Error, Equatable, Sendable {
    public var code: BroadcasterErrorCode
    public var message: String

    public init(_ code: BroadcasterErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
}
