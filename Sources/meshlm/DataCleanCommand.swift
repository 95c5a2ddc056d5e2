import ArgumentParser
import DataPipeline
import Foundation
import Runtime

struct DataCleanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clean",
        abstract: "Normalize, filter and scrub documents with a recipe of operators, across ranks.",
        discussion: """
            Writes OUT/kept/NNNNN.jsonl.zst (one per input file, every input field kept, the text \
            replaced), OUT/removed.jsonl ({"id", "filter", "reason"}) and OUT/stats.json, and \
            prints a table of each operator's effect. .html/.htm inputs are one document each, \
            their text extracted. Rerunning after a crash resumes from the finished input files. \
            The recipe format and every operator: docs/data.md.
            """)

    @OptionGroup var job: JobOptions

    @Option(name: .long, parsing: .upToNextOption, help: "Input files or directories (.jsonl, .jsonl.zst, .txt, .html).")
    var input: [String] = []
    @Option(name: .long, help: "The output directory (created; a partial run there is resumed).") var output: String
    @Option(name: .long, help: "The recipe: a YAML list of operators and their options.") var recipe = "configs/data/clean.yaml"
    @Option(name: .customLong("text-field"), help: "The JSONL field that holds the text.") var textField = "text"
    @Option(name: .customLong("id-field"), help: "The JSONL field that holds the document id.") var idField = "id"
    @Option(name: .customLong("on-error"), help: "fail: stop at a bad input line; skip: skip, count and log it.")
    var onError = InputErrorPolicy.fail
    @Flag(name: .long, help: "Print the stats as one JSON line instead of a table.") var json = false

    func validate() throws {
        if input.isEmpty { throw ValidationError("give at least one --input file or directory") }
    }

    func run() throws {
        let reader = RecordReaderOptions(textField: textField, idField: idField, onError: onError)
        try job.runJob { context in
            let (recipe, units) = try context.world.collectively { () throws -> (CleaningRecipe, [WorkUnit]) in
                let recipe = try CleaningRecipe.load(path: self.recipe)
                let (found, ignored) = try WorkPlan.units(inputs: input, html: true)
                if ignored > 0 { context.log.warning("skipped \(ignored) files that are not .jsonl, .jsonl.zst, .txt or .html") }
                // An output directory inside an input directory must not feed its own kept files
                // back in on a rerun (as in `data dedup`).
                let outputPrefix = URL(fileURLWithPath: output).standardizedFileURL.path + "/"
                let inputs = found.filter { !URL(fileURLWithPath: $0.path).standardizedFileURL.path.hasPrefix(outputPrefix) }
                if inputs.count < found.count {
                    context.log.warning("skipped \(found.count - inputs.count) files inside the output directory \(output)")
                }
                guard !inputs.isEmpty else { throw ValidationError("no input files outside the output directory \(output)") }
                let units = inputs.enumerated().map { index, unit in
                    WorkUnit(index: index, path: unit.path, format: unit.format, name: unit.name, bytes: unit.bytes)
                }
                return (recipe, units)
            }
            let cleaner = try Cleaner(units: units, output: output, recipe: recipe, reader: reader, world: context.world, log: context.log)
            let stats = try cleaner.run()
            if json {
                context.log.info(stats.json.trimmingCharacters(in: .newlines))
            } else {
                context.log.info(stats.table)
                context.log.info("wrote \(output)/kept, \(output)/removed.jsonl, \(output)/stats.json")
            }
        }
    }
}
