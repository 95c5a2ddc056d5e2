import ArgumentParser
import Runtime

/// What every command body receives: the world, its log, and the compute threads of this rank.
struct JobContext {
    let world: Communicator
    let log: Log
    let threads: Int
    let cpu: CPUInfo
}

extension JobOptions {
    /// Runs `body` on every rank under `SPMDJob`'s failure policy, after the per-rank machine
    /// setup (CPU check, thread count, BLAS), and exits non-zero when it fails.
    func runJob(_ body: (JobContext) throws -> Void) throws {
        let status = SPMDJob.run(verbose: verbose, setup: { world, log in
            let cpu = CPUInfo()
            let missing = cpu.missingFeatures
            guard missing.isEmpty else {
                throw JobError("this binary was built for \(missing.joined(separator: ", ")) but this CPU (\(cpu.brand)) lacks it; rebuild on this machine or set MESHLM_TARGET_CPU to an older CPU when building (docs/architecture.md, Build)")
            }
            let node = try world.splitByNode()
            let threads = self.threads ?? max(1, CPUInfo.availableCores / node.size)
            try MachineSetup.configure(threads: threads, cpu: cpu, log: log)
            let context = JobContext(world: world, log: log, threads: threads, cpu: cpu)
            for line in MachineSetup.report(context: context) { log.debug(line) }
            return context
        }, body: body)
        if status != 0 { throw ExitCode(status) }
    }
}
