/* bench/data_bench.c: data preparation throughput (bench/data.bench.sh builds and runs it).
 * usage: data_bench TOKENIZER_DIR DATA.jsonl CONTEXT_LENGTH ROWS_PER_BATCH THREADS
 * Times the validation pass (parse, check, render, tokenize every record and build the index)
 * and one epoch of the loader (fetch, render, tokenize, pack), and prints one JSON line. */
#include <stdio.h>
#include <stdlib.h>

#include "ftune/data.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"

static int fail(const char *what, const ft_err *e) {
    fprintf(stderr, "data_bench: %s: %s\n", what, e->msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: data_bench TOKENIZER_DIR DATA CONTEXT_LENGTH ROWS_PER_BATCH THREADS\n");
        return 2;
    }
    int64_t T = atoll(argv[3]), B = atoll(argv[4]);
    int threads = atoi(argv[5]);
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
    vp.sample.context_length = T;
    vp.build_dataset = true;
    vp.threads = threads;
    ft_data_report *rep = NULL;
    ft_dataset *ds = NULL;
    double t0 = ft_time_now();
    if (ft_data_validate(argv[2], &vp, &rep, &ds, &e) != FT_OK)
        return fail("validate", &e);
    double t_val = ft_time_now() - t0;
    if (!rep->valid || !ds) {
        fprintf(stderr, "data_bench: the generated data is not valid (%lld errors)\n", (long long)rep->n_errors);
        return 1;
    }
    ft_loader_params lp;
    ft_loader_default_params(&lp, B, T, 17);
    lp.threads = threads;
    ft_loader *l = NULL;
    t0 = ft_time_now();
    if (ft_loader_new(ds, &lp, NULL, &l, &e) != FT_OK)
        return fail("loader", &e);
    int64_t tokens = 0, rows = 0;
    for (;;) {
        ft_data_batch *b = NULL;
        if (ft_loader_next(l, &b, &e) != FT_OK)
            return fail("loader", &e);
        tokens += b->n_tokens;
        rows += B;
        bool end = b->epoch_ended;
        ft_loader_release(l, b);
        if (end)
            break;
    }
    double t_load = ft_time_now() - t0;
    printf("{\"records\": %lld, \"tokens\": %lld, \"trainable\": %lld, \"rows\": %lld, \"padding_percent\": %.2f, "
           "\"validate_seconds\": %.3f, \"validate_tokens_per_s\": %.0f, \"loader_seconds\": %.3f, "
           "\"loader_tokens_per_s\": %.0f, \"threads\": %d, \"peak_rss_mb\": %.0f}\n",
           (long long)rep->n_records, (long long)rep->n_tokens, (long long)rep->n_trainable, (long long)rows,
           rep->padding_pct, t_val, (double)rep->n_tokens_full / t_val, t_load, (double)tokens / t_load, threads,
           ft_peak_rss_mb());
    ft_loader_free(l);
    ft_dataset_free(ds);
    ft_data_report_free(rep);
    ft_chat_free(chat);
    ft_tok_free(tok);
    return 0;
}
