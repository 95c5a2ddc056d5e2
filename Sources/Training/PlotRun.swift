import Foundation
import Runtime

/// One training run's curves as `meshlm plot` draws them, read from `RUN/metrics.jsonl`
/// (DESIGN §4): training rows carry `loss` and `tokens_per_s`, eval rows `eval_loss`, and a
/// row may carry both. Every other numeric field (`lr`, `grad_norm`, an objective's
/// `rewards/chosen`, …) is kept as a series too, for `meshlm plot --metric NAME`.
public struct PlotRun: Sendable, Equatable {
    /// The legend name: the run directory's name.
    public var name: String
    /// `(step, value)` of every row that has the field as a number, by field name (`step`
    /// itself excepted), each in step order. Fields no row has as a number are absent.
    public var series: [String: [PlotPoint]] = [:]

    /// `(step, loss)` of every training row, in step order.
    public var trainLoss: [PlotPoint] { series["loss"] ?? [] }
    /// `(step, eval_loss)` of every eval row, in step order.
    public var evalLoss: [PlotPoint] { series["eval_loss"] ?? [] }
    /// `(step, tokens_per_s)` of every training row that has it, in step order.
    public var tokensPerSecond: [PlotPoint] { series["tokens_per_s"] ?? [] }

    public init(name: String, series: [String: [PlotPoint]] = [:]) {
        self.name = name
        self.series = series.filter { !$0.value.isEmpty }
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
            // Each field in its own series: an eval row logged beside a training row of the same
            // step replaces nothing, while a resumed run's repeat of a field replaces that field.
            for (field, value) in row.numbers {
                run.series[field, default: []].append(replacingFrom: PlotPoint(x: step, y: value))
            }
        }
        guard rowCount > 0 else { throw JobError("\(path): no rows (the run has not logged a step yet)") }
        guard !run.trainLoss.isEmpty || !run.evalLoss.isEmpty else {
            throw JobError("\(path): none of its \(rowCount) rows has 'loss' or 'eval_loss'")
        }
        return run
    }

    /// A row: `step`, and every field whose value is a number. `loss`, `eval_loss` and
    /// `tokens_per_s` must be numbers when present; any other field that is not (a string, an
    /// array) is read past. `null` (how a non-finite number is written) counts as absent.
    private struct Row: Decodable {
        let step: Double
        let numbers: [(field: String, value: Double)]

        private struct Field: CodingKey {
            let stringValue: String
            init(stringValue: String) { self.stringValue = stringValue }
            var intValue: Int? { nil }
            init?(intValue: Int) { nil }
        }
        /// The fields every plot draws: one that is present but not a number is an error.
        private static let strictFields = ["loss", "eval_loss", "tokens_per_s"]

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Field.self)
            step = try container.decode(Double.self, forKey: Field(stringValue: "step"))
            var numbers: [(field: String, value: Double)] = []
            for field in Self.strictFields {
                if let value = try container.decodeIfPresent(Double.self, forKey: Field(stringValue: field)) {
                    numbers.append((field, value))
                }
            }
            for key in container.allKeys where key.stringValue != "step" && !Self.strictFields.contains(key.stringValue) {
                if let value = try? container.decode(Double.self, forKey: key) { numbers.append((key.stringValue, value)) }
            }
            self.numbers = numbers
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
