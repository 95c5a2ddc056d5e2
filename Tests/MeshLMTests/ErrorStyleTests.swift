import Foundation
import Testing

/// One error style everywhere (DESIGN §6): what went wrong, where, and what to do — never the raw
/// text of Foundation, JSON encoding, HDF5 or the argument parser.
@Suite(.serialized) struct ErrorStyleTests {
    /// Text that must never reach a user.
    static let rawText = ["NSCocoaErrorDomain", "EncodingError", "DecodingError", "HDF5-DIAG", "Missing value",
                          "The operation could not be completed"]

    static func scratch(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-errstyle-\(getpid())-\(name)").path
    }

    /// Runs `meshlm arguments…`, expects it to fail, and returns its standard error after checking
    /// that no raw domain text is in it.
    static func failure(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let launch = try Launcher.plain("meshlm", arguments)
        #expect(launch.status != 0, "\(arguments) succeeded", sourceLocation: sourceLocation)
        for raw in rawText {
            #expect(!launch.standardError.contains(raw), "\(raw) in: \(launch.standardError)", sourceLocation: sourceLocation)
        }
        return launch.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func pretrain(_ sets: [String]) -> [String] {
        let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path
        var arguments = ["pretrain", "--config", config, "--set", "run.dir=\(scratch("run-\(UUID().uuidString.prefix(6))"))",
                         "--set", "data.train=\(testShards.path)", "--set", "data.eval=\(testShards.path)", "--set", "train.steps=2"]
        for set in sets { arguments += ["--set", set] }
        return arguments
    }

    /// `.inf` and `.nan` decode as numbers and pass `> 0` checks; they used to fail only when the
    /// checkpoint saved run_config.json ("EncodingError.invalidValue: inf").
    @Test func nonFiniteConfigNumbersAreRefusedAtLoadByKey() throws {
        #expect(try Self.failure(Self.pretrain(["optimizer.grad_clip=.inf", "checkpoint.interval=2"]))
                == "meshlm: error: --set: key 'optimizer.grad_clip': value inf is invalid: must be a finite number")
        #expect(try Self.failure(Self.pretrain(["optimizer.weight_decay=.nan"]))
                == "meshlm: error: --set: key 'optimizer.weight_decay': value nan is invalid: must be a finite number")
        let file = Self.scratch("inf.yaml")
        try "model: \(repositoryRoot.path)/configs/model/tiny.yaml\ntrain: {steps: 2, seq_len: 64, global_batch_size: 4, micro_batch_size: 2}\noptimizer: {lr: .inf}\ndata: {train: \(testShards.path)}\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try Self.failure(["pretrain", "--config", file]) == "meshlm: error: \(file): key 'optimizer.lr': value inf is invalid: must be a finite number")
    }

    /// An unknown section made by `--set a.b=1` is blamed on that override, not on the file.
    @Test func unknownSectionFromSetNamesTheOverride() throws {
        #expect(try Self.failure(Self.pretrain(["bogus.key=1"]))
                == "meshlm: error: --set: key 'bogus': unknown key (in --set bogus.key=1); known keys here: checkpoint, data, model, optimizer, parallel, run, train")
        #expect(try Self.failure(Self.pretrain(["optimiser.lr=1"]))
                == "meshlm: error: --set: key 'optimiser': unknown key (in --set optimiser.lr=1); did you mean 'optimizer'?")
    }

    /// Negative numbers reach the option (not "Missing value"), then its range check.
    @Test func negativeNumbersParseAndAreRangeChecked() throws {
        let checkpoint = EvalCommandTests.run
        let generate = try Self.failure(["generate", "--checkpoint", checkpoint, "--prompt", "x", "--max-tokens", "-1"])
        #expect(generate.hasPrefix("Error: --max-tokens must be at least 0, got -1\n"), "\(generate)")
        let topP = try Self.failure(["generate", "--checkpoint", checkpoint, "--prompt", "x", "--top-p", "-0.5"])
        #expect(topP.hasPrefix("Error: --top-p must be in (0, 1], got -0.5\n"), "\(topP)")
        #expect(try Self.failure(["eval", "--checkpoint", checkpoint, "--tokens", testShards.path, "--max-tokens", "-1"])
                == "meshlm: error: --max-tokens must be at least 2 (one to read, one to predict), got -1")
        let threads = try Self.failure(["eval", "--threads", "-2", "--checkpoint", checkpoint, "--tokens", testShards.path])
        #expect(threads.hasPrefix("Error: --threads must be at least 1, got -2\n"), "\(threads)")
        // Negative values that are valid now work: a presence penalty below 0, a fast zstd level.
        let penalty = try Launcher.plain("meshlm", ["generate", "--checkpoint", checkpoint, "--prompt", "x", "--max-tokens", "2",
                                                    "--presence-penalty", "-1.5", "--threads", "1"])
        #expect(penalty.status == 0, "\(penalty.standardError)")
        let output = Self.scratch("resharded")
        let reshard = try Launcher.plain("meshlm", ["ckpt", "reshard", checkpoint, "--dp", "1", "--zstd-level", "-3", "--output", output])
        #expect(reshard.status == 0, "\(reshard.standardError)")
    }

    /// Every command taking a checkpoint accepts a step, checkpoints or run directory through
    /// one resolver, and says the same when none is there.
    @Test func everyCheckpointOptionAcceptsTheSameForms() throws {
        let run = EvalCommandTests.run
        for form in [run, run + "/checkpoints", run + "/checkpoints/step_00000002"] {
            for arguments in [["eval", "--checkpoint", form, "--tokens", testShards.path, "--max-tokens", "40", "--threads", "1"],
                              ["ckpt", "inspect", form], ["ckpt", "verify", form]] {
                let launch = try Launcher.plain("meshlm", arguments)
                #expect(launch.status == 0, "\(arguments): \(launch.standardError)")
            }
        }
        let forms = "give a step directory (RUN/checkpoints/step_N), a checkpoints directory or a run directory"
        for missing in [Self.scratch("no-run"), run + "/checkpoints/step_00000099"] {
            for arguments in [["eval", "--checkpoint", missing, "--tokens", testShards.path], ["generate", "--checkpoint", missing, "--prompt", "x"],
                              ["ckpt", "inspect", missing]] {
                #expect(try Self.failure(arguments) == "meshlm: error: no committed checkpoint at \(missing): no such directory; \(forms)")
            }
        }
        // A directory without checkpoints (a shard directory) and --init-from / --resume-from.
        #expect(try Self.failure(["eval", "--checkpoint", testShards.path, "--tokens", testShards.path])
                == "meshlm: error: no committed checkpoint at \(testShards.path): \(forms)")
        #expect(try Self.failure(Self.pretrain([]) + ["--init-from", testShards.path])
                == "meshlm: error: --init-from: no committed checkpoint at \(testShards.path): \(forms)")
        let resumed = try Launcher.plain("meshlm", Self.pretrain(["train.steps=3", "train.seq_len=64", "train.global_batch_size=4",
                                                                  "train.micro_batch_size=2"] + EvalCommandTests.smallModel.filter { $0 != "--set" })
                                                   + ["--resume-from", run])
        #expect(resumed.status == 0, "\(resumed.standardError)")
    }

    /// Foundation write failures name the option or file, what is in the way, and what to do
    /// (they used to print "NSCocoaErrorDomain error 512").
    @Test func fileWriteFailuresNameThePathAndTheRemedy() throws {
        let checkpoint = EvalCommandTests.run
        let directory = Self.scratch("out-dir")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let eval = ["eval", "--checkpoint", checkpoint, "--tokens", testShards.path, "--max-tokens", "40", "--threads", "1", "--logits"]
        #expect(try Self.failure(eval + [directory])
                == "meshlm: error: --logits \(directory): cannot write: it is a directory; give the path of a file in an existing directory")
        #expect(try Self.failure(eval + [directory + "/missing/logits.bin"])
                == "meshlm: error: --logits \(directory)/missing/logits.bin: cannot write: its directory \(directory)/missing does not exist; give the path of a file in an existing directory")
        let file = Self.scratch("a-file")
        try Data().write(to: URL(fileURLWithPath: file))
        #expect(try Self.failure(["ckpt", "export-hf", checkpoint, "--output", file + "/hf"])
                == "meshlm: error: cannot create \(file)/hf: \(file) is not a directory; choose another --output")
        let pretrain = Self.pretrain(["run.dir=\(file)/run"])
        #expect(try Self.failure(pretrain) == "meshlm: error: cannot create the run directory \(file)/run: \(file) is not a directory; choose another run.dir")
    }

    /// A shard that is not HDF5, or truncated, is named with what is wrong and what to do, in
    /// MeshLM's words (no HDF5 call names, no HDF5 error stack), by eval and pretrain alike.
    @Test func unreadableShardsNameTheFileAndTheRemedy() throws {
        func damagedCopy(_ name: String, _ damage: (String, inout [String: Any]) throws -> Void) throws -> (directory: String, shard: String) {
            let directory = Self.scratch(name)
            try? FileManager.default.removeItem(atPath: directory)
            try FileManager.default.copyItem(atPath: testShards.path, toPath: directory)
            let manifestPath = directory + "/manifest.json"
            var manifest = try #require(try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: manifestPath))) as? [String: Any])
            let shards = try #require(manifest["shards"] as? [[String: Any]])
            let shard = directory + "/" + (try #require(shards.first?["file"] as? String))
            try damage(shard, &manifest)
            try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: manifestPath))
            return (directory, shard)
        }
        let remedy = "again with the meshlm data command that made it"
        // The same size, other bytes: HDF5 finds no signature.
        let replaced = try damagedCopy("not-hdf5") { shard, _ in
            let size = try #require(try FileManager.default.attributesOfItem(atPath: shard)[.size] as? NSNumber).intValue
            try Data(repeating: 0x2a, count: size).write(to: URL(fileURLWithPath: shard))
        }
        let message = "meshlm: error: \(replaced.shard): not a readable token shard: not an HDF5 file; write \(replaced.directory) \(remedy)"
        #expect(try Self.failure(["eval", "--checkpoint", EvalCommandTests.run, "--tokens", replaced.directory]) == message)
        #expect(try Self.failure(Self.pretrain(["data.train=\(replaced.directory)"])) == message)
        // Truncated, with the manifest's size agreeing (so the size check passes): HDF5 sees the end missing.
        let truncated = try damagedCopy("truncated") { shard, manifest in
            let bytes = try Data(contentsOf: URL(fileURLWithPath: shard))
            try bytes.prefix(3000).write(to: URL(fileURLWithPath: shard))
            var shards = manifest["shards"] as? [[String: Any]] ?? []
            shards[0]["bytes"] = 3000
            manifest["shards"] = shards
        }
        let stderr = try Self.failure(["eval", "--checkpoint", EvalCommandTests.run, "--tokens", truncated.directory])
        #expect(stderr.hasPrefix("meshlm: error: \(truncated.shard): not a readable token shard: truncated: 3000 of its "), "\(stderr)")
        #expect(stderr.hasSuffix(" bytes are there; write \(truncated.directory) \(remedy)"), "\(stderr)")
    }

    /// JSON a checkpoint holds that does not decode is named by file and key, not by Swift's
    /// `DecodingError` dump.
    @Test func damagedCheckpointJSONIsNamedByFileAndKey() throws {
        let run = Self.scratch("damaged-run")
        try? FileManager.default.removeItem(atPath: run)
        try FileManager.default.copyItem(atPath: EvalCommandTests.run, toPath: run)
        let step = run + "/checkpoints/step_00000002"
        try Data(#"{"hidden_size": 32}"#.utf8).write(to: URL(fileURLWithPath: step + "/model_config.json"))
        #expect(try Self.failure(["generate", "--checkpoint", run, "--prompt", "x"])
                == "meshlm: error: \(step)/model_config.json: required key 'vocab_size' is missing")
        try Data(#"{"format": 1}"#.utf8).write(to: URL(fileURLWithPath: step + "/index.json"))
        #expect(try Self.failure(["ckpt", "inspect", run])
                == "meshlm: error: no committed checkpoint at \(run): give a step directory (RUN/checkpoints/step_N), a checkpoints directory or a run directory (skipping checkpoint \(step): \(step)/index.json is not a checkpoint index: key 'format': expected String but found number instead; the checkpoint is damaged: restore it, or use another step)")
    }
}
