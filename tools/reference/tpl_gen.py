#!/usr/bin/python3
"""tools/reference/tpl_gen.py: reference renders of the real chat templates with Jinja2.

Generates a fixed set of conversations (seeded, so every run writes the same ones) and renders
each with every template in tests/fixtures/tpl/templates/ using Debian python3-jinja2 set up as
transformers does (ImmutableSandboxedEnvironment(trim_blocks, lstrip_blocks, loopcontrols),
tojson = json.dumps(ensure_ascii=False, ...), raise_exception, strftime_now fixed at
FAKE_NOW), with bos/eos tokens of each template's model. Writes
  tests/fixtures/tpl/conversations.jsonl      one {"messages", "tools", "add_generation_prompt"} per line
  tests/fixtures/tpl/golden/<template>.jsonl  line i: {"h": fnv1a64 hex, "n": bytes[, "t": text]}
                                              or {"e": exception type, "m": message}
  tests/fixtures/tpl/templates.json           bos/eos and whether tools are passed, per template
  tests/fixtures/tpl/snippets.jsonl           small feature templates ({"src", "out"} or {"src", "e", "m"})
  tests/fixtures/tpl/snippet_vars.json        the variables the snippets render with
Templates that mention `tools` get the conversation's tools (else None); a "tool_use" template
always gets tools (TOOLS[:1] when the conversation has none), as transformers only picks it then.
Run with /usr/bin/python3 (Debian's, which has jinja2):  tools/reference/tpl_gen.py OUTDIR
"""
import json
import os
import random
import sys
from datetime import datetime, timezone

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

FAKE_NOW = 1721995200  # 2024-07-26T12:00:00Z

# bos / eos of each template's model (shared/refs/templates/SOURCES.md); None: left undefined
TOKENS = {
    "Llama-2-7b-chat-hf": ("<s>", "</s>"),
    "Llama-2-7b-chat-hf-default-system-prompt": ("<s>", "</s>"),
    "CodeLlama-34b-Instruct-hf": ("<s>", "</s>"),
    "CodeLlama-70b-Instruct-hf": ("<s>", "</s>"),
    "Meta-Llama-3-8B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "Meta-Llama-3-8B-Instruct-original": ("<|begin_of_text|>", "<|end_of_text|>"),
    "Meta-Llama-3.1-8B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "Llama-3.2-3B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "Llama-3.3-70B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "Meta-Llama-Guard-2-8B": ("<|begin_of_text|>", "<|end_of_text|>"),
    "Mistral-7B-Instruct-v0.1": ("<s>", "</s>"),
    "Mistral-7B-Instruct-v0.1-original": ("<s>", "</s>"),
    "Mistral-7B-Instruct-v0.2-original": ("<s>", "</s>"),
    "Mixtral-8x7B-Instruct-v0.1": ("<s>", "</s>"),
    "Mistral-Nemo-Instruct-2407": ("<s>", "</s>"),
    "dbrx-instruct": ("<|endoftext|>", "<|endoftext|>"),
    "Qwen1.5-72B-Chat": (None, "<|im_end|>"),
    "Qwen2-7B-Instruct": (None, "<|im_end|>"),
    "Qwen2.5-7B-Instruct": (None, "<|im_end|>"),
    "Qwen3-0.6B": (None, "<|im_end|>"),
    "Phi-3-mini-4k-instruct": ("<s>", "<|endoftext|>"),
    "Phi-3-mini-128k-instruct": ("<s>", "<|endoftext|>"),
    "Phi-3-small-8k-instruct": ("<|endoftext|>", "<|endoftext|>"),
    "Phi-3.5-mini-instruct": ("<s>", "<|endoftext|>"),
    "gemma-7b-it": ("<bos>", "<eos>"),
    "gemma-2-2b-it": ("<bos>", "<eos>"),
    "zephyr-7b-beta": ("<s>", "</s>"),
    "TinyLlama-1.1B-Chat-v1.0": ("<s>", "</s>"),
    "zephyr-7b-gemma-v0.1": ("<bos>", "<eos>"),
    "SmolLM2-Instruct": ("<|im_start|>", "<|im_end|>"),
    "chatml-vllm-example": (None, None),
    "falcon-11B": (">>", "<|endoftext|>"),
    "deepseek-llm-7b-chat": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "deepseek-coder-6.7b-instruct": ("<｜begin▁of▁sentence｜>", "<|EOT|>"),
    "DeepSeek-R1-Distill-Qwen-32B": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "SOLAR-10.7B-Instruct-v1.0": ("<s>", "</s>"),
    "h2o-danube2-1.8b-chat": ("<s>", "</s>"),
    "starcoder2-15b-instruct-v0.1": ("<|endoftext|>", "<|endoftext|>"),
    "OLMo-7B-Instruct": (None, "<|endoftext|>"),
    "Hermes-3-Llama-3.1-8B-tool_use": ("<|begin_of_text|>", "<|im_end|>"),
}

TEXTS = [
    "Hello!", "What is the capital of France?", "Paris.", "  padded with spaces  ", "\nleading newline",
    "trailing newline\n", "line one\nline two\n\nline four", "tabs\tand\ttabs", "", " ",
    "Привет, как дела?", "Γειά σου κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก",
    "你好，世界！今天天气怎么样？", "こんにちは、世界", "안녕하세요 세계", "emoji 👋🏽 family 👨‍👩‍👧 flag 🇫🇷",
    "Ünïcödé àccents ÇÅÉ ß", "{{ x }}", "{% raw %}not raw{% endraw %}", "{# comment #}", "{%- if true -%}x{% endif %}",
    "quotes ' and \" and `backticks`", "back\\slash \\n literal", "<s>[INST] fake tags [/INST]</s>",
    "<|im_start|>user\nspoofed<|im_end|>", "<think>\nreasoning here\n</think>\n\nThe answer is 42.",
    "<think>only thinking</think>", "code:\n```python\ndef f(x):\n    return x * 2\n```", "JSON: {\"a\": [1, 2.5, null]}",
    "numbers 0 -1 3.14159 1e10", "a" * 300, "mixed 中文 and English and русский", "\u00a0nbsp\u00a0",
    "ends with space ", "<tool_response>\nresult\n</tool_response>", "1. first\n2. second\n3. third",
    "Can you call the weather tool for Tokyo?", "Sure, here you go.", "The tool says 21°C and sunny ☀️.",
    "\r\nwindows line\r\n", "control \x07 bell \x1b esc", "math: ∑ᵢ xᵢ² ≤ ∞", "</s>", "<|eot_id|>",
]

SYSTEMS = ["You are a helpful assistant.", "Réponds en français.", "", "  system with spaces  \n",
           "You are Qwen, created by Alibaba Cloud. {{ not_a_var }}", "系统提示：请简洁回答。", "Line1\nLine2"]

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Tokyo"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit"}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web — returns snippets",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "description": "Query text"},
            "limit": {"type": "integer", "description": "Max results"},
            "filters": {"type": "array", "items": {"type": "string"}, "description": "Filters"},
            "opts": {"type": "object", "additionalProperties": {"type": "number"}, "description": "Options"},
            "mode": {"type": ["string", "null"], "description": "Mode"},
            "ratio": {"type": "number", "description": "A ratio like 0.5"}},
            "required": ["query"]},
        "return": {"type": "string", "description": "The snippets"}}},
]


# Small templates that exercise each feature of the engine one at a time (tests/tpl check them
# all against these Jinja2 renders). Variables: VARS below.
VARS = {"s": "  Hello, World  ", "u": "héllo wörld ΑΒΓ абв", "n": 7, "f": 2.5, "neg": -3, "t": True, "z": None,
        "l": [3, 1, 2], "ls": ["b", "A", "c", "a"], "e": [], "d": {"b": 1, "a": 2, "c": {"x": [1, 2]}},
        "msgs": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
                 {"role": "assistant", "content": "yo", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
                 {"role": "user", "content": "bye"}],
        "big": 12345678901234, "fl": [0.1, 1e16, 1e-5, 123.456, -0.0, 1e22, 3.0], "nested": [[1, [2, "x"]], {"k": (1, 2)}]}
SNIPPETS = [
    # whitespace control, trim_blocks, lstrip_blocks, raw, comments
    "a\n  {% if true %}\n    b\n  {% endif %}\nc",
    "a  {%- if true -%}  b  {%- endif -%}  c",
    "x\n{{- ' y ' -}}\nz",
    "  {# comment #}\nq\n{#- c2 -#}  r",
    "{% raw %}{{ not rendered }}{% endraw %}|{%- raw -%}  a {{ b }}  {%- endraw -%}|",
    "  {%+ if true %}kept{% endif %}\n  {% if true +%}\nx{% endif %}",
    "{% for i in l %}\n  {{ i }}\n{% endfor %}\n",
    "line\n    {% set x = 1 %}\nafter {{ x }}",
    "a\r\nb\rc{{ 'q\r\nr' }}\n",
    "{{ 'a' }}\n\n",
    # literals and escapes
    "{{ 'tab\\tnl\\nq\\'dq\\\"bs\\\\x41=\\x41 u=\\u00e9 U=\\U0001F600 oct=\\101 unk=\\d' }}",
    "{{ \"dq 'inner'\" }} {{ 'adj' 'acent' }} {{ 1_000 }} {{ 0x1F }} {{ 0b101 }} {{ 0o17 }} {{ 1.5e3 }} {{ 2E-3 }}",
    "{{ [1, 'a', none, true, false, 1.5] }} {{ (1,) }} {{ () }} {{ (1, 2) }} {{ {'k': 'v', 1: [2]} }} {{ {} }}",
    "{{ fl }} {% for x in fl %}{{ x }},{% endfor %} {{ 1/3 }} {{ 2/2 }} {{ 10**12 // 10**5 }} {{ 0.1 * 3 }}",
    "{{ big }} {{ big * 1000 }} {{ -big }} {{ 7 / 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ -7.5 % 2 }} {{ 2 ** 10 }} {{ 2 ** 0.5 }}",
    "{{ 'a' ~ 1 ~ none ~ true ~ [1] }} {{ 'ab' * 3 }} {{ [1] * 2 }} {{ 'x' + 'y' }} {{ [1] + [2] }} {{ 1 + true }}",
    "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ 'a' in 'cat' }} {{ 2 not in l }} {{ 'b' in d }}",
    "{{ not true }} {{ true and 'x' }} {{ 0 or 'y' }} {{ none or [] }} {{ 'a' if n > 5 else 'b' }} [{{ 'a' if false }}]",
    "{{ -n }} {{ +n }} {{ -f }} {{ n - 10 }} {{ neg|abs }} {{ -1|abs }} {{ f|round }} {{ 2.675|round(2) }} {{ 2.5|round }} {{ 3.5|round }} {{ 7|round }} {{ 2.4|round(0, 'ceil') }} {{ 2.6|round(0, 'floor') }}",
    # subscripts and slices
    "{{ l[0] }} {{ l[-1] }} {{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[::2] }} {{ l[5:] }} {{ l[-10:2] }} {{ u[::-1] }} {{ u[1:4] }} {{ u[-3:] }} {{ u[0] }}",
    "{{ d.a }} {{ d['b'] }} {{ d.c.x[1] }} {{ d.get('a') }} {{ d.get('q', 'dflt') }} {{ d.get('q') }} {{ msgs[1].content }} {{ l.0 }}",
    "{{ d.items() }} {{ d.keys() }} {{ d.values() }} {{ d.items()|list }} {% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
    "{{ d|items|list }} {% for k, v in d|items %}{{ k }}{% endfor %} {{ d|dictsort }} {{ d|list }} {{ d|length }}",
    # undefined
    "[{{ missing }}] {{ missing is defined }} {{ missing is undefined }} {{ missing|default('D') }} {{ ''|default('E', true) }} {{ missing|d('F') }} {{ z|default('G') }}",
    "{{ missing|length }} {{ missing|list }} {{ missing|string }}|{% for x in missing %}no{% else %}empty{% endfor %} {{ missing == missing2 }} {{ missing != 1 }}",
    "{{ d.nope is defined }} {{ d['nope'] is defined }} {{ l[99] is defined }} {{ z.attr is defined }}",
    "{{ missing.attr }}",
    "{{ missing + 1 }}",
    "{{ missing < 1 }}",
    "{{ missing['k'] }}",
    "{{ missing() }}",
    "{{ missing|tojson }}",
    # loops
    "{% for x in ls %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}",
    "{% for x in l %}{{ loop.previtem }}-{{ x }}-{{ loop.nextitem }},{% endfor %} {% for x in l %}{{ loop.cycle('a', 'b') }}{% endfor %}",
    "{% for x in l if x > 1 %}{{ x }}{{ loop.index }}{{ loop.last }}{% endfor %}",
    "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }}{% endfor %} {% for c in 'héllo' %}{{ c }}.{% endfor %} {% for k in d %}{{ k }}{% endfor %}",
    "{% for x in [] %}x{% else %}none{% endfor %} {% for i in range(3) %}{% for j in range(2) %}{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %}",
    "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}",
    "{% for i in range(3) %}{% if i == 1 %}{% set y = 5 %}{% endif %}{{ y }},{% endfor %}",
    "{{ range(5) }} {{ range(2, 10, 3)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }}",
    "{% for m in msgs[::-1] %}{{ m.role }} {% endfor %}",
    # set, namespace, with, macros, call, filter blocks
    "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set t = 1, 2 %}{{ t }} {% set ns = namespace(x=1, y='a') %}{% set ns.x = ns.x + 1 %}{{ ns.x }}{{ ns.y }}",
    "{% set ns = namespace() %}{% set ns.found = false %}{% for m in msgs %}{% if m.role == 'user' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}",
    "{% set blk %}  inner {{ n }}  {% endset %}[{{ blk }}] {% set up | upper %}shout{% endset %}{{ up }}",
    "{% with a = 5, b = 'x' %}{{ a }}{{ b }}{% endwith %}[{{ a }}]",
    "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Bob') }} {{ greet('Al', greeting='Hi') }} {{ greet(name='Z') }}",
    "{% macro rec(k) %}{% if k > 0 %}{{ k }}{{ rec(k - 1) }}{% endif %}{% endmacro %}{{ rec(5) }}",
    "{% macro va() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ va(1, 2, x=3) }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m() }}|{{ m }}",
    "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ n }}{% endcall %}",
    "{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) each([1, 2]) %}[{{ x }}]{% endcall %}",
    "{% filter upper %}up {{ s }}{% endfilter %} {% filter replace('a', 'b')|trim %}  banana  {% endfilter %}",
    "{% macro m(a) %}x{% endmacro %}{{ m(1, 2) }}",
    # filters
    "{{ s|trim }}|{{ s|trim('  Hd') }}|{{ s|upper }}|{{ s|lower }}|{{ s|title }}|{{ 'hello wORLD-foo(bar'|title }}|{{ 'hELLO world'|capitalize }}|{{ u|upper }}|{{ u|title }}",
    "{{ s|replace('l', 'L') }} {{ s|replace('l', 'L', 2) }} {{ 'aaa'|replace('', '-') }} {{ s|length }} {{ u|length }} {{ l|count }} {{ s|wordcount }} {{ u|wordcount }}",
    "{{ l|first }} {{ l|last }} {{ ls|sort }} {{ ls|sort(case_sensitive=true) }} {{ ls|sort(reverse=true) }} {{ l|reverse|list }} {{ 'abc'|reverse }} {{ ls|unique|list }} {{ ls|join(', ') }} {{ l|join }}",
    "{{ l|sum }} {{ l|min }} {{ l|max }} {{ ls|min }} {{ ls|max(case_sensitive=true) }} {{ [1, 2, 3, 4, 5]|batch(2)|list }} {{ [1, 2, 3]|batch(2, 'x')|list }}",
    "{{ msgs|map(attribute='role')|list }} {{ msgs|map(attribute='role')|join('/') }} {{ ['a', 'B']|map('upper')|list }} {{ msgs|map(attribute='missing', default='-')|list }}",
    "{{ msgs|selectattr('role', 'equalto', 'user')|list|length }} {{ msgs|rejectattr('role', 'eq', 'user')|map(attribute='content')|list }} {{ msgs|selectattr('tool_calls')|list|length }} {{ msgs|selectattr('tool_calls', 'defined')|map(attribute='role')|first }}",
    "{{ l|select('odd')|list }} {{ l|reject('odd')|list }} {{ [0, 1, '', 'a', none]|select|list }} {{ l|select('gt', 1)|list }} {{ l|select('divisibleby', 3)|list }} {{ ['a', 'code_interpreter']|reject('equalto', 'code_interpreter')|join(', ') }}",
    "{{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(9) }} {{ '0x1A'|int(0, 16) }} {{ 3.9|int }} {{ '2.5'|float }} {{ 'q'|float }} {{ 3|float }} {{ true|int }}",
    "{{ l|string }} {{ d|string }} {{ z|string }} {{ 1.0|string }} {{ ('a', 1)|string }} {{ \"it's\"|string }} {{ ['it\\'s', 'say \"x\"', 'both \\' \"']|string }} {{ ['\\n\\t\\x01é\u200d']|string }}",
    "{{ 'line1\nline2\n\nline4'|indent }}|{{ 'a\nb'|indent(2, true) }}|{{ 'a\n\nb'|indent(2, blank=true) }}|{{ 'x\ny'|indent('> ') }}",
    "{{ d|tojson }} {{ l|tojson }} {{ 'é\"\\\\\n\t\x01'|tojson }} {{ fl|tojson }} {{ nested|tojson }} {{ z|tojson }} {{ t|tojson }} {{ {1: 'a', none: 'b', true: 'c', 2.5: 'd'}|tojson }}",
    "{{ d|tojson(indent=2) }}|{{ msgs[2]|tojson(indent=4) }}|{{ []|tojson(indent=2) }}|{{ {}|tojson(indent=2) }}|{{ d|tojson(sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}|{{ u|tojson(ensure_ascii=true) }}",
    "{{ '%s and %d and %.2f and %r'|format('x', 3, 2.5, 'y') }} {{ '%s-%s' % ('a', 'b') }} {{ 'v=%s' % 5 }} {{ '%(k)s'|format(k=1) }}",
    "{{ 'Hi'|center(8) }}|{{ s|safe }}|{{ '<a href=\"x\">&</a>'|e }}|{{ 'x'|attr('upper')() }}",
    "{{ msgs|length }} {{ msgs[0]|list }} {{ 'abc'|list }} {{ msgs|first|tojson }} {{ msgs|last|tojson }}",
    # tests
    "{{ n is number }}{{ f is float }}{{ n is integer }}{{ t is integer }}{{ t is boolean }}{{ t is true }}{{ z is false }}{{ z is none }}{{ s is string }}{{ d is mapping }}{{ l is iterable }}{{ s is iterable }}{{ n is iterable }}{{ l is sequence }}{{ d is sequence }}",
    "{{ n is odd }}{{ n is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}{{ 1 is in l }}{{ n is eq 7 }}{{ n is equalto 8 }}{{ n is ne 7 }}{{ n is gt 3 }}{{ n is lt 3 }}{{ n is ge 7 }}{{ n is le 6 }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ z is sameas none }}{{ missing is callable }}{{ range is callable }}",
    "{{ n is not none }} {{ not n is none }} {{ s is not string }} {{ l|first is odd }} {{ t is sameas true }}",
    # str methods
    "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxhixx'.strip('x') }}|{{ '\\n\\nhi\\n'.lstrip('\\n') }}|{{ 'abcba'.rstrip('ab') }}|{{ u.upper() }}|{{ u.lower() }}|{{ u.title() }}|{{ \"they're bill's\".title() }}|{{ 'élan'.capitalize() }}",
    "{{ s.startswith('  He') }}{{ s.endswith('d  ') }}{{ s.startswith(('x', '  ')) }}{{ 'abc'.startswith('b', 1) }} {{ 'a,b,,c'.split(',') }} {{ '  a b  c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ '  a  b '.rsplit(None, 1) }} {{ 'x</think>y</think>z'.split('</think>')[-1] }}",
    "{{ s.replace('l', '') }} {{ '{} is {}'.format('x', 1) }} {{ '{0}{1}{0}'.format('a', 'b') }} {{ '{name}!'.format(name='N') }} {{ '{:>5}|{:<4}|{:^6}|{:05d}|{:.2f}'.format('r', 'l', 'c', 42, 3.14159) }} {{ '{{literal}} {}'.format(1) }}",
    "{{ ', '.join(ls) }} {{ s.find('o') }} {{ u.find('w') }} {{ s.rfind('o') }} {{ s.count('l') }} {{ '12'.isdigit() }}{{ 'ab'.isalpha() }}{{ '  '.isspace() }}{{ 'Ab'.isupper() }}{{ 'ab'.islower() }} {{ 'a\\nb\\r\\nc'.splitlines() }} {{ 'pre_x'.removeprefix('pre_') }} {{ '7'.zfill(3) }} {{ 'ab'.ljust(4, '*') }}|{{ 'ab'.rjust(4) }}|{{ 'ab'.center(5, '-') }}",
    "{{ l.count(1) }} {{ l.index(2) }} {{ d.copy() }} {{ l.append }}|{{ d.update is defined }}",
    # globals
    "{{ raise_exception('custom failure message') }}",
    "{{ strftime_now('%Y-%m-%d %d %b %Y %H:%M') }}",
    "{{ dict(a=1, b=[2]) }} {{ dict([('x', 1)]) }} {{ namespace(a=1).a }} {{ ns }}",
    # errors Jinja2 raises
    "{{ 1 + 'a' }}", "{{ 'a' - 1 }}", "{{ 1 // 0 }}", "{{ 1 % 0 }}", "{{ [] < 1 }}", "{{ l[::0] }}", "{{ n() }}",
    "{{ none|tojson }}{{ n|length }}", "{% for x in 5 %}{% endfor %}", "{{ 3 in 'abc' }}", "{{ (1, 2)|tojson }}{{ {(1, 2): 1} }}",
    "{% set x.y = 1 %}", "{% for a, b in [1] %}{% endfor %}", "{{ 'a'.split('') }}", "{{ {'a': 1}|items|length }}",
    "{% if %}{% endif %}", "{% for x in l %}", "{{ 1 +* 2 }}", "{% endif %}", "{{ x | nosuchfilter }}", "{{ x is nosuchtest }}",
    "{% unknowntag %}", "{{ 'unterminated }}", "{{ (1 }}", "{% macro m(a=1, b) %}{% endmacro %}", "{% break %}",
    "{{ range(200000)|length }}", "{% set x = msgs|selectattr('role')%}{{ x|length }}",
    "{{ msgs|selectattr('role', 'equalto', 'system') and 'truthy' }}",
    "{% set g = l|map('string') %}{{ g|list }}{{ g|list }}",
    # more corners
    "{% macro outer(x) %}{% for i in range(x) %}{{ inner(i) }}{% endfor %}{% endmacro %}{% macro inner(v) %}<{{ v }}>{% endmacro %}{{ outer(3) }}",
    "{% for m in msgs %}{% set c = m.content %}{% macro show() %}{{ c }}{% endmacro %}{{ show() }}{% endfor %}",
    "{% set x = 5 %}{% macro f() %}{{ x }}{% endmacro %}{% set x = 6 %}{{ f() }}",
    "{{ {'a': 1, 'a': 2} }} {{ d|join(',') }} {{ msgs|map(attribute='content')|map('upper')|join(' ') }} {{ l|map('tojson')|list }}",
    "{{ msgs|selectattr('role', 'in', ['user', 'system'])|map(attribute='content')|list }} {{ msgs|sort(attribute='role')|map(attribute='role')|list }}",
    "{{ none == none }} {{ none is none }} {{ [] == [] }} {{ [1] == (1,) }} {{ {'a': 1} == {'a': 1} }} {{ 1 is sameas 1 }} {{ '1' == 1 }}",
    "{{ '{:,}'.format(1234567) }} {{ '{:+d}'.format(5) }} {{ '{!r}'.format('x') }} {{ '{0[0]}{0[1]}'.format('ab') }} {{ '{d[b]}'.format(d=d) }} {{ '{:%}'.format(0.25) }} {{ '{:e}'.format(12345.678) }}",
    "{{ 'a' ~ 'b' + 'c' }} {{ 1 + 2 ~ 3 }} {{ 2 * 3 ~ 4 }} {{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ not 1 == 2 }} {{ 1 if 0 else 2 if 0 else 3 }}",
    "{%- for m in msgs -%}\n  {%- if loop.first %}[{% endif -%}\n  {{ m.role }}\n  {%- if not loop.last %}, {% else %}]{% endif -%}\n{%- endfor %}",
    "{% if msgs[0].role == 'system' %}{% set rest = msgs[1:] %}{% else %}{% set rest = msgs %}{% endif %}{{ rest|length }}{{ msgs[-1].content }}{{ msgs[1:3]|map(attribute='role')|join }}",
    "{{ msgs[2].tool_calls[0].function.arguments|tojson }} {{ msgs[2].tool_calls[0].function.arguments.a }} {{ msgs[2]['tool_calls'][0]['function']['name'] }} {{ msgs[2].tool_calls|length }}",
    "{{ 'x' if msgs[0].missing is not defined }} {{ msgs[0].content is string }} {{ msgs[2].tool_calls is iterable }} {{ msgs[2].tool_calls[0] is mapping }} {{ msgs[2].tool_calls is sequence }}",
    "{{ 'abc'[1] }} {{ 'abc'[-1] }} {{ 'abc'[5] is defined }} {{ 'héllo'[1] }} {{ 'abc'[::2] }} {{ [1, 2, 3][1:-1] }} {{ (1, 2, 3)[::-1] }}",
    "{{ 10 / 4 }} {{ 10 // 4 }} {{ -10 // 4 }} {{ 10 % 4 }} {{ -10 % 4 }} {{ 10.5 // 4 }} {{ 1e300 * 1e10 }} {{ -1e300 * 1e10 }} {{ 0.5 + 0.25 }} {{ 100000000000000000.0 }} {{ 1.5e-7 }} {{ 123456789.123456789 }}",
    "{{ ' x '|trim|length }} {{ '\t\n x \u3000'|trim }}|{{ 'aXbXc'|replace('X', '') }} {{ 'Hello World'|lower|replace(' ', '_') }} {{ 'ABC'|first }} {{ 'ABC'|last }}",
    "{% set items = [{'n': 'b', 'v': 2}, {'n': 'a', 'v': 1}, {'n': 'c', 'v': 2}] %}{{ items|sort(attribute='v')|map(attribute='n')|join }} {{ items|sort(attribute='v', reverse=true)|map(attribute='n')|join }} {{ items|map(attribute='v')|unique|list }} {{ items|sum(attribute='v') }} {{ items|max(attribute='v') }}",
    "{% for k, v in {'z': 1, 'a': 2}|dictsort %}{{ k }}{{ v }}{% endfor %} {% for k, v in {'z': 1, 'a': 2}.items()|sort %}{{ k }}{% endfor %} {{ {'b': 1, 'A': 2}|dictsort(true) }} {{ {'b': 2, 'a': 1}|dictsort(by='value', reverse=true) }}",
    "{{ [1, [2, [3, {'x': 'é'}]]]|tojson(indent=1) }} {{ {'a': {'b': []}}|tojson(indent='\t') }} {{ ['a', 1]|tojson(separators=(';', '=')) }}",
    "{% set ns = namespace(items=[]) %}{% for i in range(3) %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.items }} {% set ns2 = namespace(ns) %}{{ ns2.items }}",
    "{{ l|batch(2)|map('list')|list }} {{ l|batch(2)|map('join', ',')|list }} {{ l|select('in', [1, 3])|list }} {{ ls|select('lower')|list }} {{ ls|reject('upper')|list }}",
    "{% filter indent(2, true) %}a\nb\n{% endfilter %}|{% filter tojson %}x\"y{% endfilter %}|{% filter title %}hello-world foo{% endfilter %}",
]


def tool_call(rng, i):
    name = rng.choice(["get_weather", "search"])
    args = {"city": rng.choice(["Tokyo", "Zürich", "東京"]), "unit": "celsius"} if name == "get_weather" else \
        {"query": rng.choice(["jinja", "llama 3", "\"quoted\""]), "limit": rng.choice([3, 10]), "ratio": 0.25}
    call = {"type": "function", "function": {"name": name, "arguments": args}}
    if rng.random() < 0.3:
        call["function"]["arguments"] = json.dumps(args)  # some APIs pass a JSON string
    call["id"] = "call" + "%05d" % (i % 100000)  # 9 characters, as Mistral requires
    return call


def make_conversations(rng):
    convs = []
    for i in range(240):
        kind = i % 12
        msgs = []
        if kind in (0, 3, 6, 9) or rng.random() < 0.15:
            msgs.append({"role": "system", "content": rng.choice(SYSTEMS)})
        n_turns = rng.randint(1, 12)
        role = "user"
        for t in range(n_turns):
            content = rng.choice(TEXTS)
            if kind == 5 and role == "assistant" and rng.random() < 0.5:
                # tool calling: assistant calls, tool answers, assistant answers
                calls = [tool_call(rng, i * 10 + t)]
                if rng.random() < 0.2:
                    calls.append(tool_call(rng, i * 10 + t + 5))
                msgs.append({"role": "assistant", "content": rng.choice([None, ""]), "tool_calls": calls})
                for c in calls:
                    msgs.append({"role": "tool", "content": rng.choice(['{"temp": 21}', "21 degrees", "ok"]),
                                 "tool_call_id": c["id"], "name": c["function"]["name"]})
                msgs.append({"role": "assistant", "content": rng.choice(TEXTS)})
                role = "user"
                continue
            msgs.append({"role": role, "content": content})
            role = "assistant" if role == "user" else "user"
        if kind == 7 and len(msgs) > 2:  # broken alternation
            msgs.insert(rng.randrange(1, len(msgs)), {"role": rng.choice(["user", "assistant"]), "content": "extra"})
        if kind == 11 and rng.random() < 0.5:
            msgs.append({"role": "assistant", "content": "Final answer.", "reasoning_content": "thought"})
        tools = None
        if kind in (4, 5, 10):
            tools = TOOLS[: rng.randint(1, 2)]
        convs.append({"messages": msgs, "tools": tools, "add_generation_prompt": rng.random() < 0.5})
    return convs


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def strftime_now(fmt):
        return datetime.fromtimestamp(FAKE_NOW, timezone.utc).strftime(fmt)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xffffffffffffffff
    return "%016x" % h


def render(tpl, bos, eos, conv, uses_tools, always_tools):
    variables = {}
    if bos is not None:
        variables["bos_token"] = bos
    if eos is not None:
        variables["eos_token"] = eos
    tools = conv["tools"] if uses_tools else None
    if always_tools and tools is None:
        tools = TOOLS[:1]
    return tpl.render(messages=conv["messages"], tools=tools, documents=None,
                                       add_generation_prompt=conv["add_generation_prompt"], **variables)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tpl"
    tdir = os.path.join(out, "templates")
    names = sorted(f[:-6] for f in os.listdir(tdir) if f.endswith(".jinja"))
    missing = [n for n in names if n not in TOKENS]
    if missing:
        sys.exit("no bos/eos known for: %s" % missing)
    convs = make_conversations(random.Random(20261122))
    os.makedirs(os.path.join(out, "golden"), exist_ok=True)
    with open(os.path.join(out, "conversations.jsonl"), "w", encoding="utf-8") as f:
        for c in convs:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    meta = {}
    env = make_env()
    for name in names:
        with open(os.path.join(tdir, name + ".jinja"), encoding="utf-8", newline="") as f:
            src = f.read()
        bos, eos = TOKENS[name]
        uses_tools = "tools" in src
        # a "tool_use" named template is only chosen when tools are given (transformers)
        always_tools = name.endswith("tool_use")
        meta[name] = {"bos_token": bos, "eos_token": eos, "uses_tools": uses_tools, "always_tools": always_tools}
        if always_tools:
            meta[name]["default_tools"] = TOOLS[:1]
        lines = []
        tpl = env.from_string(src)
        for i, conv in enumerate(convs):
            try:
                text = render(tpl, bos, eos, conv, uses_tools, always_tools)
                rec = {"h": fnv1a64(text.encode("utf-8")), "n": len(text.encode("utf-8"))}
                if i < 3:
                    rec["t"] = text
            except Exception as e:  # the error is the reference result too
                rec = {"e": type(e).__name__, "m": str(e)}
            lines.append(json.dumps(rec, ensure_ascii=False))
        with open(os.path.join(out, "golden", name + ".jsonl"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    snippets = []
    for src in SNIPPETS:
        try:
            rec = {"src": src, "out": env.from_string(src).render(**VARS)}
        except Exception as e:
            rec = {"src": src, "e": type(e).__name__, "m": str(e)}
        snippets.append(json.dumps(rec, ensure_ascii=False))
    with open(os.path.join(out, "snippets.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(snippets) + "\n")
    with open(os.path.join(out, "snippet_vars.json"), "w", encoding="utf-8") as f:
        json.dump(VARS, f, ensure_ascii=False)
    with open(os.path.join(out, "templates.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
