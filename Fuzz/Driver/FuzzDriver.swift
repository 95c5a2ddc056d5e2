import FuzzHarnesses
import Foundation

/// libFuzzer's driver (`libclang_rt.fuzzer_no_main`), given one harness's entry.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argumentCount: UnsafeMutablePointer<CInt>,
                         _ arguments: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// The harness this process runs: MESHLM_FUZZ_HARNESS, read once. An environment variable rather
/// than an argument so the child processes libFuzzer starts (`-minimize_crash`, `-merge`) run
/// the same one.
nonisolated(unsafe) var harness = FuzzHarness.jsonl
/// Its name as given; a global, so LeakSanitizer does not count it (main never returns).
nonisolated(unsafe) var harnessName = ""

/// `MESHLM_FUZZ_HARNESS=NAME meshlm-fuzz [libFuzzer flags] [CORPUS...]`.
@main struct FuzzDriver {
    static func main() {
        // getenv, not ProcessInfo: Foundation's copy of the environment is never freed, which
        // LeakSanitizer reports against the first input.
        harnessName = getenv("MESHLM_FUZZ_HARNESS").map { String(cString: $0) } ?? ""
        guard let chosen = FuzzHarness(rawValue: harnessName) else {
            let names = FuzzHarness.allCases.map(\.rawValue).joined(separator: ", ")
            FileHandle.standardError.write(Data("meshlm-fuzz: set MESHLM_FUZZ_HARNESS to one of \(names) (got '\(harnessName)')\n".utf8))
            exit(2)
        }
        harness = chosen
        var argumentCount = CommandLine.argc
        var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argumentCount, &arguments) { data, count in
            let bytes = data.map { [UInt8](UnsafeBufferPointer(start: $0, count: count)) } ?? []
            do {
                try harness.run(bytes)
            } catch where harness.isParserError(error) {
            } catch {
                // Not the parser's own error: as much a bug as a trap, so libFuzzer saves the input.
                FileHandle.standardError.write(Data("meshlm-fuzz: \(harness.rawValue) threw \(type(of: error)): \(error)\n".utf8))
                abort()
            }
            return 0
        })
    }
}
