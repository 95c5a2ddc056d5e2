import ArgumentParser
import DataPipeline
import Foundation
import Runtime

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

    @OptionGroup var stage: DataStageOptions
    @Flag(name: .long, help: "Remove documents whose whitespace-normalized text equals an earlier one's.") var exact = false
    @Flag(name: .long, help: "Remove near-duplicates by MinHash-LSH.") var minhash = false
    @Option(name: .customLong("ngram"), parsing: .unconditional, help: "Words per shingle.") var ngramSize = 5
    @Option(name: .long, parsing: .unconditional, help: "LSH bands.") var bands = 14
    @Option(name: .long, parsing: .unconditional, help: "Signature rows per band.") var rows = 8
    @Option(name: .long, parsing: .unconditional, help: "Jaccard similarity a pair must reach with --verify-jaccard.") var threshold = 0.8
    @Flag(name: .customLong("verify-jaccard"), help: "Check each candidate pair's exact shingle Jaccard similarity.")
    var verifyJaccard = false
    @Option(name: .customLong("memory-mb"), parsing: .unconditional, help: "Memory per rank for bucket entries before spilling sorted runs to disk.")
    var memoryMegabytes = 1024.0

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
        options.reader = stage.reader
        try job.runJob { context in
            let units = try context.world.collectively { () throws -> [WorkUnit] in
                try options.validate()
                return try stage.workUnits(html: false, log: context.log)
            }
            let deduplicator = try Deduplicator(units: units, output: stage.output, options: options, world: context.world, log: context.log)
            let stats = try deduplicator.run()
            stage.report(json: stats.json, table: stats.table, log: context.log)
        }
    }
}
