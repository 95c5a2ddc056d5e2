import Parallel
import Testing

/// Schedules checked by simulating every stage against the others before any rank runs them.
@Suite struct PipelineScheduleTests {
    @Test func oneForwardOneBackwardMatchesTheTextbookOrder() {
        let schedule = PipelineSchedule.oneForwardOneBackward(stage: 0, stageCount: 4, microBatchCount: 6)
        #expect(schedule.map(\.description) == ["F0", "F1", "F2", "F3", "B0", "F4", "B1", "F5", "B2", "B3", "B4", "B5"])
        let last = PipelineSchedule.oneForwardOneBackward(stage: 3, stageCount: 4, microBatchCount: 6)
        #expect(last.map(\.description) == ["F0", "B0", "F1", "B1", "F2", "B2", "F3", "B3", "F4", "B4", "F5", "B5"])
        #expect(PipelineSchedule.peakInFlight(schedule, chunk: 0) == 4)
        #expect(PipelineSchedule.peakInFlight(last, chunk: 0) == 1)
    }

    @Test(arguments: [(2, 2), (2, 5), (4, 4), (4, 7), (3, 3), (8, 16)])
    func oneForwardOneBackwardRunsWithoutDeadlock(stages: Int, microBatches: Int) {
        let schedules = (0..<stages).map {
            PipelineSchedule.oneForwardOneBackward(stage: $0, stageCount: stages, microBatchCount: microBatches)
        }
        #expect(PipelineSchedule.simulate(schedules, chunkCount: 1, microBatchCount: microBatches) == nil)
    }

    @Test(arguments: [(2, 2, 2), (2, 2, 4), (2, 3, 4), (4, 2, 4), (4, 2, 8), (4, 3, 12)])
    func interleavedRunsWithoutDeadlock(stages: Int, chunks: Int, microBatches: Int) {
        let schedules = (0..<stages).map {
            PipelineSchedule.interleaved(stage: $0, stageCount: stages, chunkCount: chunks, microBatchCount: microBatches)
        }
        #expect(PipelineSchedule.simulate(schedules, chunkCount: chunks, microBatchCount: microBatches) == nil)
        for schedule in schedules { #expect(schedule.count == 2 * chunks * microBatches) }
    }

    @Test func theSimulationCatchesABrokenSchedule() {
        // Stage 1 wants micro-batch 1's activation before stage 0 sends micro-batch 0's gradient
        // path… a backward before any forward is caught outright.
        let broken: [[PipelineAction]] = [[.forward(microBatch: 0, chunk: 0), .backward(microBatch: 0, chunk: 0)],
                                          [.backward(microBatch: 0, chunk: 0), .forward(microBatch: 0, chunk: 0)]]
        #expect(PipelineSchedule.simulate(broken, chunkCount: 1, microBatchCount: 1) == "stage 1: B0 before its forward")
        // Both stages wait on each other: stage 0 needs B0 from stage 1, which needs F1 first.
        let stuck: [[PipelineAction]] = [[.forward(microBatch: 0, chunk: 0), .backward(microBatch: 0, chunk: 0), .forward(microBatch: 1, chunk: 0), .backward(microBatch: 1, chunk: 0)],
                                         [.forward(microBatch: 1, chunk: 0), .forward(microBatch: 0, chunk: 0), .backward(microBatch: 0, chunk: 0), .backward(microBatch: 1, chunk: 0)]]
        #expect(PipelineSchedule.simulate(stuck, chunkCount: 1, microBatchCount: 2)?.hasPrefix("deadlock") == true)
    }

    @Test func theoreticalBubble() {
        #expect(PipelineSchedule.theoreticalBubble(stageCount: 4, chunkCount: 1, microBatchCount: 8) == 3.0 / 11.0)
        #expect(PipelineSchedule.theoreticalBubble(stageCount: 4, chunkCount: 2, microBatchCount: 8) == 3.0 / 19.0)
    }
}
