import ArgumentParser
import DataPipeline
import Foundation
import Runtime

struct TokenizerEncodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode",
        abstract: "Print the token ids of --text, or of every document of --input (one JSON array per line).",
        discussion: "Special token texts are ordinary text unless --special-tokens. Runs on one rank.")

    @OptionGroup var job: JobOptions

    @Option(name: .long, help: "Tokenizer: 'bytes' or the path of a tokenizer.json.") var tokenizer: String
    @Option(name: .long, help: "Text to encode.") var text: String?
    @Option(name: .long, parsing: .upToNextOption, help: "Input files or directories.") var input: [String] = []
    @Option(name: .customLong("text-field"), help: "The JSONL field that holds the text.") var textField = "text"
    @Option(name: .long, help: "Write the ids here instead of standard output.") var output: String?
    @Flag(name: .customLong("special-tokens"), help: "Encode special token texts (e.g. <|eot_id|>) as their ids.") var specialTokens = false

    func validate() throws {
        if (text == nil) == input.isEmpty { throw ValidationError("give either --text or --input") }
    }

    func run() throws {
        try job.runJob { context in
            try context.world.collectively {
                guard context.world.rank == 0 else { return }
                let tokenizer = try TokenizerLoader.load(self.tokenizer)
                func encode(_ text: String) -> [Int32] {
                    if specialTokens { return tokenizer.encodeWithSpecialTokens(text) }
                    return tokenizer.encode(text)
                }
                var out = ""
                var lines = 0
                if let text {
                    out = "[" + encode(text).map(String.init).joined(separator: ",") + "]\n"
                } else {
                    for file in try DocumentReader.expand(input).files {
                        let reader = try DocumentReader(path: file, textField: textField)
                        while let document = try reader.next() {
                            out += "[" + encode(document.text).map(String.init).joined(separator: ",") + "]\n"
                            lines += 1
                        }
                    }
                }
                if let output {
                    guard FileManager.default.createFile(atPath: output, contents: Data(out.utf8)) else {
                        throw DataError("--output \(output): cannot be written: \(FileProblem.reason(writing: output)); choose another --output")
                    }
                    context.log.info("wrote the ids of \(lines) documents to \(output)")
                } else {
                    FileHandle.standardOutput.write(Data(out.utf8))
                }
            }
        }
    }
}
