import Foundation
import Testing

/// slurm/*.sbatch on a real one-node Slurm cluster (tools/slurm-cluster.sh): a job runs every
/// task of its allocation as one MPI world, a failing rank fails the job with its one-line
/// message in the job's output, and a requeued job runs again into the same output file.
@Suite(.serialized, SlurmCluster()) struct SlurmTests {
    @Test func meshJobRunsEveryTaskAsOneWorld() throws {
        let directory = try SlurmCluster.jobDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let job = try SlurmCluster.submit("mesh.sbatch", sbatch: ["-n", "2", "-O"], arguments: ["--tp", "2"], in: directory)
        #expect(job.state == "COMPLETED", "\(job.output)")
        #expect(job.exitCode == "0:0")
        #expect(job.outputPath == directory.appendingPathComponent("meshlm-mesh-\(job.id).out").path)
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
        let directory = try SlurmCluster.jobDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let job = try SlurmCluster.submit("mesh.sbatch", sbatch: ["-n", "2", "-O"], arguments: ["--tp", "3"], in: directory)
        #expect(job.state == "FAILED", "\(job.output)")
        #expect(job.exitCode == "1:0")
        let messages = job.output.split(separator: "\n").filter { $0.hasPrefix("meshlm: error") }
        #expect(messages == ["meshlm: error: world size 2 is not divisible by pp 1 × cp 1 × tp 3 = 3, so no data-parallel degree dp fits"],
                "\(job.output)")
    }

    /// Pretraining on 2 tasks writes the run's metrics; requeued, the job runs again under the
    /// same ID, appending a second run (marked as a requeue) to the same output file.
    @Test func pretrainJobTrainsAndRunsAgainWhenRequeued() throws {
        let directory = try SlurmCluster.jobDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let shards = try SlurmCluster.shards(in: directory)
        let run = directory.appendingPathComponent("run")
        let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path
        let overrides = ["data.train=\(shards)", "data.eval=\(shards)", "run.dir=\(run.path)", "train.steps=3",
                         "train.log_interval=1", "train.eval_interval=0", "train.seq_len=32", "train.global_batch_size=4",
                         "train.micro_batch_size=2", "model.vocab_size=263", "model.hidden_size=32", "model.intermediate_size=72",
                         "model.num_hidden_layers=2", "model.num_attention_heads=4", "model.num_key_value_heads=2"]
        let job = try SlurmCluster.submit("pretrain.sbatch", sbatch: ["-n", "2", "-O"],
                                          arguments: [config] + overrides.flatMap { ["--set", $0] }, in: directory)
        #expect(job.state == "COMPLETED", "\(job.output)")
        #expect(job.outputPath == directory.appendingPathComponent("meshlm-pretrain-\(job.id).out").path)
        #expect(job.output.contains("mesh pp 1 × dp 2 × cp 1 × tp 1 = 2 ranks"), "\(job.output)")
        let metrics = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        #expect(metrics.split(separator: "\n").count == 3, "\(metrics)")
        #expect(!job.output.contains("requeued"))

        let again = try SlurmCluster.requeue(job)
        #expect(again.state == "COMPLETED", "\(again.output)")
        #expect(again.restarts == 1)
        let headers = again.output.split(separator: "\n").filter { $0.hasPrefix("meshlm-slurm: ==== job \(job.id) (meshlm-pretrain) run ") }
        #expect(headers.count == 2, "\(again.output)")
        #expect(headers.last?.hasPrefix("meshlm-slurm: ==== job \(job.id) (meshlm-pretrain) run 2 started ") == true)
        #expect(again.output.contains("meshlm-slurm: requeued (SLURM_RESTART_COUNT=1)"), "\(again.output)")

        // The run's metrics draw.
        let plot = try Launcher.plain("meshlm", ["plot", run.path])
        #expect(plot.status == 0, "\(plot.standardError)")
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("plot.svg").path))
    }

    /// `scancel --signal=TERM --batch` (what a preemption or an administrator sends the batch
    /// script) stops a pretraining job cleanly under either launcher: every rank saves a
    /// checkpoint and the job completes with 0. The script passes the signal on as SIGUSR1: srun
    /// cancels the step on SIGTERM, and Open MPI's mpirun aborts the job.
    @Test(arguments: ["srun", "mpirun"]) func sigtermStopsAPretrainJobWithACheckpoint(launcher: String) throws {
        let directory = try SlurmCluster.jobDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let shards = try SlurmCluster.shards(in: directory)
        let run = directory.appendingPathComponent("run")
        let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path
        let overrides = ["data.train=\(shards)", "data.eval=\(shards)", "run.dir=\(run.path)", "train.steps=100000",
                         "train.log_interval=1", "train.eval_interval=0", "train.seq_len=32", "model.hidden_size=32",
                         "model.intermediate_size=64", "model.num_hidden_layers=1"]
        let id = try SlurmCluster.start("pretrain.sbatch", sbatch: ["-n", "2", "-O"], arguments: [config] + overrides.flatMap { ["--set", $0] },
                                        in: directory, environment: ["MESHLM_LAUNCHER": launcher])
        let metrics = run.appendingPathComponent("metrics.jsonl").path
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, ((try? String(contentsOfFile: metrics, encoding: .utf8))?.split(separator: "\n").count ?? 0) < 3 {
            usleep(100_000)
        }
        let cancel = try SlurmCluster.slurm(["scancel", "--batch", "--signal=TERM", id])
        #expect(cancel.status == 0, "\(cancel.standardError)")
        let job = try SlurmCluster.wait(for: id, restarts: 0)
        #expect(job.state == "COMPLETED" && job.exitCode == "0:0", "\(job.state) \(job.exitCode): \(job.output)")
        #expect(job.output.contains("pretrain: SIGUSR1 received; saved "), "\(job.output)")
        let latest = try String(contentsOf: run.appendingPathComponent("checkpoints/latest"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoints/\(latest)/COMMITTED").path))
    }

    /// LoRA fine-tuning on 2 tasks through slurm/sft.sbatch, from the imported Qwen2 base of
    /// SFTCommandTests on the shipped instruction set.
    @Test func sftJobFineTunes() throws {
        let directory = try SlurmCluster.jobDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let run = directory.appendingPathComponent("run")
        let data = repositoryRoot.appendingPathComponent("data/sft").path
        let overrides = ["run.dir=\(run.path)", "data.train=\(data)/train.jsonl", "data.eval=\(data)/eval.jsonl", "train.steps=3",
                         "train.log_interval=1", "train.eval_interval=0", "train.seq_len=96", "train.global_batch_size=4",
                         "train.micro_batch_size=2", "checkpoint.interval=0"] + SFTCommandTests.qwenModel
        let job = try SlurmCluster.submit("sft.sbatch", sbatch: ["-n", "2", "-O"],
                                          arguments: [repositoryRoot.appendingPathComponent("configs/sft/tiny-lora.yaml").path,
                                                      "--init-from", SFTCommandTests.base, "--tokenizer", "bytes"]
                                              + overrides.flatMap { ["--set", $0] }, in: directory)
        #expect(job.state == "COMPLETED", "\(job.output)")
        #expect(job.outputPath == directory.appendingPathComponent("meshlm-sft-\(job.id).out").path)
        #expect(job.output.contains("supervised tokens, packed into"), "\(job.output)")
        let metrics = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        #expect(metrics.split(separator: "\n").count == 3, "\(metrics)")
    }

    /// LoRA DPO on 2 tasks through slurm/dpo.sbatch, from the same base, on the first pairs of
    /// the shipped preference set: the reference scored and cached, then the steps.
    @Test func dpoJobAligns() throws {
        let directory = try SlurmCluster.jobDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let run = directory.appendingPathComponent("run")
        let overrides = ["run.dir=\(run.path)", "data.train=\(DPOCommandTests.data.train)", "data.eval=\(DPOCommandTests.data.eval)",
                         "train.steps=3", "train.log_interval=1", "train.eval_interval=0", "train.seq_len=256",
                         "train.global_batch_size=4", "train.micro_batch_size=2", "checkpoint.interval=0", "lora.r=8"]
            + SFTCommandTests.qwenModel
        let job = try SlurmCluster.submit("dpo.sbatch", sbatch: ["-n", "2", "-O"],
                                          arguments: [repositoryRoot.appendingPathComponent("configs/dpo/tiny-lora.yaml").path,
                                                      "--init-from", SFTCommandTests.base, "--tokenizer", "bytes"]
                                              + overrides.flatMap { ["--set", $0] }, in: directory)
        #expect(job.state == "COMPLETED", "\(job.output)")
        #expect(job.outputPath == directory.appendingPathComponent("meshlm-dpo-\(job.id).out").path)
        #expect(job.output.contains("reference log-probabilities (train"), "\(job.output)")
        let metrics = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        #expect(metrics.split(separator: "\n").filter { $0.contains("\"rewards/margins\"") }.count == 3, "\(metrics)")
    }

    @Test func pretrainNeedsAConfig() throws {
        let directory = try SlurmCluster.jobDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let job = try SlurmCluster.submit("pretrain.sbatch", sbatch: ["-n", "1"], arguments: ["--set", "train.steps=1"], in: directory)
        #expect(job.state == "FAILED", "\(job.output)")
        #expect(job.output.contains("meshlm-slurm: error: usage: sbatch [-N nodes] [-n tasks] slurm/pretrain.sbatch CONFIG [--set key=value ...]"),
                "\(job.output)")
    }

    @Test func startingARunningClusterSaysSo() throws {
        let again = try Launcher.run("/bin/bash", [SlurmCluster.tool, "start"], timeout: 30)
        #expect(again.status == 0)
        let directory = URL(fileURLWithPath: SlurmCluster.configuration).deletingLastPathComponent().path
        #expect(again.lines == ["slurm-cluster: already running (idle) under \(directory)", "export SLURM_CONF=\(SlurmCluster.configuration)"],
                "\(again.standardOutput)\(again.standardError)")
    }
}

/// A batch job as `scontrol show job` reports it once it ended, with its output file's text.
struct SlurmJob {
    let id: String
    let state: String
    let exitCode: String
    let restarts: Int
    let outputPath: String
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
            let why = start.standardError.split(separator: "\n").last.map(String.init) ?? "tools/slurm-cluster.sh start exited with 3"
            let reason = "SlurmTests skipped: this machine cannot install Slurm (\(why))"
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

    /// A fresh directory for one test's jobs: the submit directory, where their output lands.
    static func jobDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-slurm-test-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// Token shards of the shipped eval corpus, under `directory`.
    static func shards(in directory: URL) throws -> String {
        let shards = directory.appendingPathComponent("shards").path
        let corpus = repositoryRoot.appendingPathComponent("data/corpus/eval.jsonl.zst").path
        let made = try Launcher.plain("meshlm", ["data", "shard-text", "--input", corpus, "--output", shards])
        try #require(made.status == 0, "\(made.standardError)")
        return shards
    }

    private static var environment: [String: String] { ["SLURM_CONF": configuration, "MESHLM": meshlm] }

    static func slurm(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Launch {
        try Launcher.run("/usr/bin/env", arguments, environment: environment.merging(extra) { _, new in new }, timeout: 30)
    }

    /// `sbatch SBATCH... slurm/SCRIPT ARGUMENTS...` with `--chdir directory`, then waits for the job.
    static func submit(_ script: String, sbatch: [String], arguments: [String], in directory: URL) throws -> SlurmJob {
        try wait(for: try start(script, sbatch: sbatch, arguments: arguments, in: directory), restarts: 0)
    }

    /// Submits like `submit` (with `environment` added to the job's) and returns the job ID at once.
    static func start(_ script: String, sbatch: [String], arguments: [String], in directory: URL,
                      environment: [String: String] = [:]) throws -> String {
        let scriptPath = repositoryRoot.appendingPathComponent("slurm/\(script)").path
        let submission = try slurm(["sbatch", "--parsable", "--chdir", directory.path] + sbatch + [scriptPath] + arguments,
                                   environment: environment)
        try #require(submission.status == 0, "sbatch failed: \(submission.standardError)")
        return String(submission.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines).prefix { $0 != ";" })
    }

    /// `scontrol requeue` of an ended job, started again within about a second (not after
    /// `cred_expire` + 1 s), then waits for the rerun.
    ///
    /// Not `StartTime=now`: when a run ends, slurmd revokes the job's credential as of that
    /// second (the time in slurmctld's terminate request), and accepts a credential reissued for
    /// the requeued run only if it was created in a later second (ctime > revoke time, whole
    /// seconds). A rerun started within the same second is refused -- slurmd "Job J already
    /// killed, do not launch batch job", slurmctld "Killing non-startable batch JobId=J: Job
    /// credential revoked" -- and the job ends FAILED without its script running. `now+1` is
    /// read by scontrol after the job was seen ended, hence after the revocation: the rerun
    /// cannot start, so its credential cannot be created, before the following second.
    static func requeue(_ job: SlurmJob) throws -> SlurmJob {
        let requeue = try slurm(["scontrol", "requeue", job.id])
        try #require(requeue.status == 0, "scontrol requeue: \(requeue.standardError)")
        let start = try slurm(["scontrol", "update", "jobid=\(job.id)", "StartTime=now+1"])
        #expect(start.status == 0, "scontrol update StartTime=now+1: \(start.standardError)")
        return try wait(for: job.id, restarts: job.restarts + 1)
    }

    /// Polls `scontrol show job` every 0.25 s (`sbatch --wait` polls far more slowly) until the
    /// job has been restarted `restarts` times and has ended.
    static func wait(for id: String, restarts: Int, timeout: Double = 60) throws -> SlurmJob {
        let finalStates: Set<String> = ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"]
        let deadline = Date().addingTimeInterval(timeout)
        var fields: [String: String] = [:]
        while true {
            let show = try slurm(["scontrol", "show", "job", "-o", id])
            fields = Dictionary(show.standardOutput.split(whereSeparator: \.isWhitespace).compactMap { field in
                field.firstIndex(of: "=").map { (String(field[..<$0]), String(field[field.index(after: $0)...])) }
            }, uniquingKeysWith: { first, _ in first })
            if let state = fields["JobState"], finalStates.contains(state), Int(fields["Restarts"] ?? "") ?? 0 >= restarts { break }
            if Date() > deadline {
                _ = try? slurm(["scancel", id])
                Issue.record("job \(id) did not finish within \(timeout) s: \(show.standardOutput)")
                break
            }
            usleep(250_000)
        }
        let outputPath = fields["StdOut"] ?? ""
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "(no output file at '\(outputPath)')"
        return SlurmJob(id: id, state: fields["JobState"] ?? "?", exitCode: fields["ExitCode"] ?? "?",
                        restarts: Int(fields["Restarts"] ?? "") ?? 0, outputPath: outputPath, output: output)
    }
}
