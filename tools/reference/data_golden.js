// tools/reference/data_golden.js OUTDIR: the training samples of tests/fixtures/data, built with
// Hugging Face `tokenizers` (npm, pinned in tools/npm/package.json) by the rules of SPEC §3,
// independently of ftune:
//   INSTRUCTION_FINETUNE: [BOS if encode(addSpecialTokens) adds one] + prompt + response + EOS
//     (prompt and response encoded separately without special tokens), loss on response + EOS,
//     cut at the end to T tokens.
//   CONTINUED_PRETRAIN: [BOS] + text + EOS per .txt file (files in path order), all trainable.
//   CHAT_COMPLETION: see chat_golden.py (run first, it writes OUTDIR/chat_render.json).
// Writes OUTDIR/golden_samples.json.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '../npm/node_modules/tokenizers'));
const { chatSamples } = require('./chat_tokens.js');

const root = path.join(__dirname, '../..');
const fx = path.join(root, 'tests/fixtures');

function eosId(tok, dir) {
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  const e = typeof cfg.eos_token === 'string' ? cfg.eos_token : cfg.eos_token.content;
  return tok.tokenToId(e);
}

async function specials(tok) {
  // What the post-processor adds around a text: BOS is what comes before the text.
  const plain = (await tok.encode('x', null, { addSpecialTokens: false })).getIds();
  const sp = (await tok.encode('x', null, { addSpecialTokens: true })).getIds();
  const at = sp.indexOf(plain[0]);
  return at > 0 ? sp.slice(0, at) : [];
}

async function enc(tok, s) {
  return (await tok.encode(s, null, { addSpecialTokens: false })).getIds();
}

function listTxt(dir, rel = '') {
  let out = [];
  for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
    if (name.startsWith('.')) continue;
    const r = rel ? rel + '/' + name : name;
    const st = fs.statSync(path.join(dir, r));
    if (st.isDirectory()) out = out.concat(listTxt(dir, r));
    else if (name.endsWith('.txt')) out.push(r);
  }
  return out.sort(); // by path bytes (ASCII names here)
}

async function main() {
  const outDir = process.argv[2];
  fs.mkdirSync(outDir, { recursive: true });
  const result = {};

  { // IFT with Mistral (adds BOS <s>, EOS </s>)
    const dir = path.join(fx, 'tok/mistral-7b-v0.1');
    const tok = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
    const bos = await specials(tok), eos = eosId(tok, dir), T = 32;
    const samples = [];
    const lines = fs.readFileSync(path.join(fx, 'data/ift.jsonl'), 'utf8').split('\n').filter((l) => l.trim());
    for (const line of lines) {
      const r = JSON.parse(line);
      const p = await enc(tok, r.prompt), q = await enc(tok, r.response !== undefined ? r.response : r.completion);
      let ids = bos.concat(p, q, [eos]);
      let tr = bos.map(() => 0).concat(p.map(() => 0), q.map(() => 1), [1]);
      const n_full = ids.length;
      ids = ids.slice(0, T);
      tr = tr.slice(0, T);
      samples.push({ ids, trainable: tr.join(''), n_full });
    }
    result.ift = { tokenizer: 'tok/mistral-7b-v0.1', file: 'data/ift.jsonl', T, samples };
  }
  { // CPT with Llama 3 (original revision: no BOS from the post-processor; EOS <|end_of_text|>)
    const dir = path.join(fx, 'tok/llama3-instruct-rev1');
    const tok = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
    const bos = await specials(tok), eos = eosId(tok, dir), T = 24;
    const samples = [];
    for (const rel of listTxt(path.join(fx, 'data/cpt'))) {
      const text = fs.readFileSync(path.join(fx, 'data/cpt', rel), 'utf8');
      const ids = bos.concat(await enc(tok, text), [eos]);
      samples.push({ file: rel, ids, trainable: ids.map(() => 1).join(''), n_full: ids.length });
    }
    result.cpt = { tokenizer: 'tok/llama3-instruct-rev1', file: 'data/cpt', T, samples };
  }
  { // CHAT_COMPLETION with Llama 3 Instruct: OUTDIR/chat_render.json (tools/reference/chat_golden.py,
    // Jinja2) has the rendered text and trainable character spans; a token is trainable when it
    // overlaps a span. The text is tokenized without special tokens (the template wrote them).
    const cr = JSON.parse(fs.readFileSync(path.join(outDir, 'chat_render.json'), 'utf8'));
    result.chat = await chatSamples(cr, false);
  }
  fs.writeFileSync(path.join(outDir, 'golden_samples.json'), JSON.stringify(result) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
