import Foundation
import Runtime
import Testing
@testable import Training

/// A resumed run's `metrics.jsonl` keeps each step once: rows at or after the resumed step, and
/// a line torn by a crash, are dropped; earlier rows are kept byte for byte.
struct MetricsLogTests {
    @Test func resumingDropsReplayedStepsAndATornLine() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-metrics-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let earlier = "{\"step\":0,\"loss\":7.5}\n{\"step\":1,\"eval_loss\":7.25}\n"
        let later = "{\"step\":2,\"loss\":7}\n{\"step\":3,\"loss\":6.5}\n{\"step\":4,\"lo"
        try (earlier + later).write(toFile: directory + "/metrics.jsonl", atomically: true, encoding: .utf8)
        let log = try MetricsLog(directory: directory, rank: 0, resumingAt: 2)
        #expect(log.droppedRows == 3)
        var line = JSONLine()
        line.add("step", 2)
        try log.write(line)
        let text = try String(contentsOfFile: directory + "/metrics.jsonl", encoding: .utf8)
        #expect(text == earlier + line.text + "\n")
        // A run from step 0 starts the file empty.
        _ = try MetricsLog(directory: directory, rank: 0, resumingAt: 0)
        #expect(try String(contentsOfFile: directory + "/metrics.jsonl", encoding: .utf8).isEmpty)
    }
}
