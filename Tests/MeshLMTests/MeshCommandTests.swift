import Foundation
import Testing

/// `meshlm mesh` end to end: the printed layout, and every kind of bad input as a one-line error.
@Suite(.serialized) struct MeshCommandTests {
    let tiny = repositoryRoot.appendingPathComponent("configs/model/tiny.yaml").path

    @Test func printsEveryRankOfTwoByTwoByTwo() throws {
        let launch = try Launcher.mpirun(8, "meshlm", ["mesh", "--tp", "2", "--pp", "2", "--model", tiny])
        #expect(launch.status == 0, "\(launch.standardError)")
        let lines = launch.lines
        #expect(lines.first == "mesh: pp 2 × dp 2 × cp 1 × tp 2 = 8 ranks; rank order tp fastest, then cp, dp, pp")
        #expect(lines.count == 10)
        // Rank 5: pp 1, dp 0, tp 1; tensor group 4,5; data group 5,7; pipeline group 1,5.
        let rank5 = lines[7].split(separator: " ").map(String.init)
        #expect(rank5[0] == "5")
        #expect(Array(rank5[2...6]) == ["1", "0", "0", "1", "0"])
        #expect(Array(rank5[7...]) == ["4,5", "5", "5,7", "1,5", "5,7", "0,1,4,5"])
    }

    /// With a pretrain config: the degrees come from it, and each rank's memory estimate follows
    /// the table — tensor parallelism halves the parameters, the last pipeline stage (with the
    /// head's logits) holds different activations from the first.
    @Test func memoryPerRankFromAPretrainConfig() throws {
        let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path
        let whole = try Launcher.mpirun(1, "meshlm", ["mesh", "--config", config, "--json"])
        #expect(whole.status == 0, "\(whole.standardError)")
        let split = try Launcher.mpirun(4, "meshlm", ["mesh", "--config", config, "--json", "--set", "parallel.tp=2", "--set", "parallel.pp=2"])
        #expect(split.status == 0, "\(split.standardError)")
        func estimates(_ launch: Launch) throws -> [[String: Int]] {
            try launch.lines.compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                .filter { $0["total_bytes"] != nil }.map { $0.compactMapValues { $0 as? Int } }
        }
        let one = try estimates(whole), four = try estimates(split)
        #expect(one.count == 1 && four.count == 4)
        let wholeParameters = one.first?["parameters_bytes"] ?? 0
        let splitParameters = four.reduce(0) { $0 + ($1["parameters_bytes"] ?? 0) }
        // Every parameter is held once across tp × pp (norms twice: they are replicated over tp).
        #expect(splitParameters >= wholeParameters && splitParameters < wholeParameters + wholeParameters / 50)
        #expect(four[0]["activations_bytes"] != four[2]["activations_bytes"])
        let table = try Launcher.mpirun(2, "meshlm", ["mesh", "--config", config, "--set", "parallel.tp=2"])
        #expect(table.status == 0)
        #expect(table.standardOutput.contains("memory per rank (MB, estimated from the layouts"))
    }

    @Test func jsonLinesOnePerRank() throws {
        let launch = try Launcher.mpirun(4, "meshlm", ["mesh", "--dp", "2", "--cp", "2", "--json"])
        #expect(launch.status == 0, "\(launch.standardError)")
        #expect(launch.lines.count == 4)
        let rank3 = try JSONSerialization.jsonObject(with: Data(launch.lines[3].utf8)) as? [String: Any]
        #expect(rank3?["dp"] as? Int == 1)
        #expect(rank3?["cp"] as? Int == 1)
        let groups = rank3?["groups"] as? [String: [Int]]
        #expect(groups?["data_context"] == [0, 1, 2, 3])
        #expect(groups?["context"] == [2, 3])
    }

    func failure(_ ranks: Int, _ arguments: [String]) throws -> (Int32, String) {
        let launch = try Launcher.mpirun(ranks, "meshlm", arguments, timeout: 60)
        // One message, whatever the number of ranks.
        let messages = launch.standardError.split(separator: "\n").filter { $0.hasPrefix("meshlm: error") }
        #expect(messages.count == 1, "\(launch.standardError)")
        return (launch.status, messages.first.map(String.init) ?? "")
    }

    @Test func impossibleMeshes() throws {
        var (status, message) = try failure(6, ["mesh", "--tp", "2", "--pp", "2", "--dp", "2"])
        #expect(status != 0)
        #expect(message == "meshlm: error: world size 6 is not pp 2 × dp 2 × cp 1 × tp 2 = 8")
        (status, message) = try failure(3, ["mesh", "--tp", "3", "--model", tiny])
        #expect(status != 0)
        #expect(message == "meshlm: error: tensor parallel degree tp 3 must divide num_attention_heads 4")
        (status, message) = try failure(8, ["mesh", "--pp", "8", "--model", tiny])
        #expect(status != 0)
        #expect(message == "meshlm: error: num_hidden_layers 4 is fewer than the pipeline stages pp 8")
        (status, message) = try failure(2, ["mesh", "--ep", "2", "--model", tiny])
        #expect(status != 0)
        #expect(message == "meshlm: error: expert parallel degree ep 2 needs a mixture-of-experts model, but num_local_experts is 0")
    }

    @Test func badModelConfigs() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-cli-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let malformed = directory.appendingPathComponent("malformed.yaml").path
        try "hidden_size: [128\nvocab_size: 3\n".write(toFile: malformed, atomically: true, encoding: .utf8)
        let unknown = directory.appendingPathComponent("unknown.yaml").path
        try (try String(contentsOfFile: tiny, encoding: .utf8) + "dropout: 0.1\n").write(toFile: unknown, atomically: true, encoding: .utf8)

        var (status, message) = try failure(2, ["mesh", "--model", malformed])
        #expect(status != 0)
        #expect(message.hasPrefix("meshlm: error: \(malformed): malformed YAML: "))
        (status, message) = try failure(2, ["mesh", "--model", unknown])
        #expect(status != 0)
        #expect(message.hasPrefix("meshlm: error: \(unknown): key 'dropout': unknown key; known keys here: "))
        (status, message) = try failure(2, ["mesh", "--model", tiny, "--set", "hidden_size=wide"])
        #expect(message == "meshlm: error: --set: key 'hidden_size': expected an integer, found 'wide'")
        (status, message) = try failure(2, ["mesh", "--model", tiny, "--set", "num_key_value_heads=3"])
        #expect(message == "meshlm: error: --set: key 'num_key_value_heads': value 3 is invalid: must divide num_attention_heads 4 (each KV head serves a whole group of query heads)")
        (status, message) = try failure(2, ["mesh", "--model", "/nonexistent/model.yaml"])
        #expect(status != 0)
        #expect(message == "meshlm: error: /nonexistent/model.yaml: config file not found")
    }

    @Test func badFlagsAreUsageErrors() throws {
        let launch = try Launcher.plain("meshlm", ["mesh", "--threads", "0"])
        #expect(launch.status != 0)
        #expect(launch.standardError.contains("--threads must be at least 1, got 0"))
    }

    /// A preset OPENBLAS_CORETYPE below the CPU's vector width (as on the machines here) is
    /// dropped by restarting without it; with MESHLM_KEEP_OPENBLAS_CORETYPE=1 it stays and is
    /// named in a warning. Without a preset there is neither.
    @Test func forcedOpenBLASCoreTypeIsUndoneOrWarnedAbout() throws {
        let cpuHasAVX512 = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.contains(" avx512f ") ?? false
        let forced = try Launcher.plain("meshlm", ["mesh", "--verbose"], environment: ["OPENBLAS_CORETYPE": "Haswell"])
        #expect(forced.status == 0)
        let kept = try Launcher.plain("meshlm", ["mesh", "--verbose"],
                                      environment: ["OPENBLAS_CORETYPE": "Haswell", "MESHLM_KEEP_OPENBLAS_CORETYPE": "1"])
        #expect(kept.status == 0)
        #expect(kept.standardOutput.contains("blas: OpenBLAS core Haswell"))
        if cpuHasAVX512 {
            #expect(forced.standardOutput.contains("(OPENBLAS_CORETYPE=Haswell was unset at start-up"), "\(forced.standardOutput)")
            #expect(!forced.standardOutput.contains("blas: OpenBLAS core Haswell"))
            #expect(!forced.standardError.contains("warning"))
            #expect(kept.standardError.contains("meshlm: warning: OpenBLAS runs its Haswell kernels (OPENBLAS_CORETYPE=Haswell is set) but this CPU supports AVX-512"))
        }
        let natural = try Launcher.plain("meshlm", ["mesh"])
        #expect(!natural.standardError.contains("warning"), "\(natural.standardError)")
    }
}
