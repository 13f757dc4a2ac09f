/* ftune/train.h: training runs. The run configuration (every SPEC §2 parameter), durations and
 * the learning-rate schedule, the sink through which a run reports events, metrics, checkpoints
 * and evaluations (the run store of SPEC §5 attaches here), and the entry points that start and
 * resume a run. Implemented in src/train/ (checkpoints: ftune/ckpt.h; generation: ftune/gen.h).
 *
 * A run lives in one folder, <experiment_path>/<name>/ (SPEC §4):
 *   train_config.json          the submitted configuration (ft_train_config_to_json)
 *   checkpoints/ep{E}-ba{B}/   weights (HF safetensors), optimizer state, trainer state
 *   checkpoints/latest         symlink to the newest complete checkpoint, beside latest.txt
 *   eval/ep{E}-ba{B}.json      eval loss, token accuracy and the eval prompts' completions
 *   metrics.jsonl              one {"step", "name", "value"} per line (what the sink also gets)
 *   model/                     the exported HF folder of the final weights
 *
 * Batches (SPEC §2 "global_batch_size and micro_batch_size (sequences)"): a sequence is one packed
 * row of context_length tokens. An optimizer step consumes global_batch_size rows, run as
 * ceil(global / micro) forward/backward passes of at most micro_batch_size rows each; the loss is
 * divided by the trainable tokens of the whole global batch, so gradients do not depend on the
 * micro-batch size.
 *
 * Automatic batch sizes (0 in the config), chosen when the data has been packed:
 *   global_batch_size = clamp(65536 / context_length, 1, 64) sequences (about 64K tokens a
 *                       step), then lowered so that an epoch has at least 8 steps (never below 1).
 *   micro_batch_size  = the largest m <= min(global_batch_size, 8) with which the memory planner
 *                       (ftune/memplan.h) predicts the run fits memory_limit, without activation
 *                       checkpointing if possible; a run that cannot fit at all is refused.
 * Explicit values always win; a micro-batch larger than the global batch is an error. */
#ifndef FTUNE_TRAIN_H
#define FTUNE_TRAIN_H

#include <jansson.h>

#include "ftune/base.h"
#include "ftune/comm.h"
#include "ftune/config.h"
#include "ftune/data.h" /* ft_task_type, ft_data_duration */
#include "ftune/model.h"
#include "ftune/optim.h"

/* ---------------------------------------------------------------- the training step
 * THE optimizer step, used by the trainer, `ftune bench` and `ftune debug`, so the benchmark
 * measures exactly what training runs:
 *   zero the gradients; the batch's rows as ceil(B / micro) forward/backward passes each adding
 *   d(CE_sum / denom); the gradient-reduction hook (identity in one process: a data-parallel run
 *   sums gradients, loss and token counts across processes there); the global gradient norm;
 *   then, when loss and norm are finite, clipping to max_norm fused into the optimizer update.
 * A non-finite loss or norm skips the update (result.updated false) and is not an error: the
 * caller decides (the trainer counts them). */
typedef struct ft_grad_reduce {
    /* NULL: identity. Called once per step after the local accumulation. */
    ft_status (*fn)(void *ctx, ft_model *m, double *loss_sum, int64_t *n_trainable, ft_err *err);
    void *ctx;
} ft_grad_reduce;

/* Data parallelism over an ft_comm (src/train/dp.c; the trainer creates it for a run on several
 * processes). With it, ft_train_step runs only this rank's share of the batch's micro-batches
 * (rank r of N takes micro-batches [floor(n r / N), floor(n (r + 1) / N)) of n = ceil(B / micro)),
 * sums loss, token counts, router counts and gradients over the ranks in rank order (the gradient
 * by a reduce-scatter: this rank ends with the sum of its shard of FT_GRAD_CHUNK chunks), takes the
 * norm over the ranks' chunks in chunk order, updates its shard (ZeRO-1) or everything, and
 * all-gathers the parameters. In one process it can also compute exactly what N ranks would
 * (each share accumulated alone, the shares added in rank order): the reference of the tests. */
typedef struct ft_train_dp ft_train_dp;

typedef struct ft_train_step_params {
    int64_t micro;   /* rows per forward/backward pass; 0: the whole batch at once */
    double denom;    /* the loss denominator (the global batch's trainable tokens); 0: this batch's */
    double lr;       /* learning rate of this update */
    double max_norm; /* gradient clipping; 0: none */
    ft_grad_reduce reduce;
    ft_train_dp *dp; /* NULL: one process (reduce is then the hook) */
} ft_train_step_params;

typedef struct ft_train_step_result {
    double loss_sum;     /* summed cross-entropy over the trainable tokens */
    int64_t n_trainable; /* their count */
    double loss;         /* loss_sum / denom; NaN when no token was trainable */
    double grad_norm;    /* before clipping; NaN when not computed */
    bool updated;        /* false: non-finite loss or norm, or nothing trainable */
    double aux_loss;     /* mixture of experts: the load-balancing loss of the whole batch (without
                          * its coefficient, which the gradient includes); 0 for dense models */
} ft_train_step_result;

/* One step on batch b (rows up to the workspace's max_batch per pass). */
ft_status ft_train_step(ft_model *m, ft_workspace *ws, ft_optim *o, const ft_batch *b, const ft_train_step_params *p,
                        ft_train_step_result *r, ft_err *err);

/* ---------------------------------------------------------------- durations */

/* The unit (ftune/data.h): FT_DURATION_EPOCHS (full passes over the training data),
 * FT_DURATION_TOKENS (packed tokens consumed, padding excluded), FT_DURATION_BATCHES (optimizer
 * steps); value > 0. */
typedef ft_data_duration ft_duration;

/* Parse "1ep", "1000tok", "30ba" (digits then unit, no spaces, value >= 1). Errors say what was
 * expected, e.g. `training_duration "3x": expected N followed by ep, tok or ba ("1ep", "1000tok",
 * "30ba")`; `what` names the parameter in messages. */
ft_status ft_duration_parse(const char *s, const char *what, ft_duration *out, ft_err *err);
/* "3ep" into buf (>= 32 bytes). */
void ft_duration_format(ft_duration d, char *buf, size_t cap);
/* Optimizer steps a duration amounts to, given the data: steps_per_epoch optimizer steps per
 * epoch and tokens_per_step tokens per step on average. Nba -> N; Nep -> N * steps_per_epoch;
 * Ntok -> ceil(N / tokens_per_step). At least 1. */
int64_t ft_duration_to_steps(ft_duration d, int64_t steps_per_epoch, double tokens_per_step);

/* ---------------------------------------------------------------- schedule
 * LinearWithWarmup as Composer defines it, with step t counted from 0 (the lr used by the t-th
 * optimizer update, t = 0 .. total-1):
 *   warmup_steps = floor(warmup_fraction * total_steps)  (default fraction 0.02)
 *   t <  t_w: multiplier = t / t_w                   (so the very first update has lr 0)
 *   t >= t_w: multiplier = 1 - (t - t_w) / (total - t_w)   (1 at t_w, falling towards 0)
 * With t_w = 0 the first update runs at the peak. */
typedef struct ft_schedule {
    int64_t total_steps;
    int64_t warmup_steps;
    double peak_lr;
} ft_schedule;
double ft_schedule_multiplier(const ft_schedule *s, int64_t step);
double ft_schedule_lr(const ft_schedule *s, int64_t step);

/* ---------------------------------------------------------------- the run configuration */

/* ft_task_type and ft_task_type_name: ftune/data.h. */
typedef enum ft_optimizer_kind { FT_OPTIMIZER_ADAMW = 0, FT_OPTIMIZER_LION } ft_optimizer_kind;
typedef enum ft_loss_on { FT_LOSS_ALL_ASSISTANT = 0, FT_LOSS_LAST_ASSISTANT } ft_loss_on;

/* Warmup: a fraction of the total steps ("2%") or an explicit duration ("10ba", "1ep", "5000tok"). */
typedef struct ft_warmup {
    bool is_fraction;
    double fraction;      /* when is_fraction: 0.02 for "2%" */
    ft_duration duration; /* otherwise */
} ft_warmup;

/* Every string is owned by the config (set them with ft_train_config_set, or ft_strdup them
 * yourself); ft_train_config_deinit frees them. NULL means "not given". */
typedef struct ft_train_config {
    /* SPEC §2, as in create() */
    char *model;               /* required: a resolved model folder, hub id or registry name */
    char *train_data_path;     /* required */
    char *register_to;         /* catalog.schema[.name]; the trainer only records it */
    ft_task_type task_type;    /* CHAT_COMPLETION */
    char *eval_data_path;      /* NULL: no eval loss/accuracy */
    char **eval_prompts;       /* n_eval_prompts strings */
    size_t n_eval_prompts;
    char *custom_weights_path; /* a checkpoint folder or a run's `latest`: start from its weights */
    ft_duration training_duration; /* 1ep */
    double learning_rate;      /* 5e-7 */
    int64_t context_length;    /* 0: min(8192, model max) */
    bool validate_inputs;      /* true */
    char *experiment_path;     /* the run folder is experiment_path/name */
    char *data_prep_cluster_id; /* accepted and ignored */
    /* Table sources (parquet): the columns to read (NULL: "prompt", "response" or "completion",
     * "messages", "text"); see ft_reader_params. */
    char *prompt_column, *response_column, *messages_column, *text_column;
    /* Beyond the original (SPEC §2) */
    char *name;                /* the run name; required by ft_train_run */
    uint64_t seed;             /* 17 */
    int64_t global_batch_size; /* sequences; 0: automatic (see above) */
    int64_t micro_batch_size;  /* sequences; 0: automatic (see above) */
    ft_optimizer_kind optimizer; /* adamw */
    double weight_decay;       /* 0 */
    ft_warmup warmup;          /* 2% */
    double grad_clip;          /* 1.0; 0 disables */
    ft_loss_on loss_on;        /* all_assistant */
    ft_duration save_interval; /* value 0: every epoch and at the end */
    int64_t keep_checkpoints;  /* 0: keep all */
    char dtype[16];            /* "fp32" | "bf16" (mixed precision, ftune/model.h) | "auto" (ft_tensor_auto_dtype) */
    char device[16];           /* "cpu" */
    int threads;               /* 0: all cores */
    /* Memory (ftune/memplan.h): the run's predicted peak must fit memory_limit ("20G", "80%";
     * "": ft_memplan_default_limit, 95% of the available memory), or it is refused before it starts;
     * the automatic micro-batch and activation_checkpointing ("auto" | "on" | "off") are chosen
     * within it. Neither changes the hash. */
    char memory_limit[32];
    char activation_checkpointing[8];
    /* Evaluation generation settings (SPEC §2 fixes them; tests may shrink max_new_tokens) */
    int64_t eval_max_new_tokens; /* 100 */
    /* Numerical safety */
    int64_t max_nonfinite_in_a_row; /* 3: that many skipped updates in a row stop the run */
    int64_t spike_window;           /* 50 steps of loss history for the z-score */
    double spike_zscore;            /* 5.0: |z| above this logs a warning */
    /* Export */
    /* "auto" (default): the exported weights and config torch_dtype keep the base model's
     * torch_dtype (bfloat16 for real checkpoints, float16, float32); or "float32" | "bfloat16" |
     * "float16" (also fp32 | bf16 | fp16). The legacy key export_bf16 = true means "bfloat16". */
    char export_dtype[16];
    char export_gguf[8];            /* "" (none) | "f32" | "f16" | "bf16": also model.gguf in the exported
                                       folder (ftune/gguf.h), which registration copies with it */
} ft_train_config;

/* The defaults above. */
ft_train_config ft_train_default_config(void);
void ft_train_config_deinit(ft_train_config *c);
/* Deep copy (dst is overwritten; deinit it afterwards). */
ft_status ft_train_config_copy(ft_train_config *dst, const ft_train_config *src, ft_err *err);

/* Set one parameter from text, by its SPEC name ("training_duration", "learning_rate",
 * "global_batch_size", "optimizer", "eval_prompts" (appends), ...; dashes are accepted for
 * underscores). Every value is checked here: a bad one is FT_ERR_INVALID with a message naming
 * the parameter and what is allowed; an unknown key is FT_ERR_INVALID too. */
ft_status ft_train_config_set(ft_train_config *c, const char *key, const char *value, ft_err *err);
/* Cross-field checks before a run: required fields present, micro <= global, ... */
ft_status ft_train_config_validate(const ft_train_config *c, ft_err *err);

/* JSON round trip: an object with the SPEC names as keys (durations as "1ep", warmup as "2%" or
 * a duration). from_json accepts exactly what to_json writes, unknown keys are errors. */
json_t *ft_train_config_to_json(const ft_train_config *c);
ft_status ft_train_config_from_json(const json_t *j, ft_train_config *c, ft_err *err);
/* Hash (64-bit FNV-1a over the canonical JSON) of the fields that change the training trajectory
 * (everything but name, experiment_path, register_to, validate_inputs, threads, keep_checkpoints,
 * save_interval, eval prompts). A resume refuses a checkpoint whose hash differs. */
uint64_t ft_train_config_hash(const ft_train_config *c);

/* Estimated activation memory of one forward+backward on (B, T) rows, in bytes. */
size_t ft_train_activation_bytes(const ft_model_config *mc, int64_t B, int64_t T);
/* Refuse (FT_ERR_INVALID, with the numbers and the largest global batch that fits) a run whose
 * memory need exceeds this machine's physical memory: the batches the loader keeps in flight
 * (4 x G x T tokens x 16 bytes), fp32 weights + gradients + AdamW moments (16 bytes a parameter)
 * and the activations of one micro-batch (micro <= 0: one row). Checked by `create` before it
 * records a run and by the trainer before it allocates. */
ft_status ft_train_check_memory(const ft_model_config *mc, int64_t G, int64_t micro, int64_t T, ft_err *err);

/* The run's time on this machine, for the validation summary (SPEC §3): one forward+backward of
 * the model in `model_dir` is measured on a short row and scaled to r->rows_per_epoch x r->epochs
 * rows of r->context_length tokens by the FLOPs per token (matmuls 6 x params, causal attention
 * 6 x layers x width x T); the optimizer is excluded. Fills r->est_seconds (< 0 when no estimate
 * could be made) and r->est_note (how it was made, or why not). Models whose weights would not fit
 * comfortably in memory are not measured. */
void ft_train_estimate(const char *model_dir, ft_data_report *r, int threads);

/* custom_weights_path (SPEC §2): the checkpoint folder `ckpt_dir`'s config.json must describe the
 * architecture of `want` (the run's model); FT_ERR_INVALID naming the first field that differs. */
ft_status ft_train_check_architecture(const ft_model_config *want, const char *ckpt_dir, ft_err *err);

/* ---------------------------------------------------------------- the sink
 * How a run talks to its owner (the CLI's progress bar, the SQLite store, the HTTP server).
 * Every callback is optional (NULL: ignored). A callback that returns an error stops the run
 * with that error. They run on the training thread, between steps, never concurrently. */

typedef enum ft_train_event {
    FT_EVENT_STARTED = 0,         /* the run began (or resumed) */
    FT_EVENT_DATA_VALIDATED,      /* data read and packed: counts in the message */
    FT_EVENT_MODEL_INITIALIZED,   /* weights loaded, optimizer ready */
    FT_EVENT_TRAIN_UPDATED,       /* progress every few percent (message has % and ETA); also
                                     warnings (level WARN): loss spikes, skipped non-finite updates */
    FT_EVENT_CHECKPOINT_SAVED,    /* message names the folder */
    FT_EVENT_EVAL_COMPLETED,      /* eval loss / accuracy */
    FT_EVENT_TRAIN_FINISHED,      /* last step done, final checkpoint and export written */
    FT_EVENT_STOPPED,             /* should_stop() asked, checkpoint saved, run ends cleanly */
    FT_EVENT_FAILED,              /* the run ends with an error (message: the reason) */
} ft_train_event;
/* "STARTED", "DATA_VALIDATED", ... as SPEC §5 spells them. */
const char *ft_train_event_name(ft_train_event e);

/* Per-step figures. */
typedef struct ft_train_step_info {
    int64_t step;        /* 1-based count of optimizer steps done (this one included) */
    int64_t total_steps;
    int64_t epoch;       /* 0-based epoch this step's data came from */
    double loss;         /* mean CE over the global batch's trainable tokens */
    double lr;
    double grad_norm;    /* before clipping */
    double tokens_per_s; /* packed tokens (padding excluded) per second, this step */
    int64_t trainable_tokens; /* in this step */
    int64_t tokens_seen;      /* since the run began, all steps */
    double elapsed_s;    /* training time since the run (or resume) began */
    double eta_s;        /* estimated time to finish */
    double progress;     /* step / total_steps, 0..1 */
    bool skipped;        /* the update was skipped (non-finite loss or gradient) */
} ft_train_step_info;

typedef struct ft_eval_generation {
    const char *prompt;
    const char *completion;
} ft_eval_generation;

typedef struct ft_eval_result {
    int64_t step, epoch;
    bool has_loss;        /* false without eval data */
    double loss;          /* mean CE over eval trainable tokens */
    double token_accuracy; /* argmax == target over eval trainable tokens */
    int64_t eval_tokens;
    const ft_eval_generation *generations; /* one per eval prompt */
    size_t n_generations;
    const char *json_path; /* where it was written in the run folder */
} ft_eval_result;

typedef struct ft_train_sink {
    void *user;
    ft_status (*on_event)(void *user, ft_train_event type, ft_log_level level, const char *message);
    /* Names: "loss", "lr", "grad_norm", "tokens_per_s", "trainable_tokens", "elapsed_s", "eta_s",
     * "eval_loss", "eval_token_accuracy". */
    ft_status (*on_metric)(void *user, int64_t step, const char *name, double value);
    ft_status (*on_step)(void *user, const ft_train_step_info *info);
    ft_status (*on_checkpoint)(void *user, const char *path, int64_t epoch, int64_t batch);
    ft_status (*on_eval)(void *user, const ft_eval_result *r);
    /* When the run starts (or resumes): the number of processes it runs on (data parallelism; 1
     * otherwise) and each one's host name, by rank. */
    ft_status (*on_world)(void *user, int64_t world_size, const char *const *hosts);
    /* Polled between optimizer steps (and between eval prompts): true stops the run at the next
     * step boundary after saving a checkpoint (cancel, Ctrl-C). Must be async-signal friendly to
     * set: e.g. read a volatile sig_atomic_t. */
    bool (*should_stop)(void *user);
} ft_train_sink;

/* ---------------------------------------------------------------- running */

typedef enum ft_train_outcome {
    FT_TRAIN_COMPLETED = 0, /* ran to the end, exported */
    FT_TRAIN_STOPPED,       /* should_stop() */
    FT_TRAIN_FAILED,        /* see the ft_err (also sent as a FAILED event) */
} ft_train_outcome;

typedef struct ft_train_result {
    ft_train_outcome outcome;
    int64_t steps_done, total_steps;
    int64_t epochs_done;
    int64_t skipped_updates; /* non-finite losses / gradients */
    int64_t loss_spikes;
    int64_t global_batch_size, micro_batch_size, context_length; /* as chosen (automatic or given) */
    double final_loss;       /* loss of the last step */
    bool has_eval;
    double eval_loss, eval_token_accuracy; /* the last evaluation */
    char run_dir[1024];
    char last_checkpoint[1024]; /* "" if none */
    char export_dir[1024];      /* run_dir/model when completed, else "" */
    char reason[512];           /* why it stopped or failed */
} ft_train_result;

/* The names a run writes in its folder (the list above, NULL-terminated): what `ftune delete`
 * may remove there. A new file in the run folder belongs in this list. */
extern const char *const ft_train_run_entries[];

/* The run folder experiment_path/name (Volumes mapped); owned by the caller. */
char *ft_train_run_dir(const ft_train_config *c);

/* A checkpoint's trainer_state.json: the counters and the batch plan a resume continues from.
 * ft_train_state_parse refuses a state no resume could continue from (negative counters, a
 * micro-batch larger than the global batch, a step past the planned total, ...), naming the field. */
typedef struct ft_train_state {
    int64_t step, epoch, total_steps, warmup_steps;
    int64_t global_batch_size, micro_batch_size, context_length;
    int64_t tokens_seen, skipped_updates, nonfinite_in_a_row, loss_spikes;
    double elapsed_s;      /* 0 when absent */
    bool has_last_loss;    /* last_loss, else the newest loss of the window (older checkpoints) */
    double last_loss;
    char config_hash[17];  /* 16 hex digits */
    ft_data_cursor cursor;
    double *loss_window;   /* owned: ft_train_state_deinit */
    int64_t n_loss_window;
} ft_train_state;
ft_status ft_train_state_parse(const char *path, const char *text, size_t len, ft_train_state *st, ft_err *err);
void ft_train_state_deinit(ft_train_state *st);

/* Start a run: write train_config.json in the run folder, read and pack the data, load the model
 * (or custom_weights_path), train, checkpoint, evaluate, export. Returns FT_OK when the run
 * COMPLETED or STOPPED (res->outcome says which); an error otherwise (res->outcome FAILED, the
 * reason in err and res->reason). `sink` may be NULL. A run folder that already has checkpoints
 * is refused (resume it instead). */
/* The data validation parameters of a run with this configuration (task, tokenizer and chat template, context
 * length T, loss mask, column names, duration, seed, threads), on ft_validate_default_params; callers add
 * their handlers and limits. create's check and the trainer use it, so both read the data alike. */
void ft_train_validate_params(const ft_train_config *c, const ft_tok *tok, const ft_chat *chat, int64_t T,
                              ft_validate_params *p);

ft_status ft_train_run(const ft_train_config *cfg, const ft_train_sink *sink, ft_train_result *res, ft_err *err);

/* Continue the run in `run_dir` from its latest complete checkpoint (falling back past corrupt
 * ones), with its saved configuration; `threads` > 0 overrides the thread count (the losses are
 * exactly those of an uninterrupted run only with the same thread count). A run folder without a
 * checkpoint starts from the beginning. */
ft_status ft_train_resume(const char *run_dir, int threads, const ft_train_sink *sink, ft_train_result *res,
                          ft_err *err);

/* ---------------------------------------------------------------- data parallelism (issue #15)
 * One run on every process of `comm` (ft_comm_world under `mpirun -np N`). Rank 0 calls
 * ft_train_run_on / ft_train_resume_on exactly as one process calls ft_train_run / ft_train_resume
 * (with its sink; it alone writes the run folder: configuration, metrics, checkpoints, evaluation,
 * export). Every other rank calls ft_train_follow, which receives each run's configuration from
 * rank 0, validates the data itself, trains its share and writes nothing, until rank 0 calls
 * ft_train_release (once, when it has no more runs; its exit status goes to the followers).
 * Weights and optimizer state come from rank 0 (broadcast), so only rank 0 needs the run folder;
 * every rank needs the model folder and the training data. A checkpoint holds the full optimizer
 * state by parameter name whatever the number of ranks, so a run resumes on any number of them.
 * A failure every rank sees (a bad configuration, data that differs between ranks) ends the run
 * on all of them with the reason; a rank that fails alone mid-run aborts the job (ft_comm_abort),
 * which the launcher turns into every process ending; the run is then resumed from its latest
 * checkpoint. With threads 0 ("all cores") each rank takes its host's cores divided by the ranks
 * on that host. Environment: FTUNE_ZERO=0 keeps the whole optimizer state on every rank (ZeRO-1,
 * the default, keeps each rank's shard only: the same bits, less memory); in one process,
 * FTUNE_DP_SIMULATE_RANKS=N computes exactly what N ranks would (the reference of the tests).
 * comm NULL or of one process: ft_train_run / ft_train_resume. */
ft_status ft_train_run_on(const ft_train_config *cfg, ft_comm *comm, const ft_train_sink *sink,
                          ft_train_result *res, ft_err *err);
ft_status ft_train_resume_on(const char *run_dir, int threads, ft_comm *comm, const ft_train_sink *sink,
                             ft_train_result *res, ft_err *err);
/* Ranks > 0. Returns FT_OK with *rank0_status rank 0's exit status once released. */
ft_status ft_train_follow(ft_comm *comm, int *rank0_status, ft_err *err);
ft_status ft_train_release(ft_comm *comm, int status, ft_err *err);

#endif
