/* io/gguf.c: a Hugging Face Llama-family folder to one GGUF v3 file for llama.cpp (ftune/gguf.h
 * has the format and the layout). Three parts: the metadata block (hyper-parameters and the
 * tokenizer, built in memory: a few MiB even for a 128k vocabulary), the tensor plan (GGUF name,
 * source tensor, row permutation, type, offset), then the data streamed row by row from the
 * mmapped safetensors into a temporary file that is linked into place at the end. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftune/config.h"
#include "ftune/gguf.h"
#include "ftune/json.h"

enum { GGUF_ALIGN = 32, GGUF_VERSION = 3 };

/* GGUF metadata value types. */
enum {
    GT_U8 = 0, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STRING, GT_ARRAY, GT_U64, GT_I64,
    GT_F64
};
/* ggml tensor types used here. */
enum { GGML_F32 = 0, GGML_F16 = 1, GGML_BF16 = 30 };
/* llama.cpp's token types (llama_token_type). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

ft_gguf_export_params ft_gguf_export_default_params(void) {
    return (ft_gguf_export_params){.dtype = FT_ST_DTYPE_F32, .overwrite = false, .name = NULL, .durable = true};
}

/* ---------------------------------------------------------------- metadata block */

typedef struct meta {
    ft_buf b;
    uint64_t n_kv;
    ft_status s; /* first failure (allocation), checked once at the end */
} meta;

static void put(meta *m, const void *p, size_t n) {
    if (m->s == FT_OK)
        m->s = ft_buf_append(&m->b, p, n);
}
static void put_u32(meta *m, uint32_t v) { put(m, &v, 4); }
static void put_i32(meta *m, int32_t v) { put(m, &v, 4); }
static void put_u64(meta *m, uint64_t v) { put(m, &v, 8); }
static void put_f32(meta *m, float v) { put(m, &v, 4); }
static void put_strn(meta *m, const char *s, size_t n) {
    put_u64(m, n);
    put(m, s, n);
}
static void put_str(meta *m, const char *s) { put_strn(m, s, strlen(s)); }

static void key(meta *m, const char *k, uint32_t type) {
    put_str(m, k);
    put_u32(m, type);
    m->n_kv++;
}
static void kv_str(meta *m, const char *k, const char *v) {
    key(m, k, GT_STRING);
    put_str(m, v);
}
static void kv_u32(meta *m, const char *k, uint32_t v) {
    key(m, k, GT_U32);
    put_u32(m, v);
}
static void kv_f32(meta *m, const char *k, float v) {
    key(m, k, GT_F32);
    put_f32(m, v);
}
static void kv_bool(meta *m, const char *k, bool v) {
    key(m, k, GT_BOOL);
    uint8_t b = v;
    put(m, &b, 1);
}
/* An array header; the caller puts the n elements. */
static void kv_array(meta *m, const char *k, uint32_t elem_type, uint64_t n) {
    key(m, k, GT_ARRAY);
    put_u32(m, elem_type);
    put_u64(m, n);
}

/* ---------------------------------------------------------------- RoPE */

void ft_gguf_llama3_rope_factors(int64_t head_dim, double theta, double factor, double low_freq_factor,
                                 double high_freq_factor, int64_t original_max_positions, float *out) {
    /* transformers' _compute_llama3_parameters: wavelengths shorter than old_ctx / high keep their
     * frequency, longer than old_ctx / low are divided by `factor`, in between a smooth blend. */
    double old_ctx = (double)original_max_positions;
    double low_wl = old_ctx / low_freq_factor, high_wl = old_ctx / high_freq_factor;
    for (int64_t i = 0; i < head_dim / 2; i++) {
        double inv = 1.0 / pow(theta, (double)(2 * i) / (double)head_dim);
        double wl = 2.0 * M_PI / inv, scaled;
        if (wl < high_wl)
            scaled = inv;
        else if (wl > low_wl)
            scaled = inv / factor;
        else {
            double smooth = (old_ctx / wl - low_freq_factor) / (high_freq_factor - low_freq_factor);
            scaled = (1.0 - smooth) * inv / factor + smooth * inv;
        }
        out[i] = (float)(inv / scaled);
    }
}

/* ---------------------------------------------------------------- tokenizer */

/* The token table of a tokenizer.json, sized to the model's vocabulary. */
typedef struct vocab {
    int64_t n;
    const char **tok; /* borrowed from the JSON, or pads[] */
    int32_t *type;
    char (*pads)[24];
    bool spm; /* "llama" (sentencepiece-style) rather than "gpt2" (byte-level) */
} vocab;

static void vocab_free(vocab *v) {
    ft_free(v->tok);
    ft_free(v->type);
    ft_free(v->pads);
}

static bool is_byte_token(const char *s) { /* "<0x0A>" */
    return strlen(s) == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
           strchr("0123456789ABCDEFabcdef", s[3]) && strchr("0123456789ABCDEFabcdef", s[4]);
}

/* Whether a normalizer / pre-tokenizer tree holds a node of `type` (Sequence nodes looked into). */
static const json_t *find_node(const json_t *n, const char *type) {
    if (!json_is_object(n))
        return NULL;
    const char *t = json_string_value(json_object_get(n, "type"));
    if (t && !strcmp(t, type))
        return n;
    const char *lists[] = {"normalizers", "pretokenizers", "processors", "decoders"};
    for (size_t k = 0; k < sizeof lists / sizeof *lists; k++) {
        const json_t *arr = json_object_get(n, lists[k]), *e;
        size_t i;
        json_array_foreach(arr, i, e) {
            const json_t *f = find_node(e, type);
            if (f)
                return f;
        }
    }
    return NULL;
}

/* Llama 3's pre-tokenizer split pattern (tokenizer.json of every Llama 3.x), which llama.cpp
 * knows as pre-tokenizer "llama-bpe". */
static const char LLAMA3_SPLIT[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                   "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* "bos_token": "<s>" or {"content": "<s>"} in tokenizer_config.json. */
static const char *special_content(const json_t *tc, const char *k) {
    const json_t *v = json_object_get(tc, k);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int64_t find_token(const vocab *v, const char *s) {
    if (!s)
        return -1;
    for (int64_t i = 0; i < v->n; i++) /* added tokens first would be faster; this runs a few times */
        if (v->tok[i] && !strcmp(v->tok[i], s))
            return i;
    return -1;
}

/* Whether the post-processor's single-sequence template starts (or ends) with special token
 * `content`: that is how tokenizer.json says "add BOS" (Llama 3.x, Mistral). */
static bool template_adds(const json_t *post, const char *content, bool at_end) {
    const json_t *tp = find_node(post, "TemplateProcessing");
    const json_t *single = json_object_get(tp, "single");
    if (!content || !json_is_array(single) || json_array_size(single) == 0)
        return false;
    const json_t *e = json_array_get(single, at_end ? json_array_size(single) - 1 : 0);
    const char *id = json_string_value(json_object_get(json_object_get(e, "SpecialToken"), "id"));
    return id && !strcmp(id, content);
}

static ft_status read_chat_template(const char *dir, const json_t *tc, meta *m, bool *has, ft_err *err) {
    *has = false;
    const json_t *ct = json_object_get(tc, "chat_template");
    if (json_is_string(ct)) {
        kv_str(m, "tokenizer.chat_template", json_string_value(ct));
        *has = true;
        return FT_OK;
    }
    if (json_is_array(ct)) { /* [{"name": "default", "template": ...}, {"name": "tool_use", ...}] */
        size_t i;
        const json_t *e;
        json_array_foreach(ct, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            const char *t = json_string_value(json_object_get(e, "template"));
            if (!name || !t)
                continue;
            if (!strcmp(name, "default")) {
                kv_str(m, "tokenizer.chat_template", t);
                *has = true;
            } else {
                char k[160];
                snprintf(k, sizeof k, "tokenizer.chat_template.%s", name);
                kv_str(m, k, t);
            }
        }
        return FT_OK;
    }
    char *p = ft_path_join(dir, "chat_template.jinja");
    if (!p)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_status s = FT_OK;
    if (ft_path_exists(p)) {
        char *t = NULL;
        size_t n = 0;
        s = ft_file_read_all(p, &t, &n, err);
        if (s == FT_OK) {
            kv_str(m, "tokenizer.chat_template", t);
            *has = true;
        }
        ft_free(t);
    }
    ft_free(p);
    return s;
}

/* The tokenizer.* keys from tokenizer.json (+ tokenizer_config.json, config ids as fallback). */
static ft_status write_tokenizer(const char *dir, const ft_model_config *c, meta *m, ft_gguf_export_info *info,
                                 ft_err *err) {
    char *tp = ft_path_join(dir, "tokenizer.json"), *cp = ft_path_join(dir, "tokenizer_config.json");
    json_t *tok = NULL, *tc = NULL;
    vocab v = {0};
    ft_status s = FT_OK;
    if (!tp || !cp) {
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!ft_path_exists(tp)) {
        s = FT_ERR(err, FT_ERR_NOT_FOUND,
                   "%s: not found; a GGUF file carries its tokenizer, so the model folder needs tokenizer.json "
                   "(copy it from the base model)",
                   tp);
        goto done;
    }
    if ((s = ft_json_load_file(tp, &tok, err)) != FT_OK)
        goto done;
    if (ft_path_exists(cp) && (s = ft_json_load_file(cp, &tc, err)) != FT_OK)
        goto done;
    const json_t *model = json_object_get(tok, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    const json_t *vj = json_object_get(model, "vocab");
    if (!mtype || strcmp(mtype, "BPE") || !json_is_object(vj)) {
        s = FT_ERR(err, FT_ERR_UNSUPPORTED,
                   "%s: model type %s: GGUF export supports BPE tokenizers (Llama 3 byte-level, Llama 2 / "
                   "Mistral sentencepiece-style)",
                   tp, mtype ? mtype : "(none)");
        goto done;
    }
    const json_t *pre = json_object_get(tok, "pre_tokenizer"), *norm = json_object_get(tok, "normalizer");
    bool byte_level = find_node(pre, "ByteLevel") != NULL;
    bool byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    const json_t *metaspace = find_node(pre, "Metaspace");
    const json_t *prepend = find_node(norm, "Prepend");
    if (!byte_level && !byte_fallback && !metaspace && !prepend) {
        s = FT_ERR(err, FT_ERR_UNSUPPORTED,
                   "%s: neither a byte-level BPE (Llama 3) nor a sentencepiece-style BPE (Llama 2, Mistral): "
                   "llama.cpp's tokenizers would not read it the same",
                   tp);
        goto done;
    }
    v.spm = !byte_level;
    v.n = c->vocab_size;
    v.tok = ft_calloc((size_t)v.n, sizeof *v.tok);
    v.type = ft_calloc((size_t)v.n, sizeof *v.type);
    if (!v.tok || !v.type) {
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    const char *k;
    const json_t *e;
    int64_t n_missing = 0;
    json_object_foreach((json_t *)vj, k, e) {
        int64_t id = json_is_integer(e) ? json_integer_value(e) : -1;
        if (id < 0 || id >= v.n) {
            s = FT_ERR(err, FT_ERR_INVALID,
                       "%s: token \"%s\" has id %lld, outside the model's vocabulary (vocab_size %lld in "
                       "config.json): the tokenizer does not belong to this model",
                       tp, k, (long long)id, (long long)v.n);
            goto done;
        }
        v.tok[id] = k;
        v.type[id] = v.spm && byte_fallback && is_byte_token(k) ? TT_BYTE : TT_NORMAL;
    }
    size_t i;
    json_array_foreach(json_object_get(tok, "added_tokens"), i, e) {
        const json_t *idj = json_object_get(e, "id");
        const char *content = json_string_value(json_object_get(e, "content"));
        int64_t id = json_is_integer(idj) ? json_integer_value(idj) : -1;
        if (!content || id < 0 || id >= v.n) {
            s = FT_ERR(err, FT_ERR_INVALID,
                       "%s: added_tokens[%zu] (\"%s\", id %lld) is outside the model's vocabulary (vocab_size "
                       "%lld in config.json)",
                       tp, i, content ? content : "?", (long long)id, (long long)v.n);
            goto done;
        }
        v.tok[id] = content;
        v.type[id] = json_is_true(json_object_get(e, "special")) ? TT_CONTROL : TT_USER_DEFINED;
    }
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    int64_t unk_id = find_token(&v, unk);
    if (unk_id >= 0 && v.spm)
        v.type[unk_id] = TT_UNKNOWN;
    /* A model vocabulary larger than the tokenizer's (padded for speed): llama.cpp needs one entry
     * per row of the embedding, so the rest are unused placeholders, as its converter writes. */
    for (int64_t id = 0; id < v.n; id++)
        if (!v.tok[id])
            n_missing++;
    if (n_missing) {
        v.pads = ft_calloc((size_t)n_missing, sizeof *v.pads);
        if (!v.pads) {
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            goto done;
        }
        int64_t j = 0;
        for (int64_t id = 0; id < v.n; id++)
            if (!v.tok[id]) {
                snprintf(v.pads[j], sizeof v.pads[j], "[PAD%lld]", (long long)id);
                v.tok[id] = v.pads[j++];
                v.type[id] = TT_UNUSED;
            }
    }

    kv_str(m, "tokenizer.ggml.model", v.spm ? "llama" : "gpt2");
    if (!v.spm) {
        const json_t *split = find_node(pre, "Split");
        const char *rx = json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex"));
        const json_t *bl = find_node(pre, "ByteLevel");
        const char *pre_name = NULL;
        if (rx && !strcmp(rx, LLAMA3_SPLIT))
            pre_name = "llama-bpe";
        else if (!split && json_is_true(json_object_get(bl, "use_regex")))
            pre_name = "gpt-2";
        if (!pre_name) {
            s = FT_ERR(err, FT_ERR_UNSUPPORTED,
                       "%s: pre-tokenizer split pattern %s is not one ftune maps to a llama.cpp pre-tokenizer "
                       "(known: Llama 3's \"llama-bpe\", GPT-2's)",
                       tp, rx ? rx : "(none)");
            goto done;
        }
        kv_str(m, "tokenizer.ggml.pre", pre_name);
    } else {
        kv_str(m, "tokenizer.ggml.pre", "default");
    }
    kv_array(m, "tokenizer.ggml.tokens", GT_STRING, (uint64_t)v.n);
    for (int64_t id = 0; id < v.n; id++)
        put_str(m, v.tok[id]);
    if (v.spm) {
        /* llama.cpp's sentencepiece tokenizer merges the adjacent pair whose union has the highest
         * score; a BPE sentencepiece vocabulary is in merge order, so -id ranks as its merges do. */
        kv_array(m, "tokenizer.ggml.scores", GT_F32, (uint64_t)v.n);
        for (int64_t id = 0; id < v.n; id++)
            put_f32(m, v.type[id] == TT_NORMAL ? -(float)id : 0.0f);
    }
    kv_array(m, "tokenizer.ggml.token_type", GT_I32, (uint64_t)v.n);
    for (int64_t id = 0; id < v.n; id++)
        put_i32(m, v.type[id]);
    if (!v.spm) {
        const json_t *merges = json_object_get(model, "merges");
        kv_array(m, "tokenizer.ggml.merges", GT_STRING, json_array_size(merges));
        json_array_foreach(merges, i, e) {
            if (json_is_string(e)) {
                put_str(m, json_string_value(e));
            } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                       json_is_string(json_array_get(e, 1))) { /* newer tokenizers: ["a", "b"] */
                const char *a = json_string_value(json_array_get(e, 0)), *b = json_string_value(json_array_get(e, 1));
                size_t la = strlen(a), lb = strlen(b);
                put_u64(m, la + 1 + lb);
                put(m, a, la);
                put(m, " ", 1);
                put(m, b, lb);
            } else {
                s = FT_ERR(err, FT_ERR_INVALID, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", tp, i);
                goto done;
            }
        }
    }
    int64_t bos = find_token(&v, special_content(tc, "bos_token"));
    int64_t eos = find_token(&v, special_content(tc, "eos_token"));
    int64_t pad = find_token(&v, special_content(tc, "pad_token"));
    if (bos < 0)
        bos = c->bos_token_id;
    if (eos < 0 && c->n_eos > 0)
        eos = c->eos_token_ids[0];
    if (pad < 0)
        pad = c->pad_token_id;
    if (bos >= 0 && bos < v.n)
        kv_u32(m, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (eos >= 0 && eos < v.n)
        kv_u32(m, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (unk_id >= 0)
        kv_u32(m, "tokenizer.ggml.unknown_token_id", (uint32_t)unk_id);
    if (pad >= 0 && pad < v.n)
        kv_u32(m, "tokenizer.ggml.padding_token_id", (uint32_t)pad);
    /* add_bos/add_eos: tokenizer_config.json says so explicitly (Llama 2, Mistral), else the
     * post-processor's template does (Llama 3.x). */
    const json_t *post = json_object_get(tok, "post_processor");
    const json_t *ab = json_object_get(tc, "add_bos_token"), *ae = json_object_get(tc, "add_eos_token");
    bool add_bos = json_is_boolean(ab) ? json_is_true(ab) : template_adds(post, bos >= 0 ? v.tok[bos] : NULL, false);
    bool add_eos = json_is_boolean(ae) ? json_is_true(ae) : template_adds(post, eos >= 0 ? v.tok[eos] : NULL, true);
    kv_bool(m, "tokenizer.ggml.add_bos_token", add_bos);
    kv_bool(m, "tokenizer.ggml.add_eos_token", add_eos);
    if (v.spm) {
        /* "▁" put before the text: a Prepend normalizer (legacy Llama 2 / Mistral) or a
         * Metaspace pre-tokenizer whose prepend_scheme is not "never". */
        const char *scheme = json_string_value(json_object_get(metaspace, "prepend_scheme"));
        bool add_prefix = prepend != NULL || (metaspace && !(scheme && !strcmp(scheme, "never")) &&
                                              !json_is_false(json_object_get(metaspace, "add_prefix_space")));
        kv_bool(m, "tokenizer.ggml.add_space_prefix", add_prefix);
    }
    bool has_tpl = false;
    s = read_chat_template(dir, tc, m, &has_tpl, err);
    if (info) {
        info->n_tokens = v.n;
        snprintf(info->tokenizer_model, sizeof info->tokenizer_model, "%s", v.spm ? "llama" : "gpt2");
        info->has_chat_template = has_tpl;
    }
done:
    vocab_free(&v);
    json_decref(tok);
    json_decref(tc);
    ft_free(tp);
    ft_free(cp);
    return s;
}

/* ---------------------------------------------------------------- tensor plan */

typedef enum { PERM_NONE = 0, PERM_HEADS } perm_kind;

typedef struct plan_t {
    char name[64];
    const ft_st_tensor *src; /* NULL: `own` holds the values (rope_freqs) */
    float *own;
    int ndim;
    int64_t rows, cols; /* rows x cols, row-major (ndim 1: rows 1) */
    perm_kind perm;
    int64_t heads; /* PERM_HEADS: heads of head_dim rows each */
    uint32_t type;
    uint64_t offset, nbytes;
} plan_t;

static size_t ggml_size(uint32_t type) { return type == GGML_F32 ? 4 : 2; }

static uint64_t align_up(uint64_t x) { return (x + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN; }

/* The GGUF name of an HF tensor name (ft_model_config_tensors' names). */
static bool gguf_name(const char *hf, char *out, size_t cap) {
    static const struct {
        const char *hf, *gg;
    } layer_map[] = {
        {"input_layernorm.weight", "attn_norm.weight"}, {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},   {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},    {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    if (!strcmp(hf, "model.embed_tokens.weight"))
        return snprintf(out, cap, "token_embd.weight"), true;
    if (!strcmp(hf, "model.norm.weight"))
        return snprintf(out, cap, "output_norm.weight"), true;
    if (!strcmp(hf, "lm_head.weight"))
        return snprintf(out, cap, "output.weight"), true;
    long layer;
    int used = 0;
    if (sscanf(hf, "model.layers.%ld.%n", &layer, &used) == 1 && used > 0)
        for (size_t i = 0; i < sizeof layer_map / sizeof *layer_map; i++)
            if (!strcmp(hf + used, layer_map[i].hf))
                return snprintf(out, cap, "blk.%ld.%s", layer, layer_map[i].gg), true;
    return false;
}

/* ---------------------------------------------------------------- data */

static float src_at(const ft_st_tensor *t, int64_t i) {
    const uint8_t *p = (const uint8_t *)t->data;
    if (t->dtype == FT_ST_DTYPE_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t->dtype == FT_ST_DTYPE_BF16 ? ft_st_bf16_to_f32(h) : ft_st_f16_to_f32(h);
}

typedef struct out_file {
    FILE *f;
    const char *path;
    uint64_t pos;
} out_file;

static ft_status out_write(out_file *o, const void *p, size_t n, ft_err *err) {
    if (n && fwrite(p, 1, n, o->f) != n)
        return FT_ERR(err, FT_ERR_IO, "%s: write failed: %s", o->path, strerror(errno));
    o->pos += n;
    return FT_OK;
}

static ft_status out_pad(out_file *o, ft_err *err) {
    static const uint8_t zeros[GGUF_ALIGN];
    return out_write(o, zeros, (size_t)(align_up(o->pos) - o->pos), err);
}

/* One tensor's rows, converted, permuted, in its GGUF type. */
static ft_status write_tensor(out_file *o, const plan_t *t, void *row_buf, ft_err *err) {
    const int64_t R = t->rows, Cn = t->cols;
    const int64_t hd = t->perm == PERM_HEADS ? R / t->heads : 0;
    for (int64_t r = 0; r < R; r++) {
        /* HF keeps each head's rotary pairs as halves (rotate_half); llama.cpp rotates adjacent
         * pairs: output row 2i + j of a head is input row j * hd/2 + i. */
        int64_t src_row = r;
        if (t->perm == PERM_HEADS) {
            int64_t h = r / hd, w = r % hd, i = w / 2, j = w % 2;
            src_row = h * hd + j * (hd / 2) + i;
        }
        for (int64_t c = 0; c < Cn; c++) {
            float f = t->own ? t->own[src_row * Cn + c] : src_at(t->src, src_row * Cn + c);
            if (t->type == GGML_F32)
                ((float *)row_buf)[c] = f;
            else if (t->type == GGML_F16)
                ((uint16_t *)row_buf)[c] = ft_st_f32_to_f16(f);
            else
                ((uint16_t *)row_buf)[c] = ft_st_f32_to_bf16(f);
        }
        FT_TRY(out_write(o, row_buf, (size_t)Cn * ggml_size(t->type), err));
    }
    return FT_OK;
}

/* ---------------------------------------------------------------- export */

ft_status ft_gguf_export(const char *model_dir, const char *out_path, const ft_gguf_export_params *pp,
                         ft_gguf_export_info *info, ft_err *err) {
    ft_gguf_export_params p = pp ? *pp : ft_gguf_export_default_params();
    if (info)
        memset(info, 0, sizeof *info);
    if (p.dtype != FT_ST_DTYPE_F32 && p.dtype != FT_ST_DTYPE_F16 && p.dtype != FT_ST_DTYPE_BF16)
        return FT_ERR(err, FT_ERR_INVALID, "gguf export: dtype %s: expected F32, F16 or BF16", ft_st_dtype_name(p.dtype));
    if (ft_path_is_dir(out_path))
        return FT_ERR(err, FT_ERR_INVALID, "%s is a folder; give the path of the .gguf file to write", out_path);
    if (!p.overwrite && ft_path_exists(out_path))
        return FT_ERR(err, FT_ERR_INVALID, "%s already exists; choose another name or pass --force to replace it",
                      out_path);
    char *out_dir = ft_path_parent(out_path);
    bool dir_ok = out_dir && ft_path_is_dir(out_dir);
    if (!dir_ok) {
        ft_status e = out_dir ? FT_ERR(err, FT_ERR_NOT_FOUND, "%s: the folder %s does not exist; create it first",
                                       out_path, out_dir)
                              : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        ft_free(out_dir);
        return e;
    }
    ft_free(out_dir);

    ft_model_config c;
    char *cfg_path = ft_path_join(model_dir, "config.json");
    if (!cfg_path)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_status s = ft_model_config_load(cfg_path, &c, err);
    ft_free(cfg_path);
    FT_TRY(s);
    if (strcmp(c.model_type, "llama") && strcmp(c.model_type, "mistral"))
        return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: model_type %s: GGUF export writes Llama-family models", model_dir,
                      c.model_type);

    meta m = {0};
    ft_st_reader *r = NULL;
    plan_t *plan = NULL;
    size_t n_plan = 0;
    ft_tensor_spec *specs = NULL;
    float *rope = NULL;
    void *row_buf = NULL;
    out_file o = {0};
    char *tmp = NULL, *dir = NULL;
    int fd = -1;
    bool linked = false;

    /* general.* and llama.* */
    const char *name = p.name;
    char base[256];
    if (!name) {
        const char *end = model_dir + strlen(model_dir);
        while (end > model_dir && end[-1] == '/')
            end--;
        const char *start = end;
        while (start > model_dir && start[-1] != '/')
            start--;
        snprintf(base, sizeof base, "%.*s", (int)(end - start), start);
        name = base[0] ? base : "model";
    }
    uint32_t ftype = p.dtype == FT_ST_DTYPE_F32 ? 0 : p.dtype == FT_ST_DTYPE_F16 ? 1 : 32; /* llama_ftype */
    kv_str(&m, "general.architecture", "llama");
    kv_str(&m, "general.type", "model");
    kv_str(&m, "general.name", name);
    kv_u32(&m, "general.file_type", ftype);
    kv_u32(&m, "general.quantization_version", 2);
    kv_u32(&m, "general.alignment", GGUF_ALIGN);
    kv_u32(&m, "llama.context_length", (uint32_t)c.max_position_embeddings);
    kv_u32(&m, "llama.embedding_length", (uint32_t)c.hidden_size);
    kv_u32(&m, "llama.block_count", (uint32_t)c.num_hidden_layers);
    kv_u32(&m, "llama.feed_forward_length", (uint32_t)c.intermediate_size);
    kv_u32(&m, "llama.attention.head_count", (uint32_t)c.num_attention_heads);
    kv_u32(&m, "llama.attention.head_count_kv", (uint32_t)c.num_key_value_heads);
    kv_u32(&m, "llama.attention.key_length", (uint32_t)c.head_dim);
    kv_u32(&m, "llama.attention.value_length", (uint32_t)c.head_dim);
    kv_u32(&m, "llama.rope.dimension_count", (uint32_t)c.head_dim);
    kv_f32(&m, "llama.rope.freq_base", (float)c.rope_theta);
    kv_f32(&m, "llama.attention.layer_norm_rms_epsilon", (float)c.rms_norm_eps);
    kv_u32(&m, "llama.vocab_size", (uint32_t)c.vocab_size);
    if ((s = write_tokenizer(model_dir, &c, &m, info, err)) != FT_OK)
        goto done;
    if ((s = m.s) != FT_OK) {
        FT_ERR(err, s, "gguf export: out of memory");
        goto done;
    }

    /* The tensor plan. */
    if ((s = ft_st_open(model_dir, &r, err)) != FT_OK)
        goto done;
    size_t n_specs = ft_model_config_tensors(&c, NULL, 0);
    specs = ft_calloc(n_specs, sizeof *specs);
    plan = ft_calloc(n_specs + 1, sizeof *plan);
    if (!specs || !plan) {
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    ft_model_config_tensors(&c, specs, n_specs);
    uint64_t off = 0;
    for (size_t i = 0; i < n_specs; i++) {
        plan_t *t = &plan[n_plan];
        if ((s = ft_st_get(r, specs[i].name, specs[i].ndim, specs[i].shape, &t->src, err)) != FT_OK)
            goto done;
        if (t->src->dtype != FT_ST_DTYPE_F32 && t->src->dtype != FT_ST_DTYPE_BF16 && t->src->dtype != FT_ST_DTYPE_F16) {
            s = FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: tensor %s is %s; GGUF export reads F32, BF16 and F16",
                       t->src->file, specs[i].name, ft_st_dtype_name(t->src->dtype));
            goto done;
        }
        if (!gguf_name(specs[i].name, t->name, sizeof t->name)) {
            s = FT_ERR(err, FT_ERR_INTERNAL, "gguf export: no GGUF name for %s", specs[i].name);
            goto done;
        }
        t->ndim = specs[i].ndim;
        t->rows = t->ndim == 2 ? specs[i].shape[0] : 1;
        t->cols = t->ndim == 2 ? specs[i].shape[1] : specs[i].shape[0];
        if (strstr(specs[i].name, "q_proj"))
            t->perm = PERM_HEADS, t->heads = c.num_attention_heads;
        else if (strstr(specs[i].name, "k_proj"))
            t->perm = PERM_HEADS, t->heads = c.num_key_value_heads;
        n_plan++;
    }
    if (c.rope_scaling == FT_ROPE_LLAMA3) {
        rope = ft_calloc((size_t)(c.head_dim / 2), sizeof *rope);
        if (!rope) {
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            goto done;
        }
        ft_gguf_llama3_rope_factors(c.head_dim, c.rope_theta, c.rope_factor, c.rope_low_freq_factor,
                                    c.rope_high_freq_factor, c.rope_original_max_position_embeddings, rope);
        plan_t *t = &plan[n_plan++];
        snprintf(t->name, sizeof t->name, "rope_freqs.weight");
        t->own = rope;
        t->ndim = 1;
        t->rows = 1;
        t->cols = c.head_dim / 2;
    }
    int64_t widest = 0;
    for (size_t i = 0; i < n_plan; i++) {
        plan_t *t = &plan[i];
        t->type = t->ndim == 1 ? GGML_F32
                  : p.dtype == FT_ST_DTYPE_F32 ? GGML_F32
                  : p.dtype == FT_ST_DTYPE_F16 ? GGML_F16
                                               : GGML_BF16;
        t->offset = off;
        t->nbytes = (uint64_t)t->rows * (uint64_t)t->cols * ggml_size(t->type);
        off = align_up(off + t->nbytes);
        if (t->cols > widest)
            widest = t->cols;
    }
    row_buf = ft_malloc((size_t)widest * 4);
    if (!row_buf) {
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        goto done;
    }

    /* Header, metadata, tensor infos, then the data, into a temporary file beside out_path. */
    tmp = ft_asprintf("%s.tmp-%ld", out_path, (long)getpid());
    dir = ft_path_parent(out_path);
    if (!tmp || !dir) {
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || !(o.f = fdopen(fd, "wb"))) {
        s = FT_ERR(err, FT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    fd = -1;
    o.path = tmp;
    setvbuf(o.f, NULL, _IOFBF, 1 << 20);
    meta hdr = {0};
    put(&hdr, "GGUF", 4);
    put_u32(&hdr, GGUF_VERSION);
    put_u64(&hdr, n_plan);
    put_u64(&hdr, m.n_kv);
    for (size_t i = 0; i < n_plan; i++) { /* tensor infos go after the metadata: append them to it */
        const plan_t *t = &plan[i];
        put_str(&m, t->name);
        put_u32(&m, (uint32_t)t->ndim);
        put_u64(&m, (uint64_t)t->cols); /* ne[0]: the innermost (contiguous) dimension */
        if (t->ndim == 2)
            put_u64(&m, (uint64_t)t->rows);
        put_u32(&m, t->type);
        put_u64(&m, t->offset);
    }
    if ((s = hdr.s) != FT_OK || (s = m.s) != FT_OK) {
        ft_buf_free(&hdr.b);
        FT_ERR(err, s, "gguf export: out of memory");
        goto done;
    }
    s = out_write(&o, hdr.b.data, hdr.b.len, err);
    ft_buf_free(&hdr.b);
    if (s == FT_OK)
        s = out_write(&o, m.b.data, m.b.len, err);
    if (s == FT_OK)
        s = out_pad(&o, err);
    uint64_t data_start = o.pos;
    for (size_t i = 0; s == FT_OK && i < n_plan; i++) {
        FT_ASSERT(o.pos == data_start + plan[i].offset);
        s = write_tensor(&o, &plan[i], row_buf, err);
        if (s == FT_OK && i + 1 < n_plan)
            s = out_pad(&o, err);
    }
    if (s != FT_OK)
        goto done;
    if (fflush(o.f) != 0 || (p.durable && fsync(fileno(o.f)) != 0)) {
        s = FT_ERR(err, FT_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        goto done;
    }
    int rc = fclose(o.f);
    o.f = NULL;
    if (rc != 0) {
        s = FT_ERR(err, FT_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        goto done;
    }
    /* Into place: rename replaces; link refuses an existing name (one created meanwhile too). */
    if (p.overwrite) {
        if (rename(tmp, out_path) != 0) {
            s = FT_ERR(err, FT_ERR_IO, "%s: cannot rename into place: %s", out_path, strerror(errno));
            goto done;
        }
    } else if (link(tmp, out_path) != 0) {
        int e = errno;
        if (e == EEXIST)
            s = FT_ERR(err, FT_ERR_INVALID, "%s already exists; choose another name or pass --force to replace it",
                       out_path);
        else
            s = FT_ERR(err, FT_ERR_IO, "%s: cannot link into place: %s", out_path, strerror(e));
        goto done;
    } else {
        unlink(tmp);
    }
    linked = true;
    if (p.durable && (s = ft_fsync_path(dir, err)) != FT_OK)
        goto done;
    if (info) {
        info->n_tensors = (int64_t)n_plan;
        info->bytes = o.pos;
    }
done:
    if (o.f)
        fclose(o.f);
    if (fd >= 0)
        close(fd);
    if (tmp && !linked)
        unlink(tmp);
    ft_free(tmp);
    ft_free(dir);
    ft_free(row_buf);
    ft_free(rope);
    ft_free(plan);
    ft_free(specs);
    ft_st_close(r);
    ft_buf_free(&m.b);
    return s;
}
