/// One token of a template, with the 1-based line it starts on.
struct TemplateToken: Equatable {
    enum Kind: Equatable {
        case text(String)
        case variableBegin, variableEnd, blockBegin, blockEnd
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case symbol(String)
        case end
    }

    var kind: Kind
    var line: Int
}

/// Splits template source into text and tag tokens the way jinja2's lexer does with
/// `trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False`, the environment
/// transformers renders chat templates in.
///
/// Whitespace rules, all from jinja2:
/// - `{%-`, `{{-`, `{#-` remove every whitespace character before the tag; `-%}`, `-}}`, `-#}`
///   every one after it.
/// - trim_blocks: one newline right after `%}` or `#}` is dropped (`+%}` keeps it).
/// - lstrip_blocks: spaces and tabs between the start of a line and `{%` or `{#` are dropped
///   (`{%+` keeps them); never before `{{`.
/// - One trailing newline of the whole template is dropped; `\r\n` and `\r` become `\n`.
struct TemplateLexer {
    let source: [Unicode.Scalar]
    var position = 0
    var line = 1
    var tokens: [TemplateToken] = []
    /// True when the last tag ended on a newline: jinja2 then lets lstrip_blocks apply to the
    /// text that follows even though that text holds no newline of its own.
    var lineStarting = true

    static func tokenize(_ text: String) throws -> [TemplateToken] {
        var lexer = TemplateLexer(source: Self.normalizedScalars(text))
        try lexer.run()
        return lexer.tokens
    }

    private init(source: [Unicode.Scalar]) {
        self.source = source
    }

    private static func normalizedScalars(_ text: String) -> [Unicode.Scalar] {
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(text.unicodeScalars.count)
        var previousWasReturn = false
        for scalar in text.unicodeScalars {
            if scalar == "\r" {
                scalars.append("\n")
                previousWasReturn = true
                continue
            }
            if scalar == "\n" && previousWasReturn { previousWasReturn = false; continue }
            previousWasReturn = false
            scalars.append(scalar)
        }
        if scalars.last == "\n" { scalars.removeLast() }
        return scalars
    }

    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace
    }

    func scalar(at index: Int) -> Unicode.Scalar? {
        index < source.count ? source[index] : nil
    }

    func hasPrefix(_ text: String, at index: Int) -> Bool {
        var cursor = index
        for scalar in text.unicodeScalars {
            guard cursor < source.count, source[cursor] == scalar else { return false }
            cursor += 1
        }
        return true
    }

    func failure(_ message: String, line: Int? = nil) -> ChatTemplateError {
        ChatTemplateError(.syntax, message, line: line ?? self.line)
    }

    mutating func emit(_ kind: TemplateToken.Kind, line: Int? = nil) {
        tokens.append(TemplateToken(kind: kind, line: line ?? self.line))
    }

    private mutating func emitText(_ scalars: ArraySlice<Unicode.Scalar>, startLine: Int) {
        guard !scalars.isEmpty else { return }
        var text = String.UnicodeScalarView()
        text.append(contentsOf: scalars)
        emit(.text(String(text)), line: startLine)
    }

    func countNewlines(_ range: Range<Int>) -> Int {
        source[range].reduce(0) { $0 + ($1 == "\n" ? 1 : 0) }
    }

    /// Where the next `{{`, `{%` or `{#` starts, at or after `index`.
    private func nextTagStart(from index: Int) -> Int? {
        var cursor = index
        while cursor + 1 < source.count {
            if source[cursor] == "{", let next = scalar(at: cursor + 1), next == "{" || next == "%" || next == "#" {
                return cursor
            }
            cursor += 1
        }
        return nil
    }

    private mutating func run() throws {
        while position < source.count {
            let textStart = position
            let textLine = line
            guard let tagStart = nextTagStart(from: position) else {
                emitText(source[textStart...], startLine: textLine)
                line += countNewlines(textStart..<source.count)
                position = source.count
                break
            }
            let opener = source[tagStart + 1]
            let control = scalar(at: tagStart + 2)
            var textEnd = tagStart
            if control == "-" {
                while textEnd > textStart && Self.isWhitespace(source[textEnd - 1]) { textEnd -= 1 }
            } else if control != "+" && opener != "{" {
                var lineStart = textEnd
                while lineStart > textStart && source[lineStart - 1] != "\n" { lineStart -= 1 }
                let onlyBlanks = source[lineStart..<textEnd].allSatisfy(Self.isWhitespace)
                if onlyBlanks && (lineStart > textStart || lineStarting) { textEnd = lineStart }
            }
            emitText(source[textStart..<textEnd], startLine: textLine)
            line += countNewlines(textStart..<tagStart)
            position = tagStart + 2 + (control == "-" || control == "+" ? 1 : 0)
            switch opener {
            case "#": try skipComment()
            case "%":
                if try !lexRawBlock() { try lexTag(isBlock: true) }
            default: try lexTag(isBlock: false)
            }
        }
        emit(.end)
    }

    /// Consumes the rest of a tag end: `-` strips following whitespace, trim_blocks one newline.
    mutating func finishTagEnd(at endIndex: Int, width: Int, stripping: Bool, keepNewline: Bool, isBlock: Bool) {
        position = endIndex + width
        if stripping {
            while position < source.count && Self.isWhitespace(source[position]) {
                if source[position] == "\n" { line += 1 }
                position += 1
            }
        } else if isBlock && !keepNewline && scalar(at: position) == "\n" {
            position += 1
            line += 1
        }
        lineStarting = position > 0 && source[position - 1] == "\n"
    }

    private mutating func skipComment() throws {
        let startLine = line
        var cursor = position
        while cursor + 1 < source.count {
            if source[cursor] == "#" && source[cursor + 1] == "}" {
                let sign = cursor > position ? source[cursor - 1] : " "
                line += countNewlines(position..<cursor)
                finishTagEnd(at: cursor, width: 2, stripping: sign == "-", keepNewline: sign == "+", isBlock: true)
                return
            }
            cursor += 1
        }
        throw failure("missing end of comment tag '#}'", line: startLine)
    }

    /// `{% raw %}…{% endraw %}`: the body is text, unparsed. Returns false when the tag is not raw.
    private mutating func lexRawBlock() throws -> Bool {
        var cursor = position
        while let scalar = scalar(at: cursor), Self.isWhitespace(scalar) { cursor += 1 }
        guard hasPrefix("raw", at: cursor) else { return false }
        cursor += 3
        while let scalar = scalar(at: cursor), Self.isWhitespace(scalar) { cursor += 1 }
        let stripAfter = scalar(at: cursor) == "-"
        if stripAfter { cursor += 1 }
        guard hasPrefix("%}", at: cursor) else { return false }
        position = cursor + 2
        if stripAfter {
            while let scalar = scalar(at: position), Self.isWhitespace(scalar) { if scalar == "\n" { line += 1 }; position += 1 }
        }
        let bodyStart = position
        let bodyLine = line
        var search = position
        while let tagStart = nextTagStart(from: search) {
            var probe = tagStart + 2
            let control = scalar(at: probe)
            if control == "-" || control == "+" { probe += 1 }
            while let scalar = scalar(at: probe), Self.isWhitespace(scalar) { probe += 1 }
            guard source[tagStart + 1] == "%", hasPrefix("endraw", at: probe) else { search = tagStart + 1; continue }
            probe += 6
            while let scalar = scalar(at: probe), Self.isWhitespace(scalar) { probe += 1 }
            let sign = scalar(at: probe)
            if sign == "-" || sign == "+" { probe += 1 }
            guard hasPrefix("%}", at: probe) else { search = tagStart + 1; continue }
            var bodyEnd = tagStart
            if control == "-" {
                while bodyEnd > bodyStart && Self.isWhitespace(source[bodyEnd - 1]) { bodyEnd -= 1 }
            } else if control != "+" {
                var lineStart = bodyEnd
                while lineStart > bodyStart && source[lineStart - 1] != "\n" { lineStart -= 1 }
                if lineStart > bodyStart && source[lineStart..<bodyEnd].allSatisfy({ $0 == " " || $0 == "\t" }) { bodyEnd = lineStart }
            }
            emitText(source[bodyStart..<bodyEnd], startLine: bodyLine)
            line += countNewlines(bodyStart..<probe)
            finishTagEnd(at: probe, width: 2, stripping: sign == "-", keepNewline: sign == "+", isBlock: true)
            return true
        }
        throw failure("missing '{% endraw %}' for the raw block", line: bodyLine)
    }
}
