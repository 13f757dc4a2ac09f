/* tests/infer/test_infer.c: the continuous-batching engine on the tiny model: greedy output
 * equals ft_gen's (the batch-1 KV-cache generator) also with chunked prefill beside other
 * sequences; a sequence's tokens do not depend on what else is in the batch; max_tokens; stop
 * strings never leak, also split across tokens and while streaming; penalties; cancel; a full
 * queue is refused. JSON-constrained output: test_schema.c. */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "ftune/infer.h"
#include "test.h"
#include "infer_fixture.h"

/* The batch-1 KV-cache generator's greedy output for a prompt: what the engine's batched steps
 * must give (tok and dir may be NULL: ids only). */
static void gen_greedy(ft_model *m, const ft_tok *tok, const char *dir, const int32_t *prompt, size_t n,
                       int64_t max_new, ft_gen_output *want) {
    ft_generator *g = NULL;
    ft_err err;
    REQUIRE_OK(ft_gen_new(m, tok, dir, 0, &g, &err), &err);
    ft_gen_params gp = ft_gen_default_params();
    gp.sampling.temperature = 0;
    gp.max_new_tokens = max_new;
    REQUIRE_OK(ft_gen_from_ids(g, prompt, n, &gp, want, &err), &err);
    ft_gen_free(g);
}

/* Run the greedy request on e (after its neighbours were submitted) into *got; its ids must be
 * want's. */
static void engine_greedy(ft_infer *e, const int32_t *prompt, size_t n, int64_t max_new, const ft_gen_output *want,
                          ft_infer_result *got) {
    ft_err err;
    ft_infer_request r = ft_infer_default_request();
    r.sampling.temperature = 0;
    r.max_tokens = max_new;
    r.prompt = prompt, r.n_prompt = n;
    REQUIRE_OK(ft_infer_run(e, &r, NULL, NULL, got, &err), &err);
    CHECK_EQ_INT(got->n_ids, want->n_ids);
    CHECK(got->n_ids == want->n_ids && !memcmp(got->ids, want->ids, got->n_ids * sizeof(int32_t)));
}

TEST(infer_greedy_equals_gen) {
    infer_fixture f;
    ft_err err;
    REQUIRE(infer_fixture_load(&f, &err));
    ft_tensor_set_threads(2);
    /* a 100-token prompt, steps of 16 rows: prefilled in chunks beside three other sequences */
    int32_t prompt[100];
    infer_fill_prompt(prompt, 100, 1);
    ft_gen_output want;
    gen_greedy(f.m, f.tok, f.dir, prompt, 100, 40, &want);
    ft_infer_params ip = ft_infer_default_params();
    ip.max_seqs = 4;
    ip.step_tokens = 16;
    ft_infer *e = NULL;
    REQUIRE_OK(ft_infer_new(f.m, f.tok, f.dir, &ip, &e, &err), &err);
    /* neighbours: sampled sequences submitted first */
    int32_t other[3][60];
    for (int k = 0; k < 3; k++) {
        infer_fill_prompt(other[k], 60, (uint32_t)(k + 5));
        ft_infer_request o = ft_infer_default_request();
        o.prompt = other[k], o.n_prompt = 60, o.max_tokens = 50, o.seed = (uint64_t)k;
        REQUIRE_OK(ft_infer_submit(e, &o, NULL, &err), &err);
    }
    ft_infer_result got;
    engine_greedy(e, prompt, 100, 40, &want, &got);
    CHECK_STR_EQ(got.text, want.text);
    CHECK(got.finish == (want.stopped ? FT_INFER_STOP : FT_INFER_LENGTH));
    ft_infer_result_free(&got);
    ft_gen_output_free(&want);
    ft_infer_free(e);
    infer_fixture_free(&f);
}

/* ---------------------------------------------------------------- batch independence */

typedef struct collected {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t ids[256];
    size_t n;
    ft_infer_token first; /* the first token, with its logprobs */
    ft_buf text;
    bool done;
    ft_infer_finish finish;
    int64_t completion;
    int events;
} collected;

static void collect_cb(void *user, const ft_infer_event *ev) {
    collected *c = user;
    pthread_mutex_lock(&c->mu);
    if (ev->text_len)
        ft_buf_append(&c->text, ev->text, ev->text_len);
    if (ev->kind == FT_INFER_TOKEN) {
        if (c->n == 0)
            c->first = *ev->token;
        if (c->n < 256)
            c->ids[c->n++] = ev->token->id;
        c->events++;
    } else {
        c->done = true;
        c->finish = ev->finish;
        c->completion = ev->completion_tokens;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

static void collected_init(collected *c) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void collected_wait(collected *c) {
    pthread_mutex_lock(&c->mu);
    while (!c->done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void collected_free(collected *c) {
    ft_buf_free(&c->text);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

TEST(infer_sequence_independent_of_batch) {
    infer_fixture f;
    ft_err err;
    REQUIRE(infer_fixture_load(&f, &err));
    ft_tensor_set_threads(2);
    ft_infer_params ip = ft_infer_default_params();
    ip.max_seqs = 8;
    ft_infer *e = NULL;
    REQUIRE_OK(ft_infer_new(f.m, f.tok, f.dir, &ip, &e, &err), &err);
    int32_t prompts[8][40];
    ft_infer_request r[8];
    for (int k = 0; k < 8; k++) {
        infer_fill_prompt(prompts[k], (size_t)(20 + 2 * k), (uint32_t)k);
        r[k] = ft_infer_default_request();
        r[k].prompt = prompts[k], r[k].n_prompt = (size_t)(20 + 2 * k);
        r[k].max_tokens = 60;
        r[k].seed = 100 + (uint64_t)k;
        r[k].sampling = (ft_sampling){.temperature = 0.9, .top_k = 40, .top_p = 0.95, .min_p = 0.01};
        r[k].frequency_penalty = 0.3;
    }
    /* sequence 0 alone */
    ft_infer_result alone;
    REQUIRE_OK(ft_infer_run(e, &r[0], NULL, NULL, &alone, &err), &err);
    /* then all eight together */
    collected c[8];
    for (int k = 0; k < 8; k++) {
        collected_init(&c[k]);
        r[k].cb = collect_cb, r[k].user = &c[k];
        REQUIRE_OK(ft_infer_submit(e, &r[k], NULL, &err), &err);
    }
    for (int k = 0; k < 8; k++)
        collected_wait(&c[k]);
    ft_infer_stats st;
    ft_infer_get_stats(e, &st);
    CHECK(st.batch.n > 0);
    bool batched = false; /* some step held more than one sequence */
    for (int i = 1; i < FT_INFER_HIST + 1; i++)
        batched |= st.batch.count[i] > 0;
    CHECK(batched);
    CHECK_EQ_INT(c[0].n, alone.n_ids);
    CHECK(c[0].n == alone.n_ids && !memcmp(c[0].ids, alone.ids, alone.n_ids * sizeof(int32_t)));
    CHECK_STR_EQ(ft_buf_cstr(&c[0].text), alone.text);
    for (int k = 0; k < 8; k++)
        collected_free(&c[k]);
    ft_infer_result_free(&alone);
    ft_infer_free(e);
    infer_fixture_free(&f);
}

/* ---------------------------------------------------------------- limits and stops */

TEST(infer_max_tokens_and_stop_strings) {
    infer_fixture f;
    ft_err err;
    REQUIRE(infer_fixture_load(&f, &err));
    ft_tensor_set_threads(1);
    ft_infer *e = NULL;
    REQUIRE_OK(ft_infer_new(f.m, f.tok, f.dir, NULL, &e, &err), &err);
    int32_t prompt[12];
    infer_fill_prompt(prompt, 12, 3);
    ft_infer_request r = ft_infer_default_request();
    r.prompt = prompt, r.n_prompt = 12;
    r.sampling.temperature = 0.8;
    r.seed = 9;
    r.max_tokens = 5;
    ft_infer_result res;
    REQUIRE_OK(ft_infer_run(e, &r, NULL, NULL, &res, &err), &err);
    CHECK(res.finish == FT_INFER_LENGTH);
    CHECK_EQ_INT(res.n_ids, 5);
    ft_infer_result_free(&res);
    /* the full text, then stop strings cut from it: a 2-byte one (two byte tokens: across a
     * token boundary), and a longer one whose prefix appears earlier without completing */
    r.max_tokens = 60;
    ft_infer_result full;
    REQUIRE_OK(ft_infer_run(e, &r, NULL, NULL, &full, &err), &err);
    REQUIRE(full.text_len >= 30);
    const char *stop = NULL;
    char two[3] = {0};
    for (size_t at = 10; at + 2 <= full.text_len && !stop; at++) {
        memcpy(two, full.text + at, 2);
        if (two[0] && two[1] && (unsigned char)two[0] < 0x80 && (unsigned char)two[1] < 0x80)
            stop = two;
    }
    REQUIRE(stop);
    const char *first = strstr(full.text, stop);
    size_t want_len = (size_t)(first - full.text);
    collected c;
    collected_init(&c);
    r.stop[0] = stop, r.n_stop = 1;
    r.cb = collect_cb, r.user = &c;
    REQUIRE_OK(ft_infer_submit(e, &r, NULL, &err), &err);
    collected_wait(&c);
    CHECK(c.finish == FT_INFER_STOP);
    CHECK_EQ_INT(c.text.len, want_len);
    CHECK(c.text.len == want_len && !memcmp(c.text.data ? c.text.data : "", full.text, want_len));
    CHECK(!strstr(ft_buf_cstr(&c.text), stop));
    collected_free(&c);
    /* a stop string that never completes: nothing is lost, the whole text comes out */
    char never[64];
    snprintf(never, sizeof never, "%.1s\x01never", full.text + full.text_len - 1);
    r.stop[0] = never;
    collected_init(&c);
    REQUIRE_OK(ft_infer_submit(e, &r, NULL, &err), &err);
    collected_wait(&c);
    CHECK(c.finish == FT_INFER_LENGTH);
    CHECK_STR_EQ(ft_buf_cstr(&c.text), full.text);
    collected_free(&c);
    ft_infer_result_free(&full);
    ft_infer_free(e);
    infer_fixture_free(&f);
}

TEST(infer_penalties) {
    infer_fixture f;
    ft_err err;
    REQUIRE(infer_fixture_load(&f, &err));
    ft_tensor_set_threads(1);
    ft_infer *e = NULL;
    REQUIRE_OK(ft_infer_new(f.m, f.tok, f.dir, NULL, &e, &err), &err);
    int32_t prompt[8];
    infer_fill_prompt(prompt, 8, 2);
    ft_infer_request r = ft_infer_default_request();
    r.prompt = prompt, r.n_prompt = 8;
    r.sampling.temperature = 0;
    r.max_tokens = 60;
    ft_infer_result plain, pen;
    REQUIRE_OK(ft_infer_run(e, &r, NULL, NULL, &plain, &err), &err);
    /* a random tiny model repeats itself greedily; a large presence penalty forbids any repeat */
    bool repeats = false;
    for (size_t i = 0; i < plain.n_ids && !repeats; i++)
        for (size_t j = 0; j < i; j++)
            repeats |= plain.ids[i] == plain.ids[j];
    CHECK(repeats);
    r.presence_penalty = 1000;
    REQUIRE_OK(ft_infer_run(e, &r, NULL, NULL, &pen, &err), &err);
    bool distinct = true;
    for (size_t i = 0; i < pen.n_ids; i++)
        for (size_t j = 0; j < i; j++)
            distinct &= pen.ids[i] != pen.ids[j];
    CHECK(distinct);
    CHECK(pen.n_ids > 20);
    ft_infer_result_free(&pen);
    r.presence_penalty = 0;
    r.frequency_penalty = 1000;
    REQUIRE_OK(ft_infer_run(e, &r, NULL, NULL, &pen, &err), &err);
    distinct = true;
    for (size_t i = 0; i < pen.n_ids; i++)
        for (size_t j = 0; j < i; j++)
            distinct &= pen.ids[i] != pen.ids[j];
    CHECK(distinct);
    ft_infer_result_free(&pen);
    ft_infer_result_free(&plain);
    ft_infer_free(e);
    infer_fixture_free(&f);
}

/* ---------------------------------------------------------------- log-probabilities */

static int cmp_rank(const void *a, const void *b, void *ctx) {
    const double *l = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    return l[i] > l[j] ? -1 : l[i] < l[j] ? 1 : (i > j) - (i < j);
}

/* top_logprobs of the first token (picked beside three sampled sequences, on two threads) equal
 * the log-softmax of the batch-1 decoder's logits, ranked by a sort of all of them. */
TEST(infer_top_logprobs_from_logits) {
    infer_fixture f;
    ft_err err;
    REQUIRE(infer_fixture_load(&f, &err));
    ft_tensor_set_threads(2);
    const int64_t V = ft_model_get_config(f.m)->vocab_size;
    int32_t prompt[30];
    infer_fill_prompt(prompt, 30, 9);
    ft_kv_cache *kv = NULL;
    REQUIRE_OK(ft_kv_cache_new(f.m, 64, &kv, &err), &err);
    float *logits = malloc((size_t)V * sizeof(float));
    double *lsm = malloc((size_t)V * sizeof(double));
    int32_t *rank = malloc((size_t)V * sizeof(int32_t));
    REQUIRE(logits && lsm && rank);
    REQUIRE_OK(ft_model_decode(f.m, kv, prompt, 30, logits, &err), &err);
    double mx = -INFINITY, sum = 0;
    for (int64_t v = 0; v < V; v++)
        mx = logits[v] > mx ? logits[v] : mx;
    for (int64_t v = 0; v < V; v++)
        sum += exp((double)logits[v] - mx);
    for (int64_t v = 0; v < V; v++) {
        lsm[v] = (double)logits[v] - mx - log(sum);
        rank[v] = (int32_t)v;
    }
    qsort_r(rank, (size_t)V, sizeof(int32_t), cmp_rank, lsm);

    ft_infer_params ip = ft_infer_default_params();
    ip.max_seqs = 4;
    ft_infer *e = NULL;
    REQUIRE_OK(ft_infer_new(f.m, f.tok, f.dir, &ip, &e, &err), &err);
    int32_t other[3][20];
    for (int k = 0; k < 3; k++) {
        infer_fill_prompt(other[k], 20, (uint32_t)(k + 40));
        ft_infer_request o = ft_infer_default_request();
        o.prompt = other[k], o.n_prompt = 20, o.max_tokens = 8, o.seed = (uint64_t)k, o.top_logprobs = 5;
        REQUIRE_OK(ft_infer_submit(e, &o, NULL, &err), &err);
    }
    collected c;
    collected_init(&c);
    ft_infer_request r = ft_infer_default_request();
    r.prompt = prompt, r.n_prompt = 30, r.max_tokens = 2, r.sampling.temperature = 0;
    r.top_logprobs = FT_INFER_MAX_TOP;
    r.cb = collect_cb, r.user = &c;
    REQUIRE_OK(ft_infer_submit(e, &r, NULL, &err), &err);
    collected_wait(&c);
    REQUIRE(c.n > 0);
    const ft_infer_token *tk = &c.first;
    CHECK_EQ_INT(tk->id, rank[0]);
    CHECK_EQ_INT(tk->n_top, FT_INFER_MAX_TOP);
    CHECK_NEAR(tk->logprob, lsm[rank[0]], 1e-4);
    for (int k = 0; k < tk->n_top && k < V; k++) {
        CHECK_EQ_INT(tk->top_ids[k], rank[k]);
        CHECK_NEAR(tk->top_logprobs[k], lsm[rank[k]], 1e-4);
    }
    collected_free(&c);
    ft_infer_free(e);
    ft_kv_cache_free(kv);
    free(logits), free(lsm), free(rank);
    infer_fixture_free(&f);
}

TEST(infer_cancel_and_queue_limit) {
    infer_fixture f;
    ft_err err;
    REQUIRE(infer_fixture_load(&f, &err));
    ft_tensor_set_threads(1);
    ft_infer_params ip = ft_infer_default_params();
    ip.max_seqs = 1;
    ip.max_queue = 1;
    ft_infer *e = NULL;
    REQUIRE_OK(ft_infer_new(f.m, f.tok, f.dir, &ip, &e, &err), &err);
    int32_t prompt[8];
    infer_fill_prompt(prompt, 8, 5);
    collected a, b;
    collected_init(&a);
    collected_init(&b);
    ft_infer_request r = ft_infer_default_request();
    r.prompt = prompt, r.n_prompt = 8;
    r.cb = collect_cb, r.user = &a;
    uint64_t ida, idb;
    REQUIRE_OK(ft_infer_submit(e, &r, &ida, &err), &err);
    /* wait until a runs (the queue is empty again), then b waits in the queue, c is refused */
    for (int i = 0; i < 2000; i++) {
        ft_infer_stats st;
        ft_infer_get_stats(e, &st);
        if (st.queued == 0 && st.slots_used == 1)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    r.user = &b;
    REQUIRE_OK(ft_infer_submit(e, &r, &idb, &err), &err);
    CHECK(ft_infer_submit(e, &r, NULL, &err) == FT_ERR_LIMIT);
    ft_infer_cancel(e, idb);
    ft_infer_cancel(e, ida);
    collected_wait(&a);
    collected_wait(&b);
    CHECK(a.finish == FT_INFER_CANCELLED);
    CHECK(b.finish == FT_INFER_CANCELLED);
    CHECK(a.completion < 200);
    /* by the time a request's end is reported, its slot and cache tokens are free in the stats */
    ft_infer_stats st;
    ft_infer_get_stats(e, &st);
    CHECK_EQ_INT(st.slots_used, 0);
    CHECK_EQ_INT(st.running, 0);
    CHECK_EQ_INT(st.kv_tokens_used, 0);
    CHECK_EQ_INT(st.finished[FT_INFER_CANCELLED], 2);
    /* a prompt that leaves no room is refused */
    int32_t big[256];
    infer_fill_prompt(big, 256, 1);
    r.prompt = big, r.n_prompt = 256;
    CHECK(ft_infer_submit(e, &r, NULL, &err) == FT_ERR_RANGE);
    collected_free(&a);
    collected_free(&b);
    ft_infer_free(e);
    infer_fixture_free(&f);
}

/* After ft_model_set_inference_dtype(bf16), the batched steps follow the KV-cache decoder's bf16
 * recipe: greedy output equal to ft_gen's, with neighbours in the batch. */
TEST(infer_bf16_greedy_equals_gen) {
    infer_fixture f;
    ft_err err;
    REQUIRE(infer_fixture_load(&f, &err));
    ft_tensor_set_threads(2);
    REQUIRE_OK(ft_model_set_inference_dtype(f.m, FT_DTYPE_BF16, &err), &err);
    int32_t prompt[70];
    infer_fill_prompt(prompt, 70, 3);
    ft_gen_output want;
    gen_greedy(f.m, f.tok, f.dir, prompt, 70, 30, &want);
    ft_infer_params ip = ft_infer_default_params();
    ip.max_seqs = 3;
    ip.step_tokens = 24;
    ft_infer *e = NULL;
    REQUIRE_OK(ft_infer_new(f.m, f.tok, f.dir, &ip, &e, &err), &err);
    int32_t other[2][40];
    for (int k = 0; k < 2; k++) {
        infer_fill_prompt(other[k], 40, (uint32_t)(k + 7));
        ft_infer_request o = ft_infer_default_request();
        o.prompt = other[k], o.n_prompt = 40, o.max_tokens = 40, o.seed = (uint64_t)k;
        REQUIRE_OK(ft_infer_submit(e, &o, NULL, &err), &err);
    }
    ft_infer_result got;
    engine_greedy(e, prompt, 70, 30, &want, &got);
    /* the first token's logprob: the KV-cache decoder's on the bf16 recipe, not on the fp32 one
     * over the same (rounded) weights */
    double lp[2];
    for (int k = 0; k < 2; k++) {
        REQUIRE_OK(ft_model_set_inference_dtype(f.m, k == 0 ? FT_DTYPE_BF16 : FT_DTYPE_FP32, &err), &err);
        ft_kv_cache *kv = NULL;
        REQUIRE_OK(ft_kv_cache_new(f.m, 128, &kv, &err), &err);
        float l[259];
        REQUIRE_OK(ft_model_decode(f.m, kv, prompt, 70, l, &err), &err);
        double mx = l[0], sum = 0;
        for (int v = 1; v < 259; v++)
            mx = l[v] > mx ? l[v] : mx;
        for (int v = 0; v < 259; v++)
            sum += exp((double)l[v] - mx);
        lp[k] = (double)l[got.ids[0]] - (mx + log(sum));
        ft_kv_cache_free(kv);
    }
    fprintf(stderr, "  first-token logprob: engine %.7f, decoder bf16 %.7f, decoder fp32 recipe %.7f\n",
            (double)got.logprobs[0], lp[0], lp[1]);
    CHECK(fabs(got.logprobs[0] - lp[0]) < 1e-5);
    CHECK(fabs(lp[0] - lp[1]) > 2e-5); /* the check above tells the recipes apart */
    ft_infer_result_free(&got);
    ft_gen_output_free(&want);
    ft_infer_free(e);
    infer_fixture_free(&f);
}

/* A mixture-of-experts model (Mixtral's MLP, or DBRX's: LayerNorm, clamped Wqkv, fused experts)
 * through the batched steps: greedy ids equal the KV-cache decoder's, beside another sequence,
 * with no tokenizer (ids only). */
static void moe_greedy_equals_gen(bool dbrx) {
    ft_model_config c;
    ft_model_config_default(&c);
    snprintf(c.architecture, sizeof c.architecture, dbrx ? "DbrxForCausalLM" : "MixtralForCausalLM");
    snprintf(c.model_type, sizeof c.model_type, dbrx ? "dbrx" : "mixtral");
    c.vocab_size = 101, c.hidden_size = 32, c.intermediate_size = 48, c.num_hidden_layers = 2;
    c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 8, c.max_position_embeddings = 128;
    c.num_local_experts = 4, c.num_experts_per_tok = 2, c.initializer_range = 0.2;
    if (dbrx)
        c.num_experts_per_tok = 3, c.clip_qkv = 0.5, c.moe_normalize_expert_weights = 1.0;
    ft_model_params mp = ft_model_default_params();
    ft_model *m = NULL;
    ft_err err;
    REQUIRE_OK(ft_model_new_random(&c, 9, &mp, &m, &err), &err);
    ft_tensor_set_threads(2);
    int32_t prompt[40];
    for (int i = 0; i < 40; i++)
        prompt[i] = (int32_t)((i * 37 + 5) % 101);
    ft_gen_output want;
    gen_greedy(m, NULL, NULL, prompt, 40, 20, &want);
    ft_infer_params ip = ft_infer_default_params();
    ip.max_seqs = 2;
    ip.step_tokens = 16;
    ip.max_context = 128;
    ft_infer *e = NULL;
    REQUIRE_OK(ft_infer_new(m, NULL, NULL, &ip, &e, &err), &err);
    ft_infer_request o = ft_infer_default_request();
    o.prompt = prompt + 3, o.n_prompt = 30, o.max_tokens = 30, o.seed = 1;
    REQUIRE_OK(ft_infer_submit(e, &o, NULL, &err), &err);
    ft_infer_result got;
    engine_greedy(e, prompt, 40, 20, &want, &got);
    ft_infer_result_free(&got);
    ft_gen_output_free(&want);
    ft_infer_free(e);
    ft_model_free(m);
}
TEST(infer_moe_greedy_equals_gen) { moe_greedy_equals_gen(false); }
TEST(infer_dbrx_greedy_equals_gen) { moe_greedy_equals_gen(true); }

/* The KV pool is shared by reservations of prompt + max_tokens in blocks: 16 short requests run
 * together in a pool that holds only two full-context sequences, each with the greedy tokens it
 * has alone; a full-context request waits for room and then runs; one larger than the pool is
 * refused; the stats' pool use is the reserved tokens, back to 0 at the end. */
TEST(infer_kv_pool_reservations) {
    infer_fixture f;
    ft_err err;
    REQUIRE(infer_fixture_load(&f, &err));
    ft_tensor_set_threads(2);
    ft_infer_params ip = ft_infer_default_params();
    ip.max_seqs = 16;
    ip.max_context = 256;
    ip.kv_tokens = 2 * 256; /* two full-context sequences */
    ip.step_tokens = 256;
    ft_infer *e = NULL;
    REQUIRE_OK(ft_infer_new(f.m, f.tok, f.dir, &ip, &e, &err), &err);
    /* alone, on an engine with the default pool: the reference ids */
    ft_infer *alone = NULL;
    REQUIRE_OK(ft_infer_new(f.m, f.tok, f.dir, NULL, &alone, &err), &err);
    enum { N = 16, P = 8, MAX = 20 };
    int32_t prompts[N][P];
    collected c[N];
    for (int k = 0; k < N; k++) {
        infer_fill_prompt(prompts[k], P, (uint32_t)(k + 1));
        collected_init(&c[k]);
    }
    for (int k = 0; k < N; k++) { /* P + MAX = 28 tokens: 2 blocks of 16 each, 512 in all */
        ft_infer_request r = ft_infer_default_request();
        r.prompt = prompts[k], r.n_prompt = P, r.max_tokens = MAX;
        r.sampling.temperature = 0;
        r.cb = collect_cb, r.user = &c[k];
        REQUIRE_OK(ft_infer_submit(e, &r, NULL, &err), &err);
    }
    for (int k = 0; k < N; k++)
        collected_wait(&c[k]);
    ft_infer_stats st;
    ft_infer_get_stats(e, &st);
    CHECK_EQ_INT(st.kv_tokens, 512);
    CHECK_EQ_INT(st.kv_tokens_used, 0);
    /* some step ran more than 10 sequences (the batch histogram reuses the bounds as counts):
     * impossible with two full-context slots */
    CHECK(st.batch.count[FT_INFER_HIST - 1] > 0);
    for (int k = 0; k < N; k++) {
        ft_infer_request r = ft_infer_default_request();
        r.prompt = prompts[k], r.n_prompt = P, r.max_tokens = MAX;
        r.sampling.temperature = 0;
        ft_infer_result want;
        REQUIRE_OK(ft_infer_run(alone, &r, NULL, NULL, &want, &err), &err);
        CHECK(c[k].n == want.n_ids && !memcmp(c[k].ids, want.ids, want.n_ids * sizeof(int32_t)));
        ft_infer_result_free(&want);
    }
    /* a full-context request (no max_tokens: 256 tokens, half the pool) beside short ones */
    collected full;
    collected_init(&full);
    ft_infer_request r = ft_infer_default_request();
    r.prompt = prompts[0], r.n_prompt = P, r.seed = 3;
    r.cb = collect_cb, r.user = &full;
    REQUIRE_OK(ft_infer_submit(e, &r, NULL, &err), &err);
    for (int k = 0; k < N; k++) {
        collected_free(&c[k]);
        collected_init(&c[k]);
        ft_infer_request q = ft_infer_default_request();
        q.prompt = prompts[k], q.n_prompt = P, q.max_tokens = MAX, q.seed = (uint64_t)k;
        q.cb = collect_cb, q.user = &c[k];
        REQUIRE_OK(ft_infer_submit(e, &q, NULL, &err), &err);
    }
    collected_wait(&full);
    for (int k = 0; k < N; k++) {
        collected_wait(&c[k]);
        CHECK(c[k].finish == FT_INFER_STOP || c[k].finish == FT_INFER_LENGTH);
    }
    CHECK(full.finish == FT_INFER_STOP || full.finish == FT_INFER_LENGTH);
    ft_infer_get_stats(e, &st);
    CHECK_EQ_INT(st.kv_tokens_used, 0);
    /* larger than the pool: refused up front */
    ft_infer_params small = ip;
    small.kv_tokens = 64;
    ft_infer *e2 = NULL;
    REQUIRE_OK(ft_infer_new(f.m, f.tok, f.dir, &small, &e2, &err), &err);
    r = ft_infer_default_request();
    r.prompt = prompts[0], r.n_prompt = P, r.max_tokens = 100;
    CHECK(ft_infer_submit(e2, &r, NULL, &err) == FT_ERR_RANGE);
    CHECK(strstr(err.msg, "KV pool") != NULL);
    r.max_tokens = 50;
    ft_infer_result ok;
    REQUIRE_OK(ft_infer_run(e2, &r, NULL, NULL, &ok, &err), &err);
    ft_infer_result_free(&ok);
    ft_infer_free(e2);
    collected_free(&full);
    for (int k = 0; k < N; k++)
        collected_free(&c[k]);
    ft_infer_free(alone);
    ft_infer_free(e);
    infer_fixture_free(&f);
}
