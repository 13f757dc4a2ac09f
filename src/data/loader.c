/* data/loader.c: the training data loader (SPEC §4; ftune/data.h). Two threads run ahead of
 * the trainer:
 *   the builder walks the epochs window by window: it fetches and tokenizes a window's records
 *     on a team of OpenMP threads and packs its samples best-fit (into one of two window
 *     buffers, so the next window is prepared while the current one is handed out);
 *   the emitter shuffles each window's rows with the cursor's RNG and writes them into batch
 *     slots; the trainer takes ready batches from a bounded queue.
 *
 * Determinism: records are tokenized in parallel but each into its own slot, packing depends
 * only on the window, and the RNG is used by the emitter alone in window order, so the batches
 * depend only on the dataset, the parameters and the start cursor, never on thread timing. */
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "ftune/tok.h"

typedef struct piece {
    int64_t rec; /* index in the window */
    int64_t start, len;
} piece;

typedef struct window {
    int64_t epoch, index;
    int64_t n_rec;
    ft_sample *samples; /* per record of the window */
    int64_t cap_rec;
    piece *pieces;
    int64_t n_pieces, cap_pieces;
    int64_t *row_start; /* rows: pieces order[row_start[r] .. row_start[r+1]) */
    int64_t *order;     /* pieces in placement order, grouped by row */
    int64_t *row_perm;  /* shuffled row order */
    int64_t n_rows;
    ft_rng rng_after; /* the RNG after this window's shuffle: the next window's start state */
    int state;        /* WIN_EMPTY, WIN_READY (built, or failed with `status`) */
    ft_status status;
    ft_err err;
} window;

enum { WIN_EMPTY = 0, WIN_READY = 1 };

struct ft_loader {
    ft_dataset *ds;
    ft_loader_params p;
    int threads;
    int32_t pad_id;
    /* queue */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ft_data_batch *slots;
    int32_t *storage; /* per slot: 4 (B, T) int32 arrays */
    int64_t n_slots;
    int64_t *ready, ready_head, ready_n;
    int64_t *free_slots, free_n;
    bool stop;
    ft_status status;
    ft_err err;
    double wait_s;
    pthread_t thread;
    bool started;
    pthread_t builder;
    bool builder_started;
    /* windows: the builder fills wins[k % 2] for the k-th window from the start cursor */
    window wins[2];
    window *w; /* the one the emitter is handing out */
    ft_data_cursor cur; /* the start */
    ft_buf *fetch_buf;          /* per builder OpenMP thread */
    ft_sample_scratch *scratch; /* per builder OpenMP thread */
};

/* ---------------------------------------------------------------- one window */

static int cmp_len_desc(const void *a, const void *b, void *ctx) {
    const piece *p = ctx;
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    if (p[x].len != p[y].len)
        return p[x].len > p[y].len ? -1 : 1;
    return x < y ? -1 : x > y;
}

static ft_status grow(void **p, int64_t *cap, int64_t need, size_t elem, ft_err *err) {
    if (need <= *cap)
        return FT_OK;
    int64_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *np = ft_realloc(*p, (size_t)c * elem);
    if (!np)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory in the data loader");
    *p = np;
    *cap = c;
    return FT_OK;
}

static ft_status build_record(ft_loader *l, int64_t rec, ft_sample *out, int tid, ft_err *err) {
    const ds_entry *e = &l->ds->e[rec];
    ft_record r;
    FT_TRY(ft_reader_fetch(l->ds->reader, &e->loc, &l->fetch_buf[tid], &r, err));
    json_t *parsed = NULL;
    if (r.kind == FT_RECORD_JSON_TEXT) {
        json_error_t je;
        parsed = json_loadb(r.data, r.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        if (!parsed)
            return FT_ERR_AT(err, FT_ERR_INVALID, l->ds->reader->source_names[e->loc.source], e->loc.line, 0,
                             "this record no longer parses (the file changed since it was validated)");
    }
    ft_status s = ft_sample_build(&l->ds->sp, parsed, &r, &l->scratch[tid], out, err);
    json_decref(parsed);
    if (s == FT_OK && (int64_t)out->n != e->n_tokens)
        s = FT_ERR_AT(err, FT_ERR_INVALID, l->ds->reader->source_names[e->loc.source], e->loc.line, 0,
                      "this record now makes %zu tokens, %d when validated (the file changed?)", out->n,
                      e->n_tokens);
    return s;
}

/* Fetch, tokenize and pack window `index` of `epoch` into w (builder thread). */
static ft_status build_window(ft_loader *l, window *w, int64_t epoch, int64_t index, ft_err *err) {
    const ft_dataset *ds = l->ds;
    int64_t W = l->p.pack.window, N = ds->n, T = l->p.pack.T;
    int64_t r0 = index * W, r1 = r0 + W < N ? r0 + W : N;
    w->epoch = epoch;
    w->index = index;
    w->n_rec = r1 - r0;
    if (w->n_rec > w->cap_rec) {
        ft_sample *ns = ft_realloc(w->samples, (size_t)w->n_rec * sizeof *ns);
        if (!ns)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory in the data loader");
        memset(ns + w->cap_rec, 0, (size_t)(w->n_rec - w->cap_rec) * sizeof *ns);
        w->samples = ns;
        w->cap_rec = w->n_rec;
    }
    /* tokenize: each record into its own slot; the first failure by record order wins */
    ft_status *st = ft_calloc((size_t)w->n_rec, sizeof *st);
    ft_err *errs = ft_calloc((size_t)w->n_rec, sizeof *errs);
    if (!st || !errs) {
        ft_free(st);
        ft_free(errs);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory in the data loader");
    }
#pragma omp parallel for schedule(dynamic, 8) num_threads(l->threads)
    for (int64_t i = 0; i < w->n_rec; i++) {
        int64_t rec = ft_pack_permute(&l->p.pack, epoch, r0 + i, N);
        st[i] = build_record(l, rec, &w->samples[i], omp_get_thread_num(), &errs[i]);
    }
    ft_status s = FT_OK;
    for (int64_t i = 0; i < w->n_rec && s == FT_OK; i++)
        if (st[i] != FT_OK) {
            s = st[i];
            if (err)
                *err = errs[i];
        }
    ft_free(st);
    ft_free(errs);
    FT_TRY(s);

    /* pieces: chat/IFT one per record; CPT consecutive pieces of T */
    w->n_pieces = 0;
    for (int64_t i = 0; i < w->n_rec; i++) {
        int64_t n = (int64_t)w->samples[i].n;
        int64_t np = ds->sp.task == FT_TASK_CONTINUED_PRETRAIN ? ft_sample_cpt_pieces(n, T) : 1;
        FT_TRY(grow((void **)&w->pieces, &w->cap_pieces, w->n_pieces + np, sizeof *w->pieces, err));
        for (int64_t k = 0; k < np; k++) {
            int64_t a = ds->sp.task == FT_TASK_CONTINUED_PRETRAIN ? k * T : 0;
            int64_t len = ds->sp.task == FT_TASK_CONTINUED_PRETRAIN ? (a + T <= n ? T : n - a) : n;
            w->pieces[w->n_pieces++] = (piece){i, a, len};
        }
    }
    int64_t np = w->n_pieces;
    int64_t *len = ft_malloc((size_t)(np ? np : 1) * sizeof *len), *row_of = ft_malloc((size_t)(np ? np : 1) * sizeof *row_of);
    int64_t *order = ft_malloc((size_t)(np ? np : 1) * sizeof *order);
    if (!len || !row_of || !order) {
        ft_free(len);
        ft_free(row_of);
        ft_free(order);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory in the data loader");
    }
    for (int64_t i = 0; i < np; i++) {
        len[i] = w->pieces[i].len;
        order[i] = i;
    }
    int64_t n_rows = 0;
    s = ft_pack_best_fit(len, (size_t)np, T, row_of, &n_rows, err);
    if (s == FT_OK) {
        /* group by row, keeping placement order (longest first, then by index) */
        qsort_r(order, (size_t)np, sizeof *order, cmp_len_desc, w->pieces);
        ft_free(w->row_start);
        ft_free(w->order);
        ft_free(w->row_perm);
        w->row_start = ft_calloc((size_t)n_rows + 1, sizeof *w->row_start);
        w->order = ft_malloc((size_t)(np ? np : 1) * sizeof *w->order);
        w->row_perm = ft_malloc((size_t)(n_rows ? n_rows : 1) * sizeof *w->row_perm);
        if (!w->row_start || !w->order || !w->row_perm) {
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory in the data loader");
        } else {
            for (int64_t i = 0; i < np; i++)
                w->row_start[row_of[i] + 1]++;
            for (int64_t r = 0; r < n_rows; r++)
                w->row_start[r + 1] += w->row_start[r];
            int64_t *fill = len; /* reuse as per-row fill counters */
            for (int64_t r = 0; r < n_rows; r++)
                fill[r] = 0;
            for (int64_t k = 0; k < np; k++) {
                int64_t i = order[k], r = row_of[i];
                w->order[w->row_start[r] + fill[r]++] = i;
            }
            w->n_rows = n_rows;
        }
    }
    ft_free(len);
    ft_free(row_of);
    ft_free(order);
    return s;
}

/* The row order of a built window: shuffled with `rng` (emitter thread). */
static void shuffle_window(const ft_loader *l, window *w, ft_rng rng) {
    for (int64_t r = 0; r < w->n_rows; r++)
        w->row_perm[r] = r;
    if (l->p.pack.shuffle)
        for (int64_t r = w->n_rows - 1; r > 0; r--) {
            int64_t j = (int64_t)ft_rng_below(&rng, (uint64_t)r + 1), t = w->row_perm[r];
            w->row_perm[r] = w->row_perm[j];
            w->row_perm[j] = t;
        }
    w->rng_after = rng;
}

/* Write row `r` of the current window into row `b` of a batch. */
static void write_row(ft_loader *l, ft_data_batch *bt, int64_t b, int64_t r) {
    window *w = l->w;
    int64_t T = l->p.pack.T;
    int32_t *in = (int32_t *)bt->batch.input_ids + b * T, *tg = (int32_t *)bt->batch.targets + b * T;
    int32_t *pos = (int32_t *)bt->batch.position_ids + b * T, *sid = (int32_t *)bt->batch.sample_ids + b * T;
    int64_t row = w->row_perm[r], t = 0, k = 0;
    for (int64_t q = w->row_start[row]; q < w->row_start[row + 1]; q++, k++) {
        const piece *pc = &w->pieces[w->order[q]];
        const ft_sample *s = &w->samples[pc->rec];
        for (int64_t j = 0; j < pc->len; j++, t++) {
            int64_t a = pc->start + j;
            in[t] = s->ids[a];
            pos[t] = (int32_t)j;
            sid[t] = (int32_t)k;
            bool has_next = j + 1 < pc->len && s->trainable[a + 1];
            tg[t] = has_next ? s->ids[a + 1] : -100;
            bt->n_trainable += has_next;
        }
        bt->n_tokens += pc->len;
        bt->n_samples++;
    }
    for (; t < T; t++) {
        in[t] = l->pad_id;
        tg[t] = -100;
        pos[t] = 0;
        sid[t] = -1;
    }
}

/* ---------------------------------------------------------------- the producer */

static int64_t windows_per_epoch(const ft_loader *l) {
    return (l->ds->n + l->p.pack.window - 1) / l->p.pack.window;
}

static void *builder_main(void *arg) {
    ft_loader *l = arg;
    int64_t epoch = l->cur.epoch, index = l->cur.window;
    for (int64_t k = 0;; k++) {
        window *w = &l->wins[k % 2];
        pthread_mutex_lock(&l->mu);
        while (!l->stop && w->state != WIN_EMPTY)
            pthread_cond_wait(&l->cv, &l->mu);
        bool stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        if (stop)
            return NULL;
        ft_err_clear(&w->err);
        w->status = build_window(l, w, epoch, index, &w->err);
        pthread_mutex_lock(&l->mu);
        w->state = WIN_READY;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        if (w->status != FT_OK)
            return NULL;
        if (++index >= windows_per_epoch(l)) {
            index = 0;
            epoch++;
        }
    }
}

/* Take the k-th built window (waiting for the builder) and shuffle it with `rng`. */
static ft_status next_window(ft_loader *l, int64_t k, ft_rng rng, bool *stop, ft_err *err) {
    window *w = &l->wins[k % 2];
    pthread_mutex_lock(&l->mu);
    if (l->w && l->w != w) { /* hand the finished one back to the builder */
        l->w->state = WIN_EMPTY;
        pthread_cond_broadcast(&l->cv);
    }
    while (!l->stop && w->state != WIN_READY)
        pthread_cond_wait(&l->cv, &l->mu);
    *stop = l->stop;
    pthread_mutex_unlock(&l->mu);
    if (*stop)
        return FT_OK;
    if (w->status != FT_OK) {
        if (err)
            *err = w->err;
        return w->status;
    }
    l->w = w;
    shuffle_window(l, w, rng);
    return FT_OK;
}

static ft_status produce(ft_loader *l, ft_err *err) {
    ft_data_cursor c = l->cur;
    int64_t k = 0;
    bool stop = false;
    FT_TRY(next_window(l, k, c.rng, &stop, err));
    if (stop)
        return FT_OK;
    for (;;) {
        /* take a free slot */
        pthread_mutex_lock(&l->mu);
        while (!l->stop && l->free_n == 0)
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->stop) {
            pthread_mutex_unlock(&l->mu);
            return FT_OK;
        }
        int64_t slot = l->free_slots[--l->free_n];
        pthread_mutex_unlock(&l->mu);

        ft_data_batch *bt = &l->slots[slot];
        bt->epoch = -1;
        bt->n_tokens = bt->n_trainable = bt->n_samples = 0;
        bt->epoch_ended = false;
        bt->epoch_end_row = -1;
        for (int64_t b = 0; b < l->p.B; b++) {
            while (c.row >= l->w->n_rows) { /* next window, maybe next epoch */
                c.window++;
                c.row = 0;
                if (c.window >= windows_per_epoch(l)) {
                    c.window = 0;
                    c.epoch++;
                    if (b > 0) {
                        bt->epoch_ended = true;
                        bt->epoch_end_row = b - 1;
                    }
                }
                c.rng = l->w->rng_after;
                FT_TRY(next_window(l, ++k, c.rng, &stop, err));
                if (stop)
                    return FT_OK;
            }
            if (bt->epoch < 0)
                bt->epoch = c.epoch;
            write_row(l, bt, b, c.row);
            c.row++;
            c.rows_done++;
        }
        if (c.row >= l->w->n_rows && c.window + 1 >= windows_per_epoch(l) && !bt->epoch_ended) {
            bt->epoch_ended = true;
            bt->epoch_end_row = l->p.B - 1;
        }
        bt->cursor = c;
        pthread_mutex_lock(&l->mu);
        l->ready[(l->ready_head + l->ready_n) % l->n_slots] = slot;
        l->ready_n++;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
}

static void *producer_main(void *arg) {
    ft_loader *l = arg;
    ft_err e;
    ft_err_clear(&e);
    ft_status s = produce(l, &e);
    pthread_mutex_lock(&l->mu);
    if (s != FT_OK) {
        l->status = s;
        l->err = e;
    }
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* ---------------------------------------------------------------- public */

void ft_loader_default_params(ft_loader_params *p, int64_t B, int64_t T, uint64_t seed) {
    memset(p, 0, sizeof *p);
    ft_pack_default_params(&p->pack, T, seed);
    p->B = B;
    p->prefetch = 4;
}

ft_status ft_loader_new(ft_dataset *ds, const ft_loader_params *p, const ft_data_cursor *start, ft_loader **out,
                        ft_err *err) {
    *out = NULL;
    if (!ds || ds->n == 0)
        return FT_ERR(err, FT_ERR_INVALID, "the data loader needs a dataset with at least one sample");
    if (p->B <= 0 || p->pack.T <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "the data loader needs B > 0 and T > 0");
    if (p->pack.T != ds->sp.context_length)
        return FT_ERR(err, FT_ERR_INVALID, "row length %lld differs from the dataset's context length %lld",
                      (long long)p->pack.T, (long long)ds->sp.context_length);
    ft_loader *l = ft_calloc(1, sizeof *l);
    if (!l)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->ds = ds;
    l->p = *p;
    if (l->p.pack.window <= 0)
        l->p.pack.window = 2048;
    if (l->p.prefetch <= 0)
        l->p.prefetch = 4;
    l->threads = p->threads > 0 ? p->threads : omp_get_max_threads();
    ft_tok_info ti;
    ft_tok_get_info(ds->sp.tok, &ti);
    l->pad_id = ti.pad_id >= 0 ? ti.pad_id : 0;
    if (start)
        l->cur = *start;
    else
        ft_data_cursor_init(&l->cur, p->pack.seed);
    l->n_slots = l->p.prefetch;
    size_t BT = (size_t)(p->B * p->pack.T);
    l->slots = ft_calloc((size_t)l->n_slots, sizeof *l->slots);
    l->storage = ft_malloc((size_t)l->n_slots * 4 * BT * sizeof(int32_t));
    l->ready = ft_calloc((size_t)l->n_slots, sizeof *l->ready);
    l->free_slots = ft_calloc((size_t)l->n_slots, sizeof *l->free_slots);
    l->fetch_buf = ft_calloc((size_t)l->threads, sizeof *l->fetch_buf);
    l->scratch = ft_calloc((size_t)l->threads, sizeof *l->scratch);
    if (!l->slots || !l->storage || !l->ready || !l->free_slots || !l->fetch_buf || !l->scratch) {
        ft_loader_free(l);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory for %lld batches of (%lld, %lld)", (long long)p->prefetch,
                      (long long)p->B, (long long)p->pack.T);
    }
    for (int64_t i = 0; i < l->n_slots; i++) {
        int32_t *base = l->storage + (size_t)i * 4 * BT;
        l->slots[i].batch = (ft_batch){p->B, p->pack.T, base, base + BT, base + 2 * BT, base + 3 * BT};
        l->free_slots[l->free_n++] = l->n_slots - 1 - i;
    }
    if (pthread_create(&l->builder, NULL, builder_main, l) != 0) {
        ft_loader_free(l);
        return FT_ERR(err, FT_ERR_INTERNAL, "cannot start the data loader threads");
    }
    l->builder_started = true;
    if (pthread_create(&l->thread, NULL, producer_main, l) != 0) {
        ft_loader_free(l);
        return FT_ERR(err, FT_ERR_INTERNAL, "cannot start the data loader threads");
    }
    l->started = true;
    *out = l;
    return FT_OK;
}

ft_status ft_loader_next(ft_loader *l, ft_data_batch **out, ft_err *err) {
    *out = NULL;
    double t0 = ft_time_now();
    pthread_mutex_lock(&l->mu);
    while (l->ready_n == 0 && l->status == FT_OK)
        pthread_cond_wait(&l->cv, &l->mu);
    ft_status s = FT_OK;
    if (l->ready_n > 0) {
        int64_t slot = l->ready[l->ready_head];
        l->ready_head = (l->ready_head + 1) % l->n_slots;
        l->ready_n--;
        *out = &l->slots[slot];
    } else {
        s = l->status;
        if (err)
            *err = l->err;
    }
    pthread_mutex_unlock(&l->mu);
    l->wait_s += ft_time_now() - t0;
    return s;
}

void ft_loader_release(ft_loader *l, ft_data_batch *b) {
    if (!b)
        return;
    pthread_mutex_lock(&l->mu);
    l->free_slots[l->free_n++] = b - l->slots;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

double ft_loader_wait_seconds(const ft_loader *l) { return l->wait_s; }

void ft_loader_free(ft_loader *l) {
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (l->started)
        pthread_join(l->thread, NULL);
    if (l->builder_started)
        pthread_join(l->builder, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    for (int k = 0; k < 2; k++) {
        window *w = &l->wins[k];
        for (int64_t i = 0; i < w->cap_rec; i++)
            ft_sample_free(&w->samples[i]);
        ft_free(w->samples);
        ft_free(w->pieces);
        ft_free(w->row_start);
        ft_free(w->order);
        ft_free(w->row_perm);
    }
    for (int i = 0; l->fetch_buf && i < l->threads; i++)
        ft_buf_free(&l->fetch_buf[i]);
    for (int i = 0; l->scratch && i < l->threads; i++)
        ft_sample_scratch_free(&l->scratch[i]);
    ft_free(l->fetch_buf);
    ft_free(l->scratch);
    ft_free(l->slots);
    ft_free(l->storage);
    ft_free(l->ready);
    ft_free(l->free_slots);
    ft_free(l);
}
