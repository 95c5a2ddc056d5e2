import DataPipeline
import Foundation
import Runtime
import Testing

/// The preference formats (TRL's explicit and implicit prompt, LlamaFactory's Alpaca and
/// ShareGPT ranking data), KTO's unpaired samples, identical pairs skipped and counted, and every
/// bad line named by file and line.
@Suite struct PreferenceRecordReaderTests {
    let directory = scratchDirectory()

    func path(_ lines: [String], name: String) throws -> String {
        try writeJSONL(lines, to: directory + "/" + name)
        return directory + "/" + name
    }

    func pairs(_ lines: [String], format: PreferenceFormat = .auto, tags: ShareGPTTags = ShareGPTTags(), name: String = "data.jsonl") throws -> [PreferencePair] {
        try PreferenceRecordReader(path: try path(lines, name: name), format: format, tags: tags).readAll()
    }

    /// The error text for one bad line (preceded by a good one, so the line number is 2).
    func failure(_ line: String, format: PreferenceFormat = .auto) -> String {
        errorText(in: directory) { _ = try pairs([#"{"prompt": "a", "chosen": "b", "rejected": "c"}"#, line], format: format) }
    }

    func unpairedFailure(_ line: String) -> String {
        errorText(in: directory) {
            _ = try UnpairedRecordReader(path: try path([#"{"prompt": "a", "completion": "b", "label": false}"#, line], name: "kto.jsonl")).readAll()
        }
    }

    func chat(_ turns: ChatTurn...) -> SFTSample.Content { .conversation(turns) }

    @Test func everyFormatBecomesTwoWholeSamples() throws {
        let read = try pairs([
            #"{"prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "margin": 2}"#,
            #"{"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}], "chosen": [{"role": "assistant", "content": "good"}], "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "bad"}]}], "margin": 0.5}"#,
            "",
            #"{"chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]}"#,
            #"{"instruction": "Add", "input": "2 and 3", "system": "Be brief.", "history": [["Hi", "Hello!"]], "chosen": "5", "rejected": "6"}"#,
            #"{"conversations": [{"from": "human", "value": "Q"}], "chosen": {"from": "gpt", "value": "A"}, "rejected": {"from": "gpt", "value": "B"}, "system": "S"}"#,
        ])
        #expect(read.map(\.source) == [1, 2, 4, 5, 6].map { "\(directory)/data.jsonl:\($0)" })
        #expect(read[0].chosen == .text(prompt: "The sky is", completion: " blue.") && read[0].rejected == .text(prompt: "The sky is", completion: " green."))
        #expect(read.map(\.margin) == [2, 0.5, nil, nil, nil])
        let prompt = [ChatTurn(.system, "S"), ChatTurn(.user, "Q1"), ChatTurn(.assistant, "A1"), ChatTurn(.user, "Q2")]
        #expect(read[1].chosen == .conversation(prompt + [ChatTurn(.assistant, "good")]))
        #expect(read[1].rejected == .conversation(prompt + [ChatTurn(.assistant, "bad")]))
        #expect(read[2].chosen == chat(ChatTurn(.user, "2+2?"), ChatTurn(.assistant, "4")))
        #expect(read[2].rejected == chat(ChatTurn(.user, "2+2?"), ChatTurn(.assistant, "5")))
        let alpaca = [ChatTurn(.system, "Be brief."), ChatTurn(.user, "Hi"), ChatTurn(.assistant, "Hello!"), ChatTurn(.user, "Add\n2 and 3")]
        #expect(read[3].chosen == .conversation(alpaca + [ChatTurn(.assistant, "5")]))
        #expect(read[3].rejected == .conversation(alpaca + [ChatTurn(.assistant, "6")]))
        #expect(read[4].chosen == chat(ChatTurn(.system, "S"), ChatTurn(.user, "Q"), ChatTurn(.assistant, "A")))
        #expect(read[4].rejected == chat(ChatTurn(.system, "S"), ChatTurn(.user, "Q"), ChatTurn(.assistant, "B")))
    }

    @Test func theImplicitPromptIsTheLongestCommonStart() throws {
        // The conversations share a first exchange and the second question; the answers differ.
        let shared = #"{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}"#
        let read = try pairs([#"{"chosen": [\#(shared), {"role": "assistant", "content": "yes"}], "rejected": [\#(shared), {"role": "assistant", "content": "no"}]}"#],
                             format: .implicitPrompt)
        let prompt = [ChatTurn(.user, "Q1"), ChatTurn(.assistant, "A1"), ChatTurn(.user, "Q2")]
        #expect(read == [PreferencePair(source: directory + "/data.jsonl:1", chosen: .conversation(prompt + [ChatTurn(.assistant, "yes")]),
                                        rejected: .conversation(prompt + [ChatTurn(.assistant, "no")]))])
    }

    @Test func shareGPTTagsAreRemappableAndZstdIsRead() throws {
        var tags = ShareGPTTags()
        (tags.roleTag, tags.contentTag, tags.userTag, tags.assistantTag) = ("role", "text", "user", "model")
        let line = #"{"conversations": [{"role": "user", "text": "Q"}], "chosen": {"role": "model", "text": "A"}, "rejected": {"role": "model", "text": "B"}}"#
        let read = try pairs([line, line], format: .sharegpt, tags: tags, name: "prefs.jsonl.zst")
        #expect(read.count == 2 && read[1].source.hasSuffix("prefs.jsonl.zst:2"))
        #expect(read[1].rejected == chat(ChatTurn(.user, "Q"), ChatTurn(.assistant, "B")))
    }

    @Test func identicalPairsAreSkippedAndCounted() throws {
        let reader = try PreferenceRecordReader(path: try path([
            #"{"prompt": "a", "chosen": "b", "rejected": "c"}"#,
            #"{"prompt": "a", "chosen": "b", "rejected": "b"}"#,
            #"{"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}], "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]}"#,
            #"{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "x"}], "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]}"#,
            #"{"prompt": "a", "chosen": "d", "rejected": "c"}"#,
        ], name: "data.jsonl"))
        #expect(try reader.readAll().map(\.source) == [1, 5].map { "\(directory)/data.jsonl:\($0)" })
        #expect(reader.identicalCount == 3)
        #expect(reader.identicalSummary == "3 pairs skipped as identical (chosen = rejected; first: \(directory)/data.jsonl:2, \(directory)/data.jsonl:3, \(directory)/data.jsonl:4)")
        let clean = try PreferenceRecordReader(path: try path([#"{"prompt": "a", "chosen": "b", "rejected": "c"}"#], name: "clean.jsonl"))
        _ = try clean.readAll()
        #expect(clean.identicalCount == 0 && clean.identicalSummary == nil)
    }

    @Test func badPairsAreNamedByFileAndLine() {
        let user = #"{"role": "user", "content": "q"}"#, answer = #"{"role": "assistant", "content": "x"}"#
        #expect(failure("not json") == "data.jsonl:2: not a JSON object")
        #expect(failure(#"{"text": "x"}"#) == #"data.jsonl:2: cannot tell the format from the keys ["text"]: expected prompt + chosen + rejected (explicit_prompt), chosen + rejected (implicit_prompt), instruction (alpaca) or conversations (sharegpt) (set the format to say which)"#)
        #expect(failure(#"{"prompt": "a", "rejected": "c"}"#) == #"data.jsonl:2: missing field "chosen""#)
        #expect(failure(#"{"prompt": "a", "chosen": "b"}"#) == #"data.jsonl:2: missing field "rejected""#)
        #expect(failure(#"{"chosen": [\#(user), \#(answer)]}"#) == #"data.jsonl:2: missing field "rejected""#)
        #expect(failure(#"{"instruction": "q", "chosen": "x"}"#) == #"data.jsonl:2: missing field "rejected""#)
        #expect(failure(#"{"conversations": [{"from": "human", "value": "q"}], "rejected": {"from": "gpt", "value": "x"}}"#) == #"data.jsonl:2: missing field "chosen""#)
        // Empty sides.
        #expect(failure(#"{"prompt": "a", "chosen": " \n", "rejected": "c"}"#) == #"data.jsonl:2: empty "chosen": nothing to learn from"#)
        #expect(failure(#"{"prompt": [\#(user)], "chosen": [\#(answer)], "rejected": []}"#) == #"data.jsonl:2: empty "rejected": nothing to learn from"#)
        #expect(failure(#"{"prompt": [\#(user)], "chosen": [{"role": "assistant", "content": ""}], "rejected": [\#(answer)]}"#) == #"data.jsonl:2: empty "chosen": nothing to learn from"#)
        #expect(failure(#"{"instruction": "q", "chosen": "x", "rejected": ""}"#) == #"data.jsonl:2: empty "rejected": nothing to learn from"#)
        // Chosen and rejected of different kinds, and completions that are not one answer.
        #expect(failure(#"{"prompt": "a", "chosen": "b", "rejected": [\#(answer)]}"#) == #"data.jsonl:2: "prompt", "chosen" and "rejected" must all be strings (plain text) or all be lists of messages; here "prompt" is a string, "chosen" is a string, "rejected" is a list"#)
        #expect(failure(#"{"instruction": "q", "chosen": ["x"], "rejected": "y"}"#) == #"data.jsonl:2: "chosen" must be a string"#)
        #expect(failure(#"{"prompt": [\#(user)], "chosen": [\#(answer), \#(user), \#(answer)], "rejected": [\#(answer)]}"#) == #"data.jsonl:2: "chosen" must be one assistant message (the answer; earlier turns belong to the prompt), not 3 messages"#)
        #expect(failure(#"{"prompt": [\#(user)], "chosen": [\#(answer)], "rejected": [\#(user)]}"#) == #"data.jsonl:2: "rejected" must be one assistant message (the answer; earlier turns belong to the prompt), not a user message"#)
        #expect(failure(#"{"prompt": [\#(user), \#(answer)], "chosen": [\#(answer)], "rejected": [\#(answer)]}"#) == #"data.jsonl:2: "prompt" must end with a user message (the one the completions answer)"#)
        #expect(failure(#"{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "human", "value": "x"}, "rejected": {"from": "gpt", "value": "y"}}"#) == #"data.jsonl:2: "chosen" must be one assistant message (the answer; earlier turns belong to the prompt), not a user message"#)
        // Implicit prompts.
        #expect(failure(#"{"chosen": [{"role": "user", "content": "q1"}, \#(answer)], "rejected": [{"role": "user", "content": "q2"}, \#(answer)]}"#) == "data.jsonl:2: \"chosen\" and \"rejected\" first differ at message 0; the prompt, their common start, must end with a user message (here it is empty)")
        #expect(failure(#"{"chosen": [\#(user), \#(answer), {"role": "user", "content": "q1"}, \#(answer)], "rejected": [\#(user), \#(answer), {"role": "user", "content": "q2"}, \#(answer)]}"#) == "data.jsonl:2: \"chosen\" and \"rejected\" first differ at message 2; the prompt, their common start, must end with a user message (here it ends with the assistant's message)")
        #expect(failure(#"{"chosen": "x", "rejected": "y"}"#) == #"data.jsonl:2: without "prompt", "chosen" and "rejected" must be whole conversations (lists of messages) sharing their start"#)
        #expect(failure(#"{"chosen": [\#(user), \#(answer), \#(answer)], "rejected": [\#(user), {"role": "assistant", "content": "y"}]}"#) == #"data.jsonl:2: "chosen" must be one assistant message (the answer; earlier turns belong to the prompt), not 2 messages"#)
        // Roles, margins, KTO data in the wrong reader.
        #expect(failure(#"{"prompt": [{"role": "bot", "content": "q"}], "chosen": [\#(answer)], "rejected": [\#(answer)]}"#) == #"data.jsonl:2: "prompt"[0]: unknown role "bot" (expected system, user or assistant)"#)
        #expect(failure(#"{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "bot", "value": "x"}, "rejected": {"from": "gpt", "value": "y"}}"#) == #"data.jsonl:2: "chosen": unknown role "bot" (expected "system", "human" or "gpt"; the tags can be remapped)"#)
        #expect(failure(#"{"prompt": "a", "chosen": "b", "rejected": "c", "margin": "1"}"#) == #"data.jsonl:2: "margin" must be a number"#)
        #expect(failure(#"{"prompt": "a", "chosen": "b", "rejected": "c", "margin": true}"#) == #"data.jsonl:2: "margin" must be a number"#)
        #expect(failure(#"{"prompt": "a", "completion": "b", "label": true}"#) == "data.jsonl:2: a KTO sample (prompt, completion, label), not a pair: preference data gives each prompt a chosen and a rejected answer")
        // The good first line is not Alpaca: with the format forced, line 1 is refused already.
        #expect(failure(#"{"messages": []}"#, format: .alpaca) == #"data.jsonl:1: missing field "instruction""#)
    }

    @Test func unpairedSamplesCarryABooleanLabel() throws {
        let read = try UnpairedRecordReader(path: try path([
            #"{"prompt": "The sky is", "completion": " blue.", "label": true}"#,
            #"{"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "5"}], "label": false}"#,
        ], name: "kto.jsonl")).readAll()
        #expect(read == [
            UnpairedSample(source: directory + "/kto.jsonl:1", content: .text(prompt: "The sky is", completion: " blue."), desirable: true),
            UnpairedSample(source: directory + "/kto.jsonl:2", content: chat(ChatTurn(.user, "2+2?"), ChatTurn(.assistant, "5")), desirable: false),
        ])
    }

    @Test func badUnpairedSamplesAreNamedByFileAndLine() {
        #expect(unpairedFailure(#"{"prompt": "a", "completion": "b", "label": 1}"#) == #"kto.jsonl:2: "label" must be true or false (a JSON boolean), not a number (1)"#)
        #expect(unpairedFailure(#"{"prompt": "a", "completion": "b", "label": 0}"#) == #"kto.jsonl:2: "label" must be true or false (a JSON boolean), not a number (0)"#)
        #expect(unpairedFailure(#"{"prompt": "a", "completion": "b", "label": "true"}"#) == #"kto.jsonl:2: "label" must be true or false (a JSON boolean), not a string ("true")"#)
        #expect(unpairedFailure(#"{"prompt": "a", "completion": "b"}"#) == #"kto.jsonl:2: missing field "label""#)
        #expect(unpairedFailure(#"{"prompt": "a", "label": true}"#) == #"kto.jsonl:2: missing field "completion""#)
        #expect(unpairedFailure(#"{"prompt": "a", "completion": "", "label": true}"#) == #"kto.jsonl:2: empty "completion": nothing to learn from"#)
        #expect(unpairedFailure(#"{"prompt": "a", "completion": [{"role": "assistant", "content": "b"}], "label": true}"#) == #"kto.jsonl:2: "prompt" and "completion" must both be strings (plain text) or both be lists of messages; here "prompt" is a string, "completion" is a list"#)
        #expect(unpairedFailure(#"{"prompt": [{"role": "robot", "content": "a"}], "completion": [{"role": "assistant", "content": "b"}], "label": true}"#) == #"kto.jsonl:2: "prompt"[0]: unknown role "robot" (expected system, user or assistant)"#)
        #expect(unpairedFailure(#"{"prompt": "a", "chosen": "b", "rejected": "c"}"#) == "kto.jsonl:2: a preference pair (chosen, rejected) in KTO data: KTO reads {prompt, completion, label} samples")
        #expect(unpairedFailure("[1, 2]") == "kto.jsonl:2: not a JSON object")
    }

    @Test func unreadablePathsAreRefused() throws {
        let csv = directory + "/data.csv"
        try write("a,b\n", to: csv)
        expectDataError(csv + ": preference data is JSONL, one sample per line (.jsonl, or .jsonl.zst compressed)") {
            _ = try PreferenceRecordReader(path: csv)
        }
        expectDataError(csv + ": KTO data is JSONL, one sample per line (.jsonl, or .jsonl.zst compressed)") {
            _ = try UnpairedRecordReader(path: csv)
        }
        expectDataError(directory + "/missing.jsonl: no such file") { _ = try PreferenceRecordReader(path: directory + "/missing.jsonl") }
    }
}
