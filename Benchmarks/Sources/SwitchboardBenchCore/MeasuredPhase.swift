import CLiburing
import SwitchboardIO

/// The clock and quota of one measured phase of a protocol template (broker: the channel
/// messages; rpc: each form): what is warm-up, when sending stops (`--duration` after the
/// warm-up, or `--messages` measured sends), and when the last measured message completed.
///
/// Lifecycle: `idle` (nothing is measured, nothing may be sent) until
/// `TemplateEngine.runMeasuredPhase` starts one in `engine.measured`; the template asks `admit`
/// before every send and calls `completed` for every measured answer; the engine's loop stops
/// sending at the end (`stopIfDue`) and then drains. Thread rules: the engine's thread only.
struct MeasuredPhase {
    /// Sends before this (monotonic ns) are warm-up: sent, answered, not counted.
    let measureStart: Int64
    /// Sending stops here (`.max` for a `--messages` run, which stops on its quota).
    let measureEnd: Int64
    /// Measured sends still allowed (`--messages`; `.max` for a timed run).
    private(set) var quotaLeft: Int
    /// False once the duration ended or the quota is spent: only the drain is left.
    private(set) var sending = true
    /// When the last measured message completed (a `--messages` run's measured time ends here).
    private(set) var lastCompletion: Int64 = 0

    /// Before the first phase: nothing measured, sending stopped.
    static let idle = MeasuredPhase(measureStart: .max, measureEnd: .max, quotaLeft: 0, sending: false)

    private init(measureStart: Int64, measureEnd: Int64, quotaLeft: Int, sending: Bool) {
        self.measureStart = measureStart
        self.measureEnd = measureEnd
        self.quotaLeft = quotaLeft
        self.sending = sending
    }

    init(start: Int64, options: TemplateOptions) {
        measureStart = start + options.warmupNanos
        measureEnd = options.messages == nil ? measureStart + options.durationNanos : .max
        quotaLeft = options.messages ?? .max
    }

    /// Asked before sending at `now`: `.stop` once sending stopped (the quota is spent now or
    /// was before), else whether the message is warm-up or measured (counted against the quota).
    mutating func admit(_ now: Int64) -> Admission {
        guard sending else { return .stop }
        guard now >= measureStart else { return .warmup }
        guard quotaLeft > 0 else {
            sending = false
            return .stop
        }
        quotaLeft -= 1
        return .measured
    }

    enum Admission { case warmup, measured, stop }

    /// True for a message sent at `sentAt` inside the measured window.
    func isMeasured(sentAt: Int64) -> Bool { sentAt >= measureStart }

    /// A measured message completed at `now`.
    mutating func completed(_ now: Int64) { lastCompletion = now }

    /// Ends sending once the measured duration is over.
    mutating func stopIfDue(_ now: Int64) {
        if sending && now >= measureEnd { sending = false }
    }

    /// The measured time: the duration (or less, when the phase ended early: a close or a
    /// stall), or for a `--messages` run up to the last measured completion. Never 0.
    func measuredNanos(end: Int64, options: TemplateOptions) -> Int64 {
        options.messages == nil ? min(options.durationNanos, max(end - measureStart, 1)) : max(lastCompletion - measureStart, 1)
    }
}

/// What a measured phase cost and how long it measured, for `TemplatePhase`.
struct MeasuredPhaseCost {
    var clientCPUSeconds: Double
    var server: CPUTimes?
    var measuredNanos: Int64

    /// Writes the cost, the measured time and the rate (`phase.completed` per measured second).
    func record(into phase: inout TemplatePhase) {
        phase.clientCPUSeconds = clientCPUSeconds
        if let server {
            phase.serverUserSeconds = server.userSeconds
            phase.serverSystemSeconds = server.systemSeconds
        }
        phase.measuredSeconds = Double(measuredNanos) / 1e9
        phase.perSecond = Double(phase.completed) / phase.measuredSeconds
    }
}

extension TemplateEngine {
    /// Runs one measured phase on every socket: warm-up, then load until `--duration` (or the
    /// `--messages` quota), then the drain of what is still due. Stops early when a connection
    /// closes, or when `progress()` stood still for `--drain` (what is due then counts missing).
    /// Client and server CPU (`--server-pid`) are sampled around the whole phase, warm-up and
    /// drain included, so the server's CPU divides by everything it served.
    ///
    /// The phase's clock is `measured` (set here, left as it ended for the template's totals):
    /// the template's sends ask it (`admit`) and its answers report to it (`completed`).
    ///
    /// - Parameters:
    ///   - start: sends the first window, at the phase's start time.
    ///   - progress: grows with every answer, delivery, wrong reply or error.
    ///   - outstanding: messages sent and not yet fully answered.
    func runMeasuredPhase(start: (Int64) -> Void, progress: () -> Int, outstanding: () -> Int) -> MeasuredPhaseCost {
        let begin = sb_monotonic_ns()
        measured = MeasuredPhase(start: begin, options: options)
        let cpuStart = processCPUSeconds()
        let serverStart = options.serverPID.flatMap { readCPUTimes(pid: $0) }
        start(begin)
        var stalledSince = sb_monotonic_ns()
        var lastProgress = -1
        let drainNanos = options.drainNanos
        pump(until: .max, tick: { [self] now in
            measured.stopIfDue(now)
            let p = progress()
            if p != lastProgress {
                lastProgress = p
                stalledSince = now
            }
        }) { [self] in
            if closedCount > 0 { return true }
            if !measured.sending && outstanding() == 0 { return true }
            return sb_monotonic_ns() - stalledSince > drainNanos
        }
        let end = sb_monotonic_ns()
        let serverEnd = options.serverPID.flatMap { readCPUTimes(pid: $0) }
        let server = serverStart.flatMap { a in serverEnd.map { $0 - a } }
        return MeasuredPhaseCost(clientCPUSeconds: processCPUSeconds() - cpuStart, server: server,
                                 measuredNanos: measured.measuredNanos(end: end, options: options))
    }
}
