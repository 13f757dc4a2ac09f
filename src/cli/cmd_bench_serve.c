/* cli/cmd_bench_serve.c: `ftune bench serve --config small|medium|1b | --model DIR [--streams N]
 * [--new-tokens N] [--prompt-tokens N] [--ttft-prompt N] [--rounds N] [--threads N] [--json]`
 * (issue #13 item 5): the inference engine's speed on a randomly initialised model (or a model
 * folder) fed random token ids: single-stream decode tokens/s, aggregate tokens/s of N concurrent
 * streams (continuous batching) and their ratio, and the time to first token of a long prompt.
 * The measurements alternate for `rounds` rounds and the best of each is kept (a shared machine
 * only ever slows a run down). bench/serve.bench.sh runs it. (`ftune bench decode` times the
 * single-stream KV-cache decoder against llama.cpp.) */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "ftune/infer.h"
#include "ftune/model.h"
#include "ftune/tensor.h"

static const char SYNOPSIS[] = "--config small|medium|1b | --model DIR [--streams 8] [--new-tokens 64] "
                               "[--prompt-tokens 32] [--ttft-prompt 512] [--rounds 2] [--threads N] [--json]";
static const cli_opt OPTS[] = {
    {"config", CLI_STR, "small | medium | 1b: the shapes of `ftune bench train-step`, random weights"},
    {"model", CLI_STR, "DIR: a model folder instead (its weights; random token ids all the same)"},
    {"streams", CLI_INT, "N: concurrent streams of the batched measurement (default 8)"},
    {"new-tokens", CLI_INT, "N: tokens each stream generates (default 64)"},
    {"prompt-tokens", CLI_INT, "N: prompt tokens of each stream (default 32)"},
    {"ttft-prompt", CLI_INT, "N: prompt tokens of the time-to-first-token measurement (default 512)"},
    {"rounds", CLI_INT, "N: alternating rounds, best of each kept (default 2)"},
    {"threads", CLI_INT, "N: threads (default: all cores)"},
    {NULL, 0, NULL},
};

typedef struct shape {
    const char *name;
    int64_t V, C, L, NH, KVH, F;
    bool tied;
} shape;

static const shape SHAPES[] = {
    {"small", 32000, 288, 6, 6, 6, 768, true},
    {"medium", 32000, 768, 12, 12, 4, 2048, false},
    {"1b", 128256, 2048, 16, 32, 8, 8192, true},
};

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t left, tokens;
    double ttft_sum;
} waiter;

static void on_event(void *user, const ft_infer_event *ev) {
    waiter *w = user;
    if (ev->kind != FT_INFER_DONE)
        return;
    pthread_mutex_lock(&w->mu);
    w->tokens += ev->completion_tokens;
    w->ttft_sum += ev->ttft_s;
    if (--w->left == 0)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Where a measurement's decoding steps went (steps without prompt chunks), summed over its
 * rounds: the engine's counters after minus before (ft_infer_stats), and the process's CPU
 * seconds beside the wall time of the whole measurement (on a shared machine their ratio shows
 * how much of the cores the run had). */
typedef struct phase {
    ft_infer_profile d;
    int64_t prefill_steps;
    double prefill_s, wall_s, cpu_s;
} phase;

static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static void phase_add(phase *ph, const ft_infer_stats *a, const ft_infer_stats *b, double wall, double cpu) {
    const ft_infer_profile *x = &a->decode_steps, *y = &b->decode_steps;
    ph->d.steps += y->steps - x->steps;
    ph->d.rows += y->rows - x->rows;
    ph->d.step_s += y->step_s - x->step_s;
    ph->d.model_s += y->model_s - x->model_s;
    ph->d.matmul_s += y->matmul_s - x->matmul_s;
    ph->d.attention_s += y->attention_s - x->attention_s;
    ph->d.head_s += y->head_s - x->head_s;
    ph->d.logits_s += y->logits_s - x->logits_s;
    ph->d.cpu_s += y->cpu_s - x->cpu_s;
    ph->prefill_steps += b->prefill_steps.steps - a->prefill_steps.steps;
    ph->prefill_s += b->prefill_steps.step_s - a->prefill_steps.step_s;
    ph->wall_s += wall;
    ph->cpu_s += cpu;
}

/* Milliseconds per decoding step by part: the layers' products, attention, the LM head, the rest
 * of the model (norms, RoPE, SwiGLU, copies, thread wake-ups) and the logits processing after it;
 * then the steps with prompt chunks. */
static void phase_json(const char *name, const phase *ph) {
    const ft_infer_profile *d = &ph->d;
    double n = d->steps > 0 ? (double)d->steps : 1;
    printf("\"%s\": {\"decode_steps\": %lld, \"decode_rows\": %lld, \"step_ms\": %.2f, \"matmul_ms\": %.2f, "
           "\"attention_ms\": %.2f, \"head_ms\": %.2f, \"other_model_ms\": %.2f, \"logits_ms\": %.2f, "
           "\"step_cpu_ms\": %.2f, \"prefill_steps\": %lld, \"prefill_s\": %.3f, \"wall_s\": %.3f, \"cpu_s\": %.3f}",
           name, (long long)d->steps, (long long)d->rows, 1e3 * d->step_s / n, 1e3 * d->matmul_s / n,
           1e3 * d->attention_s / n, 1e3 * d->head_s / n, 1e3 * (d->model_s - d->matmul_s - d->attention_s - d->head_s) / n,
           1e3 * d->logits_s / n, 1e3 * d->cpu_s / n, (long long)ph->prefill_steps, ph->prefill_s, ph->wall_s, ph->cpu_s);
}

static void phase_text(const char *name, const phase *ph) {
    const ft_infer_profile *d = &ph->d;
    double n = d->steps > 0 ? (double)d->steps : 1;
    printf("  %s: %lld decoding steps of %.1f rows, %.1f ms/step (%.1f CPU-ms): products %.1f, attention %.1f, LM head "
           "%.1f, rest of the model %.1f, logits processing %.1f; %lld prefill steps %.2f s; %.1f CPU-s in %.1f s\n",
           name, (long long)d->steps, (double)d->rows / n, 1e3 * d->step_s / n, 1e3 * d->cpu_s / n,
           1e3 * d->matmul_s / n, 1e3 * d->attention_s / n, 1e3 * d->head_s / n,
           1e3 * (d->model_s - d->matmul_s - d->attention_s - d->head_s) / n, 1e3 * d->logits_s / n,
           (long long)ph->prefill_steps, ph->prefill_s, ph->cpu_s, ph->wall_s);
}

/* n streams of `prompt` tokens each generating `gen` tokens at once: wall seconds, *tokens. */
static ft_status run_streams(ft_infer *e, int64_t n, const int32_t *ids, int64_t prompt, int64_t gen, double *wall,
                             int64_t *tokens, double *ttft, ft_err *err) {
    waiter w = {.left = n};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    double t0 = ft_time_now();
    ft_status s = FT_OK;
    int64_t submitted = 0;
    for (int64_t i = 0; i < n && s == FT_OK; i++) {
        ft_infer_request r = ft_infer_default_request();
        r.prompt = ids + i * 7, r.n_prompt = (size_t)prompt; /* different prompts per stream */
        r.max_tokens = gen;
        r.seed = (uint64_t)i;
        r.cb = on_event, r.user = &w;
        s = ft_infer_submit(e, &r, NULL, err);
        if (s == FT_OK)
            submitted++;
    }
    pthread_mutex_lock(&w.mu);
    w.left -= n - submitted;
    while (w.left > 0)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    *wall = ft_time_now() - t0;
    *tokens = w.tokens;
    *ttft = submitted ? w.ttft_sum / (double)submitted : 0;
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return s;
}

int cmd_bench_serve(int argc, char **argv) {
    const char *cmd = "bench serve";
    cli_args a;
    int rc = cli_parse(&a, cmd, SYNOPSIS, OPTS, argc, argv);
    if (rc)
        return rc < 0 ? CLI_EXIT_OK : rc;
    const char *cfg = cli_str(&a, "config", NULL), *dir = cli_str(&a, "model", NULL);
    int64_t streams = cli_int(&a, "streams", 8), gen = cli_int(&a, "new-tokens", 64),
            prompt = cli_int(&a, "prompt-tokens", 32), ttft_prompt = cli_int(&a, "ttft-prompt", 512),
            rounds = cli_int(&a, "rounds", 2), threads = cli_int(&a, "threads", 0);
    bool json = cli_has(&a, "json");
    const shape *sh = NULL;
    for (size_t i = 0; cfg && i < sizeof SHAPES / sizeof *SHAPES; i++)
        if (!strcmp(cfg, SHAPES[i].name))
            sh = &SHAPES[i];
    if (!!cfg == !!dir)
        rc = cli_usage_error(cmd, "config", "give --config small|medium|1b or --model DIR");
    else if (cfg && !sh)
        rc = cli_usage_error(cmd, "config", "must be small, medium or 1b");
    else if (streams < 1 || streams > 256)
        rc = cli_usage_error(cmd, "streams", "must be between 1 and 256");
    else if (gen < 2 || gen > 100000)
        rc = cli_usage_error(cmd, "new-tokens", "must be between 2 and 100000");
    else if (prompt < 1 || ttft_prompt < 1 || prompt > 100000 || ttft_prompt > 100000)
        rc = cli_usage_error(cmd, "prompt-tokens", "prompts must be between 1 and 100000 tokens");
    else if (rounds < 1 || rounds > 100)
        rc = cli_usage_error(cmd, "rounds", "must be between 1 and 100");
    if (rc) {
        cli_args_free(&a);
        return rc;
    }
    if (threads > 0)
        ft_tensor_set_threads((int)threads);
    int64_t ctx = (prompt + gen > ttft_prompt + 1 ? prompt + gen : ttft_prompt + 1) + 8;
    ft_err err;
    ft_model *m = NULL;
    ft_model_params mp = ft_model_default_params();
    ft_status s;
    if (sh) {
        ft_model_config c;
        ft_model_config_default(&c);
        c.vocab_size = sh->V, c.hidden_size = sh->C, c.num_hidden_layers = sh->L;
        c.num_attention_heads = sh->NH, c.num_key_value_heads = sh->KVH, c.head_dim = sh->C / sh->NH;
        c.intermediate_size = sh->F, c.tie_word_embeddings = sh->tied;
        c.max_position_embeddings = ctx;
        c.rms_norm_eps = 1e-5;
        c.n_eos = 0; /* random weights: nothing stops a stream early */
        s = ft_model_new_random(&c, 1234, &mp, &m, &err);
    } else {
        s = ft_model_load(dir, &mp, &m, &err);
    }
    ft_infer *e = NULL;
    int32_t *ids = NULL;
    if (s == FT_OK) {
        const ft_model_config *c = ft_model_get_config(m);
        if (c->max_position_embeddings > 0 && c->max_position_embeddings < ctx)
            s = FT_ERR(&err, FT_ERR_INVALID, "the model's context (%lld) is shorter than the bench's %lld tokens",
                       (long long)c->max_position_embeddings, (long long)ctx);
        int64_t n_ids = ttft_prompt + prompt + 7 * streams + 8;
        ids = ft_malloc((size_t)n_ids * sizeof(int32_t));
        ft_rng rng;
        ft_rng_seed(&rng, 5);
        for (int64_t i = 0; ids && i < n_ids; i++)
            ids[i] = (int32_t)(1 + ft_rng_below(&rng, (uint64_t)(c->vocab_size - 1)));
        if (!ids && s == FT_OK)
            s = FT_ERR(&err, FT_ERR_NOMEM, "out of memory");
    }
    if (s == FT_OK) {
        ft_infer_params ip = ft_infer_default_params();
        ip.max_seqs = streams;
        ip.max_context = ctx;
        ip.max_queue = streams + 1;
        s = ft_infer_new(m, NULL, NULL, &ip, &e, &err); /* no tokenizer: ids only, stopped by length */
    }
    double best1 = 0, bestN = 0, best_ttft = 1e30;
    int64_t tok1 = 0, tokN = 0;
    double wall, ttft;
    if (s == FT_OK) /* warm-up: page in the weights, size the thread pool */
        s = run_streams(e, 1, ids, prompt, 4, &wall, &tok1, &ttft, &err);
    phase ph1 = {0}, phN = {0};
    ft_infer_stats sa, sb;
    double c0;
    for (int64_t r = 0; r < rounds && s == FT_OK; r++) {
        /* one stream: decode tokens/s after its first token */
        ft_infer_get_stats(e, &sa), c0 = cpu_now();
        s = run_streams(e, 1, ids, prompt, gen, &wall, &tok1, &ttft, &err);
        ft_infer_get_stats(e, &sb);
        phase_add(&ph1, &sa, &sb, wall, cpu_now() - c0);
        if (s == FT_OK && wall - ttft > 0 && (double)(tok1 - 1) / (wall - ttft) > best1)
            best1 = (double)(tok1 - 1) / (wall - ttft);
        /* N streams together: aggregate tokens/s over the wall time */
        ft_infer_get_stats(e, &sa), c0 = cpu_now();
        if (s == FT_OK)
            s = run_streams(e, streams, ids, prompt, gen, &wall, &tokN, &ttft, &err);
        ft_infer_get_stats(e, &sb);
        phase_add(&phN, &sa, &sb, wall, cpu_now() - c0);
        if (s == FT_OK && (double)tokN / wall > bestN)
            bestN = (double)tokN / wall;
        /* time to first token of a long prompt */
        if (s == FT_OK)
            s = run_streams(e, 1, ids, ttft_prompt, 2, &wall, &tok1, &ttft, &err);
        if (s == FT_OK && ttft < best_ttft)
            best_ttft = ttft;
        if (!json && s == FT_OK)
            fprintf(stderr, "round %lld: 1 stream %.1f tokens/s, %lld streams %.1f tokens/s, TTFT(%lld) %.1f ms\n",
                    (long long)r + 1, best1, (long long)streams, bestN, (long long)ttft_prompt, best_ttft * 1e3);
    }
    if (s != FT_OK) {
        rc = cli_report(cmd, &err);
    } else if (json) {
        printf("{\"model\": \"%s\", \"threads\": %d, \"streams\": %lld, \"new_tokens\": %lld, \"prompt_tokens\": %lld, "
               "\"single_tokens_per_s\": %.2f, \"aggregate_tokens_per_s\": %.2f, \"ratio\": %.2f, "
               "\"ttft_prompt_tokens\": %lld, \"ttft_s\": %.4f, ",
               sh ? sh->name : dir, ft_tensor_threads(), (long long)streams, (long long)gen, (long long)prompt, best1,
               bestN, best1 > 0 ? bestN / best1 : 0.0, (long long)ttft_prompt, best_ttft);
        phase_json("single", &ph1);
        printf(", ");
        phase_json("batched", &phN);
        printf("}\n");
    } else {
        printf("serve %s: 1 stream %.1f tokens/s; %lld streams %.1f tokens/s (%.2fx); TTFT %lld-token prompt %.1f "
               "ms\n",
               sh ? sh->name : dir, best1, (long long)streams, bestN, best1 > 0 ? bestN / best1 : 0.0,
               (long long)ttft_prompt, best_ttft * 1e3);
        phase_text("1 stream", &ph1);
        phase_text("batched", &phN);
    }
    ft_infer_free(e);
    ft_free(ids);
    ft_model_free(m);
    cli_args_free(&a);
    return rc;
}
