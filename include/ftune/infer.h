/* ftune/infer.h: the inference engine: one loaded model (weights shared, read-only) decoding
 * many sequences together. Implemented in src/infer/.
 *
 * Continuous batching: the engine runs one step after another on its own thread; a submitted
 * request joins at the next step (when a KV slot is free, else it waits in a bounded queue) and a
 * finished one leaves at once, freeing its slot. Each step decodes one token of every running
 * sequence and, in the rows left over (params.step_tokens), a chunk of a waiting prompt, so a long
 * prompt is prefilled a chunk at a time while the others keep decoding. All rows of a step go
 * through the model together (ft_model_decode_batch: one GEMM per weight, M = rows).
 *
 * Sampling is per sequence and depends only on that sequence (its seed, its logits): what else is
 * in the batch does not change its tokens. The order follows transformers: repetition penalty
 * (prompt and output tokens), then OpenAI's presence and frequency penalties (output tokens),
 * then temperature, top-k, top-p, min-p (ftune/gen.h). Generation ends at a stop id (the
 * generator's: generation_config, tokenizer_config's eos, with `turn_stops` the end-of-turn
 * markers), at a stop string (the text up to it is the output; text that could still become a
 * stop string is held back until it cannot, so a stop string never leaks, even split across
 * tokens), at max_tokens, or at the slot's end (the context). */
#ifndef FTUNE_INFER_H
#define FTUNE_INFER_H

#include "ftune/base.h"
#include "ftune/gen.h"
#include "ftune/model.h"
#include "ftune/tok.h"

typedef struct ft_infer ft_infer; /* opaque */

typedef struct ft_infer_params {
    int64_t max_seqs;      /* sequences decoding at once: KV slots (default 8) */
    int64_t max_context;   /* tokens per sequence, prompt + completion (0: the model's, at most 4096) */
    int64_t step_tokens;   /* most tokens per step, decode rows + prefill (default 256) */
    int64_t max_queue;     /* requests waiting for a slot; more are refused with FT_ERR_LIMIT (default 64) */
    int64_t kv_tokens;     /* the KV pool's tokens, shared by the sequences (0: max_seqs * max_context); a
                            * request reserves its prompt + max_tokens (blocks of FT_KV_BLOCK) when it
                            * is admitted and waits while the pool lacks them */
} ft_infer_params;
ft_infer_params ft_infer_default_params(void);

/* An engine over a loaded model and tokenizer (borrowed: they must outlive it); `model_dir` as
 * for ft_gen_new (stop ids, chat template). Without a tokenizer (benchmarks) there is no text:
 * ids only, no stop strings or JSON. Starts the engine thread. */
ft_status ft_infer_new(ft_model *m, const ft_tok *tok, const char *model_dir, const ft_infer_params *p,
                       ft_infer **out, ft_err *err);
/* Stops the thread; running and queued requests end with FT_INFER_CANCELLED first. */
void ft_infer_free(ft_infer *e);
const ft_infer_params *ft_infer_get_params(const ft_infer *e);
/* The generator whose stop ids, chat template and prompt encoding the engine uses (borrowed). */
ft_generator *ft_infer_generator(ft_infer *e);
/* Render `messages` (a JSON array of {role, content}) with the model's chat template and its
 * generation prompt, and encode it (no added special tokens: the template writes them).
 * *ids owned by the caller (ft_free). FT_ERR_INVALID without a template or with a bad message. */
ft_status ft_infer_chat_ids(ft_infer *e, const void *messages_json, int32_t **ids, size_t *n, ft_err *err);

typedef enum ft_infer_finish {
    FT_INFER_STOP = 0,  /* a stop id or a stop string */
    FT_INFER_LENGTH,    /* max_tokens, or the context was full */
    FT_INFER_CANCELLED, /* ft_infer_cancel, or the engine stopped */
    FT_INFER_ERROR,
} ft_infer_finish;
const char *ft_infer_finish_name(ft_infer_finish f); /* "stop", "length", "cancelled", "error" */

enum { FT_INFER_MAX_TOP = 20 };

/* One generated token (a stop id is never one). */
typedef struct ft_infer_token {
    int32_t id;
    float logprob; /* log softmax of the model's logits (before penalties and temperature) */
    int n_top;     /* top_logprobs asked for */
    int32_t top_ids[FT_INFER_MAX_TOP];
    float top_logprobs[FT_INFER_MAX_TOP];
} ft_infer_token;

typedef enum ft_infer_event_kind { FT_INFER_TOKEN = 0, FT_INFER_DONE } ft_infer_event_kind;

/* What the engine reports to a request's callback, from the engine thread. TOKEN: a token and
 * the text released with it (may be empty: held back as a possible stop string or an incomplete
 * character; may hold text of earlier tokens). DONE, exactly once and last: the rest of the text
 * (text that was held back and turned out not to be a stop string), the reason and the usage;
 * after it the engine never touches the request's `user` again. */
typedef struct ft_infer_event {
    ft_infer_event_kind kind;
    const ft_infer_token *token; /* TOKEN */
    const char *text;
    size_t text_len;
    ft_infer_finish finish;      /* DONE */
    const ft_err *err;           /* DONE with FT_INFER_ERROR */
    int64_t prompt_tokens, completion_tokens;
    double queue_s, ttft_s, total_s; /* DONE: waiting for a slot, submit to first token, submit to end */
} ft_infer_event;
typedef void (*ft_infer_callback)(void *user, const ft_infer_event *ev);

enum { FT_INFER_MAX_STOP_STRINGS = 8 };

typedef enum ft_infer_json { FT_INFER_JSON_NONE = 0, FT_INFER_JSON_OBJECT, FT_INFER_JSON_SCHEMA } ft_infer_json;

typedef struct ft_infer_request {
    const int32_t *prompt; /* copied */
    size_t n_prompt;
    int64_t max_tokens;    /* 0: up to the context */
    ft_sampling sampling;
    double repetition_penalty; /* 1 (or 0): off; transformers' RepetitionPenaltyLogitsProcessor */
    double presence_penalty, frequency_penalty; /* 0: off; OpenAI's definitions, -2..2 */
    uint64_t seed;
    bool turn_stops;       /* stop at end-of-turn markers too (chat prompts) */
    const char *stop[FT_INFER_MAX_STOP_STRINGS]; /* copied; NULL-terminated or n_stop */
    size_t n_stop;
    int top_logprobs;      /* -1: no logprobs; 0..FT_INFER_MAX_TOP */
    ft_infer_json json;    /* FT_INFER_JSON_OBJECT: constrained to one JSON object; FT_INFER_JSON_SCHEMA:
                            * to a document valid under json_schema (ft_infer_check_schema's subset).
                            * Either way the output is steered to close the document within the tokens
                            * left, so a "stop" answer is complete; a "length" one may be cut. */
    const void *json_schema; /* a jansson json_t (borrowed for the call only) */
    bool json_strict;        /* OpenAI's strict mode: also refuse schemas it refuses */
    ft_infer_callback cb;
    void *user;
} ft_infer_request;
ft_infer_request ft_infer_default_request(void);

/* Whether a JSON Schema is within what constrained decoding supports (src/infer/json_schema.c:
 * type and type lists, properties/required/additionalProperties, enum, const, anyOf, $ref and
 * $defs with recursion, items/minItems/maxItems, minLength/maxLength, pattern, format, bounds and
 * multipleOf); FT_ERR_UNSUPPORTED / FT_ERR_INVALID naming the keyword and its place (a JSON
 * Pointer) otherwise. `strict`: OpenAI's strict mode rules too (an object root; every object
 * with additionalProperties false and every property required). */
ft_status ft_infer_check_schema(const void *json_schema, bool strict, ft_err *err);

/* Queue a request; *id names it for ft_infer_cancel. FT_ERR_INVALID for a bad request (empty
 * prompt, a prompt that leaves no room in the context, a bad id), FT_ERR_LIMIT when the queue is
 * full (retry later). On error the callback is never called. */
ft_status ft_infer_submit(ft_infer *e, const ft_infer_request *r, uint64_t *id, ft_err *err);
/* Stop a request: it ends with FT_INFER_CANCELLED at the next step (a no-op once it ended). */
void ft_infer_cancel(ft_infer *e, uint64_t id);

/* Run one request to its end on the calling thread's behalf (submits, waits): the text, ids
 * and finish. With `on_text` the text is also streamed as it is released. */
typedef struct ft_infer_result {
    char *text; /* owned: ft_free */
    size_t text_len;
    int32_t *ids; /* owned */
    size_t n_ids;
    float *logprobs; /* (n_ids) owned */
    ft_infer_finish finish;
    int64_t prompt_tokens;
    double ttft_s, total_s;
} ft_infer_result;
ft_status ft_infer_run(ft_infer *e, const ft_infer_request *r, ft_status (*on_text)(void *, const char *, size_t),
                       void *on_text_user, ft_infer_result *out, ft_err *err);
void ft_infer_result_free(ft_infer_result *r);

/* Counters for /metrics (cumulative since start unless said). Histogram buckets are upper bounds
 * in seconds (FT_INFER_HIST buckets; counts are per bucket, not cumulative). */
enum { FT_INFER_HIST = 12 };
extern const double ft_infer_hist_bounds[FT_INFER_HIST];
typedef struct ft_infer_hist {
    uint64_t count[FT_INFER_HIST + 1]; /* the last: above every bound */
    double sum;
    uint64_t n;
} ft_infer_hist;
/* Where the engine thread's time went, cumulative wall seconds: whole steps, the model
 * (ft_model_decode_batch) and its parts, and after it each sequence's logits processing
 * (penalties, sampling, constrained choice, logprobs, text, stop checks, its callbacks); and the
 * process's CPU seconds during the steps (all threads: on a shared machine CPU time shows the
 * work where wall time also shows the waiting). */
typedef struct ft_infer_profile {
    int64_t steps, rows;
    double step_s, model_s, matmul_s, attention_s, head_s, logits_s, cpu_s;
} ft_infer_profile;
typedef struct ft_infer_stats {
    uint64_t requests, finished[4]; /* by ft_infer_finish */
    uint64_t prompt_tokens, completion_tokens, steps;
    int64_t running, queued, slots_used, slots;   /* now */
    int64_t kv_tokens_used, kv_tokens;            /* now: reserved by the running sequences, the pool's */
    int64_t last_batch;                           /* sequences in the last step */
    ft_infer_hist ttft, itl, batch;               /* batch: sequences per step (bounds reused as counts) */
    ft_infer_profile decode_steps;  /* steps with only decoding rows (one new token per sequence) */
    ft_infer_profile prefill_steps; /* steps with prompt chunks */
} ft_infer_stats;
void ft_infer_get_stats(ft_infer *e, ft_infer_stats *s);

#endif
