/* bench/parquet_bench.c: the same chat data read as JSONL and as Parquet through the same
 * validation and tokenization (bench/parquet.bench.sh builds and runs it).
 * usage: parquet_bench TOKENIZER_DIR DATA.jsonl DATA.parquet CONTEXT_LENGTH THREADS ROUNDS [index]
 * `index`: also build the dataset index a training run builds (so the Parquet reader keeps its
 * records' text for the loader's fetch); without it, what `ftune validate` and `ftune create` do.
 * Rounds alternate the order (JSONL first, then Parquet first) so that neither side always
 * runs on a warmer machine; prints rows/s of each, the best round of each, and their ratio, by
 * wall time and by the process's CPU time (all threads): on a shared machine the CPU-time ratio
 * is the steadier one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ftune/data.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"

static int fail(const char *what, const ft_err *e) {
    fprintf(stderr, "parquet_bench: %s: %s\n", what, e->msg);
    return 1;
}

/* Seconds to validate (parse or decode, check, render the template, tokenize) every row. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run(const char *path, ft_validate_params *vp, double *secs, double *cpu, int64_t *rows, int64_t *tokens) {
    ft_err e;
    ft_err_clear(&e);
    ft_data_report *rep = NULL;
    ft_dataset *ds = NULL;
    double t0 = ft_time_now(), c0 = cpu_now();
    if (ft_data_validate(path, vp, &rep, vp->build_dataset ? &ds : NULL, &e) != FT_OK)
        return fail(path, &e);
    *secs = ft_time_now() - t0;
    *cpu = cpu_now() - c0;
    ft_dataset_free(ds);
    if (!rep->valid) {
        fprintf(stderr, "parquet_bench: %s is not valid (%lld errors)\n", path, (long long)rep->n_errors);
        return 1;
    }
    *rows = rep->n_records;
    *tokens = rep->n_tokens_full;
    ft_data_report_free(rep);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 7 && !(argc == 8 && !strcmp(argv[7], "index"))) {
        fprintf(stderr, "usage: parquet_bench TOKENIZER_DIR DATA.jsonl DATA.parquet CONTEXT_LENGTH THREADS ROUNDS [index]\n");
        return 2;
    }
    ft_err e;
    ft_err_clear(&e);
    ft_tok *tok = NULL;
    ft_chat *chat = NULL;
    if (ft_tok_load(argv[1], &tok, &e) != FT_OK)
        return fail("tokenizer", &e);
    if (ft_chat_load(argv[1], &chat, &e) != FT_OK)
        return fail("chat template", &e);
    ft_validate_params vp;
    ft_validate_default_params(&vp, FT_TASK_CHAT_COMPLETION);
    vp.sample.tok = tok;
    vp.sample.chat = chat;
    vp.sample.context_length = atoll(argv[4]);
    vp.threads = atoi(argv[5]);
    vp.build_dataset = argc == 8;
    int rounds = atoi(argv[6]);
    double best[2] = {1e30, 1e30}, best_cpu[2] = {1e30, 1e30};
    int64_t rows[2] = {0}, tokens[2] = {0};
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) {
            int which = (r % 2 == 0) ? k : 1 - k; /* alternate which goes first */
            double s, c;
            if (run(argv[2 + which], &vp, &s, &c, &rows[which], &tokens[which]))
                return 1;
            if (s < best[which])
                best[which] = s;
            if (c < best_cpu[which])
                best_cpu[which] = c;
            printf("round %d %-7s %lld rows in %.3f s (%.3f s CPU): %.0f rows/s, %.0f rows per CPU second\n", r,
                   which ? "parquet" : "jsonl", (long long)rows[which], s, c, (double)rows[which] / s,
                   (double)rows[which] / c);
        }
    }
    if (rows[0] != rows[1] || tokens[0] != tokens[1]) {
        fprintf(stderr, "parquet_bench: the two files differ (%lld vs %lld rows, %lld vs %lld tokens)\n",
                (long long)rows[0], (long long)rows[1], (long long)tokens[0], (long long)tokens[1]);
        return 1;
    }
    printf("{\"rows\": %lld, \"tokens\": %lld, \"jsonl_rows_per_s\": %.0f, \"parquet_rows_per_s\": %.0f, "
           "\"parquet_over_jsonl\": %.3f, \"jsonl_rows_per_cpu_s\": %.0f, \"parquet_rows_per_cpu_s\": %.0f, "
           "\"parquet_over_jsonl_cpu\": %.3f, \"threads\": %d, \"index\": %s, \"peak_rss_mb\": %.0f}\n",
           (long long)rows[0], (long long)tokens[0], (double)rows[0] / best[0], (double)rows[1] / best[1],
           best[0] / best[1], (double)rows[0] / best_cpu[0], (double)rows[1] / best_cpu[1], best_cpu[0] / best_cpu[1],
           vp.threads, vp.build_dataset ? "true" : "false", ft_peak_rss_mb());
    ft_chat_free(chat);
    ft_tok_free(tok);
    return 0;
}
