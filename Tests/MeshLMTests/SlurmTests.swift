import Foundation
import Testing

/// slurm/*.sbatch on a real one-node Slurm cluster (tools/slurm-cluster.sh): a job runs every
/// task of its allocation as one MPI world, and a failing rank fails the job with its one-line
/// message in the job's output.
@Suite(.serialized, SlurmCluster()) struct SlurmTests {
    @Test func meshJobRunsEveryTaskAsOneWorld() throws {
        let job = try SlurmCluster.submit("mesh.sbatch", sbatch: ["-n", "2", "-O"], arguments: ["--tp", "2"])
        #expect(job.state == "COMPLETED", "\(job.output)")
        #expect(job.exitCode == "0:0")
        let lines = job.output.split(separator: "\n").map(String.init)
        #expect(lines.contains("mesh: pp 1 × dp 1 × cp 1 × tp 2 = 2 ranks; rank order tp fastest, then cp, dp, pp"), "\(job.output)")
        // One row per rank, both in the same tensor group: the two tasks formed one world.
        let rows: [[String]] = lines.map { line in line.split(separator: " ").map(String.init) }
            .filter { row in row.first == "0" || row.first == "1" }
        #expect(rows.map { row in row[0] } == ["0", "1"], "\(job.output)")
        let tensorGroups: [String] = rows.map { row in row.count > 7 ? row[7] : "" }
        #expect(tensorGroups == ["0,1", "0,1"], "\(job.output)")
        #expect(lines.contains("meshlm-slurm: launcher: srun --mpi=pmix; binary: \(SlurmCluster.meshlm)"), "\(job.output)")
        #expect(lines.contains("meshlm-slurm: command: meshlm mesh --tp 2"))
    }

    @Test func impossibleMeshFailsTheJobWithOneMessage() throws {
        let job = try SlurmCluster.submit("mesh.sbatch", sbatch: ["-n", "2", "-O"], arguments: ["--tp", "3"])
        #expect(job.state == "FAILED", "\(job.output)")
        #expect(job.exitCode == "1:0")
        let messages = job.output.split(separator: "\n").filter { $0.hasPrefix("meshlm: error") }
        #expect(messages == ["meshlm: error: world size 2 is not divisible by pp 1 × cp 1 × tp 3 = 3, so no data-parallel degree dp fits"],
                "\(job.output)")
    }

    @Test func startingARunningClusterSaysSo() throws {
        let again = try Launcher.run("/bin/bash", [SlurmCluster.tool, "start"], timeout: 30)
        #expect(again.status == 0)
        #expect(again.lines == ["slurm-cluster: already running (idle) under \(URL(fileURLWithPath: SlurmCluster.configuration).deletingLastPathComponent().path)",
                                "export SLURM_CONF=\(SlurmCluster.configuration)"], "\(again.standardOutput)\(again.standardError)")
    }

    @Test func pretrainNeedsAConfig() throws {
        let job = try SlurmCluster.submit("pretrain.sbatch", sbatch: ["-n", "1"], arguments: ["--set", "train.steps=1"])
        #expect(job.state == "FAILED", "\(job.output)")
        #expect(job.output.contains("meshlm-slurm: error: usage: sbatch [-N nodes] [-n tasks] slurm/pretrain.sbatch CONFIG [--set key=value ...]"),
                "\(job.output)")
    }
}

/// A finished batch job as `scontrol show job` reports it, with its output file's text.
struct SlurmJob {
    let id: String
    let state: String
    let exitCode: String
    let output: String
}

/// Starts the cluster once for the suite (and stops it after, unless it was already running),
/// or cancels the suite when this machine cannot install Slurm.
struct SlurmCluster: SuiteTrait, TestScoping {
    static let tool = repositoryRoot.appendingPathComponent("tools/slurm-cluster.sh").path
    static var meshlm: String { Launcher.productsDirectory.appendingPathComponent("meshlm").path }
    @TaskLocal static var configuration = ""

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let wasRunning = try Launcher.run("/bin/bash", [Self.tool, "status"], timeout: 30).status == 0
        // The first start may install packages (apt-get), hence the long bound.
        let start = try Launcher.run("/bin/bash", [Self.tool, "start"], timeout: 900)
        if start.status == 3 {
            let reason = "SlurmTests skipped: this machine cannot install Slurm: \(start.standardError.trimmingCharacters(in: .whitespacesAndNewlines))"
            print(reason)
            try Test.cancel(Comment(rawValue: reason))
        }
        try #require(start.status == 0, "tools/slurm-cluster.sh start failed:\n\(start.standardOutput)\(start.standardError)")
        let export = start.lines.first { $0.hasPrefix("export SLURM_CONF=") }
        let configuration = try #require(export.map { String($0.dropFirst("export SLURM_CONF=".count)) })
        defer {
            if !wasRunning { _ = try? Launcher.run("/bin/bash", [Self.tool, "stop"], timeout: 60) }
        }
        try await Self.$configuration.withValue(configuration) { try await function() }
    }

    /// `sbatch SBATCH... slurm/SCRIPT ARGUMENTS...` from a fresh directory (the job's output
    /// lands there), then polls `scontrol show job` until the job ends (`sbatch --wait` polls
    /// far more slowly).
    static func submit(_ script: String, sbatch: [String], arguments: [String], timeout: Double = 60) throws -> SlurmJob {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-slurm-test-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let environment = ["SLURM_CONF": configuration, "MESHLM": meshlm]
        let scriptPath = repositoryRoot.appendingPathComponent("slurm/\(script)").path
        let submission = try Launcher.run("/usr/bin/env", ["sbatch", "--parsable", "--chdir", directory.path] + sbatch + [scriptPath] + arguments,
                                          environment: environment, timeout: 30)
        try #require(submission.status == 0, "sbatch failed: \(submission.standardError)")
        let id = String(submission.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines).prefix { $0 != ";" })

        let finalStates: Set<String> = ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"]
        let deadline = Date().addingTimeInterval(timeout)
        var fields: [String: String] = [:]
        while true {
            let show = try Launcher.run("/usr/bin/env", ["scontrol", "show", "job", "-o", id], environment: environment, timeout: 30)
            fields = Dictionary(show.standardOutput.split(whereSeparator: \.isWhitespace).compactMap { field in
                field.firstIndex(of: "=").map { (String(field[..<$0]), String(field[field.index(after: $0)...])) }
            }, uniquingKeysWith: { first, _ in first })
            if let state = fields["JobState"], finalStates.contains(state) { break }
            if Date() > deadline {
                _ = try? Launcher.run("/usr/bin/env", ["scancel", id], environment: environment, timeout: 30)
                Issue.record("job \(id) did not finish within \(timeout) s: \(show.standardOutput)")
                break
            }
            usleep(250_000)
        }
        let outputPath = fields["StdOut"] ?? ""
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "(no output file at '\(outputPath)')"
        return SlurmJob(id: id, state: fields["JobState"] ?? "?", exitCode: fields["ExitCode"] ?? "?", output: output)
    }
}
