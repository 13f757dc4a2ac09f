#!/usr/bin/python3
"""Write tests/fixtures/train/tinytok: a byte-level BPE tokenizer with one token per byte (GPT-2's
byte-to-unicode alphabet, no merges), BOS/EOS/end-of-turn specials and a small chat template, so
that training tests can use a vocabulary of 259 instead of tens of thousands. Run from the repo
root: /usr/bin/python3 tests/train/make_tinytok.py"""
import json, os

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))

m = bytes_to_unicode()
vocab = {m[b]: b for b in range(256)}
specials = ["<s>", "</s>", "<|eot|>"]
for i, s in enumerate(specials):
    vocab[s] = 256 + i
added = [{"id": 256 + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": False, "special": True} for i, s in enumerate(specials)]
tok = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [256], "tokens": ["<s>"]}}},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
              "vocab": vocab, "merges": []},
}
cfg = {
    "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
    "chat_template": "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<|eot|>{% endfor %}"
                     "{% if add_generation_prompt %}<assistant>{% endif %}",
    "clean_up_tokenization_spaces": False, "model_max_length": 256, "tokenizer_class": "PreTrainedTokenizerFast",
}
out = "tests/fixtures/train/tinytok"
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "tokenizer.json"), "w") as f:
    json.dump(tok, f, ensure_ascii=False, indent=1)
with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
    json.dump(cfg, f, ensure_ascii=False, indent=1)
