/* data/validate.c: validation of training data (SPEC §3): every record is checked, every
 * problem is reported with file:line:column (the column of the offending value or key), and the
 * summary counts records, tokens, trainable tokens, truncated and untrainable samples.
 *
 * jansson decides what is JSON; when a record has a problem the locator (locate.c) finds the
 * column. Records are read in batches by one thread and checked and tokenized by all of them;
 * results are merged in file order, so the report never depends on thread timing. */
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

/* ---------------------------------------------------------------- one record's checks */

typedef struct chk {
    const char *file;
    int64_t line, line_off;
    const char *s;
    size_t n;
    json_loc loc;
    int built; /* 0: not yet, 1: ok, -1: the scanner failed (columns fall back to 1) */
    ft_data_issue_fn fn;
    void *ctx;
    int64_t n_err, n_warn;
} chk;

static void emit(chk *c, ft_issue_level lv, int64_t pos, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void emit(chk *c, ft_issue_level lv, int64_t pos, const char *fmt, ...) {
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (pos < 0)
        pos = 0;
    ft_data_issue is = {lv, c->file, c->line, pos + 1, c->line_off >= 0 ? c->line_off + pos : -1, msg, -1};
    if (c->fn)
        c->fn(c->ctx, &is);
    if (lv == FT_ISSUE_ERROR)
        c->n_err++;
    else
        c->n_warn++;
}

static const json_loc *L(chk *c) {
    if (!c->built)
        c->built = json_loc_build(&c->loc, c->s, c->n) ? 1 : -1;
    return c->built > 0 ? &c->loc : NULL;
}
static int32_t mem(chk *c, int32_t node, const char *key) {
    const json_loc *l = L(c);
    return l ? json_loc_member(l, node, key) : -1;
}
static int32_t kid(chk *c, int32_t node, size_t i) {
    const json_loc *l = L(c);
    return l ? json_loc_child(l, node, (int64_t)i) : -1;
}
/* Offset of a node's value / its key (object members). */
static int64_t vpos(chk *c, int32_t node) {
    const json_loc *l = L(c);
    return l && node >= 0 ? l->nodes[node].start : 0;
}
static int64_t kpos(chk *c, int32_t node) {
    const json_loc *l = L(c);
    return l && node >= 0 && l->nodes[node].key_start >= 0 ? l->nodes[node].key_start : vpos(c, node);
}

static const char *jtype(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

static bool blank_str(const json_t *v) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return false;
    return true;
}

/* Warn about keys outside `allowed` (NULL-terminated). `node` locates the object. */
static void extra_keys(chk *c, const json_t *o, int32_t node, const char *const *allowed, const char *where) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            ok = ok || !strcmp(k, *a);
        if (!ok)
            emit(c, FT_ISSUE_WARNING, kpos(c, mem(c, node, k)), "%sunexpected key \"%s\" (ignored)", where, k);
    }
}

static void check_ift(chk *c, const json_t *o) {
    if (!json_is_object(o)) {
        emit(c, FT_ISSUE_ERROR, vpos(c, 0), "expected a JSON object {\"prompt\": ..., \"response\": ...}, found %s",
             jtype(o));
        return;
    }
    json_t *pr = json_object_get(o, "prompt"), *re = json_object_get(o, "response"),
           *co = json_object_get(o, "completion");
    bool chat = json_object_get(o, "messages") != NULL;
    if (!pr && chat && !re && !co) { /* a chat record: one error says it all */
        emit(c, FT_ISSUE_ERROR, vpos(c, 0),
             "missing \"prompt\" (this record has \"messages\": chat data needs --task-type CHAT_COMPLETION)");
        return;
    }
    if (!pr)
        emit(c, FT_ISSUE_ERROR, vpos(c, 0), "missing \"prompt\"");
    else if (!json_is_string(pr))
        emit(c, FT_ISSUE_ERROR, vpos(c, mem(c, 0, "prompt")), "\"prompt\" must be a string, found %s", jtype(pr));
    else if (blank_str(pr))
        emit(c, FT_ISSUE_WARNING, vpos(c, mem(c, 0, "prompt")), "\"prompt\" is empty");
    if (re && co) {
        emit(c, FT_ISSUE_ERROR, kpos(c, mem(c, 0, "completion")),
             "both \"response\" and \"completion\": give only one of them");
    } else if (!re && !co) {
        emit(c, FT_ISSUE_ERROR, vpos(c, 0), "missing \"response\" (or \"completion\")");
    } else {
        const char *key = re ? "response" : "completion";
        json_t *r = re ? re : co;
        if (!json_is_string(r))
            emit(c, FT_ISSUE_ERROR, vpos(c, mem(c, 0, key)), "\"%s\" must be a string, found %s", key, jtype(r));
        else if (blank_str(r))
            emit(c, FT_ISSUE_WARNING, vpos(c, mem(c, 0, key)), "\"%s\" is empty", key);
    }
    static const char *const allowed[] = {"prompt", "response", "completion", NULL};
    extra_keys(c, o, 0, allowed, "");
}

/* CPT rows of table sources: {"text": "..."}, a non-empty string. */
static void check_text_value(chk *c, const json_t *o) {
    json_t *t = json_object_get(o, "text");
    if (!json_is_string(t))
        emit(c, FT_ISSUE_ERROR, 0, "\"text\" must be a string, found %s", t ? jtype(t) : "nothing");
    else if (json_string_length(t) == 0)
        emit(c, FT_ISSUE_ERROR, 0, "empty \"text\"");
}

static bool known_role(const char *r) {
    return !strcmp(r, "system") || !strcmp(r, "user") || !strcmp(r, "assistant");
}

static void check_chat(chk *c, const json_t *o) {
    if (!json_is_object(o)) {
        emit(c, FT_ISSUE_ERROR, vpos(c, 0), "expected a JSON object {\"messages\": [...]}, found %s", jtype(o));
        return;
    }
    json_t *m = json_object_get(o, "messages");
    static const char *const top_allowed[] = {"messages", NULL};
    if (!m) {
        emit(c, FT_ISSUE_ERROR, vpos(c, 0), "missing \"messages\"%s",
             json_object_get(o, "prompt")
                 ? " (this record has \"prompt\": instruction data needs --task-type INSTRUCTION_FINETUNE)"
                 : "");
        return;
    }
    extra_keys(c, o, 0, top_allowed, "");
    if (!json_is_array(m)) {
        emit(c, FT_ISSUE_ERROR, vpos(c, mem(c, 0, "messages")),
             "\"messages\" must be a list of {\"role\", \"content\"} objects, found %s", jtype(m));
        return;
    }
    size_t n = json_array_size(m);
    if (n == 0) {
        emit(c, FT_ISSUE_ERROR, vpos(c, mem(c, 0, "messages")), "\"messages\" is empty");
        return;
    }
#define MSG_NODE (kid(c, mem(c, 0, "messages"), i))
    static const char *const msg_allowed[] = {"role", "content", NULL};
    const char *prev = NULL;
    bool any_assistant = false;
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(m, i);
        if (!json_is_object(msg)) {
            emit(c, FT_ISSUE_ERROR, vpos(c, MSG_NODE), "messages[%zu] must be an object {\"role\", \"content\"}, found %s",
                 i, jtype(msg));
            prev = NULL;
            continue;
        }
        json_t *role = json_object_get(msg, "role"), *content = json_object_get(msg, "content");
        const char *r = NULL;
        if (!role) {
            emit(c, FT_ISSUE_ERROR, vpos(c, MSG_NODE), "messages[%zu] has no \"role\"", i);
        } else if (!json_is_string(role)) {
            emit(c, FT_ISSUE_ERROR, vpos(c, mem(c, MSG_NODE, "role")), "messages[%zu].role must be a string, found %s",
                 i, jtype(role));
        } else if (!known_role(json_string_value(role))) {
            emit(c, FT_ISSUE_ERROR, vpos(c, mem(c, MSG_NODE, "role")),
                 "messages[%zu]: unknown role \"%.64s\" (expected system, user or assistant)", i,
                 json_string_value(role));
        } else {
            r = json_string_value(role);
            if (!strcmp(r, "system") && i > 0)
                emit(c, FT_ISSUE_ERROR, vpos(c, mem(c, MSG_NODE, "role")),
                     "messages[%zu]: a system message may only come first", i);
            else if (prev && !strcmp(prev, r))
                emit(c, FT_ISSUE_ERROR, vpos(c, mem(c, MSG_NODE, "role")),
                     "messages[%zu] and messages[%zu] are both \"%s\": user and assistant must alternate", i - 1, i,
                     r);
            any_assistant = any_assistant || !strcmp(r, "assistant");
        }
        if (!content)
            emit(c, FT_ISSUE_ERROR, vpos(c, MSG_NODE), "messages[%zu] has no \"content\"", i);
        else if (!json_is_string(content))
            emit(c, FT_ISSUE_ERROR, vpos(c, mem(c, MSG_NODE, "content")),
                 "messages[%zu].content must be a string, found %s", i, jtype(content));
        else if (blank_str(content))
            emit(c, FT_ISSUE_WARNING, vpos(c, mem(c, MSG_NODE, "content")), "messages[%zu].content is empty", i);
        char where[48];
        snprintf(where, sizeof where, "messages[%zu]: ", i);
        {
            const char *k;
            json_t *v;
            json_object_foreach(msg, k, v) {
                bool ok = false;
                for (const char *const *a = msg_allowed; *a; a++)
                    ok = ok || !strcmp(k, *a);
                if (!ok)
                    emit(c, FT_ISSUE_WARNING, kpos(c, mem(c, MSG_NODE, k)), "%sunexpected key \"%s\" (ignored)",
                         where, k);
            }
        }
        prev = r;
    }
    if (!any_assistant) {
        emit(c, FT_ISSUE_ERROR, vpos(c, mem(c, 0, "messages")), "no assistant message: nothing to train on");
    } else {
        size_t i = n - 1;
        json_t *last = json_array_get(m, i), *role = json_is_object(last) ? json_object_get(last, "role") : NULL;
        if (json_is_string(role) && strcmp(json_string_value(role), "assistant") && known_role(json_string_value(role)))
            emit(c, FT_ISSUE_ERROR, vpos(c, mem(c, MSG_NODE, "role")),
                 "the last message must be from the assistant, not \"%s\"", json_string_value(role));
    }
#undef MSG_NODE
}

static void check_utf8(chk *c, const char *s, size_t n, bool whole_file, int64_t base_off) {
    size_t ok = ft_utf8_valid_prefix(s, n);
    if (ok == n)
        return;
    if (whole_file) { /* a .txt document: find line and column of the bad byte */
        int64_t line = 1, ls = 0;
        for (size_t i = 0; i < ok; i++)
            if (s[i] == '\n') {
                line++;
                ls = (int64_t)i + 1;
            }
        c->line = line;
        c->line_off = base_off + ls;
        emit(c, FT_ISSUE_ERROR, (int64_t)ok - ls, "not UTF-8: invalid byte 0x%02X at byte offset %lld",
             (unsigned char)s[ok], (long long)(base_off + (int64_t)ok));
    } else {
        emit(c, FT_ISSUE_ERROR, (int64_t)ok, "invalid UTF-8: byte 0x%02X at byte offset %lld",
             (unsigned char)s[ok], (long long)(c->line_off >= 0 ? c->line_off + (int64_t)ok : (int64_t)ok));
    }
}

/* Parse and check one JSON line. *parsed gets the value when it parsed (even with errors). */
static int64_t check_json_line(chk *c, ft_task_type task, json_t **parsed) {
    *parsed = NULL;
    check_utf8(c, c->s, c->n, false, 0);
    if (c->n_err)
        return c->n_err;
    json_error_t je;
    json_t *v = json_loadb(c->s, c->n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!v) {
        int64_t pos = strstr(je.text, "near end of file") ? (int64_t)c->n
                                                            : json_loc_token_start(c->s, c->n, je.position);
        if (!strncmp(je.text, "invalid Unicode", 15))
            emit(c, FT_ISSUE_ERROR, pos, "invalid JSON: a string holds a lone surrogate (%s)", je.text);
        else
            emit(c, FT_ISSUE_ERROR, pos, "invalid JSON: %s", je.text);
        return c->n_err;
    }
    *parsed = v;
    if (task == FT_TASK_CHAT_COMPLETION)
        check_chat(c, v);
    else
        check_ift(c, v);
    return c->n_err;
}

int64_t ft_data_check_record(ft_task_type task, const char *file, int64_t line, const char *data, size_t len,
                             json_t **parsed, ft_data_issue_fn fn, void *ctx) {
    chk c = {.file = file, .line = line, .line_off = 0, .s = data, .n = len, .fn = fn, .ctx = ctx};
    json_t *v = NULL;
    int64_t n = check_json_line(&c, task, &v);
    json_loc_free(&c.loc);
    if (parsed)
        *parsed = v;
    else
        json_decref(v);
    return n;
}

/* ---------------------------------------------------------------- parameters and report */

const char *ft_data_issue_place(const ft_data_issue *is, char *buf, size_t cap) {
    const char *file = is->file ? is->file : "?";
    if (is->line > 0)
        snprintf(buf, cap, "%s:%lld:%lld", file, (long long)is->line, (long long)is->column);
    else
        snprintf(buf, cap, "%s", file);
    return buf;
}

void ft_validate_default_params(ft_validate_params *p, ft_task_type task) {
    memset(p, 0, sizeof *p);
    p->task = task;
    p->sample.task = task;
    p->sample.context_length = 2048;
    p->reader = ft_reader_default_params();
    p->max_issues = 1000;
    p->duration = (ft_data_duration){FT_DURATION_EPOCHS, 1};
    p->seed = 17;
}

void ft_data_report_free(ft_data_report *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n_issues; i++)
        ft_free((char *)r->issues[i].message);
    ft_free(r->issues);
    for (int64_t i = 0; i < r->n_sources; i++)
        ft_free(r->sources[i]);
    ft_free(r->sources);
    ft_free(r->source_summary);
    ft_free(r);
}

json_t *ft_data_report_to_json(const ft_data_report *r, size_t max_list) {
    json_t *o = json_object(), *errs = json_array();
    size_t shown = r->n_issues < max_list ? r->n_issues : max_list;
    for (size_t i = 0; i < shown; i++) {
        const ft_data_issue *is = &r->issues[i];
        json_t *e = json_object();
        json_object_set_new(e, "file", json_string(is->file ? is->file : ""));
        json_object_set_new(e, "line", json_integer(is->line));
        if (is->row >= 0)
            json_object_set_new(e, "row", json_integer(is->row));
        json_object_set_new(e, "column", json_integer(is->column));
        if (is->offset >= 0)
            json_object_set_new(e, "offset", json_integer(is->offset));
        json_object_set_new(e, "level", json_string(is->level == FT_ISSUE_ERROR ? "error" : "warning"));
        json_object_set_new(e, "message", json_string(is->message));
        json_array_append_new(errs, e);
    }
    json_object_set_new(o, "valid", json_boolean(r->valid));
    json_object_set_new(o, "errors", errs);
    json_object_set_new(o, "errors_omitted",
                        json_integer(r->n_issues_omitted + (int64_t)(r->n_issues - shown)));
    json_t *s = json_object();
    json_object_set_new(s, "files", json_integer(r->n_sources));
    if (r->source_summary)
        json_object_set_new(s, "source", json_string(r->source_summary));
    json_object_set_new(s, "records", json_integer(r->n_records));
    json_object_set_new(s, "valid_records", json_integer(r->n_valid_records));
    json_object_set_new(s, "errors", json_integer(r->n_errors));
    json_object_set_new(s, "warnings", json_integer(r->n_warnings));
    if (r->has_tokens) {
        json_object_set_new(s, "samples", json_integer(r->n_samples));
        json_object_set_new(s, "tokens", json_integer(r->n_tokens));
        json_object_set_new(s, "tokens_before_truncation", json_integer(r->n_tokens_full));
        json_object_set_new(s, "trainable_tokens", json_integer(r->n_trainable));
        json_object_set_new(s, "truncated_samples", json_integer(r->n_truncated));
        json_object_set_new(s, "samples_without_trainable_tokens", json_integer(r->n_no_trainable));
        json_object_set_new(s, "max_sample_tokens", json_integer(r->max_len));
        json_t *h = json_array();
        for (int i = 0; i < FT_DATA_HIST_BUCKETS; i++) {
            if (!r->hist[i])
                continue;
            json_t *b = json_object();
            json_object_set_new(b, "min", json_integer(ft_data_hist_lower(i)));
            if (i + 1 < FT_DATA_HIST_BUCKETS)
                json_object_set_new(b, "max", json_integer(ft_data_hist_lower(i + 1) - 1));
            json_object_set_new(b, "count", json_integer(r->hist[i]));
            json_array_append_new(h, b);
        }
        json_object_set_new(s, "token_length_histogram", h);
        json_object_set_new(s, "context_length", json_integer(r->context_length));
        json_object_set_new(s, "rows_per_epoch", json_integer(r->rows_per_epoch));
        json_object_set_new(s, "padding_percent", json_real(r->padding_pct));
        json_object_set_new(s, "tokens_per_epoch", json_integer(r->tokens_per_epoch));
        json_object_set_new(s, "epochs", json_real(r->epochs));
        json_object_set_new(s, "tokens_total", json_integer(r->tokens_total));
        if (r->steps_total > 0)
            json_object_set_new(s, "steps_total", json_integer(r->steps_total));
    }
    if (r->est_seconds >= 0)
        json_object_set_new(s, "estimated_seconds", json_real(r->est_seconds));
    if (r->est_note[0])
        json_object_set_new(s, "estimate_note", json_string(r->est_note));
    json_object_set_new(o, "summary", s);
    return o;
}

/* ---------------------------------------------------------------- the scan */

typedef struct rec_in {
    ft_record rec; /* data points into the batch's bytes (fixed up after the batch is read) */
    size_t data_off;
} rec_in;

typedef struct rec_out {
    ft_data_issue *iss;
    size_t n_iss, cap;
    int64_t n_err;
    bool usable; /* makes a sample */
    bool sampled;
    ds_entry entry;
    int64_t n_full, n_samples;
    bool truncated;
} rec_out;

static void collect(void *ctx, const ft_data_issue *is) {
    rec_out *o = ctx;
    if (o->n_iss == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4;
        ft_data_issue *p = ft_realloc(o->iss, cap * sizeof *p);
        if (!p)
            return; /* out of memory: the issue is lost, but counted below */
        o->iss = p;
        o->cap = cap;
    }
    ft_data_issue c = *is;
    c.message = ft_strdup(is->message);
    if (!c.message)
        return;
    o->iss[o->n_iss++] = c;
}

typedef struct scan_ctx {
    const ft_validate_params *p;
    ft_reader *reader;
    ft_sample_scratch *scratch; /* per thread */
    ft_sample *samples;         /* per thread */
} scan_ctx;

static void process(scan_ctx *sc, const rec_in *in, rec_out *out, int tid) {
    const ft_validate_params *p = sc->p;
    const ft_record *rec = &in->rec;
    const char *file = sc->reader->source_names[rec->loc.source];
    chk c = {.file = file, .line = rec->loc.line, .line_off = rec->loc.a, .s = rec->data, .n = rec->len,
             .fn = collect, .ctx = out};
    json_t *parsed = NULL;
    switch (rec->kind) {
    case FT_RECORD_PROBLEM: {
        ft_data_issue is = {FT_ISSUE_ERROR, file, rec->loc.line, rec->problem_column, rec->problem_offset,
                            rec->problem, -1};
        collect(out, &is);
        c.n_err = 1;
        break;
    }
    case FT_RECORD_JSON_TEXT: check_json_line(&c, p->task, &parsed); break;
    case FT_RECORD_TEXT: check_utf8(&c, rec->data, rec->len, true, rec->loc.a); break;
    case FT_RECORD_JSON_VALUE: /* a table row: columns and key names are the reader's */
        parsed = json_incref(rec->value);
        c.line_off = -1;
        if (p->task == FT_TASK_CHAT_COMPLETION)
            check_chat(&c, parsed);
        else if (p->task == FT_TASK_INSTRUCTION_FINETUNE)
            check_ift(&c, parsed);
        else
            check_text_value(&c, parsed);
        break;
    }
    json_loc_free(&c.loc);
    out->n_err = c.n_err;
    out->usable = c.n_err == 0;
    if (out->usable && p->sample.tok) {
        ft_sample *s = &sc->samples[tid];
        ft_err e;
        ft_err_clear(&e);
        ft_status st = ft_sample_build(&p->sample, parsed, rec, &sc->scratch[tid], s, &e);
        c.line = rec->loc.line; /* a .txt check may have moved it */
        c.line_off = rec->loc.a;
        if (st != FT_OK) {
            emit(&c, FT_ISSUE_ERROR, 0, "%s%s", p->task == FT_TASK_CHAT_COMPLETION ? "chat template: " : "", e.msg);
            out->usable = false;
        } else {
            out->sampled = true;
            out->n_full = (int64_t)s->n_full;
            out->truncated = s->truncated;
            out->n_samples = p->task == FT_TASK_CONTINUED_PRETRAIN
                                 ? ft_sample_cpt_pieces((int64_t)s->n, p->sample.context_length)
                                 : 1;
            out->entry = (ds_entry){rec->loc, (int32_t)s->n, (int32_t)s->n_trainable};
            if (s->n_trainable == 0) {
                if (s->truncated)
                    emit(&c, FT_ISSUE_ERROR, 0,
                         "no trainable token left after truncation to the context length %lld (the sample has %zu "
                         "tokens)",
                         (long long)p->sample.context_length, s->n_full);
                else
                    emit(&c, FT_ISSUE_ERROR, 0, "the sample has no trainable token");
                out->usable = false;
            }
        }
        out->n_err = c.n_err;
    }
    json_decref(parsed);
}

static int hist_bucket(int64_t n) {
    int b = 0;
    while (b + 1 < FT_DATA_HIST_BUCKETS && n >= ft_data_hist_lower(b + 1))
        b++;
    return b;
}

#define BATCH_RECORDS 2048
#define BATCH_BYTES ((size_t)16 << 20)

/* Read up to a batch of records, copying what they borrow from the reader (JSON_VALUE
 * records: a reference). *n counts the records read, also when an error stops the batch. */
static ft_status read_batch(ft_reader *reader, rec_in *in, ft_buf *bytes, size_t *n_out, bool *eof, ft_err *err) {
    size_t n = 0;
    bytes->len = 0;
    ft_status s = FT_OK;
    while (n < BATCH_RECORDS && bytes->len < BATCH_BYTES) {
        ft_record rec;
        bool end;
        if ((s = ft_reader_next(reader, &rec, &end, err)) != FT_OK)
            break;
        if (end) {
            *eof = true;
            break;
        }
        in[n].rec = rec;
        in[n].data_off = bytes->len;
        if (rec.kind == FT_RECORD_JSON_TEXT || rec.kind == FT_RECORD_TEXT)
            s = ft_buf_append(bytes, rec.data, rec.len);
        else if (rec.kind == FT_RECORD_PROBLEM)
            s = ft_buf_append(bytes, rec.problem, strlen(rec.problem) + 1);
        else if (rec.kind == FT_RECORD_JSON_VALUE)
            json_incref(rec.value); /* the reader lets go of it at its next call */
        if (s != FT_OK) {
            in[n].rec.kind = FT_RECORD_PROBLEM; /* nothing of it is kept */
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            break;
        }
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        if (in[i].rec.kind == FT_RECORD_JSON_TEXT || in[i].rec.kind == FT_RECORD_TEXT)
            in[i].rec.data = bytes->data ? bytes->data + in[i].data_off : "";
        else if (in[i].rec.kind == FT_RECORD_PROBLEM)
            in[i].rec.problem = bytes->data + in[i].data_off;
    }
    *n_out = n;
    return s;
}

ft_status ft_data_validate(const char *path, const ft_validate_params *p, ft_data_report **report,
                           ft_dataset **dataset, ft_err *err) {
    *report = NULL;
    if (dataset)
        *dataset = NULL;
    ft_reader *reader = NULL;
    ft_reader_params rp = p->reader;
    rp.no_fetch = rp.no_fetch || !dataset || !p->sample.tok; /* no dataset: nothing is fetched later */
    FT_TRY(ft_reader_open(path, p->task, &rp, &reader, err));
    ft_data_report *r = ft_calloc(1, sizeof *r);
    ft_dataset *ds = ft_calloc(1, sizeof *ds);
    int threads = p->threads > 0 ? p->threads : omp_get_max_threads();
    scan_ctx sc = {p, reader, ft_calloc((size_t)threads, sizeof(ft_sample_scratch)),
                   ft_calloc((size_t)threads, sizeof(ft_sample))};
    /* two batches: one is checked by the workers while the next one is read */
    rec_in *ins[2] = {ft_calloc(BATCH_RECORDS, sizeof(rec_in)), ft_calloc(BATCH_RECORDS, sizeof(rec_in))};
    rec_out *out = ft_calloc(BATCH_RECORDS, sizeof *out);
    ft_buf bytes[2] = {{0}, {0}};
    ft_status s = FT_OK;
    if (!r || !ds || !sc.scratch || !sc.samples || !ins[0] || !ins[1] || !out) {
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    r->est_seconds = -1;
    r->n_sources = (int64_t)reader->n_sources;
    r->sources = ft_calloc(reader->n_sources, sizeof *r->sources);
    if (!r->sources) {
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (ft_reader_summary(reader) && !(r->source_summary = ft_strdup(ft_reader_summary(reader)))) {
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < reader->n_sources; i++)
        if (!(r->sources[i] = ft_strdup(reader->source_names[i]))) {
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            goto done;
        }
    ds->reader = reader;
    ds->sp = p->sample;
    ds->sp.task = p->task;
    r->has_tokens = p->sample.tok != NULL;
    r->context_length = p->sample.context_length;

    bool eof = false;
    size_t n = 0;
    int cur = 0;
    s = read_batch(reader, ins[0], &bytes[0], &n, &eof, err);
    while (s == FT_OK && n > 0) {
        rec_in *in = ins[cur];
        int nxt = 1 - cur;
        size_t n_next = 0;
        ft_status rs = FT_OK;
        ft_err rerr;
        ft_err_clear(&rerr);
        bool do_read = !eof;
        /* one thread reads the next batch, then joins the others checking this one */
#pragma omp parallel num_threads(threads)
        {
#pragma omp single nowait
            {
                if (do_read)
                    rs = read_batch(reader, ins[nxt], &bytes[nxt], &n_next, &eof, &rerr);
            }
#pragma omp for schedule(dynamic, 16)
            for (size_t i = 0; i < n; i++) {
                memset(&out[i], 0, sizeof out[i]);
                process(&sc, &in[i], &out[i], omp_get_thread_num());
                if (in[i].rec.kind == FT_RECORD_JSON_VALUE) { /* a table row's tree: freed here, in parallel */
                    json_decref(in[i].rec.value);
                    in[i].rec.value = NULL;
                }
            }
        }
        for (size_t i = 0; i < n; i++) {
            rec_out *o = &out[i];
            r->n_records++;
            char where_buf[640];
            const char *where = reader->vt->where && o->n_iss
                                    ? reader->vt->where(reader, &in[i].rec.loc, where_buf, sizeof where_buf)
                                    : NULL;
            for (size_t k = 0; k < o->n_iss; k++) {
                ft_data_issue *is = &o->iss[k];
                is->file = r->sources[in[i].rec.loc.source];
                if (where) { /* "row 17 (row 3 of row group 2): message": a row, not a line of text */
                    is->row = in[i].rec.loc.line - 1;
                    is->line = 0;
                    is->column = 0;
                    is->offset = -1;
                    char *m = ft_asprintf("%s: %s", where, is->message);
                    if (m) {
                        ft_free((char *)is->message);
                        is->message = m;
                    }
                }
                if (is->level == FT_ISSUE_ERROR)
                    r->n_errors++;
                else
                    r->n_warnings++;
                if (p->on_issue)
                    p->on_issue(p->on_issue_ctx, is);
                if (r->n_issues < (p->max_issues ? p->max_issues : 1000)) {
                    if (r->n_issues % 64 == 0) {
                        ft_data_issue *np = ft_realloc(r->issues, (r->n_issues + 64) * sizeof *np);
                        if (!np) {
                            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                            goto done;
                        }
                        r->issues = np;
                    }
                    r->issues[r->n_issues++] = *is;
                    is->message = NULL; /* moved */
                } else {
                    r->n_issues_omitted++;
                }
            }
            if (o->usable)
                r->n_valid_records++;
            if (o->sampled) {
                r->n_tokens_full += o->n_full;
                r->hist[hist_bucket(o->n_full)]++;
                if (o->n_full > r->max_len)
                    r->max_len = o->n_full;
                r->n_truncated += o->truncated;
                if (o->entry.n_trainable == 0) {
                    r->n_no_trainable++;
                } else {
                    r->n_samples += o->n_samples;
                    r->n_tokens += o->entry.n_tokens;
                    r->n_trainable += o->entry.n_trainable;
                }
            }
            if (o->usable && o->sampled && (s = ds_push(ds, &o->entry, err)) != FT_OK)
                goto done;
        }
        for (size_t i = 0; i < n; i++) {
            if (in[i].rec.kind == FT_RECORD_JSON_VALUE) {
                json_decref(in[i].rec.value);
                in[i].rec.value = NULL;
            }
            for (size_t k = 0; k < out[i].n_iss; k++)
                ft_free((char *)out[i].iss[k].message);
            ft_free(out[i].iss);
            memset(&out[i], 0, sizeof out[i]);
            if (in[i].rec.kind == FT_RECORD_JSON_VALUE) {
                json_decref(in[i].rec.value);
                in[i].rec.value = NULL;
            }
        }
        cur = nxt;
        n = n_next;
        if (rs != FT_OK) {
            if (err)
                *err = rerr;
            s = rs;
            goto done;
        }
    }
    if (s != FT_OK)
        goto done;
    r->valid = r->n_errors == 0;

    if (r->has_tokens && ds->n > 0) {
        ft_pack_params pp;
        ft_pack_default_params(&pp, p->sample.context_length, p->seed);
        if (p->shuffle_window > 0)
            pp.window = p->shuffle_window;
        ft_epoch_counts ec;
        if ((s = ft_dataset_count_epoch(ds, &pp, 0, &ec, err)) != FT_OK)
            goto done;
        r->rows_per_epoch = ec.rows;
        r->padding_pct = ec.rows > 0 ? 100.0 * (double)(ec.rows * pp.T - ec.tokens) / (double)(ec.rows * pp.T) : 0;
        r->tokens_per_epoch = ec.tokens;
        switch (p->duration.unit) {
        case FT_DURATION_EPOCHS: r->epochs = (double)p->duration.value; break;
        case FT_DURATION_TOKENS: r->epochs = ec.tokens > 0 ? (double)p->duration.value / (double)ec.tokens : 0; break;
        case FT_DURATION_BATCHES:
            r->epochs = p->global_batch_size > 0 && ec.rows > 0
                            ? (double)p->duration.value * (double)p->global_batch_size / (double)ec.rows
                            : 0;
            break;
        }
        r->tokens_total = (int64_t)((double)ec.tokens * r->epochs + 0.5);
        if (p->global_batch_size > 0) {
            double rows = (double)ec.rows * r->epochs;
            r->steps_total = p->duration.unit == FT_DURATION_BATCHES
                                 ? p->duration.value
                                 : (int64_t)((rows + (double)p->global_batch_size - 1) / (double)p->global_batch_size);
        }
    }
    if (!r->est_note[0])
        snprintf(r->est_note, sizeof r->est_note, "no training step was measured");

done:
    for (int b = 0; b < 2; b++)
        for (size_t i = 0; ins[b] && i < BATCH_RECORDS; i++)
            if (ins[b][i].rec.kind == FT_RECORD_JSON_VALUE)
                json_decref(ins[b][i].rec.value);
    for (size_t i = 0; out && i < BATCH_RECORDS; i++) {
        for (size_t k = 0; k < out[i].n_iss; k++)
            ft_free((char *)out[i].iss[k].message);
        ft_free(out[i].iss);
    }
    for (int t = 0; t < threads && sc.scratch; t++)
        ft_sample_scratch_free(&sc.scratch[t]);
    for (int t = 0; t < threads && sc.samples; t++)
        ft_sample_free(&sc.samples[t]);
    ft_free(sc.scratch);
    ft_free(sc.samples);
    ft_free(ins[0]);
    ft_free(ins[1]);
    ft_free(out);
    ft_buf_free(&bytes[0]);
    ft_buf_free(&bytes[1]);
    if (s != FT_OK) {
        ft_data_report_free(r);
        if (ds)
            ds->reader = NULL;
        ft_dataset_free(ds);
        ft_reader_free(reader);
        return s;
    }
    r->valid = r->n_errors == 0;
    *report = r;
    if (dataset && r->valid && r->has_tokens) {
        *dataset = ds;
    } else {
        ft_dataset_free(ds); /* frees the reader */
    }
    return FT_OK;
}
