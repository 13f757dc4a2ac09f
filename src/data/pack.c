/* data/pack.c: the dataset index, the per-epoch record order, best-fit packing and the data
 * cursor (SPEC §4 packing; ftune/data.h explains the layout).
 *
 * The order of an epoch is a keyed pseudo-random permutation (a 4-round Feistel network over
 * the next power-of-4 domain, cycle-walked into [0, n)), so the record at any position of any
 * epoch is computed in O(1): resuming needs no replay and no stored permutation. */
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

/* ---------------------------------------------------------------- dataset index */

ft_status ds_push(ft_dataset *ds, const ds_entry *e, ft_err *err) {
    if (ds->n == ds->cap) {
        int64_t cap = ds->cap ? ds->cap * 2 : 1024;
        ds_entry *p = ft_realloc(ds->e, (size_t)cap * sizeof *p);
        if (!p)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory indexing %lld records", (long long)ds->n);
        ds->e = p;
        ds->cap = cap;
    }
    ds->e[ds->n++] = *e;
    ds->n_tokens += e->n_tokens;
    return FT_OK;
}

int64_t ds_pieces(const ft_dataset *ds, int64_t rec) {
    if (ds->sp.task != FT_TASK_CONTINUED_PRETRAIN)
        return 1;
    return ft_sample_cpt_pieces(ds->e[rec].n_tokens, ds->sp.context_length);
}

int64_t ft_dataset_n_records(const ft_dataset *ds) { return ds->n; }
int64_t ft_dataset_n_tokens(const ft_dataset *ds) { return ds->n_tokens; }
const ft_sample_params *ft_dataset_sample_params(const ft_dataset *ds) { return &ds->sp; }

void ft_dataset_free(ft_dataset *ds) {
    if (!ds)
        return;
    ft_reader_free(ds->reader);
    ft_free(ds->e);
    ft_free(ds);
}

/* ---------------------------------------------------------------- permutation */

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void ft_pack_default_params(ft_pack_params *p, int64_t T, uint64_t seed) {
    p->T = T;
    p->window = 2048;
    p->seed = seed;
    p->shuffle = true;
}

int64_t ft_pack_permute(const ft_pack_params *p, int64_t epoch, int64_t i, int64_t n) {
    if (!p->shuffle || n <= 1)
        return i;
    int half = 1;
    while (((uint64_t)1 << (2 * half)) < (uint64_t)n)
        half++;
    uint64_t mask = ((uint64_t)1 << half) - 1;
    uint64_t key = mix64(p->seed ^ mix64((uint64_t)epoch + 0x5851F42D4C957F2Dull));
    uint64_t x = (uint64_t)i;
    do {
        uint64_t l = x >> half, r = x & mask;
        for (int round = 0; round < 4; round++) {
            uint64_t f = mix64(r ^ mix64(key + (uint64_t)round)) & mask;
            uint64_t nl = r;
            r = l ^ f;
            l = nl;
        }
        x = (l << half) | r;
    } while (x >= (uint64_t)n); /* cycle-walk: a bijection of the big domain restricted to [0, n) */
    return (int64_t)x;
}

/* ---------------------------------------------------------------- best fit */

typedef struct bf_item {
    int64_t len;
    size_t idx;
} bf_item;

static int cmp_item(const void *a, const void *b) {
    const bf_item *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Leftmost leaf >= len with a nonzero count, or -1. */
static int64_t first_at_least(const int64_t *tree, size_t leaves, int64_t len) {
    size_t q = (size_t)len + leaves;
    if (tree[q] > 0)
        return len;
    for (;; q >>= 1) {
        if (q <= 1)
            return -1;
        if ((q & 1) == 0 && tree[q + 1] > 0) {
            q++;
            break;
        }
    }
    while (q < leaves)
        q = tree[2 * q] > 0 ? 2 * q : 2 * q + 1;
    return (int64_t)(q - leaves);
}

/* Rows are kept in stacks by remaining capacity; a segment tree over capacities 0..T finds the
 * smallest capacity >= len that has a row in O(log T). */
ft_status ft_pack_best_fit(const int64_t *lengths, size_t n, int64_t T, int64_t *row_of, int64_t *n_rows,
                           ft_err *err) {
    *n_rows = 0;
    if (n == 0)
        return FT_OK;
    if (T <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "packing needs a positive row length");
    size_t leaves = 1;
    while (leaves < (size_t)T + 1)
        leaves *= 2;
    bf_item *items = ft_malloc(n * sizeof *items);
    int64_t *tree = ft_calloc(2 * leaves, sizeof *tree);
    int64_t *head = ft_malloc(((size_t)T + 1) * sizeof *head);
    int64_t *next = ft_malloc(n * sizeof *next), *rem = ft_malloc(n * sizeof *rem);
    ft_status s = FT_OK;
    if (!items || !tree || !head || !next || !rem) {
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory packing %zu samples", n);
        goto done;
    }
    for (int64_t c = 0; c <= T; c++)
        head[c] = -1;
    for (size_t i = 0; i < n; i++) {
        if (lengths[i] <= 0 || lengths[i] > T) {
            s = FT_ERR(err, FT_ERR_RANGE, "sample %zu has %lld tokens; rows hold 1..%lld", i, (long long)lengths[i],
                       (long long)T);
            goto done;
        }
        items[i] = (bf_item){lengths[i], i};
    }
    qsort(items, n, sizeof *items, cmp_item);
    int64_t rows = 0;
    for (size_t k = 0; k < n; k++) {
        int64_t len = items[k].len, row = -1;
        int64_t found = first_at_least(tree, leaves, len);
        if (found >= 0) {
            row = head[found];
            head[found] = next[row];
            for (size_t t = (size_t)found + leaves; t >= 1; t >>= 1)
                tree[t]--;
        }
        if (row < 0) {
            row = rows++;
            rem[row] = T;
        }
        rem[row] -= len;
        row_of[items[k].idx] = row;
        int64_t c = rem[row];
        next[row] = head[c];
        head[c] = row;
        for (size_t t = (size_t)c + leaves; t >= 1; t >>= 1)
            tree[t]++;
    }
    *n_rows = rows;
done:
    ft_free(items);
    ft_free(tree);
    ft_free(head);
    ft_free(next);
    ft_free(rem);
    return s;
}

/* ---------------------------------------------------------------- epoch counts */

ft_status ft_dataset_count_epoch(const ft_dataset *ds, const ft_pack_params *p, int64_t epoch,
                                 ft_epoch_counts *out, ft_err *err) {
    memset(out, 0, sizeof *out);
    int64_t W = p->window > 0 ? p->window : 2048, n = ds->n, T = p->T;
    if (T <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "context length must be positive");
    size_t cap = 0;
    int64_t *len = NULL, *row_of = NULL;
    ft_status s = FT_OK;
    for (int64_t w0 = 0; w0 < n; w0 += W) {
        size_t m = 0;
        int64_t w1 = w0 + W < n ? w0 + W : n;
        for (int64_t i = w0; i < w1 && s == FT_OK; i++) {
            int64_t rec = ft_pack_permute(p, epoch, i, n);
            int64_t pieces = ds_pieces(ds, rec), ntok = ds->e[rec].n_tokens;
            for (int64_t k = 0; k < pieces; k++) {
                if (m == cap) {
                    cap = cap ? cap * 2 : 4096;
                    int64_t *nl = ft_realloc(len, cap * sizeof *nl), *nr = nl ? ft_realloc(row_of, cap * sizeof *nr) : NULL;
                    if (nl)
                        len = nl;
                    if (!nl || !nr) {
                        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                        break;
                    }
                    row_of = nr;
                }
                int64_t l = ds->sp.task == FT_TASK_CONTINUED_PRETRAIN ? (k * T + T <= ntok ? T : ntok - k * T) : ntok;
                len[m++] = l;
                out->tokens += l;
                out->trainable += ds->sp.task == FT_TASK_CONTINUED_PRETRAIN ? l - 1 : ds->e[rec].n_trainable;
            }
        }
        if (s != FT_OK)
            break;
        int64_t rows;
        if ((s = ft_pack_best_fit(len, m, T, row_of, &rows, err)) != FT_OK)
            break;
        out->rows += rows;
        out->samples += (int64_t)m;
    }
    ft_free(len);
    ft_free(row_of);
    return s;
}

/* ---------------------------------------------------------------- cursor */

void ft_data_cursor_init(ft_data_cursor *c, uint64_t seed) {
    memset(c, 0, sizeof *c);
    ft_rng_seed(&c->rng, seed ^ 0xDA7A5EEDull);
}

json_t *ft_data_cursor_to_json(const ft_data_cursor *c) {
    json_t *o = json_object(), *rng = json_array();
    for (int i = 0; i < 4; i++) {
        char b[24];
        snprintf(b, sizeof b, "%016llx", (unsigned long long)c->rng.s[i]);
        json_array_append_new(rng, json_string(b));
    }
    json_object_set_new(o, "epoch", json_integer(c->epoch));
    json_object_set_new(o, "window", json_integer(c->window));
    json_object_set_new(o, "row", json_integer(c->row));
    json_object_set_new(o, "rng", rng);
    json_object_set_new(o, "rows_done", json_integer(c->rows_done));
    return o;
}

ft_status ft_data_cursor_from_json(const json_t *j, ft_data_cursor *c, ft_err *err) {
    memset(c, 0, sizeof *c);
    const char *keys[] = {"epoch", "window", "row", "rows_done"};
    int64_t *dst[] = {&c->epoch, &c->window, &c->row, &c->rows_done};
    for (int i = 0; i < 4; i++) {
        json_t *v = json_object_get(j, keys[i]);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return FT_ERR(err, FT_ERR_INVALID, "data cursor: \"%s\" must be a non-negative integer", keys[i]);
        *dst[i] = (int64_t)json_integer_value(v);
    }
    json_t *rng = json_object_get(j, "rng");
    if (!json_is_array(rng) || json_array_size(rng) != 4)
        return FT_ERR(err, FT_ERR_INVALID, "data cursor: \"rng\" must be a list of 4 hex strings");
    for (size_t i = 0; i < 4; i++) {
        const char *h = json_string_value(json_array_get(rng, i));
        char *end = NULL;
        if (!h || !*h || strlen(h) > 16)
            return FT_ERR(err, FT_ERR_INVALID, "data cursor: rng[%zu] must be a hex string", i);
        unsigned long long v = strtoull(h, &end, 16);
        if (*end)
            return FT_ERR(err, FT_ERR_INVALID, "data cursor: rng[%zu] must be a hex string", i);
        c->rng.s[i] = v;
    }
    return FT_OK;
}
