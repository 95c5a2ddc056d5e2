import Foundation
import Testing

/// `meshlm generate` with chat messages and batched prompt files, on the small Qwen2 model
/// imported from transformers (Tests/ModelTests/Fixtures/hf-qwen2) with the byte tokenizer:
/// `--chat` renders through the chat template and stops at its end of turn, `--input` gives
/// each prompt the text it gets alone, and bad prompt files are refused naming the line.
@Suite(.serialized) struct GenerateCommandTests {
    static let work: URL = {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-generate-\(getpid())")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        _ = try? Launcher.plain("meshlm", ["ckpt", "import-hf", repositoryRoot.appendingPathComponent("Tests/ModelTests/Fixtures/hf-qwen2").path,
                                           "--output", directory.appendingPathComponent("model").path])
        try? Data(chatML.utf8).write(to: directory.appendingPathComponent("chatml.jinja"))
        return directory
    }()
    static let chatML = """
        {% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
        {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}
        """
    var model: String { Self.work.appendingPathComponent("model").path }
    var template: String { Self.work.appendingPathComponent("chatml.jinja").path }

    func generate(_ arguments: [String]) throws -> Launch {
        try Launcher.plain("meshlm", ["generate", "--checkpoint", model, "--threads", "1"] + arguments)
    }

    @Test func chatRendersTheTemplateAndBatchedPromptsGetTheirTextAlone() throws {
        let echoed = try generate(["--chat-template", template, "--chat", "--system", "Be brief.", "--prompt", "What is 2 plus 2?",
                                   "--max-tokens", "6", "--echo"])
        #expect(echoed.status == 0, "\(echoed.standardError)")
        #expect(echoed.standardOutput.hasPrefix("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2 plus 2?<|im_end|>\n<|im_start|>assistant\n"),
                "\(echoed.standardOutput)")

        // Four prompts, two plain and two chats, batched; each must equal its own run alone.
        let lines = [
            #"{"id": "a", "prompt": "In the beginning"}"#,
            #"{"id": 7, "messages": [{"role": "user", "content": "What is 2 plus 2?"}]}"#,
            #"{"prompt": "Once upon a time there"}"#,
            #"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]}"#,
        ]
        let input = Self.work.appendingPathComponent("prompts.jsonl"), output = Self.work.appendingPathComponent("out.jsonl")
        try Data(lines.joined(separator: "\n").utf8).write(to: input)
        let batched = try generate(["--chat-template", template, "--input", input.path, "--output", output.path, "--max-tokens", "10"])
        #expect(batched.status == 0, "\(batched.standardError)")
        let rows = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(rows.map { $0["index"] as? Int } == [0, 1, 2, 3])
        #expect(rows[0]["id"] as? String == "a" && rows[1]["id"] as? String == "7" && rows[2]["id"] == nil)
        let alone = [
            try generate(["--prompt", "In the beginning", "--max-tokens", "10"]),
            try generate(["--chat-template", template, "--chat", "--prompt", "What is 2 plus 2?", "--max-tokens", "10"]),
            try generate(["--prompt", "Once upon a time there", "--max-tokens", "10"]),
            try generate(["--chat-template", template, "--chat", "--system", "Be brief.", "--prompt", "Name a colour.", "--max-tokens", "10"]),
        ]
        for (index, single) in alone.enumerated() {
            #expect(single.status == 0, "\(single.standardError)")
            // generate ends its text with a newline.
            #expect(rows[index]["text"] as? String == String(single.standardOutput.dropLast()), "prompt \(index)")
            #expect((rows[index]["completion_tokens"] as? Int ?? 0) > 0 && rows[index]["finish_reason"] is String)
        }
    }

    @Test(arguments: [
        (#"{"prompt": "x"}"# + "\nnot json", "prompts.jsonl:2: not a JSON object"),
        (#"{"prompt": "x", "messages": []}"#, "prompts.jsonl:1: give exactly one of prompt (a string) and messages (a list)"),
        (#"{"messages": [{"role": "user"}]}"#, "prompts.jsonl:1: messages[0] needs a string role and a string content"),
        (#"{"prompt": ""}"#, "prompts.jsonl:1: prompt is empty"),
        ("\n\n", "no prompts (the file is empty)"),
        (#"{"prompt": "x", "id": [1]}"#, "prompts.jsonl:1: id must be a string or a number"),
    ])
    func badPromptFilesAreRefusedNamingTheLine(content: String, message: String) throws {
        let input = Self.work.appendingPathComponent("bad-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        let file = input.appendingPathComponent("prompts.jsonl")
        try Data(content.utf8).write(to: file)
        let launch = try generate(["--input", file.path])
        #expect(launch.status != 0 && launch.standardError.contains(message), "\(launch.standardError)")
    }

    @Test func conflictingOptionsAreRefused() throws {
        for (arguments, message) in [(["--input", "x.jsonl", "--prompt", "y"], "--input takes its prompts from the file"),
                                     (["--output", "x.jsonl", "--prompt", "y"], "--output goes with --input"),
                                     (["--chat", "--prompt-ids", "1,2"], "--chat sends the --prompt text"),
                                     (["--system", "s", "--prompt", "y"], "--system goes with --chat")] {
            let launch = try generate(arguments)
            #expect(launch.status != 0 && launch.standardError.contains(message), "\(arguments): \(launch.standardError)")
        }
    }

    /// A port outside 0–65535 is refused before anything loads (it used to wrap: 70000 listened on 4464).
    @Test func servePortOutOfRangeIsRefused() throws {
        for port in ["70000", "65536"] {
            let launch = try Launcher.plain("meshlm", ["serve", "--checkpoint", "/nonexistent", "--port", port])
            #expect(launch.status != 0 && launch.standardError.contains("--port \(port): a TCP port is 1–65535 (or 0 to pick a free one)"),
                    "\(launch.standardError)")
        }
    }
}
