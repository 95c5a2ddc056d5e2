import ArgumentParser
import Foundation
import Runtime

/// `meshlm ckpt …`: one process, no MPI — the tools read and write checkpoint files only
/// (docs/checkpoints.md, "Commands").
struct CkptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ckpt",
        abstract: "Inspect, verify, reshard, consolidate checkpoints; merge LoRA adapters; export to and import from Hugging Face and PEFT (docs/checkpoints.md).",
        discussion: "DIR is a step directory (RUN/checkpoints/step_N), a checkpoints directory (its latest committed checkpoint) or a run directory.",
        subcommands: [CkptInspectCommand.self, CkptVerifyCommand.self, CkptReshardCommand.self, CkptConsolidateCommand.self,
                      CkptExportHFCommand.self, CkptImportHFCommand.self, CkptMergeLoRACommand.self, CkptQuantizeCommand.self])

    /// Runs a tool's body; any error is one `meshlm: error: …` line on stderr and exit status 1.
    static func runTool(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write(Data("meshlm: error: \(describe(error))\n".utf8))
            throw ExitCode(1)
        }
    }
}
