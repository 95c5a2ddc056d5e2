import Testing
@testable import Training
import Runtime

@Suite struct CheckpointSectionTests {
    /// The writer's duty cycle must be a share of wall time; the error names the key and the range.
    @Test(arguments: [0.0, -0.5, 1.5])
    func dutyCycleOutsideItsRangeIsRefused(value: Double) {
        var section = CheckpointSection()
        #expect(section.writerDutyCycle == 0.25 && section.writerPriority == .idle)
        section.writerDutyCycle = value
        #expect(throws: ConfigError.invalid("checkpoint.writer_duty_cycle", value,
                                            "must be above 0 and at most 1 (1: the writer never pauses)")) {
            try section.validate()
        }
        section.writerDutyCycle = 1
        #expect(throws: Never.self) { try section.validate() }
    }
}
