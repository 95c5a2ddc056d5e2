/// The readable text of an HTML page, from a hand-written tokenizer over its bytes: the contents
/// of `script`, `style`, `nav`, `header`, `footer`, `aside`, `noscript`, `template`, `svg`, `form` and `button` are dropped; block elements
/// (paragraphs, headings, list items, table rows, `pre`…) become lines, with a blank line after
/// paragraphs and headings; list items start with `- `; `pre` keeps its whitespace, elsewhere
/// whitespace runs become one space; entities are decoded (named ones of HTML's common set,
/// decimal and hex). Elements whose `class` or `id` has a navigation word as one of its parts
/// (`menu`, `nav`, `sidebar`, `breadcrumb`, `footer`, `header`, `cookie`, `banner`…) are dropped
/// too, since many sites build menus from `<div>`s. The `<title>` becomes the first line. Malformed markup never fails: an unclosed tag or comment ends the text.
public enum HTMLTextExtractor {
    private static let droppedElements: Set<String> = ["script", "style", "nav", "header", "footer", "aside",
                                                       "noscript", "template", "svg", "form", "button", "iframe", "object"]
    private static let paragraphElements: Set<String> = ["p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote",
                                                         "table", "ul", "ol", "dl", "figure", "section", "article", "main"]
    private static let boilerplateWords: Set<String> = ["menu", "mainmenu", "submenu", "nav", "navbar", "navigation", "sidebar",
                                                        "breadcrumb", "breadcrumbs", "footer", "header", "cookie", "cookies",
                                                        "banner", "toc", "skip", "share", "social", "advert", "ads"]
    private static let lineElements: Set<String> = ["br", "div", "li", "tr", "dt", "dd", "hr", "caption", "address", "center"]

    public static func text(of html: [UInt8]) -> String {
        var builder = TextBuilder()
        var index = 0
        var skipDepth = 0
        var skipElement = ""
        var preDepth = 0
        var inTitle = false
        var title = [UInt8]()
        while index < html.count {
            let byte = html[index]
            guard byte == 0x3C else {
                let end = html[(index + 1)...].firstIndex(of: 0x3C) ?? html.count
                if inTitle { title += decodeEntities(html[index..<end]) }
                else if skipDepth == 0 { builder.appendText(decodeEntities(html[index..<end]), preformatted: preDepth > 0) }
                index = end
                continue
            }
            // `<` not followed by a name, `/`, `!` or `?` is text (`a < b`), as browsers read it.
            let next = index + 1 < html.count ? html[index + 1] : 0x20
            guard TextScanning.isASCIILetter(next) || next == 0x2F || next == 0x21 || next == 0x3F else {
                if inTitle { title.append(byte) } else if skipDepth == 0 { builder.appendText([byte], preformatted: preDepth > 0) }
                index += 1
                continue
            }
            if html[index...].starts(with: Array("<!--".utf8)) {
                index = find(Array("-->".utf8), in: html, from: index + 4).map { $0 + 3 } ?? html.count
                continue
            }
            guard let close = html[index...].firstIndex(of: 0x3E) else { break }
            let tagStart = index
            let tag = parseTag(html[(index + 1)..<close])
            index = close + 1
            guard let (name, isEnd) = tag else { continue }
            if skipDepth > 0 {
                if name == skipElement { skipDepth += isEnd ? -1 : 1 }
                continue
            }
            if name == "title" { inTitle = !isEnd; if isEnd { builder.setTitle(title) }; continue }
            let isBoilerplate = droppedElements.contains(name) || (!isEnd && hasBoilerplateAttribute(html[tagStart..<close]))
            if isBoilerplate && !isEnd && html[close - 1] != 0x2F && !voidElements.contains(name) {
                skipElement = name
                skipDepth = 1
                // Raw-text elements: skip straight to the end tag (their content may hold `<`).
                if name == "script" || name == "style" {
                    let endTag = Array("</\(name)".utf8)
                    let end = findCaseInsensitive(endTag, in: html, from: index) ?? html.count
                    index = html[end...].firstIndex(of: 0x3E).map { $0 + 1 } ?? html.count
                    skipDepth = 0
                }
                continue
            }
            if name == "pre" { preDepth += isEnd ? (preDepth > 0 ? -1 : 0) : 1 }
            if paragraphElements.contains(name) { builder.breakParagraph() }
            else if lineElements.contains(name) { builder.breakLine() }
            if name == "li" && !isEnd { builder.appendText(Array("- ".utf8), preformatted: true) }
        }
        return builder.finish()
    }

    private static let voidElements: Set<String> = ["br", "hr", "img", "input", "meta", "link", "area", "base", "col", "source", "wbr"]

    /// Whether the tag's `class` or `id` value has a part (split at spaces, `-`, `_`) in
    /// `boilerplateWords`.
    private static func hasBoilerplateAttribute(_ tag: ArraySlice<UInt8>) -> Bool {
        let lowered = String(decoding: tag.map(TextScanning.lower), as: UTF8.self)
        for attribute in ["class=", "id="] {
            var searchRange = lowered.startIndex..<lowered.endIndex
            while let found = lowered.range(of: attribute, range: searchRange) {
                searchRange = found.upperBound..<lowered.endIndex
                // The attribute name must start a word (`data-id=` is not `id=`).
                if found.lowerBound > lowered.startIndex {
                    let before = lowered[lowered.index(before: found.lowerBound)]
                    guard before == " " || before == "\t" || before == "\n" else { continue }
                }
                var value = lowered[found.upperBound...]
                if let quote = value.first, quote == "\"" || quote == "'" {
                    value = value.dropFirst()
                    value = value.prefix { $0 != quote }
                } else {
                    value = value.prefix { $0 != " " && $0 != ">" && $0 != "\t" && $0 != "\n" }
                }
                let parts = value.split { $0 == " " || $0 == "-" || $0 == "_" || $0 == "\t" }
                if parts.contains(where: { boilerplateWords.contains(String($0)) }) { return true }
            }
        }
        return false
    }

    /// The lower-cased element name and whether it is an end tag; nil for `<!DOCTYPE>`, `<?…?>`.
    private static func parseTag(_ bytes: ArraySlice<UInt8>) -> (String, Bool)? {
        var index = bytes.startIndex
        var isEnd = false
        if index < bytes.endIndex && bytes[index] == 0x2F { isEnd = true; index += 1 }
        let start = index
        while index < bytes.endIndex && (TextScanning.isASCIIAlphanumeric(bytes[index])) { index += 1 }
        guard index > start else { return nil }
        return (String(decoding: bytes[start..<index].map(TextScanning.lower), as: UTF8.self), isEnd)
    }

    private static func find(_ needle: [UInt8], in bytes: [UInt8], from start: Int) -> Int? {
        guard needle.count <= bytes.count else { return nil }
        var index = start
        while index + needle.count <= bytes.count {
            if bytes[index] == needle[0] && bytes[index..<index + needle.count].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }

    private static func findCaseInsensitive(_ needle: [UInt8], in bytes: [UInt8], from start: Int) -> Int? {
        var index = start
        while index + needle.count <= bytes.count {
            if bytes[index] == 0x3C && bytes[index..<index + needle.count].map(TextScanning.lower).elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }

    static let namedEntities: [String: String] = [
        "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{A0}", "copy": "©", "reg": "®",
        "trade": "™", "mdash": "—", "ndash": "–", "hellip": "…", "lsquo": "‘", "rsquo": "’", "ldquo": "“",
        "rdquo": "”", "laquo": "«", "raquo": "»", "middot": "·", "bull": "•", "times": "×", "divide": "÷",
        "deg": "°", "plusmn": "±", "para": "¶", "sect": "§", "euro": "€", "pound": "£", "yen": "¥", "cent": "¢",
        "larr": "←", "rarr": "→", "uarr": "↑", "darr": "↓", "harr": "↔", "le": "≤", "ge": "≥", "ne": "≠",
        "minus": "−", "shy": "\u{AD}", "ensp": "\u{2002}", "emsp": "\u{2003}", "thinsp": "\u{2009}",
        "eacute": "é", "egrave": "è", "aacute": "á", "agrave": "à", "ouml": "ö", "uuml": "ü", "auml": "ä",
        "szlig": "ß", "ccedil": "ç", "ntilde": "ñ", "iacute": "í", "oacute": "ó", "uacute": "ú",
    ]

    /// Decodes `&name;`, `&#123;` and `&#x1F600;`; anything else stays as written.
    static func decodeEntities(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        guard bytes.contains(0x26) else { return Array(bytes) }
        var output = [UInt8]()
        output.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            guard bytes[index] == 0x26, let semicolon = bytes[index..<min(index + 12, bytes.endIndex)].firstIndex(of: 0x3B) else {
                output.append(bytes[index])
                index += 1
                continue
            }
            let body = String(decoding: bytes[(index + 1)..<semicolon], as: UTF8.self)
            var replacement: String?
            if body.hasPrefix("#x") || body.hasPrefix("#X") {
                replacement = UInt32(body.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init).map { String($0) }
            } else if body.hasPrefix("#") {
                replacement = UInt32(body.dropFirst()).flatMap(Unicode.Scalar.init).map { String($0) }
            } else {
                replacement = namedEntities[body]
            }
            if let replacement {
                output.append(contentsOf: replacement.utf8)
                index = semicolon + 1
            } else {
                output.append(bytes[index])
                index += 1
            }
        }
        return output
    }
}

/// Accumulates extracted lines: collapses whitespace outside `pre`, and emits at most one blank
/// line between blocks.
private struct TextBuilder {
    private var output = [UInt8]()
    private var line = [UInt8]()
    private var pendingBreak = 0  // 1 = new line, 2 = blank line
    private var title = [UInt8]()

    mutating func setTitle(_ bytes: [UInt8]) { title = collapse(bytes) }

    mutating func appendText(_ bytes: [UInt8], preformatted: Bool) {
        for byte in bytes {
            if preformatted && byte == 0x0A { breakLine(); continue }
            if !preformatted && TextScanning.isWhitespace(byte) {
                if let last = line.last, last != 0x20 { line.append(0x20) }
                continue
            }
            if line.isEmpty { flushBreak() }
            line.append(byte)
        }
    }

    mutating func breakLine() { endLine(); pendingBreak = max(pendingBreak, 1) }
    mutating func breakParagraph() { endLine(); pendingBreak = 2 }

    private mutating func endLine() {
        while line.last == 0x20 { line.removeLast() }
        guard !line.isEmpty else { return }
        output += line
        line.removeAll(keepingCapacity: true)
    }

    private mutating func flushBreak() {
        guard !output.isEmpty else { pendingBreak = 0; return }
        output.append(0x0A)
        if pendingBreak >= 2 { output.append(0x0A) }
        if pendingBreak == 0 { output.removeLast() }
        pendingBreak = 0
    }

    private func collapse(_ bytes: [UInt8]) -> [UInt8] {
        var result = [UInt8]()
        for byte in bytes {
            if TextScanning.isWhitespace(byte) { if let last = result.last, last != 0x20 { result.append(0x20) } }
            else { result.append(byte) }
        }
        while result.last == 0x20 { result.removeLast() }
        return result
    }

    mutating func finish() -> String {
        endLine()
        var text = title
        if !title.isEmpty && !output.isEmpty { text += [0x0A, 0x0A] }
        text += output
        if !text.isEmpty { text.append(0x0A) }
        return String(decoding: text, as: UTF8.self)
    }
}
