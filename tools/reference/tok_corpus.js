// tools/reference/tok_corpus.js: the tokenizer parity corpus, generated deterministically (a
// seeded PRNG, no input) so that anyone can regenerate it. Categories follow issue #3 item 2:
// many scripts, code, emoji with ZWJ and skin tones, whitespace runs and \t \r \n mixes, numbers
// of every length, contractions in every case, special-token text inside ordinary text, NFD text,
// very long words, byte-ish noise. Exports corpus() -> array of strings; run directly it prints
// them as JSONL {"text": ...}.
'use strict';

function rng(seed) {
  // mulberry32
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = {
  latin: 'the quick brown fox jumps over lazy dog tokenizer model training data weights gradient loss learning rate hello world café naïve résumé façade Zürich São Paulo Ærøskøbing straße Łódź İstanbul ıslak'.split(' '),
  cjk: '我们 今天 学习 机器 语言 模型 训练 数据 东京 日本語 の テキスト を 分割 する カタカナ ひらがな 한국어 토크나이저 학습 데이터 서울 漢字 繁體中文 測試'.split(' '),
  arabic: 'مرحبا بالعالم هذا نص عربي للتجربة النموذج اللغوي البيانات التدريب'.split(' '),
  hebrew: 'שלום עולם זהו טקסט בעברית לבדיקה מודל שפה נתונים אימון'.split(' '),
  devanagari: 'नमस्ते दुनिया यह हिंदी पाठ है भाषा मॉडल प्रशिक्षण डेटा क्षत्रिय'.split(' '),
  thai: 'สวัสดีชาวโลก นี่คือ ข้อความ ภาษาไทย สำหรับ ทดสอบ โมเดล ภาษา'.split(' '),
  cyrillic: 'Привет мир это русский текст для проверки модели обучения данных Ёлка ЁЖИК съешь'.split(' '),
  greek: 'Γειά σου κόσμε αυτό είναι ελληνικό κείμενο για δοκιμή μοντέλου ΆΈΉΊΌΎΏ ΐΰ'.split(' '),
  other: 'Ողջույն გამარჯობა ሰላም வணக்கம் ສະບາຍດີ ជំរាបសួរ မင်္ဂလာပါ ᐊᐃᓐᖓ ꦲꦤꦕꦫꦏ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝒜𝒷𝒸'.split(' '),
};
const EMOJI = ['😀', '👍🏽', '👩‍💻', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇫🇷', '🇯🇵', '1️⃣', '❤️', '🧑🏿‍🤝‍🧑🏻', '👋🏻', '👋🏼', '👋🏾', '👋🏿',
  '🤷‍♀️', '🫠', '🦄', '🐍', '🔥🔥🔥', '✨', '🙇🏻‍♂️', '👁️‍🗨️', '🏴󠁧󠁢󠁳󠁣󠁴󠁿', '©️', '™', '☺︎'];
const SPECIALS = ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|start_header_id|>', '<|end_header_id|>',
  '<|reserved_special_token_5|>', '<s>', '</s>', '<unk>', '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<think>',
  '</think>', '<tool_call>', '</tool_call>', '<|fim_prefix|>', '<|eot_id', '<|im_', '<s', '</', '<|>', '<<s>>'];
const CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];
const CODE = [
  'int main(void) {\n    printf("hello, %s\\n", argv[1]);\n    return 0;\n}\n',
  'def f(x: int) -> int:\n\tif x <= 1:\n\t\treturn 1\n\treturn x * f(x - 1)  # recursion\n',
  'const xs = [1, 2, 3].map((x) => x ** 2).filter(Boolean);\r\nconsole.log(`${xs.length} items`);\r\n',
  '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}',
  'for i in $(seq 1 10); do echo "$i" >> /tmp/out.txt; done && cat /tmp/out.txt | wc -l',
  'SELECT id, name FROM users WHERE age >= 18 AND name LIKE \'%son\' ORDER BY id DESC;',
  '#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))\n/* comment */ // another\n',
  '    \t  x = y if y is not None else {}  \n\n\n        return [i for i in range(100) if i % 3 == 0]',
  '<div class="a"><p>Text &amp; more &lt;tags&gt;</p></div>\n<script>alert(1)</script>',
  'fn main() { let v: Vec<u32> = (0..10).collect(); println!("{:?}", v); }',
  'x=1;y=2;z=x+y;print(z)//done\n\n\t\t\t\n    \n',
  '$ git commit -m "fix: off-by-one in tokenizer\'s merge loop" && git push origin HEAD:refs/for/main',
];

function pick(r, a) { return a[Math.floor(r() * a.length)]; }
function int(r, lo, hi) { return lo + Math.floor(r() * (hi - lo + 1)); }

function sentence(r, script, n) {
  const ws = [];
  for (let i = 0; i < n; i++) ws.push(pick(r, WORDS[script]));
  const sep = script === 'cjk' || script === 'thai' ? pick(r, ['', ' ', '']) : ' ';
  return ws.join(sep) + pick(r, ['.', '!', '?', '。', '', ',', '…', '؟']);
}

function whitespace(r, n) {
  const ch = [' ', ' ', ' ', '\t', '\n', '\r', '\r\n', '\u00a0', '\u3000', '\u2009', '\u000b', '\u000c', '\u2028', '\u0085'];
  let s = '';
  for (let i = 0; i < n; i++) s += pick(r, ch);
  return s;
}

function number(r, len) {
  let s = String(int(r, 1, 9));
  for (let i = 1; i < len; i++) s += String(int(r, 0, 9));
  return s;
}

function noise(r, n) {
  const ranges = [[0x00, 0x1f], [0x20, 0x7e], [0x7f, 0xa0], [0xa1, 0x2ff], [0x300, 0x36f], [0x370, 0x10ff],
    [0x1100, 0x11ff], [0x2000, 0x206f], [0x2190, 0x2bff], [0x3000, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3],
    [0xe000, 0xf8ff], [0xfb00, 0xfdff], [0xfe00, 0xfe0f], [0xff00, 0xffef], [0xfff9, 0xfffd], [0x10000, 0x1014f],
    [0x1d400, 0x1d7ff], [0x1f300, 0x1faff], [0x20000, 0x2a6df], [0xe0000, 0xe007f]];
  let s = '';
  for (let i = 0; i < n; i++) {
    const [lo, hi] = pick(r, ranges);
    s += String.fromCodePoint(int(r, lo, hi));
  }
  return s;
}

function corpus() {
  const r = rng(20261122);
  const out = [];
  const add = (s) => out.push(s);
  // fixed edge cases
  ['', ' ', '  ', '\n', '\t', '\r\n', 'a', 'A', '0', '00', '000', '0000', "'", "'s", "I'M", 'é', 'e\u0301',
    '\u0301', '\u200d', '\ufeff', '\ufffd', '<s>', '</s>', '<s> ', ' <s>', '<|eot_id|><|eot_id|>', '▁', '▁▁x', '<0x41>',
    'hello\u0000world', '\u0000', '\u007f', 'Ġ', 'ĠĠ', 'Ċ'].forEach(add);
  for (let c = 0x20; c < 0x7f; c++) add(String.fromCharCode(c) + String.fromCharCode(c) + ' ' + String.fromCharCode(c));
  // scripts
  for (const script of Object.keys(WORDS)) {
    for (let i = 0; i < 130; i++) add(sentence(r, script, int(r, 1, 14)));
  }
  for (let i = 0; i < 150; i++) {
    const parts = [];
    for (let k = int(r, 2, 6); k > 0; k--) parts.push(sentence(r, pick(r, Object.keys(WORDS)), int(r, 1, 6)));
    add(parts.join(pick(r, [' ', '\n', '  ', '\n\n', '\t'])));
  }
  // code
  for (let i = 0; i < 200; i++) {
    let s = pick(r, CODE);
    if (r() < 0.5) s = s + pick(r, CODE);
    if (r() < 0.3) s = s.replace(/ {4}/g, '\t');
    add(s);
  }
  // emoji
  for (let i = 0; i < 200; i++) {
    let s = '';
    for (let k = int(r, 1, 8); k > 0; k--)
      s += pick(r, [pick(r, EMOJI), ' ', pick(r, WORDS.latin), pick(r, EMOJI) + pick(r, EMOJI), '\u200d', '\ufe0f']);
    add(s);
  }
  // whitespace runs and mixes
  for (let i = 0; i < 250; i++) {
    let s = '';
    for (let k = int(r, 1, 6); k > 0; k--) s += whitespace(r, int(r, 0, 12)) + pick(r, ['word', 'x', '1', '!', 'Hello', '中文', '']);
    add(s);
  }
  // numbers of every length
  for (let len = 1; len <= 60; len++) {
    add(number(r, len));
    add('x' + number(r, len) + ' ' + number(r, len) + '.' + number(r, int(r, 1, 6)));
    add('-' + number(r, len) + ',' + number(r, 3) + 'e' + int(r, -30, 30));
  }
  for (let i = 0; i < 80; i++)
    add(pick(r, ['Price: $', 'v', '#', '', '(']) + number(r, int(r, 1, 12)) + pick(r, ['%', 'k', ')', ' USD', '']) +
      ' ' + pick(r, ['٠١٢٣٤٥٦٧٨٩', '०१२३४५', '１２３４５', '½ ¾ ²³', '12:30:45', '2026-11-22', '3.14159', '1,000,000']));
  // contractions in every case
  for (let i = 0; i < 200; i++) {
    const c = pick(r, CONTRACTIONS);
    const cased = c.split('').map((ch) => (r() < 0.5 ? ch.toUpperCase() : ch)).join('');
    const apos = pick(r, ["'", "'", '’', '`']);
    add(pick(r, WORDS.latin) + cased.replace("'", apos) + ' ' + pick(r, ['it', "IT'S", 'we', 'they']) + cased + pick(r, ['', ' ', '.', '\n']));
  }
  // special-token text inside ordinary text
  for (let i = 0; i < 250; i++) {
    let s = '';
    for (let k = int(r, 1, 6); k > 0; k--)
      s += pick(r, [pick(r, SPECIALS), sentence(r, pick(r, ['latin', 'cjk', 'cyrillic']), int(r, 1, 4)), ' ', '\n', pick(r, SPECIALS) + pick(r, SPECIALS)]);
    add(s);
  }
  // NFD text
  for (let i = 0; i < 150; i++) {
    const s = sentence(r, pick(r, ['latin', 'greek', 'cyrillic', 'cjk', 'other']), int(r, 2, 8));
    add(s.normalize(pick(r, ['NFD', 'NFKD', 'NFD'])));
  }
  add('Ca\u0301fe\u0301 \u1100\u1161\u11a8 \u1112\u1161\u11ab\u1100\u1173\u11af ti\u1ebfng Vi\u1ec7t e\u0323\u0302 a\u0308\u0304');
  // very long words
  for (let i = 0; i < 40; i++) {
    const n = int(r, 50, 2500);
    const unit = pick(r, ['a', 'ab', 'xyz', 'Lorem', '0', '-', '_', '=', 'é', '中', '😀', 'ab1', '  ']);
    let s = '';
    while (s.length < n) s += unit;
    add(s);
  }
  for (let i = 0; i < 30; i++) {
    let s = '';
    const alpha = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    for (let k = int(r, 100, 1500); k > 0; k--) s += alpha[int(r, 0, 63)];
    add(pick(r, ['', 'data:image/png;base64,', 'https://example.com/', 'sha256:']) + s);
  }
  // byte-ish noise
  for (let i = 0; i < 300; i++) add(noise(r, int(r, 1, 40)));
  // chat-like mixes
  for (let i = 0; i < 200; i++) {
    const s = pick(r, ['<|start_header_id|>user<|end_header_id|>\n\n', '<|im_start|>user\n', '[INST] ', '']) +
      sentence(r, pick(r, Object.keys(WORDS)), int(r, 3, 12)) + pick(r, ['<|eot_id|>', '<|im_end|>\n', ' [/INST]', '</s>', '']) +
      (r() < 0.5 ? pick(r, EMOJI) : '') + whitespace(r, int(r, 0, 3));
    add(s);
  }
  // normalization around code points newer than Unicode 9.0 (which `tokenizers`' tables lack)
  const newer = ['\u1DF6', '\u1DF7', '\u1DF9', '\u0898', '\u08CA', '\u1ABF', '\u0C3C', '\u{11930}', '\u{11935}',
    '\u{11938}', '\u{1E4EC}', '\u{10EFD}', '\u1715'];
  const older = ['\u0301', '\u0316', '\u0308', '\u0323', '\u0302', '\u093C', 'a', 'e', 'o', '\u0915', '\u0C15'];
  for (let i = 0; i < 60; i++) {
    let s = '';
    for (let k = int(r, 2, 7); k > 0; k--) s += r() < 0.5 ? pick(r, newer) : pick(r, older);
    add(pick(r, ['', 'x', 'A', ' ']) + s + pick(r, ['', ' b', '.']));
  }
  // characters of Unicode 15.0-17.0 (letters, marks, numbers, symbols): the library matches
  // with Unicode 16.0 tables, so 17.0 additions must stay unassigned
  const recent = ['\u{11F04}', '\u{11F50}', '\u{31350}', '\u{2EBF0}', '\u{13460}', '\u{10D4A}', '\u{10D40}',
    '\u{16D40}', '\u{11BC0}', '\u{1D2C0}', '\u1C89', '\u{1E4D0}', '\u{1E4F0}', '\u{1E030}', '\u{1CC00}', '\u{10EFD}',
    '\u{323B0}', '\u{10940}', '\u{1E6C0}', '\u31EF', '\u2FFC', '\u{1FAE9}', '\u{1FAEA}', '\u{10D50}', '\uA7CB', '\u{16E40}'];
  for (let i = 0; i < 60; i++) {
    let s = pick(r, ['', ' ', 'x', "'", '1']);
    for (let k = int(r, 1, 6); k > 0; k--) s += pick(r, recent) + pick(r, ['', '', ' ', 'a', '9', '.', "'s"]);
    add(s);
  }
  // punctuation of every Unicode age (the Punctuation pre-tokenizer's tables are Unicode 8.0)
  const puncts = ['\u2E45', '\u{1E95E}', '\uA8FC', '\u2E3C', '\u2E42', '\u{11A3F}', '\u{1145D}', '\u2E5D', '\u{11B00}',
    '\u0F14', '\u00A1', '\u00BF', '\u3001', '\u061F', '\u2E4F', '\u{1173C}', '\u{16FE2}', '\uFF01', '\u2010'];
  for (let i = 0; i < 40; i++) {
    let s = '';
    for (let k = int(r, 2, 6); k > 0; k--) s += pick(r, ['a', 'bc', ' ', '1', '']) + pick(r, puncts);
    add(s);
  }
  return out;
}

module.exports = { corpus, rng };

if (require.main === module) {
  for (const s of corpus()) process.stdout.write(JSON.stringify({ text: s }) + '\n');
}
