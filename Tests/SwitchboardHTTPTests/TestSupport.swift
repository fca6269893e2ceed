import Testing
@testable import SwitchboardHTTP
