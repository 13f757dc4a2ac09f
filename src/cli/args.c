/* cli/args.c: one flag parser for every command, so that flags, errors and --help look alike.
 * Accepts "--flag value" and "--flag=value"; "--" ends flags. */
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ftune/json.h"

/* ---------------------------------------------------------------- errors
 * Every error a command reports goes through here: "ftune CMD: why" on stderr and, when the
 * command line has --json, also {"error": {...}} on stdout, so a program reading stdout always
 * gets JSON. The one flag is process state the CLI owns (set once by main before dispatch). */

static bool g_json_errors;

void cli_set_json_errors(bool on) { g_json_errors = on; }

static const char *status_code_name(ft_status s) {
    switch (s) {
    case FT_OK: return "OK";
    case FT_ERR_NOMEM: return "NOMEM";
    case FT_ERR_IO: return "IO";
    case FT_ERR_PARSE: return "PARSE";
    case FT_ERR_INVALID: return "INVALID";
    case FT_ERR_UNSUPPORTED: return "UNSUPPORTED";
    case FT_ERR_NOT_FOUND: return "NOT_FOUND";
    case FT_ERR_RANGE: return "RANGE";
    case FT_ERR_NUMERIC: return "NUMERIC";
    case FT_ERR_CANCELLED: return "CANCELLED";
    case FT_ERR_LIMIT: return "LIMIT";
    case FT_ERR_INTERNAL: return "INTERNAL";
    }
    return "UNKNOWN";
}

/* s as a JSON string; bytes that are not UTF-8 (a user's path, say) become U+FFFD. */
static json_t *json_string_lossy(const char *s) {
    json_t *j = json_string(s);
    if (j)
        return j;
    ft_buf b = {0};
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = ft_utf8_valid_prefix(s + i, n - i);
        ft_buf_append(&b, s + i, k);
        i += k;
        if (i < n) {
            ft_buf_append(&b, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    j = json_stringn(b.data ? b.data : "", b.len);
    ft_buf_free(&b);
    return j;
}

/* {"error": {"code", "message", "command", "exit_code"[, "flag"][, "file", "line", "column"]}} */
static void json_error(const char *command, const char *code, const char *flag, const char *message,
                       const ft_err *err, int exit_code) {
    if (!g_json_errors)
        return;
    json_t *e = json_object();
    json_object_set_new(e, "code", json_string(code));
    json_object_set_new(e, "message", json_string_lossy(message));
    json_object_set_new(e, "command", json_string(command));
    json_object_set_new(e, "exit_code", json_integer(exit_code));
    if (flag)
        json_object_set_new(e, "flag", json_string(flag));
    if (err && err->file[0]) {
        json_object_set_new(e, "file", json_string_lossy(err->file));
        if (err->line > 0)
            json_object_set_new(e, "line", json_integer(err->line));
        if (err->column > 0)
            json_object_set_new(e, "column", json_integer(err->column));
    }
    json_t *o = json_pack("{s:o}", "error", e);
    char *t = ft_json_dumps(o, 0);
    fflush(stdout);
    printf("%s\n", t ? t : "{\"error\": {}}");
    fflush(stdout);
    free(t);
    json_decref(o);
}

int cli_fail(const char *command, int exit_code, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "ftune %s: %s\n", command, msg);
    json_error(command, exit_code == CLI_EXIT_USAGE ? "INVALID" : "FAILED", NULL, msg, NULL, exit_code);
    return exit_code;
}

static void print_usage(FILE *out, const cli_args *a, const char *synopsis) {
    fprintf(out, "usage: ftune %s %s\n", a->command, synopsis ? synopsis : "");
    for (size_t i = 0; i < a->n_opts; i++) {
        const cli_opt *o = &a->opts[i];
        fprintf(out, "  --%-24s %s\n", o->name, o->help ? o->help : "");
    }
}

static const cli_opt json_opt = {"json", CLI_FLAG, "machine-readable output"};

static int find_opt(const cli_args *a, const char *name, size_t len) {
    for (size_t i = 0; i < a->n_opts; i++)
        if (strlen(a->opts[i].name) == len && strncmp(a->opts[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

int cli_usage_error(const char *command, const char *flag, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    while (flag && *flag == '-') /* "--model" and "model" both name --model */
        flag++;
    if (flag)
        fprintf(stderr, "ftune %s: --%s: %s\n", command, flag, msg);
    else
        fprintf(stderr, "ftune %s: %s\n", command, msg);
    char full[1200];
    snprintf(full, sizeof full, "%s%s%s%s", flag ? "--" : "", flag ? flag : "", flag ? ": " : "", msg);
    json_error(command, "USAGE", flag, full, NULL, CLI_EXIT_USAGE);
    return CLI_EXIT_USAGE;
}

int cli_parse(cli_args *a, const char *command, const char *synopsis, const cli_opt *opts, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->command = command;
    /* Copy the option table and append --json unless the command declared it. */
    cli_opt *table = a->opts;
    size_t n = 0;
    bool has_json = false;
    for (const cli_opt *o = opts; o && o->name; o++) {
        FT_ASSERT(n < CLI_MAX_OPTS - 1);
        if (!strcmp(o->name, "json"))
            has_json = true;
        table[n++] = *o;
    }
    if (!has_json)
        table[n++] = json_opt;
    a->n_opts = n;

    bool flags_done = false;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (flags_done || arg[0] != '-' || arg[1] == 0 || (arg[1] != '-' && (arg[1] < 'a' || arg[1] > 'z') && arg[1] != 'h')) {
            if (a->n_pos >= CLI_MAX_POS)
                return cli_usage_error(command, NULL, "too many arguments");
            a->pos[a->n_pos++] = arg;
            continue;
        }
        if (!strcmp(arg, "--")) {
            flags_done = true;
            continue;
        }
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            print_usage(stdout, a, synopsis);
            return -1;
        }
        if (arg[1] != '-') {
            print_usage(stderr, a, synopsis);
            return cli_usage_error(command, NULL, "unknown option %s", arg);
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int k = find_opt(a, name, len);
        if (k < 0) {
            print_usage(stderr, a, synopsis);
            return cli_usage_error(command, NULL, "unknown option --%.*s", (int)len, name);
        }
        const cli_opt *o = &a->opts[k];
        const char *val = NULL;
        if (o->kind == CLI_FLAG) {
            if (eq)
                return cli_usage_error(command, o->name, "takes no value");
            a->given[k] = true;
            continue;
        }
        if (eq)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else
            return cli_usage_error(command, o->name, "needs a value");
        a->given[k] = true;
        switch (o->kind) {
        case CLI_STR: a->str[k] = val; break;
        case CLI_INT: {
            char *end;
            errno = 0;
            long long v = strtoll(val, &end, 10);
            if (errno || end == val || *end)
                return cli_usage_error(command, o->name, "expected an integer, got \"%s\"", val);
            a->i64[k] = v;
            a->str[k] = val;
            break;
        }
        case CLI_FLOAT: {
            char *end;
            errno = 0;
            double v = strtod(val, &end);
            if (errno || end == val || *end || !isfinite(v))
                return cli_usage_error(command, o->name, "expected a number, got \"%s\"", val);
            a->f64[k] = v;
            a->str[k] = val;
            break;
        }
        case CLI_STR_LIST: {
            const char **l = realloc(a->list[k], (a->list_n[k] + 1) * sizeof *l);
            if (!l)
                return cli_usage_error(command, NULL, "out of memory");
            l[a->list_n[k]++] = val;
            a->list[k] = l;
            break;
        }
        case CLI_FLAG: break;
        }
    }
    return 0;
}

void cli_args_free(cli_args *a) {
    for (size_t i = 0; i < CLI_MAX_OPTS; i++)
        free(a->list[i]);
}

static int index_of(const cli_args *a, const char *name) {
    int k = find_opt(a, name, strlen(name));
    FT_ASSERT(k >= 0); /* asking for a flag the command did not declare is a bug */
    return k;
}

bool cli_has(const cli_args *a, const char *name) { return a->given[index_of(a, name)]; }

const char *cli_str(const cli_args *a, const char *name, const char *dflt) {
    int k = index_of(a, name);
    return a->given[k] && a->str[k] ? a->str[k] : dflt;
}

int64_t cli_int(const cli_args *a, const char *name, int64_t dflt) {
    int k = index_of(a, name);
    return a->given[k] ? a->i64[k] : dflt;
}

double cli_float(const cli_args *a, const char *name, double dflt) {
    int k = index_of(a, name);
    return a->given[k] ? a->f64[k] : dflt;
}

const char **cli_list(const cli_args *a, const char *name, size_t *n) {
    int k = index_of(a, name);
    *n = a->list_n[k];
    return a->list[k];
}

int cli_report(const char *command, const ft_err *err) {
    char msg[2048];
    ft_err_format(err, msg, sizeof msg);
    fprintf(stderr, "ftune %s: %s\n", command, msg);
    int rc;
    switch (err->code) {
    case FT_ERR_PARSE:
    case FT_ERR_INVALID:
    case FT_ERR_NOT_FOUND:
    case FT_ERR_UNSUPPORTED:
    case FT_ERR_RANGE: rc = CLI_EXIT_USAGE; break;
    default: rc = CLI_EXIT_FAIL; break;
    }
    json_error(command, status_code_name(err->code), NULL, err->msg, err, rc);
    return rc;
}

/* ---------------------------------------------------------------- input files */

FILE *cli_open_input(const char *path, ft_err *err) {
    if (!path || !strcmp(path, "-"))
        return stdin;
    struct stat st;
    if (stat(path, &st) != 0) {
        FT_ERR_AT(err, errno == ENOENT ? FT_ERR_NOT_FOUND : FT_ERR_IO, path, 0, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "is a folder: give a file (or nothing to read stdin)");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "cannot open: %s", strerror(errno));
    return f;
}

/* Whitespace-only lines, the UTF-8 BOM at the start of line 1 and the CR of CRLF are what the
 * data reader (src/data/reader.c) skips too, so `validate` and these commands agree on a file. */
bool cli_jsonl_line(const char *line, size_t len, int64_t lineno, const char **start, size_t *n) {
    if (lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3;
        len -= 3;
    }
    if (len && line[len - 1] == '\n')
        len--;
    if (len && line[len - 1] == '\r')
        len--;
    *start = line;
    *n = len;
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r' && line[i] != '\f' && line[i] != '\v')
            return true;
    return false;
}

/* ---------------------------------------------------------------- multi-line messages */

void cli_put_indented(FILE *out, const char *s, int indent) {
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '\n') {
            if (p[1])
                fprintf(out, "\n%*s", indent, "");
        } else if (*p == '\r') {
            fputs("\\r", out);
        } else if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
            fprintf(out, "\\x%02x", *p);
        } else {
            fputc(*p, out);
        }
    }
}
