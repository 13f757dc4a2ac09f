// tools/reference/tok_extra.js TOKENIZER_JSON OUT_PREFIX: ids from Hugging Face `tokenizers`
// for the parity corpus with a tokenizer that is too big to commit (Gemma 3, DeepSeek V3 from
// npm @lenml packages): OUT_PREFIX.sp.jsonl and OUT_PREFIX.plain.jsonl, one {"ids": [...]} per
// corpus line, with and without special tokens, in the format `ftune tokenize --jsonl` prints.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '../npm/node_modules/tokenizers'));
const { corpus } = require('./tok_corpus.js');

(async () => {
  const tok = Tokenizer.fromFile(process.argv[2]);
  const sp = [], plain = [];
  for (const text of corpus()) {
    sp.push(JSON.stringify({ ids: (await tok.encode(text, null, { addSpecialTokens: true })).getIds() }));
    plain.push(JSON.stringify({ ids: (await tok.encode(text, null, { addSpecialTokens: false })).getIds() }));
  }
  fs.writeFileSync(process.argv[3] + '.sp.jsonl', sp.join('\n') + '\n');
  fs.writeFileSync(process.argv[3] + '.plain.jsonl', plain.join('\n') + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
