import DataPipeline
import Foundation
import Parallel
import Runtime
import Tensors
import Training

/// `mpi-checks reference DIRECTORY PP TP ZERO`: the reference pass (`PreferenceReference`) of a
/// small random model over 30 synthetic pairs, cached in DIRECTORY; rank 0 prints
/// `reference P CHOSEN REJECTED` for every pair and `scored CACHED SCORED`, for tests to compare
/// across layouts and across a cache a test has cut back (a pass killed half way).
func referenceChecks(_ world: Communicator, _ log: Log, arguments: [String]) throws {
    guard arguments.count >= 5, let pp = Int(arguments[2]), let tp = Int(arguments[3]), let zero = Int(arguments[4]) else {
        throw JobError("usage: mpi-checks reference DIRECTORY PP TP ZERO")
    }
    let (config, mesh) = try smallModelMesh(world, pp: pp, tp: tp, zero: zero, sequenceLength: 64, globalBatchSize: 4, source: "reference check")
    // Pairs of a 3–12-token prompt and two answers of 2–15 tokens, the same on every rank.
    var generator = SplitMix64(seed: 11)
    func ids(_ count: Int) -> [Int32] { (0..<count).map { _ in Int32(generator.next() % 97) } }
    let pairs = (0..<30).map { index -> TokenizedPair in
        let prompt = ids(3 + Int(generator.next() % 10))
        func side() -> TokenizedSample {
            let answer = ids(2 + Int(generator.next() % 14))
            return TokenizedSample(ids: prompt + answer, supervised: prompt.map { _ in false } + answer.map { _ in true })
        }
        return TokenizedPair(source: "pair \(index)", chosen: side(), rejected: side())
    }
    let rows = PreferencePackedRows(pairs, sequenceLength: 64, truncation: .drop, paddingId: 0)
    let trainer = try world.collectively { try Trainer(config: config, mesh: mesh, threads: .single, log: log) }
    let cache = PreferenceReference(directory: arguments[1], name: "train", rows: rows, identity: Data("reference check".utf8))
    // Two rows per call and a save after every chunk, so a cut-back cache has many partial states.
    let outcome = try cache.compute(rows, order: Array(rows.rows.indices), model: { trainer.parallelModel }, rowsPerBatch: 2, batchesPerCall: 1,
                                    dataCommunicator: mesh.dataContext, world: world, saveEvery: 1)
    log.info("scored \(outcome.cachedRows) \(outcome.scoredRows)")
    for pair in rows.pairs.indices {
        log.info("reference \(pair) \(outcome.references[2 * pair]) \(outcome.references[2 * pair + 1])")
    }
}
