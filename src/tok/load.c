/* tok/load.c: build an ft_tok from tokenizer.json (and tokenizer_config.json beside it), the
 * format of Hugging Face `tokenizers` (tokenizer/serialization.rs): model, added_tokens,
 * normalizer, pre_tokenizer, post_processor, decoder. Any component ftune does not implement
 * is an FT_ERR_UNSUPPORTED naming its type and JSON path.
 *
 * Byte-level tokenizers (a ByteLevel pre-tokenizer) get their BPE vocabulary keyed by raw
 * bytes: the ByteLevel step maps each byte to one char bijectively, so running BPE on the raw
 * bytes with the mapped-back vocabulary gives the same tokens without building the mapped
 * string for every word. */
#include <string.h>

#include "ftune/json.h"
#include "tok/tok_internal.h"

/* ---------------------------------------------------------------- byte-level alphabet */

/* GPT-2's byte -> char table: printable Latin-1 bytes map to themselves, the others to
 * U+0100.. in byte order. */
static uint32_t byte_to_char(unsigned b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return b;
    unsigned n = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF)))
            n++;
    return 256 + n;
}

/* Map a byte-level token string back to raw bytes; false if a char is outside the alphabet. */
static bool byte_level_decode(const int16_t *char_to_byte, const char *s, size_t n, char *out, size_t *out_n) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int cl = ft_utf8_decode(s + i, n - i, &c);
        if (cl <= 0 || c >= 324 || char_to_byte[c] < 0)
            return false;
        out[o++] = (char)char_to_byte[c];
        i += (size_t)cl;
    }
    *out_n = o;
    return true;
}

/* ---------------------------------------------------------------- JSON helpers */

static const char *type_of(const json_t *j) {
    const json_t *t = json_object_get(j, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

static ft_status bad(ft_err *err, const char *path, const char *what) {
    return FT_ERR(err, FT_ERR_INVALID, "%s: %s", path, what);
}

static ft_status get_bool(const json_t *o, const char *key, bool dflt, bool *out, const char *path, ft_err *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return FT_OK;
    }
    if (!json_is_boolean(v))
        return FT_ERR(err, FT_ERR_INVALID, "%s.%s: expected a boolean", path, key);
    *out = json_is_true(v);
    return FT_OK;
}

static ft_status get_str(const json_t *o, const char *key, bool required, const char **out, size_t *len,
                         const char *path, ft_err *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            return FT_ERR(err, FT_ERR_INVALID, "%s.%s: missing", path, key);
        *out = NULL;
        if (len)
            *len = 0;
        return FT_OK;
    }
    if (!json_is_string(v))
        return FT_ERR(err, FT_ERR_INVALID, "%s.%s: expected a string", path, key);
    *out = json_string_value(v);
    if (len)
        *len = json_string_length(v);
    return FT_OK;
}

/* A single char from a string field (Metaspace replacement, Strip content). */
static ft_status get_char(const json_t *o, const char *key, uint32_t dflt, uint32_t *out, const char *path,
                          ft_err *err) {
    const char *s = NULL;
    size_t n = 0;
    FT_TRY(get_str(o, key, false, &s, &n, path, err));
    if (!s) {
        *out = dflt;
        return FT_OK;
    }
    uint32_t c;
    int cl = n ? ft_utf8_decode(s, n, &c) : 0;
    if (cl <= 0 || (size_t)cl != n)
        return FT_ERR(err, FT_ERR_INVALID, "%s.%s: expected a single character", path, key);
    *out = c;
    return FT_OK;
}

/* {"String": "x"} or {"Regex": "..."} */
static ft_status get_pattern(const json_t *o, tok_regex *re, const char *path, ft_err *err) {
    const json_t *p = json_object_get(o, "pattern");
    if (!json_is_object(p))
        return FT_ERR(err, FT_ERR_INVALID, "%s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", path);
    const json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex");
    if (json_is_string(s))
        return tok_regex_compile(re, json_string_value(s), json_string_length(s), false, err);
    if (json_is_string(r)) {
        ft_status st = tok_regex_compile(re, json_string_value(r), json_string_length(r), true, err);
        if (st)
            ft_err_prefix(err, "%s.pattern", path);
        return st;
    }
    return FT_ERR(err, FT_ERR_INVALID, "%s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", path);
}

static ft_status get_behavior(const json_t *o, split_behavior dflt, split_behavior *out, const char *path,
                              ft_err *err) {
    const char *b = NULL;
    FT_TRY(get_str(o, "behavior", false, &b, NULL, path, err));
    if (!b) {
        *out = dflt;
        return FT_OK;
    }
    static const struct {
        const char *name;
        split_behavior b;
    } names[] = {{"Removed", SPLIT_REMOVED},
                 {"Isolated", SPLIT_ISOLATED},
                 {"MergedWithPrevious", SPLIT_MERGED_PREV},
                 {"MergedWithNext", SPLIT_MERGED_NEXT},
                 {"Contiguous", SPLIT_CONTIGUOUS}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(b, names[i].name)) {
            *out = names[i].b;
            return FT_OK;
        }
    return FT_ERR(err, FT_ERR_INVALID, "%s.behavior: unknown split behavior \"%s\"", path, b);
}

static ft_status get_prepend_scheme(const json_t *o, int *out, const char *path, ft_err *err) {
    const char *s = NULL;
    FT_TRY(get_str(o, "prepend_scheme", false, &s, NULL, path, err));
    *out = PREPEND_ALWAYS;
    if (s) {
        if (!strcmp(s, "always"))
            *out = PREPEND_ALWAYS;
        else if (!strcmp(s, "first"))
            *out = PREPEND_FIRST;
        else if (!strcmp(s, "never"))
            *out = PREPEND_NEVER;
        else
            return FT_ERR(err, FT_ERR_INVALID, "%s.prepend_scheme: unknown value \"%s\"", path, s);
    }
    const json_t *aps = json_object_get(o, "add_prefix_space"); /* legacy field */
    if (json_is_false(aps))
        *out = PREPEND_NEVER;
    return FT_OK;
}

/* ---------------------------------------------------------------- normalizers */

static void free_norm(tok_norm *n) {
    if (!n)
        return;
    for (size_t i = 0; i < n->n_children; i++)
        free_norm(&n->children[i]);
    ft_free(n->children);
    ft_free(n->str);
    tok_regex_free(&n->pat);
}

static ft_status load_norm(const json_t *j, tok_norm *n, const char *path, ft_err *err) {
    memset(n, 0, sizeof *n);
    const char *type = type_of(j);
    if (!json_is_object(j) || !type)
        return bad(err, path, "expected an object with a \"type\"");
    if (!strcmp(type, "Sequence")) {
        const json_t *arr = json_object_get(j, "normalizers");
        if (!json_is_array(arr))
            return bad(err, path, "Sequence without a \"normalizers\" array");
        n->kind = NORM_SEQUENCE;
        n->children = ft_calloc(json_array_size(arr) + 1, sizeof *n->children);
        if (!n->children)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", path, i);
            n->n_children = i + 1;
            FT_TRY(load_norm(json_array_get(arr, i), &n->children[i], sub, err));
        }
        return FT_OK;
    }
    if (!strcmp(type, "Prepend")) {
        const char *s = NULL;
        size_t len = 0;
        n->kind = NORM_PREPEND;
        FT_TRY(get_str(j, "prepend", true, &s, &len, path, err));
        n->str = ft_strndup(s, len);
        n->str_len = len;
        return n->str ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (!strcmp(type, "Replace")) {
        const char *s = NULL;
        size_t len = 0;
        n->kind = NORM_REPLACE;
        FT_TRY(get_pattern(j, &n->pat, path, err));
        FT_TRY(get_str(j, "content", true, &s, &len, path, err));
        n->str = ft_strndup(s, len);
        n->str_len = len;
        return n->str ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    static const struct {
        const char *name;
        norm_kind k;
    } simple[] = {{"NFC", NORM_NFC}, {"NFD", NORM_NFD}, {"NFKC", NORM_NFKC}, {"NFKD", NORM_NFKD}, {"Lowercase", NORM_LOWERCASE}};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (!strcmp(type, simple[i].name)) {
            n->kind = simple[i].k;
            return FT_OK;
        }
    if (!strcmp(type, "Strip")) {
        n->kind = NORM_STRIP;
        FT_TRY(get_bool(j, "strip_left", true, &n->left, path, err));
        return get_bool(j, "strip_right", true, &n->right, path, err);
    }
    return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: unsupported normalizer type \"%s\"", path, type);
}

/* ---------------------------------------------------------------- pre-tokenizers */

static void free_pre(tok_pre *p) {
    if (!p)
        return;
    for (size_t i = 0; i < p->n_children; i++)
        free_pre(&p->children[i]);
    ft_free(p->children);
    tok_regex_free(&p->pat);
}

static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static ft_status load_pre(const json_t *j, tok_pre *p, const char *path, ft_err *err) {
    memset(p, 0, sizeof *p);
    const char *type = type_of(j);
    if (!json_is_object(j) || !type)
        return bad(err, path, "expected an object with a \"type\"");
    if (!strcmp(type, "Sequence")) {
        const json_t *arr = json_object_get(j, "pretokenizers");
        if (!json_is_array(arr))
            return bad(err, path, "Sequence without a \"pretokenizers\" array");
        p->kind = PRE_SEQUENCE;
        p->children = ft_calloc(json_array_size(arr) + 1, sizeof *p->children);
        if (!p->children)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", path, i);
            p->n_children = i + 1;
            FT_TRY(load_pre(json_array_get(arr, i), &p->children[i], sub, err));
        }
        return FT_OK;
    }
    if (!strcmp(type, "Split")) {
        p->kind = PRE_SPLIT;
        FT_TRY(get_pattern(j, &p->pat, path, err));
        FT_TRY(get_behavior(j, SPLIT_REMOVED, &p->behavior, path, err));
        if (!json_object_get(j, "behavior"))
            return bad(err, path, "Split without \"behavior\"");
        return get_bool(j, "invert", false, &p->invert, path, err);
    }
    if (!strcmp(type, "ByteLevel")) {
        p->kind = PRE_BYTELEVEL;
        FT_TRY(get_bool(j, "add_prefix_space", true, &p->add_prefix_space, path, err));
        FT_TRY(get_bool(j, "use_regex", true, &p->use_regex, path, err));
        if (p->use_regex)
            return tok_regex_compile(&p->pat, GPT2_RE, sizeof GPT2_RE - 1, true, err);
        return FT_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        p->kind = PRE_METASPACE;
        FT_TRY(get_char(j, "replacement", 0x2581, &p->replacement, path, err));
        p->rep_len = ft_utf8_encode(p->replacement, p->rep_utf8);
        FT_TRY(get_prepend_scheme(j, &p->prepend_scheme, path, err));
        return get_bool(j, "split", true, &p->split, path, err);
    }
    if (!strcmp(type, "Digits")) {
        p->kind = PRE_DIGITS;
        return get_bool(j, "individual_digits", false, &p->individual_digits, path, err);
    }
    if (!strcmp(type, "Punctuation")) {
        p->kind = PRE_PUNCTUATION;
        return get_behavior(j, SPLIT_ISOLATED, &p->behavior, path, err);
    }
    if (!strcmp(type, "Whitespace")) {
        p->kind = PRE_WHITESPACE; /* \w+|[^\w\s]+ with Rust regex classes, scanned by hand */
        return FT_OK;
    }
    if (!strcmp(type, "WhitespaceSplit")) {
        p->kind = PRE_WHITESPACE_SPLIT;
        return FT_OK;
    }
    return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: unsupported pre-tokenizer type \"%s\"", path, type);
}

/* Byte-level BPE needs ByteLevel to be the last step that changes the text. */
static bool has_bytelevel(const tok_pre *p) {
    if (!p)
        return false;
    if (p->kind == PRE_BYTELEVEL)
        return true;
    for (size_t i = 0; i < p->n_children; i++)
        if (has_bytelevel(&p->children[i]))
            return true;
    return false;
}
static bool bytelevel_is_last(const tok_pre *p) {
    if (p->kind != PRE_SEQUENCE)
        return true;
    for (size_t i = 0; i < p->n_children; i++) {
        if (has_bytelevel(&p->children[i])) {
            if (!bytelevel_is_last(&p->children[i]))
                return false;
            for (size_t k = i + 1; k < p->n_children; k++)
                if (p->children[k].kind != PRE_BYTELEVEL)
                    return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- decoders */

void tok_free_dec(tok_dec *d) {
    if (!d)
        return;
    for (size_t i = 0; i < d->n_children; i++)
        tok_free_dec(&d->children[i]);
    ft_free(d->children);
    ft_free(d->str);
    tok_regex_free(&d->pat);
}

static ft_status load_dec(const json_t *j, tok_dec *d, const char *path, ft_err *err) {
    memset(d, 0, sizeof *d);
    const char *type = type_of(j);
    if (!json_is_object(j) || !type)
        return bad(err, path, "expected an object with a \"type\"");
    if (!strcmp(type, "Sequence")) {
        const json_t *arr = json_object_get(j, "decoders");
        if (!json_is_array(arr))
            return bad(err, path, "Sequence without a \"decoders\" array");
        d->kind = DEC_SEQUENCE;
        d->children = ft_calloc(json_array_size(arr) + 1, sizeof *d->children);
        if (!d->children)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s.decoders[%zu]", path, i);
            d->n_children = i + 1;
            FT_TRY(load_dec(json_array_get(arr, i), &d->children[i], sub, err));
        }
        return FT_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        d->kind = DEC_BYTELEVEL;
        return FT_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        d->kind = DEC_METASPACE;
        FT_TRY(get_char(j, "replacement", 0x2581, &d->ch, path, err));
        return get_prepend_scheme(j, &d->prepend_scheme, path, err);
    }
    if (!strcmp(type, "Replace")) {
        const char *s = NULL;
        size_t len = 0;
        d->kind = DEC_REPLACE;
        FT_TRY(get_pattern(j, &d->pat, path, err));
        FT_TRY(get_str(j, "content", true, &s, &len, path, err));
        d->str = ft_strndup(s, len);
        d->str_len = len;
        return d->str ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (!strcmp(type, "ByteFallback")) {
        d->kind = DEC_BYTEFALLBACK;
        return FT_OK;
    }
    if (!strcmp(type, "Fuse")) {
        d->kind = DEC_FUSE;
        return FT_OK;
    }
    if (!strcmp(type, "Strip")) {
        d->kind = DEC_STRIP;
        FT_TRY(get_char(j, "content", ' ', &d->ch, path, err));
        json_int_t a = 0, b = 0;
        const json_t *js = json_object_get(j, "start"), *je = json_object_get(j, "stop");
        if ((js && !json_is_integer(js)) || (je && !json_is_integer(je)))
            return bad(err, path, "Strip start/stop must be integers");
        a = js ? json_integer_value(js) : 0;
        b = je ? json_integer_value(je) : 0;
        if (a < 0 || b < 0)
            return bad(err, path, "Strip start/stop must not be negative");
        d->start = (size_t)a;
        d->stop = (size_t)b;
        return FT_OK;
    }
    return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: unsupported decoder type \"%s\"", path, type);
}

/* ---------------------------------------------------------------- post-processor */

static ft_status push_id(int32_t **v, size_t *n, int32_t id) {
    int32_t *p = ft_realloc(*v, (*n + 1) * sizeof *p);
    if (!p)
        return FT_ERR_NOMEM;
    p[(*n)++] = id;
    *v = p;
    return FT_OK;
}

static ft_status load_post(ft_tok *t, const json_t *j, const char *path, ft_err *err) {
    const char *type = type_of(j);
    if (!json_is_object(j) || !type)
        return bad(err, path, "expected an object with a \"type\"");
    if (!strcmp(type, "Sequence")) {
        const json_t *arr = json_object_get(j, "processors");
        if (!json_is_array(arr))
            return bad(err, path, "Sequence without a \"processors\" array");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s.processors[%zu]", path, i);
            FT_TRY(load_post(t, json_array_get(arr, i), sub, err));
        }
        return FT_OK;
    }
    if (!strcmp(type, "ByteLevel")) { /* it only trims offsets, and only with trim_offsets */
        FT_TRY(get_bool(j, "trim_offsets", true, &t->post_trim_offsets, path, err));
        return get_bool(j, "add_prefix_space", true, &t->post_trim_prefix_space, path, err);
    }
    if (!strcmp(type, "TemplateProcessing")) {
        const json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
        if (!json_is_array(single))
            return bad(err, path, "TemplateProcessing without a \"single\" array");
        if (t->has_post_template)
            return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: more than one template post-processor", path);
        t->has_post_template = true;
        bool seen_seq = false;
        for (size_t i = 0; i < json_array_size(single); i++) {
            const json_t *it = json_array_get(single, i);
            const json_t *sp = json_object_get(it, "SpecialToken"), *sq = json_object_get(it, "Sequence");
            if (json_is_object(sq)) {
                seen_seq = true;
                continue;
            }
            const char *name = json_string_value(json_object_get(sp, "id"));
            if (!name)
                return FT_ERR(err, FT_ERR_INVALID, "%s.single[%zu]: expected SpecialToken or Sequence", path, i);
            const json_t *ids = json_object_get(json_object_get(specials, name), "ids");
            if (!json_is_array(ids))
                return FT_ERR(err, FT_ERR_INVALID, "%s.special_tokens: \"%s\" missing or without ids", path, name);
            for (size_t k = 0; k < json_array_size(ids); k++) {
                const json_t *v = json_array_get(ids, k);
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
                    return FT_ERR(err, FT_ERR_INVALID, "%s.special_tokens.%s.ids: bad id", path, name);
                ft_status s = seen_seq ? push_id(&t->post_after, &t->n_post_after, (int32_t)json_integer_value(v))
                                       : push_id(&t->post_before, &t->n_post_before, (int32_t)json_integer_value(v));
                if (s)
                    return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            }
        }
        return FT_OK;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        const json_t *cls = json_object_get(j, "cls"), *sep = json_object_get(j, "sep");
        const json_t *ci = json_array_get(cls, 1), *si = json_array_get(sep, 1);
        if (!json_is_integer(ci) || !json_is_integer(si))
            return bad(err, path, "cls/sep must be [token, id]");
        if (t->has_post_template)
            return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: more than one template post-processor", path);
        t->has_post_template = true;
        if (push_id(&t->post_before, &t->n_post_before, (int32_t)json_integer_value(ci)) ||
            push_id(&t->post_after, &t->n_post_after, (int32_t)json_integer_value(si)))
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        return FT_OK;
    }
    return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: unsupported post-processor type \"%s\"", path, type);
}

/* ---------------------------------------------------------------- model */

static ft_status set_vocab_str(ft_tok *t, int32_t id, const char *s, size_t n) {
    if ((size_t)id >= t->vocab_cap) {
        size_t nc = t->vocab_cap ? t->vocab_cap : 1024;
        while (nc <= (size_t)id)
            nc *= 2;
        char **v = ft_realloc(t->vocab_str, nc * sizeof *v);
        if (!v)
            return FT_ERR_NOMEM;
        memset(v + t->vocab_cap, 0, (nc - t->vocab_cap) * sizeof *v);
        t->vocab_str = v;
        t->vocab_cap = nc;
    }
    ft_free(t->vocab_str[id]);
    t->vocab_str[id] = ft_strndup(s, n);
    return t->vocab_str[id] ? FT_OK : FT_ERR_NOMEM;
}

static ft_status load_model(ft_tok *t, const json_t *m, ft_err *err) {
    if (!json_is_object(m))
        return bad(err, "model", "expected an object");
    const char *type = type_of(m);
    if (type && strcmp(type, "BPE"))
        return FT_ERR(err, FT_ERR_UNSUPPORTED, "model: unsupported model type \"%s\" (ftune implements BPE)", type);
    const json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
    if (!json_is_object(vocab))
        return bad(err, "model.vocab", "expected an object");
    if (merges && !json_is_array(merges))
        return bad(err, "model.merges", "expected an array");
    const json_t *dropout = json_object_get(m, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
        return FT_ERR(err, FT_ERR_UNSUPPORTED, "model.dropout: BPE dropout is not supported (encoding must be deterministic)");
    FT_TRY(get_bool(m, "byte_fallback", false, &t->byte_fallback, "model", err));
    FT_TRY(get_bool(m, "fuse_unk", false, &t->fuse_unk, "model", err));
    FT_TRY(get_bool(m, "ignore_merges", false, &t->ignore_merges, "model", err));
    const char *s = NULL;
    size_t n = 0;
    FT_TRY(get_str(m, "continuing_subword_prefix", false, &s, &n, "model", err));
    if (s && n) {
        t->cont_prefix = ft_strndup(s, n);
        t->cont_prefix_len = n;
    }
    FT_TRY(get_str(m, "end_of_word_suffix", false, &s, &n, "model", err));
    if (s && n) {
        t->eow_suffix = ft_strndup(s, n);
        t->eow_suffix_len = n;
    }
    const char *unk;
    size_t unk_n;
    FT_TRY(get_str(m, "unk_token", false, &unk, &unk_n, "model", err));

    int16_t char_to_byte[324];
    for (int i = 0; i < 324; i++)
        char_to_byte[i] = -1;
    for (unsigned b = 0; b < 256; b++)
        char_to_byte[byte_to_char(b)] = (int16_t)b;

    const char *key;
    json_t *val;
    char *raw = NULL;
    size_t raw_cap = 0;
    ft_status st = FT_OK;
    json_object_foreach((json_t *)vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= INT32_MAX) {
            st = FT_ERR(err, FT_ERR_INVALID, "model.vocab[\"%.100s\"]: expected a non-negative id", key);
            break;
        }
        int32_t id = (int32_t)json_integer_value(val);
        size_t kl = strlen(key);
        if (set_vocab_str(t, id, key, kl) || strmap_put(&t->all_tokens, key, kl, id)) {
            st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            break;
        }
        if (t->byte_level) {
            if (kl > raw_cap) {
                raw_cap = kl * 2;
                char *r = ft_realloc(raw, raw_cap);
                if (!r) {
                    st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                    break;
                }
                raw = r;
            }
            size_t rn;
            if (byte_level_decode(char_to_byte, key, kl, raw, &rn))
                st = strmap_put(&t->vocab, raw, rn, id);
        } else {
            st = strmap_put(&t->vocab, key, kl, id);
        }
        if (st) {
            st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            break;
        }
    }
    ft_free(raw);
    FT_TRY(st);
    for (unsigned b = 0; b < 256; b++) {
        char code[8];
        snprintf(code, sizeof code, "<0x%02X>", b);
        t->byte_ids[b] = strmap_get(&t->all_tokens, code, 6);
        char one = (char)b;
        t->byte_level_ids[b] = t->byte_level ? strmap_get(&t->vocab, &one, 1) : -1;
    }
    t->unk_id = unk ? strmap_get(&t->all_tokens, unk, unk_n) : -1;

    /* merges: "a b" strings or [a, b] pairs; rank = position */
    size_t nm = merges ? json_array_size(merges) : 0;
    char *buf = NULL;
    size_t buf_cap = 0;
    for (size_t i = 0; i < nm && !st; i++) {
        const json_t *e = json_array_get(merges, i);
        const char *a, *b;
        size_t an, bn;
        if (json_is_string(e)) {
            const char *x = json_string_value(e);
            size_t xn = json_string_length(e);
            const char *sp = memchr(x, ' ', xn);
            if (!sp || memchr(sp + 1, ' ', xn - (size_t)(sp - x) - 1)) {
                st = FT_ERR(err, FT_ERR_INVALID, "model.merges[%zu]: expected \"a b\"", i);
                break;
            }
            a = x;
            an = (size_t)(sp - x);
            b = sp + 1;
            bn = xn - an - 1;
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0));
            an = json_string_length(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1));
            bn = json_string_length(json_array_get(e, 1));
        } else {
            st = FT_ERR(err, FT_ERR_INVALID, "model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", i);
            break;
        }
        int32_t ia = strmap_get(&t->all_tokens, a, an), ib = strmap_get(&t->all_tokens, b, bn);
        if (ia < 0 || ib < 0) {
            st = FT_ERR(err, FT_ERR_INVALID, "model.merges[%zu]: token \"%.*s\" not in the vocabulary", i,
                        (int)(ia < 0 ? (an > 100 ? 100 : an) : (bn > 100 ? 100 : bn)), ia < 0 ? a : b);
            break;
        }
        size_t skip = 0;
        if (t->cont_prefix_len && bn >= t->cont_prefix_len && !memcmp(b, t->cont_prefix, t->cont_prefix_len))
            skip = t->cont_prefix_len;
        if (an + bn > buf_cap) {
            buf_cap = (an + bn) * 2;
            char *nb = ft_realloc(buf, buf_cap);
            if (!nb) {
                st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                break;
            }
            buf = nb;
        }
        memcpy(buf, a, an);
        memcpy(buf + an, b + skip, bn - skip);
        int32_t im = strmap_get(&t->all_tokens, buf, an + bn - skip);
        if (im < 0) {
            st = FT_ERR(err, FT_ERR_INVALID, "model.merges[%zu]: merged token \"%.*s\" not in the vocabulary", i,
                        (int)(an + bn - skip > 100 ? 100 : an + bn - skip), buf);
            break;
        }
        if (i > UINT32_MAX - 2 || pairmap_put(&t->merges, ia, ib, (uint32_t)i, im))
            st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    ft_free(buf);
    return st;
}

/* ---------------------------------------------------------------- added tokens */

static void added_set_free(added_set *s) {
    for (int b = 0; b < 256; b++)
        ft_free(s->by_first[b]);
    memset(s, 0, sizeof *s);
}

static const char *added_pattern(const added_tok *a, bool norm, size_t *n) {
    if (norm && a->norm) {
        *n = a->norm_len;
        return a->norm;
    }
    *n = a->len;
    return a->content;
}

static ft_status added_set_build(ft_tok *t, added_set *set, bool normalized) {
    for (size_t i = 0; i < t->n_added; i++) {
        const added_tok *a = &t->added[i];
        size_t n = 0;
        const char *p = added_pattern(a, normalized, &n);
        if (a->normalized != normalized || n == 0)
            continue;
        unsigned b = (unsigned char)p[0];
        uint32_t *v = ft_realloc(set->by_first[b], (set->n_first[b] + 1) * sizeof *v);
        if (!v)
            return FT_ERR_NOMEM;
        /* keep longest first so the first hit at a position is the longest */
        size_t k = set->n_first[b];
        while (k > 0) {
            size_t m;
            added_pattern(&t->added[v[k - 1]], normalized, &m);
            if (m >= n)
                break;
            v[k] = v[k - 1];
            k--;
        }
        v[k] = (uint32_t)i;
        set->by_first[b] = v;
        set->n_first[b]++;
        set->any = true;
    }
    return FT_OK;
}

/* One added token, with the id `tokenizers` gives it (AddedVocabulary::add_tokens): a content
 * already in the model vocabulary or added before keeps that id; any other content gets the next
 * id after the model vocabulary (its entry count) and the added ids so far, whatever id a file
 * says (a file's id that collides with another token or leaves a gap is not used). An empty
 * content is ignored. A content added twice stays one token: the flags of the last time, special
 * when any time was. */
static ft_status add_token(ft_tok *t, const char *c, size_t cn, const added_tok *flags, ft_err *err) {
    if (cn == 0)
        return FT_OK;
    added_tok *a = NULL;
    for (size_t k = 0; k < t->n_added && !a; k++)
        if (t->added[k].len == cn && !memcmp(t->added[k].content, c, cn))
            a = &t->added[k];
    int64_t id = strmap_get(&t->all_tokens, c, cn), n = t->model_vocab_n, max = t->added_max_id;
    if (id < 0)
        id = max < 0 ? n : (max >= n || n == 0 ? max + 1 : n);
    if (id >= INT32_MAX)
        return FT_ERR(err, FT_ERR_INVALID, "too many added tokens");
    if (id > t->added_max_id)
        t->added_max_id = id;
    if (!a) {
        if (t->n_added == t->added_cap) {
            size_t cap = t->added_cap ? 2 * t->added_cap : 16;
            added_tok *na = ft_realloc(t->added, cap * sizeof *na);
            if (!na)
                return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            memset(na + t->added_cap, 0, (cap - t->added_cap) * sizeof *na);
            t->added = na;
            t->added_cap = cap;
        }
        a = &t->added[t->n_added];
        a->content = ft_strndup(c, cn);
        if (!a->content)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        a->len = cn;
        a->id = (int32_t)id;
        t->n_added++;
        if (strmap_put(&t->all_tokens, c, cn, a->id) || set_vocab_str(t, a->id, c, cn))
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    a->special = a->special || flags->special;
    a->lstrip = flags->lstrip;
    a->rstrip = flags->rstrip;
    a->single_word = flags->single_word;
    a->normalized = flags->normalized;
    return FT_OK;
}

/* An added token's flags from its JSON object (tokenizer.json's added_tokens, or an entry of
 * tokenizer_config.json's added_tokens_decoder): normalized defaults to !special. */
static ft_status added_flags(const json_t *e, added_tok *flags, const char *path, ft_err *err) {
    memset(flags, 0, sizeof *flags);
    FT_TRY(get_bool(e, "special", false, &flags->special, path, err));
    FT_TRY(get_bool(e, "lstrip", false, &flags->lstrip, path, err));
    FT_TRY(get_bool(e, "rstrip", false, &flags->rstrip, path, err));
    FT_TRY(get_bool(e, "single_word", false, &flags->single_word, path, err));
    return get_bool(e, "normalized", !flags->special, &flags->normalized, path, err);
}

/* tokenizer.json's added_tokens, in their order (after the model: its vocabulary is counted). */
static ft_status load_added(ft_tok *t, const json_t *arr, ft_err *err) {
    t->model_vocab_n = (int64_t)t->all_tokens.n; /* only the model's vocabulary is in it yet */
    t->added_max_id = -1;
    if (!arr || json_is_null(arr))
        return FT_OK;
    if (!json_is_array(arr))
        return bad(err, "added_tokens", "expected an array");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *e = json_array_get(arr, i);
        char path[64];
        snprintf(path, sizeof path, "added_tokens[%zu]", i);
        const char *c;
        size_t cn;
        FT_TRY(get_str(e, "content", true, &c, &cn, path, err));
        const json_t *jid = json_object_get(e, "id");
        if (!json_is_integer(jid) || json_integer_value(jid) < 0 || json_integer_value(jid) >= INT32_MAX)
            return FT_ERR(err, FT_ERR_INVALID, "%s.id: expected a non-negative integer", path);
        added_tok flags;
        FT_TRY(added_flags(e, &flags, path, err));
        FT_TRY(add_token(t, c, cn, &flags, err));
    }
    return FT_OK;
}

static int cmp_decoder_key(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* What transformers' PreTrainedTokenizerFast adds on top of tokenizer.json when it loads a model
 * folder: every entry of tokenizer_config.json's added_tokens_decoder, in the order of their ids
 * (the entry's own id is not used: the library assigns ids as for tokenizer.json's list; a content
 * already there takes the entry's flags), then the special tokens the config names (bos_token,
 * eos_token, unk_token, sep_token, pad_token, cls_token, mask_token,
 * additional_special_tokens) that are no added token yet, as special tokens. Real folders list
 * the same tokens in both files, so this changes nothing for them; a config edited by hand (a
 * token added to added_tokens_decoder only) gets the ids transformers would give it. */
static ft_status load_config_added(ft_tok *t, const json_t *cfg, ft_err *err) {
    if (!json_is_object(cfg))
        return FT_OK;
    const json_t *dec = json_object_get(cfg, "added_tokens_decoder");
    if (dec && !json_is_object(dec))
        return bad(err, "tokenizer_config.json: added_tokens_decoder", "expected an object of id: token");
    size_t n = dec ? json_object_size(dec) : 0;
    int64_t *keys = ft_malloc((n ? n : 1) * 2 * sizeof *keys); /* (id, index in the object) pairs */
    if (!keys)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    const json_t **vals = ft_malloc((n ? n : 1) * sizeof *vals);
    if (!vals) {
        ft_free(keys);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    ft_status s = FT_OK;
    size_t k = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)dec, key, v) {
        char *end = NULL;
        long long id = strtoll(key, &end, 10);
        if (!*key || *end || id < 0 || !json_is_object(v) || !json_is_string(json_object_get(v, "content"))) {
            s = FT_ERR(err, FT_ERR_INVALID,
                       "tokenizer_config.json: added_tokens_decoder[\"%.60s\"]: expected an id and a token "
                       "{\"content\": ..., \"special\": ...}",
                       key);
            break;
        }
        keys[2 * k] = id;
        keys[2 * k + 1] = (int64_t)k;
        vals[k++] = v;
    }
    if (s == FT_OK)
        qsort(keys, k, 2 * sizeof *keys, cmp_decoder_key);
    for (size_t i = 0; i < k && s == FT_OK; i++) {
        const json_t *e = vals[keys[2 * i + 1]];
        char path[96];
        snprintf(path, sizeof path, "tokenizer_config.json: added_tokens_decoder[\"%lld\"]", (long long)keys[2 * i]);
        added_tok flags;
        s = added_flags(e, &flags, path, err);
        const json_t *c = json_object_get(e, "content");
        if (s == FT_OK)
            s = add_token(t, json_string_value(c), json_string_length(c), &flags, err);
    }
    ft_free(keys);
    ft_free(vals);
    FT_TRY(s);
    static const char *const names[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                        "pad_token", "cls_token", "mask_token"};
    const json_t *extra = json_object_get(cfg, "additional_special_tokens");
    size_t n_extra = json_is_array(extra) ? json_array_size(extra) : 0;
    for (size_t i = 0; i < sizeof names / sizeof *names + n_extra; i++) {
        const json_t *v = i < sizeof names / sizeof *names ? json_object_get(cfg, names[i])
                                                             : json_array_get(extra, i - sizeof names / sizeof *names);
        added_tok flags = {.special = true};
        if (json_is_object(v)) { /* {"content": ..., "lstrip": ..., ...}: an AddedToken, special */
            FT_TRY(added_flags(v, &flags, "tokenizer_config.json", err));
            flags.special = true;
            v = json_object_get(v, "content");
        }
        if (!json_is_string(v) || json_string_length(v) == 0)
            continue;
        bool have = false;
        for (size_t a = 0; a < t->n_added && !have; a++)
            have = t->added[a].len == json_string_length(v) && !memcmp(t->added[a].content, json_string_value(v), t->added[a].len);
        if (!have)
            FT_TRY(add_token(t, json_string_value(v), json_string_length(v), &flags, err));
    }
    return FT_OK;
}

/* ---------------------------------------------------------------- tokenizer_config.json */

static ft_status config_token(const json_t *cfg, const char *key, char **out) {
    const json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!json_is_string(v))
        return FT_OK;
    *out = ft_strndup(json_string_value(v), json_string_length(v));
    return *out ? FT_OK : FT_ERR_NOMEM;
}

static ft_status load_config(ft_tok *t, const json_t *cfg, ft_err *err) {
    t->config_add_bos = t->config_add_eos = -1;
    if (!cfg)
        return FT_OK;
    if (!json_is_object(cfg))
        return bad(err, "tokenizer_config.json", "expected an object");
    if (config_token(cfg, "bos_token", &t->bos_token) || config_token(cfg, "eos_token", &t->eos_token) ||
        config_token(cfg, "pad_token", &t->pad_token) || config_token(cfg, "unk_token", &t->unk_token))
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    const json_t *ab = json_object_get(cfg, "add_bos_token"), *ae = json_object_get(cfg, "add_eos_token");
    if (json_is_boolean(ab))
        t->config_add_bos = json_is_true(ab);
    if (json_is_boolean(ae))
        t->config_add_eos = json_is_true(ae);
    return FT_OK;
}

/* ---------------------------------------------------------------- public */

void ft_tok_free(ft_tok *t) {
    if (!t)
        return;
    for (size_t i = 0; i < t->vocab_cap; i++)
        ft_free(t->vocab_str[i]);
    ft_free(t->vocab_str);
    strmap_free(&t->vocab);
    strmap_free(&t->all_tokens);
    pairmap_free(&t->merges);
    ft_free(t->cont_prefix);
    ft_free(t->eow_suffix);
    if (t->norm) {
        free_norm(t->norm);
        ft_free(t->norm);
    }
    if (t->pre) {
        free_pre(t->pre);
        ft_free(t->pre);
    }
    if (t->dec) {
        tok_free_dec(t->dec);
        ft_free(t->dec);
    }
    ft_free(t->post_before);
    ft_free(t->post_after);
    for (size_t i = 0; i < t->n_added; i++) {
        ft_free(t->added[i].content);
        ft_free(t->added[i].norm);
    }
    ft_free(t->added);
    added_set_free(&t->set_raw);
    added_set_free(&t->set_norm);
    ft_free(t->special_flag);
    ft_free(t->bos_token);
    ft_free(t->eos_token);
    ft_free(t->pad_token);
    ft_free(t->unk_token);
    ft_free(t);
}

static ft_status build(ft_tok *t, const json_t *root, const json_t *cfg, ft_err *err) {
    if (!json_is_object(root))
        return bad(err, "tokenizer.json", "expected an object");
    const json_t *j;
    if ((j = json_object_get(root, "normalizer")) && !json_is_null(j)) {
        t->norm = ft_calloc(1, sizeof *t->norm);
        if (!t->norm)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        FT_TRY(load_norm(j, t->norm, "normalizer", err));
    }
    if ((j = json_object_get(root, "pre_tokenizer")) && !json_is_null(j)) {
        t->pre = ft_calloc(1, sizeof *t->pre);
        if (!t->pre)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        FT_TRY(load_pre(j, t->pre, "pre_tokenizer", err));
        t->byte_level = has_bytelevel(t->pre);
        if (t->byte_level && !bytelevel_is_last(t->pre))
            return FT_ERR(err, FT_ERR_UNSUPPORTED,
                          "pre_tokenizer: a ByteLevel step followed by other pre-tokenizers is not supported");
    }
    if ((j = json_object_get(root, "decoder")) && !json_is_null(j)) {
        t->dec = ft_calloc(1, sizeof *t->dec);
        if (!t->dec)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        FT_TRY(load_dec(j, t->dec, "decoder", err));
    }
    FT_TRY(load_model(t, json_object_get(root, "model"), err));
    if ((j = json_object_get(root, "post_processor")) && !json_is_null(j))
        FT_TRY(load_post(t, j, "post_processor", err));
    FT_TRY(load_added(t, json_object_get(root, "added_tokens"), err));
    FT_TRY(load_config_added(t, cfg, err));
    for (size_t i = 0; i < t->n_added; i++) {
        added_tok *a = &t->added[i];
        if (a->normalized && t->norm) {
            FT_TRY(tok_normalize_string(t, a->content, a->len, &a->norm, &a->norm_len, err));
            if (a->norm_len == a->len && !memcmp(a->norm, a->content, a->len)) {
                ft_free(a->norm);
                a->norm = NULL;
            }
        }
    }
    if (added_set_build(t, &t->set_raw, false) || added_set_build(t, &t->set_norm, true))
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    t->special_flag = ft_calloc(t->vocab_cap + 1, sizeof *t->special_flag);
    if (!t->special_flag)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].special) {
            /* `tokenizers` marks contents, so every id with a special content is special */
            int32_t id = strmap_get(&t->all_tokens, t->added[i].content, t->added[i].len);
            if (id >= 0 && (size_t)id < t->vocab_cap)
                t->special_flag[id] = true;
        }
    for (size_t i = 0; i < t->n_post_before; i++)
        if (t->post_before[i] < 0 || (size_t)t->post_before[i] >= t->vocab_cap || !t->vocab_str[t->post_before[i]])
            return FT_ERR(err, FT_ERR_INVALID, "post_processor: special token id %d is not in the vocabulary",
                          (int)t->post_before[i]);
    for (size_t i = 0; i < t->n_post_after; i++)
        if (t->post_after[i] < 0 || (size_t)t->post_after[i] >= t->vocab_cap || !t->vocab_str[t->post_after[i]])
            return FT_ERR(err, FT_ERR_INVALID, "post_processor: special token id %d is not in the vocabulary",
                          (int)t->post_after[i]);
    return load_config(t, cfg, err);
}

ft_status ft_tok_load_buf(const char *name, const char *json, size_t len, const char *config_json, size_t config_len,
                          ft_tok **out, ft_err *err) {
    *out = NULL;
    json_t *root = NULL, *cfg = NULL;
    FT_TRY(ft_json_load_buf(name ? name : "tokenizer.json", json, len, &root, err));
    if (config_json) {
        /* integers as reals: configs hold model_max_length = 1e30, beyond int64 */
        json_error_t je;
        cfg = json_loadb(config_json, config_len, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &je);
        if (!cfg) {
            json_decref(root);
            return FT_ERR_AT(err, FT_ERR_PARSE, "tokenizer_config.json", je.line, je.column, "invalid JSON: %s",
                             je.text);
        }
    }
    ft_tok *t = ft_calloc(1, sizeof *t);
    if (!t) {
        json_decref(root);
        json_decref(cfg);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    ft_status s = build(t, root, cfg, err);
    json_decref(root);
    json_decref(cfg);
    if (s) {
        if (name && err && !err->file[0])
            ft_err_prefix(err, "%s", name);
        ft_tok_free(t);
        return s;
    }
    *out = t;
    return FT_OK;
}

ft_status ft_tok_load(const char *path, ft_tok **out, ft_err *err) {
    *out = NULL;
    char *json_path = NULL, *cfg_path = NULL;
    if (ft_path_is_dir(path)) {
        json_path = ft_path_join(path, "tokenizer.json");
        cfg_path = ft_path_join(path, "tokenizer_config.json");
    } else {
        json_path = ft_strdup(path);
        const char *slash = strrchr(path, '/');
        if (slash) {
            char *dir = ft_strndup(path, (size_t)(slash - path));
            cfg_path = dir ? ft_path_join(dir, "tokenizer_config.json") : NULL;
            ft_free(dir);
        } else {
            cfg_path = ft_strdup("tokenizer_config.json");
        }
    }
    if (!json_path || !cfg_path) {
        ft_free(json_path);
        ft_free(cfg_path);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    char *data = NULL, *cdata = NULL;
    size_t n = 0, cn = 0;
    ft_status s = ft_file_read_all(json_path, &data, &n, err);
    if (!s && ft_path_exists(cfg_path))
        s = ft_file_read_all(cfg_path, &cdata, &cn, err);
    if (!s)
        s = ft_tok_load_buf(json_path, data, n, cdata, cn, out, err);
    ft_free(data);
    ft_free(cdata);
    ft_free(json_path);
    ft_free(cfg_path);
    return s;
}

/* ---------------------------------------------------------------- vocabulary queries */

size_t ft_tok_vocab_size(const ft_tok *t) {
    size_t n = t->vocab_cap;
    while (n > 0 && !t->vocab_str[n - 1])
        n--;
    return n;
}

int32_t ft_tok_token_to_id(const ft_tok *t, const char *token, size_t len) {
    return strmap_get(&t->all_tokens, token, len);
}

const char *ft_tok_id_to_token(const ft_tok *t, int32_t id) {
    if (id < 0 || (size_t)id >= t->vocab_cap)
        return NULL;
    return t->vocab_str[id];
}

bool ft_tok_is_special(const ft_tok *t, int32_t id) {
    return id >= 0 && (size_t)id < t->vocab_cap && t->special_flag[id];
}

void ft_tok_get_info(const ft_tok *t, ft_tok_info *info) {
    memset(info, 0, sizeof *info);
    info->bos_token = t->bos_token;
    info->eos_token = t->eos_token;
    info->pad_token = t->pad_token;
    info->unk_token = t->unk_token;
    info->bos_id = t->bos_token ? ft_tok_token_to_id(t, t->bos_token, strlen(t->bos_token)) : -1;
    info->eos_id = t->eos_token ? ft_tok_token_to_id(t, t->eos_token, strlen(t->eos_token)) : -1;
    info->pad_id = t->pad_token ? ft_tok_token_to_id(t, t->pad_token, strlen(t->pad_token)) : -1;
    info->unk_id = t->unk_id;
    info->post_adds_bos = t->n_post_before > 0;
    info->post_adds_eos = t->n_post_after > 0;
    info->post_bos_id = t->n_post_before ? t->post_before[t->n_post_before - 1] : -1;
    info->post_eos_id = t->n_post_after ? t->post_after[0] : -1;
    if (info->bos_id < 0)
        info->bos_id = info->post_bos_id;
    info->config_add_bos = t->config_add_bos;
    info->config_add_eos = t->config_add_eos;
}
