@testable import SwitchboardBenchCore
import Testing

/// Issue 16 item 2: a run of 100,000 connections says before it starts what the machine lacks
/// (descriptors, source addresses), instead of failing connection by connection.
@Suite("Connection capacity pre-flight")
struct ConnectionCapacityTests {
    @Test("100,000 connections under a 20,000-descriptor limit: refused with the limit and the fix")
    func descriptorLimit() throws {
        let reason = try #require(ConnectionCapacity.problem(connections: 100_000, sources: 8, descriptorLimit: 20_000, ephemeralPorts: 28_232))
        #expect(reason.contains("100064 file descriptors") && reason.contains("the limit is 20000") && reason.contains("ulimit -Hn"))
    }

    @Test("100,000 connections from one source address: refused, four loopback sources named")
    func sourceAddresses() throws {
        let reason = try #require(ConnectionCapacity.problem(connections: 100_000, sources: 0, descriptorLimit: 200_000, ephemeralPorts: 28_232))
        #expect(reason.contains("need 4 source addresses") && reason.contains("--source-addresses 127.0.0.1-4"))
        #expect(ConnectionCapacity.problem(connections: 100_000, sources: 3, descriptorLimit: 200_000, ephemeralPorts: 28_232) != nil)
    }

    @Test("what fits passes: 100,000 from 4 or 8 sources with the limit raised, 10,000 from one")
    func fits() {
        #expect(ConnectionCapacity.problem(connections: 100_000, sources: 4, descriptorLimit: 200_000, ephemeralPorts: 28_232) == nil)
        #expect(ConnectionCapacity.problem(connections: 100_000, sources: 8, descriptorLimit: 100_064, ephemeralPorts: 28_232) == nil)
        #expect(ConnectionCapacity.problem(connections: 10_000, sources: 0, descriptorLimit: 20_000, ephemeralPorts: 28_232) == nil)
        // Unknown limits (unreadable /proc) do not refuse a run.
        #expect(ConnectionCapacity.problem(connections: 100_000, sources: 0, descriptorLimit: nil, ephemeralPorts: nil) == nil)
    }

    @Test("this machine's own figures are read")
    func machine() throws {
        let limit = try #require(ConnectionCapacity.descriptorLimit())
        #expect(limit >= 64)
        let ports = try #require(ConnectionCapacity.ephemeralPorts())
        #expect(ports >= 1 && ports <= 65_536)
    }
}
