/* cli/args.c: one flag parser for every command, so that flags, errors and --help look alike.
 * Accepts "--flag value" and "--flag=value"; "--" ends flags. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
    if (flag)
        fprintf(stderr, "ftune %s: --%s: %s\n", command, flag, msg);
    else
        fprintf(stderr, "ftune %s: %s\n", command, msg);
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
    switch (err->code) {
    case FT_ERR_PARSE:
    case FT_ERR_INVALID:
    case FT_ERR_NOT_FOUND:
    case FT_ERR_UNSUPPORTED:
    case FT_ERR_RANGE: return CLI_EXIT_USAGE;
    default: return CLI_EXIT_FAIL;
    }
}
