/* model/decode.c: KV-cache decoding for generation (batch 1). The cache keeps every layer's
 * keys (after RoPE) and values for the tokens seen so far; ft_model_decode appends tokens,
 * running them through the model in chunks of up to DC rows (a long prompt is prefilled DC
 * tokens at a time, so the work buffers stay small), with attention over the cache
 * (query i at position len + i sees keys 0..len + i). The same layer body as training
 * (model_layer_forward). A cache is a decoding workspace: any number of them can use one model. */
#include <omp.h>
#include <string.h>

#include "internal.h"

enum { DC = 64 }; /* rows per decode chunk */

struct ft_kv_cache {
    const ft_model *m;
    int64_t max_tokens, len;
    int64_t threads; /* threads the attention scratch is sized for */
    float *k, *v; /* (L, max_tokens, KV) each */
    /* work buffers for DC rows */
    float *x, *xn, *qkv, *att, *abuf, *gu, *h, *cos_t, *sin_t, *scratch;
    int32_t *pos;
    /* mixture of experts: router and grouping for DC rows, gathered rows (DC K, C) */
    float *probs, *selw, *xe, *ye;
    int32_t *sel, *rowof, *tok;
    int64_t *offs;
    ft_arena arena; /* one mapping with huge pages: the cache can be gigabytes */
};

ft_status ft_kv_cache_new(const ft_model *m, int64_t max_tokens, ft_kv_cache **out, ft_err *err) {
    *out = NULL;
    if (max_tokens <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "kv cache: max_tokens must be positive");
    ft_kv_cache *c = ft_calloc(1, sizeof *c);
    if (!c)
        return FT_ERR(err, FT_ERR_NOMEM, "kv cache: out of memory");
    c->m = m;
    c->max_tokens = max_tokens;
    c->threads = omp_get_max_threads();
    ft_attn_shape as = {.B = 1, .Tq = DC, .Tk = max_tokens, .NH = m->NH, .KVH = m->KVH, .HD = m->HD,
                        .threads = c->threads};
    size_t scratch = ft_tensor_attention_scratch(&as);
    size_t kv = (size_t)(m->L * max_tokens * m->KV);
    const int64_t K = m->E > 0 ? m->K : 1; /* rows of gate/up per token */
    size_t moe = m->E > 0 ? (size_t)DC * (size_t)(m->E + 4 * K + 2 * K * m->C) + 2 * (size_t)(m->E + 1) + 16 : 0;
    size_t total =
        2 * kv + (size_t)DC * (size_t)(2 * m->C + m->QKV + 2 * m->Q + 3 * K * m->F + m->HD) + scratch + DC + moe;
    float *p = NULL;
    if (ft_arena_init(&c->arena, "kv cache", total * sizeof(float) + 64, err) != FT_OK ||
        !(p = ft_arena_alloc(&c->arena, total * sizeof(float), err))) {
        ft_arena_deinit(&c->arena);
        ft_free(c);
        return FT_ERR_NOMEM;
    }
    c->k = p, p += kv;
    c->v = p, p += kv;
    c->x = p, p += DC * m->C;
    c->xn = p, p += DC * m->C;
    c->qkv = p, p += DC * m->QKV;
    c->att = p, p += DC * m->Q;
    c->abuf = p, p += DC * m->Q; /* bf16: the rounded attention output */
    c->gu = p, p += DC * K * 2 * m->F;
    c->h = p, p += DC * K * m->F;
    if (m->E > 0) {
        c->probs = p, p += DC * m->E;
        c->selw = p, p += DC * K;
        c->xe = p, p += DC * K * m->C;
        c->ye = p, p += DC * K * m->C;
        c->sel = (int32_t *)p, p += DC * K;
        c->rowof = (int32_t *)p, p += DC * K;
        c->tok = (int32_t *)p, p += DC * K;
        p += (uintptr_t)p % 8 ? 1 : 0; /* int64 alignment */
        c->offs = (int64_t *)p, p += 2 * (m->E + 1);
    }
    c->cos_t = p, p += DC * (m->HD / 2);
    c->sin_t = p, p += DC * (m->HD / 2);
    c->scratch = p, p += scratch;
    c->pos = (int32_t *)p;
    *out = c;
    return FT_OK;
}

void ft_kv_cache_free(ft_kv_cache *c) {
    if (!c)
        return;
    ft_arena_deinit(&c->arena);
    ft_free(c);
}

void ft_kv_cache_reset(ft_kv_cache *c) { c->len = 0; }

int64_t ft_kv_cache_len(const ft_kv_cache *c) { return c->len; }

/* Run n <= DC tokens at positions c->len.. through the model (the layer body of forward.c, its
 * residual stream in place in c->x); leaves model.norm(x) of the last row in c->xn. */
static void decode_chunk(ft_model *m, ft_kv_cache *c, const int32_t *tokens, int64_t n) {
    const ft_backend *be = m->be;
    const int64_t C = m->C, Q = m->Q, KV = m->KV, QKV = m->QKV, T0 = c->len;
    for (int64_t i = 0; i < n; i++)
        c->pos[i] = (int32_t)(T0 + i);
    be->rope_table(c->cos_t, c->sin_t, c->pos, m->inv_freq, n, m->HD / 2);
    be->embedding_fwd(c->x, tokens, m->embed, n, C);
    ft_attn_shape as = {.B = 1,
                        .Tq = n,
                        .Tk = T0 + n,
                        .NH = m->NH,
                        .KVH = m->KVH,
                        .HD = m->HD,
                        .q_offset = T0,
                        .window = m->cfg.sliding_window,
                        .q_stride = QKV,
                        .k_stride = KV,
                        .v_stride = KV,
                        .o_stride = Q,
                        .threads = c->threads};
    /* No statistics kept, one normed buffer for both norms, the residual updated in place. */
    layer_acts A = {.x = c->x, .xn1 = c->xn, .qkv = c->qkv, .att = c->att, .xmid = c->x, .xn2 = c->xn, .gu = c->gu,
                    .h = c->h, .probs = c->probs, .sel = c->sel, .selw = c->selw, .rowof = c->rowof, .tok = c->tok,
                    .offs = c->offs};
    for (int64_t l = 0; l < m->L; l++) {
        layer_kv kv = {.k = c->k + l * c->max_tokens * KV, .v = c->v + l * c->max_tokens * KV, .stride = KV, .at = T0};
        layer_run run = {.W = &m->w[l], .bf16 = m->infer_dtype == FT_DTYPE_BF16, .abuf = c->abuf, .as = &as,
                         .cos_t = c->cos_t, .sin_t = c->sin_t, .kv = &kv, .attn_scratch = c->scratch,
                         .xe = c->xe, .ye = c->ye};
        model_layer_forward(m, l, &A, c->x, n, &run);
    }
    c->len += n;
    model_norm_fwd(m, c->xn, NULL, c->x + (n - 1) * C, m->norm, 1);
}

ft_status ft_model_decode(ft_model *m, ft_kv_cache *c, const int32_t *tokens, int64_t n, float *logits_last,
                          ft_err *err) {
    if (c->m != m)
        return FT_ERR(err, FT_ERR_INVALID, "kv cache belongs to another model");
    if (n <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "decode: no tokens");
    if (c->len + n > c->max_tokens)
        return FT_ERR(err, FT_ERR_RANGE, "decode: %lld + %lld tokens exceed the cache's %lld", (long long)c->len,
                      (long long)n, (long long)c->max_tokens);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->V)
            return FT_ERR(err, FT_ERR_INVALID, "decode: token %d is outside the vocabulary (%lld)", tokens[i],
                          (long long)m->V);
    for (int64_t i = 0; i < n; i += DC)
        decode_chunk(m, c, tokens + i, n - i < DC ? n - i : DC);
    if (logits_last && m->infer_dtype == FT_DTYPE_BF16) { /* the head's operand rounded, as training's */
        m->be->round_bf16(c->xn, c->xn, m->C);
        m->be->gemm_bf16(false, true, 1, m->V, m->C, 1.0f, c->xn, m->C, m->head, m->C, 0.0f, logits_last, m->V);
    } else if (logits_last) { /* logits (V) = head (V, C) xf (C) */
        m->be->sgemm(false, true, 1, m->V, m->C, 1.0f, c->xn, m->C, m->head, m->C, 0.0f, logits_last, m->V);
    }
    return FT_OK;
}
