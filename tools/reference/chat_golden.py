#!/usr/bin/python3
"""tools/reference/chat_golden.py OUT.json [TOK_DIR T]: render tests/fixtures/data/chat.jsonl with
the Llama 3 Instruct chat template (or that of tests/fixtures/TOK_DIR/tokenizer_config.json, with
context length T) through Jinja2 set up as transformers does, and find the
trainable character spans by the prefix rule of ftune/tpl.h, independently of ftune:
for assistant message k, P = render(m[:k], gen=True), Q = render(m[:k+1]), N = render(m[:k+2])
(or the full render); the span is [len(P), len(Q)) when N extends Q, else [len(P), lcp(Q, N)).
With last_assistant only the final assistant message counts. Output: {"T", "template_dir",
"template", "bos_token", "eos_token", "records": [{"text", "spans": [[a, b]...], "spans_last": [...]}]} (character offsets; the
fixture is ASCII, so they are also byte offsets). tools/reference/data_golden.js tokenizes it."""
import json
import os
import sys

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
tok_dir = 'tok/llama3-instruct-rev2'


def env():
    e = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    e.filters['tojson'] = lambda x, **kw: json.dumps(x, ensure_ascii=False)

    def raise_exception(msg):
        raise RuntimeError(msg)
    e.globals['raise_exception'] = raise_exception
    return e


def main():
    global tok_dir
    T = 48
    if len(sys.argv) > 3:
        tok_dir, T = sys.argv[2], int(sys.argv[3])
    cfg = json.load(open(os.path.join(root, 'tests/fixtures', tok_dir, 'tokenizer_config.json'), encoding='utf-8'))
    tpl = env().from_string(cfg['chat_template'])
    sp = {k: (v if isinstance(v, str) else v.get('content')) for k, v in cfg.items()
          if k.endswith('_token') and v}

    def render(msgs, gen):
        return tpl.render(messages=msgs, add_generation_prompt=gen, **sp)

    out = []
    for line in open(os.path.join(root, 'tests/fixtures/data/chat.jsonl'), encoding='utf-8'):
        msgs = json.loads(line)['messages']
        full = render(msgs, False)
        spans = []
        for k, m in enumerate(msgs):
            if m['role'] != 'assistant':
                continue
            P, Q = render(msgs[:k], True), render(msgs[:k + 1], False)
            N = render(msgs[:k + 2], False) if k + 2 <= len(msgs) else full
            assert Q.startswith(P) and full.startswith(Q)
            if N.startswith(Q):
                end = len(Q)
            else:
                end = 0
                while end < min(len(Q), len(N)) and Q[end] == N[end]:
                    end += 1
            spans.append([len(P), end])
        out.append({'text': full, 'spans': spans, 'spans_last': spans[-1:]})
    json.dump({'T': T, 'template_dir': tok_dir, 'template': cfg['chat_template'], 'bos_token': sp.get('bos_token'),
               'eos_token': sp.get('eos_token'), 'records': out}, open(sys.argv[1], 'w', encoding='utf-8'))


if __name__ == '__main__':
    main()
