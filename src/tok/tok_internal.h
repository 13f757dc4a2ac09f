/* tok/tok_internal.h: the tokenizer's internal structures, shared by the files of src/tok/
 * (load.c builds them from tokenizer.json, encode.c / normalize.c / pretok.c / bpe.c run the
 * encoding pipeline, decode.c the decoders). Not a public header. */
#ifndef FTUNE_TOK_INTERNAL_H
#define FTUNE_TOK_INTERNAL_H

#include <oniguruma.h>

#include "ftune/tok.h"

/* ---------------------------------------------------------------- hash maps */

/* Byte string -> int32 map, open addressing; keys live in one blob owned by the map. */
typedef struct strmap {
    uint32_t *slots; /* entry index + 1, 0 = empty */
    size_t cap;      /* power of two */
    size_t *key_off; /* entry -> offset in blob */
    uint32_t *key_len;
    int32_t *val;
    uint64_t *hash;
    size_t n, n_cap;
    ft_buf blob;
} strmap;
ft_status strmap_put(strmap *m, const char *k, size_t n, int32_t v); /* overwrite */
int32_t strmap_get(const strmap *m, const char *k, size_t n);       /* -1 if absent */
void strmap_free(strmap *m);
uint64_t tok_hash(const char *s, size_t n);

/* (left id, right id) -> (rank, merged id). */
typedef struct pairmap {
    uint64_t *keys; /* (a << 32 | b) + 1, 0 = empty */
    uint32_t *rank;
    int32_t *merged;
    size_t cap, n;
} pairmap;
ft_status pairmap_put(pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged);
static inline bool pairmap_get(const pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *merged) {
    if (!m->cap)
        return false;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t mask = m->cap - 1, i = (size_t)(h >> 20) & mask;
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) {
            *rank = m->rank[i];
            *merged = m->merged[i];
            return true;
        }
        if (!k)
            return false;
        i = (i + 1) & mask;
    }
}
void pairmap_free(pairmap *m);

/* ---------------------------------------------------------------- patterns */

typedef struct tok_regex {
    regex_t *re;   /* NULL for a literal string pattern */
    char *literal; /* the string pattern (may be empty) */
    size_t literal_len;
    int fast; /* a hand scanner proven equal to `re` (FAST_*), 0 = use Oniguruma */
} tok_regex;
enum { FAST_NONE = 0, FAST_LLAMA3, FAST_QWEN };

/* ---------------------------------------------------------------- components */

typedef enum {
    NORM_SEQUENCE, NORM_PREPEND, NORM_REPLACE, NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD,
    NORM_LOWERCASE, NORM_STRIP
} norm_kind;
typedef struct tok_norm {
    norm_kind kind;
    struct tok_norm *children;
    size_t n_children;
    char *str; /* Prepend text / Replace content */
    size_t str_len;
    tok_regex pat; /* Replace pattern */
    bool left, right; /* Strip */
} tok_norm;

typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } split_behavior;
typedef enum {
    PRE_SEQUENCE, PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE, PRE_DIGITS, PRE_PUNCTUATION, PRE_WHITESPACE,
    PRE_WHITESPACE_SPLIT
} pre_kind;
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
typedef struct tok_pre {
    pre_kind kind;
    struct tok_pre *children;
    size_t n_children;
    tok_regex pat;
    split_behavior behavior;
    bool invert;
    bool add_prefix_space, use_regex; /* ByteLevel */
    uint32_t replacement;             /* Metaspace */
    char rep_utf8[4];
    int rep_len;
    int prepend_scheme;
    bool split;
    bool individual_digits;
} tok_pre;

typedef enum { DEC_SEQUENCE, DEC_BYTELEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP } dec_kind;
typedef struct tok_dec {
    dec_kind kind;
    struct tok_dec *children;
    size_t n_children;
    tok_regex pat;
    char *str;
    size_t str_len;
    uint32_t ch; /* Strip content / Metaspace replacement */
    size_t start, stop;
    int prepend_scheme;
} tok_dec;

/* ---------------------------------------------------------------- the tokenizer */

typedef struct added_tok {
    char *content;
    size_t len;
    char *norm; /* normalized content when `normalized` and the normalizer changes it */
    size_t norm_len;
    int32_t id;
    bool special, lstrip, rstrip, normalized, single_word;
} added_tok;

/* Added-token matcher: leftmost-longest over a set of strings. */
typedef struct added_set {
    uint32_t *by_first[256]; /* token indices whose first byte is b, longest first */
    uint32_t n_first[256];
    bool any;
} added_set;

struct ft_tok {
    /* model (BPE) */
    char **vocab_str; /* id -> token string as in tokenizer.json (NULL: none) */
    size_t vocab_cap;  /* entries in vocab_str (largest id + 1) */
    strmap vocab;      /* model vocabulary; keys are raw bytes when byte_level */
    strmap all_tokens; /* token string -> id (model vocabulary and added tokens, JSON form) */
    pairmap merges;
    bool byte_level; /* a ByteLevel pre-tokenizer: BPE runs on raw bytes */
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;
    char *cont_prefix, *eow_suffix;
    size_t cont_prefix_len, eow_suffix_len;
    int32_t byte_ids[256]; /* byte_fallback "<0xXX>" ids, or the byte-level single-byte ids */
    int32_t byte_level_ids[256];

    tok_norm *norm;
    tok_pre *pre;
    tok_dec *dec;

    /* post-processor: ids before and after the sequence (single template) */
    int32_t *post_before, *post_after;
    size_t n_post_before, n_post_after;
    bool has_post_template;
    bool post_trim_offsets, post_trim_prefix_space; /* a ByteLevel post-processor with trim_offsets */

    added_tok *added;
    size_t n_added, added_cap;
    int64_t model_vocab_n; /* the model vocabulary's entries, as `tokenizers` counts its size */
    int64_t added_max_id;  /* the largest id an added token got, -1: none yet */
    added_set set_raw, set_norm;
    bool *special_flag; /* id -> special (size vocab_cap) */

    /* tokenizer_config.json */
    char *bos_token, *eos_token, *pad_token, *unk_token;
    int config_add_bos, config_add_eos;
};

/* ---------------------------------------------------------------- encode pipeline */

/* A piece of text on its way through the pipeline: UTF-8 bytes and, for each byte, the range of
 * the original text it came from. `al` NULL means identity: byte i came from base + i. */
typedef struct piece {
    const char *s;
    size_t n;
    const size_t *al; /* 2 * n entries (start, end) or NULL */
    size_t base;
    int32_t added; /* an added token's id, or -1 */
} piece;

static inline size_t piece_orig_start(const piece *p, size_t i) { return p->al ? p->al[2 * i] : p->base + i; }
static inline size_t piece_orig_end(const piece *p, size_t i) { return p->al ? p->al[2 * i + 1] : p->base + i + 1; }
static inline piece piece_sub(const piece *p, size_t a, size_t b) {
    piece q = *p;
    q.s = p->s + a;
    q.n = b - a;
    if (p->al)
        q.al = p->al + 2 * a;
    else
        q.base = p->base + a;
    return q;
}

/* A chunked bump allocator for the pipeline's temporary strings (pointers stay valid until reset). */
typedef struct scratch_block {
    struct scratch_block *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
} scratch_block;
typedef struct scratch {
    scratch_block *head;
} scratch;
void *scratch_alloc(scratch *s, size_t n);
void scratch_reset(scratch *s);
void scratch_free(scratch *s);

typedef struct piece_vec {
    piece *v;
    size_t n, cap;
} piece_vec;
ft_status piece_push(piece_vec *pv, piece p);

typedef struct match_vec {
    size_t *v; /* 3 per entry */
    size_t n, cap;
} match_vec;

/* Per-encoding working state (ft_tok_encoding.scratch_). */
typedef struct bpe_cache_entry {
    uint64_t hash;
    uint32_t key_off, key_len; /* into keys blob */
    uint32_t tok_off, n_tok;   /* into toks: (id, byte length) pairs */
} bpe_cache_entry;
typedef struct enc_state {
    scratch mem;
    piece_vec a, b; /* the current pieces and a spare list */
    match_vec mv;
    /* BPE working arrays */
    int32_t *sym_id;
    int32_t *sym_prev, *sym_next;
    uint32_t *sym_len, *pair_rank;
    int32_t *pair_new;
    size_t sym_cap;
    void *heap; /* BPE merge heap (bpe.c's entries) */
    size_t heap_cap;
    /* pre-token cache */
    bpe_cache_entry *cache;
    size_t cache_cap, cache_n;
    ft_buf cache_keys;
    int32_t *cache_toks;
    size_t cache_toks_n, cache_toks_cap;
    /* ids + lengths of the current piece */
    int32_t *out_id;
    uint32_t *out_len;
    size_t out_n, out_cap;
    const ft_tok *owner;
} enc_state;

/* normalize.c */
ft_status tok_normalize(const ft_tok *t, const tok_norm *n, piece *p, scratch *mem, ft_err *err);
ft_status tok_normalize_string(const ft_tok *t, const char *s, size_t n, char **out, size_t *out_len, ft_err *err);
/* Unicode helpers (utf8proc). */
bool tok_is_whitespace(uint32_t c);
bool tok_is_word_char(uint32_t c);
bool tok_is_numeric(uint32_t c);
bool tok_is_punct(uint32_t c);
/* Decode one char of valid UTF-8 (caller guarantees validity); returns its length. */
static inline int tok_utf8_next(const char *s, size_t n, uint32_t *cp) {
    unsigned char c = (unsigned char)s[0];
    if (c < 0x80 || n < 2) {
        *cp = c;
        return 1;
    }
    if (c < 0xE0) {
        *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0 || n < 4) {
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
          (s[3] & 0x3F);
    return 4;
}
static inline int tok_utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

/* unicode.c: Unicode 16.0 classes (the version `tokenizers` 0.23.2 matches with) */
enum { U16_LETTER, U16_MARK, U16_NUMBER, U16_PUNCT, U16_SYMBOL, U16_WORD };
bool tok_u16_in(int table, uint32_t c);
uint32_t tok_u16_lower(uint32_t c); /* simple lowercase mapping */
/* Copy a regex with \p{L} \p{M} \p{N} \p{P} \p{S} (and \P, \p{^..}, long names) replaced by
 * explicit Unicode 16.0 classes. */
ft_status tok_rewrite_properties(const char *pattern, size_t len, ft_buf *out);

/* pattern matching (pretok.c): all matches as the `tokenizers` Pattern trait yields them,
 * (start, end, is_match) triples covering s. */
ft_status tok_find_matches(const tok_regex *re, const char *s, size_t n, match_vec *out, ft_err *err);
ft_status tok_pretokenize(const ft_tok *t, const tok_pre *pre, enc_state *st, ft_err *err);
ft_status tok_regex_compile(tok_regex *r, const char *pattern, size_t len, bool is_regex, ft_err *err);
void tok_regex_free(tok_regex *r);

/* bpe.c: tokenize one pre-token into st->out_id / out_len. */
ft_status tok_bpe(const ft_tok *t, enc_state *st, const char *s, size_t n, ft_err *err);
void enc_state_free(enc_state *st);

/* encode.c: length of the maximal ill-formed subpart at s (one U+FFFD each, as Rust's
 * from_utf8_lossy). */
size_t tok_bad_subpart(const unsigned char *s, size_t n);

/* decode.c */
void tok_free_dec(tok_dec *d);

#endif
