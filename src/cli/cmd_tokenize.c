/* cli/cmd_tokenize.c: `ftune tokenize --model M [--no-special-tokens] [--json] [--jsonl] TEXT`:
 * token ids of a text with a model folder's tokenizer.json (issue #3 item 3). With --jsonl,
 * lines {"text": ...} come from stdin (or --file) and each gives one line {"ids": [...]} in
 * order; the tokenizer is loaded once. M is a folder or tokenizer.json path, or else a model
 * name resolved like every command's (ftune/hf.h). --stats times the encoding instead of printing ids
 * (the benchmark's entry point), over --threads threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "ftune/hf.h"
#include "ftune/json.h"
#include "ftune/tok.h"

static const char SYNOPSIS[] = "--model M [--no-special-tokens] [--json] [--jsonl [--file F]] [TEXT]";

static const cli_opt OPTS[] = {
    {"model", CLI_STR, "M: folder with tokenizer.json (and tokenizer_config.json), a tokenizer.json path, or a "
                       "model name (registry, Hugging Face cache)"},
    {"no-special-tokens", CLI_FLAG, "do not add the post-processor's special tokens (BOS/EOS)"},
    {"jsonl", CLI_FLAG, "read {\"text\": ...} lines from stdin (or --file), write {\"ids\": [...]} lines"},
    {"file", CLI_STR, "F: read the --jsonl input from F instead of stdin"},
    {"offsets", CLI_FLAG, "with --json: include each token's byte range [start, end)"},
    {"stats", CLI_FLAG, "with --jsonl: encode everything, print throughput instead of ids"},
    {"threads", CLI_INT, "N: with --stats, encode over N threads (default 1)"},
    {NULL, 0, NULL},
};

static void print_ids(FILE *f, const ft_tok_encoding *e) {
    for (size_t i = 0; i < e->n; i++)
        fprintf(f, i ? ",%d" : "%d", (int)e->ids[i]);
}

/* Read all lines of the input; returns texts (owned) and their lengths. */
static int read_jsonl(FILE *in, const char *where, char ***texts, size_t **lens, size_t *n, size_t *bytes, ft_err *err) {
    char *line = NULL;
    size_t cap = 0, cnt = 0, tcap = 0;
    ssize_t len;
    int64_t lineno = 0;
    *texts = NULL;
    *lens = NULL;
    *bytes = 0;
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        const char *p;
        size_t pn;
        if (!cli_jsonl_line(line, (size_t)len, lineno, &p, &pn))
            continue;
        json_t *j;
        if (ft_json_load_buf(where, p, pn, &j, err)) {
            err->line = lineno;
            free(line);
            return -1;
        }
        const json_t *t = json_object_get(j, "text");
        if (!json_is_string(t)) {
            json_decref(j);
            free(line);
            FT_ERR_AT(err, FT_ERR_INVALID, where, lineno, 1, "expected {\"text\": \"...\"}");
            return -1;
        }
        if (cnt == tcap) {
            tcap = tcap ? tcap * 2 : 1024;
            *texts = realloc(*texts, tcap * sizeof **texts);
            *lens = realloc(*lens, tcap * sizeof **lens);
            if (!*texts || !*lens) {
                json_decref(j);
                free(line);
                FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                return -1;
            }
        }
        (*lens)[cnt] = json_string_length(t);
        (*texts)[cnt] = ft_strndup(json_string_value(t), (*lens)[cnt]);
        *bytes += (*lens)[cnt];
        cnt++;
        json_decref(j);
    }
    free(line);
    *n = cnt;
    return 0;
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int run_stats(const char *cmd, ft_tok *tok, FILE *in, const char *where, bool special, int64_t threads) {
    ft_err err;
    ft_err_clear(&err);
    char **texts;
    size_t *lens, n, bytes;
    if (read_jsonl(in, where, &texts, &lens, &n, &bytes, &err))
        return cli_report(cmd, &err);
    size_t tokens = 0;
    double t0 = ft_time_now(), c0 = cpu_seconds();
    ft_status s = FT_OK;
    if (threads <= 1) {
        ft_tok_encoding e = {0};
        for (size_t i = 0; i < n && !s; i++) {
            s = ft_tok_encode(tok, texts[i], lens[i], special, &e, &err);
            tokens += e.n;
        }
        ft_tok_encoding_free(&e);
    } else {
        ft_tok_batch b;
        s = ft_tok_encode_batch(tok, (const char *const *)texts, lens, n, special, (int)threads, &b, &err);
        if (!s)
            tokens = b.row_start[n];
        ft_tok_batch_free(&b);
    }
    double dt = ft_time_now() - t0, dc = cpu_seconds() - c0;
    for (size_t i = 0; i < n; i++)
        ft_free(texts[i]);
    free(texts);
    free(lens);
    if (s)
        return cli_report(cmd, &err);
    printf("{\"texts\":%zu,\"bytes\":%zu,\"tokens\":%zu,\"threads\":%lld,\"seconds\":%.6f,\"cpu_seconds\":%.6f,"
           "\"mb_per_s\":%.3f,\"mb_per_cpu_s\":%.3f}\n",
           n, bytes, tokens, (long long)(threads < 1 ? 1 : threads), dt, dc, dt > 0 ? (double)bytes / 1e6 / dt : 0.0,
           dc > 0 ? (double)bytes / 1e6 / dc : 0.0);
    return CLI_EXIT_OK;
}

static int run_jsonl(const char *cmd, ft_tok *tok, FILE *in, const char *where, bool special) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    int rc = CLI_EXIT_OK;
    ft_tok_encoding e = {0};
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        const char *p;
        size_t pn;
        if (!cli_jsonl_line(line, (size_t)len, lineno, &p, &pn))
            continue;
        ft_err err;
        ft_err_clear(&err);
        json_t *j;
        const json_t *t;
        if (ft_json_load_buf(where, p, pn, &j, &err)) {
            fprintf(stderr, "ftune %s: line %lld: %s\n", cmd, (long long)lineno, err.msg);
            printf("{\"error\":\"line %lld: invalid JSON\"}\n", (long long)lineno);
            rc = CLI_EXIT_USAGE;
            continue;
        }
        t = json_object_get(j, "text");
        if (!json_is_string(t)) {
            fprintf(stderr, "ftune %s: line %lld: expected {\"text\": \"...\"}\n", cmd, (long long)lineno);
            printf("{\"error\":\"line %lld: expected {\\\"text\\\": ...}\"}\n", (long long)lineno);
            json_decref(j);
            rc = CLI_EXIT_USAGE;
            continue;
        }
        if (ft_tok_encode(tok, json_string_value(t), json_string_length(t), special, &e, &err)) {
            json_decref(j);
            ft_tok_encoding_free(&e);
            free(line);
            return cli_report(cmd, &err);
        }
        json_decref(j);
        fputs("{\"ids\":[", stdout);
        print_ids(stdout, &e);
        fputs("]}\n", stdout);
    }
    ft_tok_encoding_free(&e);
    free(line);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&a, "tokenize", SYNOPSIS, OPTS, argc, argv);
    if (rc)
        return rc < 0 ? CLI_EXIT_OK : rc;
    const char *model = cli_str(&a, "model", NULL);
    bool jsonl = cli_has(&a, "jsonl"), json = cli_has(&a, "json");
    bool special = !cli_has(&a, "no-special-tokens");
    if (!model) {
        cli_args_free(&a);
        return cli_usage_error("tokenize", "--model", "required");
    }
    if (!jsonl && a.n_pos != 1) {
        cli_args_free(&a);
        return cli_usage_error("tokenize", NULL, "give one TEXT argument (or --jsonl)");
    }
    if ((cli_has(&a, "stats") || cli_has(&a, "file")) && !jsonl) {
        cli_args_free(&a);
        return cli_usage_error("tokenize", cli_has(&a, "stats") ? "--stats" : "--file", "needs --jsonl");
    }
    int64_t threads = cli_int(&a, "threads", 1);
    if (threads < 0 || threads > 1024) {
        cli_args_free(&a);
        return cli_usage_error("tokenize", "--threads", "must be 0..1024");
    }
    ft_err err;
    ft_err_clear(&err);
    ft_tok *tok;
    /* a path as given; otherwise a model name resolved as every command resolves it */
    char *resolved = NULL;
    if (!ft_path_exists(model)) {
        if (ft_hf_resolve(model, &resolved, &err)) {
            cli_args_free(&a);
            return cli_report("tokenize", &err);
        }
        model = resolved;
    }
    ft_status ls = ft_tok_load(model, &tok, &err);
    ft_free(resolved);
    if (ls) {
        cli_args_free(&a);
        return cli_report("tokenize", &err);
    }
    const char *file = cli_str(&a, "file", NULL);
    FILE *in = cli_open_input(file, &err);
    if (!in) {
        ft_tok_free(tok);
        cli_args_free(&a);
        return cli_report("tokenize", &err);
    }
    const char *where = file ? file : "<stdin>";
    if (jsonl) {
        rc = cli_has(&a, "stats") ? run_stats("tokenize", tok, in, where, special, threads)
                                  : run_jsonl("tokenize", tok, in, where, special);
        if (rc == CLI_EXIT_OK && ferror(in)) {
            FT_ERR_AT(&err, FT_ERR_IO, where, 0, 0, "read failed");
            rc = cli_report("tokenize", &err);
        }
    } else {
        ft_tok_encoding e = {0};
        const char *text = a.pos[0];
        if (ft_tok_encode(tok, text, strlen(text), special, &e, &err)) {
            rc = cli_report("tokenize", &err);
        } else if (json) {
            fputs("{\"ids\":[", stdout);
            print_ids(stdout, &e);
            fputs("]", stdout);
            if (cli_has(&a, "offsets")) {
                fputs(",\"offsets\":[", stdout);
                for (size_t i = 0; i < e.n; i++)
                    printf(i ? ",[%zu,%zu]" : "[%zu,%zu]", e.offsets[i].start, e.offsets[i].end);
                fputs("]", stdout);
            }
            printf(",\"count\":%zu}\n", e.n);
        } else {
            for (size_t i = 0; i < e.n; i++)
                printf(i ? " %d" : "%d", (int)e.ids[i]);
            putchar('\n');
        }
        ft_tok_encoding_free(&e);
    }
    if (in != stdin)
        fclose(in);
    ft_tok_free(tok);
    cli_args_free(&a);
    return rc;
}
