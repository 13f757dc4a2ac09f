/* ftune/gen.h: sampling and text generation on the model's KV cache. Implemented in src/gen/.
 *
 * Sampling follows what transformers' generate() does with do_sample: logits / temperature,
 * then top-k (keep the k largest), then top-p (keep the smallest set of most probable tokens
 * whose probability reaches p, at least one), renormalise, draw. Temperature 0 is greedy
 * (argmax, lowest id on ties). min_p (transformers' MinPLogitsWarper) comes after top-p. Draws come from a seeded ft_rng, so a seed fixes the output.
 *
 * Stop tokens: the eos ids of generation_config.json (an int or a list), the id of
 * tokenizer_config.json's eos_token, the model config's eos ids, and, for chat prompts, the
 * end-of-turn markers the vocabulary has as special tokens (<|eot_id|>, <|im_end|>,
 * <end_of_turn>, <|end|>, <|eom_id|>) plus the special token the chat template itself writes
 * right after an assistant turn. A stop token ends generation and is not emitted. */
#ifndef FTUNE_GEN_H
#define FTUNE_GEN_H

#include "ftune/base.h"
#include "ftune/model.h"
#include "ftune/tok.h"

/* ---------------------------------------------------------------- sampling */

typedef struct ft_sampling {
    double temperature; /* 0: greedy */
    int64_t top_k;      /* 0: no limit */
    double top_p;       /* 1: no limit */
    double min_p;       /* 0: off; else keep tokens with probability >= min_p * the top one's (after top-p) */
} ft_sampling;

/* Working memory for sampling over a vocabulary of V (reuse across calls). */
typedef struct ft_sampler {
    int64_t V;
    float *probs;    /* (V) */
    int32_t *idx;    /* (V) */
    uint32_t *radix; /* (3 V) the sort's keys and scratch */
} ft_sampler;
ft_status ft_sampler_init(ft_sampler *s, int64_t V, ft_err *err);
void ft_sampler_deinit(ft_sampler *s);
/* Draw a token from logits (V floats, not modified). */
int32_t ft_sampler_sample(ft_sampler *s, const float *logits, const ft_sampling *p, ft_rng *rng);

/* ---------------------------------------------------------------- generation */

typedef struct ft_gen_params {
    int64_t max_new_tokens; /* 100 */
    ft_sampling sampling;   /* temperature 1, top_k 50, top_p 0.95 (the eval_prompts settings) */
    uint64_t seed;          /* 17 */
    bool chat;              /* render the prompt with the chat template's generation prompt */
    /* Called with each piece of final text as tokens arrive (may be NULL); return an error to
     * stop. */
    ft_status (*on_text)(void *user, const char *text, size_t len);
    void *user;
} ft_gen_params;
ft_gen_params ft_gen_default_params(void);

typedef struct ft_generator ft_generator; /* opaque */

/* A generator for a loaded model and its tokenizer (both borrowed: they must outlive it).
 * `model_dir` (may be NULL) is read for generation_config.json, tokenizer_config.json (eos
 * token, chat template). `max_context` bounds prompt + new tokens (0: the model's
 * max_position_embeddings, at most 8192); the KV cache is sized for it once. */
ft_status ft_gen_new(ft_model *m, const ft_tok *tok, const char *model_dir, int64_t max_context, ft_generator **out,
                     ft_err *err);
void ft_gen_free(ft_generator *g);
/* The stop ids (borrowed), and the end-of-turn ids that also stop chat generations: the known
 * markers above plus the special token the chat template writes right after an assistant
 * turn's content. */
const int32_t *ft_gen_stop_ids(const ft_generator *g, size_t *n);
const int32_t *ft_gen_turn_stop_ids(const ft_generator *g, size_t *n);
/* Whether a chat template was found (chat prompts need one: FT_ERR_INVALID otherwise). */
bool ft_gen_has_chat_template(const ft_generator *g);

/* The prompt's token ids: a chat prompt rendered as one user message with the generation
 * prompt and encoded without added special tokens (the template writes them); a plain prompt
 * encoded with them (BOS when the tokenizer adds one). *ids owned by the caller (ft_free). */
ft_status ft_gen_prompt_ids(ft_generator *g, const char *prompt, bool chat, int32_t **ids, size_t *n, ft_err *err);

typedef struct ft_gen_output {
    char *text;         /* the completion (owned: ft_free) */
    size_t text_len;
    int32_t *ids;       /* the generated ids, stop token excluded (owned: ft_free) */
    size_t n_ids;
    int64_t n_prompt;   /* prompt tokens */
    bool stopped;       /* ended at a stop token (false: max_new_tokens or the context was reached) */
    double seconds;     /* wall time of prefill + decode */
} ft_gen_output;
void ft_gen_output_free(ft_gen_output *o);

/* Generate from token ids. */
ft_status ft_gen_from_ids(ft_generator *g, const int32_t *prompt, size_t n, const ft_gen_params *p, ft_gen_output *out,
                          ft_err *err);
/* Generate from text (ft_gen_prompt_ids then ft_gen_from_ids). */
ft_status ft_gen_text(ft_generator *g, const char *prompt, const ft_gen_params *p, ft_gen_output *out, ft_err *err);

#endif
