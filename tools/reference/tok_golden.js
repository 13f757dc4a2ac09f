// tools/reference/tok_golden.js OUTDIR: token ids from Hugging Face `tokenizers` (npm, pinned in
// tools/npm/package.json) for the parity corpus (tok_corpus.js) and the five fixture tokenizers
// (dbrx: built by dbrx_tokenizer.js).
// Writes OUTDIR/corpus.jsonl ({"text"}) and OUTDIR/golden-NAME.jsonl, line i for corpus line i:
//   "ids": encode(text, addSpecialTokens=false)
//   "sp":  [before, after]: encode(text, addSpecialTokens=true) is before + ids + after
//          (or "sp_full": the whole array when it is not of that shape)
//   "dec": decode(ids, skipSpecialTokens=false), only when it differs from the text.
//   "off": on every 10th line, the offsets of each token of encode(text, addSpecialTokens=true)
//          as the binding reports them: code point indexes (the library's byte offsets put
//          through its BytesToCharOffsetConverter).
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '../npm/node_modules/tokenizers'));
const { corpus } = require('./tok_corpus.js');

const NAMES = ['llama3-instruct-rev1', 'llama3-instruct-rev2', 'mistral-7b-v0.1', 'qwen3', 'dbrx'];

function eq(a, b, off) {
  for (let i = 0; i < b.length; i++) if (a[off + i] !== b[i]) return false;
  return true;
}

async function main() {
  const out = process.argv[2];
  const fixtures = process.argv[3] || path.join(__dirname, '../../tests/fixtures/tok');
  fs.mkdirSync(out, { recursive: true });
  const texts = corpus();
  fs.writeFileSync(path.join(out, 'corpus.jsonl'), texts.map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
  for (const name of NAMES) {
    const tok = Tokenizer.fromFile(path.join(fixtures, name, 'tokenizer.json'));
    const lines = [];
    for (const [li, text] of texts.entries()) {
      const plain = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
      const spEnc = await tok.encode(text, null, { addSpecialTokens: true });
      const sp = spEnc.getIds();
      const rec = { ids: plain };
      let found = false;
      for (let b = 0; b + plain.length <= sp.length && !found; b++) {
        if (eq(sp, plain, b)) {
          rec.sp = [sp.slice(0, b), sp.slice(b + plain.length)];
          found = true;
        }
      }
      if (!found) rec.sp_full = sp;
      const dec = await tok.decode(plain, false);
      if (dec !== text) rec.dec = dec;
      if (li % 10 === 0) rec.off = spEnc.getOffsets();
      lines.push(JSON.stringify(rec));
    }
    fs.writeFileSync(path.join(out, `golden-${name}.jsonl`), lines.join('\n') + '\n');
    process.stderr.write(`${name}: ${texts.length} strings\n`);
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
