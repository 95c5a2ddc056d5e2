import DataPipeline
import Testing

@Suite struct HTMLTextExtractorTests {
    @Test func extractsReadableText() {
        let html = """
            <!DOCTYPE html>
            <html><head><title>The  Page &amp; Title</title>
            <style>p { color: red; }</style><script>if (a < b) { alert("x"); }</script></head>
            <body><header><a href="/">Home</a> | <a href="/about">About</a></header>
            <nav><ul><li>Menu one</li><li>Menu two</li></ul></nav>
            <div class="menu mainmenu"><ul><li><a href="a.html">About</a></ul><div>inner</div></div>
            <div id='site-sidebar'>Sidebar links</div><div data-id="menu">Kept, data-id is not id</div>
            <!-- a comment <p>not text</p> -->
            <h1>Heading</h1>
            <p>First   paragraph
            with a <b>bold</b> word &mdash; and &#8220;quotes&#x201D; &lt;tag&gt;.</p>
            <ul><li>Item one</li><li>Item two</li></ul>
            <pre>code   line 1
              indented line 2</pre>
            <aside>Related links</aside><svg/><p>Last&nbsp;one &bogus; & more</p>
            <footer>Copyright notice</footer></body></html>
            """
        let text = HTMLTextExtractor.text(of: Array(html.utf8))
        #expect(text == """
            The Page & Title

            Kept, data-id is not id

            Heading

            First paragraph with a bold word — and “quotes” <tag>.

            - Item one
            - Item two

            code   line 1
              indented line 2

            Last\u{A0}one &bogus; & more

            """)
    }

    @Test func malformedMarkupNeverFails() {
        #expect(HTMLTextExtractor.text(of: Array("<p>open <b>never closed".utf8)) == "open never closed\n")
        #expect(HTMLTextExtractor.text(of: Array("text <!-- unterminated comment".utf8)) == "text\n")
        #expect(HTMLTextExtractor.text(of: Array("a < b and c > d".utf8)) == "a < b and c > d\n")
        #expect(HTMLTextExtractor.text(of: []) == "")
    }
}
