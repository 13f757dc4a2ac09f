/* train/config.c: the run configuration of SPEC §2: defaults, parsing each parameter from text
 * with errors that name it, the JSON form kept in the run folder, the trajectory hash a resume
 * checks, durations and the LinearWithWarmup schedule. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftune/json.h"
#include "ftune/memplan.h"
#include "ftune/train.h"

/* ---------------------------------------------------------------- durations */

static const char *unit_names[] = {"ep", "tok", "ba"};

ft_status ft_duration_parse(const char *s, const char *what, ft_duration *out, ft_err *err) {
    if (!what)
        what = "duration";
    const char *p = s ? s : "";
    int64_t v = 0;
    size_t nd = 0;
    while (isdigit((unsigned char)p[nd])) {
        if (v > (INT64_MAX - 9) / 10)
            return FT_ERR(err, FT_ERR_INVALID, "%s \"%s\": the number is too large", what, p);
        v = v * 10 + (p[nd] - '0');
        nd++;
    }
    const char *u = p + nd;
    int unit = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(u, unit_names[i]))
            unit = i;
    if (nd == 0 || unit < 0)
        return FT_ERR(err, FT_ERR_INVALID,
                      "%s \"%s\": expected a whole number followed by ep, tok or ba (\"1ep\", \"1000tok\", \"30ba\")",
                      what, p);
    if (v < 1)
        return FT_ERR(err, FT_ERR_INVALID, "%s \"%s\": must be at least 1", what, p);
    out->value = v;
    out->unit = (ft_duration_unit)unit;
    return FT_OK;
}

void ft_duration_format(ft_duration d, char *buf, size_t cap) {
    snprintf(buf, cap, "%lld%s", (long long)d.value, unit_names[d.unit <= FT_DURATION_BATCHES ? (int)d.unit : 0]);
}

int64_t ft_duration_to_steps(ft_duration d, int64_t steps_per_epoch, double tokens_per_step) {
    int64_t n = 1;
    switch (d.unit) {
    case FT_DURATION_BATCHES: n = d.value; break;
    case FT_DURATION_EPOCHS: n = d.value * (steps_per_epoch > 0 ? steps_per_epoch : 1); break;
    case FT_DURATION_TOKENS: n = tokens_per_step > 0 ? (int64_t)ceil((double)d.value / tokens_per_step) : d.value; break;
    }
    return n < 1 ? 1 : n;
}

/* ---------------------------------------------------------------- schedule */

double ft_schedule_multiplier(const ft_schedule *s, int64_t t) {
    if (t < 0)
        t = 0;
    if (t < s->warmup_steps)
        return (double)t / (double)s->warmup_steps;
    int64_t rest = s->total_steps - s->warmup_steps;
    if (rest <= 0)
        return 1.0;
    double m = 1.0 - (double)(t - s->warmup_steps) / (double)rest;
    return m < 0 ? 0 : m;
}

double ft_schedule_lr(const ft_schedule *s, int64_t t) { return s->peak_lr * ft_schedule_multiplier(s, t); }

/* ---------------------------------------------------------------- names */

static const char *task_names[] = {"CHAT_COMPLETION", "INSTRUCTION_FINETUNE", "CONTINUED_PRETRAIN"};

static const char *event_names[] = {"STARTED",         "DATA_VALIDATED", "MODEL_INITIALIZED",
                                    "TRAIN_UPDATED",   "CHECKPOINT_SAVED", "EVAL_COMPLETED",
                                    "TRAIN_FINISHED",  "STOPPED",        "FAILED"};
const char *ft_train_event_name(ft_train_event e) { return e <= FT_EVENT_FAILED ? event_names[e] : "?"; }

/* ---------------------------------------------------------------- defaults, copy, free */

ft_train_config ft_train_default_config(void) {
    ft_train_config c;
    memset(&c, 0, sizeof c);
    c.task_type = FT_TASK_CHAT_COMPLETION;
    c.training_duration = (ft_duration){.value = 1, .unit = FT_DURATION_EPOCHS};
    c.learning_rate = 5e-7;
    c.validate_inputs = true;
    c.seed = 17;
    c.optimizer = FT_OPTIMIZER_ADAMW;
    c.warmup.is_fraction = true;
    c.warmup.fraction = 0.02;
    c.grad_clip = 1.0;
    c.loss_on = FT_LOSS_ALL_ASSISTANT;
    snprintf(c.dtype, sizeof c.dtype, "fp32");
    snprintf(c.device, sizeof c.device, "cpu");
    snprintf(c.activation_checkpointing, sizeof c.activation_checkpointing, "auto");
    snprintf(c.export_dtype, sizeof c.export_dtype, "auto");
    c.eval_max_new_tokens = 100;
    c.max_nonfinite_in_a_row = 3;
    c.spike_window = 50;
    c.spike_zscore = 5.0;
    return c;
}

#define STR_FIELDS(X)                                                                                      \
    X(model) X(train_data_path) X(register_to) X(eval_data_path) X(custom_weights_path) X(experiment_path) \
        X(data_prep_cluster_id) X(name) X(prompt_column) X(response_column) X(messages_column) X(text_column)

void ft_train_config_deinit(ft_train_config *c) {
    if (!c)
        return;
#define FREE_FIELD(f) ft_free(c->f), c->f = NULL;
    STR_FIELDS(FREE_FIELD)
#undef FREE_FIELD
    for (size_t i = 0; i < c->n_eval_prompts; i++)
        ft_free(c->eval_prompts[i]);
    ft_free(c->eval_prompts);
    c->eval_prompts = NULL;
    c->n_eval_prompts = 0;
}

ft_status ft_train_config_copy(ft_train_config *dst, const ft_train_config *src, ft_err *err) {
    *dst = *src;
    bool ok = true;
#define DUP_FIELD(f)                            \
    if (src->f && !(dst->f = ft_strdup(src->f))) \
        ok = false;
    STR_FIELDS(DUP_FIELD)
#undef DUP_FIELD
    dst->eval_prompts = NULL;
    dst->n_eval_prompts = 0;
    if (ok && src->n_eval_prompts) {
        dst->eval_prompts = ft_calloc(src->n_eval_prompts, sizeof(char *));
        ok = dst->eval_prompts != NULL;
        for (size_t i = 0; ok && i < src->n_eval_prompts; i++) {
            dst->eval_prompts[i] = ft_strdup(src->eval_prompts[i]);
            ok = dst->eval_prompts[i] != NULL;
            dst->n_eval_prompts = i + 1;
        }
    }
    if (!ok) {
        ft_train_config_deinit(dst);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory copying the run configuration");
    }
    return FT_OK;
}

/* ---------------------------------------------------------------- setting from text */

static ft_status set_str(char **field, const char *v, ft_err *err) {
    char *d = ft_strdup(v);
    if (!d)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_free(*field);
    *field = d;
    return FT_OK;
}

static ft_status parse_double(const char *key, const char *v, double lo, double hi, bool lo_open, double *out,
                              ft_err *err) {
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (!*v || *end || errno == ERANGE || !isfinite(d))
        return FT_ERR(err, FT_ERR_INVALID, "%s \"%s\": expected a number", key, v);
    if ((lo_open ? d <= lo : d < lo) || d > hi)
        return FT_ERR(err, FT_ERR_INVALID, "%s %s: must be %s %g and at most %g", key, v, lo_open ? ">" : ">=", lo,
                      hi);
    *out = d;
    return FT_OK;
}

static ft_status parse_int(const char *key, const char *v, int64_t lo, int64_t hi, int64_t *out, ft_err *err) {
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || errno == ERANGE)
        return FT_ERR(err, FT_ERR_INVALID, "%s \"%s\": expected a whole number", key, v);
    if (n < lo || n > hi)
        return FT_ERR(err, FT_ERR_INVALID, "%s %s: must be between %lld and %lld", key, v, (long long)lo,
                      (long long)hi);
    *out = n;
    return FT_OK;
}

static ft_status parse_bool(const char *key, const char *v, bool *out, ft_err *err) {
    if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) {
        *out = true;
        return FT_OK;
    }
    if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) {
        *out = false;
        return FT_OK;
    }
    return FT_ERR(err, FT_ERR_INVALID, "%s \"%s\": expected true or false", key, v);
}

static ft_status parse_warmup(const char *v, ft_warmup *w, ft_err *err) {
    size_t n = strlen(v);
    if (n > 1 && v[n - 1] == '%') {
        char num[64];
        if (n - 1 >= sizeof num)
            return FT_ERR(err, FT_ERR_INVALID, "warmup \"%s\": too long", v);
        memcpy(num, v, n - 1);
        num[n - 1] = 0;
        double pct;
        FT_TRY(parse_double("warmup", num, 0, 100, false, &pct, err));
        w->is_fraction = true;
        w->fraction = pct / 100.0;
        return FT_OK;
    }
    if (!strcmp(v, "0")) {
        w->is_fraction = true;
        w->fraction = 0;
        return FT_OK;
    }
    ft_status s = ft_duration_parse(v, "warmup", &w->duration, err);
    if (s != FT_OK)
        return FT_ERR(err, FT_ERR_INVALID,
                      "warmup \"%s\": expected a percentage of the run (\"2%%\") or a duration (\"10ba\", \"1ep\", "
                      "\"5000tok\")",
                      v);
    w->is_fraction = false;
    return FT_OK;
}

/* "learning-rate" -> "learning_rate" into buf. */
static void canon_key(const char *key, char *buf, size_t cap) {
    size_t i = 0;
    for (; key[i] && i + 1 < cap; i++)
        buf[i] = key[i] == '-' ? '_' : key[i];
    buf[i] = 0;
}

ft_status ft_train_config_set(ft_train_config *c, const char *key_in, const char *v, ft_err *err) {
    char key[64];
    canon_key(key_in ? key_in : "", key, sizeof key);
    if (!v)
        return FT_ERR(err, FT_ERR_INVALID, "%s: a value is required", key);
    int64_t n;
#define STR_KEY(f)               \
    if (!strcmp(key, #f))        \
        return set_str(&c->f, v, err);
    STR_FIELDS(STR_KEY)
#undef STR_KEY
    if (!strcmp(key, "eval_prompts") || !strcmp(key, "eval_prompt")) {
        char **np = ft_realloc(c->eval_prompts, (c->n_eval_prompts + 1) * sizeof(char *));
        if (!np)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        c->eval_prompts = np;
        if (!(np[c->n_eval_prompts] = ft_strdup(v)))
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        c->n_eval_prompts++;
        return FT_OK;
    }
    if (!strcmp(key, "task_type")) {
        for (int i = 0; i < 3; i++)
            if (!strcmp(v, task_names[i])) {
                c->task_type = (ft_task_type)i;
                return FT_OK;
            }
        return FT_ERR(err, FT_ERR_INVALID,
                      "task_type \"%s\": expected CHAT_COMPLETION, INSTRUCTION_FINETUNE or CONTINUED_PRETRAIN", v);
    }
    if (!strcmp(key, "training_duration"))
        return ft_duration_parse(v, "training_duration", &c->training_duration, err);
    if (!strcmp(key, "learning_rate"))
        return parse_double("learning_rate", v, 0, 1, true, &c->learning_rate, err);
    if (!strcmp(key, "context_length")) {
        FT_TRY(parse_int("context_length", v, 0, INT64_C(1) << 24, &c->context_length, err));
        if (c->context_length != 0 && c->context_length < 2)
            return FT_ERR(err, FT_ERR_INVALID, "context_length %s: must be at least 2 (or 0 for automatic)", v);
        return FT_OK;
    }
    if (!strcmp(key, "validate_inputs"))
        return parse_bool("validate_inputs", v, &c->validate_inputs, err);
    if (!strcmp(key, "seed")) {
        FT_TRY(parse_int("seed", v, 0, INT64_MAX, &n, err));
        c->seed = (uint64_t)n;
        return FT_OK;
    }
    if (!strcmp(key, "global_batch_size"))
        return parse_int("global_batch_size", v, 0, 1 << 20, &c->global_batch_size, err);
    if (!strcmp(key, "micro_batch_size"))
        return parse_int("micro_batch_size", v, 0, 1 << 20, &c->micro_batch_size, err);
    if (!strcmp(key, "optimizer")) {
        if (!strcmp(v, "adamw") || !strcmp(v, "AdamW") || !strcmp(v, "decoupled_adamw"))
            c->optimizer = FT_OPTIMIZER_ADAMW;
        else if (!strcmp(v, "lion") || !strcmp(v, "Lion") || !strcmp(v, "decoupled_lionw"))
            c->optimizer = FT_OPTIMIZER_LION;
        else
            return FT_ERR(err, FT_ERR_INVALID, "optimizer \"%s\": expected adamw or lion", v);
        return FT_OK;
    }
    if (!strcmp(key, "weight_decay"))
        return parse_double("weight_decay", v, 0, 1, false, &c->weight_decay, err);
    if (!strcmp(key, "warmup"))
        return parse_warmup(v, &c->warmup, err);
    if (!strcmp(key, "grad_clip"))
        return parse_double("grad_clip", v, 0, 1e6, false, &c->grad_clip, err);
    if (!strcmp(key, "loss_on")) {
        if (!strcmp(v, "all_assistant"))
            c->loss_on = FT_LOSS_ALL_ASSISTANT;
        else if (!strcmp(v, "last_assistant"))
            c->loss_on = FT_LOSS_LAST_ASSISTANT;
        else
            return FT_ERR(err, FT_ERR_INVALID, "loss_on \"%s\": expected all_assistant or last_assistant", v);
        return FT_OK;
    }
    if (!strcmp(key, "save_interval")) {
        if (!strcmp(v, "0") || !strcmp(v, "")) {
            c->save_interval = (ft_duration){.value = 0, .unit = FT_DURATION_EPOCHS};
            return FT_OK;
        }
        FT_TRY(ft_duration_parse(v, "save_interval", &c->save_interval, err));
        if (c->save_interval.unit == FT_DURATION_TOKENS)
            return FT_ERR(err, FT_ERR_INVALID, "save_interval \"%s\": expected Nba or Nep (\"50ba\", \"1ep\")", v);
        return FT_OK;
    }
    if (!strcmp(key, "keep_checkpoints"))
        return parse_int("keep_checkpoints", v, 0, INT64_MAX, &c->keep_checkpoints, err);
    if (!strcmp(key, "dtype")) {
        ft_dtype d;
        if (!strcmp(v, "auto"))
            snprintf(c->dtype, sizeof c->dtype, "auto");
        else if (ft_dtype_parse(v, &d))
            snprintf(c->dtype, sizeof c->dtype, "%s", ft_dtype_name(d));
        else
            return FT_ERR(err, FT_ERR_INVALID, "dtype \"%s\": expected fp32, bf16 or auto", v);
        return FT_OK;
    }
    if (!strcmp(key, "device")) {
        if (strcmp(v, "cpu"))
            return FT_ERR(err, FT_ERR_UNSUPPORTED, "device \"%s\": only cpu is supported on this build", v);
        snprintf(c->device, sizeof c->device, "cpu");
        return FT_OK;
    }
    if (!strcmp(key, "memory_limit")) {
        /* the syntax here; a percentage is taken of the memory available when the run is planned */
        ft_memplan_machine any = {.available = (uint64_t)1 << 40};
        uint64_t bytes;
        if (*v)
            FT_TRY(ft_memplan_parse_limit(v, &any, &bytes, err));
        if (strlen(v) >= sizeof c->memory_limit)
            return FT_ERR(err, FT_ERR_INVALID, "memory_limit \"%s\": too long", v);
        snprintf(c->memory_limit, sizeof c->memory_limit, "%s", v);
        return FT_OK;
    }
    if (!strcmp(key, "activation_checkpointing")) {
        ft_memplan_ckpt k;
        if (!ft_memplan_ckpt_parse(v, &k))
            return FT_ERR(err, FT_ERR_INVALID, "activation_checkpointing \"%s\": expected auto, on or off", v);
        snprintf(c->activation_checkpointing, sizeof c->activation_checkpointing, "%s", v);
        return FT_OK;
    }
    if (!strcmp(key, "threads")) {
        FT_TRY(parse_int("threads", v, 0, 4096, &n, err));
        c->threads = (int)n;
        return FT_OK;
    }
    if (!strcmp(key, "eval_max_new_tokens"))
        return parse_int("eval_max_new_tokens", v, 0, 1 << 20, &c->eval_max_new_tokens, err);
    if (!strcmp(key, "max_nonfinite_in_a_row"))
        return parse_int("max_nonfinite_in_a_row", v, 1, 1 << 20, &c->max_nonfinite_in_a_row, err);
    if (!strcmp(key, "spike_window"))
        return parse_int("spike_window", v, 2, 1 << 20, &c->spike_window, err);
    if (!strcmp(key, "spike_zscore"))
        return parse_double("spike_zscore", v, 0, 1e9, true, &c->spike_zscore, err);
    if (!strcmp(key, "export_dtype")) {
        const char *canon = !strcmp(v, "auto")                                 ? "auto"
                            : !strcmp(v, "fp32") || !strcmp(v, "float32")      ? "float32"
                            : !strcmp(v, "bf16") || !strcmp(v, "bfloat16")     ? "bfloat16"
                            : !strcmp(v, "fp16") || !strcmp(v, "float16")      ? "float16"
                                                                               : NULL;
        if (!canon)
            return FT_ERR(err, FT_ERR_INVALID,
                          "export_dtype \"%s\": expected auto (the base model's torch_dtype), fp32, bf16 or fp16", v);
        snprintf(c->export_dtype, sizeof c->export_dtype, "%s", canon);
        return FT_OK;
    }
    if (!strcmp(key, "export_bf16")) { /* legacy: true = bfloat16; false leaves export_dtype */
        bool b = false;
        FT_TRY(parse_bool("export_bf16", v, &b, err));
        if (b)
            snprintf(c->export_dtype, sizeof c->export_dtype, "bfloat16");
        return FT_OK;
    }
    if (!strcmp(key, "export_gguf")) {
        if (*v && strcmp(v, "none") && strcmp(v, "f32") && strcmp(v, "f16") && strcmp(v, "bf16"))
            return FT_ERR(err, FT_ERR_INVALID, "export_gguf \"%s\": expected f32, f16, bf16 or none", v);
        snprintf(c->export_gguf, sizeof c->export_gguf, "%s", strcmp(v, "none") ? v : "");
        return FT_OK;
    }
    return FT_ERR(err, FT_ERR_INVALID, "unknown parameter \"%s\"", key_in ? key_in : "");
}

ft_status ft_train_config_validate(const ft_train_config *c, ft_err *err) {
    if (!c->model || !*c->model)
        return FT_ERR(err, FT_ERR_INVALID, "model: required");
    if (!c->train_data_path || !*c->train_data_path)
        return FT_ERR(err, FT_ERR_INVALID, "train_data_path: required");
    if (!c->name || !*c->name)
        return FT_ERR(err, FT_ERR_INVALID, "name: required (the run name)");
    if (strchr(c->name, '/') || !strcmp(c->name, ".") || !strcmp(c->name, ".."))
        return FT_ERR(err, FT_ERR_INVALID, "name \"%s\": must not contain '/'", c->name);
    if (!c->experiment_path || !*c->experiment_path)
        return FT_ERR(err, FT_ERR_INVALID, "experiment_path: required");
    if (c->global_batch_size && c->micro_batch_size && c->micro_batch_size > c->global_batch_size)
        return FT_ERR(err, FT_ERR_INVALID, "micro_batch_size %lld is larger than global_batch_size %lld",
                      (long long)c->micro_batch_size, (long long)c->global_batch_size);
    if (!(c->learning_rate > 0) || !isfinite(c->learning_rate))
        return FT_ERR(err, FT_ERR_INVALID, "learning_rate: must be > 0");
    if (c->training_duration.value < 1)
        return FT_ERR(err, FT_ERR_INVALID, "training_duration: must be at least 1");
    return FT_OK;
}

/* ---------------------------------------------------------------- JSON */

static void put_str(json_t *o, const char *k, const char *v) {
    json_object_set_new(o, k, v ? json_string(v) : json_null());
}

static void put_duration(json_t *o, const char *k, ft_duration d) {
    char b[32];
    if (d.value == 0) {
        json_object_set_new(o, k, json_null());
        return;
    }
    ft_duration_format(d, b, sizeof b);
    json_object_set_new(o, k, json_string(b));
}

static void warmup_str(const ft_warmup *w, char *b, size_t cap) {
    if (w->is_fraction)
        snprintf(b, cap, "%.10g%%", w->fraction * 100.0);
    else
        ft_duration_format(w->duration, b, cap);
}

/* `trajectory_only`: the fields of the hash. */
static json_t *to_json(const ft_train_config *c, bool trajectory_only) {
    json_t *o = json_object();
    char b[64];
    put_str(o, "model", c->model);
    put_str(o, "train_data_path", c->train_data_path);
    json_object_set_new(o, "task_type", json_string(ft_task_type_name(c->task_type)));
    put_str(o, "custom_weights_path", c->custom_weights_path);
    put_duration(o, "training_duration", c->training_duration);
    json_object_set_new(o, "learning_rate", json_real(c->learning_rate));
    json_object_set_new(o, "context_length", json_integer(c->context_length));
    json_object_set_new(o, "seed", json_integer((json_int_t)c->seed));
    json_object_set_new(o, "global_batch_size", json_integer(c->global_batch_size));
    json_object_set_new(o, "micro_batch_size", json_integer(c->micro_batch_size));
    json_object_set_new(o, "optimizer", json_string(c->optimizer == FT_OPTIMIZER_LION ? "lion" : "adamw"));
    json_object_set_new(o, "weight_decay", json_real(c->weight_decay));
    warmup_str(&c->warmup, b, sizeof b);
    json_object_set_new(o, "warmup", json_string(b));
    json_object_set_new(o, "grad_clip", json_real(c->grad_clip));
    json_object_set_new(o, "loss_on",
                        json_string(c->loss_on == FT_LOSS_LAST_ASSISTANT ? "last_assistant" : "all_assistant"));
    json_object_set_new(o, "dtype", json_string(c->dtype));
    json_object_set_new(o, "device", json_string(c->device));
    json_object_set_new(o, "max_nonfinite_in_a_row", json_integer(c->max_nonfinite_in_a_row));
    if (trajectory_only)
        return o;
    put_str(o, "register_to", c->register_to);
    put_str(o, "eval_data_path", c->eval_data_path);
    json_t *ep = json_array();
    for (size_t i = 0; i < c->n_eval_prompts; i++)
        json_array_append_new(ep, json_string(c->eval_prompts[i]));
    json_object_set_new(o, "eval_prompts", ep);
    json_object_set_new(o, "validate_inputs", json_boolean(c->validate_inputs));
    put_str(o, "experiment_path", c->experiment_path);
    put_str(o, "data_prep_cluster_id", c->data_prep_cluster_id);
    const char *col_keys[] = {"prompt_column", "response_column", "messages_column", "text_column"};
    const char *col_vals[] = {c->prompt_column, c->response_column, c->messages_column, c->text_column};
    for (int i = 0; i < 4; i++) /* only when given: runs that read JSONL keep their configuration as it was */
        if (col_vals[i])
            put_str(o, col_keys[i], col_vals[i]);
    put_str(o, "name", c->name);
    put_duration(o, "save_interval", c->save_interval);
    json_object_set_new(o, "keep_checkpoints", json_integer(c->keep_checkpoints));
    json_object_set_new(o, "threads", json_integer(c->threads));
    json_object_set_new(o, "memory_limit", json_string(c->memory_limit));
    json_object_set_new(o, "activation_checkpointing", json_string(c->activation_checkpointing));
    json_object_set_new(o, "eval_max_new_tokens", json_integer(c->eval_max_new_tokens));
    json_object_set_new(o, "spike_window", json_integer(c->spike_window));
    json_object_set_new(o, "spike_zscore", json_real(c->spike_zscore));
    json_object_set_new(o, "export_dtype", json_string(c->export_dtype));
    if (c->export_gguf[0]) /* only when asked: earlier runs keep their configuration as it was */
        put_str(o, "export_gguf", c->export_gguf);
    return o;
}

json_t *ft_train_config_to_json(const ft_train_config *c) { return to_json(c, false); }

ft_status ft_train_config_from_json(const json_t *j, ft_train_config *c, ft_err *err) {
    if (!json_is_object(j))
        return FT_ERR(err, FT_ERR_PARSE, "run configuration: expected a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        char buf[64];
        const char *text = NULL;
        if (json_is_null(v))
            continue;
        if (!strcmp(key, "eval_prompts")) {
            if (!json_is_array(v))
                return FT_ERR(err, FT_ERR_INVALID, "run configuration: eval_prompts must be a list of strings");
            size_t i;
            json_t *p;
            json_array_foreach(v, i, p) {
                if (!json_is_string(p))
                    return FT_ERR(err, FT_ERR_INVALID, "run configuration: eval_prompts[%zu] is not a string", i);
                FT_TRY(ft_train_config_set(c, "eval_prompts", json_string_value(p), err));
            }
            continue;
        }
        if (json_is_string(v))
            text = json_string_value(v);
        else if (json_is_integer(v)) {
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
            text = buf;
        } else if (json_is_real(v)) {
            snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
            text = buf;
        } else if (json_is_boolean(v))
            text = json_is_true(v) ? "true" : "false";
        else
            return FT_ERR(err, FT_ERR_INVALID, "run configuration: %s has an unexpected type", key);
        ft_status s = ft_train_config_set(c, key, text, err);
        if (s != FT_OK) {
            ft_err_prefix(err, "run configuration");
            return s;
        }
    }
    return FT_OK;
}

uint64_t ft_train_config_hash(const ft_train_config *c) {
    json_t *o = to_json(c, true);
    char *s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(o);
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = s ? s : ""; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    free(s);
    return h;
}

char *ft_train_run_dir(const ft_train_config *c) {
    if (!c->experiment_path || !c->name)
        return NULL;
    char *exp = ft_path_map_volumes(c->experiment_path);
    if (!exp)
        return NULL;
    char *d = ft_path_join(exp, c->name);
    ft_free(exp);
    return d;
}

/* ---------------------------------------------------------------- memory estimate */

size_t ft_train_activation_bytes(const ft_model_config *mc, int64_t B, int64_t T) {
    /* Exactly what a training workspace without checkpointing allocates. */
    ft_workspace_params wp = ft_workspace_default_params();
    wp.max_batch = B;
    wp.max_seq = T;
    wp.training = true;
    return ft_workspace_bytes(mc, &wp);
}

/* The loader keeps this many global batches in flight (data/loader.c's default prefetch), each
 * four int32 arrays of (G, T): ids, targets, positions, sample ids. */
#define LOADER_BATCHES 4
#define LOADER_BYTES_PER_TOKEN (4 * sizeof(int32_t))

static void format_gib(double bytes, char *buf, size_t cap) {
    if (bytes >= (double)(1ull << 30))
        snprintf(buf, cap, "%.1f GiB", bytes / (double)(1ull << 30));
    else
        snprintf(buf, cap, "%.0f MiB", bytes / (double)(1ull << 20));
}

ft_status ft_train_check_memory(const ft_model_config *mc, int64_t G, int64_t micro, int64_t T, ft_err *err) {
    double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
    if (phys <= 0 || G <= 0 || T <= 0)
        return FT_OK;
    double per_batch = (double)LOADER_BATCHES * (double)LOADER_BYTES_PER_TOKEN * (double)T;
    double batches = per_batch * (double)G;
    /* weights, gradients and AdamW's two moments in fp32 */
    double model = 16.0 * (double)ft_model_config_n_params(mc);
    double act = (double)ft_train_activation_bytes(mc, micro > 0 ? micro : 1, T);
    double need = batches + model + act;
    if (need <= phys)
        return FT_OK;
    char nb[32], bb[32], mb[32], ab[32], pb[32];
    format_gib(need, nb, sizeof nb);
    format_gib(batches, bb, sizeof bb);
    format_gib(model, mb, sizeof mb);
    format_gib(act, ab, sizeof ab);
    format_gib(phys, pb, sizeof pb);
    double room = phys - model - act;
    long long fits = room > per_batch ? (long long)(room / per_batch) : 0;
    if (fits > 0)
        return FT_ERR(err, FT_ERR_INVALID,
                      "global batch size %lld at context length %lld needs about %s of memory (%s for the %d batches "
                      "in flight, %s for the weights, gradients and optimizer state, %s for activations), more "
                      "than this machine's %s: use a global batch size of at most %lld (or a shorter context)",
                      (long long)G, (long long)T, nb, bb, LOADER_BATCHES, mb, ab, pb, fits);
    return FT_ERR(err, FT_ERR_INVALID,
                  "this model at context length %lld needs about %s of memory (%s for the weights, gradients and "
                  "optimizer state, %s for activations, %s for %lld-row batches), more than this machine's %s",
                  (long long)T, nb, mb, ab, bb, (long long)G, pb);
}

void ft_train_validate_params(const ft_train_config *c, const ft_tok *tok, const ft_chat *chat, int64_t T,
                              ft_validate_params *p) {
    ft_validate_default_params(p, c->task_type);
    p->sample.task = c->task_type;
    p->sample.tok = tok;
    p->sample.chat = chat;
    p->sample.context_length = T;
    p->sample.last_assistant = c->loss_on == FT_LOSS_LAST_ASSISTANT;
    p->reader.prompt_column = c->prompt_column;
    p->reader.response_column = c->response_column;
    p->reader.messages_column = c->messages_column;
    p->reader.text_column = c->text_column;
    p->duration = c->training_duration;
    p->seed = c->seed;
    p->threads = c->threads;
}
