/* gen/generate.c: text generation on the KV cache: prompt rendering (chat template or plain),
 * prefill, sampling, streaming text through the tokenizer's incremental decoder, and stopping
 * at EOS / end-of-turn tokens (ftune/gen.h). */
#include <string.h>

#include "ftune/gen.h"
#include "ftune/json.h"
#include "ftune/tpl.h"

#define MAX_STOP 32

struct ft_generator {
    ft_model *m;
    const ft_tok *tok;
    ft_chat *chat; /* NULL when the model has no chat template */
    ft_kv_cache *kv;
    int64_t max_context;
    int64_t V;
    float *logits; /* (V) */
    ft_sampler sampler;
    int32_t stop[MAX_STOP];
    size_t n_stop;
    int32_t turn_stop[MAX_STOP]; /* end-of-turn markers, for chat prompts only */
    size_t n_turn_stop;
};

ft_gen_params ft_gen_default_params(void) {
    ft_gen_params p;
    memset(&p, 0, sizeof p);
    p.max_new_tokens = 100;
    p.sampling.temperature = 1.0;
    p.sampling.top_k = 50;
    p.sampling.top_p = 0.95;
    p.seed = 17;
    return p;
}

static void add_id(int32_t *v, size_t *n, int64_t id, int64_t V) {
    if (id < 0 || id >= V)
        return;
    for (size_t i = 0; i < *n; i++)
        if (v[i] == id)
            return;
    if (*n < MAX_STOP)
        v[(*n)++] = (int32_t)id;
}

/* eos_token_id of generation_config.json: an int or a list of ints. */
static void read_generation_config(ft_generator *g, const char *dir) {
    char *p = ft_path_join(dir, "generation_config.json");
    json_t *j = NULL;
    if (p && ft_path_exists(p) && ft_json_load_file(p, &j, NULL) == FT_OK) {
        json_t *e = json_object_get(j, "eos_token_id");
        if (json_is_integer(e))
            add_id(g->stop, &g->n_stop, json_integer_value(e), g->V);
        size_t i;
        json_t *x;
        if (json_is_array(e))
            json_array_foreach(e, i, x) if (json_is_integer(x)) add_id(g->stop, &g->n_stop, json_integer_value(x), g->V);
    }
    json_decref(j);
    ft_free(p);
}

/* The template's own end-of-turn marker: render a user turn and an assistant turn, and take the
 * token right after the assistant's content when it is a special token ("<|eot_id|>",
 * "<|im_end|>", "</s>", ...). Templates differ too much for a fixed list. */
static void add_template_turn_end(ft_generator *g) {
    static const char mark[] = "\x01ftune-assistant-content\x01";
    json_t *msgs = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "user", "content", "hi", "role", "assistant",
                             "content", mark);
    ft_buf out = {0};
    if (msgs && ft_chat_render(g->chat, msgs, NULL, false, NULL, NULL, &out, NULL) == FT_OK) {
        const char *text = ft_buf_cstr(&out), *at = strstr(text, mark);
        if (at) {
            const char *rest = at + strlen(mark);
            ft_tok_encoding enc;
            ft_tok_encoding_init(&enc);
            if (ft_tok_encode(g->tok, rest, strlen(rest), false, &enc, NULL) == FT_OK && enc.n > 0 &&
                ft_tok_is_special(g->tok, enc.ids[0]))
                add_id(g->turn_stop, &g->n_turn_stop, enc.ids[0], g->V);
            ft_tok_encoding_free(&enc);
        }
    }
    ft_buf_free(&out);
    json_decref(msgs);
}

ft_status ft_gen_new(ft_model *m, const ft_tok *tok, const char *model_dir, int64_t max_context, ft_generator **out,
                     ft_err *err) {
    *out = NULL;
    ft_generator *g = ft_calloc(1, sizeof *g);
    if (!g)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    const ft_model_config *c = ft_model_get_config(m);
    g->m = m;
    g->tok = tok;
    g->V = c->vocab_size;
    if (max_context <= 0)
        max_context = c->max_position_embeddings > 0 && c->max_position_embeddings < 8192 ? c->max_position_embeddings
                                                                                           : 8192;
    if (c->max_position_embeddings > 0 && max_context > c->max_position_embeddings)
        max_context = c->max_position_embeddings;
    g->max_context = max_context;
    ft_status s = ft_kv_cache_new(m, max_context, &g->kv, err);
    if (s == FT_OK && !(g->logits = ft_malloc((size_t)g->V * sizeof(float))))
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (s == FT_OK)
        s = ft_sampler_init(&g->sampler, g->V, err);
    if (s != FT_OK) {
        ft_gen_free(g);
        return s;
    }
    for (int i = 0; i < c->n_eos; i++)
        add_id(g->stop, &g->n_stop, c->eos_token_ids[i], g->V);
    if (tok) {
        ft_tok_info info;
        ft_tok_get_info(tok, &info);
        add_id(g->stop, &g->n_stop, info.eos_id, g->V);
        static const char *turn_markers[] = {"<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>", "<|eom_id|>"};
        for (size_t i = 0; i < sizeof turn_markers / sizeof *turn_markers; i++) {
            int32_t id = ft_tok_token_to_id(tok, turn_markers[i], strlen(turn_markers[i]));
            if (id >= 0 && ft_tok_is_special(tok, id))
                add_id(g->turn_stop, &g->n_turn_stop, id, g->V);
        }
    }
    if (model_dir) {
        read_generation_config(g, model_dir);
        char *p = ft_path_join(model_dir, "tokenizer_config.json");
        if (p && ft_path_exists(p)) {
            ft_err e2;
            /* the folder, not the file: a chat_template.jinja beside it wins (ftune/tpl.h) */
            if (ft_chat_load(model_dir, &g->chat, &e2) != FT_OK) {
                g->chat = NULL; /* no template: chat prompts will say so */
                FT_LOG_DEBUG("no chat template in %s: %s", p, e2.msg);
            } else if (tok) {
                add_template_turn_end(g);
            }
        }
        ft_free(p);
    }
    *out = g;
    return FT_OK;
}

void ft_gen_free(ft_generator *g) {
    if (!g)
        return;
    ft_kv_cache_free(g->kv);
    ft_free(g->logits);
    ft_sampler_deinit(&g->sampler);
    ft_chat_free(g->chat);
    ft_free(g);
}

const int32_t *ft_gen_stop_ids(const ft_generator *g, size_t *n) {
    *n = g->n_stop;
    return g->stop;
}

const int32_t *ft_gen_turn_stop_ids(const ft_generator *g, size_t *n) {
    *n = g->n_turn_stop;
    return g->turn_stop;
}

bool ft_gen_has_chat_template(const ft_generator *g) { return g->chat != NULL; }

ft_status ft_gen_prompt_ids(ft_generator *g, const char *prompt, bool chat, int32_t **ids, size_t *n, ft_err *err) {
    *ids = NULL;
    *n = 0;
    if (!g->tok)
        return FT_ERR(err, FT_ERR_INVALID, "generation from text needs a tokenizer");
    ft_buf text = {0};
    ft_status s = FT_OK;
    bool special = true;
    if (chat) {
        if (!g->chat)
            return FT_ERR(err, FT_ERR_INVALID, "--chat: the model has no chat template (tokenizer_config.json)");
        json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", prompt);
        if (!msgs)
            return FT_ERR(err, FT_ERR_INVALID, "prompt is not valid UTF-8");
        s = ft_chat_render(g->chat, msgs, NULL, true, NULL, NULL, &text, err);
        json_decref(msgs);
        special = false; /* the template writes BOS and the like itself */
    } else {
        s = ft_buf_append(&text, prompt, strlen(prompt));
    }
    if (s == FT_OK)
        s = ft_tok_encode_ids(g->tok, text.data ? text.data : "", text.len, special, ids, n, err);
    ft_buf_free(&text);
    return s;
}

void ft_gen_output_free(ft_gen_output *o) {
    if (!o)
        return;
    ft_free(o->text);
    ft_free(o->ids);
    memset(o, 0, sizeof *o);
}

static bool is_stop(const int32_t *v, size_t n, int32_t id) {
    for (size_t i = 0; i < n; i++)
        if (v[i] == id)
            return true;
    return false;
}

ft_status ft_gen_from_ids(ft_generator *g, const int32_t *prompt, size_t n, const ft_gen_params *p, ft_gen_output *out,
                          ft_err *err) {
    memset(out, 0, sizeof *out);
    double t0 = ft_time_now();
    if (n == 0)
        return FT_ERR(err, FT_ERR_INVALID, "empty prompt");
    if ((int64_t)n >= g->max_context)
        return FT_ERR(err, FT_ERR_RANGE, "prompt of %zu tokens does not fit the context of %lld tokens", n,
                      (long long)g->max_context);
    for (size_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= g->V)
            return FT_ERR(err, FT_ERR_RANGE, "prompt token %zu: id %d outside the vocabulary (%lld)", i, prompt[i],
                          (long long)g->V);
    int64_t budget = p->max_new_tokens;
    if ((int64_t)n + budget > g->max_context)
        budget = g->max_context - (int64_t)n;
    out->n_prompt = (int64_t)n;
    ft_rng rng;
    ft_rng_seed(&rng, p->seed);
    ft_tok_stream *stream = NULL;
    ft_buf text = {0}, piece = {0};
    out->ids = ft_malloc((size_t)(budget > 0 ? budget : 1) * sizeof(int32_t));
    ft_status s = out->ids ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (s == FT_OK && g->tok)
        s = ft_tok_stream_new(g->tok, true, &stream, err);
    ft_kv_cache_reset(g->kv);
    if (s == FT_OK)
        s = ft_model_decode(g->m, g->kv, prompt, (int64_t)n, g->logits, err);
    for (int64_t t = 0; s == FT_OK && t < budget; t++) {
        int32_t id = ft_sampler_sample(&g->sampler, g->logits, &p->sampling, &rng);
        if (is_stop(g->stop, g->n_stop, id) || (p->chat && is_stop(g->turn_stop, g->n_turn_stop, id))) {
            out->stopped = true;
            break;
        }
        out->ids[out->n_ids++] = id;
        if (stream) {
            piece.len = 0;
            s = ft_tok_stream_push(stream, id, &piece, err);
            if (s == FT_OK && piece.len) {
                s = ft_buf_append(&text, piece.data, piece.len);
                if (s == FT_OK && p->on_text)
                    s = p->on_text(p->user, piece.data, piece.len);
            }
        }
        if (s == FT_OK && t + 1 < budget)
            s = ft_model_decode(g->m, g->kv, &id, 1, g->logits, err);
    }
    if (s == FT_OK && !stream && g->tok == NULL)
        s = ft_buf_append(&text, "", 0);
    if (s == FT_OK) {
        const char *c = ft_buf_cstr(&text);
        out->text_len = text.len;
        out->text = ft_strndup(c, text.len);
        if (!out->text)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    ft_tok_stream_free(stream);
    ft_buf_free(&text);
    ft_buf_free(&piece);
    out->seconds = ft_time_now() - t0;
    if (s != FT_OK)
        ft_gen_output_free(out);
    return s;
}

ft_status ft_gen_text(ft_generator *g, const char *prompt, const ft_gen_params *p, ft_gen_output *out, ft_err *err) {
    int32_t *ids = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    FT_TRY(ft_gen_prompt_ids(g, prompt, p->chat, &ids, &n, err));
    ft_status s = ft_gen_from_ids(g, ids, n, p, out, err);
    ft_free(ids);
    return s;
}
