/* tpl/chat.c: chat rendering as transformers' apply_chat_template does it (template choice,
 * special tokens as variables, tools=None and documents=None when absent), and the trainable
 * character spans of a conversation found by rendering growing prefixes (see ftune/tpl.h for
 * the rule). */
#include <stdlib.h>
#include <string.h>

#include "ftune/json.h"
#include "tpl_int.h"

struct ft_chat {
    ft_tpl *def;      /* "default" or the only template */
    ft_tpl *tool_use; /* "tool_use", when the config names one */
    json_t *vars;     /* special tokens */
};

void ft_chat_free(ft_chat *c) {
    if (!c)
        return;
    ft_tpl_free(c->def);
    ft_tpl_free(c->tool_use);
    if (c->vars)
        json_decref(c->vars);
    ft_free(c);
}

static const char *token_str(const json_t *v) {
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_object(v) && json_is_string(json_object_get(v, "content")))
        return json_string_value(json_object_get(v, "content"));
    return NULL;
}

ft_status ft_chat_from_config(const char *name, const json_t *config, ft_chat **out, ft_err *err) {
    *out = NULL;
    if (!json_is_object(config))
        return FT_ERR(err, FT_ERR_INVALID, "%s: tokenizer_config.json is not a JSON object", name);
    const json_t *ct = json_object_get(config, "chat_template");
    if (!ct || json_is_null(ct))
        return FT_ERR(err, FT_ERR_NOT_FOUND, "%s: no chat_template in tokenizer_config.json", name);
    ft_chat *c = ft_calloc(1, sizeof *c);
    if (!c || !(c->vars = json_object()))
        return ft_free(c), FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_status s = FT_OK;
    char label[600];
    if (json_is_string(ct)) {
        snprintf(label, sizeof label, "%s:chat_template", name);
        s = ft_tpl_compile(label, json_string_value(ct), json_string_length(ct), &c->def, err);
    } else if (json_is_array(ct)) {
        size_t i;
        json_t *e;
        json_array_foreach(ct, i, e) {
            const char *tn = json_string_value(json_object_get(e, "name"));
            const json_t *src = json_object_get(e, "template");
            if (!tn || !json_is_string(src)) {
                s = FT_ERR(err, FT_ERR_INVALID, "%s: chat_template[%zu] needs \"name\" and \"template\" strings", name, i);
                break;
            }
            ft_tpl **slot = !strcmp(tn, "default") ? &c->def : !strcmp(tn, "tool_use") ? &c->tool_use : NULL;
            if (!slot)
                continue;
            snprintf(label, sizeof label, "%s:chat_template[%s]", name, tn);
            if ((s = ft_tpl_compile(label, json_string_value(src), json_string_length(src), slot, err)) != FT_OK)
                break;
        }
        if (s == FT_OK && !c->def && !c->tool_use)
            s = FT_ERR(err, FT_ERR_INVALID, "%s: chat_template list has neither a \"default\" nor a \"tool_use\" template",
                       name);
    } else
        s = FT_ERR(err, FT_ERR_INVALID, "%s: chat_template must be a string or a list of named templates", name);
    if (s != FT_OK) {
        ft_chat_free(c);
        return s;
    }
    /* every *_token with a value, as transformers' special_tokens_map passes them */
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)config, k, v) {
        size_t kl = strlen(k);
        if (kl > 6 && !strcmp(k + kl - 6, "_token") && token_str(v) && *token_str(v))
            json_object_set_new(c->vars, k, json_string(token_str(v)));
    }
    const json_t *add = json_object_get(config, "additional_special_tokens");
    if (json_is_array(add)) {
        json_t *l = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(add, i, e) if (token_str(e)) json_array_append_new(l, json_string(token_str(e)));
        json_object_set_new(c->vars, "additional_special_tokens", l);
    }
    *out = c;
    return FT_OK;
}

ft_status ft_chat_load(const char *path, ft_chat **out, ft_err *err) {
    *out = NULL;
    char *file = ft_path_is_dir(path) ? ft_path_join(path, "tokenizer_config.json") : ft_strdup(path);
    if (!file)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    json_t *cfg = NULL;
    char *data = NULL;
    size_t len = 0;
    ft_status s = ft_file_read_all(file, &data, &len, err);
    if (s == FT_OK) {
        /* integers as reals: configs hold values such as model_max_length = 1e30 written as an
         * integer, beyond 64 bits; only strings matter here */
        json_error_t je;
        cfg = json_loadb(data, len, JSON_DECODE_INT_AS_REAL, &je);
        if (!cfg)
            s = FT_ERR_AT(err, FT_ERR_PARSE, file, je.line, je.column, "invalid JSON: %s", je.text);
        ft_free(data);
    }
    if (s == FT_OK && ft_path_is_dir(path)) {
        /* newer Hub repositories keep the template beside the config, in chat_template.jinja,
         * which transformers prefers to the config's own chat_template */
        char *jf = ft_path_join(path, "chat_template.jinja");
        char *src = NULL;
        size_t sl = 0;
        if (jf && ft_path_exists(jf) && ft_file_read_all(jf, &src, &sl, err) == FT_OK) {
            json_t *t = json_stringn(src, sl);
            if (!t)
                s = FT_ERR_AT(err, FT_ERR_PARSE, jf, 0, 0, "chat_template.jinja is not valid UTF-8");
            else
                json_object_set_new(cfg, "chat_template", t);
            ft_free(src);
        }
        ft_free(jf);
    }
    if (s == FT_OK)
        s = ft_chat_from_config(file, cfg, out, err);
    if (cfg)
        json_decref(cfg);
    ft_free(file);
    return s;
}

ft_status ft_chat_from_template(const char *template_src, const char *bos_token, const char *eos_token, ft_chat **out,
                                ft_err *err) {
    json_t *cfg = json_pack("{s:s}", "chat_template", template_src);
    if (!cfg)
        return FT_ERR(err, FT_ERR_INVALID, "chat template is not valid UTF-8");
    if (bos_token)
        json_object_set_new(cfg, "bos_token", json_string(bos_token));
    if (eos_token)
        json_object_set_new(cfg, "eos_token", json_string(eos_token));
    ft_status s = ft_chat_from_config("chat_template", cfg, out, err);
    json_decref(cfg);
    return s;
}

const char *ft_chat_token(const ft_chat *c, const char *name) {
    return json_string_value(json_object_get(c->vars, name));
}

ft_status ft_chat_render(const ft_chat *c, const json_t *messages, const json_t *tools, bool add_generation_prompt,
                         const json_t *extra, const ft_tpl_render_params *params, ft_buf *out, ft_err *err) {
    if (!json_is_array(messages))
        return FT_ERR(err, FT_ERR_INVALID, "messages must be a JSON array");
    bool has_tools = tools && !json_is_null(tools);
    const ft_tpl *t = (has_tools && c->tool_use) || !c->def ? c->tool_use : c->def;
    json_t *vars = json_deep_copy(c->vars);
    if (!vars)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (json_is_object(extra))
        json_object_update(vars, (json_t *)extra);
    json_object_set(vars, "messages", (json_t *)messages);
    json_object_set_new(vars, "tools", has_tools ? json_incref((json_t *)tools) : json_null());
    if (!json_object_get(vars, "documents"))
        json_object_set_new(vars, "documents", json_null());
    json_object_set_new(vars, "add_generation_prompt", json_boolean(add_generation_prompt));
    ft_status s = ft_tpl_render(t, vars, params, out, err);
    json_decref(vars);
    return s;
}

/* ---------------------------------------------------------------- training spans */

ft_chat_mask_params ft_chat_default_mask_params(void) {
    return (ft_chat_mask_params){.last_assistant = false, .render = ft_tpl_default_render_params()};
}

static ft_status render_prefix(const ft_chat *c, const json_t *messages, size_t k, const json_t *tools,
                               const json_t *extra, bool agp, const ft_tpl_render_params *p, ft_buf *out,
                               ft_err *err) {
    json_t *pre = json_array();
    for (size_t i = 0; i < k; i++)
        json_array_append(pre, json_array_get(messages, i));
    out->len = 0;
    ft_status s = ft_chat_render(c, pre, tools, agp, extra, p, out, err);
    json_decref(pre);
    if (s != FT_OK)
        ft_err_prefix(err, "rendering the first %zu message(s)", k);
    return s;
}

static size_t common_prefix(const char *a, size_t an, const char *b, size_t bn) {
    size_t i = 0;
    while (i < an && i < bn && a[i] == b[i])
        i++;
    return i;
}

/* Cut a span that ran into the next turn's header: drop its longest tail x that also opens the
 * conversation's first header (x immediately before the first role name the text shows), the
 * role-independent start of a header such as "<|start_header_id|>" or "<|im_start|>". */
/* The role-independent opening of a header ("<|start_header_id|>", "<|im_start|>", "<"): what
 * the render has before the first role name it shows, less a leading BOS. False if none. */
static bool header_opener(const ft_buf *text, const json_t *messages, const char *bos, size_t *o_start,
                          size_t *o_end) {
    static const char *const extra_roles[] = {"assistant", "user", "model", "system"};
    size_t first_role = SIZE_MAX;
    size_t nroles = json_array_size(messages) + 4;
    for (size_t ri = 0; ri < nroles; ri++) {
        const char *role =
            ri < 4 ? extra_roles[ri] : json_string_value(json_object_get(json_array_get(messages, ri - 4), "role"));
        if (!role || !*role)
            continue;
        const char *hit = memmem(text->data, text->len, role, strlen(role));
        if (hit && (size_t)(hit - text->data) < first_role)
            first_role = (size_t)(hit - text->data);
    }
    if (first_role == SIZE_MAX)
        return false;
    size_t bl = bos ? strlen(bos) : 0;
    *o_start = (bl && bl <= first_role && !memcmp(text->data, bos, bl)) ? bl : 0;
    *o_end = first_role;
    return *o_end > *o_start;
}

/* Cut a span that ran into the next turn's header: drop its longest tail that is a tail of the
 * header opener. */
static size_t trim_header_start(const ft_buf *text, const json_t *messages, const char *bos, size_t from,
                                size_t end) {
    size_t os, oe;
    if (!header_opener(text, messages, bos, &os, &oe))
        return end;
    size_t ol = oe - os;
    for (size_t cut = end - from > ol ? end - ol : from; cut < end; cut++) {
        size_t xl = end - cut;
        if (!memcmp(text->data + oe - xl, text->data + cut, xl))
            return cut;
    }
    return end;
}

/* Where `content` (or its whitespace-trimmed form, for templates that |trim) starts in
 * s[from..n); SIZE_MAX if absent. *clen gets the length found. */
static size_t find_content(const char *s, size_t n, size_t from, const char *content, size_t *clen) {
    size_t cl = strlen(content);
    const char *hit = from <= n ? memmem(s + from, n - from, content, cl) : NULL;
    if (hit) {
        *clen = cl;
        return (size_t)(hit - s);
    }
    /* Python's str.strip(): Unicode whitespace (templates |trim content) */
    size_t b = 0, e = cl;
    while (b < e && py_isspace(u8_cp(content, cl, b)))
        b = u8_next(content, cl, b);
    while (e > b) {
        size_t st = e - 1;
        while (st > b && ((unsigned char)content[st] & 0xC0) == 0x80)
            st--;
        if (!py_isspace(u8_cp(content, e, st)))
            break;
        e = st;
    }
    if (e - b == 0)
        return SIZE_MAX;
    hit = memmem(s + from, n - from, content + b, e - b);
    if (!hit)
        return SIZE_MAX;
    *clen = e - b;
    return (size_t)(hit - s);
}

ft_status ft_chat_spans(const ft_chat *c, const json_t *messages, const json_t *tools, const json_t *extra,
                        const ft_chat_mask_params *params, ft_buf *text, ft_chat_span **spans, size_t *n_spans,
                        ft_err *err) {
    ft_chat_mask_params mp = params ? *params : ft_chat_default_mask_params();
    *spans = NULL;
    *n_spans = 0;
    if (!json_is_array(messages))
        return FT_ERR(err, FT_ERR_INVALID, "messages must be a JSON array");
    size_t n = json_array_size(messages);
    text->len = 0;
    /* buffers always have storage, so that offsets into an empty render stay defined */
    if (ft_buf_reserve(text, 1) != FT_OK)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    FT_TRY(ft_chat_render(c, messages, tools, false, extra, &mp.render, text, err));
    size_t last = SIZE_MAX;
    for (size_t k = 0; k < n; k++) {
        const char *role = json_string_value(json_object_get(json_array_get(messages, k), "role"));
        if (role && !strcmp(role, "assistant"))
            last = k;
    }
    ft_chat_span *out = ft_calloc(n + 1, sizeof *out);
    ft_buf P = {0}, Q = {0};
    ft_status s = out && ft_buf_reserve(&P, 1) == FT_OK && ft_buf_reserve(&Q, 1) == FT_OK
                      ? FT_OK
                      : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    size_t ns = 0, prev_end = 0;
    const char *eos = ft_chat_token(c, "eos_token");
    for (size_t k = 0; k < n && s == FT_OK; k++) {
        const json_t *msg = json_array_get(messages, k);
        const char *role = json_string_value(json_object_get(msg, "role"));
        if (!role || strcmp(role, "assistant") || (mp.last_assistant && k != last))
            continue;
        if ((s = render_prefix(c, messages, k, tools, extra, true, &mp.render, &P, err)) != FT_OK ||
            (s = render_prefix(c, messages, k + 1, tools, extra, false, &mp.render, &Q, err)) != FT_OK)
            break;
        /* the context the model is given: what the prefix with a generation prompt and the
         * prefix with this turn share, and the full render must agree on it */
        size_t start = common_prefix(P.data, P.len, Q.data, Q.len);
        size_t q_text = common_prefix(Q.data, Q.len, text->data, text->len);
        const char *content = json_string_value(json_object_get(msg, "content"));
        if (!content)
            content = "";
        /* reasoning templates (Qwen3, DeepSeek-R1) keep or move only what follows </think> */
        const char *after_think = strstr(content, "</think>");
        while (after_think && strstr(after_think + 1, "</think>"))
            after_think = strstr(after_think + 1, "</think>");
        size_t clen = 0, qc = find_content(Q.data, Q.len, start, content, &clen);
        if (qc == SIZE_MAX && after_think && after_think[8])
            qc = find_content(Q.data, Q.len, start, after_think + 8, &clen);
        if (qc == SIZE_MAX && !*content) {
            qc = start;
            clen = 0;
        }
        /* The context must end after the previous message: when the prefix render put it
         * elsewhere (Mistral Nemo writes the system prompt into the last user turn only), start
         * after the previous message's content in Q plus the generation prompt that P has after
         * it ("[/INST]") when Q has the same there. */
        const char *prev = k ? json_string_value(json_object_get(json_array_get(messages, k - 1), "content")) : NULL;
        if (prev && *prev && qc != SIZE_MAX) {
            size_t pl = 0, pq = SIZE_MAX, from = 0, hit;
            while ((hit = find_content(Q.data, qc, from, prev, &pl)) != SIZE_MAX && hit + pl <= qc) {
                pq = hit; /* the last occurrence before the content */
                from = hit + 1;
            }
            if (pq != SIZE_MAX && pq + pl > start) {
                size_t ppl = 0, pp = SIZE_MAX;
                from = 0;
                while ((hit = find_content(P.data, P.len, from, prev, &ppl)) != SIZE_MAX) {
                    pp = hit;
                    from = hit + 1;
                }
                size_t g = pp != SIZE_MAX ? P.len - (pp + ppl) : 0;
                start = pq + pl;
                if (g && start + g <= qc && !memcmp(Q.data + start, P.data + pp + ppl, g))
                    start += g;
            }
        }
        size_t end = 0, content_end = qc != SIZE_MAX ? qc + clen : start;
        bool done = false;
        if (start <= q_text && start >= prev_end) {
            if (q_text == Q.len) {
                end = Q.len; /* Q is a prefix of the full render: the common case */
                done = true;
            } else if (qc != SIZE_MAX) {
                /* The template writes this turn differently when it is not the last one (an
                 * end-of-text appended when no generation prompt follows, a header for the next
                 * turn written in advance). The text between the context and the content in the
                 * full render must be a prefix of the turn header in Q; the span then runs over
                 * the content and what follows it in both renders, less the opening of the next
                 * turn's header. */
                size_t tlen = clen;
                size_t tc = *content ? find_content(text->data, text->len, start, content, &tlen) : start;
                if (tc != SIZE_MAX && tc - start <= qc - start && !memcmp(text->data + start, Q.data + start, tc - start)) {
                    size_t ce_q = qc + clen, ce_t = tc + tlen;
                    end = ce_t + common_prefix(Q.data + ce_q, Q.len - ce_q, text->data + ce_t, text->len - ce_t);
                    end = trim_header_start(text, messages, ft_chat_token(c, "bos_token"), ce_t, end);
                    content_end = ce_t;
                    done = true;
                }
            }
        }
        if (!done) {
            /* Not prefix-stable here (Qwen3 drops the thinking block of earlier turns, Mistral
             * Nemo moves the system prompt into the last user turn): find the content in the
             * full render after the previous message's content and take it plus what follows it
             * both there and in Q (the end-of-turn), less the next header's opening. */
            size_t base = prev_end, tlen = 0;
            size_t pl, pc = prev && *prev ? find_content(text->data, text->len, base, prev, &pl) : SIZE_MAX;
            if (pc != SIZE_MAX)
                base = pc + pl;
            size_t tc = *content ? find_content(text->data, text->len, base, content, &tlen) : SIZE_MAX;
            if (tc == SIZE_MAX && after_think && after_think[8]) /* reasoning templates keep what follows </think> */
                tc = find_content(text->data, text->len, base, after_think + 8, &tlen);
            if (tc == SIZE_MAX || qc == SIZE_MAX) {
                s = FT_ERR(err, FT_ERR_INVALID,
                           "chat template is not prefix-stable at message %zu (an assistant turn): later turns change "
                           "how it renders and its content cannot be located in the full render",
                           k);
                break;
            }
            size_t ce_q = qc + clen, ce_t = tc + tlen;
            start = tc;
            end = ce_t + common_prefix(Q.data + ce_q, Q.len - ce_q, text->data + ce_t, text->len - ce_t);
            end = trim_header_start(text, messages, ft_chat_token(c, "bos_token"), ce_t, end);
            content_end = ce_t;
            q_text = 0; /* no eos extension below */
        }
        if (end == Q.len && q_text == Q.len) {
            /* a template that writes the end-of-turn only when another turn follows: take the
             * eos token (and one newline) that the full text has right there */
            size_t el = eos ? strlen(eos) : 0;
            if (el && (Q.len < el || memcmp(Q.data + Q.len - el, eos, el) != 0) && text->len >= end + el &&
                !memcmp(text->data + end, eos, el)) {
                end += el;
                if (end < text->len && text->data[end] == '\n')
                    end++;
            }
        }
        /* a template that writes the next assistant header in advance (Llama 3's first
         * revision): drop a tail that repeats the header this turn itself got, role name and all */
        size_t os, oe;
        if (end > content_end && content_end >= start &&
            header_opener(text, messages, ft_chat_token(c, "bos_token"), &os, &oe)) {
            size_t L = 0;
            /* headers are short; bounding L keeps adversarial templates linear */
            while (L < end - content_end && L < P.len && L < 4096 && text->data[end - 1 - L] == P.data[P.len - 1 - L])
                L++;
            for (; L >= oe - os; L--) {
                const char *tail = text->data + end - L;
                if (!memcmp(tail, text->data + os, oe - os) && memmem(tail, L, role, strlen(role))) {
                    end -= L;
                    break;
                }
            }
        }
        if (end < start)
            end = start;
        out[ns++] = (ft_chat_span){.start = start, .end = end, .message = k};
        prev_end = end;
    }
    ft_buf_free(&P);
    ft_buf_free(&Q);
    if (s != FT_OK) {
        ft_free(out);
        return s;
    }
    *spans = out;
    *n_spans = ns;
    return FT_OK;
}
