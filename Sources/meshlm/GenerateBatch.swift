import DataPipeline
import Foundation
import Runtime
import Serving

/// One line of `generate --input`: a prompt, or chat messages for the chat template.
struct BatchPrompt {
    enum Content {
        case text(String)
        case messages([ChatMessage])
    }

    let content: Content
    /// The line's `id`, copied to its output line (nil: none given).
    let id: String?

    /// Reads a JSONL file of `{"prompt": TEXT}` or `{"messages": [{"role", "content"}…]}` lines
    /// (each may carry an `id`), every line checked before any generation starts.
    static func read(_ path: String) throws -> [BatchPrompt] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw JobError("--input \(path): no such file")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw JobError("--input \(path): not UTF-8 text") }
        var prompts: [BatchPrompt] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            let place = "\(path):\(index + 1)"
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw JobError("\(place): not a JSON object (each line is {\"prompt\": TEXT} or {\"messages\": [{\"role\": …, \"content\": …}]})")
            }
            let id: String? = switch object["id"] {
            case nil, is NSNull: nil
            case let text as String: text
            case let number as NSNumber: number.stringValue
            default: throw JobError("\(place): id must be a string or a number")
            }
            switch (object["prompt"], object["messages"]) {
            case (let prompt as String, nil):
                guard !prompt.isEmpty else { throw JobError("\(place): prompt is empty") }
                prompts.append(BatchPrompt(content: .text(prompt), id: id))
            case (nil, let list as [Any]):
                var messages: [ChatMessage] = []
                for (number, entry) in list.enumerated() {
                    guard let message = entry as? [String: Any], let role = message["role"] as? String,
                          let content = message["content"] as? String else {
                        throw JobError("\(place): messages[\(number)] needs a string role and a string content")
                    }
                    messages.append(ChatMessage(role: role, content: content))
                }
                guard !messages.isEmpty else { throw JobError("\(place): messages is empty") }
                prompts.append(BatchPrompt(content: .messages(messages), id: id))
            default:
                throw JobError("\(place): give exactly one of prompt (a string) and messages (a list)")
            }
        }
        guard !prompts.isEmpty else { throw JobError("--input \(path): no prompts (the file is empty)") }
        return prompts
    }
}

extension GenerateCommand {
    /// `--input`: every prompt of the file through one engine (continuously batched; each
    /// sequence's tokens are those it would get alone), one JSON line per prompt, in input order.
    func generateBatch(_ generator: Engine, prompts: [BatchPrompt], chat: ChatPrompter, tokenizer: any Tokenizer,
                       tensorGroup: InferenceTensorGroup?, context: JobContext) throws {
        if let tensorGroup, !tensorGroup.isLeader {
            generator.model.follow(cache: generator.cache)
            return
        }
        defer { tensorGroup?.stopFollowers() }
        // Every prompt rendered and checked before the first token is generated.
        var requests: [(prompt: [Int32], parameters: SamplingParameters)] = []
        for (index, line) in prompts.enumerated() {
            var parameters = sampling.parameters
            // --seed S: line i samples with seed S + i, whatever the batch around it.
            parameters.seed = sampling.seed.map { $0 &+ UInt64(index) }
            let ids: [Int32]
            switch line.content {
            case .text(let text): ids = tokenizer.encode(text)
            case .messages(let messages):
                ids = try chat.prompt(messages)
                parameters.stopStrings += chat.stopStrings
                parameters.stopTokens += chat.stopTokens
            }
            let context = generator.model.config.maxPositionEmbeddings
            guard ids.count + parameters.maxTokens <= context else {
                throw JobError("--input line \(index + 1): the prompt has \(ids.count) tokens and --max-tokens is \(parameters.maxTokens), beyond the model's context of \(context)")
            }
            requests.append((ids, parameters))
        }
        var outputs = [String?](repeating: nil, count: prompts.count)
        var texts: [Int: String] = [:]
        var lineOfRequest: [Int: Int] = [:]
        var next = 0
        let start = monotonicSeconds()
        var generated = 0
        while next < requests.count || generator.hasWork {
            // Keep the queue full, never beyond --max-queue.
            while next < requests.count && lineOfRequest.count < engine.maxQueue {
                do {
                    let id = try generator.add(prompt: requests[next].prompt, parameters: requests[next].parameters)
                    lineOfRequest[id] = next
                } catch {
                    throw JobError("--input line \(next + 1) (\(prompts[next].id.map { "id \($0)" } ?? "no id")): \(error)")
                }
                next += 1
            }
            for output in generator.step() {
                guard let line = lineOfRequest[output.requestID] else { continue }
                texts[output.requestID, default: ""] += output.text
                if output.token != nil { generated += 1 }
                guard let reason = output.finishReason else { continue }
                var result = JSONLine()
                result.add("index", line)
                if let id = prompts[line].id { result.add("id", id) }
                result.add("text", texts.removeValue(forKey: output.requestID) ?? "")
                result.add("finish_reason", reason.rawValue)
                result.add("prompt_tokens", output.promptTokenCount)
                result.add("completion_tokens", output.outputTokenCount)
                outputs[line] = result.text
                lineOfRequest[output.requestID] = nil
            }
        }
        let lines = outputs.map { $0 ?? "" }.joined(separator: "\n") + "\n"
        if let path = output {
            try FileOutput.writeAtomically(Data(lines.utf8), to: path, option: "--output")
        } else {
            Log.write(lines, to: .standardOutput)
        }
        let elapsed = monotonicSeconds() - start
        context.log.info(String(format: "%d prompts, %d tokens generated in %.1f s (%.1f tok/s)", prompts.count, generated,
                                elapsed, Double(generated) / Swift.max(elapsed, 1e-9)))
    }
}

enum FileOutput {
    /// Writes `text` to a temporary name beside `path`, then renames it: a reader never sees
    /// half a file.
    static func writeAtomically(_ data: Data, to path: String, option: String) throws {
        let temporary = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: data) else {
            throw JobError("cannot write \(option) \(path): \(FileProblem.reason(writing: temporary)); give \(option) a file in an existing, writable directory")
        }
        _ = try? FileManager.default.removeItem(atPath: path)
        do { try FileManager.default.moveItem(atPath: temporary, toPath: path) } catch {
            _ = try? FileManager.default.removeItem(atPath: temporary)
            throw JobError("cannot write \(option) \(path): \(FileProblem.reason(error, path: path)); give \(option) another file")
        }
    }
}
