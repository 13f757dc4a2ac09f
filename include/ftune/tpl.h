/* ftune/tpl.h: chat templates. A Jinja engine that renders the chat templates of real models
 * byte-for-byte as transformers does (Jinja2 ImmutableSandboxedEnvironment with trim_blocks,
 * lstrip_blocks and loopcontrols, tojson = json.dumps(ensure_ascii=False), globals
 * raise_exception and strftime_now), chat rendering from a model folder's tokenizer_config.json,
 * and per-token loss masks for training. Implemented in src/tpl/.
 *
 * Values come in as jansson json_t (objects keep their key order). Errors are FT_ERR_PARSE
 * (template syntax, with line and column), FT_ERR_INVALID (a runtime error: a type error, an
 * undefined value used wrongly, or the template's own raise_exception, whose message is kept
 * verbatim after "raise_exception: ") and FT_ERR_LIMIT (recursion, loop iterations, output or
 * memory over the limits in ft_tpl_limits). */
#ifndef FTUNE_TPL_H
#define FTUNE_TPL_H

#include <jansson.h>

#include "ftune/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- templates */

typedef struct ft_tpl ft_tpl; /* opaque, immutable after compiling: renders may run on many threads */

/* Compile template source src[0..len). `name` labels errors (a path or "chat_template"). Syntax
 * errors are FT_ERR_PARSE with err->line/column. Free with ft_tpl_free. */
ft_status ft_tpl_compile(const char *name, const char *src, size_t len, ft_tpl **out, ft_err *err);
void ft_tpl_free(ft_tpl *t); /* NULL is a no-op */

/* Safety limits of one render. Any exceeded limit is FT_ERR_LIMIT naming it. */
typedef struct ft_tpl_limits {
    int64_t max_depth;      /* nesting of macro calls and expressions (default 200) */
    int64_t max_iterations; /* loop iterations over the whole render (default 1,000,000) */
    size_t max_output;      /* bytes of output and of any one string built (default 64 MiB) */
    size_t max_memory;      /* bytes of working memory (default 512 MiB) */
} ft_tpl_limits;
ft_tpl_limits ft_tpl_default_limits(void);

typedef struct ft_tpl_render_params {
    ft_tpl_limits limits;
    /* What strftime_now formats. < 0: the wall clock, unless $FTUNE_FAKE_NOW holds seconds since
     * the epoch (for reproducible tests). Times are UTC. */
    int64_t now;
} ft_tpl_render_params;
ft_tpl_render_params ft_tpl_default_render_params(void);

/* Render with the members of the JSON object `vars` as variables (NULL: none), appending the
 * output to `out` (on failure `out` may hold a partial output). params may be NULL. */
ft_status ft_tpl_render(const ft_tpl *t, const json_t *vars, const ft_tpl_render_params *params, ft_buf *out,
                        ft_err *err);

/* ---------------------------------------------------------------- chat */

/* A model's chat template and special tokens, from tokenizer_config.json. */
typedef struct ft_chat ft_chat; /* opaque, immutable */

/* Load `path`/tokenizer_config.json (or `path` itself when it is a file); a folder's
 * chat_template.jinja, when present, replaces the config's chat_template (as transformers
 * does). chat_template may be
 * a string or a list of {"name", "template"}; "default" is used unless tools are given and a
 * "tool_use" template exists (as transformers picks). Every *_token (a string or an object
 * with "content") and additional_special_tokens become template variables. */
ft_status ft_chat_load(const char *path, ft_chat **out, ft_err *err);
/* From an already-parsed tokenizer_config.json object; `name` labels errors. */
ft_status ft_chat_from_config(const char *name, const json_t *config, ft_chat **out, ft_err *err);
/* From a bare template string and special tokens (bos/eos may be NULL: left undefined). */
ft_status ft_chat_from_template(const char *template_src, const char *bos_token, const char *eos_token,
                                ft_chat **out, ft_err *err);
void ft_chat_free(ft_chat *c); /* NULL is a no-op */
/* The token strings the config names ("bos_token" ...), borrowed; NULL when absent. */
const char *ft_chat_token(const ft_chat *c, const char *name);

/* Render a conversation: `messages` is a JSON array of {"role", "content", ...}; `tools` a JSON
 * array or NULL (passed as None, as transformers does); `extra` an optional object of further
 * variables (enable_thinking, date_string, documents ...). Appends to `out`. */
ft_status ft_chat_render(const ft_chat *c, const json_t *messages, const json_t *tools, bool add_generation_prompt,
                         const json_t *extra, const ft_tpl_render_params *params, ft_buf *out, ft_err *err);

/* ---------------------------------------------------------------- loss masks
 *
 * Which characters of a rendered conversation are trained on, found for any template by
 * rendering growing prefixes of the conversation. T is the full render (add_generation_prompt
 * false). For each assistant message k (0-based index in `messages`):
 *   P = render(messages[:k], add_generation_prompt=true)   the context plus the assistant header
 *   Q = render(messages[:k+1], add_generation_prompt=false) the context plus the whole turn
 * Start: where P and Q part (len(P) when P is a prefix of Q), moved past the previous message's
 *   content and the generation prompt P writes after it when P put that content elsewhere.
 * End, when Q is a prefix of T (the common case): len(Q), i.e. the content and everything the
 *   template writes after it before the next turn: "<|eot_id|>", "<|im_end|>\n", "</s>",
 *   "<end_of_turn>\n", "<|end|>\n". If Q ends right after the content and T continues there with
 *   the eos_token, the eos_token and one following newline are included (templates that close a
 *   turn only when another follows, e.g. Qwen1.5 / ChatML "<|im_end|>\n").
 * End, otherwise (the template renders the turn differently once later turns follow): the
 *   content is located in T (verbatim, stripped, or the part after </think>), and the span runs
 *   over it plus what follows it identically in Q and T, less the opening of the next turn's
 *   header (what T has before its first role name, e.g. "<|start_header_id|>"), and less a copy
 *   of this turn's own header that a template writes in advance (Llama 3's first revision).
 * The end-of-turn marker of the turn is therefore trainable; the next turn's header, the system
 * and user turns and the generation prompt are not. When T and the prefix renders disagree on
 * the context before a turn and the turn's content cannot be located in T (a blank assistant
 * message in such a template), the result is FT_ERR_INVALID naming the message index
 * ("not prefix-stable at message k"). */
typedef struct ft_chat_span {
    size_t start, end; /* byte range in the rendered text */
    size_t message;    /* index of the assistant message */
} ft_chat_span;

typedef struct ft_chat_mask_params {
    bool last_assistant; /* train only the final assistant message */
    ft_tpl_render_params render;
} ft_chat_mask_params;
ft_chat_mask_params ft_chat_default_mask_params(void);

/* Render `messages` (add_generation_prompt false) into `text` and find the trainable spans
 * (*spans owned by the caller, ft_free). Fails when the template is not prefix-stable. */
ft_status ft_chat_spans(const ft_chat *c, const json_t *messages, const json_t *tools, const json_t *extra,
                        const ft_chat_mask_params *params, ft_buf *text, ft_chat_span **spans, size_t *n_spans,
                        ft_err *err);

/* ---------------------------------------------------------------- token ids and loss mask */

struct ft_tok; /* ftune/tok.h */

/* A conversation tokenized for training: ids[0..n) and mask[i] = 1 where the token is trained
 * on. Free with ft_chat_tokens_free. */
typedef struct ft_chat_tokens {
    int32_t *ids;
    uint8_t *mask;
    size_t n;
    size_t n_trainable;
} ft_chat_tokens;

/* Render (add_generation_prompt false), find the spans (ft_chat_spans) and tokenize the WHOLE
 * rendered text once with add_special_tokens=false, as transformers' apply_chat_template
 * (tokenize=True) does: the template writes BOS and the other markers itself, so nothing is
 * added twice. A token is trainable when its byte range [start, end) overlaps a trainable span
 * (a token that merges the last header byte with the first content byte is trained, so the
 * content is never cut). `text` (may be NULL) receives the rendered text and `spans`/`n_spans`
 * (may be NULL) the spans, owned by the caller. */
ft_status ft_chat_tokenize(const ft_chat *c, const struct ft_tok *tok, const json_t *messages, const json_t *tools,
                           const json_t *extra, const ft_chat_mask_params *params, ft_chat_tokens *out, ft_buf *text,
                           ft_chat_span **spans, size_t *n_spans, ft_err *err);
void ft_chat_tokens_free(ft_chat_tokens *t); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
