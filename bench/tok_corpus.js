// bench/tok_corpus.js OUT [MB]: a deterministic mixed corpus for the tokenizer benchmark, as
// JSONL {"text": ...} documents of 1-8 KB: English-like prose (Zipf-distributed words with
// punctuation, contractions and numbers), source code, multilingual text (CJK, Cyrillic, Arabic,
// Devanagari, Greek), markdown and chat-like turns. Default 24 MB.
'use strict';
const fs = require('fs');
const { rng } = require('../tools/reference/tok_corpus.js');

const EN = ('the of and to a in is that for it as was with be by on not he I this are or his from at which but have an they ' +
  'you were her all she there would their we him been has when who will more no if out so said what up its about into than ' +
  'them can only other new some could time these two may then do first any my now such like our over man me even most made ' +
  'after also did many before must through back years where much your way well down should because each just those people ' +
  'how too little state good very make world still own see men work long get here between both life being under never day ' +
  'same another know while last might us great old year off come since against go came right used take three tokenizer ' +
  'training gradient optimizer learning model dataset evaluation checkpoint inference transformer attention embedding ' +
  'architecture performance throughput latency memory parameter fine-tuning instruction conversation assistant').split(' ');
const CONTR = ["don't", "it's", "we're", "they've", "I'm", "you'll", "she'd", "can't", "won't", "isn't", "That's", "WE'LL"];
const CODE = [
  'def train(model, data, lr=3e-4):\n    opt = AdamW(model.parameters(), lr=lr)\n    for step, batch in enumerate(data):\n        loss = model(batch).loss\n        loss.backward()\n        opt.step(); opt.zero_grad()\n        if step % 100 == 0:\n            print(f"step {step}: loss {loss.item():.4f}")\n',
  'static int parse(const char *s, size_t n, int64_t *out) {\n    int64_t v = 0;\n    for (size_t i = 0; i < n; i++) {\n        if (s[i] < \'0\' || s[i] > \'9\') return -1;\n        v = v * 10 + (s[i] - \'0\');\n    }\n    *out = v;\n    return 0;\n}\n',
  'export async function fetchAll(urls) {\n  const results = await Promise.all(urls.map((u) => fetch(u).then((r) => r.json())));\n  return results.filter(Boolean).map(({ id, name }) => ({ id, name }));\n}\n',
  '{\n  "model": "llama-3-8b",\n  "learning_rate": 0.0001,\n  "epochs": 3,\n  "data": ["train.jsonl", "eval.jsonl"]\n}\n',
];
const ML = ['机器学习是人工智能的一个分支，它使计算机能够从数据中学习。', '東京は日本の首都であり、世界最大の都市圏の一つです。',
  'Машинное обучение — это класс методов искусственного интеллекта.', 'التعلم الآلي هو فرع من فروع الذكاء الاصطناعي.',
  'मशीन लर्निंग कृत्रिम बुद्धिमत्ता की एक शाखा है।', 'Η μηχανική μάθηση είναι κλάδος της τεχνητής νοημοσύνης.',
  '한국어 자연어 처리는 어렵지만 재미있습니다.'];

function main() {
  const out = process.argv[2];
  const mb = Number(process.argv[3] || 24);
  const r = rng(42);
  const zipf = () => EN[Math.min(EN.length - 1, Math.floor(Math.pow(r(), 2.2) * EN.length))];
  const fd = fs.openSync(out, 'w');
  let total = 0;
  while (total < mb * 1e6) {
    let doc = '';
    const target = 1000 + Math.floor(r() * 7000);
    const kind = r();
    while (doc.length < target) {
      if (kind < 0.6) {
        let s = '';
        const n = 5 + Math.floor(r() * 20);
        for (let i = 0; i < n; i++) {
          let w = r() < 0.05 ? CONTR[Math.floor(r() * CONTR.length)] : r() < 0.04 ? String(Math.floor(r() * 100000)) : zipf();
          if (i === 0) w = w[0].toUpperCase() + w.slice(1);
          s += (i ? ' ' : '') + w + (r() < 0.08 ? ',' : '');
        }
        doc += s + (r() < 0.8 ? '. ' : r() < 0.5 ? '? ' : '!\n\n');
      } else if (kind < 0.8) {
        doc += CODE[Math.floor(r() * CODE.length)] + '\n';
      } else if (kind < 0.92) {
        doc += ML[Math.floor(r() * ML.length)] + (r() < 0.3 ? '\n' : ' ');
      } else {
        doc += '## ' + zipf() + ' ' + zipf() + '\n\n- **' + zipf() + '**: ' + zipf() + ' ' + zipf() + ' (' + Math.floor(r() * 1000) + '%)\n' +
          '<|start_header_id|>user<|end_header_id|>\n\nWhat is ' + zipf() + '?<|eot_id|>\n';
      }
    }
    const line = JSON.stringify({ text: doc }) + '\n';
    fs.writeSync(fd, line);
    total += Buffer.byteLength(doc, 'utf8');
  }
  fs.closeSync(fd);
}
main();
