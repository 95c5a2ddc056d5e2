import Foundation
import Runtime

/// One training run's curves as `meshlm plot` draws them, read from `RUN/metrics.jsonl`
/// (DESIGN §4): training rows carry `loss` and `tokens_per_s`, eval rows `eval_loss`, and a
/// row may carry both. Other fields (`lr`, `grad_norm`, `mfu`, …) are read past.
public struct PlotRun: Sendable, Equatable {
    /// The legend name: the run directory's name.
    public var name: String
    /// `(step, loss)` of every training row, in step order.
    public var trainLoss: [PlotPoint] = []
    /// `(step, eval_loss)` of every eval row, in step order.
    public var evalLoss: [PlotPoint] = []
    /// `(step, tokens_per_s)` of every training row that has it, in step order.
    public var tokensPerSecond: [PlotPoint] = []

    public init(name: String, trainLoss: [PlotPoint] = [], evalLoss: [PlotPoint] = [], tokensPerSecond: [PlotPoint] = []) {
        self.name = name
        self.trainLoss = trainLoss
        self.evalLoss = evalLoss
        self.tokensPerSecond = tokensPerSecond
    }

    /// Reads `directory/metrics.jsonl`; the run is named after the directory.
    public static func read(directory: String) throws(JobError) -> PlotRun {
        let path = URL(fileURLWithPath: directory).appendingPathComponent("metrics.jsonl").path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw JobError("\(directory): no such run directory")
        }
        guard FileManager.default.fileExists(atPath: path) else {
            throw JobError("\(path): not found (a run directory holds the metrics.jsonl that meshlm pretrain writes)")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw JobError("\(path): cannot read") }
        let name = URL(fileURLWithPath: directory).standardizedFileURL.lastPathComponent
        return try parse(String(decoding: data, as: UTF8.self), name: name, path: path)
    }

    /// Parses the lines of a metrics file; `path` names it in errors (`path:line: what is wrong`).
    /// A resumed run appends rows for steps it logged before its last checkpoint: a step at or
    /// below the last one seen replaces the earlier rows from that step on.
    public static func parse(_ text: String, name: String, path: String) throws(JobError) -> PlotRun {
        var run = PlotRun(name: name)
        let decoder = JSONDecoder()
        var rowCount = 0
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            let row: Row
            do {
                row = try decoder.decode(Row.self, from: Data(trimmed.utf8))
            } catch {
                throw JobError("\(path):\(index + 1): \(describe(error, line: trimmed))")
            }
            // Decoded as a number and checked here: JSONDecoder reports 1.5 for an Int as invalid JSON.
            let step = row.step
            guard step.rounded() == step, step >= 0 else {
                throw JobError("\(path):\(index + 1): 'step' must be a whole number: \(excerpt(trimmed))")
            }
            rowCount += 1
            if let loss = row.loss { run.trainLoss.append(replacingFrom: PlotPoint(x: step, y: loss)) }
            if let evalLoss = row.evalLoss { run.evalLoss.append(replacingFrom: PlotPoint(x: step, y: evalLoss)) }
            if let rate = row.tokensPerSecond { run.tokensPerSecond.append(replacingFrom: PlotPoint(x: step, y: rate)) }
        }
        guard rowCount > 0 else { throw JobError("\(path): no rows (the run has not logged a step yet)") }
        guard !run.trainLoss.isEmpty || !run.evalLoss.isEmpty else {
            throw JobError("\(path): none of its \(rowCount) rows has 'loss' or 'eval_loss'")
        }
        return run
    }

    /// The fields the plot reads; `null` (how a non-finite number is written) counts as absent.
    private struct Row: Decodable {
        let step: Double
        let loss: Double?
        let evalLoss: Double?
        let tokensPerSecond: Double?
        enum CodingKeys: String, CodingKey {
            case step, loss
            case evalLoss = "eval_loss"
            case tokensPerSecond = "tokens_per_s"
        }
    }

    /// The line, shortened to 60 characters.
    private static func excerpt(_ line: String) -> String {
        line.count > 60 ? String(line.prefix(60)) + "…" : line
    }

    private static func describe(_ error: any Error, line: String) -> String {
        let excerpt = excerpt(line)
        switch error as? DecodingError {
        case .keyNotFound(let key, _)?:
            return "row has no '\(key.stringValue)': \(excerpt)"
        case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?:
            guard let key = context.codingPath.first?.stringValue else { return "not a JSON object: \(excerpt)" }
            return "'\(key)' must be a number: \(excerpt)"
        default:
            return "malformed JSON: \(excerpt)"
        }
    }
}

/// A point of a curve: `x` is the step.
public struct PlotPoint: Sendable, Equatable {
    public var x: Double
    public var y: Double
    public init(x: Double, y: Double) {
        self.x = x
        self.y = y
    }
}

extension [PlotPoint] {
    /// Appends `point`, first dropping the points at or after its step (rows a resumed run
    /// logged again).
    fileprivate mutating func append(replacingFrom point: PlotPoint) {
        if let last, last.x >= point.x { removeAll { $0.x >= point.x } }
        append(point)
    }
}
