import DataPipeline
import Foundation
import Runtime
import Testing

/// A fresh, empty directory for one test.
func scratchDirectory(_ name: String = #function) -> String {
    let clean = name.filter { $0.isLetter || $0.isNumber }
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("meshlm-data-tests-\(getpid())")
        .appendingPathComponent("\(clean)-\(UUID().uuidString.prefix(8))").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func join(_ directory: String, _ name: String) -> String {
    (directory as NSString).appendingPathComponent(name)
}

func write(_ text: String, to path: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

func write(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Writes `lines` as a JSONL file, zstd-compressed when `path` ends in `.zst`.
func writeJSONL(_ lines: [String], to path: String) throws {
    let bytes = Array((lines.joined(separator: "\n") + "\n").utf8)
    try write(path.hasSuffix(".zst") ? try Zstd.compress(bytes) : bytes, to: path)
}

/// The text of the error `body` throws, with `directory + "/"` taken out of it, or "no error".
func errorText(in directory: String, _ body: () throws -> Void) -> String {
    do {
        try body()
        return "no error"
    } catch {
        return "\(error)".replacingOccurrences(of: directory + "/", with: "")
    }
}

/// Runs `body` and checks that it throws a `DataError` whose text is exactly `message`.
func expectDataError(_ message: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected the error: \(message)", sourceLocation: sourceLocation)
    } catch let error as DataError {
        #expect(error.description == message, sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected a DataError, got \(error)", sourceLocation: sourceLocation)
    }
}

/// A tokenizer identity with a large vocabulary (uint32 shards) for writer tests.
func wideVocabulary() -> TokenizerIdentity {
    TokenizerIdentity(name: "test-wide", description: "a 100,000-id test vocabulary", hash: "sha256:test",
                      vocabSize: 100_000, eosId: 99_999)
}

/// Little-endian bytes of `values`.
func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}

/// The repository root (for the shipped corpus).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// A small deterministic generator for test inputs.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}
