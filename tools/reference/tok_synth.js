// tools/reference/tok_synth.js OUTDIR FIXTURES: small synthetic tokenizers that exercise the
// tokenizer.json components the four real ones do not use (Metaspace variants, Digits,
// Punctuation, Whitespace, WhitespaceSplit, Split behaviors and invert, Lowercase/NFKC/NFD/Strip/
// Replace normalizers, added tokens with lstrip/rstrip/single_word/normalized, unk without byte
// fallback, continuing_subword_prefix, end_of_word_suffix, ignore_merges, merges as pairs,
// Template post-processing with EOS, Strip/Replace/Fuse/ByteFallback decoders), with goldens from
// Hugging Face `tokenizers`. Vocabularies are cut from the fixture Mistral and Llama 3 ones: the
// first K merges and the tokens they need. Writes OUTDIR/synth/NAME.json and NAME.golden.jsonl
// (the golden format of tok_golden.js, with "off" on every line) over a sample of
// the corpus.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '../npm/node_modules/tokenizers'));
const { corpus } = require('./tok_corpus.js');

const K = 3000;

function splitMerge(m) {
  if (Array.isArray(m)) return m;
  const i = m.indexOf(' ');
  return [m.slice(0, i), m.slice(i + 1)];
}

// Vocabulary: kept single-char tokens + byte tokens + specials + the first K merges' tokens.
function cut(src, keepToken) {
  const model = src.model;
  const keep = new Set();
  for (const [tok] of Object.entries(model.vocab)) if (keepToken(tok)) keep.add(tok);
  const merges = [];
  for (const m of model.merges.slice(0, K)) {
    const [a, b] = splitMerge(m);
    keep.add(a);
    keep.add(b);
    keep.add(a + b);
    merges.push([a, b]);
  }
  const toks = [...keep].filter((t) => t in model.vocab).sort((x, y) => model.vocab[x] - model.vocab[y]);
  const vocab = {};
  toks.forEach((t, i) => { vocab[t] = i; });
  return { vocab, merges: merges.filter(([a, b]) => a in vocab && b in vocab && (a + b) in vocab) };
}

function addedList(vocab, specs) {
  let next = Object.keys(vocab).length;
  return specs.map((s) => {
    const id = s.content in vocab ? vocab[s.content] : next++;
    return Object.assign({ id, content: s.content, single_word: false, lstrip: false, rstrip: false,
      normalized: false, special: false }, s);
  });
}

function bpe(base, extra) {
  return Object.assign({ type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
    end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
    vocab: base.vocab, merges: base.merges.map(([a, b]) => `${a} ${b}`) }, extra);
}

function tokenizer(model, parts, added) {
  return Object.assign({ version: '1.0', truncation: null, padding: null, added_tokens: added || [],
    normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, model }, parts);
}

function variants(fixtures) {
  const mistral = JSON.parse(fs.readFileSync(path.join(fixtures, 'mistral-7b-v0.1/tokenizer.json'), 'utf8'));
  const llama = JSON.parse(fs.readFileSync(path.join(fixtures, 'llama3-instruct-rev2/tokenizer.json'), 'utf8'));
  const sp = cut(mistral, (t) => [...t].length === 1 || /^<0x[0-9A-F]{2}>$/.test(t) || t === '<unk>' || t === '<s>' || t === '</s>');
  const bl = cut(llama, (t) => [...t].length === 1);
  const spAdded = addedList(sp.vocab, [
    { content: '<unk>', special: true }, { content: '<s>', special: true }, { content: '</s>', special: true }]);
  const bos = { SpecialToken: { id: '<s>', type_id: 0 } }, eos = { SpecialToken: { id: '</s>', type_id: 0 } };
  const A = { Sequence: { id: 'A', type_id: 0 } }, B = { Sequence: { id: 'B', type_id: 1 } };
  const spSpecials = { '<s>': { id: '<s>', ids: [sp.vocab['<s>']], tokens: ['<s>'] }, '</s>': { id: '</s>', ids: [sp.vocab['</s>']], tokens: ['</s>'] } };
  const out = {};

  out.sp_metaspace = tokenizer(bpe(sp, { unk_token: '<unk>', byte_fallback: true, fuse_unk: true }), {
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    post_processor: { type: 'TemplateProcessing', single: [bos, A, eos], pair: [bos, A, eos, B, eos], special_tokens: spSpecials },
  }, spAdded);

  out.sp_metaspace_first = tokenizer(bpe(sp, { unk_token: '<unk>', fuse_unk: false }), {
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    decoder: { type: 'Sequence', decoders: [{ type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false }] },
  }, spAdded);

  const normAdded = addedList(sp.vocab, [
    { content: '<s>', special: true }, { content: '</s>', special: true },
    { content: '<mask>', special: true, lstrip: true, rstrip: true },
    { content: 'the', normalized: true, single_word: true },
    { content: 'Hello World', normalized: true },
    { content: '[SEP]', special: true, single_word: true, rstrip: true }]);
  out.sp_normalizers = tokenizer(bpe(sp, { unk_token: '<unk>', byte_fallback: true, fuse_unk: true }), {
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Lowercase' }, { type: 'Strip', strip_left: true, strip_right: true },
      { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Prepend', prepend: '▁' },
      { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' },
      { type: 'Strip', content: ' ', start: 2, stop: 0 }] },
    post_processor: { type: 'TemplateProcessing', single: [A, eos], pair: [A, eos, B, eos], special_tokens: spSpecials },
  }, normAdded);

  const blModel = (extra) => Object.assign(bpe(bl, {}), { merges: bl.merges }, extra); // merges as pairs
  const blAdded = addedList(bl.vocab, [{ content: '<|eot|>', special: true }, { content: '<|pad|>', special: true, lstrip: true }]);
  const blSpecials = { '<|eot|>': { id: '<|eot|>', ids: [blAdded[0].id], tokens: ['<|eot|>'] } };
  out.bl_digits_punct = tokenizer(blModel({}), {
    normalizer: { type: 'NFD' },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true },
      { type: 'Punctuation', behavior: 'Contiguous' }, { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true }] },
    post_processor: { type: 'Sequence', processors: [{ type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      { type: 'TemplateProcessing', single: [A, { SpecialToken: { id: '<|eot|>', type_id: 0 } }], pair: [A, B], special_tokens: blSpecials }] },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  }, blAdded);

  out.bl_whitespace = tokenizer(blModel({ ignore_merges: true }), {
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKD' }, { type: 'Strip', strip_left: false, strip_right: true }] },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Whitespace' }, { type: 'Digits', individual_digits: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }] },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
  }, blAdded);

  out.bl_split_behaviors = tokenizer(blModel({}), {
    normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { String: ' ' }, behavior: 'MergedWithPrevious', invert: false },
      { type: 'Split', pattern: { Regex: '\\d+' }, behavior: 'MergedWithNext', invert: false },
      { type: 'Split', pattern: { Regex: '[aeiouAEIOU]+' }, behavior: 'Contiguous', invert: true },
      { type: 'Split', pattern: { Regex: '\\n' }, behavior: 'Removed', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
  }, blAdded);

  out.bl_wssplit = tokenizer(blModel({}), {
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' },
      { type: 'Split', pattern: { Regex: '\\p{P}' }, behavior: 'Isolated', invert: true },
      { type: 'Punctuation', behavior: 'Removed' },
      { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: false }] },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: false },
  }, blAdded);

  // continuing_subword_prefix / end_of_word_suffix: derive the prefixed / suffixed vocabularies
  // from the Mistral cut (without ▁), so that merges stay consistent.
  const base = Object.keys(sp.vocab).filter((t) => !t.includes('▁') && !/^<.*>$/.test(t));
  const pv = { '<unk>': 0 };
  const put = (t) => { if (!(t in pv)) pv[t] = Object.keys(pv).length; };
  base.forEach((t) => { put(t); put('##' + t); });
  const pm = [];
  for (const [a, b] of sp.merges) {
    if (!(a in pv) || !(b in pv)) continue;
    put(a + b);
    put('##' + a + b);
    pm.push(`${a} ##${b}`, `##${a} ##${b}`);
  }
  out.wp_prefix = tokenizer({ type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: '##',
    end_of_word_suffix: null, fuse_unk: true, byte_fallback: false, vocab: pv, merges: pm }, {
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Whitespace' },
  }, addedList(pv, [{ content: '<unk>', special: true }]));

  const sv = { '<unk>': 0 };
  const sput = (t) => { if (!(t in sv)) sv[t] = Object.keys(sv).length; };
  base.forEach((t) => { sput(t); sput(t + '</w>'); });
  const sm = [];
  for (const [a, b] of sp.merges) {
    if (!(a in sv) || !(b in sv)) continue;
    sput(a + b);
    sput(a + b + '</w>');
    sm.push(`${a} ${b}`, `${a} ${b}</w>`);
  }
  out.eow_suffix = tokenizer({ type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null,
    end_of_word_suffix: '</w>', fuse_unk: false, byte_fallback: false, vocab: sv, merges: sm }, {
    pre_tokenizer: { type: 'WhitespaceSplit' },
  }, []);

  // Added tokens whose file ids `tokenizers` does not use: an id that collides with a vocabulary
  // token, one far past the vocabulary (a gap), two tokens with one id, ids in descending order,
  // an empty content (ignored), a content listed twice (one token, the last entry's flags) and a
  // vocabulary token listed with a wrong id (keeps its vocabulary id). `tokenizers` gives each new
  // content the next id after the vocabulary and the added ids so far, in the list's order.
  const nv = Object.keys(bl.vocab).length;
  const inVocab = Object.keys(bl.vocab).find((t) => bl.vocab[t] === 300);
  const flags = (o) => Object.assign({ single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }, o);
  out.added_ids = tokenizer(blModel({}), {
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  }, [
    flags({ id: 5, content: '<|start|>' }),
    flags({ id: nv + 100, content: '<|end|>' }),
    flags({ id: nv + 100, content: '<|sep|>' }),
    flags({ id: nv + 50, content: '<|tool|>', special: false }),
    flags({ id: nv + 1, content: '' }),
    flags({ id: 7, content: inVocab }),
    flags({ id: nv + 3, content: '<|start|>', lstrip: true }),
    flags({ id: 2, content: '<|pad|>' }),
  ]);

  // A model folder whose tokenizer_config.json adds to tokenizer.json's added tokens, as
  // transformers' PreTrainedTokenizerFast applies it on loading: every added_tokens_decoder entry
  // in the order of its id (re-added: a content already there takes the entry's flags, a new one
  // the next id, not the entry's), then the named special tokens that are no added token yet.
  // Written as { tokenizer, config }: OUTDIR/synth/NAME/tokenizer.json + tokenizer_config.json.
  const cfgAdded = [flags({ id: nv, content: '<|a|>' }), flags({ id: nv + 1, content: '<|b|>' })];
  out.added_config = {
    tokenizer: tokenizer(blModel({}), {
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    }, cfgAdded),
    config: {
      added_tokens_decoder: {
        [String(nv)]: { content: '<|a|>', lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
        [String(nv + 1)]: { content: '<|b|>', lstrip: false, normalized: false, rstrip: true, single_word: false, special: true },
        '5': { content: '<|new1|>', lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
        [String(nv + 40)]: { content: '<|new2|>', lstrip: true, normalized: false, rstrip: false, single_word: false, special: false },
        [String(nv + 10)]: { content: '<|new3|>', lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
      },
      bos_token: '<|a|>',
      eos_token: { content: '<|eos|>', lstrip: false, normalized: false, rstrip: false, single_word: false },
      pad_token: '<|pad|>',
      unk_token: inVocab,
      additional_special_tokens: ['<|new1|>', '<|extra|>'],
    },
  };
  return out;
}

// transformers' added tokens on top of tokenizer.json (PreTrainedTokenizerFast.__init__): the
// added_tokens_decoder entries sorted by id, then the special tokens of the config that are
// neither added tokens nor among those, as special tokens (normalized false, as AddedToken
// makes a special one). Ids here are placeholders: the library assigns them.
function transformersAdded(tj, cfg) {
  const flagsOf = (t) => ({ single_word: !!t.single_word, lstrip: !!t.lstrip, rstrip: !!t.rstrip,
    normalized: t.normalized === undefined ? !t.special : !!t.normalized, special: !!t.special });
  const toAdd = Object.entries(cfg.added_tokens_decoder || {}).sort((x, y) => Number(x[0]) - Number(y[0]))
    .map(([, t]) => Object.assign({ id: 0, content: t.content }, flagsOf(t)));
  const have = new Set(tj.added_tokens.map((t) => t.content).concat(toAdd.map((t) => t.content)));
  const named = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token']
    .map((k) => cfg[k]).concat(cfg.additional_special_tokens || []);
  for (const t of named) {
    if (t === undefined || t === null) continue;
    const tok = typeof t === 'string' ? { content: t, special: true } : Object.assign({}, t, { special: true });
    if (!tok.content || have.has(tok.content)) continue;
    have.add(tok.content);
    toAdd.push(Object.assign({ id: 0, content: tok.content }, flagsOf(tok)));
  }
  return toAdd;
}

// Texts with a variant's added tokens in them (besides the corpus sample).
const ADDED_TEXTS = {
  added_ids: (texts) => mix(texts, ['<|start|>', '<|end|>', '<|sep|>', '<|tool|>', '<|pad|>', ' <|start|>', '  <|tool|> ']),
  added_config: (texts) => mix(texts, ['<|a|>', '<|b|> ', '<|new1|>', '  <|new2|>', '<|new3|>', '<|eos|>', '<|pad|>',
    '<|extra|>', ' <|b|>  ']),
};

// The first 120 texts with three of `toks` in each: before, in the middle, after.
function mix(texts, toks) {
  return texts.slice(0, 120).map((t, i) => {
    const cps = [...t], cut = Math.floor(cps.length / 2); // cut between code points
    return toks[i % toks.length] + cps.slice(0, cut).join('') + toks[(i + 3) % toks.length] + cps.slice(cut).join('') +
      toks[(i + 5) % toks.length];
  });
}

function eq(a, b, off) {
  for (let i = 0; i < b.length; i++) if (a[off + i] !== b[i]) return false;
  return true;
}

async function main() {
  const out = path.join(process.argv[2], 'synth');
  const fixtures = process.argv[3] || path.join(__dirname, '../../tests/fixtures/tok');
  fs.mkdirSync(out, { recursive: true });
  const all = corpus();
  const texts = all.filter((_, i) => i < 140 || i % 9 === 0);
  for (const [name, v] of Object.entries(variants(fixtures))) {
    let tj = v, tok;
    if (v.config) { // a folder: the reference is the library with transformers' additions appended
      tj = v.tokenizer;
      fs.mkdirSync(path.join(out, name), { recursive: true });
      fs.writeFileSync(path.join(out, name, 'tokenizer.json'), JSON.stringify(tj));
      fs.writeFileSync(path.join(out, name, 'tokenizer_config.json'), JSON.stringify(v.config, null, 2) + '\n');
      const merged = Object.assign({}, tj, { added_tokens: tj.added_tokens.concat(transformersAdded(tj, v.config)) });
      const tmp = path.join(fs.mkdtempSync(path.join(require('os').tmpdir(), 'tok-synth-')), 'tokenizer.json');
      fs.writeFileSync(tmp, JSON.stringify(merged));
      tok = Tokenizer.fromFile(tmp);
      fs.rmSync(path.dirname(tmp), { recursive: true });
    } else {
      const file = path.join(out, `${name}.json`);
      fs.writeFileSync(file, JSON.stringify(tj));
      tok = Tokenizer.fromFile(file);
    }
    const lines = [];
    for (const text of (ADDED_TEXTS[name] ? ADDED_TEXTS[name](texts) : []).concat(texts)) {
      const plain = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
      const spEnc = await tok.encode(text, null, { addSpecialTokens: true });
      const sp = spEnc.getIds();
      const rec = { text, ids: plain };
      let found = false;
      for (let b = 0; b + plain.length <= sp.length && !found; b++)
        if (eq(sp, plain, b)) { rec.sp = [sp.slice(0, b), sp.slice(b + plain.length)]; found = true; }
      if (!found) rec.sp_full = sp;
      rec.dec = await tok.decode(plain, false);
      rec.dskip = await tok.decode(sp, true);
      rec.off = spEnc.getOffsets();
      lines.push(JSON.stringify(rec));
    }
    fs.writeFileSync(path.join(out, `${name}.golden.jsonl`), lines.join('\n') + '\n');
    process.stderr.write(`synth ${name}: ${texts.length} strings, vocab ${Object.keys(tj.model.vocab).length}\n`);
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
