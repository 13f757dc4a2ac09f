/* infer/engine.c: the continuous-batching inference engine (ftune/infer.h).
 *
 * One engine thread owns the model's KV pool and runs steps: admit queued requests into free
 * slots, build the step (one row per decoding sequence, then prompt chunks of prefilling ones
 * in the rows left), run ft_model_decode_batch over all of it, then for each sequence whose
 * logits came back: penalties, constrained choice, sampling, text, stop checks, its events.
 * Callbacks run on the engine thread without the engine's lock held, so a client may call
 * ft_infer_cancel from anywhere, including its own callback. A sequence's tokens depend only on
 * its own logits and its own seeded generator, never on its neighbours in the batch. */
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "ftune/json.h"
#include "ftune/tpl.h"
#include "infer_internal.h"

const double ft_infer_hist_bounds[FT_INFER_HIST] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

/* One thread's working memory for picking a sequence's token (pick()). */
typedef struct scratch {
    float *work;  /* (V) the logits after penalties */
    float *work2; /* (V) the constrained choice's copy of work */
    ft_sampler sampler;
    infer_gstate gtmp[2]; /* constrained decoding's scratch states */
} scratch;

typedef struct seq {
    uint64_t id;
    ft_infer_request r;
    int32_t *prompt;
    size_t n_prompt;
    char *stops[FT_INFER_MAX_STOP_STRINGS];
    size_t stop_len[FT_INFER_MAX_STOP_STRINGS], n_stop, max_stop;
    int64_t slot, prefilled, budget, kv_need; /* kv_need: prompt + budget, reserved in the pool */
    int32_t next; /* the last sampled token, fed at the next step */
    int32_t pick; /* this step's choice (pick(); -1: constrained decoding found none) and its logprobs */
    ft_infer_token tk;
    bool decoding, finished;
    atomic_bool cancel; /* set by ft_infer_cancel under the lock, read by the engine thread without it */
    ft_infer_finish finish;
    ft_err err;
    int32_t *out;
    size_t n_out;
    int32_t *counts; /* (V) output-token counts (presence/frequency penalties) */
    uint8_t *seen;   /* (V) prompt or output tokens (repetition penalty) */
    ft_rng rng;
    ft_tok_stream *stream;
    ft_buf text;
    size_t sent;
    infer_grammar *grammar; /* response_format: the JSON texts allowed */
    infer_gstate gs;        /* where the output stands in it */
    bool stop_cut;          /* a stop string ended the text */
    double t_submit, t_start, t_first, t_last;
    struct seq *next_q;
} seq;

struct ft_infer {
    ft_model *m;
    const ft_tok *tok;
    ft_generator *gen;
    ft_chat *chat;
    ft_infer_params p;
    int64_t V;
    ft_kv_pool *pool;
    float *logits; /* (max_seqs, V) */
    scratch *scr;  /* (n_scr) one per thread picking tokens */
    int n_scr;
    char **token_text; /* (V) each token's text alone, made on the first constrained request */
    size_t *token_len;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    seq *q_head, *q_tail;
    int64_t n_queued;
    seq **active; /* (max_seqs) by slot */
    int64_t rr;   /* round-robin start among prefilling slots */
    uint64_t next_id;
    ft_infer_stats st;
};

ft_infer_params ft_infer_default_params(void) {
    return (ft_infer_params){.max_seqs = 8, .max_context = 0, .step_tokens = 256, .max_queue = 64};
}

ft_infer_request ft_infer_default_request(void) {
    ft_infer_request r;
    memset(&r, 0, sizeof r);
    r.sampling = (ft_sampling){.temperature = 1.0, .top_k = 0, .top_p = 1.0};
    r.repetition_penalty = 1.0;
    r.top_logprobs = -1;
    return r;
}

const char *ft_infer_finish_name(ft_infer_finish f) {
    switch (f) {
    case FT_INFER_STOP: return "stop";
    case FT_INFER_LENGTH: return "length";
    case FT_INFER_CANCELLED: return "cancelled";
    default: return "error";
    }
}

const ft_infer_params *ft_infer_get_params(const ft_infer *e) { return &e->p; }
ft_generator *ft_infer_generator(ft_infer *e) { return e->gen; }

static void hist_add(ft_infer_hist *h, double v) {
    int i = 0;
    while (i < FT_INFER_HIST && v > ft_infer_hist_bounds[i])
        i++;
    h->count[i]++;
    h->sum += v;
    h->n++;
}

/* ---------------------------------------------------------------- sequences */

static void seq_free(seq *s) {
    if (!s)
        return;
    ft_free(s->prompt);
    for (size_t i = 0; i < s->n_stop; i++)
        ft_free(s->stops[i]);
    ft_free(s->out);
    ft_free(s->counts);
    ft_free(s->seen);
    ft_tok_stream_free(s->stream);
    ft_buf_free(&s->text);
    infer_grammar_free(s->grammar);
    ft_free(s);
}

static bool is_in(const int32_t *v, size_t n, int32_t id) {
    for (size_t i = 0; i < n; i++)
        if (v[i] == id)
            return true;
    return false;
}

static bool is_stop_id(ft_infer *e, const seq *s, int32_t id) {
    size_t n;
    const int32_t *v = ft_gen_stop_ids(e->gen, &n);
    if (is_in(v, n, id))
        return true;
    if (s->r.turn_stops) {
        v = ft_gen_turn_stop_ids(e->gen, &n);
        if (is_in(v, n, id))
            return true;
    }
    return false;
}

/* The DONE event: the held-back text (no stop string after all) unless a stop string cut it. */
static void emit_done(ft_infer *e, seq *s) {
    double now = ft_time_now();
    ft_infer_event ev = {.kind = FT_INFER_DONE, .finish = s->finish, .err = s->finish == FT_INFER_ERROR ? &s->err : NULL,
                         .prompt_tokens = (int64_t)s->n_prompt, .completion_tokens = (int64_t)s->n_out,
                         .queue_s = (s->t_start > 0 ? s->t_start : now) - s->t_submit,
                         .ttft_s = s->t_first > 0 ? s->t_first - s->t_submit : 0, .total_s = now - s->t_submit};
    if (!s->stop_cut && s->sent < s->text.len) {
        ev.text = s->text.data + s->sent;
        ev.text_len = s->text.len - s->sent;
    }
    pthread_mutex_lock(&e->mu);
    e->st.finished[s->finish]++;
    pthread_mutex_unlock(&e->mu);
    if (s->r.cb)
        s->r.cb(s->r.user, &ev);
}

static void finish(seq *s, ft_infer_finish f) {
    if (!s->finished) {
        s->finished = true;
        s->finish = f;
    }
}

/* Longest suffix of text[from..] that is a proper prefix of a stop string: held back. */
static size_t held_suffix(const seq *s, const char *t, size_t len, size_t from) {
    size_t best = 0;
    for (size_t i = 0; i < s->n_stop; i++) {
        size_t L = s->stop_len[i];
        for (size_t k = L - 1; k > best; k--) {
            if (k > len - from)
                continue;
            if (!memcmp(t + len - k, s->stops[i], k)) {
                best = k;
                break;
            }
        }
    }
    return best;
}

/* ---------------------------------------------------------------- choosing a token */

static ft_status token_texts(ft_infer *e, ft_err *err) {
    if (e->token_text)
        return FT_OK;
    char **tt = ft_calloc((size_t)e->V, sizeof *tt);
    size_t *tl = ft_calloc((size_t)e->V, sizeof *tl);
    if (!tt || !tl) {
        ft_free(tt);
        ft_free(tl);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    for (int64_t v = 0; v < e->V; v++) {
        int32_t id = (int32_t)v;
        char *t = NULL;
        /* a token that is part of a character alone (it decodes to U+FFFD) cannot be checked */
        if (!ft_tok_is_special(e->tok, id) && ft_tok_decode(e->tok, &id, 1, true, &t, NULL, NULL) == FT_OK && t &&
            !strstr(t, "\xEF\xBF\xBD")) {
            tt[v] = t;
            tl[v] = strlen(t);
        } else {
            ft_free(t);
        }
    }
    e->token_text = tt;
    e->token_len = tl;
    return FT_OK;
}

/* Whether id may come next under the JSON constraint: its text keeps the output a prefix of a
 * valid document and, with `budget`, that document can still be closed in the tokens left after
 * it (counting one token per byte of its shortest completion, which single-byte tokens can
 * always write), so an answer that ends by "stop" is complete whenever the tokens allow. A stop
 * id only once the document is complete. */
static bool json_allows(ft_infer *e, const seq *s, int32_t id, bool budget, scratch *w) {
    if (is_stop_id(e, s, id))
        return infer_gstate_done(&s->gs);
    if (!e->token_text[id] || !e->token_len[id])
        return false;
    if (!infer_gstate_feed(s->grammar, &s->gs, e->token_text[id], e->token_len[id], &w->gtmp[0], &w->gtmp[1]))
        return false;
    return !budget || infer_gstate_min_left(s->grammar, &w->gtmp[0]) <= s->budget - (int64_t)s->n_out - 1;
}

/* Sample from sc->work under the sequence's constraint. Rejection first (exact: drawing again
 * with the rejected token removed is drawing from the masked distribution), then a full mask;
 * when no token closes the document within the budget (a budget too small from the start), the
 * tokens that merely continue it: the answer ends by "length", cut. */
static int32_t choose(ft_infer *e, seq *s, scratch *sc) {
    float *w = sc->work;
    if (s->r.json == FT_INFER_JSON_NONE)
        return ft_sampler_sample(&sc->sampler, w, &s->r.sampling, &s->rng);
    for (int tries = 0; tries < 16; tries++) {
        int32_t id = ft_sampler_sample(&sc->sampler, w, &s->r.sampling, &s->rng);
        if (json_allows(e, s, id, true, sc))
            return id;
        w[id] = -INFINITY;
    }
    bool any = false;
    for (int pass = 0; pass < 2 && !any; pass++) {
        if (pass == 1)
            memcpy(w, sc->work2, (size_t)e->V * sizeof(float));
        for (int64_t v = 0; v < e->V; v++) {
            if (w[v] == -INFINITY)
                continue;
            if (json_allows(e, s, (int32_t)v, pass == 0, sc))
                any = true;
            else
                w[v] = -INFINITY;
        }
    }
    if (!any)
        return -1;
    /* top-k / top-p / min-p could cut every allowed token; sample among the allowed ones */
    ft_sampling sp = s->r.sampling;
    sp.top_k = 0, sp.top_p = 1, sp.min_p = 0;
    return ft_sampler_sample(&sc->sampler, w, &sp, &s->rng);
}

/* log softmax of the model's logits at `id`, and the top n. */
static void logprobs(const float *l, int64_t V, int32_t id, int n, ft_infer_token *t) {
    float mx = -INFINITY;
    for (int64_t v = 0; v < V; v++)
        if (l[v] > mx)
            mx = l[v];
    double sum = 0;
    for (int64_t v = 0; v < V; v++)
        sum += exp((double)l[v] - mx);
    double lse = mx + log(sum);
    t->logprob = (float)((double)l[id] - lse);
    /* the n best (larger logit first, lower id on ties; a NaN ranks as -inf) in one pass: the
     * list stays in order and a logit enters only when it beats the last one kept */
    int m = 0;
    for (int64_t v = 0; v < V && n > 0; v++) {
        const float x = isnan(l[v]) ? -INFINITY : l[v];
        if (m == n && !(x > t->top_logprobs[n - 1]))
            continue;
        int at = m < n ? m++ : n - 1; /* a full list drops its last */
        for (; at > 0 && x > t->top_logprobs[at - 1]; at--) {
            t->top_ids[at] = t->top_ids[at - 1];
            t->top_logprobs[at] = t->top_logprobs[at - 1];
        }
        t->top_ids[at] = (int32_t)v;
        t->top_logprobs[at] = x; /* the logit until the list is complete */
    }
    for (int k = 0; k < m; k++)
        t->top_logprobs[k] = (float)((double)l[t->top_ids[k]] - lse);
    t->n_top = m;
}

/* One sequence's next token from its logits row into s->pick and s->tk: penalties, the
 * (constrained) draw, log-probabilities. Reads and writes only the sequence's own state and the
 * thread's scratch, so the sequences of a step pick in parallel. */
static void pick(ft_infer *e, seq *s, const float *l, scratch *sc) {
    const int64_t V = e->V;
    float *w = sc->work;
    memcpy(w, l, (size_t)V * sizeof(float));
    /* penalties (transformers' repetition penalty on prompt and output; OpenAI's presence and
     * frequency on output tokens) */
    double rp = s->r.repetition_penalty;
    if (rp > 0 && rp != 1)
        for (int64_t v = 0; v < V; v++)
            if (s->seen[v])
                w[v] = w[v] < 0 ? (float)(w[v] * rp) : (float)(w[v] / rp);
    if (s->r.presence_penalty != 0 || s->r.frequency_penalty != 0)
        for (size_t i = 0; i < s->n_out; i++) {
            int32_t v = s->out[i];
            if (s->counts[v] > 0) { /* once per distinct token */
                w[v] -= (float)(s->r.presence_penalty + s->r.frequency_penalty * s->counts[v]);
                s->counts[v] = -s->counts[v];
            }
        }
    for (size_t i = 0; i < s->n_out; i++)
        if (s->counts[s->out[i]] < 0)
            s->counts[s->out[i]] = -s->counts[s->out[i]];
    if (s->r.json)
        memcpy(sc->work2, w, (size_t)V * sizeof(float)); /* choose's second pass starts again */
    s->pick = choose(e, s, sc);
    s->tk = (ft_infer_token){.id = s->pick};
    if (s->pick >= 0 && s->r.top_logprobs >= 0 && !is_stop_id(e, s, s->pick))
        logprobs(l, V, s->pick, s->r.top_logprobs, &s->tk);
}

/* The picked token's consequences, on the engine thread in the step's order: stop checks,
 * counters, text, the TOKEN event. */
static void take(ft_infer *e, seq *s, scratch *sc) {
    const int32_t id = s->pick;
    if (id < 0) {
        FT_ERR(&s->err, FT_ERR_INTERNAL, "constrained decoding: no token of the vocabulary continues the JSON");
        finish(s, FT_INFER_ERROR);
        return;
    }
    if (is_stop_id(e, s, id)) {
        finish(s, FT_INFER_STOP);
        return;
    }
    double now = ft_time_now();
    pthread_mutex_lock(&e->mu);
    e->st.completion_tokens++;
    if (s->t_first == 0)
        hist_add(&e->st.ttft, now - s->t_submit);
    else
        hist_add(&e->st.itl, now - s->t_last);
    pthread_mutex_unlock(&e->mu);
    if (s->t_first == 0)
        s->t_first = now;
    s->t_last = now;
    s->out[s->n_out++] = id;
    s->counts[id]++;
    s->seen[id] = 1;
    if (s->grammar) {
        infer_gstate_feed(s->grammar, &s->gs, e->token_text[id], e->token_len[id], &sc->gtmp[0], &sc->gtmp[1]);
        infer_gstate_copy(&s->gs, &sc->gtmp[0]);
    }
    ft_buf piece = {0};
    ft_err err;
    if (s->stream && ft_tok_stream_push(s->stream, id, &piece, &err) != FT_OK) {
        s->err = err;
        ft_buf_free(&piece);
        finish(s, FT_INFER_ERROR);
        return;
    }
    if (
        (piece.len && ft_buf_append(&s->text, piece.data, piece.len) != FT_OK)) {
        FT_ERR(&s->err, FT_ERR_NOMEM, "out of memory");
        ft_buf_free(&piece);
        finish(s, FT_INFER_ERROR);
        return;
    }
    ft_buf_free(&piece);
    /* stop strings: the first one in the text ends it there; a tail that may still become one
     * is held back */
    size_t release = s->text.len;
    if (s->n_stop) {
        size_t from = s->sent > s->max_stop ? s->sent - s->max_stop : 0;
        const char *t = ft_buf_cstr(&s->text);
        size_t cut = SIZE_MAX;
        for (size_t i = 0; i < s->n_stop; i++) {
            const char *hit = memmem(t + from, s->text.len - from, s->stops[i], s->stop_len[i]);
            if (hit && (size_t)(hit - t) < cut)
                cut = (size_t)(hit - t);
        }
        if (cut != SIZE_MAX) {
            release = cut < s->sent ? s->sent : cut;
            s->stop_cut = true;
            finish(s, FT_INFER_STOP);
        } else {
            release = s->text.len - held_suffix(s, t, s->text.len, s->sent);
        }
    }
    ft_infer_event ev = {.kind = FT_INFER_TOKEN, .token = &s->tk, .text = s->text.data ? s->text.data + s->sent : "",
                         .text_len = release > s->sent ? release - s->sent : 0};
    s->sent = release > s->sent ? release : s->sent;
    if (s->r.cb)
        s->r.cb(s->r.user, &ev);
    /* a complete document ends here when nothing can follow it, or when the tokens are spent */
    if (!s->finished && s->grammar && infer_gstate_done(&s->gs) &&
        (!infer_gstate_can_continue(&s->gs) || (int64_t)s->n_out >= s->budget))
        finish(s, FT_INFER_STOP);
    if (!s->finished && (int64_t)s->n_out >= s->budget)
        finish(s, FT_INFER_LENGTH);
    s->next = id;
    s->decoding = true;
}

/* ---------------------------------------------------------------- the engine thread */

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Under the lock: requests cancelled while queued leave the queue (into *done). */
static void drop_cancelled_queued(ft_infer *e, seq **done) {
    seq **pp = &e->q_head, *prev = NULL;
    while (*pp) {
        seq *s = *pp;
        if (s->cancel || e->stopping) {
            *pp = s->next_q;
            if (e->q_tail == s)
                e->q_tail = prev;
            e->n_queued--;
            finish(s, FT_INFER_CANCELLED);
            s->next_q = *done;
            *done = s;
        } else {
            prev = s;
            pp = &s->next_q;
        }
    }
}

static void *engine_main(void *arg) {
    ft_infer *e = arg;
    const int64_t S = e->p.max_seqs;
    ft_decode_seq *ds = ft_calloc((size_t)S, sizeof *ds);
    seq **in_step = ft_calloc((size_t)S, sizeof *in_step), **pick_seq = ft_calloc((size_t)S, sizeof *pick_seq);
    int64_t *picks = ft_calloc((size_t)S, sizeof *picks); /* their logits rows (-1: cancelled) */
    FT_ASSERT(ds && in_step && pick_seq && picks);
    pthread_mutex_lock(&e->mu);
    for (;;) {
        seq *done = NULL;
        drop_cancelled_queued(e, &done);
        /* admit into free slots, oldest first, while the pool has room for the next one's tokens */
        for (int64_t k = 0; k < S && e->q_head; k++) {
            if (e->active[k])
                continue;
            if (ft_kv_pool_reserve(e->pool, k, e->q_head->kv_need, NULL) != FT_OK)
                break; /* it waits for blocks to be released (first come, first served) */
            seq *s = e->q_head;
            e->q_head = s->next_q;
            if (!e->q_head)
                e->q_tail = NULL;
            e->n_queued--;
            s->next_q = NULL;
            s->slot = k;
            s->t_start = ft_time_now();
            e->active[k] = s;
        }
        int64_t n_active = 0;
        for (int64_t k = 0; k < S; k++) {
            seq *s = e->active[k];
            if (!s)
                continue;
            if (s->cancel || e->stopping)
                finish(s, FT_INFER_CANCELLED);
            if (s->finished) {
                e->active[k] = NULL;
                ft_kv_pool_release(e->pool, k);
                s->next_q = done;
                done = s;
            } else {
                n_active++;
            }
        }
        e->st.running = n_active;
        e->st.queued = e->n_queued;
        e->st.kv_tokens_used = ft_kv_pool_reserved(e->pool);
        if (done) {
            pthread_mutex_unlock(&e->mu);
            while (done) {
                seq *s = done;
                done = s->next_q;
                emit_done(e, s);
                seq_free(s);
            }
            pthread_mutex_lock(&e->mu);
            continue;
        }
        if (e->stopping)
            break;
        if (n_active == 0) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        /* the step: decode rows first, then prompt chunks round-robin in the rows left */
        int64_t n = 0, rows = 0;
        for (int64_t k = 0; k < S; k++) {
            seq *s = e->active[k];
            if (s && s->decoding) {
                ds[n] = (ft_decode_seq){.slot = k, .tokens = &s->next, .n = 1, .logits = true};
                in_step[n++] = s;
                rows++;
            }
        }
        for (int64_t i = 0; i < S && rows < e->p.step_tokens; i++) {
            int64_t k = (e->rr + i) % S;
            seq *s = e->active[k];
            if (!s || s->decoding)
                continue;
            int64_t chunk = (int64_t)s->n_prompt - s->prefilled;
            if (chunk > e->p.step_tokens - rows)
                chunk = e->p.step_tokens - rows;
            ds[n] = (ft_decode_seq){.slot = k, .tokens = s->prompt + s->prefilled, .n = chunk,
                                    .logits = s->prefilled + chunk == (int64_t)s->n_prompt};
            in_step[n++] = s;
            rows += chunk;
        }
        e->rr = (e->rr + 1) % S;
        e->st.steps++;
        e->st.last_batch = n;
        hist_add(&e->st.batch, (double)n);
        pthread_mutex_unlock(&e->mu);

        ft_err err;
        ft_decode_profile pa, pb;
        ft_kv_pool_get_profile(e->pool, &pa);
        const double t_step = ft_time_now(), c_step = cpu_now();
        ft_status st = ft_model_decode_batch(e->m, e->pool, ds, n, e->logits, &err);
        const double t_model = ft_time_now();
        /* the sequences with logits pick their tokens, in parallel (each uses only its own state) */
        int64_t n_pick = 0;
        for (int64_t i = 0, row = 0; st == FT_OK && i < n; i++)
            if (ds[i].logits) {
                picks[n_pick] = in_step[i]->cancel ? -1 : row;
                pick_seq[n_pick++] = in_step[i];
                row++;
            }
#pragma omp parallel for schedule(dynamic, 1) num_threads(e->n_scr) if (n_pick > 1 && e->n_scr > 1)
        for (int64_t j = 0; j < n_pick; j++)
            if (picks[j] >= 0)
                pick(e, pick_seq[j], e->logits + picks[j] * e->V, &e->scr[omp_get_thread_num()]);
        for (int64_t i = 0; i < n; i++) {
            seq *s = in_step[i];
            if (st != FT_OK) {
                s->err = err;
                finish(s, FT_INFER_ERROR);
                continue;
            }
            if (!s->decoding)
                s->prefilled += ds[i].n;
            if (ds[i].logits && !s->cancel)
                take(e, s, &e->scr[0]);
            if (!s->finished && ft_kv_pool_len(e->pool, s->slot) >= ft_kv_pool_capacity(e->pool, s->slot) && s->decoding)
                finish(s, FT_INFER_LENGTH);
        }
        const double t_end = ft_time_now();
        ft_kv_pool_get_profile(e->pool, &pb);
        pthread_mutex_lock(&e->mu);
        ft_infer_profile *pf = rows > n ? &e->st.prefill_steps : &e->st.decode_steps;
        pf->steps++;
        pf->rows += rows;
        pf->step_s += t_end - t_step;
        pf->model_s += pb.total_s - pa.total_s;
        pf->matmul_s += pb.matmul_s - pa.matmul_s;
        pf->attention_s += pb.attention_s - pa.attention_s;
        pf->head_s += pb.head_s - pa.head_s;
        pf->logits_s += t_end - t_model;
        pf->cpu_s += cpu_now() - c_step;
    }
    pthread_mutex_unlock(&e->mu);
    ft_free(ds);
    ft_free(in_step);
    ft_free(pick_seq);
    ft_free(picks);
    ft_tensor_gemm_bf16_release(); /* this thread's bf16 packing buffers */
    return NULL;
}

/* ---------------------------------------------------------------- the public calls */

ft_status ft_infer_new(ft_model *m, const ft_tok *tok, const char *model_dir, const ft_infer_params *p,
                       ft_infer **out, ft_err *err) {
    *out = NULL;
    ft_infer *e = ft_calloc(1, sizeof *e);
    if (!e)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    e->p = p ? *p : ft_infer_default_params();
    const ft_model_config *c = ft_model_get_config(m);
    if (e->p.max_seqs <= 0)
        e->p.max_seqs = 8;
    if (e->p.step_tokens <= 0)
        e->p.step_tokens = 256;
    if (e->p.step_tokens < e->p.max_seqs)
        e->p.step_tokens = e->p.max_seqs;
    if (e->p.max_queue < 0)
        e->p.max_queue = 0;
    if (e->p.max_context <= 0)
        e->p.max_context = c->max_position_embeddings > 0 && c->max_position_embeddings < 4096
                               ? c->max_position_embeddings
                               : 4096;
    if (c->max_position_embeddings > 0 && e->p.max_context > c->max_position_embeddings)
        e->p.max_context = c->max_position_embeddings;
    e->m = m;
    e->tok = tok;
    e->V = c->vocab_size;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->st.slots = e->p.max_seqs;
    e->p.kv_tokens = e->p.kv_tokens > 0 ? e->p.kv_tokens : e->p.max_seqs * e->p.max_context;
    e->p.kv_tokens = (e->p.kv_tokens + FT_KV_BLOCK - 1) / FT_KV_BLOCK * FT_KV_BLOCK;
    e->st.kv_tokens = e->p.kv_tokens;
    ft_status s = ft_gen_new(m, tok, model_dir, 1, &e->gen, err);
    if (s == FT_OK)
        s = ft_kv_pool_new(m, e->p.max_seqs, e->p.max_context, e->p.step_tokens, e->p.kv_tokens, &e->pool, err);
    if (s == FT_OK) {
        e->logits = ft_malloc((size_t)e->p.max_seqs * (size_t)e->V * sizeof(float));
        e->active = ft_calloc((size_t)e->p.max_seqs, sizeof *e->active);
        /* a scratch per thread, at most one per sequence */
        int nt = omp_get_max_threads();
        e->n_scr = nt < 1 ? 1 : (int64_t)nt > e->p.max_seqs ? (int)e->p.max_seqs : nt;
        e->scr = ft_calloc((size_t)e->n_scr, sizeof *e->scr);
        if (!e->logits || !e->active || !e->scr)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; s == FT_OK && i < e->n_scr; i++) {
        scratch *sc = &e->scr[i];
        sc->work = ft_malloc((size_t)e->V * sizeof(float));
        sc->work2 = ft_malloc((size_t)e->V * sizeof(float));
        if (!sc->work || !sc->work2)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        else
            s = ft_sampler_init(&sc->sampler, e->V, err);
    }
    if (s == FT_OK && model_dir && ft_gen_has_chat_template(e->gen)) {
        ft_err e2;
        if (ft_chat_load(model_dir, &e->chat, &e2) != FT_OK)
            e->chat = NULL;
    }
    if (s == FT_OK) {
        if (pthread_create(&e->thread, NULL, engine_main, e) != 0)
            s = FT_ERR(err, FT_ERR_IO, "cannot start the engine thread");
        else
            e->started = true;
    }
    if (s != FT_OK) {
        ft_infer_free(e);
        return s;
    }
    *out = e;
    return FT_OK;
}

void ft_infer_free(ft_infer *e) {
    if (!e)
        return;
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stopping = true;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    if (e->token_text)
        for (int64_t v = 0; v < e->V; v++)
            ft_free(e->token_text[v]);
    ft_free(e->token_text);
    ft_free(e->token_len);
    for (int i = 0; e->scr && i < e->n_scr; i++) {
        ft_sampler_deinit(&e->scr[i].sampler);
        ft_free(e->scr[i].work);
        ft_free(e->scr[i].work2);
    }
    ft_free(e->scr);
    ft_free(e->logits);
    ft_free(e->active);
    ft_kv_pool_free(e->pool);
    ft_chat_free(e->chat);
    ft_gen_free(e->gen);
    ft_free(e);
}

ft_status ft_infer_chat_ids(ft_infer *e, const void *messages_json, int32_t **ids, size_t *n, ft_err *err) {
    *ids = NULL;
    *n = 0;
    if (!e->chat)
        return FT_ERR(err, FT_ERR_INVALID, "the model has no chat template (tokenizer_config.json chat_template)");
    ft_buf text = {0};
    ft_status s = ft_chat_render(e->chat, (const json_t *)messages_json, NULL, true, NULL, NULL, &text, err);
    if (s == FT_OK)
        s = ft_tok_encode_ids(e->tok, text.data ? text.data : "", text.len, false, ids, n, err);
    ft_buf_free(&text);
    return s;
}

ft_status ft_infer_check_schema(const void *json_schema, bool strict, ft_err *err) {
    infer_grammar *g = NULL;
    ft_status s = infer_schema_compile(json_schema, strict, &g, err);
    infer_grammar_free(g);
    return s;
}

ft_status ft_infer_submit(ft_infer *e, const ft_infer_request *r, uint64_t *id, ft_err *err) {
    if (id)
        *id = 0;
    if (!r->prompt || r->n_prompt == 0)
        return FT_ERR(err, FT_ERR_INVALID, "the prompt is empty");
    if ((int64_t)r->n_prompt >= e->p.max_context)
        return FT_ERR(err, FT_ERR_RANGE, "the prompt has %zu tokens; the context holds %lld (prompt and completion)",
                      r->n_prompt, (long long)e->p.max_context);
    for (size_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= e->V)
            return FT_ERR(err, FT_ERR_INVALID, "prompt token %zu: id %d outside the vocabulary (%lld)", i,
                          r->prompt[i], (long long)e->V);
    if (r->n_stop > FT_INFER_MAX_STOP_STRINGS)
        return FT_ERR(err, FT_ERR_INVALID, "at most %d stop strings", FT_INFER_MAX_STOP_STRINGS);
    if (r->top_logprobs > FT_INFER_MAX_TOP)
        return FT_ERR(err, FT_ERR_INVALID, "top_logprobs: at most %d", FT_INFER_MAX_TOP);
    if (r->json && token_texts(e, err) != FT_OK)
        return FT_ERR_NOMEM;
    seq *s = ft_calloc(1, sizeof *s);
    if (!s)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    s->r = *r;
    s->budget = e->p.max_context - (int64_t)r->n_prompt;
    if (r->max_tokens > 0 && r->max_tokens < s->budget)
        s->budget = r->max_tokens;
    s->kv_need = (int64_t)r->n_prompt + s->budget;
    if (s->kv_need > e->p.kv_tokens) {
        int64_t need = s->kv_need;
        ft_free(s);
        return FT_ERR(err, FT_ERR_RANGE, "the prompt (%zu tokens) and max_tokens need %lld cached tokens; the "
                      "KV pool holds %lld: lower max_tokens", r->n_prompt, (long long)need, (long long)e->p.kv_tokens);
    }
    s->n_prompt = r->n_prompt;
    s->prompt = ft_malloc(r->n_prompt * sizeof(int32_t));
    s->out = ft_malloc((size_t)s->budget * sizeof(int32_t));
    s->counts = ft_calloc((size_t)e->V, sizeof(int32_t));
    s->seen = ft_calloc((size_t)e->V, 1);
    ft_status st = s->prompt && s->out && s->counts && s->seen ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (st == FT_OK && e->tok)
        st = ft_tok_stream_new(e->tok, true, &s->stream, err);
    if (st == FT_OK && !e->tok && (r->json || r->n_stop))
        st = FT_ERR(err, FT_ERR_INVALID, "stop strings and JSON output need a tokenizer");
    for (size_t i = 0; st == FT_OK && i < r->n_stop; i++) {
        const char *t = r->stop[i];
        if (!t || !*t) {
            st = FT_ERR(err, FT_ERR_INVALID, "stop string %zu is empty", i);
            break;
        }
        s->stop_len[i] = strlen(t);
        if (!(s->stops[i] = ft_strdup(t)))
            st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        s->n_stop = i + 1;
        if (s->stop_len[i] > s->max_stop)
            s->max_stop = s->stop_len[i];
    }
    if (st != FT_OK) {
        seq_free(s);
        return st;
    }
    memcpy(s->prompt, r->prompt, r->n_prompt * sizeof(int32_t));
    for (size_t i = 0; i < r->n_prompt; i++)
        s->seen[r->prompt[i]] = 1;
    ft_rng_seed(&s->rng, r->seed);
    if (r->json) {
        if (r->json == FT_INFER_JSON_SCHEMA && !r->json_schema) {
            seq_free(s);
            return FT_ERR(err, FT_ERR_INVALID, "json_schema mode without a schema");
        }
        st = infer_schema_compile(r->json == FT_INFER_JSON_SCHEMA ? r->json_schema : NULL, r->json_strict,
                                  &s->grammar, err);
        if (st != FT_OK) {
            seq_free(s);
            return st;
        }
        infer_gstate_init(s->grammar, &s->gs);
    }
    s->slot = -1;
    s->t_submit = ft_time_now();
    pthread_mutex_lock(&e->mu);
    if (e->n_queued >= e->p.max_queue) {
        pthread_mutex_unlock(&e->mu);
        seq_free(s);
        return FT_ERR(err, FT_ERR_LIMIT, "the server is at capacity: %lld requests are waiting for one of %lld slots",
                      (long long)e->p.max_queue, (long long)e->p.max_seqs);
    }
    s->id = ++e->next_id;
    if (e->q_tail)
        e->q_tail->next_q = s;
    else
        e->q_head = s;
    e->q_tail = s;
    e->n_queued++;
    e->st.requests++;
    e->st.prompt_tokens += r->n_prompt;
    e->st.queued = e->n_queued;
    if (id)
        *id = s->id;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return FT_OK;
}

void ft_infer_cancel(ft_infer *e, uint64_t id) {
    pthread_mutex_lock(&e->mu);
    for (seq *s = e->q_head; s; s = s->next_q)
        if (s->id == id)
            s->cancel = true;
    for (int64_t k = 0; k < e->p.max_seqs; k++)
        if (e->active[k] && e->active[k]->id == id)
            e->active[k]->cancel = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void ft_infer_get_stats(ft_infer *e, ft_infer_stats *s) {
    pthread_mutex_lock(&e->mu);
    *s = e->st;
    int64_t used = 0;
    for (int64_t k = 0; k < e->p.max_seqs; k++)
        used += e->active[k] != NULL;
    s->slots_used = used;
    pthread_mutex_unlock(&e->mu);
}

/* ---------------------------------------------------------------- run to the end */

typedef struct run_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    ft_buf text;
    int32_t *ids;
    float *lp;
    size_t n, cap;
    ft_infer_result *out;
    ft_err err;
    bool failed;
    ft_status (*on_text)(void *, const char *, size_t);
    void *on_text_user;
    ft_infer *e;
    uint64_t id;
} run_state;

static void run_cb(void *user, const ft_infer_event *ev) {
    run_state *rs = user;
    if (ev->text_len) {
        ft_buf_append(&rs->text, ev->text, ev->text_len);
        if (rs->on_text && rs->on_text(rs->on_text_user, ev->text, ev->text_len) != FT_OK)
            ft_infer_cancel(rs->e, rs->id);
    }
    if (ev->kind == FT_INFER_TOKEN) {
        if (rs->n == rs->cap) {
            size_t cap = rs->cap ? 2 * rs->cap : 64;
            int32_t *ids = ft_realloc(rs->ids, cap * sizeof *ids);
            if (ids)
                rs->ids = ids;
            float *lp = ft_realloc(rs->lp, cap * sizeof *lp);
            if (lp)
                rs->lp = lp;
            if (!ids || !lp)
                return;
            rs->cap = cap;
        }
        rs->ids[rs->n] = ev->token->id;
        rs->lp[rs->n++] = ev->token->logprob;
        return;
    }
    pthread_mutex_lock(&rs->mu);
    rs->out->finish = ev->finish;
    rs->out->prompt_tokens = ev->prompt_tokens;
    rs->out->ttft_s = ev->ttft_s;
    rs->out->total_s = ev->total_s;
    if (ev->err) {
        rs->err = *ev->err;
        rs->failed = true;
    }
    rs->done = true;
    pthread_cond_signal(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
}

ft_status ft_infer_run(ft_infer *e, const ft_infer_request *r, ft_status (*on_text)(void *, const char *, size_t),
                       void *on_text_user, ft_infer_result *out, ft_err *err) {
    memset(out, 0, sizeof *out);
    run_state rs = {.out = out, .on_text = on_text, .on_text_user = on_text_user, .e = e};
    pthread_mutex_init(&rs.mu, NULL);
    pthread_cond_init(&rs.cv, NULL);
    ft_infer_request q = *r;
    q.cb = run_cb;
    q.user = &rs;
    if (r->top_logprobs < 0)
        q.top_logprobs = 0; /* the result carries each token's logprob */
    pthread_mutex_lock(&rs.mu); /* the id is set before the first callback can use it */
    ft_status s = ft_infer_submit(e, &q, &rs.id, err);
    if (s == FT_OK)
        while (!rs.done)
            pthread_cond_wait(&rs.cv, &rs.mu);
    pthread_mutex_unlock(&rs.mu);
    if (s == FT_OK && rs.failed) {
        if (err)
            *err = rs.err;
        s = rs.err.code != FT_OK ? rs.err.code : FT_ERR_INTERNAL;
    }
    if (s == FT_OK) {
        out->text = ft_strndup(rs.text.data ? rs.text.data : "", rs.text.len);
        out->text_len = rs.text.len;
        out->ids = rs.ids, out->logprobs = rs.lp, out->n_ids = rs.n;
        rs.ids = NULL, rs.lp = NULL;
        if (!out->text)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    ft_free(rs.ids);
    ft_free(rs.lp);
    ft_buf_free(&rs.text);
    pthread_mutex_destroy(&rs.mu);
    pthread_cond_destroy(&rs.cv);
    return s;
}

void ft_infer_result_free(ft_infer_result *r) {
    if (!r)
        return;
    ft_free(r->text);
    ft_free(r->ids);
    ft_free(r->logprobs);
    memset(r, 0, sizeof *r);
}
