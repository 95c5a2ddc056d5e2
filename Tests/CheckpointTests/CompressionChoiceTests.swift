@testable import Checkpoint
import Testing

/// `checkpoint.compression: auto` compresses a save's next frames only while compression
/// (over its threads) is faster than the disk and shrinks the data; it starts by compressing,
/// to measure; `zstd` and `none` never change their minds.
@Suite struct CompressionChoiceTests {
    @Test func compressesWhileCompressionOutrunsTheDisk() {
        let choice = CompressionChoice(.auto)
        #expect(choice.compressesNext(threads: 2), "nothing measured yet: compress to measure")
        // 16 MB in 16 ms on one thread (1 GB/s), ratio 1.15.
        choice.recordCompression(bytesIn: 16_000_000, bytesOut: 13_900_000, seconds: 0.016)
        #expect(choice.compressesNext(threads: 2), "the disk is not measured yet")
        // A disk at 1.6 GB/s: two threads (2 GB/s) keep ahead of it, one (1 GB/s) does not.
        choice.recordWrite(bytes: 16_000_000, seconds: 0.01)
        #expect(choice.compressesNext(threads: 2))
        #expect(!choice.compressesNext(threads: 1))
        // The disk slows to 0.8 GB/s overall: now one thread keeps ahead too.
        choice.recordWrite(bytes: 16_000_000, seconds: 0.03)
        #expect(choice.compressesNext(threads: 1))
    }

    @Test func incompressibleDataIsStored() {
        let choice = CompressionChoice(.auto)
        choice.recordCompression(bytesIn: 16_000_000, bytesOut: 16_000_400, seconds: 0.001)
        choice.recordWrite(bytes: 16_000_000, seconds: 1)
        #expect(!choice.compressesNext(threads: 4))
    }

    /// A save that starts with incompressible tensors (weights) stores them, but probes every
    /// few batches and turns to compression when the frames at hand compress (moments).
    @Test func probesWhileStoringAndTurnsToCompressibleFrames() {
        let choice = CompressionChoice(.auto)
        choice.recordCompression(bytesIn: 16_000_000, bytesOut: 16_000_400, seconds: 0.016)
        choice.recordWrite(bytes: 16_000_000, seconds: 0.05)  // 320 MB/s: 2 threads at 1 GB/s outrun it
        let decisions = (0..<CompressionChoice.probeInterval).map { _ in choice.compressesNext(threads: 2) }
        #expect(decisions == Array(repeating: false, count: CompressionChoice.probeInterval - 1) + [true],
                "stored, then a probe: \(decisions)")
        // The probe's frame compresses 1.3×: the next batches compress.
        choice.recordCompression(bytesIn: 16_000_000, bytesOut: 12_300_000, seconds: 0.016)
        #expect(choice.compressesNext(threads: 2))
        #expect(choice.compressesNext(threads: 2))
    }

    @Test func fixedModesIgnoreTheRates() {
        for (mode, compresses) in [(CheckpointCompression.zstd, true), (.none, false)] {
            let choice = CompressionChoice(mode)
            choice.recordCompression(bytesIn: 1, bytesOut: 1, seconds: 10)
            choice.recordWrite(bytes: 1, seconds: 10)
            #expect(choice.compressesNext(threads: 1) == compresses, "\(mode)")
        }
    }
}
