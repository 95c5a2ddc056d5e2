import Foundation
import FuzzHarnesses
import Testing

/// Every input the fuzzer found a crash, hang or leak with (Inputs/HARNESS/, saved by
/// tools/fuzz.sh) and every hand-written seed (Fuzz/corpus/HARNESS/), run through the harness's
/// parser as the fuzzer ran it: each must parse or throw the parser's own error, never trap or
/// throw something else (docs/fuzzing.md).
@Suite struct FuzzRegressionTests {
    static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let repository = testsDirectory.deletingLastPathComponent().deletingLastPathComponent()

    /// The files of `directory`, sorted; none when it does not exist.
    static func files(in directory: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { directory.appendingPathComponent($0) }
    }

    @Test(arguments: FuzzHarness.allCases)
    func savedInputsParseOrThrowTheParsersError(_ harness: FuzzHarness) throws {
        let inputs = Self.files(in: Self.testsDirectory.appendingPathComponent("Inputs/\(harness.rawValue)"))
            + Self.files(in: Self.repository.appendingPathComponent("Fuzz/corpus/\(harness.rawValue)"))
        #expect(!inputs.isEmpty, "no seeds or saved inputs for \(harness.rawValue)")
        for input in inputs {
            let bytes = try [UInt8](Data(contentsOf: input))
            let started = Date()
            do {
                try harness.run(bytes)
            } catch {
                #expect(harness.isParserError(error),
                        "\(input.lastPathComponent): threw \(type(of: error)), not the parser's own error: \(error)")
            }
            // A saved hang ran for 10 s or more under the fuzzer; fixed, it takes milliseconds.
            #expect(Date().timeIntervalSince(started) < 5, "\(input.lastPathComponent): took \(Date().timeIntervalSince(started)) s")
        }
    }
}
