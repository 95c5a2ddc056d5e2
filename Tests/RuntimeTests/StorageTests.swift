import Foundation
import Runtime
import Testing

func temporaryPath(_ name: String) -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-tests-\(getpid())")
    try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory.appendingPathComponent(name).path
}

@Suite struct HDF5Tests {
    @Test func roundTripsDatasetsAndRows() throws {
        let path = temporaryPath("roundtrip.h5")
        let tokens: [UInt16] = (0..<1000).map { UInt16(($0 * 37) % 65_000) }
        let weights: [Float] = (0..<12).map { Float($0) * 0.25 - 1 }
        do {
            let file = try HDF5File.create(path)
            try file.write(tokens, dataset: "tokens", chunkRows: 128, deflateLevel: 4)
            try file.write(weights, dataset: "weights", shape: [3, 4])
            try file.write([Int64(0), 400, 1000], dataset: "document_offsets")
        }
        let file = try HDF5File.open(path)
        #expect(try file.shape(of: "weights") == [3, 4])
        #expect(try file.read(UInt16.self, dataset: "tokens") == tokens)
        // HDF5 converts the stored uint16 to the requested int32.
        #expect(try file.read(Int32.self, dataset: "tokens", rows: 100..<110) == tokens[100..<110].map { Int32($0) })
        #expect(try file.read(Float.self, dataset: "weights", rows: 1..<3) == Array(weights[4...]))
        #expect(try file.read(Int64.self, dataset: "document_offsets") == [0, 400, 1000])
    }

    @Test func errorsNameFileCallAndReason() throws {
        let path = temporaryPath("errors.h5")
        do { _ = try HDF5File.open("/nonexistent/shard.h5"); Issue.record("expected an error") }
        catch { #expect(error.description == "/nonexistent/shard.h5: H5Fopen failed: no such file") }

        let file = try HDF5File.create(path)
        try file.write([Float(1), 2, 3], dataset: "x")
        do { _ = try file.read(Float.self, dataset: "y"); Issue.record("expected an error") }
        catch { #expect(error.description == "\(path): H5Dopen2 failed: no dataset named 'y'") }
        do { _ = try file.read(Float.self, dataset: "x", rows: 2..<5); Issue.record("expected an error") }
        catch { #expect(error.description == "\(path): H5Sselect_hyperslab failed: rows 2..<5 outside dataset 'x' of 3 rows") }
        do { try file.write([Float(1)], dataset: "x"); Issue.record("expected an error") }
        catch {
            #expect(error.description.hasPrefix("\(path): H5Dcreate2 failed: "))
        }

        let notHDF5 = temporaryPath("not-hdf5.h5")
        try Data("plain text".utf8).write(to: URL(fileURLWithPath: notHDF5))
        do { _ = try HDF5File.open(notHDF5); Issue.record("expected an error") }
        catch { #expect(error.description.hasPrefix("\(notHDF5): H5Fopen failed: ")) }
    }
}

@Suite struct ZstdTests {
    @Test func roundTripsAndCompresses() throws {
        let text = Array(String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 200).utf8)
        let frame = try Zstd.compress(text, level: 3)
        #expect(frame.count < text.count / 10)
        #expect(try Zstd.decompress(frame) == text)
        #expect(try Zstd.decompress(try Zstd.compress([UInt8]())) == [])
    }

    /// Stored frames are standard zstd frames of raw blocks: libzstd decodes them to the input
    /// at every size around the 128 KiB block limit, and a truncated one is an error.
    @Test(arguments: [0, 1, 131_071, 131_072, 131_073, 3 * 131_072 + 5])
    func storedFramesDecodeWithLibzstd(size: Int) throws {
        let bytes: [UInt8] = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
        let frame = bytes.withUnsafeBytes { Zstd.store($0) }
        let blocks = max(1, (size + 131_071) / 131_072)
        #expect(frame.count == 13 + 3 * blocks + size)
        #expect(try Zstd.decompress(frame, expectedSize: size) == bytes)
        if size > 0 {
            #expect(throws: ZstdError.self) { try Zstd.decompress(Array(frame.dropLast()), expectedSize: size) }
        }
    }

    @Test func corruptAndTruncatedFramesAreErrors() throws {
        let bytes: [UInt8] = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7 + $0 / 13) }
        let frame = try Zstd.compress(bytes)
        func failure(_ frame: [UInt8], expectedSize: Int? = nil) -> String {
            do { _ = try Zstd.decompress(frame, expectedSize: expectedSize); return "no error" } catch { return "\(error)" }
        }
        #expect(failure(Array(frame.prefix(frame.count - 5))).hasPrefix("ZSTD_decompress failed: "))
        #expect(failure([1, 2, 3, 4, 5, 6, 7, 8]) == "ZSTD_getFrameContentSize failed: not a zstd frame")
        #expect(failure(frame, expectedSize: 9_999) == "ZSTD_getFrameContentSize failed: frame holds 10000 bytes, expected 9999")
        var flipped = frame
        flipped[flipped.count / 2] ^= 0x5A
        // The frame carries a content checksum, so a flipped byte cannot decode silently.
        #expect(failure(flipped).hasPrefix("ZSTD_decompress failed: "))
    }
}

@Suite struct ProgressLineTests {
    @Test func rendersRateAndETA() {
        let progress = ProgressLine(label: "tokenize", total: 1000, unit: "docs", log: Log(rank: 1))
        progress.advance(by: 250)
        let line = progress.render(now: monotonicSeconds() + 10)
        #expect(line.hasPrefix("tokenize 250/1000 (25.0%)  "))
        #expect(line.contains("docs/s"))
        #expect(line.contains("ETA 0:3"))
        #expect(formatDuration(3725) == "1:02:05")
        #expect(formatRate(12_345_678) == "12.35M")
    }

    @Test func rendersASecondCountWithItsRate() {
        let progress = ProgressLine(label: "tokenize", total: 4_000_000, unit: "B", log: Log(rank: 1), secondaryUnit: "docs")
        progress.advance(by: 1_000_000)
        progress.advance(by: 0, secondary: 500)
        let line = progress.render(now: monotonicSeconds() + 10)
        #expect(line.hasPrefix("tokenize 1000000/4000000 (25.0%)  "), "\(line)")
        #expect(line.contains(" B/s  500 docs "), "\(line)")
        #expect(line.contains(" docs/s  elapsed "), "\(line)")
        #expect(line.contains("ETA "), "\(line)")
    }
}
