/* data/sample.c: training samples from records (SPEC §3): token ids plus a trainable flag per
 * token, for INSTRUCTION_FINETUNE (BOS? prompt response EOS; loss on response + EOS),
 * CHAT_COMPLETION (the model's chat template and its loss spans, ftune/tpl.h) and
 * CONTINUED_PRETRAIN (BOS? text EOS, all trainable; split into pieces by the packer).
 *
 * Prompt and response are tokenized separately and concatenated, so the loss boundary is
 * exactly where the user put it (a merge across the boundary would blur it). */
#include <string.h>

#include "data/data_internal.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"

typedef struct scratch {
    ft_tok_encoding enc;
} scratch;

void ft_sample_free(ft_sample *s) {
    if (!s)
        return;
    ft_free(s->ids);
    ft_free(s->trainable);
    memset(s, 0, sizeof *s);
}

void ft_sample_scratch_free(ft_sample_scratch *s) {
    if (!s || !s->p_)
        return;
    scratch *w = s->p_;
    ft_tok_encoding_free(&w->enc);
    ft_free(w);
    s->p_ = NULL;
}

static ft_status reserve(ft_sample *s, size_t n, ft_err *err) {
    if (n <= s->cap)
        return FT_OK;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < n)
        cap *= 2;
    int32_t *ids = ft_realloc(s->ids, cap * sizeof *ids);
    if (ids)
        s->ids = ids;
    uint8_t *tr = ids ? ft_realloc(s->trainable, cap) : NULL;
    if (!ids || !tr)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory building a sample of %zu tokens", n);
    s->trainable = tr;
    s->cap = cap;
    return FT_OK;
}

static ft_status push(ft_sample *s, const int32_t *ids, size_t n, uint8_t trainable, ft_err *err) {
    FT_TRY(reserve(s, s->n + n, err));
    memcpy(s->ids + s->n, ids, n * sizeof *ids);
    memset(s->trainable + s->n, trainable, n);
    s->n += n;
    return FT_OK;
}

static ft_status encode(const ft_sample_params *p, scratch *w, const char *text, size_t len, ft_err *err) {
    return ft_tok_encode(p->tok, text, len, false, &w->enc, err);
}

static ft_status build_ift(const ft_sample_params *p, const json_t *o, scratch *w, const ft_tok_info *ti,
                           ft_sample *out, ft_err *err) {
    json_t *pr = json_object_get(o, "prompt"), *re = json_object_get(o, "response");
    if (!re)
        re = json_object_get(o, "completion");
    if (!json_is_string(pr) || !json_is_string(re))
        return FT_ERR(err, FT_ERR_INVALID, "an instruction record needs string \"prompt\" and \"response\"");
    if (ti->post_adds_bos && ti->post_bos_id >= 0)
        FT_TRY(push(out, &ti->post_bos_id, 1, 0, err));
    FT_TRY(encode(p, w, json_string_value(pr), json_string_length(pr), err));
    FT_TRY(push(out, w->enc.ids, w->enc.n, 0, err));
    FT_TRY(encode(p, w, json_string_value(re), json_string_length(re), err));
    FT_TRY(push(out, w->enc.ids, w->enc.n, 1, err));
    int32_t eos = ti->eos_id >= 0 ? ti->eos_id : ti->post_eos_id;
    if (eos >= 0)
        FT_TRY(push(out, &eos, 1, 1, err));
    return FT_OK;
}

static ft_status build_cpt(const ft_sample_params *p, const ft_record *rec, scratch *w, const ft_tok_info *ti,
                           ft_sample *out, ft_err *err) {
    const char *text = rec->data;
    size_t len = rec->len;
    if (rec->kind == FT_RECORD_JSON_VALUE) { /* a table row {"text": ...} (later sources) */
        json_t *t = json_object_get(rec->value, "text");
        if (!json_is_string(t))
            return FT_ERR(err, FT_ERR_INVALID, "a pretraining row needs a string \"text\"");
        text = json_string_value(t);
        len = json_string_length(t);
    }
    if (ti->post_adds_bos && ti->post_bos_id >= 0)
        FT_TRY(push(out, &ti->post_bos_id, 1, 1, err));
    FT_TRY(encode(p, w, text, len, err));
    FT_TRY(push(out, w->enc.ids, w->enc.n, 1, err));
    int32_t eos = ti->eos_id >= 0 ? ti->eos_id : ti->post_eos_id;
    if (eos >= 0)
        FT_TRY(push(out, &eos, 1, 1, err));
    return FT_OK;
}

/* The template's rendering, tokens and loss mask come from one call of the templates module
 * (ftune/tpl.h): the text rendered once and tokenized whole without special tokens, as
 * transformers does; a token is trainable when it overlaps a trainable span. */
static ft_status build_chat(const ft_sample_params *p, const json_t *o, ft_sample *out, ft_err *err) {
    if (!p->chat)
        return FT_ERR(err, FT_ERR_INVALID, "no chat template: the model's tokenizer_config.json has no chat_template");
    ft_chat_mask_params mp = ft_chat_default_mask_params();
    mp.last_assistant = p->last_assistant;
    ft_chat_tokens ct = {0};
    FT_TRY(ft_chat_tokenize(p->chat, p->tok, json_object_get(o, "messages"), NULL, NULL, &mp, &ct, NULL, NULL, NULL,
                            err));
    ft_status s = reserve(out, ct.n, err);
    if (s == FT_OK) {
        memcpy(out->ids, ct.ids, ct.n * sizeof *ct.ids);
        memcpy(out->trainable, ct.mask, ct.n);
        out->n = ct.n;
    }
    ft_chat_tokens_free(&ct);
    return s;
}

ft_status ft_sample_build(const ft_sample_params *p, const json_t *parsed, const ft_record *rec,
                          ft_sample_scratch *sc, ft_sample *out, ft_err *err) {
    out->n = 0;
    out->n_full = 0;
    out->truncated = false;
    out->n_trainable = 0;
    if (!p->tok)
        return FT_ERR(err, FT_ERR_INVALID, "building samples needs a tokenizer");
    if (!sc->p_) {
        scratch *w = ft_calloc(1, sizeof *w);
        if (!w)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        ft_tok_encoding_init(&w->enc);
        sc->p_ = w;
    }
    scratch *w = sc->p_;
    ft_tok_info ti;
    ft_tok_get_info(p->tok, &ti);
    if (!parsed && rec && rec->kind == FT_RECORD_JSON_VALUE)
        parsed = rec->value;
    switch (p->task) {
    case FT_TASK_INSTRUCTION_FINETUNE:
        if (!parsed)
            return FT_ERR(err, FT_ERR_INVALID, "an instruction sample needs a parsed record");
        FT_TRY(build_ift(p, parsed, w, &ti, out, err));
        break;
    case FT_TASK_CHAT_COMPLETION:
        if (!parsed)
            return FT_ERR(err, FT_ERR_INVALID, "a chat sample needs a parsed record");
        FT_TRY(build_chat(p, parsed, out, err));
        break;
    case FT_TASK_CONTINUED_PRETRAIN:
        if (!rec)
            return FT_ERR(err, FT_ERR_INVALID, "a pretraining sample needs a record");
        FT_TRY(build_cpt(p, rec, w, &ti, out, err));
        break;
    }
    out->n_full = out->n;
    int64_t T = p->context_length;
    if (p->task != FT_TASK_CONTINUED_PRETRAIN) {
        if (T > 0 && (int64_t)out->n > T) {
            out->n = (size_t)T;
            out->truncated = true;
        }
        for (size_t i = 1; i < out->n; i++)
            out->n_trainable += out->trainable[i];
    } else {
        /* pieces [kT, (k+1)T): position 0 of each piece predicts nothing */
        int64_t pieces = ft_sample_cpt_pieces((int64_t)out->n, T);
        for (int64_t k = 0; k < pieces; k++) {
            int64_t a = k * T, b = a + T < (int64_t)out->n ? a + T : (int64_t)out->n;
            for (int64_t i = a + 1; i < b; i++)
                out->n_trainable += out->trainable[i];
        }
    }
    return FT_OK;
}

int64_t ft_sample_cpt_pieces(int64_t n, int64_t T) {
    if (T <= 0 || n < 2)
        return 0;
    int64_t full = n / T, rest = n % T;
    return full + (rest >= 2 ? 1 : 0);
}
