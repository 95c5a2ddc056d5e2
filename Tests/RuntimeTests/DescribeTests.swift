import Foundation
import Runtime
import Testing

/// `describe` and `FileProblem`: the last line of defence between Foundation's error texts and a
/// user, tested on the errors Foundation really throws.
@Suite struct DescribeTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-describe-\(getpid())").path

    @Test func foundationWriteFailuresAreWorded() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let cases = [(directory, "it is a directory"), (directory + "/missing/file", "its directory \(directory)/missing does not exist")]
        for (path, reason) in cases {
            do {
                try Data("x".utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
                Issue.record("writing \(path) succeeded")
            } catch {
                #expect(FileProblem.reason(error, path: path) == reason)
                let text = describe(error)
                #expect(!text.contains("NSCocoaErrorDomain") && !text.contains("could not be completed"), "\(text)")
            }
        }
        #expect(FileProblem.reason(writing: directory) == "it is a directory")
    }

    struct Settings: Codable { var clip: Double; var steps: Int }

    @Test func jsonEncodingAndDecodingFailuresNameTheKey() throws {
        do {
            _ = try JSONEncoder().encode(Settings(clip: .infinity, steps: 1))
            Issue.record("encoding inf succeeded")
        } catch {
            #expect(describe(error) == "'clip' = inf cannot be written as JSON (JSON has no infinity or NaN): give a finite number")
        }
        do {
            _ = try JSONDecoder().decode(Settings.self, from: Data(#"{"clip": 1}"#.utf8))
            Issue.record("decoding without steps succeeded")
        } catch {
            #expect(describe(error) == "required key 'steps' is missing")
        }
        do {
            _ = try JSONDecoder().decode(Settings.self, from: Data(#"{"clip": "x", "steps": 1}"#.utf8))
            Issue.record("decoding a string as a number succeeded")
        } catch {
            #expect(describe(error).hasPrefix("key 'clip': expected "), "\(describe(error))")
            #expect(!describe(error).contains("DecodingError"))
        }
    }
}
