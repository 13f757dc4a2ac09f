// tools/reference/chat_tokens.js RENDER.json OUT.json: the chat samples of a chat_golden.py render
// (Jinja2 text and trainable character spans) tokenized with Hugging Face `tokenizers` (npm, pinned
// in tools/npm): a token is trainable when it overlaps a span; the text is tokenized without
// special tokens (the template wrote them). Writes {"tokenizer", "file", "T", "samples": [{"ids",
// "trainable", "trainable_last", "n_full", "text"}]} (ids cut to T, as ftune's samples are).
// data_golden.js uses chatSamples for its Llama 3 chat samples.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '../npm/node_modules/tokenizers'));

// The samples of render `cr` (with each one's text when withText).
async function chatSamples(cr, withText) {
  const fx = path.join(__dirname, '../../tests/fixtures');
  const tok = Tokenizer.fromFile(path.join(fx, cr.template_dir, 'tokenizer.json'));
  const T = cr.T;
  const samples = [];
  for (const rec of cr.records) {
    const e = await tok.encode(rec.text, null, { addSpecialTokens: false });
    const ids = e.getIds(), offs = e.getOffsets();
    const mark = (spans) => offs.map(([a, b]) => (spans.some(([s, t]) => a < t && b > s) ? 1 : 0));
    const s = { ids: ids.slice(0, T), trainable: mark(rec.spans).slice(0, T).join(''),
                trainable_last: mark(rec.spans_last).slice(0, T).join(''), n_full: ids.length };
    if (withText) s.text = rec.text;
    samples.push(s);
  }
  return { tokenizer: cr.template_dir, file: 'data/chat.jsonl', T, samples };
}

module.exports = { chatSamples };

if (require.main === module) {
  (async () => {
    const cr = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
    fs.writeFileSync(process.argv[3], JSON.stringify(await chatSamples(cr, true)) + '\n');
  })().catch((e) => { console.error(e); process.exit(1); });
}
