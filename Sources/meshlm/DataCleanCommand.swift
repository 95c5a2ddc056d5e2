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
    @OptionGroup var stage: DataStageOptions
    @Option(name: .long, help: "The recipe: a YAML list of operators and their options.") var recipe = "configs/data/clean.yaml"

    func run() throws {
        try job.runJob { context in
            let (recipe, units) = try context.world.collectively { () throws -> (CleaningRecipe, [WorkUnit]) in
                (try CleaningRecipe.load(path: self.recipe), try stage.workUnits(html: true, log: context.log))
            }
            let cleaner = try Cleaner(units: units, output: stage.output, recipe: recipe, reader: stage.reader,
                                      world: context.world, log: context.log)
            let stats = try cleaner.run()
            stage.report(json: stats.json, table: stats.table, log: context.log)
        }
    }
}
