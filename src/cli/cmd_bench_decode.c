/* cli/cmd_bench_decode.c: `ftune bench decode --model M [--prompt-tokens 512] [--gen 64]
 * [--threads N] [--json]` (issue #13 item 5): single-stream inference speed of a model folder
 * through the KV-cache decoder (ft_model_decode, the path generation uses): time to first token
 * for a prompt of random token ids (the prefill and the first token's logits), then decode
 * tokens/s over --gen greedy steps, and the weight bytes one decode step reads (for the
 * bandwidth ceiling). bench/decode.bench.sh runs it beside llama.cpp (bench/decode_peer.mjs) on
 * the same model exported to GGUF. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "ftune/hf.h"
#include "ftune/model.h"
#include "ftune/tensor.h"

static const char SYNOPSIS[] = "--model M [--prompt-tokens N] [--gen N] [--threads N] [--json]";
static const cli_opt OPTS[] = {
    {"model", CLI_STR, "M: a model folder or name (fp32 weights in memory)"},
    {"prompt-tokens", CLI_INT, "N: prompt length for the time to first token (default 512)"},
    {"gen", CLI_INT, "N: timed decode steps (default 64)"},
    {"threads", CLI_INT, "N: threads (default: all cores)"},
    {NULL, 0, NULL},
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int32_t argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return (int32_t)b;
}

int cmd_bench_decode(int argc, char **argv) {
    const char *cmd = "bench decode";
    cli_args a;
    int rc = cli_parse(&a, cmd, SYNOPSIS, OPTS, argc, argv);
    if (rc)
        return rc < 0 ? CLI_EXIT_OK : rc;
    const char *name = cli_str(&a, "model", NULL);
    int64_t P = cli_int(&a, "prompt-tokens", 512), G = cli_int(&a, "gen", 64);
    if (!name)
        rc = cli_usage_error(cmd, "model", "required");
    else if (P < 1 || P > 1000000)
        rc = cli_usage_error(cmd, "prompt-tokens", "must be between 1 and 1000000");
    else if (G < 1 || G > 1000000)
        rc = cli_usage_error(cmd, "gen", "must be between 1 and 1000000");
    if (rc) {
        cli_args_free(&a);
        return rc;
    }
    int threads = (int)cli_int(&a, "threads", 0);
    if (threads > 0)
        ft_tensor_set_threads(threads);
    ft_err err = {0};
    char *dir = NULL;
    ft_model *m = NULL;
    ft_kv_cache *kv = NULL;
    float *logits = NULL;
    int32_t *prompt = NULL;
    if (ft_hf_resolve(name, &dir, &err) != FT_OK || ft_model_load(dir, NULL, &m, &err) != FT_OK ||
        ft_kv_cache_new(m, P + G + 1, &kv, &err) != FT_OK) {
        rc = cli_report(cmd, &err);
        goto out;
    }
    const ft_model_config *c = ft_model_get_config(m);
    logits = malloc((size_t)c->vocab_size * sizeof(float));
    prompt = malloc((size_t)P * sizeof(int32_t));
    if (!logits || !prompt) {
        rc = cli_fail(cmd, CLI_EXIT_FAIL, "out of memory");
        goto out;
    }
    int64_t vmax = c->vocab_size < 32000 ? c->vocab_size : 32000; /* the same ids as the peer's prompt */
    for (int64_t i = 0; i < P; i++)
        prompt[i] = (int32_t)(1 + (i * 7919 + 13) % (vmax - 1));
    /* Warm-up: one token through every weight (first-touch of the caches' pages, the kernels' own
     * one-time set-up), as the peer's warm-up. */
    if (ft_model_decode(m, kv, prompt, 1, logits, &err) != FT_OK) {
        rc = cli_report(cmd, &err);
        goto out;
    }
    ft_kv_cache_reset(kv);
    double t0 = now_s();
    ft_status s = ft_model_decode(m, kv, prompt, P, logits, &err);
    int32_t tok = argmax(logits, c->vocab_size);
    double ttft = now_s() - t0;
    t0 = now_s();
    for (int64_t i = 0; s == FT_OK && i < G; i++) {
        s = ft_model_decode(m, kv, &tok, 1, logits, &err);
        tok = argmax(logits, c->vocab_size);
    }
    double dec = now_s() - t0;
    if (s != FT_OK) {
        rc = cli_report(cmd, &err);
        goto out;
    }
    /* Bytes of weights one decode step reads: all of them but the embedding table (one row),
     * which the LM head reads in full when tied. */
    int64_t n_params = ft_model_config_n_params(c);
    int64_t read = n_params - (c->tie_word_embeddings ? 0 : c->vocab_size * c->hidden_size);
    double bytes = (double)read * 4.0;
    if (cli_has(&a, "json"))
        printf("{\"ttft_s\": %.6f, \"decode_tok_s\": %.3f, \"prompt_tokens\": %lld, \"gen_tokens\": %lld, "
               "\"threads\": %d, \"weight_bytes_per_token\": %.0f, \"params\": %lld}\n",
               ttft, (double)G / dec, (long long)P, (long long)G, ft_tensor_threads(), bytes, (long long)n_params);
    else
        printf("decode %s: time to first token (%lld-token prompt) %.3f s, decode %.2f tokens/s over %lld tokens, "
               "%.1f MB of weights per token, %d threads\n",
               name, (long long)P, ttft, (double)G / dec, (long long)G, bytes / 1e6, ft_tensor_threads());
out:
    free(logits);
    free(prompt);
    ft_kv_cache_free(kv);
    ft_model_free(m);
    ft_free(dir);
    cli_args_free(&a);
    return rc;
}
