/* cli/cmd_chat_template.c: `ftune chat-template --model M [--add-generation-prompt] [--mask]
 * [--jsonl] [FILE]` (issue #3 item 8): render conversations {"messages": [...], "tools"?} with a
 * model's chat template. M needs tokenizer_config.json (and tokenizer.json for --mask).
 *   default   one JSON object from FILE or stdin -> the rendered text
 *   --json    {"text": ...} (with --mask also "spans", "ids", "mask", "trainable")
 *   --jsonl   one line per input line: {"text": ...} or {"error": ...}; processing goes on after
 *             an error; a line's own "add_generation_prompt" and "tools" override the flags
 *   --mask    mark trainable spans: wrapped in ⟦ ⟧ (or green on a terminal) in text output,
 *             "spans" [[start, end], ...] (byte offsets) plus token "ids"/"mask" in JSON */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ftune/hf.h"
#include "ftune/json.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"

static const char SYNOPSIS[] = "--model M [--add-generation-prompt] [--mask] [--last-assistant] [--jsonl] [--json] [FILE]";

static const cli_opt OPTS[] = {
    {"model", CLI_STR, "M: folder with tokenizer_config.json (and tokenizer.json for --mask), or a model name "
                       "(registry, Hugging Face cache)"},
    {"add-generation-prompt", CLI_FLAG, "end with the assistant header (for generation)"},
    {"mask", CLI_FLAG, "mark the trainable spans (assistant content and end-of-turn); JSON adds ids and mask"},
    {"last-assistant", CLI_FLAG, "with --mask: train only the final assistant message"},
    {"jsonl", CLI_FLAG, "one conversation per input line, one JSON result per output line"},
    {NULL, 0, NULL},
};

typedef struct ctx {
    ft_chat *chat;
    ft_tok *tok;
    bool agp, mask, last_assistant, json, tty;
} ctx;

/* Render one conversation object into a JSON result ({"text"...} or {"error": ...}). Returns
 * the status; on failure *result holds {"error": msg}. */
static ft_status process(const ctx *c, const json_t *conv, const char *where, json_t **result, ft_buf *text,
                         ft_chat_span **spans, size_t *n_spans, ft_err *err) {
    *spans = NULL;
    *n_spans = 0;
    text->len = 0;
    ft_status s = FT_OK;
    const json_t *messages = json_object_get(conv, "messages");
    if (!json_is_object(conv) || !json_is_array(messages))
        s = FT_ERR_AT(err, FT_ERR_INVALID, where, 0, 0, "expected an object {\"messages\": [...]}");
    bool agp = c->agp;
    const json_t *jagp = json_is_object(conv) ? json_object_get(conv, "add_generation_prompt") : NULL;
    if (json_is_boolean(jagp))
        agp = json_is_true(jagp);
    const json_t *tools = json_is_object(conv) ? json_object_get(conv, "tools") : NULL;
    json_t *extra = NULL;
    if (json_is_object(conv)) {
        /* other members (enable_thinking, date_string, documents ...) become template variables */
        extra = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)conv, k, v) if (strcmp(k, "messages") && strcmp(k, "tools") &&
                                                      strcmp(k, "add_generation_prompt"))
            json_object_set(extra, k, v);
    }
    ft_chat_tokens toks = {0};
    if (s == FT_OK) {
        if (c->mask) {
            ft_chat_mask_params mp = ft_chat_default_mask_params();
            mp.last_assistant = c->last_assistant;
            if (agp)
                s = FT_ERR_AT(err, FT_ERR_INVALID, where, 0, 0,
                              "--mask renders conversations for training: add_generation_prompt must be false");
            else if (c->tok)
                s = ft_chat_tokenize(c->chat, c->tok, messages, tools, extra, &mp, &toks, text, spans, n_spans, err);
            else
                s = ft_chat_spans(c->chat, messages, tools, extra, &mp, text, spans, n_spans, err);
        } else
            s = ft_chat_render(c->chat, messages, tools, agp, extra, NULL, text, err);
    }
    if (extra)
        json_decref(extra);
    if (s != FT_OK) {
        char msg[1600];
        ft_err_format(err, msg, sizeof msg);
        *result = json_pack("{s:s}", "error", msg);
        return s;
    }
    *result = json_object();
    json_object_set_new(*result, "text", json_stringn(text->data ? text->data : "", text->len));
    if (c->mask) {
        json_t *sp = json_array();
        for (size_t i = 0; i < *n_spans; i++)
            json_array_append_new(sp, json_pack("[I,I]", (json_int_t)(*spans)[i].start, (json_int_t)(*spans)[i].end));
        json_object_set_new(*result, "spans", sp);
        if (c->tok) {
            json_t *ids = json_array(), *mask = json_array();
            for (size_t i = 0; i < toks.n; i++) {
                json_array_append_new(ids, json_integer(toks.ids[i]));
                json_array_append_new(mask, json_integer(toks.mask[i]));
            }
            json_object_set_new(*result, "ids", ids);
            json_object_set_new(*result, "mask", mask);
            json_object_set_new(*result, "trainable", json_integer((json_int_t)toks.n_trainable));
        }
    }
    ft_chat_tokens_free(&toks);
    return FT_OK;
}

static void print_text(const ctx *c, const ft_buf *text, const ft_chat_span *spans, size_t n_spans) {
    const char *open = c->tty ? "\x1b[32m" : "\xe2\x9f\xa6", *close = c->tty ? "\x1b[0m" : "\xe2\x9f\xa7";
    size_t pos = 0;
    for (size_t i = 0; i < n_spans; i++) {
        fwrite(text->data + pos, 1, spans[i].start - pos, stdout);
        fputs(open, stdout);
        fwrite(text->data + spans[i].start, 1, spans[i].end - spans[i].start, stdout);
        fputs(close, stdout);
        pos = spans[i].end;
    }
    if (text->len > pos)
        fwrite(text->data + pos, 1, text->len - pos, stdout);
    if (!text->len || text->data[text->len - 1] != '\n' || (n_spans && spans[n_spans - 1].end == text->len))
        fputc('\n', stdout);
}

int cmd_chat_template(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&a, "chat-template", SYNOPSIS, OPTS, argc, argv);
    if (rc)
        return rc < 0 ? CLI_EXIT_OK : rc;
    ctx c = {.agp = cli_has(&a, "add-generation-prompt"),
             .mask = cli_has(&a, "mask"),
             .last_assistant = cli_has(&a, "last-assistant"),
             .json = cli_has(&a, "json"),
             .tty = isatty(1)};
    bool jsonl = cli_has(&a, "jsonl");
    const char *model = cli_str(&a, "model", NULL);
    if (!model) {
        bool dir = a.n_pos == 1 && ft_path_is_dir(a.pos[0]);
        int urc = dir ? cli_usage_error("chat-template", "--model",
                                        "required: the model folder (with tokenizer_config.json) is given with "
                                        "--model; the argument \"%s\" is the conversations FILE",
                                        a.pos[0])
                      : cli_usage_error("chat-template", "--model",
                                        "required: a model folder with tokenizer_config.json");
        cli_args_free(&a);
        return urc;
    }
    if (a.n_pos > 1) {
        cli_args_free(&a);
        return cli_usage_error("chat-template", "FILE", "at most one input file");
    }
    if (c.last_assistant && !c.mask) {
        cli_args_free(&a);
        return cli_usage_error("chat-template", "--last-assistant", "only with --mask");
    }
    ft_err err;
    /* a folder as given; otherwise a model name resolved as every command resolves it (registry, HF cache) */
    char *resolved = NULL;
    if (!ft_path_exists(model)) {
        if (ft_hf_resolve(model, &resolved, &err) != FT_OK) {
            cli_args_free(&a);
            return cli_report("chat-template", &err);
        }
        model = resolved;
    }
    if (ft_chat_load(model, &c.chat, &err) != FT_OK) {
        ft_free(resolved);
        cli_args_free(&a);
        return cli_report("chat-template", &err);
    }
    if (c.mask) {
        char *tj = ft_path_is_dir(model) ? ft_path_join(model, "tokenizer.json") : NULL;
        if (tj && ft_path_exists(tj) && ft_tok_load(model, &c.tok, &err) != FT_OK) {
            ft_free(tj);
            ft_free(resolved);
            ft_chat_free(c.chat);
            cli_args_free(&a);
            return cli_report("chat-template", &err);
        }
        if (!c.tok && (c.json || jsonl))
            fprintf(stderr, "ftune chat-template: no tokenizer.json in %s: spans only, no ids/mask\n", model);
        ft_free(tj);
    }
    ft_free(resolved);
    model = NULL;
    const char *path = a.n_pos ? a.pos[0] : NULL;
    FILE *in = cli_open_input(path, &err);
    if (!in) {
        ft_chat_free(c.chat);
        ft_tok_free(c.tok);
        cli_args_free(&a);
        return cli_report("chat-template", &err);
    }
    const char *where = path ? path : "<stdin>";
    rc = CLI_EXIT_OK;
    ft_buf text = {0};
    ft_chat_span *spans = NULL;
    size_t n_spans = 0;
    if (jsonl) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        int64_t lineno = 0;
        bool any_error = false;
        while ((len = getline(&line, &cap, in)) >= 0) {
            lineno++;
            const char *lp;
            size_t l;
            if (!cli_jsonl_line(line, (size_t)len, lineno, &lp, &l))
                continue;
            json_t *conv = NULL, *res = NULL;
            char label[600];
            snprintf(label, sizeof label, "%s:%lld", where, (long long)lineno);
            if (ft_json_load_buf(where, lp, l, &conv, &err) != FT_OK) {
                err.line = lineno;
                char msg[1600];
                ft_err_format(&err, msg, sizeof msg);
                res = json_pack("{s:s}", "error", msg);
                any_error = true;
            } else {
                if (process(&c, conv, label, &res, &text, &spans, &n_spans, &err) != FT_OK)
                    any_error = true;
                json_decref(conv);
            }
            char *o = json_dumps(res, JSON_COMPACT);
            if (o) {
                puts(o);
                free(o);
            }
            json_decref(res);
            ft_free(spans);
            spans = NULL;
        }
        free(line);
        rc = any_error ? CLI_EXIT_FAIL : CLI_EXIT_OK;
    } else {
        ft_buf all = {0};
        char chunk[65536];
        size_t got;
        while ((got = fread(chunk, 1, sizeof chunk, in)) > 0)
            ft_buf_append(&all, chunk, got);
        json_t *conv = NULL, *res = NULL;
        if (ft_json_load_buf(where, all.data ? all.data : "", all.len, &conv, &err) != FT_OK) {
            rc = cli_report("chat-template", &err);
        } else {
            if (process(&c, conv, where, &res, &text, &spans, &n_spans, &err) != FT_OK) {
                rc = cli_report("chat-template", &err);
            } else if (c.json) {
                char *o = json_dumps(res, JSON_COMPACT);
                puts(o ? o : "{}");
                free(o);
            } else
                print_text(&c, &text, spans, c.mask ? n_spans : 0);
            json_decref(conv);
            json_decref(res);
        }
        ft_buf_free(&all);
        ft_free(spans);
    }
    if (in != stdin)
        fclose(in);
    ft_buf_free(&text);
    ft_chat_free(c.chat);
    ft_tok_free(c.tok);
    cli_args_free(&a);
    return rc;
}
