#!/usr/bin/python3
"""tools/reference/pack_golden.py DIR: the packed rows of the golden samples, computed
independently of ftune from DIR/golden_samples.json (tools/reference/data_golden.js).

Rules (ftune/data.h, SPEC §4), written here the naive way:
  - CPT documents are cut into pieces of T tokens (a last piece of 1 token is dropped);
  - items are placed longest first (ties by index) into the open row with the least free space
    that fits them; among rows with equal free space, the one changed most recently; else a new row;
  - rows come out in creation order (no shuffle), items in a row in placement order;
  - positions restart at 0 per item, sample ids count items in a row from 0; padding is
    (pad id or 0, target -100, position 0, sample id -1);
  - target[t] = next token of the same item when that token is trainable, else -100.
Writes DIR/golden_pack.json: {"ift"|"cpt": {"T", "rows": [{"input_ids", "targets",
"position_ids", "sample_ids"}]}}."""
import json
import os
import sys


def pad_id(fixtures, tok_dir):
    cfg = json.load(open(os.path.join(fixtures, tok_dir, 'tokenizer_config.json'), encoding='utf-8'))
    pad = cfg.get('pad_token')
    if isinstance(pad, dict):
        pad = pad.get('content')
    if not pad:
        return 0
    tj = json.load(open(os.path.join(fixtures, tok_dir, 'tokenizer.json'), encoding='utf-8'))
    for t in tj.get('added_tokens', []):
        if t['content'] == pad:
            return t['id']
    return tj['model']['vocab'].get(pad, 0)


def best_fit(lengths, T):
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows, clock = [], 0
    for i in order:
        L = lengths[i]
        fits = [r for r in rows if r['free'] >= L]
        if fits:
            row = min(fits, key=lambda r: (r['free'], -r['touched']))
        else:
            row = {'free': T, 'items': [], 'touched': -1}
            rows.append(row)
        row['free'] -= L
        row['items'].append(i)
        row['touched'] = clock
        clock += 1
    return [r['items'] for r in rows]


def main():
    d = sys.argv[1]
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tests', 'fixtures')
    g = json.load(open(os.path.join(d, 'golden_samples.json'), encoding='utf-8'))
    out = {}
    for task in ('ift', 'cpt', 'chat'):
        T = g[task]['T']
        pad = pad_id(fixtures, g[task]['tokenizer'])
        items = []  # (ids, trainable) per piece
        for s in g[task]['samples']:
            ids, tr = s['ids'], [c == '1' for c in s['trainable']]
            if task == 'cpt':
                for a in range(0, len(ids), T):
                    if len(ids) - a >= 2:
                        items.append((ids[a:a + T], tr[a:a + T]))
            elif any(tr[1:]):
                items.append((ids, tr))
        rows = []
        for members in best_fit([len(x[0]) for x in items], T):
            r = {'input_ids': [], 'targets': [], 'position_ids': [], 'sample_ids': []}
            for k, i in enumerate(members):
                ids, tr = items[i]
                for t in range(len(ids)):
                    r['input_ids'].append(ids[t])
                    r['targets'].append(ids[t + 1] if t + 1 < len(ids) and tr[t + 1] else -100)
                    r['position_ids'].append(t)
                    r['sample_ids'].append(k)
            while len(r['input_ids']) < T:
                r['input_ids'].append(pad)
                r['targets'].append(-100)
                r['position_ids'].append(0)
                r['sample_ids'].append(-1)
            rows.append(r)
        out[task] = {'T': T, 'rows': rows}
    with open(os.path.join(d, 'golden_pack.json'), 'w', encoding='utf-8') as f:
        json.dump(out, f)
        f.write('\n')


if __name__ == '__main__':
    main()
