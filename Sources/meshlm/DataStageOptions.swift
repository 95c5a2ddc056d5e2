import ArgumentParser
import DataPipeline
import Foundation
import Runtime

extension InputErrorPolicy: ExpressibleByArgument {}

/// The inputs, output and record options every document stage (`data clean`, `data dedup`)
/// takes, and how it turns them into work units and reports its stats.
struct DataStageOptions: ParsableArguments {
    @Option(name: .long, parsing: .upToNextOption, help: "Input files or directories (.jsonl, .jsonl.zst, .txt; .html for clean).")
    var input: [String] = []
    @Option(name: .long, help: "The output directory (created; a partial run there is resumed).") var output: String
    @Option(name: .customLong("text-field"), help: "The JSONL field that holds the text.") var textField = "text"
    @Option(name: .customLong("id-field"), help: "The JSONL field that holds the document id.") var idField = "id"
    @Option(name: .customLong("on-error"), help: "fail: stop at a bad input line; skip: skip, count and log it.")
    var onError = InputErrorPolicy.fail
    @Flag(name: .long, help: "Print the stats as one JSON line instead of a table.") var json = false

    func validate() throws {
        if input.isEmpty { throw ValidationError("give at least one --input file or directory") }
    }

    var reader: RecordReaderOptions { RecordReaderOptions(textField: textField, idField: idField, onError: onError) }

    /// The input files as numbered work units (same on every rank), leaving out files inside the
    /// output directory: an output directory inside an input directory must not feed its own
    /// kept files back in on a rerun.
    func workUnits(html: Bool, log: Log) throws -> [WorkUnit] {
        let (found, ignored) = try WorkPlan.units(inputs: input, html: html)
        if ignored > 0 { log.warning("skipped \(ignored) files that are not \(html ? ".jsonl, .jsonl.zst, .txt or .html" : ".jsonl, .jsonl.zst or .txt")") }
        let outputPrefix = URL(fileURLWithPath: output).standardizedFileURL.path + "/"
        let inputs = found.filter { !URL(fileURLWithPath: $0.path).standardizedFileURL.path.hasPrefix(outputPrefix) }
        if inputs.count < found.count {
            log.warning("skipped \(found.count - inputs.count) files inside the output directory \(output)")
        }
        guard !inputs.isEmpty else { throw ValidationError("no input files outside the output directory \(output)") }
        return inputs.enumerated().map { index, unit in
            WorkUnit(index: index, path: unit.path, format: unit.format, name: unit.name, bytes: unit.bytes)
        }
    }

    /// Prints a stage's stats: the table and where the outputs went, or one JSON line.
    func report(json statsJSON: String, table: String, log: Log) {
        if json {
            log.info(statsJSON.trimmingCharacters(in: .newlines))
        } else {
            log.info(table)
            log.info("wrote \(output)/kept, \(output)/removed.jsonl, \(output)/stats.json")
        }
    }
}
