// tools/reference/tok_extra.js TOKENIZER_JSON OUT_PREFIX: ids from Hugging Face `tokenizers`
// for the parity corpus with a tokenizer that is too big to commit (Gemma 3, DeepSeek V3 from
// npm @lenml packages): OUT_PREFIX.sp.jsonl and OUT_PREFIX.plain.jsonl, one {"ids": [...]} per
// corpus line, with and without special tokens, in the format `ftune tokenize --jsonl` prints,
// and OUT_PREFIX.newer: the corpus lines (1-based) holding a code point not assigned in Unicode
// 14.0 (Debian unicode-data's DerivedAge.txt), reported apart: Debian's Oniguruma has Unicode
// 14.0 tables where the library's bundled one has 16.0, which ftune supplies (src/tok/unicode.c).
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '../npm/node_modules/tokenizers'));
const { corpus } = require('./tok_corpus.js');

function assignedBy14() {
  const ok = new Uint8Array(0x110000);
  for (const line of fs.readFileSync('/usr/share/unicode/DerivedAge.txt', 'utf8').split('\n')) {
    const m = line.match(/^([0-9A-F]+)(?:\.\.([0-9A-F]+))?\s*;\s*([0-9.]+)/);
    if (!m || Number(m[3].split('.')[0]) > 14) continue;
    for (let c = parseInt(m[1], 16); c <= parseInt(m[2] || m[1], 16); c++) ok[c] = 1;
  }
  return ok;
}

(async () => {
  const tok = Tokenizer.fromFile(process.argv[2]);
  const ok = assignedBy14();
  const sp = [], plain = [], newer = [];
  for (const [i, text] of corpus().entries()) {
    for (const ch of text) if (!ok[ch.codePointAt(0)]) { newer.push(i + 1); break; }
    sp.push(JSON.stringify({ ids: (await tok.encode(text, null, { addSpecialTokens: true })).getIds() }));
    plain.push(JSON.stringify({ ids: (await tok.encode(text, null, { addSpecialTokens: false })).getIds() }));
  }
  fs.writeFileSync(process.argv[3] + '.sp.jsonl', sp.join('\n') + '\n');
  fs.writeFileSync(process.argv[3] + '.plain.jsonl', plain.join('\n') + '\n');
  fs.writeFileSync(process.argv[3] + '.newer', newer.join('\n') + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
