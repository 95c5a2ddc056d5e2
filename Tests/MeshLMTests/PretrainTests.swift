import Foundation
import Testing

/// Shards of the shipped eval corpus, made once per test process with `meshlm data shard-text`.
let testShards: URL = {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-shards-\(getpid())")
    let corpus = repositoryRoot.appendingPathComponent("data/corpus/eval.jsonl.zst").path
    _ = try? Launcher.plain("meshlm", ["data", "shard-text", "--input", corpus, "--output", directory.path])
    return directory
}()

/// Reads `step → loss` from a run's metrics.jsonl.
func losses(in run: URL) throws -> [Int: Double] {
    let text = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    var result: [Int: Double] = [:]
    for line in text.split(separator: "\n") {
        guard let row = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let step = row["step"] as? Int, let loss = row["loss"] as? Double else { continue }
        result[step] = loss
    }
    return result
}

/// `meshlm pretrain` end to end under mpirun: every data-parallel layout and ZeRO stage gives
/// the loss curve of one rank (DESIGN §3).
@Suite(.serialized) struct PretrainTests {
    let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path
    /// Smaller than tiny.yaml's model so 13 debug-build runs stay fast; still GQA and odd sizes.
    let smallModel = ["--set", "model.vocab_size=263", "--set", "model.hidden_size=32", "--set", "model.intermediate_size=72",
                      "--set", "model.num_hidden_layers=2", "--set", "model.num_attention_heads=4",
                      "--set", "model.num_key_value_heads=2"]

    func pretrain(ranks: Int, zero: Int, steps: Int = 20, extra: [String] = []) throws -> (Launch, URL) {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-run-\(getpid())-\(ranks)-\(zero)-\(UUID().uuidString.prefix(6))")
        let launch = try Launcher.mpirun(ranks, "meshlm", ["pretrain", "--config", config,
            "--set", "data.train=\(testShards.path)", "--set", "data.eval=\(testShards.path)", "--set", "run.dir=\(run.path)",
            "--set", "train.steps=\(steps)", "--set", "train.log_interval=1", "--set", "train.eval_interval=0",
            "--set", "train.seq_len=64", "--set", "train.global_batch_size=8", "--set", "train.micro_batch_size=2",
            "--set", "parallel.zero_stage=\(zero)"] + smallModel + extra)
        return (launch, run)
    }

    @Test func everyDataParallelLayoutEqualsOneRank() throws {
        let (reference, referenceRun) = try pretrain(ranks: 1, zero: 0)
        #expect(reference.status == 0, "\(reference.standardError)")
        let expected = try losses(in: referenceRun)
        #expect(expected.count == 20)
        // The loss falls: the run learns.
        #expect((expected[19] ?? 99) < (expected[0] ?? 0) - 0.5)
        for ranks in [1, 2, 4] {
            var byStage: [Int: [Int: Double]] = [0: expected]
            for zero in 0...3 where !(ranks == 1 && zero == 0) {
                let (launch, run) = try pretrain(ranks: ranks, zero: zero)
                #expect(launch.status == 0, "dp \(ranks) zero \(zero): \(launch.standardError)")
                let got = try losses(in: run)
                byStage[zero] = got
                var worst = 0.0
                for (step, loss) in expected { worst = max(worst, abs((got[step] ?? .nan) - loss) / abs(loss)) }
                print("dp \(ranks) ZeRO-\(zero): 20 steps, max relative loss difference to one rank \(worst)")
                #expect(got.count == 20)
                #expect(worst <= 1e-6, "dp \(ranks) zero \(zero)")
                // One rank, ZeRO-1: the same arithmetic in the same order as plain training.
                if ranks == 1 && zero == 1 { #expect(got == expected, "dp 1 zero 1 is not bitwise equal") }
            }
            // ZeRO-2 and -3 reduce each micro-batch's gradients the same way: bitwise equal.
            #expect(byStage[2] == byStage[3], "dp \(ranks): ZeRO-2 and ZeRO-3 differ")
        }
    }

    /// A run stopped at step 5 (`train.stop_at_step`, which saves a checkpoint) and started
    /// again continues bitwise as if uninterrupted on the same mesh, and within float
    /// reassociation on another dp degree and ZeRO stage (the checkpoint reshards on load).
    @Test func resumesBitwiseOnTheSameMeshAndReshardsOnAnother() throws {
        func runDirectory(_ name: String) -> URL {
            FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-resume-\(getpid())-\(name)")
        }
        func train(_ ranks: Int, _ zero: Int, _ run: URL, stopAt: Int = 0, extra: [String] = []) throws -> Launch {
            try Launcher.mpirun(ranks, "meshlm", ["pretrain", "--config", config,
                "--set", "data.train=\(testShards.path)", "--set", "data.eval=\(testShards.path)", "--set", "run.dir=\(run.path)",
                "--set", "train.steps=10",
                "--set", "train.log_interval=1", "--set", "train.eval_interval=0", "--set", "train.seq_len=64",
                "--set", "train.global_batch_size=8", "--set", "train.micro_batch_size=2", "--set", "train.stop_at_step=\(stopAt)",
                "--set", "parallel.zero_stage=\(zero)"] + smallModel + extra)
        }
        let whole = runDirectory("whole")
        let reference = try train(2, 1, whole)
        #expect(reference.status == 0, "\(reference.standardError)")
        let expected = try losses(in: whole)
        #expect(expected.count == 10)

        let resumed = runDirectory("same")
        // Saves at steps 2 and 4 are asynchronous (copied lazily by steps 2 and 4's optimizer),
        // the one at the stop (5) is copied at the end of the run.
        let first = try train(2, 1, resumed, stopAt: 5, extra: ["--set", "checkpoint.interval=2", "--set", "checkpoint.keep=5"])
        #expect(first.status == 0, "\(first.standardError)")
        #expect(FileManager.default.fileExists(atPath: resumed.appendingPathComponent("checkpoints/step_00000005/COMMITTED").path))
        let second = try train(2, 1, resumed)
        #expect(second.status == 0, "\(second.standardError)")
        #expect(second.standardOutput.contains("pretrain: resuming at step 5"))
        #expect(try losses(in: resumed) == expected, "resumed run differs from the uninterrupted one")
        let fromLazy = try train(2, 1, resumed, extra: ["--resume-from", resumed.appendingPathComponent("checkpoints/step_00000004").path])
        #expect(fromLazy.status == 0, "\(fromLazy.standardError)")
        #expect(fromLazy.standardOutput.contains("pretrain: resuming at step 4"))
        #expect(try losses(in: resumed) == expected, "the run resumed from the lazily copied step 4 differs from the uninterrupted one")

        // Saved on dp 4 with ZeRO-3, continued on dp 2 with ZeRO-1 and on one rank.
        for (ranks, zero) in [(2, 1), (1, 0)] {
            let moved = runDirectory("moved-\(ranks)")
            let saved = try train(4, 3, moved, stopAt: 5)
            #expect(saved.status == 0, "\(saved.standardError)")
            let launch = try train(ranks, zero, moved)
            #expect(launch.status == 0, "\(launch.standardError)")
            let got = try losses(in: moved)
            var worst = 0.0
            for (step, loss) in expected { worst = max(worst, abs((got[step] ?? .nan) - loss) / loss) }
            print("saved on dp 4 ZeRO-3, resumed on dp \(ranks) ZeRO-\(zero): max relative loss difference \(worst)")
            #expect(got.count == 10)
            #expect(worst <= 1e-6)
        }
    }

    /// `train.freeze` from the command line: a run with the embedding and layer 0 frozen (no
    /// moments for them in its checkpoints) stopped at step 3 resumes bitwise on dp 2 ZeRO-2.
    @Test func frozenRunResumesBitwise() throws {
        let freeze = ["--set", "train.freeze=['model.embed_tokens.weight', 'model.layers.0.*']"]
        let (whole, wholeRun) = try pretrain(ranks: 2, zero: 2, steps: 6, extra: freeze)
        #expect(whole.status == 0, "\(whole.standardError)")
        #expect(whole.standardOutput.contains("memory per rank"))
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-frozen-\(getpid())-\(UUID().uuidString.prefix(6))")
        let into = ["--set", "run.dir=\(run.path)"]
        let (first, _) = try pretrain(ranks: 2, zero: 2, steps: 6, extra: freeze + into + ["--set", "train.stop_at_step=3"])
        #expect(first.status == 0, "\(first.standardError)")
        let (second, _) = try pretrain(ranks: 2, zero: 2, steps: 6, extra: freeze + into)
        #expect(second.status == 0 && second.standardOutput.contains("pretrain: resuming at step 3"), "\(second.standardError)")
        #expect(try losses(in: run) == losses(in: wholeRun), "the resumed frozen run differs from the uninterrupted one")
    }

    @Test func sameSeedSameLossesRunAfterRun() throws {
        let (first, firstRun) = try pretrain(ranks: 2, zero: 1, steps: 5)
        let (second, secondRun) = try pretrain(ranks: 2, zero: 1, steps: 5)
        #expect(first.status == 0 && second.status == 0)
        #expect(try losses(in: firstRun) == losses(in: secondRun))
    }
}

/// Bad inputs to `meshlm pretrain`: each one message, printed once, exit ≠ 0, and no metrics
/// file that looks like a finished run.
@Suite(.serialized) struct PretrainErrorTests {
    let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path

    func failure(_ ranks: Int, _ sets: [String]) throws -> String {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-bad-\(getpid())-\(UUID().uuidString.prefix(6))")
        var arguments = ["pretrain", "--config", config, "--set", "run.dir=\(run.path)", "--set", "data.train=\(testShards.path)",
                         "--set", "data.eval=\(testShards.path)", "--set", "train.steps=3"]
        for set in sets { arguments += ["--set", set] }
        let launch = try Launcher.mpirun(ranks, "meshlm", arguments, timeout: 120)
        #expect(launch.status != 0)
        let messages = launch.standardError.split(separator: "\n").filter { $0.hasPrefix("meshlm: error") }
        #expect(messages.count == 1, "\(launch.standardError)")
        return messages.first.map(String.init) ?? ""
    }

    @Test func missingAndMalformedShards() throws {
        #expect(try failure(2, ["data.train=/nonexistent/shards"]) == "meshlm: error: /nonexistent/shards: no such file or directory")
        let broken = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-broken-\(getpid())")
        try? FileManager.default.removeItem(at: broken)
        try FileManager.default.copyItem(at: testShards, to: broken)
        let shard = try FileManager.default.contentsOfDirectory(atPath: broken.path).first { $0.hasSuffix(".h5") } ?? "missing.h5"
        try Data("not an HDF5 file".utf8).write(to: broken.appendingPathComponent(shard))
        let message = try failure(2, ["data.train=\(broken.path)"])
        #expect(message.hasPrefix("meshlm: error: "))
        #expect(message.contains(shard), "\(message)")
    }

    @Test func sequenceLongerThanTheData() throws {
        let message = try failure(2, ["train.seq_len=500000", "model.max_position_embeddings=600000"])
        #expect(message.hasPrefix("meshlm: error: \(testShards.path): sequence length 500000 needs at least 500001 tokens, but the data holds "))
    }

    @Test func configsThatDoNotFitTheMesh() throws {
        #expect(try failure(3, []) == "meshlm: error: global batch size 16 must be divisible by data parallel degree 3 × micro batch size 4 = 12")
        #expect(try failure(2, ["parallel.dp=4"]) == "meshlm: error: world size 2 is not pp 1 × dp 4 × cp 1 × tp 1 = 4")
        #expect(try failure(2, ["parallel.cp=2"]).hasPrefix("meshlm: error: --set: key 'parallel.cp': value 2 is invalid: only 1 is supported so far"))
        #expect(try failure(3, ["parallel.tp=3"]) == "meshlm: error: tensor parallel degree tp 3 must divide num_attention_heads 4")
        #expect(try failure(1, ["model.vocab_size=200"]) == "meshlm: error: \(testShards.path): the data's vocabulary (259 ids) does not fit model.vocab_size 200")
        #expect(try failure(1, ["optimizer.lr=-1"]) == "meshlm: error: --set: key 'optimizer.lr': value -1.0 is invalid: must be positive")
    }

    @Test func divergenceStopsWithTheStep() throws {
        let message = try failure(2, ["optimizer.lr=1e30", "optimizer.warmup_steps=0", "optimizer.grad_clip=0",
                                       "model.hidden_size=32", "model.intermediate_size=64", "model.num_hidden_layers=1"])
        #expect(message.hasPrefix("meshlm: error: step "), "\(message)")
        #expect(message.contains("stopping"))
    }
}

/// Preemption: SIGUSR1 to the ranks (as mpirun or srun forward Slurm's `--signal=B:USR1@…`)
/// makes every rank stop at the same step with a committed checkpoint, exit 0, and the next
/// start resumes. (The ranks are signalled directly: processes this test harness starts inherit
/// a mask that blocks SIGUSR1 in mpirun itself.)
@Suite(.serialized) struct PreemptionTests {
    @Test func stopSignalSavesACheckpointAndTheRunResumes() throws {
        let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-preempt-\(getpid())")
        let arguments = ["pretrain", "--config", config, "--set", "run.dir=\(run.path)", "--set", "data.train=\(testShards.path)",
                         "--set", "data.eval=\(testShards.path)", "--set", "train.steps=100000", "--set", "train.log_interval=1",
                         "--set", "train.eval_interval=0", "--set", "train.seq_len=32", "--set", "model.hidden_size=32",
                         "--set", "model.intermediate_size=64", "--set", "model.num_hidden_layers=1"]
        // Send SIGUSR1 to the ranks once a few steps are logged.
        let metrics = run.appendingPathComponent("metrics.jsonl").path
        let signaller = Thread {
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                let rows = (try? String(contentsOfFile: metrics, encoding: .utf8))?.split(separator: "\n").count ?? 0
                if rows >= 3 { break }
                usleep(100_000)
            }
            let kill = Process()
            kill.executableURL = URL(fileURLWithPath: "/usr/bin/pkill")
            kill.arguments = ["-USR1", "-f", "meshlm pretrain .*\(run.path)"]
            try? kill.run()
            kill.waitUntilExit()
        }
        signaller.start()
        let first = try Launcher.mpirun(2, "meshlm", arguments, timeout: 90)
        #expect(first.status == 0, "\(first.standardError)")
        let stopLine = first.standardOutput.split(separator: "\n").first { $0.contains("received; saved") }
        #expect(stopLine?.hasPrefix("pretrain: SIGUSR1 received; saved ") == true, "\(first.standardOutput)")
        let latest = try String(contentsOf: run.appendingPathComponent("checkpoints/latest"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoints/\(latest)/COMMITTED").path))
        let step = Int(latest.dropFirst("step_".count)) ?? -1
        #expect(step >= 3)
        // The next start resumes there (stopping right after, at stop_at_step).
        let second = try Launcher.mpirun(2, "meshlm", arguments + ["--set", "train.stop_at_step=\(step + 2)"], timeout: 90)
        #expect(second.status == 0, "\(second.standardError)")
        #expect(second.standardOutput.contains("pretrain: resuming at step \(step)"))
    }

    /// SIGTERM to the launcher (what `kill PID` and batch systems send) stops the job cleanly:
    /// Open MPI's mpirun would abort on it and kill the ranks a second later, so
    /// tools/mpirun-stoppable.sh passes it on as SIGUSR1; every rank saves, the job exits 0.
    @Test func sigtermToTheLauncherSavesAndExitsZero() throws {
        let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-sigterm-\(getpid())")
        let log = run.path + ".log"
        defer { try? FileManager.default.removeItem(at: run); try? FileManager.default.removeItem(atPath: log) }
        let meshlm = Launcher.productsDirectory.appendingPathComponent("meshlm").path
        let script = repositoryRoot.appendingPathComponent("tools/mpirun-stoppable.sh").path
        let pid = try Launcher.spawnWithDefaultSignals("/bin/bash", [
            script, "-np", "2", "--oversubscribe", "--allow-run-as-root", "-x", "OPENBLAS_NUM_THREADS=1", meshlm,
            "pretrain", "--config", config, "--set", "run.dir=\(run.path)", "--set", "data.train=\(testShards.path)",
            "--set", "data.eval=\(testShards.path)", "--set", "train.steps=100000", "--set", "train.log_interval=1",
            "--set", "train.eval_interval=0", "--set", "train.seq_len=32", "--set", "model.hidden_size=32",
            "--set", "model.intermediate_size=64", "--set", "model.num_hidden_layers=1"], log: log)
        let metrics = run.appendingPathComponent("metrics.jsonl").path
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, ((try? String(contentsOfFile: metrics, encoding: .utf8))?.split(separator: "\n").count ?? 0) < 3 {
            usleep(100_000)
        }
        kill(pid, SIGTERM)
        let status = Launcher.waitForExit(pid, timeout: 90)
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(status == 0, "\(output)")
        #expect(output.contains("pretrain: SIGUSR1 received; saved "), "\(output)")
        let latest = try String(contentsOf: run.appendingPathComponent("checkpoints/latest"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoints/\(latest)/COMMITTED").path))
    }
}

/// A full disk during an asynchronous save stops the run at the next step with the error and
/// what to do, and keeps the checkpoints committed before it. (The run directory is a 4 MB
/// tmpfs: two checkpoints of the test model fit, the third does not.) The run stops at the first
/// step boundary after any rank's write failed, whatever the other ranks' writes are doing.
@Suite(.serialized) struct FullDiskTests {
    @Test func aFailedBackgroundSaveEndsTheRunAtTheNextStep() throws {
        let mountPoint = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-full-\(getpid())").path
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        let mount = try Launcher.run("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mountPoint], timeout: 30)
        if mount.status != 0 {
            try Test.cancel("FullDiskTests skipped: cannot mount a small tmpfs here (\(mount.standardError.trimmingCharacters(in: .whitespacesAndNewlines)))")
        }
        defer { _ = try? Launcher.run("/bin/umount", [mountPoint], timeout: 30) }
        let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path
        let run = mountPoint + "/run"
        let launch = try Launcher.mpirun(2, "meshlm", ["pretrain", "--config", config, "--set", "run.dir=\(run)",
            "--set", "data.train=\(testShards.path)", "--set", "data.eval=\(testShards.path)", "--set", "train.steps=2000",
            "--set", "train.log_interval=1", "--set", "train.eval_interval=0", "--set", "train.seq_len=32",
            "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64", "--set", "model.num_hidden_layers=1",
            "--set", "checkpoint.interval=200", "--set", "checkpoint.keep=10"], timeout: 180)
        #expect(launch.status != 0)
        // Whichever write meets the full disk first reports it: the checkpoint's file or, a step
        // later, the metrics row (both with the remedy).
        let error = launch.standardError.split(separator: "\n").first { $0.hasPrefix("meshlm: error") }.map(String.init) ?? ""
        #expect(error.contains("No space left on device; free space there (checkpoint.keep bounds how many checkpoints a run keeps) or move run.dir")
                || error.contains("metrics.jsonl: No space left on device; free space there or move run.dir"), "\(launch.standardError)")
        let steps = try FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints").filter { $0.hasPrefix("step_") }
        let uncommitted = steps.filter { !FileManager.default.fileExists(atPath: run + "/checkpoints/\($0)/COMMITTED") }
        let failed = try #require(uncommitted.compactMap { Int($0.dropFirst("step_".count)) }.min(), "\(steps)")
        // The save of step `failed` was staged at the end of step failed - 1; its writer (at idle
        // priority) meets the full disk a few 5 ms steps later on a quiet machine, tens of steps
        // on a busy one, and the run stops at the boundary after that — before the next save
        // (failed + 199), which would wait for the save in flight.
        let rows = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let last = try #require(rows.last.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })?["step"] as? Int
        print("full disk: the save of step \(failed) failed; the last step logged was \(last ?? -1)")
        #expect((last ?? .max) < failed + 199, "the last step logged was \(last ?? -1), the failed save's step \(failed)")
        let latest = try String(contentsOfFile: run + "/checkpoints/latest", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(FileManager.default.fileExists(atPath: run + "/checkpoints/\(latest)/COMMITTED"))
        #expect(latest < "step_\(String(format: "%08d", failed))")
    }
}
