/* ftune/tok.h: Hugging Face tokenizer.json tokenizers (BPE family: Llama 2/3.x, CodeLlama,
 * Mistral/Mixtral, Qwen2/3, DeepSeek, Gemma), token-exact with the `tokenizers` library.
 * Implemented in src/tok/.
 *
 * Encoding follows `tokenizers` exactly: added tokens are split out first, then normalizer,
 * pre-tokenizer, model (BPE) and, when add_special_tokens is true, the post-processor. Only
 * tokenizer.json decides the ids: tokenizer_config.json is read for information (its bos/eos
 * strings and add_bos_token/add_eos_token flags) but does not change what encode returns.
 * The "truncation" and "padding" settings of tokenizer.json are ignored (ftune's data pipeline
 * packs and truncates itself). Unicode data is what `tokenizers` 0.23.2 was built with: 16.0 for
 * character classes and lowercasing, 9.0 for NFC/NFD/NFKC/NFKD.
 *
 * Threads: an ft_tok is immutable after loading; any number of threads may encode and decode
 * with one ft_tok at once, each with its own ft_tok_encoding / ft_tok_stream. Loading may run
 * in any thread too (regex compiles are serialized inside). */
#ifndef FTUNE_TOK_H
#define FTUNE_TOK_H

#include "ftune/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ft_tok ft_tok; /* opaque */

/* ---------------------------------------------------------------- loading */

/* Load from a folder holding tokenizer.json (and tokenizer_config.json when present) or from
 * the path of a tokenizer.json (a tokenizer_config.json beside it is read too). A component
 * ftune does not implement is FT_ERR_UNSUPPORTED naming its type and JSON path
 * ("pre_tokenizer.pretokenizers[1]: unsupported pre-tokenizer type \"X\""). Free with
 * ft_tok_free. */
ft_status ft_tok_load(const char *path, ft_tok **out, ft_err *err);
/* Load from memory: tokenizer.json bytes and, optionally (NULL), tokenizer_config.json bytes.
 * `name` labels errors. */
ft_status ft_tok_load_buf(const char *name, const char *json, size_t len, const char *config_json,
                          size_t config_len, ft_tok **out, ft_err *err);
void ft_tok_free(ft_tok *t); /* NULL is a no-op */

/* ---------------------------------------------------------------- vocabulary and specials */

/* One past the largest id of the model's vocabulary and the added tokens. */
size_t ft_tok_vocab_size(const ft_tok *t);
/* Id of a token string (model vocabulary or added token), or -1. */
int32_t ft_tok_token_to_id(const ft_tok *t, const char *token, size_t len);
/* The token's string (NUL-terminated, borrowed from t, valid until ft_tok_free), or NULL for an
 * id that has none. Byte-level tokens come back in their vocabulary form ("Ġhello"). */
const char *ft_tok_id_to_token(const ft_tok *t, int32_t id);
/* True for added tokens marked "special" (what decode(skip_special_tokens) drops). */
bool ft_tok_is_special(const ft_tok *t, int32_t id);

/* What a tokenizer adds and which ids its special tokens have. Ids are -1 when absent. */
typedef struct ft_tok_info {
    int32_t bos_id;     /* tokenizer_config.json bos_token, else the BOS the post-processor adds */
    int32_t eos_id;     /* tokenizer_config.json eos_token */
    int32_t pad_id;     /* tokenizer_config.json pad_token */
    int32_t unk_id;     /* the model's unk_token */
    const char *bos_token, *eos_token, *pad_token, *unk_token; /* borrowed from t; NULL if absent */
    /* What encode(add_special_tokens=true) adds, read from the post-processor: */
    bool post_adds_bos;   /* a special token before the text (its id in post_bos_id) */
    bool post_adds_eos;   /* a special token after the text (its id in post_eos_id) */
    int32_t post_bos_id, post_eos_id;
    /* tokenizer_config.json add_bos_token / add_eos_token: 1 true, 0 false, -1 absent. For
     * information only (transformers may rebuild the post-processor from them; encode does not). */
    int config_add_bos, config_add_eos;
} ft_tok_info;
void ft_tok_get_info(const ft_tok *t, ft_tok_info *info);

/* ---------------------------------------------------------------- encoding */

/* Byte range [start, end) of a token in the text given to encode, as `tokenizers`' encode()
 * reports it (its alignment rules through normalizers included; checked against it in tests).
 * Tokens the post-processor adds have start == end == 0. A token that covers part of a
 * multi-byte character (byte-level BPE) gets the range of the whole character. */
typedef struct ft_tok_span {
    size_t start, end;
} ft_tok_span;

/* Result of an encode: ids[0..n) and offsets[0..n), owned by the struct. Reuse one encoding
 * across calls (it keeps its buffers and a per-encoding cache that makes repeated words
 * cheaper); one per thread. Zero-initialize ({0}) or ft_tok_encoding_init, then
 * ft_tok_encoding_free. */
typedef struct ft_tok_encoding {
    int32_t *ids;
    ft_tok_span *offsets;
    size_t n, cap;
    void *scratch_; /* internal: working buffers and cache */
} ft_tok_encoding;
void ft_tok_encoding_init(ft_tok_encoding *e);
void ft_tok_encoding_free(ft_tok_encoding *e);

/* Encode text[0..len) (any bytes; invalid UTF-8 is handled as `tokenizers` handles the string
 * a caller would get by lossy conversion: each invalid byte becomes U+FFFD). Replaces the
 * contents of `out`. add_special_tokens: run the post-processor (BOS/EOS...); added tokens in
 * the text ("<|eot_id|>") are matched either way, as in `tokenizers`. */
ft_status ft_tok_encode(const ft_tok *t, const char *text, size_t len, bool add_special_tokens, ft_tok_encoding *out,
                        ft_err *err);

/* ft_tok_encode's ids alone, in a new array (*ids: at least one element, free with ft_free). */
ft_status ft_tok_encode_ids(const ft_tok *t, const char *text, size_t len, bool add_special_tokens, int32_t **ids,
                            size_t *n, ft_err *err);

/* Encode many texts over `threads` threads (0: all cores), for data preparation. Results are
 * flattened: the ids of text i are ids[row_start[i] .. row_start[i+1]). Free with
 * ft_tok_batch_free. */
typedef struct ft_tok_batch {
    int32_t *ids;
    size_t *row_start; /* n_texts + 1 entries */
    size_t n_texts;
} ft_tok_batch;
ft_status ft_tok_encode_batch(const ft_tok *t, const char *const *texts, const size_t *lens, size_t n_texts,
                              bool add_special_tokens, int threads, ft_tok_batch *out, ft_err *err);
void ft_tok_batch_free(ft_tok_batch *b);

/* ---------------------------------------------------------------- decoding */

/* Decode ids through the tokenizer's decoder (ids without a token are skipped, as in
 * `tokenizers`). *out is NUL-terminated, owned by the caller (ft_free); *out_len may be NULL.
 * Bytes that do not form valid UTF-8 become U+FFFD, as in `tokenizers`. */
ft_status ft_tok_decode(const ft_tok *t, const int32_t *ids, size_t n, bool skip_special_tokens, char **out,
                        size_t *out_len, ft_err *err);

/* Incremental decoding for streaming generation: push ids one at a time; each push appends to
 * `out` only text that is final, never half a UTF-8 character, and the concatenation of all
 * pushes equals ft_tok_decode of all the ids (for complete characters). */
typedef struct ft_tok_stream ft_tok_stream; /* opaque */
ft_status ft_tok_stream_new(const ft_tok *t, bool skip_special_tokens, ft_tok_stream **out, ft_err *err);
/* Append any newly final text to `out` (possibly nothing). */
ft_status ft_tok_stream_push(ft_tok_stream *s, int32_t id, ft_buf *out, ft_err *err);
/* Forget everything pushed so far (a new generation with the same tokenizer). */
void ft_tok_stream_reset(ft_tok_stream *s);
void ft_tok_stream_free(ft_tok_stream *s); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
