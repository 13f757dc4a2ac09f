/* tpl/mask.c: a conversation as training tokens: the rendered text tokenized once (as
 * transformers does, add_special_tokens=false) and each token flagged trainable when it overlaps
 * a trainable span (ft_chat_spans in chat.c). */
#include <string.h>

#include "ftune/tok.h"
#include "ftune/tpl.h"

void ft_chat_tokens_free(ft_chat_tokens *t) {
    if (!t)
        return;
    ft_free(t->ids);
    ft_free(t->mask);
    memset(t, 0, sizeof *t);
}

ft_status ft_chat_tokenize(const ft_chat *c, const struct ft_tok *tok, const json_t *messages, const json_t *tools,
                           const json_t *extra, const ft_chat_mask_params *params, ft_chat_tokens *out, ft_buf *text,
                           ft_chat_span **spans_out, size_t *n_spans_out, ft_err *err) {
    memset(out, 0, sizeof *out);
    ft_buf local = {0};
    ft_buf *t = text ? text : &local;
    ft_chat_span *spans = NULL;
    size_t ns = 0;
    ft_status s = ft_chat_spans(c, messages, tools, extra, params, t, &spans, &ns, err);
    if (s != FT_OK) {
        ft_buf_free(&local);
        return s;
    }
    ft_tok_encoding enc;
    ft_tok_encoding_init(&enc);
    s = ft_tok_encode(tok, t->data ? t->data : "", t->len, false, &enc, err);
    if (s == FT_OK) {
        out->ids = ft_malloc((enc.n + 1) * sizeof *out->ids);
        out->mask = ft_calloc(enc.n + 1, 1);
        if (!out->ids || !out->mask)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (s == FT_OK) {
        out->n = enc.n;
        size_t k = 0; /* spans are in text order; tokens too */
        for (size_t i = 0; i < enc.n; i++) {
            out->ids[i] = enc.ids[i];
            size_t a = enc.offsets[i].start, b = enc.offsets[i].end;
            while (k < ns && spans[k].end <= a)
                k++;
            /* overlap with span k (or a later one starting inside the token) */
            bool on = false;
            for (size_t j = k; j < ns && spans[j].start < b; j++)
                if (spans[j].end > a && spans[j].end > spans[j].start) {
                    on = true;
                    break;
                }
            out->mask[i] = on;
            out->n_trainable += on;
        }
    } else
        ft_chat_tokens_free(out);
    ft_tok_encoding_free(&enc);
    if (s == FT_OK && spans_out) {
        *spans_out = spans;
        *n_spans_out = ns;
    } else
        ft_free(spans);
    ft_buf_free(&local);
    return s;
}
