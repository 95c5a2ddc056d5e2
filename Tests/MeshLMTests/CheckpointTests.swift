import Foundation
import Testing

/// Checkpoints under real `mpirun` (Tests/MPIChecks/CheckpointChecks.swift): the format's
/// failure modes on one rank, saving on one rank count and loading on another, and SIGKILL of a
/// rank during saves. Serialized: each launch already oversubscribes the two cores.
@Suite(.serialized) struct CheckpointTests {
    func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-ckpt-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func formatAndFailureModesOnOneRank() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let launch = try Launcher.mpirun(1, "mpi-checks", ["checkpoint-unit", directory], timeout: 60)
        #expect(launch.status == 0, "\(launch.standardError)")
        #expect(launch.lines == ["round-trip", "bad-requests", "flipped-byte", "flipped-stored-byte", "checksum-mismatch", "truncated",
                                 "latest-fallback", "keep"].map { "ok checkpoint-\($0)" })
    }

    /// Saved on `saveRanks`, loaded on every count in `loadRanks`, each rank checking its own
    /// share of every tensor under its own split.
    @Test(arguments: [(4, [1, 2, 3]), (2, [3, 1])])
    func loadsOnAnotherRankCount(saveRanks: Int, loadRanks: [Int]) throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let save = try Launcher.mpirun(saveRanks, "mpi-checks", ["checkpoint-save", directory, "17"], timeout: 60)
        #expect(save.status == 0, "\(save.standardError)")
        #expect(save.lines == ["ok checkpoint-save-\(saveRanks)"])
        for ranks in loadRanks {
            let load = try Launcher.mpirun(ranks, "mpi-checks", ["checkpoint-load", directory, "17"], timeout: 60)
            #expect(load.status == 0, "\(load.standardError)")
            #expect(load.lines == ["ok checkpoint-load-\(ranks)"])
        }
    }

    /// 20 lives of a 2-rank job saving back to back, asynchronously (background write, commit
    /// polled at step boundaries as `CheckpointSaver` does), until rank 1 is SIGKILLed at a
    /// random moment (a save takes ~0.2-0.4 s in a debug build, so kills land in every phase).
    /// Each life first audits what the kill before it left (every committed checkpoint verifies
    /// and holds the right values; `latest` names one), then resumes from the latest checkpoint.
    @Test func killedRanksNeverLeaveACommittedIncompleteCheckpoint() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var generator = SystemRandomNumberGenerator()
        var latestSteps: [Int] = []
        for life in 0..<20 {
            let delay = Int.random(in: 0..<600_000, using: &generator)
            let hadCheckpoint = FileManager.default.fileExists(atPath: directory + "/latest")
            let crash = try Launcher.mpirun(2, "mpi-checks", ["checkpoint-crash", directory, "\(delay)"], timeout: 60)
            #expect(crash.standardError.contains("signal 9"), "life \(life) was not killed: \(crash.standardError)")
            #expect(!crash.standardError.contains("meshlm: error"), "life \(life), delay \(delay) µs: \(crash.standardError)")
            if hadCheckpoint {
                #expect(crash.lines.contains("ok checkpoint-audit"), "life \(life): \(crash.standardOutput)")
            }
            if let line = crash.lines.first(where: { $0.hasPrefix("latest ") }),
               let step = Int(line.split(separator: " ")[1].dropLast()) { latestSteps.append(step) }
        }
        let audit = try Launcher.mpirun(1, "mpi-checks", ["checkpoint-audit", directory], timeout: 60)
        #expect(audit.status == 0, "\(audit.standardError)")
        #expect(audit.lines.last == "ok checkpoint-audit", "\(audit.standardOutput)")
        // Lives resume where the last left off, so the latest committed step never goes back.
        #expect(latestSteps == latestSteps.sorted(), "\(latestSteps)")
        #expect((latestSteps.last ?? 0) > 5, "too few checkpoints committed: \(latestSteps)")
    }
}
