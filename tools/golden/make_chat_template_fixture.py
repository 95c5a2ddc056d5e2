#!/usr/bin/env python3
"""Renders every chat template in Tests/DataPipelineTests/Fixtures/chat_templates/ with Python
jinja2, configured exactly as transformers' apply_chat_template configures it, over a fixed set
of conversations, and writes the expected text (or the expected error) of each case to
chat_template_cases.json beside them. ChatTemplateParityTests renders the same cases in Swift
and compares byte for byte.

transformers' environment (transformers/utils/chat_template_utils.py, _compile_jinja_template):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[AssistantTracker, jinja2.ext.loopcontrols]), filters["tojson"] = json.dumps with
ensure_ascii=False, globals raise_exception (raises TemplateError(message)) and strftime_now.
Rendering passes messages, tools, documents, add_generation_prompt, the tokenizer's special
tokens map and any extra keyword arguments. Here strftime_now reads a fixed clock
(2024-07-26 09:05:03) so the fixture is reproducible; the Swift test passes the same time.

    python3 -m venv /tmp/venv-jinja && /tmp/venv-jinja/bin/pip install Jinja2
    /tmp/venv-jinja/bin/python tools/golden/make_chat_template_fixture.py
"""
import argparse
import datetime
import json
import pathlib

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = datetime.datetime(2024, 7, 26, 9, 5, 3)

# The tokenizer's special_tokens_map for each template's model (tokenizer_config.json).
SPECIAL_TOKENS = {
    "chatml": {"eos_token": "<|im_end|>"},
    "deepseek-r1": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
    "gemma-2-2b-it": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"},
    "gemma-3-1b-it": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"},
    "llama-3.1-8b-instruct": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama-3.2-3b-instruct": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "mistral-7b-instruct-v0.1": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "mistral-nemo-instruct-2407": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "qwen2.5-7b-instruct": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "qwen3-0.6b": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "qwen3.5-4b": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "smollm3-3b": {"eos_token": "<|im_end|>", "pad_token": "<|im_end|>"},
    "smollm2-135m-instruct": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>"},
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
    },
}

CONVERSATIONS = {
    "single_turn": {"messages": [{"role": "user", "content": "Hello, how are you?"}]},
    "system_multi_turn": {"messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3 + 3?"},
    ]},
    "no_system_multi_turn": {"messages": [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"},
        {"role": "assistant", "content": "Green."},
    ]},
    "assistant_whitespace": {"messages": [
        {"role": "user", "content": "  padded question \n"},
        {"role": "assistant", "content": "\n\n  Sure thing!  \n\n"},
        {"role": "user", "content": "Thanks"},
    ]},
    "unicode_and_quotes": {"messages": [
        {"role": "system", "content": "Réponds en français — «poliment»."},
        {"role": "user", "content": "Emoji 🧪🚀👩‍💻, quotes \"double\" 'single' `back`, 日本語, tab\there, backslash \\ and {{ braces }} {% tags %}"},
    ]},
    "roles_not_alternating": {"messages": [
        {"role": "user", "content": "First question."},
        {"role": "user", "content": "Second question without an answer between."},
    ]},
    "reasoning": {"messages": [
        {"role": "user", "content": "Is 17 prime?"},
        {"role": "assistant", "content": "<think>\nCheck divisors up to 4.\n</think>\n\nYes, 17 is prime."},
        {"role": "user", "content": "And 21?"},
    ], "extra": {"enable_thinking": False}},
    "tools": {"messages": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Zürich?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call00001", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}},
        ]},
        {"role": "tool", "tool_call_id": "call00001", "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"},
    ], "tools": [WEATHER_TOOL]},
    "content_parts": {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Describe images plainly."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " What is shown? "}]},
    ]},
    "llama_date_and_custom_system": {"messages": [
        {"role": "system", "content": "  Keep answers short.  "},
        {"role": "user", "content": "Today?"},
    ], "extra": {"date_string": "07 Dec 2026"}},
}


# Small templates that each exercise one engine feature, with their variables.
SNIPPETS = [
    # whitespace control, trim_blocks, lstrip_blocks
    ("lstrip_and_trim", "  {% if true %}\n  x\n  {% endif %}\n", {}),
    ("minus_strips_newlines", "a\n  {%- if true -%}\n\n  b  {%- endif %}\n", {}),
    ("plus_keeps_indent", "a\n  {%+ if true %}b{% endif %}", {}),
    ("plus_keeps_newline", "{% if true +%}\nb{% endif %}", {}),
    ("comment_lstrip_trim", "a\n  {# note #}\nb\n", {}),
    ("comment_minus", "a  {#- note -#}  b", {}),
    ("variable_not_lstripped", "x\n  {{ 'y' }}\n  z", {}),
    ("variable_minus", "a \n {{- 'b' -}} \n c", {}),
    ("line_starting_after_trim", "{% if true %}\n    {% if true %}y{% endif %}\n{% endif %}", {}),
    ("crlf_newlines", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n", {}),
    ("raw_block", "{% raw %}{{ not parsed }}{% endraw %}!", {}),
    ("trailing_newline_dropped", "end\n", {}),
    # literals and output
    ("string_escapes", "{{ 'a\\nb\\t\\'q\\' \\u00e9 \\x41 \\d' }}|{{ \"it's\" }}|{{ 'con' 'cat' }}", {}),
    ("print_values", "{{ none }} {{ true }} {{ 1.0 }} {{ 1e-5 }} {{ 2.5e16 }} {{ [1, 'a', none, {'k': 'v'}] }} {{ (1,) }} {{ ('a', 2) }}", {}),
    ("print_undefined", "[{{ missing }}][{{ missing is defined }}][{{ missing|length }}][{% for x in missing %}x{% endfor %}][{{ missing == missing }}]", {}),
    ("float_repr", "{{ 0.1 + 0.2 }} {{ 1/3 }} {{ 10/2 }} {{ 1e15 }} {{ 1e16 }} {{ 123456.789e3 }} {{ 0.0001 }} {{ 0.00001 }}", {}),
    # operators
    ("arithmetic", "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 3 - 5 }} {{ -(2) }} {{ 1 + 2 * 3 }}", {}),
    ("concat_tilde", "{{ 'n=' ~ 3 ~ none ~ missing ~ true }}", {}),
    ("string_repeat_and_lists", "{{ 'ab' * 3 }} {{ [1] + [2, 3] }} {{ [0] * 3 }}", {}),
    ("comparisons", "{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ [1, 2] == [1, 2] }} {{ 'a' != 'a' }}", {}),
    ("in_operator", "{{ 'ell' in 'hello' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 'x' in missing }}", {}),
    ("and_or_values", "{{ 0 or 'fallback' }} {{ 'a' and 'b' }} {{ none or none }} {{ not 0 }} {{ not 'x' }}", {}),
    ("ternary", "{{ 'yes' if flag else 'no' }}|{{ 'only' if false }}|{{ 'a' if false else 'b' if true else 'c' }}", {"flag": True}),
    ("filter_binds_tighter", "{{ 'a' + ' b '|trim }} {{ -3|abs }} {{ 1 + [1, 2]|length }}", {}),
    # access
    ("attribute_and_item", "{{ d.key }} {{ d['key'] }} {{ d.nested.inner }} {{ l[0] }} {{ l[-1] }} {{ l.1 }} {{ s[0] }}", {"d": {"key": "v", "nested": {"inner": 5}}, "l": [1, 2, 3], "s": "héllo"}),
    ("dict_method_shadows_key", "{{ d['items'] }} {{ d.items()|list }} {{ d.keys()|list }} {{ d.values()|list }}", {"d": {"items": 1, "b": 2}}),
    ("dict_get", "{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }}", {"d": {"a": 1}}),
    ("slices", "{{ s[1:] }} {{ s[:-1] }} {{ s[::-1] }} {{ s[::2] }} {{ l[1:] }} {{ l[-2:] }} {{ l[:10] }} {{ l[5:] }} {{ l[::-1] }}", {"s": "héllo🚀", "l": [1, 2, 3]}),
    ("missing_key_is_undefined", "{{ d.missing is defined }} {{ d['missing'] is undefined }} [{{ d.missing }}]", {"d": {}}),
    # string methods
    ("string_methods", "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.upper() }}|{{ s.lower() }}|{{ s.strip().title() }}|{{ s.strip().capitalize() }}", {"s": "  hELLo wORLD  "}),
    ("strip_chars", "{{ s.strip('\\n') }}|{{ s.lstrip('\\n') }}|{{ s.rstrip('x\\n') }}", {"s": "\n\nbody x\n"}),
    ("split_methods", "{{ s.split() }} {{ s.split(' ') }} {{ s.split('</think>') }} {{ s.split(' ', 1) }} {{ s.rsplit(' ', 1) }} {{ '  a  b '.split() }}", {"s": "a b</think>c d"}),
    ("split_whitespace_maxsplit", "{{ s.split(none, 1) }} {{ s.rsplit(none, 1) }} {{ s.split(none, 0) }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ''.split() }} {{ ''.split(',') }}", {"s": "  a  b \t c  "}),
    ("starts_ends", "{{ s.startswith('<tool') }} {{ s.endswith('>') }} {{ s.startswith(('x', '<')) }}", {"s": "<tool_response>"}),
    ("replace_find_count", "{{ s.replace('a', 'o') }} {{ s.replace('a', 'o', 1) }} {{ s.find('n') }} {{ s.count('a') }}", {"s": "banana"}),
    # filters
    ("filters_text", "{{ s|trim }}|{{ s|upper }}|{{ s|lower }}|{{ s|title }}|{{ s|capitalize }}|{{ s|length }}|{{ s|replace(' ', '_') }}", {"s": " mIxed-case (words) "}),
    ("filters_sequences", "{{ l|first }} {{ l|last }} {{ l|length }} {{ l|join(', ') }} {{ l|reverse|list }} {{ l|sort }} {{ l|unique|list }} {{ l|sum }} {{ l|min }} {{ l|max }}", {"l": [3, 1, 2, 3]}),
    ("filter_default", "{{ missing|default('d') }} {{ ''|default('e') }} {{ ''|default('e', true) }} {{ none|default('n') }} {{ missing|d('x') }}", {}),
    ("filter_string_int_float", "{{ 3|string }} {{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3|float }} {{ 2.9|int }} {{ true|int }}", {}),
    ("filter_list_items", "{{ 'abc'|list }} {{ d|items|list }} {{ d|list }}", {"d": {"a": 1, "b": [2]}}),
    ("filter_tojson", "{{ v|tojson }}\n{{ v|tojson(indent=2) }}\n{{ v|tojson(indent=4, sort_keys=true) }}\n{{ 'é\"\\n'|tojson }}\n{{ []|tojson(indent=2) }} {{ {}|tojson }}", {"v": {"b": [1, 2.5, None, True, "ü"], "a": {"x": "y"}}}),
    ("filter_tojson_separators", "{{ v|tojson(separators=(',', ':')) }}", {"v": {"a": [1, 2]}}),
    ("filter_indent", "[{{ s|indent }}]\n[{{ s|indent(2, true) }}]\n[{{ s|indent(2, first=true, blank=true) }}]\n[{{ s|indent('> ') }}]", {"s": "one\n\ntwo\nthree\n"}),
    ("filter_selectattr", "{{ m|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(',') }} {{ m|rejectattr('role', 'equalto', 'user')|list|length }} {{ m|selectattr('tool_calls', 'undefined')|list|length }} {{ m|selectattr('tool_calls')|list|length }}", {"m": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "tool_calls": [1]}, {"role": "user", "content": "c"}]}),
    ("filter_select_map", "{{ l|select('odd')|list }} {{ l|reject('odd')|list }} {{ l|map('string')|join('-') }} {{ names|map('upper')|list }} {{ l|select('greaterthan', 1)|list }}", {"l": [1, 2, 3], "names": ["a", "b"]}),
    ("filter_map_attribute_default", "{{ m|map(attribute='x', default='?')|list }} {{ m|map(attribute='y.z')|list }}", {"m": [{"x": 1, "y": {"z": 2}}, {"y": {"z": 3}}]}),
    ("filter_sort_attribute", "{{ m|sort(attribute='n')|map(attribute='n')|list }} {{ ['b', 'A', 'c']|sort }} {{ ['b', 'A', 'c']|sort(case_sensitive=true) }} {{ [3, 1]|sort(reverse=true) }}", {"m": [{"n": 2}, {"n": 1}]}),
    ("filter_round_abs", "{{ 2.567|round(2) }} {{ 2.5|round }} {{ 2.1|round(method='ceil') }} {{ -3|abs }} {{ -2.5|abs }}", {}),
    ("filter_count_wordcount", "{{ [1, 2]|count }} {{ 'a b  c'|wordcount }}", {}),
    ("filter_safe_escape", "{{ '<b>'|safe }} {{ s|e }}", {"s": "<b>&\"'"}),
    # tests
    ("tests_types", "{{ 'a' is string }} {{ 1 is number }} {{ 1.5 is number }} {{ {} is mapping }} {{ [] is sequence }} {{ 'a' is iterable }} {{ 1 is iterable }} {{ none is none }} {{ missing is undefined }} {{ x is defined }} {{ 2 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ true is boolean }} {{ 1 is integer }} {{ 1.0 is float }}", {"x": 0}),
    ("tests_comparisons", "{{ 1 is equalto 1 }} {{ 'a' is eq 'b' }} {{ 2 is ne 3 }} {{ false is sameas false }} {{ 'a' is in ['a'] }} {{ x is not none }} {{ x is not string }} {{ 'abc' is lower }} {{ 'AB' is upper }}", {"x": 3}),
    # statements
    ("for_loop_variables", "{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}", {"l": ["a", "b", "c"]}),
    ("for_prev_next_cycle", "{% for x in l %}[{{ loop.previtem }}|{{ loop.nextitem }}|{{ loop.cycle('o', 'e') }}]{% endfor %}", {"l": [1, 2, 3]}),
    ("for_filter_and_else", "{% for x in l if x > 1 %}{{ x }}{{ loop.index }}{{ loop.length }}{% else %}none{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}", {"l": [1, 2, 3]}),
    ("for_unpacking", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}", {"d": {"x": 1, "y": 2}}),
    ("for_over_dict_and_string", "{% for k in d %}{{ k }}{% endfor %}|{% for c in 'héllo' %}{{ c }}.{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("nested_loops", "{% for row in rows %}{% for cell in row %}{{ loop.index }}{{ cell }}{% endfor %}|{{ loop.index }};{% endfor %}", {"rows": [["a", "b"], ["c"]]}),
    ("set_scoping", "{% set x = 'outer' %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{{ x }}{% endfor %}{{ x }}|{% if true %}{% set y = 'leaks' %}{% endif %}{{ y }}", {}),
    ("namespace", "{% set ns = namespace(found=false, count=0) %}{% for x in [1, 2, 3] %}{% if x > 1 %}{% set ns.found = true %}{% set ns.count = ns.count + x %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.count }}", {}),
    ("set_unpack_and_block", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set block %}\n  inner {{ a }}\n{% endset %}[{{ block }}]", {}),
    ("elif_chain", "{% for v in [1, 2, 3] %}{% if v == 1 %}one{% elif v == 2 %}two{% else %}many{% endif %} {% endfor %}", {}),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(name='C', punct='.') }}", {}),
    ("macro_sees_globals_not_locals", "{% set g = 'G' %}{% macro m() %}{{ g }}{{ local is defined }}{% endmacro %}{% for local in [1] %}{{ m() }}{% endfor %}", {}),
    ("range_forms", "{{ range(3)|list }} {{ range(1, 4)|list }} {{ range(10, 0, -3)|list }} {{ range(0)|list }}", {}),
    ("dict_literal_and_dict", "{{ {'a': 1, 'b': [2]} }} {{ dict(x=1, y='z') }} {{ {'name': n, 'args': {}}|tojson }}", {"n": "f"}),
    ("generation_tag", "{% for m in msgs %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}", {"msgs": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
    ("strftime_now", "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S %A %B %j %y %p %I') }}", {}),
    ("messages_like_hf", "{{ bos_token }}{% for message in messages %}{{ message['role'] | upper }}: {{ message['content'] | trim }}\n{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}", {"bos_token": "<s>", "messages": [{"role": "user", "content": " hi "}], "add_generation_prompt": True}),
    ("filter_block", "{% filter upper | trim %}\n  hello {{ 'x' }}  \n{% endfilter %}|", {}),
    ("call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% set v = 'in' %}{% call wrap('b') %}body {{ v }}{% endcall %}", {}),
    ("call_block_with_parameters", "{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) each([1, 2]) %}[{{ x }}]{% endcall %}", {}),
    ("call_splat", "{% macro f(a, b) %}{{ a }}-{{ b }}{% endmacro %}{% set args = [1, 2] %}{{ f(*args) }} {{ f(**{'a': 3, 'b': 4}) }}", {}),
    # errors
    ("error_raise_exception", "{% if true %}{{ raise_exception('Custom failure: ' ~ 3) }}{% endif %}", {}),
    ("error_undefined_attribute", "{{ missing.attribute }}", {}),
    ("error_undefined_arithmetic", "{{ missing + 1 }}", {}),
    ("error_concat_types", "{{ 'a' + 1 }}", {}),
    ("error_division_by_zero", "{{ 1 / 0 }}", {}),
    ("error_syntax_unclosed_for", "line1\n{% for x in y %}\nline3\n", {}),
    ("error_syntax_unknown_tag", "a\nb\n{% frobnicate %}", {}),
    ("error_syntax_bad_expression", "{{ 1 + }}", {}),
    ("error_syntax_unclosed_variable", "a\n{{ x ", {}),
    ("error_syntax_endif_without_if", "{% endif %}", {}),
    ("error_syntax_unterminated_string", "\n\n{{ 'abc }}", {}),
    ("error_list_mutation_refused", "{% set l = [1] %}{{ l.append(2) }}", {}),
]


def render_snippets(environment):
    results = []
    for name, source, variables in SNIPPETS:
        result = {"name": name, "template": source, "variables": variables}
        try:
            result["expected"] = environment.from_string(source).render(**variables)
        except jinja2.exceptions.TemplateSyntaxError as error:
            result["error"] = {"kind": "syntax", "message": error.message, "line": error.lineno}
        except jinja2.exceptions.TemplateError as error:
            kind = "raised" if type(error) is jinja2.exceptions.TemplateError else "render"
            result["error"] = {"kind": kind, "message": str(error)}
        except Exception as error:
            result["error"] = {"kind": "render", "message": str(error)}
        results.append(result)
    return results


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    class AssistantTracker(jinja2.ext.Extension):
        # transformers' {% generation %} marker; without return_assistant_tokens_mask it only renders its body.
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    return environment


def main():
    root = pathlib.Path(__file__).resolve().parents[2]
    directory = root / "Tests/DataPipelineTests/Fixtures/chat_templates"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(directory / "chat_template_cases.json"))
    parser.add_argument("--snippets-output", default=str(directory / "chat_template_snippets.json"))
    arguments = parser.parse_args()

    environment = make_environment()
    cases = []
    for path in sorted(directory.glob("*.jinja")):
        name = path.stem
        source = path.read_text(encoding="utf-8")
        template = environment.from_string(source)
        for conversation_name, conversation in CONVERSATIONS.items():
            for add_generation_prompt in (False, True):
                variables = dict(SPECIAL_TOKENS[name])
                variables.update(conversation.get("extra", {}))
                case = {
                    "template": name,
                    "conversation": conversation_name,
                    "add_generation_prompt": add_generation_prompt,
                }
                try:
                    case["expected"] = template.render(messages=conversation["messages"], tools=conversation.get("tools"),
                                                       documents=None, add_generation_prompt=add_generation_prompt,
                                                       **variables)
                except jinja2.exceptions.UndefinedError as error:
                    case["error"] = {"kind": "render", "message": str(error)}
                except jinja2.exceptions.TemplateError as error:
                    # raise_exception raises a bare TemplateError; jinja2's own errors are subclasses.
                    kind = "raised" if type(error) is jinja2.exceptions.TemplateError else "render"
                    case["error"] = {"kind": kind, "message": str(error)}
                except (TypeError, ValueError, AttributeError) as error:
                    case["error"] = {"kind": "render", "message": str(error)}
                cases.append(case)

    fixture = {
        "generator": "tools/golden/make_chat_template_fixture.py",
        "jinja2_version": jinja2.__version__,
        "now": FIXED_NOW.isoformat(),
        "special_tokens": SPECIAL_TOKENS,
        "conversations": CONVERSATIONS,
        "cases": cases,
    }
    temporary = pathlib.Path(arguments.output + ".tmp")
    temporary.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    temporary.replace(arguments.output)
    errors = sum(1 for case in cases if "error" in case)
    print(f"{len(cases)} cases ({errors} expected errors) -> {arguments.output}")

    snippets = {"generator": "tools/golden/make_chat_template_fixture.py", "jinja2_version": jinja2.__version__,
                "now": FIXED_NOW.isoformat(), "snippets": render_snippets(environment)}
    snippet_path = pathlib.Path(arguments.snippets_output)
    temporary = pathlib.Path(arguments.snippets_output + ".tmp")
    temporary.write_text(json.dumps(snippets, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    temporary.replace(snippet_path)
    print(f"{len(snippets['snippets'])} snippets -> {snippet_path}")


if __name__ == "__main__":
    main()
