import Runtime
import Testing

/// A run config shaped like the real ones: sections, defaults, a closed choice, validation.
struct SampleConfig: Codable, ValidatedConfig, Equatable {
    struct Train: Codable, Equatable {
        var steps: Int
        var seed: Int
        var schedule: Schedule
        enum CodingKeys: String, CodingKey { case steps, seed, schedule }
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            steps = try c.decode(Int.self, forKey: .steps)
            seed = try c.decode(.seed, default: 1234)
            schedule = try c.decode(.schedule, default: .cosine)
        }
    }
    enum Schedule: String, ConfigChoice { case cosine, linear, constant }
    struct Optimizer: Codable, Equatable { var lr: Double }
    var train: Train
    var optimizer: Optimizer

    func validate() throws(ConfigError) {
        guard train.steps >= 1 else { throw .invalid("train.steps", train.steps, "must be at least 1") }
        guard optimizer.lr > 0 else { throw .invalid("optimizer.lr", optimizer.lr, "must be positive") }
    }
}

let sampleYAML = """
train:
  steps: 100
optimizer:
  lr: 3.0e-4
"""

@Suite struct ConfigLoaderTests {
    @Test func decodesWithDefaults() throws {
        let config = try ConfigLoader.decode(SampleConfig.self, yaml: sampleYAML, source: "run.yaml")
        #expect(config.train.steps == 100)
        #expect(config.train.seed == 1234)
        #expect(config.train.schedule == .cosine)
        #expect(config.optimizer.lr == 3e-4)
    }

    @Test func overridesAnyField() throws {
        let config = try ConfigLoader.decode(SampleConfig.self, yaml: sampleYAML, source: "run.yaml",
                                             overrides: ["train.steps=7", "train.schedule=linear", "optimizer.lr=0.5"])
        #expect(config.train.steps == 7)
        #expect(config.train.schedule == .linear)
        #expect(config.optimizer.lr == 0.5)
    }

    func error(_ yaml: String, overrides: [String] = []) -> String {
        do {
            _ = try ConfigLoader.decode(SampleConfig.self, yaml: yaml, source: "run.yaml", overrides: overrides)
            return "no error"
        } catch {
            return error.description
        }
    }

    @Test func unknownKeyIsNamedWithSuggestion() {
        #expect(error(sampleYAML + "\n  stepz: 4\n") == "run.yaml: key 'optimizer.stepz': unknown key; known keys here: lr")
        #expect(error(sampleYAML.replacingOccurrences(of: "steps: 100", with: "steps: 100\n  sed: 3"))
                == "run.yaml: key 'train.sed': unknown key; did you mean 'seed'?")
        #expect(error(sampleYAML + "\nmodel:\n  x: 1\n") == "run.yaml: key 'model': unknown key; known keys here: optimizer, train")
        #expect(error(sampleYAML, overrides: ["train.stepss=3"]) == "--set: key 'train.stepss': unknown key; did you mean 'steps'?")
    }

    @Test func wrongTypeNamesKeyAndValue() {
        #expect(error(sampleYAML.replacingOccurrences(of: "100", with: "many")) == "run.yaml: key 'train.steps': expected an integer, found 'many'")
        #expect(error(sampleYAML, overrides: ["optimizer.lr=fast"]) == "--set: key 'optimizer.lr': expected a number, found 'fast'")
    }

    @Test func badChoiceListsTheChoices() {
        #expect(error(sampleYAML, overrides: ["train.schedule=cosin"])
                == "--set: key 'train.schedule': value 'cosin' is not one of 'cosine', 'linear', 'constant'")
    }

    @Test func validationNamesKeyValueAndConstraint() {
        #expect(error(sampleYAML.replacingOccurrences(of: "100", with: "0")) == "run.yaml: key 'train.steps': value 0 is invalid: must be at least 1")
        #expect(error(sampleYAML, overrides: ["optimizer.lr=-1"]) == "--set: key 'optimizer.lr': value -1.0 is invalid: must be positive")
    }

    @Test func missingKeyAndMalformedDocuments() {
        #expect(error("optimizer:\n  lr: 1\n") == "run.yaml: key 'train': required key is missing")
        #expect(error("train: [1, 2\noptimizer: 3\n").hasPrefix("run.yaml: malformed YAML: "))
        #expect(error("train: [1, 2\noptimizer: 3\n").contains("line 2"))
        #expect(error("- a\n- b\n") == "run.yaml: the document must be a mapping of keys to values")
        #expect(error(sampleYAML, overrides: ["train.steps"]) == "--set: 'train.steps' is not of the form section.key=value")
        #expect(error(sampleYAML, overrides: ["train..steps=1"]) == "--set: key 'train..steps': the key has an empty part")
    }

    @Test func missingFileIsNamed() {
        do {
            _ = try ConfigLoader.load(SampleConfig.self, path: "/nonexistent/run.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "/nonexistent/run.yaml: config file not found")
        }
    }
}
