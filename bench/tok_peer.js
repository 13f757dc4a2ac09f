// bench/tok_peer.js TOKENIZER_JSON CORPUS_JSONL: Hugging Face `tokenizers` (npm, the Rust
// library) encoding the corpus single-threaded (the caller sets RAYON_NUM_THREADS=1), timed like
// ftune's --stats: texts are loaded first, only encoding is timed, in wall-clock and CPU time.
// encodeBatch in chunks of 256 texts: fewer JS round trips than one awaited encode() per text,
// which was the slower of the two when measured, so this favours the peer.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '../tools/npm/node_modules/tokenizers'));

async function main() {
  const tok = Tokenizer.fromFile(process.argv[2]);
  const texts = fs.readFileSync(process.argv[3], 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l).text);
  const bytes = texts.reduce((a, t) => a + Buffer.byteLength(t, 'utf8'), 0);
  let tokens = 0;
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < texts.length; i += 256) {
    const encs = await tok.encodeBatch(texts.slice(i, i + 256), { addSpecialTokens: true });
    for (const e of encs) tokens += e.getIds().length;
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cu = process.cpuUsage(c0);
  const cpu = (cu.user + cu.system) / 1e6;
  console.log(JSON.stringify({ texts: texts.length, bytes, tokens, seconds: wall, cpu_seconds: cpu,
    mb_per_s: bytes / 1e6 / wall, mb_per_cpu_s: bytes / 1e6 / cpu }));
}
main().catch((e) => { console.error(e); process.exit(1); });
