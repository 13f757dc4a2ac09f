/* cli/data_summary.c: the human summary of a data validation (SPEC §3): counts, token
 * statistics, the length histogram, the packing plan and the estimated time; printed by
 * `ftune validate` and by `ftune create`'s validation step. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "data_summary.h"
#include "ftune/memplan.h"
#include "ftune/runs.h"

void cli_print_data_summary(FILE *f, const ft_data_report *r, ft_task_type task) {
    fprintf(f, "\n%s: %lld record%s in %lld file%s: %lld valid; %lld error%s, %lld warning%s\n",
           r->valid ? "valid" : "INVALID", (long long)r->n_records, r->n_records == 1 ? "" : "s",
           (long long)r->n_sources, r->n_sources == 1 ? "" : "s", (long long)r->n_valid_records,
           (long long)r->n_errors, r->n_errors == 1 ? "" : "s", (long long)r->n_warnings,
           r->n_warnings == 1 ? "" : "s");
    if (r->source_summary)
        fprintf(f, "read: %s\n", r->source_summary);
    if (r->n_sources > 1 || (r->n_sources == 1 && r->sources[0] && strstr(r->sources[0], ".parquet"))) {
        fprintf(f, "files read:");
        for (int64_t i = 0; i < r->n_sources && i < 8; i++)
            fprintf(f, " %s%s", r->sources[i], i + 1 < r->n_sources ? "," : "");
        if (r->n_sources > 8)
            fprintf(f, " ... and %lld more", (long long)(r->n_sources - 8));
        fprintf(f, "\n");
    }
    if (!r->has_tokens) {
        fprintf(f, "token statistics: need --model (the tokenizer%s)\n",
               task == FT_TASK_CHAT_COMPLETION ? " and chat template" : "");
        return;
    }
    fprintf(f, "samples %lld, tokens %lld (before truncation %lld), trainable tokens %lld\n", (long long)r->n_samples,
           (long long)r->n_tokens, (long long)r->n_tokens_full, (long long)r->n_trainable);
    fprintf(f, "truncated samples %lld, samples without trainable tokens %lld, longest sample %lld tokens\n",
           (long long)r->n_truncated, (long long)r->n_no_trainable, (long long)r->max_len);
    int64_t peak = 1;
    for (int i = 0; i < FT_DATA_HIST_BUCKETS; i++)
        if (r->hist[i] > peak)
            peak = r->hist[i];
    fprintf(f, "token lengths:\n");
    for (int i = 0; i < FT_DATA_HIST_BUCKETS; i++) {
        if (!r->hist[i])
            continue;
        char range[48];
        if (i + 1 < FT_DATA_HIST_BUCKETS)
            snprintf(range, sizeof range, "%lld-%lld", (long long)ft_data_hist_lower(i),
                     (long long)ft_data_hist_lower(i + 1) - 1);
        else
            snprintf(range, sizeof range, "%lld+", (long long)ft_data_hist_lower(i));
        int bar = (int)(40 * r->hist[i] / peak);
        fprintf(f, "  %14s %8lld ", range, (long long)r->hist[i]);
        for (int k = 0; k < (bar > 0 ? bar : 1); k++)
            fputs("#", f);
        fputc('\n', f);
    }
    fprintf(f, "context length %lld: %lld packed rows per epoch, %.1f%% padding\n", (long long)r->context_length,
           (long long)r->rows_per_epoch, r->padding_pct);
    fprintf(f, "tokens per epoch %lld x %.3g epochs = %lld tokens", (long long)r->tokens_per_epoch, r->epochs,
           (long long)r->tokens_total);
    if (r->steps_total > 0)
        fprintf(f, ", %lld optimizer steps", (long long)r->steps_total);
    fputc('\n', f);
    if (r->est_seconds >= 0) {
        char d[32];
        ft_format_duration(r->est_seconds, d, sizeof d);
        fprintf(f, "estimated training time: %s (%s)\n", d, r->est_note);
    } else {
        fprintf(f, "estimated training time: unavailable (%s)\n", r->est_note);
    }
}


void cli_plan_batches(ft_data_report *r, ft_data_duration d, int64_t global_batch_size) {
    ft_runs_plan_batches(r, d, global_batch_size);
}

int cli_memory_plan(FILE *f, const char *command, const ft_train_config *c, const ft_model_config *mc, int64_t T,
                    int64_t rows_per_epoch, int64_t processes, int64_t per_host, json_t **json) {
    char summary[1200];
    ft_err err;
    ft_memplan_world w = {.size = processes, .local = per_host, .zero = true};
    if (ft_runs_memory_plan(c, mc, T, rows_per_epoch, &w, json, summary, sizeof summary, &err) != FT_OK) {
        fprintf(stderr, "ftune %s: %s\n", command, err.msg);
        return CLI_EXIT_USAGE;
    }
    if (f)
        fprintf(f, "memory: %s\n", summary);
    return CLI_EXIT_OK;
}
