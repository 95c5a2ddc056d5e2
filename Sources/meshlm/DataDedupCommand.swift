import ArgumentParser
import DataPipeline
import Foundation
import Runtime

extension InputErrorPolicy: ExpressibleByArgument {}

struct DataDedupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dedup",
        abstract: "Remove exact and near-duplicate documents (MinHash-LSH) across ranks.",
        discussion: """
            Writes OUT/kept/NNNNN.jsonl.zst (one per input file, every input field kept), \
            OUT/removed.jsonl ({"id", "duplicate_of"}) and OUT/stats.json. Of each cluster of \
            duplicates the document first in input order is kept, whatever the rank count. \
            Rerunning after a crash resumes from the finished input files. With neither --exact \
            nor --minhash both run.
            """)

    @OptionGroup var job: JobOptions

    @Option(name: .long, parsing: .upToNextOption, help: "Input files or directories (.jsonl, .jsonl.zst, .txt).")
    var input: [String] = []
    @Option(name: .long, help: "The output directory (created; a partial run there is resumed).") var output: String
    @Flag(name: .long, help: "Remove documents whose whitespace-normalized text equals an earlier one's.") var exact = false
    @Flag(name: .long, help: "Remove near-duplicates by MinHash-LSH.") var minhash = false
    @Option(name: .customLong("ngram"), help: "Words per shingle.") var ngramSize = 5
    @Option(name: .long, help: "LSH bands.") var bands = 14
    @Option(name: .long, help: "Signature rows per band.") var rows = 8
    @Option(name: .long, help: "Jaccard similarity a pair must reach with --verify-jaccard.") var threshold = 0.8
    @Flag(name: .customLong("verify-jaccard"), help: "Check each candidate pair's exact shingle Jaccard similarity.")
    var verifyJaccard = false
    @Option(name: .customLong("memory-mb"), help: "Memory per rank for bucket entries before spilling sorted runs to disk.")
    var memoryMegabytes = 1024.0
    @Option(name: .customLong("text-field"), help: "The JSONL field that holds the text.") var textField = "text"
    @Option(name: .customLong("id-field"), help: "The JSONL field that holds the document id.") var idField = "id"
    @Option(name: .customLong("on-error"), help: "fail: stop at a bad input line; skip: skip, count and log it.")
    var onError = InputErrorPolicy.fail
    @Flag(name: .long, help: "Print the stats as one JSON line instead of a table.") var json = false

    func validate() throws {
        if input.isEmpty { throw ValidationError("give at least one --input file or directory") }
    }

    func run() throws {
        var options = DedupOptions()
        options.exact = exact || !minhash
        options.minhash = minhash || !exact
        options.ngramSize = ngramSize
        options.bands = bands
        options.rows = rows
        options.threshold = threshold
        options.verifyJaccard = verifyJaccard
        options.memoryMegabytes = memoryMegabytes
        options.reader = RecordReaderOptions(textField: textField, idField: idField, onError: onError)
        try job.runJob { context in
            let units = try context.world.collectively { () throws -> [WorkUnit] in
                try options.validate()
                let (found, ignored) = try WorkPlan.units(inputs: input)
                if ignored > 0 { context.log.warning("skipped \(ignored) files that are not .jsonl, .jsonl.zst or .txt") }
                // An output directory inside an input directory must not feed its own kept files
                // back in on a rerun.
                let outputPrefix = URL(fileURLWithPath: output).standardizedFileURL.path + "/"
                let inputs = found.filter { !URL(fileURLWithPath: $0.path).standardizedFileURL.path.hasPrefix(outputPrefix) }
                if inputs.count < found.count {
                    context.log.warning("skipped \(found.count - inputs.count) files inside the output directory \(output)")
                }
                guard !inputs.isEmpty else { throw ValidationError("no input files outside the output directory \(output)") }
                return inputs.enumerated().map { index, unit in
                    WorkUnit(index: index, path: unit.path, format: unit.format, name: unit.name, bytes: unit.bytes)
                }
            }
            let deduplicator = try Deduplicator(units: units, output: output, options: options, world: context.world, log: context.log)
            let stats = try deduplicator.run()
            if json {
                context.log.info(stats.json.trimmingCharacters(in: .newlines))
            } else {
                context.log.info(stats.table)
                context.log.info("wrote \(output)/kept, \(output)/removed.jsonl, \(output)/stats.json")
            }
        }
    }
}
