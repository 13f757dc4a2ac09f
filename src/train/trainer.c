/* train/trainer.c: a training run from start to finish (ftune/train.h, SPEC §2 and §4): data
 * validation and packing, model and optimizer set-up (fresh, from custom_weights_path, or from
 * the latest checkpoint on resume), the step loop with gradient accumulation, LinearWithWarmup,
 * clipping and numerical safety, checkpoints with evaluation, and the final export. Everything
 * the owner should know goes through the sink. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <unistd.h>

#include "ftune/data.h"
#include "ftune/gguf.h"
#include "ftune/hf.h"
#include "ftune/json.h"
#include "ftune/memplan.h"
#include "ftune/safetensors.h"
#include "train_internal.h"

#define STATE_FILE "trainer_state.json"

const char *const ft_train_run_entries[] = {"train_config.json", "checkpoints", "eval", "metrics.jsonl", "model",
                                            NULL};
#define WEIGHTS_FILE "model.safetensors"
#define OPTIM_FILE "optimizer.safetensors"

/* ---------------------------------------------------------------- the run's state */

typedef struct run {
    const ft_train_config *cfg;
    const ft_train_sink *sink;
    ft_train_result *res;
    char run_dir[1024];
    char *model_dir; /* resolved model folder (tokenizer, template, generation config) */
    ft_model_config mc;
    ft_tok *tok;
    ft_chat *chat;
    ft_dataset *ds, *eval_ds;
    ft_model *model;
    ft_workspace *ws; /* the training workspace (micro, T); evaluation uses it too */
    bool checkpointing;
    uint64_t predicted_peak; /* the memory planner's prediction, bytes (rank 0's) */
    uint64_t predicted_others; /* ranks > 0 */
    ft_dtype dtype;          /* the config's, `auto` resolved */
    const char *dtype_why;   /* how auto chose, or NULL */
    train_opt *opt;
    ft_loader *loader;
    train_eval_ctx ev;
    FILE *metrics; /* metrics.jsonl, appended */
    /* plan */
    int64_t T, G, micro;
    int64_t rows_per_epoch;
    ft_schedule sched;
    /* progress (saved in checkpoints) */
    int64_t step; /* optimizer steps done */
    int64_t epoch; /* epochs completed */
    ft_data_cursor cursor;
    int64_t tokens_seen;
    int64_t skipped, nonfinite_in_a_row, spikes;
    double *loss_window; /* ring of the last spike_window losses */
    int64_t n_window, window_pos;
    double elapsed_before; /* training seconds of earlier attempts */
    uint64_t config_hash;
    /* this attempt */
    double t_start;
    int64_t step_at_start;
    int next_progress_pct;
    int64_t last_saved_step;
    /* data parallelism (issue #15) */
    ft_comm *comm;         /* NULL: one process */
    bool root;             /* rank 0, which alone writes and reports (always, in one process) */
    ft_train_dp *dp;       /* NULL: no data parallelism */
    bool agreed;           /* a failure every rank knows of (so no rank waits for another) */
    char *hosts;           /* every rank's host name, by rank, comma-separated */
    int64_t local_ranks;   /* ranks on this host (this one included) */
    int released;          /* a follower: rank 0 ended the run with this status */
    /* FTUNE_TEST_FAULT (test_fault_parse): a fault injected on this rank */
    int fault;             /* TRAIN_FAULT_*; NONE */
    int64_t fault_step;
} run;

/* FTUNE_TEST_FAULT=KIND@RANK:STEP: a test hook (docs/distributed.md, "Failures"), not a setting.
 * It makes one rank fail as a real fault would, so that tests can check that every rank stops,
 * what the run records and that it resumes:
 *   fail@R:S   rank R's share of step S fails (an I/O error; data parallelism only);
 *   nan@R:S    rank R's share of step S and every later one has a NaN loss and gradient, which only
 *              it sees (data parallelism only);
 *   read@R:S   rank R's batch of step S cannot be read (an I/O error; also in one process);
 *   ckpt@R:S   writing the checkpoint of step S fails with "No space left on device" on rank R
 *              (0: the rank that writes; also in one process).
 * Steps count from 1. A value that does not parse is ignored with a warning in the log. */
static void test_fault_parse(run *r, int64_t rank) {
    const char *v = getenv("FTUNE_TEST_FAULT");
    if (!v || !*v)
        return;
    char kind[16] = "";
    long long fr = -1, fs = -1;
    int k = TRAIN_FAULT_NONE;
    if (sscanf(v, "%15[a-z]@%lld:%lld", kind, &fr, &fs) == 3 && fs >= 1)
        k = !strcmp(kind, "fail") ? TRAIN_FAULT_FAIL : !strcmp(kind, "nan") ? TRAIN_FAULT_NAN
            : !strcmp(kind, "ckpt") ? TRAIN_FAULT_CKPT : !strcmp(kind, "read") ? TRAIN_FAULT_READ : TRAIN_FAULT_NONE;
    if (k == TRAIN_FAULT_NONE) {
        FT_LOG_WARN("FTUNE_TEST_FAULT=%s: not KIND@RANK:STEP with KIND fail, nan, read or ckpt; ignored", v);
        return;
    }
    if (fr == rank) {
        r->fault = k;
        r->fault_step = fs;
    }
}

static bool multi(const ft_comm *c) { return c && ft_comm_size(c) > 1; }

/* Rank k's host name, from the run's comma-separated list (a static buffer; "?" when unknown). */
static const char *host_of(const run *r, int64_t k) {
    static char h[128];
    snprintf(h, sizeof h, "?");
    const char *p = r->hosts;
    for (int64_t i = 0; p && i < k; i++)
        p = (p = strchr(p, ',')) ? p + 1 : NULL;
    if (p) {
        size_t n = strcspn(p, ",");
        snprintf(h, sizeof h, "%.*s", (int)(n < sizeof h ? n : sizeof h - 1), p);
    }
    return h;
}

static ft_status emit(run *r, ft_train_event type, ft_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static ft_status emit(run *r, ft_train_event type, ft_log_level level, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!r->root) { /* rank 0 reports the run */
        ft_log_(FT_LOG_DEBUG, __FILE__, __LINE__, "rank %lld: %s: %s", (long long)ft_comm_rank(r->comm),
                ft_train_event_name(type), msg);
        return FT_OK;
    }
    /* The owner reports what it gets; without one, warnings and errors go to the log. */
    bool owned = r->sink && r->sink->on_event;
    ft_log_(owned ? FT_LOG_DEBUG : level, __FILE__, __LINE__, "%s: %s", ft_train_event_name(type), msg);
    if (owned)
        return r->sink->on_event(r->sink->user, type, level, msg);
    return FT_OK;
}

/* --export-gguf: the exported folder as model.gguf too (ftune/gguf.h), so that registration
 * copies it with the safetensors. A model GGUF cannot carry (its tokenizer, say) is not a failed
 * run: the event says why and how to export later; only a failed event store fails the run. */
static ft_status export_gguf(run *r, const char *dir, const char *dtype, ft_err *err) {
    ft_gguf_export_params p = ft_gguf_export_default_params();
    p.dtype = !strcmp(dtype, "f16") ? FT_ST_DTYPE_F16 : !strcmp(dtype, "bf16") ? FT_ST_DTYPE_BF16 : FT_ST_DTYPE_F32;
    p.overwrite = true; /* a resumed run writes it again */
    char *path = ft_path_join(dir, "model.gguf");
    if (!path)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_err gerr = {0};
    ft_gguf_export_info info;
    ft_status s = ft_gguf_export(dir, path, &p, &info, &gerr);
    if (s == FT_OK) {
        s = emit(r, FT_EVENT_TRAIN_UPDATED, FT_LOG_INFO, "GGUF export: %s (%s, %.1f MB)", path, dtype,
                 (double)info.bytes / 1e6);
    } else {
        char m[1200];
        ft_err_format(&gerr, m, sizeof m);
        s = emit(r, FT_EVENT_TRAIN_UPDATED, FT_LOG_WARN,
                 "GGUF export failed, the model is registered without model.gguf: %s", m);
    }
    ft_free(path);
    return s;
}

static ft_status metric(run *r, const char *name, double v) {
    if (r->metrics) {
        fprintf(r->metrics, "{\"step\": %lld, \"name\": \"%s\", \"value\": %.17g}\n", (long long)r->step, name,
                isfinite(v) ? v : 0.0);
    }
    if (r->sink && r->sink->on_metric)
        return r->sink->on_metric(r->sink->user, r->step, name, v);
    return FT_OK;
}

static bool stop_requested(run *r) { return r->sink && r->sink->should_stop && r->sink->should_stop(r->sink->user); }

/* ---------------------------------------------------------------- memory and batch sizes */

/* ZeRO-1 (the optimizer state sharded across the ranks) unless FTUNE_ZERO=0. */
static bool zero_on(void) {
    const char *v = getenv("FTUNE_ZERO");
    return !(v && !strcmp(v, "0"));
}

static ft_status choose_batch_sizes(run *r, ft_err *err) {
    const ft_train_config *c = r->cfg;
    int64_t G = c->global_batch_size;
    if (G <= 0) {
        G = 65536 / r->T;
        G = G < 1 ? 1 : G > 64 ? 64 : G;
        int64_t cap = r->rows_per_epoch / 8;
        if (G > cap)
            G = cap < 1 ? 1 : cap;
    }
    /* The memory planner: the micro-batch (given, or the largest up to min(G, 8)) and activation
     * checkpointing (preferred off) within the run's memory limit; a run that cannot fit stops
     * here, before the model is loaded, saying what would fit. */
    ft_memplan_choice ch;
    ft_memplan_world world = {.size = r->comm ? ft_comm_size(r->comm) : 1, .local = r->local_ranks, .zero = zero_on()};
    FT_TRY(ft_memplan_for_run(c, &r->mc, r->T, G, &world, NULL, &ch, NULL, err));
    r->G = G;
    r->micro = ch.micro_batch;
    r->checkpointing = ch.checkpointing;
    r->predicted_peak = ch.plan.total;
    r->predicted_others = ch.plan.total_others;
    return FT_OK;
}

/* ---------------------------------------------------------------- set-up */

static ft_status load_tokenizer_and_data(run *r, ft_err *err) {
    const ft_train_config *c = r->cfg;
    FT_TRY(ft_tok_load(r->model_dir, &r->tok, err));
    if (c->task_type == FT_TASK_CHAT_COMPLETION || c->n_eval_prompts) {
        char *p = ft_path_join(r->model_dir, "tokenizer_config.json");
        ft_err e2;
        if (p && ft_path_exists(p) && ft_chat_load(r->model_dir, &r->chat, &e2) != FT_OK) {
            r->chat = NULL;
            if (c->task_type == FT_TASK_CHAT_COMPLETION) {
                *err = e2;
                ft_free(p);
                return e2.code;
            }
        }
        ft_free(p);
        if (!r->chat && c->task_type == FT_TASK_CHAT_COMPLETION)
            return FT_ERR(err, FT_ERR_INVALID, "task_type CHAT_COMPLETION: the model %s has no chat template",
                          c->model);
    }
    int64_t maxpos = r->mc.max_position_embeddings > 0 ? r->mc.max_position_embeddings : 8192;
    r->T = c->context_length > 0 ? c->context_length : (maxpos < 8192 ? maxpos : 8192);
    if (r->T > maxpos)
        return FT_ERR(err, FT_ERR_INVALID, "context_length %lld is above the model's maximum of %lld",
                      (long long)r->T, (long long)maxpos);
    const char *paths[2] = {c->train_data_path, c->eval_data_path};
    ft_dataset **dss[2] = {&r->ds, &r->eval_ds};
    for (int k = 0; k < 2; k++) {
        if (!paths[k])
            continue;
        ft_validate_params vp;
        ft_train_validate_params(c, r->tok, r->chat, r->T, &vp);
        vp.build_dataset = true;
        vp.max_issues = 20;
        ft_data_report *rep = NULL;
        char *mapped = NULL;
        /* a table name or an HF dataset id is not a path: the reader resolves it */
        ft_status s = ft_data_path_is_table(paths[k]) ? ((mapped = ft_strdup(paths[k])) ? FT_OK : FT_ERR_NOMEM)
                                                      : ft_path_map(paths[k], &mapped, err);
        if (s == FT_OK)
            s = ft_data_validate(mapped, &vp, &rep, dss[k], err);
        ft_free(mapped);
        if (s == FT_OK && (!rep->valid || !*dss[k])) {
            ft_buf b = {0};
            for (size_t i = 0; i < rep->n_issues && i < 5; i++) {
                const ft_data_issue *is = &rep->issues[i];
                char place[1200];
                if (is->level == FT_ISSUE_ERROR)
                    ft_buf_appendf(&b, "; %s: %s", ft_data_issue_place(is, place, sizeof place), is->message);
            }
            s = FT_ERR(err, FT_ERR_INVALID, "%s %s is not valid: %lld error(s)%s", k ? "eval_data_path" : "train_data_path",
                       paths[k], (long long)rep->n_errors, ft_buf_cstr(&b));
            ft_buf_free(&b);
        }
        if (s == FT_OK && k == 0) {
            ft_pack_params pp;
            ft_pack_default_params(&pp, r->T, c->seed);
            ft_epoch_counts ec;
            s = ft_dataset_count_epoch(r->ds, &pp, 0, &ec, err);
            if (s == FT_OK) {
                r->rows_per_epoch = ec.rows > 0 ? ec.rows : 1;
                s = emit(r, FT_EVENT_DATA_VALIDATED, FT_LOG_INFO,
                         "%lld records, %lld samples, %lld tokens (%lld trainable), %lld truncated, %lld rows of %lld "
                         "tokens per epoch, %.1f%% padding",
                         (long long)rep->n_valid_records, (long long)rep->n_samples, (long long)rep->n_tokens,
                         (long long)rep->n_trainable, (long long)rep->n_truncated, (long long)ec.rows,
                         (long long)r->T, rep->padding_pct);
            }
        }
        ft_data_report_free(rep);
        if (s != FT_OK)
            return s;
    }
    return FT_OK;
}

/* Total steps and warmup from the duration and the data. */
static ft_status plan_schedule(run *r, ft_err *err) {
    const ft_train_config *c = r->cfg;
    ft_pack_params pp;
    ft_pack_default_params(&pp, r->T, c->seed);
    int64_t steps_per_epoch = (r->rows_per_epoch + r->G - 1) / r->G;
    ft_epoch_counts ec0;
    FT_TRY(ft_dataset_count_epoch(r->ds, &pp, 0, &ec0, err));
    double tokens_per_step = ec0.rows > 0 ? (double)ec0.tokens / (double)ec0.rows * (double)r->G : 1;
    int64_t total;
    if (c->training_duration.unit == FT_DURATION_EPOCHS) {
        /* Rows differ slightly between epochs (each packs its own shuffle): count them all. */
        int64_t rows = 0;
        for (int64_t e = 0; e < c->training_duration.value; e++) {
            ft_epoch_counts ec;
            FT_TRY(ft_dataset_count_epoch(r->ds, &pp, e, &ec, err));
            rows += ec.rows;
        }
        total = (rows + r->G - 1) / r->G;
        if (total < 1)
            total = 1;
    } else {
        total = ft_duration_to_steps(c->training_duration, steps_per_epoch, tokens_per_step);
    }
    int64_t warm;
    if (c->warmup.is_fraction)
        warm = (int64_t)floor(c->warmup.fraction * (double)total);
    else
        warm = ft_duration_to_steps(c->warmup.duration, steps_per_epoch, tokens_per_step);
    if (warm > total)
        warm = total;
    r->sched = (ft_schedule){.total_steps = total, .warmup_steps = warm, .peak_lr = c->learning_rate};
    return FT_OK;
}

/* ---------------------------------------------------------------- checkpoints */

static json_t *state_to_json(run *r) {
    json_t *win = json_array();
    for (int64_t i = 0; i < r->n_window; i++) {
        int64_t k = (r->window_pos - r->n_window + i + r->cfg->spike_window) % r->cfg->spike_window;
        json_array_append_new(win, json_real(r->loss_window[k]));
    }
    char hash[24];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)r->config_hash);
    json_t *o = json_pack("{s:i, s:I, s:I, s:I, s:I, s:f, s:s, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:o, s:f}",
                          "format", 1, "step", (json_int_t)r->step, "epoch", (json_int_t)r->epoch, "total_steps",
                          (json_int_t)r->sched.total_steps, "warmup_steps", (json_int_t)r->sched.warmup_steps,
                          "peak_lr", r->sched.peak_lr, "config_hash", hash, "global_batch_size", (json_int_t)r->G,
                          "micro_batch_size", (json_int_t)r->micro, "context_length", (json_int_t)r->T, "cursor",
                          ft_data_cursor_to_json(&r->cursor), "tokens_seen", (json_int_t)r->tokens_seen,
                          "skipped_updates", (json_int_t)r->skipped, "nonfinite_in_a_row",
                          (json_int_t)r->nonfinite_in_a_row, "loss_spikes", (json_int_t)r->spikes, "loss_window", win,
                          "elapsed_s", r->elapsed_before + (ft_time_now() - r->t_start));
    /* The loss of the step saved, so that a run resumed after its last step (killed before it
     * was registered) reports the real final loss. JSON has no NaN: a non-finite one is left out. */
    if (o && r->step > 0 && isfinite(r->res->final_loss))
        json_object_set_new(o, "last_loss", json_real(r->res->final_loss));
    return o;
}

static ft_status save_checkpoint(run *r, ft_err *err) {
    /* Data parallelism: the sharded optimizer state gathered to rank 0 first (every rank, before
     * anything that may fail on rank 0 alone); then rank 0 writes the checkpoint it holds whole. */
    FT_TRY(train_opt_gather(r->opt, err));
    if (!r->root) {
        r->last_saved_step = r->step;
        return FT_OK;
    }
    ft_ckpt_writer w;
    FT_TRY(ft_ckpt_begin(r->run_dir, r->epoch, r->step, &w, err));
    char *pw = ft_ckpt_path(&w, WEIGHTS_FILE), *po = ft_ckpt_path(&w, OPTIM_FILE), *pc = ft_ckpt_path(&w, "config.json"),
         *ps = ft_ckpt_path(&w, STATE_FILE);
    ft_status s = (pw && po && pc && ps) ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (s == FT_OK)
        s = train_save_weights(r->model, pw, err);
    if (s == FT_OK && r->fault == TRAIN_FAULT_CKPT && r->step == r->fault_step)
        s = FT_ERR_AT(err, FT_ERR_IO, po, 0, 0, "writing the optimizer state: No space left on device (injected by "
                      "FTUNE_TEST_FAULT)");
    if (s == FT_OK)
        s = train_opt_save(r->opt, po, err);
    if (s == FT_OK)
        s = ft_model_config_save(&r->mc, pc, err);
    if (s == FT_OK) {
        json_t *st = state_to_json(r);
        char *text = json_dumps(st, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
        json_decref(st);
        s = text ? ft_file_write_atomic(ps, text, strlen(text), err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        free(text);
    }
    if (s == FT_OK)
        s = ft_ckpt_commit(&w, err);
    else
        ft_ckpt_abort(&w);
    ft_free(pw);
    ft_free(po);
    ft_free(pc);
    ft_free(ps);
    if (s != FT_OK)
        return s;
    snprintf(r->res->last_checkpoint, sizeof r->res->last_checkpoint, "%s", w.final_dir);
    r->last_saved_step = r->step;
    if (r->metrics)
        fflush(r->metrics);
    FT_TRY(emit(r, FT_EVENT_CHECKPOINT_SAVED, FT_LOG_INFO, "checkpoint %s saved (step %lld of %lld)", w.name,
                (long long)r->step, (long long)r->sched.total_steps));
    if (r->sink && r->sink->on_checkpoint)
        FT_TRY(r->sink->on_checkpoint(r->sink->user, w.final_dir, r->epoch, r->step));
    return ft_ckpt_prune(r->run_dir, r->cfg->keep_checkpoints, err);
}

/* Why a separate parser: trainer_state.json is read back from disk, where it may be damaged or
 * written by hand; every value resume trusts (divisions by the micro-batch, the schedule, the
 * spike window) is checked here, and the parser can be fuzzed on its own. */
ft_status ft_train_state_parse(const char *path, const char *text, size_t len, ft_train_state *st, ft_err *err) {
    memset(st, 0, sizeof *st);
    json_t *j = NULL;
    FT_TRY(ft_json_load_buf(path, text, len, &j, err));
    ft_status s = FT_OK;
    if (!json_is_object(j))
        s = FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0, "expected a JSON object");
    const char *hash = NULL;
    struct {
        const char *key;
        int64_t *dst, min;
    } ints[] = {{"step", &st->step, 0},
                {"epoch", &st->epoch, 0},
                {"global_batch_size", &st->global_batch_size, 1},
                {"micro_batch_size", &st->micro_batch_size, 1},
                {"context_length", &st->context_length, 1},
                {"total_steps", &st->total_steps, 1},
                {"warmup_steps", &st->warmup_steps, 0},
                {"tokens_seen", &st->tokens_seen, 0},
                {"skipped_updates", &st->skipped_updates, 0},
                {"nonfinite_in_a_row", &st->nonfinite_in_a_row, 0},
                {"loss_spikes", &st->loss_spikes, 0}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints && s == FT_OK; i++) {
        s = ft_json_get_int(j, ints[i].key, true, ints[i].dst, path, err);
        if (s == FT_OK && *ints[i].dst < ints[i].min)
            s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"%s\" is %lld; it must be at least %lld", ints[i].key,
                          (long long)*ints[i].dst, (long long)ints[i].min);
    }
    if (s == FT_OK && st->micro_batch_size > st->global_batch_size)
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"micro_batch_size\" %lld is larger than \"global_batch_size\" %lld",
                      (long long)st->micro_batch_size, (long long)st->global_batch_size);
    if (s == FT_OK && st->step > st->total_steps)
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"step\" %lld is past \"total_steps\" %lld",
                      (long long)st->step, (long long)st->total_steps);
    if (s == FT_OK && st->warmup_steps > st->total_steps)
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"warmup_steps\" %lld is past \"total_steps\" %lld",
                      (long long)st->warmup_steps, (long long)st->total_steps);
    if (s == FT_OK)
        s = ft_json_get_str(j, "config_hash", true, &hash, path, err);
    if (s == FT_OK) {
        size_t n = strlen(hash);
        if (n != 16 || strspn(hash, "0123456789abcdef") != n)
            s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"config_hash\" must be 16 hex digits");
        else
            memcpy(st->config_hash, hash, 17);
    }
    if (s == FT_OK)
        s = ft_json_get_double(j, "elapsed_s", false, &st->elapsed_s, path, err);
    if (s == FT_OK && !(st->elapsed_s >= 0 && isfinite(st->elapsed_s)))
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"elapsed_s\" must be a non-negative number");
    json_t *win = s == FT_OK ? json_object_get(j, "loss_window") : NULL;
    if (win && !json_is_array(win))
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"loss_window\" must be a list of numbers");
    if (s == FT_OK && win && json_array_size(win)) {
        size_t n = json_array_size(win);
        st->loss_window = ft_malloc(n * sizeof *st->loss_window);
        if (!st->loss_window)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n && s == FT_OK; i++) {
            json_t *v = json_array_get(win, i);
            if (!json_is_number(v))
                s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"loss_window\"[%zu] must be a number", i);
            else
                st->loss_window[st->n_loss_window++] = json_number_value(v);
        }
    }
    if (s == FT_OK) { /* checkpoints written before last_loss: the newest loss of the spike window */
        json_t *ll = json_object_get(j, "last_loss");
        if (json_is_number(ll)) {
            st->has_last_loss = true;
            st->last_loss = json_number_value(ll);
        } else if (st->n_loss_window) {
            st->has_last_loss = true;
            st->last_loss = st->loss_window[st->n_loss_window - 1];
        }
    }
    if (s == FT_OK) {
        s = ft_data_cursor_from_json(json_object_get(j, "cursor"), &st->cursor, err);
        if (s != FT_OK && err && !err->file[0]) /* located in this file, as the errors above */
            snprintf(err->file, sizeof err->file, "%s", path);
    }
    json_decref(j);
    if (s != FT_OK) {
        ft_train_state_deinit(st);
        if (err && !err->msg[0])
            FT_ERR_AT(err, s, path, 0, 0, "invalid trainer state");
    }
    return s;
}

void ft_train_state_deinit(ft_train_state *st) {
    ft_free(st->loss_window);
    st->loss_window = NULL;
    st->n_loss_window = 0;
}

static ft_status load_state(run *r, const char *ckpt, ft_err *err) {
    char *p = ft_path_join(ckpt, STATE_FILE);
    char *text = NULL;
    size_t len = 0;
    ft_status s = p ? ft_file_read_all(p, &text, &len, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_train_state st;
    memset(&st, 0, sizeof st);
    if (s == FT_OK)
        s = ft_train_state_parse(p, text, len, &st, err);
    ft_free(text);
    ft_free(p);
    if (s != FT_OK)
        return s;
    char want[24];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)r->config_hash);
    if (strcmp(st.config_hash, want))
        s = FT_ERR_AT(err, FT_ERR_INVALID, ckpt, 0, 0,
                      "this checkpoint was written with a different configuration (hash %s, the run's is %s)",
                      st.config_hash, want);
    else if (st.context_length != r->T)
        s = FT_ERR_AT(err, FT_ERR_INVALID, ckpt, 0, 0, "context length %lld differs from the run's %lld",
                      (long long)st.context_length, (long long)r->T);
    if (s == FT_OK) {
        r->step = st.step;
        r->epoch = st.epoch;
        r->tokens_seen = st.tokens_seen;
        r->skipped = st.skipped_updates;
        r->nonfinite_in_a_row = st.nonfinite_in_a_row;
        r->spikes = st.loss_spikes;
        r->elapsed_before = st.elapsed_s;
        if (st.has_last_loss)
            r->res->final_loss = st.last_loss;
        r->cursor = st.cursor;
        /* The plan as it was: automatic sizes depend on free memory, which may have changed. */
        r->G = st.global_batch_size;
        r->micro = st.micro_batch_size;
        r->sched.total_steps = st.total_steps;
        r->sched.warmup_steps = st.warmup_steps;
        for (int64_t i = 0; i < st.n_loss_window; i++) {
            r->loss_window[r->window_pos] = st.loss_window[i];
            r->window_pos = (r->window_pos + 1) % r->cfg->spike_window;
            if (r->n_window < r->cfg->spike_window)
                r->n_window++;
        }
    }
    ft_train_state_deinit(&st);
    return s;
}

/* metrics.jsonl keeps only the steps up to the checkpoint resumed from (later ones are redone). */
static void truncate_metrics(const char *path, int64_t step) {
    char *data = NULL;
    size_t len = 0;
    if (ft_file_read_all(path, &data, &len, NULL) != FT_OK)
        return;
    ft_buf keep = {0};
    char *line = data;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (!nl)
            break; /* a torn last line is dropped */
        long long s = -1;
        if (sscanf(line, "{\"step\": %lld", &s) == 1 && s <= step)
            ft_buf_append(&keep, line, (size_t)(nl - line + 1));
        line = nl + 1;
    }
    ft_file_write_atomic(path, keep.data ? keep.data : "", keep.len, NULL);
    ft_buf_free(&keep);
    ft_free(data);
}

/* ---------------------------------------------------------------- evaluation */

static ft_status evaluate(run *r, ft_err *err) {
    if (!r->root || (!r->eval_ds && !r->cfg->n_eval_prompts))
        return FT_OK; /* rank 0 evaluates while the others wait at the next step */
    ft_eval_result er;
    ft_status s = train_evaluate(&r->ev, r->step, r->epoch, r->sink, &er, err);
    char name[64], rel[96];
    snprintf(name, sizeof name, "ep%lld-ba%lld", (long long)r->epoch, (long long)r->step);
    snprintf(rel, sizeof rel, "eval/%s.json", name);
    char *dir = ft_path_join(r->run_dir, "eval"), *path = ft_path_join(r->run_dir, rel);
    if (s == FT_OK)
        s = (dir && path) ? ft_mkdir_p(dir, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (s == FT_OK) {
        json_t *j = train_eval_to_json(&er);
        char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        json_decref(j);
        s = text ? ft_file_write_atomic(path, text, strlen(text), err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        free(text);
        er.json_path = path;
    }
    if (s == FT_OK && er.has_loss) {
        r->res->has_eval = true;
        r->res->eval_loss = er.loss;
        r->res->eval_token_accuracy = er.token_accuracy;
        s = metric(r, "eval_loss", er.loss);
        if (s == FT_OK)
            s = metric(r, "eval_token_accuracy", er.token_accuracy);
    }
    if (s == FT_OK) {
        ft_buf b = {0};
        if (er.has_loss)
            ft_buf_appendf(&b, "eval loss %.4f, token accuracy %.1f%% over %lld tokens", er.loss,
                           100.0 * er.token_accuracy, (long long)er.eval_tokens);
        for (size_t i = 0; i < er.n_generations; i++)
            ft_buf_appendf(&b, "%sprompt %zu: %.200s", b.len ? "; " : "", i + 1, er.generations[i].completion);
        s = emit(r, FT_EVENT_EVAL_COMPLETED, FT_LOG_INFO, "%s (%s)", ft_buf_cstr(&b), rel);
        ft_buf_free(&b);
    }
    if (s == FT_OK && r->sink && r->sink->on_eval)
        s = r->sink->on_eval(r->sink->user, &er);
    train_eval_free(&er);
    ft_free(dir);
    ft_free(path);
    return s;
}

/* ---------------------------------------------------------------- the step loop */

static bool spike_check(run *r, double loss, double *z) {
    return train_spike_check(r->loss_window, r->cfg->spike_window, &r->n_window, &r->window_pos, loss,
                             r->cfg->spike_zscore, z);
}

static bool save_due(run *r, bool epoch_ended) {
    const ft_duration *si = &r->cfg->save_interval;
    if (si->value <= 0)
        return epoch_ended;
    if (si->unit == FT_DURATION_BATCHES)
        return r->step % si->value == 0;
    return epoch_ended && r->epoch % si->value == 0;
}

/* Control messages of a data-parallel run, broadcast by rank 0 (ft_train_follow's too). */
typedef struct ctl_msg {
    int32_t kind, status;
    int64_t len;
} ctl_msg;
enum { CTL_RUN = 1, CTL_EXIT, CTL_GO, CTL_STOP };

/* At the top of every step rank 0 says whether to go on: so a stop request (Ctrl-C, cancel) stops
 * every rank at the same step, and a rank-0 failure between steps (its ft_train_release) ends the
 * followers instead of leaving them waiting. */
static ft_status step_control(run *r, bool *stop, ft_err *err) {
    if (!multi(r->comm)) {
        *stop = stop_requested(r);
        return FT_OK;
    }
    ctl_msg m = {.kind = r->root && stop_requested(r) ? CTL_STOP : CTL_GO};
    FT_TRY(ft_comm_bcast(r->comm, &m, sizeof m, 0, err));
    if (m.kind == CTL_EXIT) {
        r->agreed = true;
        r->released = m.status ? m.status : 1;
        return FT_ERR(err, FT_ERR_CANCELLED, "rank 0 ended the run (status %d); its log says why", (int)m.status);
    }
    if (m.kind != CTL_GO && m.kind != CTL_STOP)
        return FT_ERR(err, FT_ERR_INTERNAL, "data parallelism: unexpected control message %d from rank 0", (int)m.kind);
    *stop = m.kind == CTL_STOP;
    return FT_OK;
}

/* Before a checkpoint's collectives: rank 0 may have failed alone since the last step (writing a
 * metric or an event); its ft_train_release then reaches the followers here, as at the top of a
 * step, instead of finding them in the checkpoint's gather. */
static ft_status control_sync(run *r, ft_err *err) {
    bool stop = false;
    return multi(r->comm) ? step_control(r, &stop, err) : FT_OK;
}

/* Every rank's peak resident memory so far (VmHWM; the steps' peak is reached by the end of the
 * loop), by rank; NULL on failure (err set). A collective. */
static uint64_t *gather_peaks(run *r, ft_err *err) {
    int64_t N = multi(r->comm) ? ft_comm_size(r->comm) : 1;
    uint64_t mine = (uint64_t)(ft_peak_rss_mb() * 1048576.0), *all = ft_calloc((size_t)N, sizeof *all);
    if (!all) {
        if (r->comm) /* the others are in the gather */
            ft_comm_abort(r->comm, 1);
        FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    all[0] = mine;
    if (N > 1 && ft_comm_allgather_bytes(r->comm, &mine, sizeof mine, all, err) != FT_OK)
        ft_comm_abort(r->comm, 1); /* a collective failed: the ranks may be out of step */
    return all;
}

/* "memory: peak resident ...; predicted ...": what the memory planner predicted against what each
 * process used while training (VmHWM), for the owner (ftune events) and the tests. */
static ft_status report_peaks(run *r, const uint64_t *peaks, ft_err *err) {
    (void)err;
    int64_t N = multi(r->comm) ? ft_comm_size(r->comm) : 1;
    char x[32], y[32];
    if (N == 1)
        return emit(r, FT_EVENT_TRAIN_UPDATED, FT_LOG_INFO, "memory: peak resident %s; predicted %s (%+.1f%%)",
                    ft_memplan_format_bytes(peaks[0], x, 32), ft_memplan_format_bytes(r->predicted_peak, y, 32),
                    ((double)r->predicted_peak - (double)peaks[0]) / (double)(peaks[0] ? peaks[0] : 1) * 100.0);
    ft_buf b = {0};
    for (int64_t k = 0; k < N; k++) {
        uint64_t want = k ? r->predicted_others : r->predicted_peak;
        ft_buf_appendf(&b, "%srank %lld %s (predicted %s, %+.1f%%)", k ? ", " : "", (long long)k,
                       ft_memplan_format_bytes(peaks[k], x, 32), ft_memplan_format_bytes(want, y, 32),
                       ((double)want - (double)peaks[k]) / (double)(peaks[k] ? peaks[k] : 1) * 100.0);
    }
    ft_status s = emit(r, FT_EVENT_TRAIN_UPDATED, FT_LOG_INFO, "memory: peak resident per process: %s", ft_buf_cstr(&b));
    ft_buf_free(&b);
    return s;
}

static ft_status train_loop(run *r, ft_err *err) {
    ft_loader_params lp;
    ft_loader_default_params(&lp, r->G, r->T, r->cfg->seed);
    lp.threads = r->cfg->threads > 0 ? (r->cfg->threads < 2 ? 1 : r->cfg->threads / 2) : 0;
    FT_TRY(ft_loader_new(r->ds, &lp, r->step > 0 ? &r->cursor : NULL, &r->loader, err));
    r->t_start = ft_time_now();
    r->step_at_start = r->step;
    int64_t total = r->sched.total_steps;
    r->next_progress_pct = (int)(100 * r->step / total / 5 + 1) * 5;
    while (r->step < total) {
        bool stop = false;
        FT_TRY(step_control(r, &stop, err));
        if (stop) {
            if (r->last_saved_step != r->step)
                FT_TRY(save_checkpoint(r, err));
            r->res->outcome = FT_TRAIN_STOPPED;
            snprintf(r->res->reason, sizeof r->res->reason, "stopped on request at step %lld of %lld",
                     (long long)r->step, (long long)total);
            return emit(r, FT_EVENT_STOPPED, FT_LOG_INFO, "%s; checkpoint %s kept", r->res->reason,
                        r->res->last_checkpoint);
        }
        double t0 = ft_time_now();
        ft_data_batch *db = NULL;
        ft_status ls = ft_loader_next(r->loader, &db, err);
        if (ls == FT_OK && r->fault == TRAIN_FAULT_READ && r->step + 1 == r->fault_step)
            ls = FT_ERR(err, FT_ERR_IO, "reading the training data: Input/output error (injected by FTUNE_TEST_FAULT)");
        if (r->comm) /* a rank without its batch stops every rank (none waits in the step for it) */
            ls = train_dp_agree(r->dp, ls, false, err);
        if (ls != FT_OK) {
            if (db)
                ft_loader_release(r->loader, db);
            r->agreed = r->comm != NULL;
            ft_err_prefix(err, "step %lld of %lld", (long long)r->step + 1, (long long)total);
            return ls;
        }
        int64_t batch_epoch = db->epoch;
        bool epoch_ended = db->epoch_ended;
        int64_t n_tok = db->n_tokens, n_train = db->n_trainable;
        double lr = ft_schedule_lr(&r->sched, r->step);
        ft_train_step_result sr = {.loss = NAN, .grad_norm = NAN};
        ft_status s = FT_OK;
        if (n_train > 0) {
            ft_train_step_params sp = {.micro = r->micro, .denom = (double)n_train, .lr = lr,
                                       .max_norm = r->cfg->grad_clip, .dp = r->dp};
            if (r->dp) /* FTUNE_TEST_FAULT, a test hook */
                r->dp->inject = (r->fault == TRAIN_FAULT_FAIL && r->step + 1 == r->fault_step) ||
                                        (r->fault == TRAIN_FAULT_NAN && r->step + 1 >= r->fault_step)
                                    ? r->fault
                                    : TRAIN_FAULT_NONE;
            s = ft_train_step(r->model, r->ws, train_opt_optim(r->opt), &db->batch, &sp, &sr, err);
        }
        r->cursor = db->cursor;
        ft_loader_release(r->loader, db);
        if (s != FT_OK && r->comm && r->dp->failed) {
            /* a failure every rank knows of (train_dp_agree): rank 0 records it, all stop here */
            r->agreed = true;
            ft_err_prefix(err, "step %lld of %lld", (long long)r->step + 1, (long long)total);
            return s;
        }
        if (s != FT_OK && r->comm) {
            /* A failure inside the step's collectives may leave the other ranks waiting on this one:
             * say why (rank 0's sink records it), then end the whole job. */
            char m[1600];
            ft_err_format(err, m, sizeof m);
            FT_LOG_ERROR("rank %lld: %s", (long long)ft_comm_rank(r->comm), m);
            emit(r, FT_EVENT_FAILED, FT_LOG_ERROR, "rank 0: %s (all processes stop)", m);
            ft_comm_abort(r->comm, 1);
        }
        if (s != FT_OK)
            return s;
        double loss = sr.loss, gnorm = sr.grad_norm;
        bool skipped = !sr.updated;
        r->step++;
        r->tokens_seen += n_tok;
        /* Epochs completed: those before the cursor's (a big batch over a small dataset may end
         * several at once). */
        if (epoch_ended && r->epoch < batch_epoch + 1)
            r->epoch = batch_epoch + 1;
        if (r->epoch < r->cursor.epoch)
            r->epoch = r->cursor.epoch;
        if (skipped) {
            r->skipped++;
            r->nonfinite_in_a_row++;
            /* data parallelism: whose share of the batch it came from (every rank knows) */
            char whose[96] = "";
            if (r->comm && n_train > 0 && r->dp->nonfinite_rank >= 0)
                snprintf(whose, sizeof whose, ", first in the share of rank %lld of %lld (host %s)",
                         (long long)r->dp->nonfinite_rank, (long long)ft_comm_size(r->comm),
                         host_of(r, r->dp->nonfinite_rank));
            FT_TRY(emit(r, FT_EVENT_TRAIN_UPDATED, FT_LOG_WARN,
                        "step %lld: %s%s (loss %g, gradient norm %g); update skipped (%lld in a row)",
                        (long long)r->step,
                        n_train == 0 ? "no trainable token in the batch" : "non-finite loss or gradient", whose, loss,
                        gnorm, (long long)r->nonfinite_in_a_row));
            if (r->nonfinite_in_a_row >= r->cfg->max_nonfinite_in_a_row)
                return r->agreed = true, /* every rank sees the same losses and norms */
                       FT_ERR(err, FT_ERR_NUMERIC,
                              "training diverged: %lld updates in a row had a non-finite loss or gradient (last at "
                              "step %lld%s); lower the learning rate or check the data",
                              (long long)r->nonfinite_in_a_row, (long long)r->step, whose);
        } else {
            r->nonfinite_in_a_row = 0;
            double z;
            if (spike_check(r, loss, &z)) {
                r->spikes++;
                FT_TRY(emit(r, FT_EVENT_TRAIN_UPDATED, FT_LOG_WARN,
                            "step %lld: loss spike %.4f (z-score %.1f over the last %lld steps)", (long long)r->step,
                            loss, z, (long long)r->n_window));
            }
        }
        double now = ft_time_now(), dt = now - t0;
        double elapsed = r->elapsed_before + (now - r->t_start);
        double per_step = (now - r->t_start) / (double)(r->step - r->step_at_start);
        double eta = per_step * (double)(total - r->step);
        ft_train_step_info info = {.step = r->step,
                                   .total_steps = total,
                                   .epoch = batch_epoch,
                                   .loss = loss,
                                   .lr = lr,
                                   .grad_norm = gnorm,
                                   .tokens_per_s = dt > 0 ? (double)n_tok / dt : 0,
                                   .trainable_tokens = n_train,
                                   .tokens_seen = r->tokens_seen,
                                   .elapsed_s = elapsed,
                                   .eta_s = eta,
                                   .progress = (double)r->step / (double)total,
                                   .skipped = skipped};
        r->res->steps_done = r->step;
        r->res->final_loss = loss;
        FT_TRY(metric(r, "loss", loss));
        FT_TRY(metric(r, "lr", lr));
        FT_TRY(metric(r, "grad_norm", gnorm));
        if (n_train > 0 && ft_model_get_config(r->model)->num_local_experts > 0)
            FT_TRY(metric(r, "aux_loss", sr.aux_loss)); /* MoE load balancing, beside the loss */
        FT_TRY(metric(r, "tokens_per_s", info.tokens_per_s));
        if (r->dp && !r->dp->simulate) { /* data parallelism: rank 0's time in collectives, bytes it sent */
            FT_TRY(metric(r, "comm_s", r->dp->comm_s));
            FT_TRY(metric(r, "comm_bytes", r->dp->comm_bytes));
            r->dp->comm_s = r->dp->comm_bytes = 0;
        }
        FT_TRY(metric(r, "trainable_tokens", (double)n_train));
        FT_TRY(metric(r, "elapsed_s", elapsed));
        FT_TRY(metric(r, "eta_s", eta));
        if (r->sink && r->sink->on_step)
            FT_TRY(r->sink->on_step(r->sink->user, &info));
        int pct = (int)(100 * r->step / total);
        if (pct >= r->next_progress_pct || r->step == total) {
            char eta_s[32];
            ft_format_duration(eta, eta_s, sizeof eta_s);
            FT_TRY(emit(r, FT_EVENT_TRAIN_UPDATED, FT_LOG_INFO, "progress %d%%, step %lld/%lld, loss %.4f, ETA %s",
                        pct, (long long)r->step, (long long)total, loss, eta_s));
            while (r->next_progress_pct <= pct)
                r->next_progress_pct += 5;
        }
        if (r->step < total && save_due(r, epoch_ended)) {
            FT_TRY(control_sync(r, err));
            FT_TRY(save_checkpoint(r, err));
            FT_TRY(evaluate(r, err));
        }
    }
    FT_TRY(control_sync(r, err));
    uint64_t *peaks = gather_peaks(r, err);
    if (!peaks)
        return err->code;
    ft_status s = FT_OK;
    if (r->last_saved_step != r->step)
        s = save_checkpoint(r, err);
    peaks[0] = (uint64_t)(ft_peak_rss_mb() * 1048576.0); /* rank 0's, with the checkpoint written */
    if (s == FT_OK)
        s = report_peaks(r, peaks, err);
    ft_free(peaks);
    FT_TRY(s);
    FT_TRY(evaluate(r, err));
    return FT_OK;
}

/* ---------------------------------------------------------------- the run */

static void run_free(run *r) {
    if (r->ev.gen)
        ft_gen_free(r->ev.gen);
    ft_loader_free(r->loader);
    train_opt_free(r->opt);
    ft_workspace_free(r->ws);
    ft_model_free(r->model);
    ft_dataset_free(r->ds);
    ft_dataset_free(r->eval_ds);
    ft_chat_free(r->chat);
    ft_tok_free(r->tok);
    ft_free(r->model_dir);
    ft_free(r->loss_window);
    ft_free(r->hosts);
    train_dp_free(r->dp);
    if (r->metrics)
        fclose(r->metrics);
}

/* ---------------------------------------------------------------- data parallelism: set-up */

/* Every rank's status so far, shared: when one failed, all fail with its reason (rank 0 records it),
 * so no rank goes on to a collective the failed one never reaches. Called at the same points on
 * every rank, whatever their status. */
static ft_status sync_status(run *r, ft_status s, ft_err *err) {
    if (!multi(r->comm))
        return s;
    typedef struct {
        int32_t status;
        char msg[500];
    } st_msg;
    int64_t N = ft_comm_size(r->comm);
    st_msg mine = {.status = (int32_t)s};
    if (s != FT_OK)
        ft_err_format(err, mine.msg, sizeof mine.msg);
    st_msg *all = ft_calloc((size_t)N, sizeof *all);
    if (!all)
        ft_comm_abort(r->comm, 1);
    ft_err e2;
    if (ft_comm_allgather_bytes(r->comm, &mine, sizeof mine, all, &e2) != FT_OK)
        ft_comm_abort(r->comm, 1);
    ft_status out = s;
    for (int64_t k = 0; out == FT_OK && k < N; k++)
        if (all[k].status != FT_OK)
            out = FT_ERR(err, (ft_status)all[k].status, "rank %lld of %lld failed: %s", (long long)k, (long long)N,
                         all[k].msg);
    ft_free(all);
    if (out != FT_OK)
        r->agreed = true;
    return out;
}

/* What every rank must share with rank 0 before training: its plan (the micro-batch it chose from
 * its free memory, a resumed run's counters and data cursor) and what the data looked like. */
typedef struct dp_plan {
    int64_t T, G, micro, rows_per_epoch, total_steps, warmup_steps;
    int64_t step, epoch, tokens_seen, skipped, nonfinite_in_a_row, spikes;
    double elapsed_before;
    ft_data_cursor cursor;
} dp_plan;

static ft_status share_plan(run *r, ft_err *err) {
    dp_plan p = {r->T, r->G, r->micro, r->rows_per_epoch, r->sched.total_steps, r->sched.warmup_steps,
                 r->step, r->epoch, r->tokens_seen, r->skipped, r->nonfinite_in_a_row, r->spikes,
                 r->elapsed_before, r->cursor};
    FT_TRY(ft_comm_bcast(r->comm, &p, sizeof p, 0, err));
    if (r->root)
        return FT_OK;
    if (p.T != r->T || p.rows_per_epoch != r->rows_per_epoch)
        return FT_ERR(err, FT_ERR_INVALID,
                      "rank %lld (host %s) reads different training data from rank 0: %lld rows of %lld tokens per "
                      "epoch, rank 0 %lld rows of %lld; every process must read the same data and model",
                      (long long)ft_comm_rank(r->comm), ft_comm_host(r->comm), (long long)r->rows_per_epoch,
                      (long long)r->T, (long long)p.rows_per_epoch, (long long)p.T);
    r->G = p.G;
    r->micro = p.micro;
    r->sched.total_steps = p.total_steps;
    r->sched.warmup_steps = p.warmup_steps;
    r->step = p.step;
    r->epoch = p.epoch;
    r->tokens_seen = p.tokens_seen;
    r->skipped = p.skipped;
    r->nonfinite_in_a_row = p.nonfinite_in_a_row;
    r->spikes = p.spikes;
    r->elapsed_before = p.elapsed_before;
    r->cursor = p.cursor;
    return FT_OK;
}

/* Every rank's host name (the first collective of a run: every rank calls it before anything can
 * fail), and how many ranks share this host. */
static void gather_hosts(run *r) {
    int64_t N = ft_comm_size(r->comm);
    char mine[256] = "", *all = ft_calloc((size_t)N, sizeof mine);
    ft_err e2;
    if (!all)
        ft_comm_abort(r->comm, 1);
    snprintf(mine, sizeof mine, "%s", ft_comm_host(r->comm));
    if (ft_comm_allgather_bytes(r->comm, mine, sizeof mine, all, &e2) != FT_OK)
        ft_comm_abort(r->comm, 1);
    ft_buf hosts = {0};
    r->local_ranks = 0;
    for (int64_t k = 0; k < N; k++) {
        ft_buf_appendf(&hosts, "%s%s", k ? "," : "", all + k * (int64_t)sizeof mine);
        r->local_ranks += !strcmp(all + k * (int64_t)sizeof mine, mine);
    }
    ft_free(all);
    r->hosts = hosts.data;
}

/* "data parallel: world size N, hosts a,b,... (by rank), ZeRO-1 on|off, T threads per process":
 * `ftune get` reads the world size and hosts back from this event. */
static ft_status announce_world(run *r, ft_err *err) {
    if (!r->root)
        return FT_OK;
    if (!multi(r->comm)) { /* one process: its owner may record that too (a resume on 1 of N) */
        char host[256] = "localhost";
        gethostname(host, sizeof host - 1);
        const char *hosts[2] = {host, NULL};
        return r->sink && r->sink->on_world ? r->sink->on_world(r->sink->user, 1, hosts) : FT_OK;
    }
    int64_t N = ft_comm_size(r->comm);
    FT_TRY(emit(r, FT_EVENT_TRAIN_UPDATED, FT_LOG_INFO,
                "data parallel: world size %lld, hosts %s (by rank), ZeRO-1 %s, %d threads per process", (long long)N,
                r->hosts ? r->hosts : "?", r->dp && r->dp->zero ? "on" : "off", ft_tensor_threads()));
    if (!r->sink || !r->sink->on_world || !r->hosts)
        return FT_OK;
    char *copy = ft_strdup(r->hosts);
    const char **hosts = ft_calloc((size_t)N + 1, sizeof *hosts);
    ft_status s = copy && hosts ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    char *save = NULL, *h = copy ? strtok_r(copy, ",", &save) : NULL;
    for (int64_t k = 0; s == FT_OK && h && k < N; k++, h = strtok_r(NULL, ",", &save))
        hosts[k] = h;
    if (s == FT_OK)
        s = r->sink->on_world(r->sink->user, N, hosts);
    ft_free(hosts);
    ft_free(copy);
    return s;
}

/* `resume_from`: a checkpoint folder to continue from (NULL: a fresh start); on ranks > 0 of a
 * data-parallel run only its being non-NULL counts (rank 0 reads the checkpoint). */
static ft_status run_impl(const ft_train_config *cfg, const char *run_dir, const char *resume_from,
                          ft_comm *comm, const ft_train_sink *sink, ft_train_result *res, bool *agreed, int *released,
                          ft_err *err) {
    run r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    r.sink = sink;
    r.res = res;
    r.comm = multi(comm) ? comm : NULL;
    r.root = ft_comm_rank(r.comm) == 0;
    test_fault_parse(&r, ft_comm_rank(r.comm));
    if (r.comm)
        gather_hosts(&r);
    r.last_saved_step = -1;
    snprintf(r.run_dir, sizeof r.run_dir, "%s", run_dir);
    r.config_hash = ft_train_config_hash(cfg);
    r.t_start = ft_time_now();
    r.loss_window = ft_calloc((size_t)(cfg->spike_window > 1 ? cfg->spike_window : 2), sizeof(double));
    ft_status s = r.loss_window ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (s == FT_OK)
        s = emit(&r, FT_EVENT_STARTED, FT_LOG_INFO, "%s run %s%s%s", resume_from ? "resuming" : "starting",
                 cfg->name ? cfg->name : run_dir, resume_from ? " from " : "", resume_from ? resume_from : "");
    if (s == FT_OK)
        s = ft_hf_resolve(cfg->model, &r.model_dir, err);
    char *cfg_path = s == FT_OK ? ft_path_join(r.model_dir, "config.json") : NULL;
    if (s == FT_OK)
        s = cfg_path ? ft_model_config_load(cfg_path, &r.mc, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_free(cfg_path);
    if (s == FT_OK)
        s = load_tokenizer_and_data(&r, err);
    if (s == FT_OK)
        s = choose_batch_sizes(&r, err);
    if (s == FT_OK)
        s = plan_schedule(&r, err);
    if (s == FT_OK && resume_from) {
        ft_data_cursor_init(&r.cursor, cfg->seed);
        if (r.root)
            s = load_state(&r, resume_from, err);
        /* What the result says if no step is left to run: the checkpoint's own. */
        if (s == FT_OK)
            snprintf(res->last_checkpoint, sizeof res->last_checkpoint, "%s", resume_from);
    }
    /* Data parallelism: every rank validated the data itself; all go on only if all could, on rank 0's plan. */
    s = sync_status(&r, s, err);
    if (s == FT_OK && r.comm)
        s = share_plan(&r, err);
    s = sync_status(&r, s, err);
    if (s == FT_OK) /* a clear refusal rather than an allocation of more than the machine has */
        s = ft_train_check_memory(&r.mc, r.G, r.micro, r.T, err);
    /* Weights: the checkpoint resumed from, else custom_weights_path, else the model. */
    char *weights_dir = NULL; /* ranks > 0 load the model's, then take rank 0's weights */
    if (s == FT_OK && resume_from && r.root) {
        weights_dir = ft_strdup(resume_from);
    } else if (s == FT_OK && cfg->custom_weights_path && r.root) {
        s = ft_ckpt_resolve(cfg->custom_weights_path, &weights_dir, err);
        if (s == FT_OK)
            s = ft_train_check_architecture(&r.mc, weights_dir, err);
    }
    if (s == FT_OK)
        s = ft_tensor_gemm_env_check(err);
    if (s == FT_OK) {
        if (!strcmp(cfg->dtype, "auto"))
            r.dtype = ft_tensor_auto_dtype(&r.dtype_why);
        if (!strcmp(cfg->dtype, "auto") && r.dtype != FT_DTYPE_FP32 && r.mc.num_local_experts > 0) {
            r.dtype = FT_DTYPE_FP32; /* bf16 is not implemented for MoE layers yet */
            r.dtype_why = "auto: fp32, as bf16 is not implemented for mixture-of-experts models yet";
        }
        else
            ft_dtype_parse(cfg->dtype, &r.dtype);
        if (r.dtype == FT_DTYPE_BF16 && !r.dtype_why)
            ft_tensor_bf16_route(&r.dtype_why); /* how the route was chosen */
        if (cfg->threads > 0) /* the run's choice, process-wide */
            ft_tensor_set_threads(cfg->threads);
        else if (r.comm) /* all cores: shared among the ranks on this host */
            ft_tensor_set_threads(omp_get_num_procs() / (int)r.local_ranks > 1 ? omp_get_num_procs() / (int)r.local_ranks
                                                                                  : 1);
        ft_model_params mp = ft_model_default_params();
        mp.training = true;
        s = ft_model_load(weights_dir ? weights_dir : r.model_dir, &mp, &r.model, err);
    }
    if (s == FT_OK) {
        ft_workspace_params wp = ft_workspace_default_params();
        wp.max_batch = r.micro;
        wp.max_seq = r.T;
        wp.training = true;
        wp.checkpointing = r.checkpointing;
        wp.dtype = r.dtype;
        s = ft_workspace_new(r.model, &wp, &r.ws, err);
    }
    /* Data parallelism over the ranks, or its one-process simulation (FTUNE_DP_SIMULATE_RANKS=N:
     * the bits N ranks would compute; a test's reference). ZeRO-1 unless FTUNE_ZERO=0. */
    const char *sim_env = getenv("FTUNE_DP_SIMULATE_RANKS");
    int64_t sim = !r.comm && sim_env ? atoll(sim_env) : 0;
    bool zero = zero_on();
    if (s == FT_OK && (r.comm || sim > 1))
        s = train_dp_new(r.comm, r.comm ? 0 : sim, zero, r.model, &r.dp, err);
    if (s == FT_OK)
        s = train_opt_new_dp(r.model, cfg->optimizer, cfg->weight_decay, cfg->learning_rate, r.dp, &r.opt, err);
    if (s == FT_OK && resume_from && r.root) {
        char *po = ft_path_join(resume_from, OPTIM_FILE);
        s = po ? train_opt_read(r.opt, po, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        ft_free(po);
    }
    s = sync_status(&r, s, err);
    if (s == FT_OK && r.comm) { /* rank 0's weights (and optimizer state) on every rank */
        ft_param *p0 = ft_model_param(r.model, 0);
        s = ft_comm_bcast(r.comm, p0->data, (size_t)ft_model_n_elements(r.model) * sizeof(float), 0, err);
        if (s == FT_OK && resume_from)
            s = train_opt_scatter(r.opt, err);
        if (s != FT_OK) /* a collective failed: the ranks may be out of step */
            ft_comm_abort(r.comm, 1);
    }
    if (s == FT_OK)
        s = announce_world(&r, err);
    char peak_buf[32], others_buf[64] = "", ob[32];
    if (r.comm)
        snprintf(others_buf, sizeof others_buf, " on rank 0, %s on the others",
                 ft_memplan_format_bytes(r.predicted_others, ob, sizeof ob));
    /* "dtype D (GEMM route R" is read back by ft_runs_precision (ftune get) */
    if (s == FT_OK)
        s = emit(&r, FT_EVENT_MODEL_INITIALIZED, FT_LOG_INFO,
                 "%s from %s: %lld parameters; %lld steps (warmup %lld), global batch %lld x %lld tokens, micro-batch "
                 "%lld, %s, peak lr %g; dtype %s (GEMM route %s%s%s), activation checkpointing %s; predicted peak "
                 "memory %s%s%s",
                 r.mc.architecture, weights_dir ? weights_dir : r.model_dir,
                 (long long)ft_model_config_n_params(&r.mc), (long long)r.sched.total_steps,
                 (long long)r.sched.warmup_steps, (long long)r.G, (long long)r.T, (long long)r.micro,
                 cfg->optimizer == FT_OPTIMIZER_LION ? "lion" : "adamw", cfg->learning_rate, ft_dtype_name(r.dtype),
                 ft_tensor_gemm_route(r.dtype), r.dtype_why ? "; " : "", r.dtype_why ? r.dtype_why : "",
                 r.checkpointing ? "on" : "off", ft_memplan_format_bytes(r.predicted_peak, peak_buf, sizeof peak_buf),
                 r.comm ? others_buf : "", resume_from ? "; resuming" : "");
    ft_free(weights_dir);
    res->total_steps = r.sched.total_steps;
    res->global_batch_size = r.G;
    res->micro_batch_size = r.micro;
    res->context_length = r.T;
    if (s == FT_OK && r.root) {
        char *mp = ft_path_join(run_dir, "metrics.jsonl");
        if (mp && resume_from)
            truncate_metrics(mp, r.step);
        else if (mp)
            ft_file_write_atomic(mp, "", 0, NULL);
        r.metrics = mp ? fopen(mp, "a") : NULL;
        ft_free(mp);
        if (r.metrics)
            setvbuf(r.metrics, NULL, _IOLBF, 0);
    }
    if (s == FT_OK) {
        r.res->steps_done = r.step;
        r.last_saved_step = resume_from ? r.step : -1;
        r.ev = (train_eval_ctx){.model = r.model,
                                .ws = r.ws,
                                .tok = r.tok,
                                .model_dir = r.model_dir,
                                .eval_ds = r.eval_ds,
                                .T = r.T,
                                .seed = cfg->seed,
                                .chat = cfg->task_type == FT_TASK_CHAT_COMPLETION,
                                .prompts = (const char *const *)cfg->eval_prompts,
                                .n_prompts = cfg->n_eval_prompts,
                                .max_new_tokens = cfg->eval_max_new_tokens};
        s = train_loop(&r, err);
    }
    if (s == FT_OK && !r.root) { /* rank 0 exports and reports */
        res->outcome = res->outcome == FT_TRAIN_STOPPED ? FT_TRAIN_STOPPED : FT_TRAIN_COMPLETED;
    } else if (s == FT_OK && res->outcome != FT_TRAIN_STOPPED) {
        char *out = ft_path_join(run_dir, "model");
        s = out ? train_export(r.model, r.model_dir, out, train_export_dtype(cfg->export_dtype, &r.mc), 0, err)
                : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        if (s == FT_OK)
            snprintf(res->export_dir, sizeof res->export_dir, "%s", out);
        if (s == FT_OK && cfg->export_gguf[0])
            s = export_gguf(&r, out, cfg->export_gguf, err);
        ft_free(out);
        if (s == FT_OK) {
            res->outcome = FT_TRAIN_COMPLETED;
            char ev[96] = "";
            if (res->has_eval)
                snprintf(ev, sizeof ev, ", eval loss %.4f, eval token accuracy %.1f%%", res->eval_loss,
                         100.0 * res->eval_token_accuracy);
            s = emit(&r, FT_EVENT_TRAIN_FINISHED, FT_LOG_INFO,
                     "%lld steps, final loss %.4f%s; %lld skipped updates, %lld loss spikes; model exported to %s",
                     (long long)r.step, res->final_loss, ev, (long long)r.skipped, (long long)r.spikes,
                     res->export_dir);
        }
    }
    res->epochs_done = r.epoch;
    res->skipped_updates = r.skipped;
    res->loss_spikes = r.spikes;
    if (s != FT_OK) {
        res->outcome = FT_TRAIN_FAILED;
        char m[1600];
        ft_err_format(err, m, sizeof m);
        snprintf(res->reason, sizeof res->reason, "%s", m);
        ft_err keep = *err;
        emit(&r, FT_EVENT_FAILED, FT_LOG_ERROR, "%s", m);
        *err = keep;
    }
    if (agreed)
        *agreed = r.agreed;
    if (released)
        *released = r.released;
    if (r.released)
        res->outcome = FT_TRAIN_FAILED;
    run_free(&r);
    return s;
}

static ft_status write_config(const ft_train_config *cfg, const char *run_dir, ft_err *err) {
    json_t *j = ft_train_config_to_json(cfg);
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(j);
    char *p = ft_path_join(run_dir, "train_config.json");
    ft_status s = text && p ? ft_file_write_atomic(p, text, strlen(text), err) : FT_ERR(err, FT_ERR_NOMEM, "oom");
    free(text);
    ft_free(p);
    return s;
}

/* Rank 0 of a data-parallel run: the run's configuration and folder to the followers. */
static ft_status send_run(ft_comm *comm, const ft_train_config *cfg, const char *run_dir, const char *resume_from,
                          ft_err *err) {
    json_t *j = json_pack("{s:o, s:s, s:s?}", "config", ft_train_config_to_json(cfg), "run_dir", run_dir, "resume",
                          resume_from);
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(j);
    if (!text) /* the followers wait for this message: they must not wait forever */
        ft_comm_abort(comm, 1);
    ctl_msg m = {.kind = CTL_RUN, .len = (int64_t)strlen(text) + 1};
    ft_status s = ft_comm_bcast(comm, &m, sizeof m, 0, err);
    if (s == FT_OK)
        s = ft_comm_bcast(comm, text, (size_t)m.len, 0, err);
    free(text);
    return s;
}

ft_status ft_train_release(ft_comm *comm, int status, ft_err *err) {
    if (!multi(comm) || ft_comm_rank(comm) != 0)
        return FT_OK;
    ctl_msg m = {.kind = CTL_EXIT, .status = status};
    return ft_comm_bcast(comm, &m, sizeof m, 0, err);
}

ft_status ft_train_follow(ft_comm *comm, int *rank0_status, ft_err *err) {
    *rank0_status = 0;
    if (!multi(comm) || ft_comm_rank(comm) == 0)
        return FT_ERR(err, FT_ERR_INVALID, "ft_train_follow: only ranks > 0 of a run on several processes follow");
    for (;;) {
        ctl_msg m;
        FT_TRY(ft_comm_bcast(comm, &m, sizeof m, 0, err));
        if (m.kind == CTL_EXIT) {
            *rank0_status = m.status;
            return FT_OK;
        }
        if (m.kind != CTL_RUN || m.len <= 0 || m.len > ((int64_t)1 << 30))
            return FT_ERR(err, FT_ERR_INTERNAL, "data parallelism: unexpected message %d from rank 0", (int)m.kind);
        char *text = ft_malloc((size_t)m.len);
        if (!text)
            ft_comm_abort(comm, 1);
        ft_status s = ft_comm_bcast(comm, text, (size_t)m.len, 0, err);
        json_t *j = s == FT_OK ? json_loads(text, 0, NULL) : NULL;
        ft_free(text);
        ft_train_config cfg = ft_train_default_config();
        const char *run_dir = json_string_value(json_object_get(j, "run_dir"));
        const char *resume = json_string_value(json_object_get(j, "resume"));
        if (s == FT_OK && (!j || !run_dir))
            s = FT_ERR(err, FT_ERR_INTERNAL, "data parallelism: a bad run message from rank 0");
        if (s == FT_OK)
            s = ft_train_config_from_json(json_object_get(j, "config"), &cfg, err);
        if (s != FT_OK) /* rank 0 goes on with the run: it must not wait for this rank */
            ft_comm_abort(comm, 1);
        ft_train_result res;
        memset(&res, 0, sizeof res);
        bool agreed = false;
        int released = 0;
        s = run_impl(&cfg, run_dir, resume, comm, NULL, &res, &agreed, &released, err);
        ft_train_config_deinit(&cfg);
        json_decref(j);
        if (released) { /* rank 0 ended the run between steps (its failure): its last message */
            *rank0_status = released;
            return FT_OK;
        }
        if (s != FT_OK && !agreed) {
            /* A failure of this rank alone: rank 0 may be waiting for it in a collective. */
            char msg[1600];
            ft_err_format(err, msg, sizeof msg);
            FT_LOG_ERROR("rank %lld: %s; ending every process", (long long)ft_comm_rank(comm), msg);
            ft_comm_abort(comm, 1);
        }
    }
}

ft_status ft_train_run(const ft_train_config *cfg, const ft_train_sink *sink, ft_train_result *res, ft_err *err) {
    return ft_train_run_on(cfg, NULL, sink, res, err);
}

ft_status ft_train_run_on(const ft_train_config *cfg, ft_comm *comm, const ft_train_sink *sink, ft_train_result *res,
                          ft_err *err) {
    ft_err local_err; /* err is optional; the reason still reaches res->reason */
    if (!err)
        err = &local_err;
    ft_train_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    res->outcome = FT_TRAIN_FAILED;
    ft_status s = ft_train_config_validate(cfg, err);
    char *exp = NULL, *dir = NULL;
    if (s == FT_OK)
        s = ft_path_map(cfg->experiment_path, &exp, err);
    if (s == FT_OK && !(dir = ft_path_join(exp, cfg->name)))
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_free(exp);
    if (s == FT_OK) {
        snprintf(res->run_dir, sizeof res->run_dir, "%s", dir);
        char *found = NULL;
        if (ft_ckpt_find_latest(dir, false, &found, NULL, NULL) == FT_OK)
            s = FT_ERR_AT(err, FT_ERR_INVALID, dir, 0, 0,
                          "the run folder already has checkpoints (%s): resume it, or choose another name", found);
        ft_free(found);
    }
    if (s == FT_OK)
        s = ft_mkdir_p(dir, err);
    if (s == FT_OK)
        s = write_config(cfg, dir, err);
    if (s == FT_OK && multi(comm))
        s = send_run(comm, cfg, dir, NULL, err);
    if (s == FT_OK)
        s = run_impl(cfg, dir, NULL, comm, sink, res, NULL, NULL, err);
    else
        ft_err_format(err, res->reason, sizeof res->reason);
    ft_free(dir);
    return s;
}

ft_status ft_train_resume(const char *run_dir, int threads, const ft_train_sink *sink, ft_train_result *res,
                          ft_err *err) {
    return ft_train_resume_on(run_dir, threads, NULL, sink, res, err);
}

ft_status ft_train_resume_on(const char *run_dir_in, int threads, ft_comm *comm, const ft_train_sink *sink,
                             ft_train_result *res, ft_err *err) {
    ft_err local_err; /* err is optional; the reason still reaches res->reason */
    if (!err)
        err = &local_err;
    char run_dir[1024]; /* run_dir_in may point into *res, which is cleared below */
    snprintf(run_dir, sizeof run_dir, "%s", run_dir_in);
    ft_train_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    res->outcome = FT_TRAIN_FAILED;
    snprintf(res->run_dir, sizeof res->run_dir, "%s", run_dir);
    char *p = ft_path_join(run_dir, "train_config.json");
    json_t *j = NULL;
    ft_status s = p ? ft_json_load_file(p, &j, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_free(p);
    ft_train_config cfg = ft_train_default_config();
    if (s == FT_OK)
        s = ft_train_config_from_json(j, &cfg, err);
    json_decref(j);
    if (s == FT_OK && threads > 0)
        cfg.threads = threads;
    char *ckpt = NULL;
    ft_buf notes = {0};
    if (s == FT_OK) {
        ft_err e2;
        ft_status fs = ft_ckpt_find_latest(run_dir, true, &ckpt, &notes, &e2);
        if (fs != FT_OK && fs != FT_ERR_NOT_FOUND) {
            *err = e2;
            s = fs;
        }
        if (fs == FT_ERR_NOT_FOUND && notes.len) /* there were checkpoints, none complete */
            ft_buf_appendf(&notes, "no complete checkpoint is left: the run starts again from step 0");
        else if (fs == FT_OK && notes.len)
            ft_buf_appendf(&notes, "resuming from %s", ckpt);
        if (notes.len && sink && sink->on_event) {
            /* What was skipped on the way back to a complete checkpoint. */
            char msg[2048];
            snprintf(msg, sizeof msg, "resume: %s", ft_buf_cstr(&notes));
            sink->on_event(sink->user, FT_EVENT_TRAIN_UPDATED, FT_LOG_WARN, msg);
        }
    }
    if (s == FT_OK && multi(comm))
        s = send_run(comm, &cfg, run_dir, ckpt ? ckpt : NULL, err);
    if (s == FT_OK)
        s = run_impl(&cfg, run_dir, ckpt, comm, sink, res, NULL, NULL, err);
    else
        ft_err_format(err, res->reason, sizeof res->reason);
    ft_free(ckpt);
    ft_buf_free(&notes);
    ft_train_config_deinit(&cfg);
    return s;
}
