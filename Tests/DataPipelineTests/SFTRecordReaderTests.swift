import DataPipeline
import Foundation
import Runtime
import Testing

/// The SFT file formats (Alpaca, ShareGPT with remapped tags, OpenAI messages, prompt/completion
/// as text or messages), plain and zstd-compressed, and every bad sample named by file and line.
@Suite struct SFTRecordReaderTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-sft-\(getpid())-\(UUID().uuidString.prefix(6))").path

    init() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    func read(_ lines: [String], format: SFTFormat = .auto, tags: ShareGPTTags = ShareGPTTags(), name: String = "data.jsonl") throws -> [SFTSample] {
        try writeJSONL(lines, to: directory + "/" + name)
        return try SFTRecordReader(path: directory + "/" + name, format: format, tags: tags).readAll()
    }

    /// The error text for one bad line (preceded by a good one, so the line number is 2).
    func failure(_ line: String, format: SFTFormat = .auto) -> String {
        let good = #"{"prompt": "a", "completion": "b"}"#
        return errorText(in: directory) { _ = try read([good, line], format: format) }
    }

    @Test func everyFormatBecomesAConversation() throws {
        let samples = try read([
            #"{"instruction": "Add", "input": "2 and 3", "output": "5", "system": "Be brief.", "history": [["Hi", "Hello!"]]}"#,
            #"{"instruction": "Name a color.", "output": "Blue"}"#,
            #"{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]}"#,
            #"{"messages": [{"role": "user", "content": [{"type": "text", "text": "Hé "}, {"type": "text", "text": "😀"}]}, {"role": "assistant", "content": "Yes"}]}"#,
            "",
            #"{"prompt": "The sky is", "completion": " blue."}"#,
            #"{"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}]}"#,
        ])
        #expect(samples.map(\.source) == [1, 2, 3, 4, 6, 7].map { "\(directory)/data.jsonl:\($0)" })
        #expect(samples[0].content == .conversation([ChatTurn(.system, "Be brief."), ChatTurn(.user, "Hi"), ChatTurn(.assistant, "Hello!"),
                                                     ChatTurn(.user, "Add\n2 and 3"), ChatTurn(.assistant, "5")]))
        #expect(samples[1].content == .conversation([ChatTurn(.user, "Name a color."), ChatTurn(.assistant, "Blue")]))
        #expect(samples[2].content == .conversation([ChatTurn(.system, "S"), ChatTurn(.user, "Q1"), ChatTurn(.assistant, "A1"),
                                                     ChatTurn(.user, "Q2"), ChatTurn(.assistant, "A2")]))
        #expect(samples[3].content == .conversation([ChatTurn(.user, "Hé 😀"), ChatTurn(.assistant, "Yes")]))
        #expect(samples[4].content == .text(prompt: "The sky is", completion: " blue."))
        #expect(samples[5].content == .conversation([ChatTurn(.user, "2+2?"), ChatTurn(.assistant, "4")]))
    }

    @Test func shareGPTTagsAreRemappableAndZstdIsRead() throws {
        var tags = ShareGPTTags()
        (tags.roleTag, tags.contentTag, tags.userTag, tags.assistantTag) = ("role", "text", "user", "model")
        let line = #"{"conversations": [{"role": "user", "text": "Q"}, {"role": "model", "text": "A"}]}"#
        let samples = try read([line, line], format: .sharegpt, tags: tags, name: "chat.jsonl.zst")
        #expect(samples.count == 2)
        #expect(samples[1].content == .conversation([ChatTurn(.user, "Q"), ChatTurn(.assistant, "A")]))
        #expect(samples[1].source.hasSuffix("chat.jsonl.zst:2"))
    }

    @Test func badSamplesAreNamedByFileAndLine() throws {
        #expect(failure("not json") == "data.jsonl:2: not a JSON object")
        #expect(failure(#"{"text": "x"}"#) == #"data.jsonl:2: cannot tell the format from the keys ["text"]: expected messages (openai), conversations (sharegpt), instruction (alpaca) or prompt + completion (set the format to say which)"#)
        #expect(failure(#"{"instruction": "x"}"#) == #"data.jsonl:2: missing field "output""#)
        #expect(failure(#"{"instruction": "x", "output": ""}"#) == "data.jsonl:2: message 1: empty assistant turn (nothing to learn from)")
        #expect(failure(#"{"instruction": "x", "output": 5}"#) == #"data.jsonl:2: "output" must be a string"#)
        #expect(failure(#"{"instruction": "x", "output": "y", "history": [["only one"]]}"#) == #"data.jsonl:2: "history"[0] must be a [user, assistant] pair of strings"#)
        #expect(failure(#"{"messages": [{"role": "bot", "content": "x"}]}"#) == #"data.jsonl:2: "messages"[0]: unknown role "bot" (expected system, user or assistant)"#)
        #expect(failure(#"{"messages": [{"role": "assistant", "content": "x"}]}"#) == "data.jsonl:2: message 0 is assistant where user was expected (roles must alternate user/assistant, starting with user)")
        #expect(failure(#"{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}]}"#) == "data.jsonl:2: message 1 is system where assistant was expected (a system message must come first, and only once)")
        #expect(failure(#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}"#) == "data.jsonl:2: the last message is from the user; a training sample ends with the assistant's answer")
        #expect(failure(#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": " \n"}]}"#) == "data.jsonl:2: message 1: empty assistant turn (nothing to learn from)")
        #expect(failure(#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, {"role": "assistant", "content": "b"}]}"#) == #"data.jsonl:2: "messages"[0].content[0]: a "image_url" part; MeshLM trains on text parts only"#)
        #expect(failure(#"{"messages": [{"role": "system", "content": "s"}]}"#) == "data.jsonl:2: no user or assistant message")
        #expect(failure(#"{"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]}"#) == #"data.jsonl:2: "conversations"[1]: unknown role "bot" (expected "system", "human" or "gpt"; the tags can be remapped)"#)
        #expect(failure(#"{"prompt": "a", "completion": "  "}"#) == #"data.jsonl:2: empty "completion": nothing to learn from"#)
        #expect(failure(#"{"prompt": "a", "completion": ["b"]}"#) == #"data.jsonl:2: "prompt" and "completion" must both be strings, or both be lists of messages"#)
        #expect(failure(#"{"prompt": "a"}"#, format: .promptCompletion) == #"data.jsonl:2: missing field "completion""#)
        // The good first line is not Alpaca: with the format forced, line 1 is refused already.
        #expect(failure(#"{"messages": []}"#, format: .alpaca) == #"data.jsonl:1: missing field "instruction""#)
    }

    @Test func unreadablePathsAreRefused() throws {
        #expect(throws: DataError(directory + "/missing.jsonl: no such file")) {
            _ = try SFTRecordReader(path: directory + "/missing.jsonl")
        }
        let csv = directory + "/data.csv"
        try Data("a,b\n".utf8).write(to: URL(fileURLWithPath: csv))
        #expect(throws: DataError(csv + ": SFT data is JSONL, one sample per line (.jsonl, or .jsonl.zst compressed)")) {
            _ = try SFTRecordReader(path: csv)
        }
    }
}
