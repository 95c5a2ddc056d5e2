import DataPipeline
import Testing

@Suite struct PIIScrubberTests {
    func scrubbed(_ text: String, _ config: PIIScrubber.Config = .init()) -> (String, [String: Int]) {
        var document = CleaningDocument(text: text)
        var effect = OperatorEffect()
        _ = PIIScrubber(config).apply(to: &document, effect: &effect)
        return (document.text, effect.replacements)
    }

    @Test(arguments: [
        ("Write to jane.doe+news@mail.example.co.uk today.", "Write to <EMAIL> today."),
        ("(a_b-c%d@sub.example.org)", "(<EMAIL>)"),
        ("Server 192.168.0.1, gateway 10.0.0.254.", "Server <IP_ADDRESS>, gateway <IP_ADDRESS>."),
        ("v6 at 2001:db8:85a3::8a2e:370:7334 and ::1 and fe80:0:0:0:200:f8ff:fe21:67cf", "v6 at <IP_ADDRESS> and <IP_ADDRESS> and <IP_ADDRESS>"),
        ("Call +44 20 7946 0958 or +1-202-555-0173.", "Call <PHONE> or <PHONE>."),
        ("US: (415) 555-2671, 415-555-2671, 415.555.2671, 1-800-555-0199.", "US: <PHONE>, <PHONE>, <PHONE>, <PHONE>."),
        ("Card 4111 1111 1111 1111 and 5500-0000-0000-0004 and 378282246310005.", "Card <CARD> and <CARD> and <CARD>."),
        ("Amex 3782 822463 10005 works.", "Amex <CARD> works."),
    ])
    func replacesPersonalData(input: String, expected: String) {
        #expect(scrubbed(input).0 == expected)
    }

    @Test(arguments: [
        "Version 1.2.3.4.5 of the tool, or v1.2.3.4 and 1.2.3.",
        "SQLite Release 3.6.14.2 and version 1.0.0.1 are versions.",
        "Octets out of range: 256.1.1.1 and 1.2.3.999.",
        "Card-like 4111 1111 1111 1112 fails Luhn, as does 1234567812345678.",
        "Dates 2024-01-15, 12/25/2024, 15.01.2024 and times 12:30:45 stay.",
        "Bare numbers 4155552671 and triples 415 555 2671 without parentheses stay.",
        "Area codes start at 2: 123-456-7890 and 015-555-1234 stay.",
        "C++ std::vector, dead::beef and a::b are not addresses.",
        "user@localhost and @handle and name@domain.c are not e-mail addresses.",
        "ISBN 978-0-13-110362-7 and 555-234-5678-99 stay.",
        "Prices $1,234.56 and 3.14159 stay.",
    ])
    func leavesNearMisses(input: String) {
        #expect(scrubbed(input).0 == input)
    }

    @Test func countsByKindAndHonorsConfig() {
        let text = "a@b.example, 8.8.8.8, +49 30 1234 5678, 4111-1111-1111-1111, x@y.example"
        let (output, counts) = scrubbed(text)
        #expect(output == "<EMAIL>, <IP_ADDRESS>, <PHONE>, <CARD>, <EMAIL>")
        #expect(counts == ["email": 2, "ip_address": 1, "phone": 1, "card": 1])
        var config = PIIScrubber.Config()
        config.kinds = [.email]
        #expect(scrubbed(text, config).0 == "<EMAIL>, 8.8.8.8, +49 30 1234 5678, 4111-1111-1111-1111, <EMAIL>")
    }
}
