/* model/kvpool.c: batched KV-cache decoding for serving (ftune/model.h, "Batched KV-cache
 * decoding"). A pool holds pool_tokens cached tokens in blocks of FT_KV_BLOCK; a slot reserves a
 * contiguous run of blocks (first fit) for its sequence and keeps its cache there as
 * (L, reserved, KV) keys after RoPE and values; and the work buffers of one step of up to
 * max_rows tokens. A step stacks every sequence's new
 * tokens into one (N, C) residual stream and runs THE layer body (forward.c) over it with one
 * segment per sequence: RMSNorm, the q|k|v, o, gate|up and down products and SwiGLU see all N
 * rows at once (one GEMM each, M = N), while the cache append and attention run per sequence
 * over its own slot. The LM head runs over the gathered last rows of the sequences that want
 * logits (M = their number). After ft_model_set_inference_dtype(bf16) the steps follow decode.c's
 * bf16 recipe and GEMM route. */
#include <omp.h>
#include <string.h>

#include "internal.h"

struct ft_kv_pool {
    const ft_model *m;
    int64_t n_slots, slot_tokens, max_rows, pool_tokens;
    int64_t threads;
    int64_t *len;        /* (n_slots) tokens cached per slot */
    int64_t *base, *cap; /* (n_slots) each slot's reservation: first token, tokens (0: free) */
    uint8_t *used;       /* (pool_tokens / FT_KV_BLOCK) blocks reserved */
    float *k, *v;        /* (n_slots, L, slot_tokens, KV) each */
    float *x, *xn, *qkv, *att, *abuf, *gu, *h, *cos_t, *sin_t, *last, *scratch; /* step work buffers */
    int32_t *pos, *ids;  /* (max_rows) */
    /* mixture of experts (decode.c's buffers for max_rows): router, grouping, gathered rows */
    float *probs, *selw, *xe, *ye;
    int32_t *sel, *rowof, *tok;
    int64_t *offs;
    layer_seg *segs;     /* (max_rows): at most one sequence per row */
    double prof[PROF_COUNT]; /* the layer body's time per kernel family (forward.c's P) */
    ft_decode_profile profile;
    ft_arena arena;
};

typedef struct pool_dims {
    int64_t C, F, Q, KV, QKV, L, HD, E, K; /* K: gate/up rows per token (1 dense) */
    size_t scratch;
} pool_dims;

static pool_dims dims_of(const ft_model_config *c, int64_t slot_tokens, int64_t max_rows, int64_t threads) {
    pool_dims d;
    d.C = c->hidden_size;
    d.F = c->intermediate_size;
    d.L = c->num_hidden_layers;
    d.HD = c->head_dim > 0 ? c->head_dim : c->hidden_size / c->num_attention_heads;
    d.Q = c->num_attention_heads * d.HD;
    d.KV = c->num_key_value_heads * d.HD;
    d.QKV = d.Q + 2 * d.KV;
    d.E = c->num_local_experts > 0 ? c->num_local_experts : 0;
    d.K = d.E > 0 ? c->num_experts_per_tok : 1;
    ft_attn_shape as = {.B = 1, .Tq = max_rows, .Tk = slot_tokens, .NH = c->num_attention_heads,
                        .KVH = c->num_key_value_heads, .HD = d.HD, .threads = threads};
    d.scratch = ft_tensor_attention_scratch(&as);
    size_t side_by_side = (size_t)threads * model_seg_scratch(c, slot_tokens); /* forward.c's seg_attention */
    if (side_by_side > d.scratch)
        d.scratch = side_by_side;
    return d;
}

size_t model_seg_scratch(const ft_model_config *c, int64_t slot_tokens) {
    const int64_t HD = c->head_dim > 0 ? c->head_dim : c->hidden_size / c->num_attention_heads;
    ft_attn_shape as = {.B = 1, .Tq = MODEL_SEG_ROWS, .Tk = slot_tokens, .NH = c->num_attention_heads,
                        .KVH = c->num_key_value_heads, .HD = HD, .threads = 1};
    return (ft_tensor_attention_scratch(&as) + 15) / 16 * 16; /* 64-byte aligned parts */
}

static int64_t pool_tokens_of(int64_t n_slots, int64_t slot_tokens, int64_t pool_tokens) {
    int64_t t = pool_tokens > 0 ? pool_tokens : n_slots * slot_tokens;
    return (t + FT_KV_BLOCK - 1) / FT_KV_BLOCK * FT_KV_BLOCK;
}

/* floats of the pool (the caches, then the work buffers) */
static size_t pool_floats(const pool_dims *d, int64_t n_slots, int64_t pool_tokens, int64_t R) {
    size_t kv = (size_t)pool_tokens * (size_t)(d->L * d->KV);
    size_t work = (size_t)R * (size_t)(3 * d->C + d->QKV + 2 * d->Q + 3 * d->K * d->F + d->HD) + d->scratch;
    if (d->E > 0)
        work += (size_t)R * (size_t)(d->E + 4 * d->K + 2 * d->K * d->C) + 2 * (size_t)(d->E + 1) + 16;
    size_t ints = (size_t)(2 * R) + (size_t)R * (sizeof(layer_seg) / sizeof(float) + 1) + (size_t)n_slots * 2;
    return 2 * kv + work + ints + 64;
}

size_t ft_kv_pool_bytes(const ft_model_config *c, int64_t n_slots, int64_t slot_tokens, int64_t max_rows,
                        int64_t pool_tokens) {
    pool_dims d = dims_of(c, slot_tokens, max_rows, omp_get_max_threads());
    return pool_floats(&d, n_slots, pool_tokens_of(n_slots, slot_tokens, pool_tokens), max_rows) * sizeof(float) + 64;
}

ft_status ft_kv_pool_new(const ft_model *m, int64_t n_slots, int64_t slot_tokens, int64_t max_rows,
                         int64_t pool_tokens, ft_kv_pool **out, ft_err *err) {
    *out = NULL;
    if (n_slots <= 0 || slot_tokens <= 0 || max_rows <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "kv pool: slots (%lld), tokens per slot (%lld) and rows per step (%lld) "
                                           "must be positive", (long long)n_slots, (long long)slot_tokens,
                      (long long)max_rows);
    ft_kv_pool *p = ft_calloc(1, sizeof *p);
    if (!p)
        return FT_ERR(err, FT_ERR_NOMEM, "kv pool: out of memory");
    p->m = m;
    p->n_slots = n_slots, p->slot_tokens = slot_tokens, p->max_rows = max_rows;
    p->pool_tokens = pool_tokens_of(n_slots, slot_tokens, pool_tokens);
    p->threads = omp_get_max_threads();
    pool_dims d = dims_of(&m->cfg, slot_tokens, max_rows, p->threads);
    size_t total = pool_floats(&d, n_slots, p->pool_tokens, max_rows);
    float *f = NULL;
    p->base = ft_calloc((size_t)n_slots, sizeof *p->base);
    p->cap = ft_calloc((size_t)n_slots, sizeof *p->cap);
    p->used = ft_calloc((size_t)(p->pool_tokens / FT_KV_BLOCK), 1);
    if (!p->base || !p->cap || !p->used || ft_arena_init(&p->arena, "kv pool", total * sizeof(float) + 64, err) != FT_OK ||
        !(f = ft_arena_alloc(&p->arena, total * sizeof(float), err))) {
        ft_arena_deinit(&p->arena);
        ft_free(p->base), ft_free(p->cap), ft_free(p->used);
        ft_free(p);
        return FT_ERR(err, FT_ERR_NOMEM, "kv pool: out of memory");
    }
    const int64_t R = max_rows;
    size_t kv = (size_t)p->pool_tokens * (size_t)(d.L * d.KV);
    p->k = f, f += kv;
    p->v = f, f += kv;
    p->x = f, f += R * d.C;
    p->xn = f, f += R * d.C;
    p->last = f, f += R * d.C;
    p->qkv = f, f += R * d.QKV;
    p->att = f, f += R * d.Q;
    p->abuf = f, f += R * d.Q; /* bf16: the rounded attention output */
    p->gu = f, f += R * d.K * 2 * d.F;
    p->h = f, f += R * d.K * d.F;
    if (d.E > 0) {
        p->probs = f, f += R * d.E;
        p->selw = f, f += R * d.K;
        p->xe = f, f += R * d.K * d.C;
        p->ye = f, f += R * d.K * d.C;
        p->sel = (int32_t *)f, f += R * d.K;
        p->rowof = (int32_t *)f, f += R * d.K;
        p->tok = (int32_t *)f, f += R * d.K;
        f += (uintptr_t)f % 8 ? 1 : 0; /* int64 alignment */
        p->offs = (int64_t *)f, f += 2 * (d.E + 1);
    }
    p->cos_t = f, f += R * (d.HD / 2);
    p->sin_t = f, f += R * (d.HD / 2);
    p->scratch = f, f += d.scratch;
    p->pos = (int32_t *)f, f += R;
    p->ids = (int32_t *)f, f += R;
    f = (float *)(((uintptr_t)f + 15) & ~(uintptr_t)15);
    p->segs = (layer_seg *)f, f += (size_t)R * (sizeof(layer_seg) / sizeof(float));
    p->len = (int64_t *)(((uintptr_t)f + 15) & ~(uintptr_t)15);
    *out = p;
    return FT_OK;
}

void ft_kv_pool_free(ft_kv_pool *p) {
    if (!p)
        return;
    ft_arena_deinit(&p->arena);
    ft_free(p->base), ft_free(p->cap), ft_free(p->used);
    ft_free(p);
}

int64_t ft_kv_pool_slots(const ft_kv_pool *p) { return p->n_slots; }
int64_t ft_kv_pool_slot_tokens(const ft_kv_pool *p) { return p->slot_tokens; }
int64_t ft_kv_pool_max_rows(const ft_kv_pool *p) { return p->max_rows; }

int64_t ft_kv_pool_len(const ft_kv_pool *p, int64_t slot) {
    return slot >= 0 && slot < p->n_slots ? p->len[slot] : 0;
}

void ft_kv_pool_reset(ft_kv_pool *p, int64_t slot) {
    if (slot >= 0 && slot < p->n_slots)
        p->len[slot] = 0;
}

int64_t ft_kv_pool_tokens(const ft_kv_pool *p) { return p->pool_tokens; }

int64_t ft_kv_pool_reserved(const ft_kv_pool *p) {
    int64_t t = 0;
    for (int64_t s = 0; s < p->n_slots; s++)
        t += p->cap[s];
    return t;
}

int64_t ft_kv_pool_capacity(const ft_kv_pool *p, int64_t slot) {
    return slot >= 0 && slot < p->n_slots ? p->cap[slot] : 0;
}

ft_status ft_kv_pool_reserve(ft_kv_pool *p, int64_t slot, int64_t tokens, ft_err *err) {
    if (slot < 0 || slot >= p->n_slots || p->cap[slot])
        return FT_ERR(err, FT_ERR_INVALID, "kv pool: slot %lld is not a free slot", (long long)slot);
    if (tokens <= 0 || tokens > p->slot_tokens || tokens > p->pool_tokens)
        return FT_ERR(err, FT_ERR_RANGE, "kv pool: %lld tokens for one sequence (at most %lld, pool %lld)",
                      (long long)tokens, (long long)p->slot_tokens, (long long)p->pool_tokens);
    const int64_t nb = (tokens + FT_KV_BLOCK - 1) / FT_KV_BLOCK, NB = p->pool_tokens / FT_KV_BLOCK;
    int64_t run = 0;
    for (int64_t b = 0; b < NB; b++) { /* first fit */
        run = p->used[b] ? 0 : run + 1;
        if (run == nb) {
            int64_t first = b - nb + 1;
            memset(p->used + first, 1, (size_t)nb);
            p->base[slot] = first * FT_KV_BLOCK;
            p->cap[slot] = nb * FT_KV_BLOCK;
            p->len[slot] = 0;
            return FT_OK;
        }
    }
    return FT_ERR(err, FT_ERR_LIMIT, "kv pool: no %lld free tokens in a row (%lld of %lld reserved)",
                  (long long)(nb * FT_KV_BLOCK), (long long)ft_kv_pool_reserved(p), (long long)p->pool_tokens);
}

void ft_kv_pool_release(ft_kv_pool *p, int64_t slot) {
    if (slot < 0 || slot >= p->n_slots || !p->cap[slot])
        return;
    memset(p->used + p->base[slot] / FT_KV_BLOCK, 0, (size_t)(p->cap[slot] / FT_KV_BLOCK));
    p->cap[slot] = p->len[slot] = 0;
}

ft_status ft_model_decode_batch(ft_model *m, ft_kv_pool *p, const ft_decode_seq *seqs, int64_t n_seqs, float *logits,
                                ft_err *err) {
    if (p->m != m)
        return FT_ERR(err, FT_ERR_INVALID, "kv pool belongs to another model");
    if (n_seqs <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "decode batch: no sequences");
    const double t_start = ft_time_now();
    const int64_t C = m->C, KV = m->KV, T = p->slot_tokens;
    int64_t N = 0;
    for (int64_t s = 0; s < n_seqs; s++) {
        const ft_decode_seq *q = &seqs[s];
        if (q->slot < 0 || q->slot >= p->n_slots)
            return FT_ERR(err, FT_ERR_INVALID, "decode batch: slot %lld outside the pool's %lld", (long long)q->slot,
                          (long long)p->n_slots);
        for (int64_t r = 0; r < s; r++)
            if (seqs[r].slot == q->slot)
                return FT_ERR(err, FT_ERR_INVALID, "decode batch: slot %lld appears twice", (long long)q->slot);
        if (q->n <= 0)
            return FT_ERR(err, FT_ERR_INVALID, "decode batch: sequence %lld has no tokens", (long long)s);
        if (p->len[q->slot] + q->n > p->cap[q->slot])
            return FT_ERR(err, FT_ERR_RANGE, "decode batch: %lld + %lld tokens exceed the slot's reservation of %lld",
                          (long long)p->len[q->slot], (long long)q->n, (long long)p->cap[q->slot]);
        for (int64_t i = 0; i < q->n; i++)
            if (q->tokens[i] < 0 || q->tokens[i] >= m->V)
                return FT_ERR(err, FT_ERR_INVALID, "decode batch: token %d is outside the vocabulary (%lld)",
                              q->tokens[i], (long long)m->V);
        N += q->n;
        if (N > p->max_rows)
            return FT_ERR(err, FT_ERR_RANGE, "decode batch: more than the pool's %lld rows per step",
                          (long long)p->max_rows);
    }
    /* the stacked rows: ids, positions, one segment per sequence */
    int64_t row = 0;
    for (int64_t s = 0; s < n_seqs; s++) {
        const ft_decode_seq *q = &seqs[s];
        int64_t at = p->len[q->slot];
        memcpy(p->ids + row, q->tokens, (size_t)q->n * sizeof(int32_t));
        for (int64_t i = 0; i < q->n; i++)
            p->pos[row + i] = (int32_t)(at + i);
        size_t off = (size_t)p->base[q->slot] * (size_t)(m->L * KV); /* (L, cap, KV) from there */
        p->segs[s] = (layer_seg){.row0 = row, .n = q->n, .at = at, .k = p->k + off, .v = p->v + off,
                                 .layer_stride = p->cap[q->slot] * KV};
        row += q->n;
    }
    const ft_backend *be = m->be;
    be->rope_table(p->cos_t, p->sin_t, p->pos, m->inv_freq, N, m->HD / 2);
    be->embedding_fwd(p->x, p->ids, m->embed, N, C);
    ft_attn_shape as = {.B = 1, .Tq = N, .Tk = T, .NH = m->NH, .KVH = m->KVH, .HD = m->HD,
                        .window = m->cfg.sliding_window, .q_stride = m->QKV, .k_stride = KV, .v_stride = KV,
                        .o_stride = m->Q, .threads = p->threads};
    const bool bf16 = m->infer_dtype == FT_DTYPE_BF16; /* ft_model_set_inference_dtype: decode.c's recipe */
    layer_acts A = {.x = p->x, .xn1 = p->xn, .qkv = p->qkv, .att = p->att, .xmid = p->x, .xn2 = p->xn, .gu = p->gu,
                    .h = p->h, .probs = p->probs, .sel = p->sel, .selw = p->selw, .rowof = p->rowof, .tok = p->tok,
                    .offs = p->offs};
    for (int64_t l = 0; l < m->L; l++) {
        layer_run run = {.W = &m->w[l], .bf16 = bf16, .abuf = p->abuf, .as = &as, .cos_t = p->cos_t,
                         .sin_t = p->sin_t, .segs = p->segs, .n_segs = n_seqs,
                         .attn_scratch = p->scratch, .xe = p->xe, .ye = p->ye, .prof = p->prof};
        model_layer_forward(m, l, &A, p->x, N, &run);
    }
    int64_t n_out = 0;
    for (int64_t s = 0; s < n_seqs; s++) {
        p->len[seqs[s].slot] += seqs[s].n;
        if (seqs[s].logits) {
            const layer_seg *g = &p->segs[s];
            memcpy(p->last + n_out * C, p->x + (g->row0 + g->n - 1) * C, (size_t)C * sizeof(float));
            n_out++;
        }
    }
    const double t_head = ft_time_now();
    if (n_out && logits) { /* logits (n_out, V) = norm(last) (n_out, C) head (V, C)^T */
        model_norm_fwd(m, p->xn, NULL, p->last, m->norm, n_out);
        if (bf16) { /* the head's operand rounded, as training's */
            be->round_bf16(p->xn, p->xn, n_out * C);
            be->gemm_bf16(false, true, n_out, m->V, C, 1.0f, p->xn, C, m->head, C, 0.0f, logits, m->V);
        } else {
            be->sgemm(false, true, n_out, m->V, C, 1.0f, p->xn, C, m->head, C, 0.0f, logits, m->V);
        }
    }
    const double t_end = ft_time_now();
    ft_decode_profile *pf = &p->profile;
    pf->steps++;
    pf->rows += N;
    pf->logit_rows += n_out;
    pf->total_s += t_end - t_start;
    pf->head_s += t_end - t_head;
    pf->matmul_s = p->prof[PROF_MATMUL];
    pf->attention_s = p->prof[PROF_ATTN];
    return FT_OK;
}

void ft_kv_pool_get_profile(const ft_kv_pool *p, ft_decode_profile *out) { *out = p->profile; }
