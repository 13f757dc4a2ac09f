/* cli/cmd_data.c: `ftune data head SOURCE [--limit N] [--columns a,b] [--table-version N]`: the first rows of a table
 * source (a .parquet file or a folder of them) as JSON Lines, columns by name, with the value
 * mapping of docs/data.md "Values as JSON", so users see exactly what ftune reads. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ftune/data.h"

static const char *const synopsis = "head SOURCE [--limit N] [--columns a,b] [--table-version N]";

static const cli_opt opts[] = {
    {"limit", CLI_INT, "N: rows to print (default 10; -1: all)"},
    {"columns", CLI_STR, "a,b: top-level columns to print, in this order (default: all)"},
    {"table-version", CLI_INT, "N: a Delta table at version N (also: SOURCE@N)"},
    {NULL, 0, NULL},
};

static bool print_row(void *ctx, const char *json, size_t len) {
    (void)ctx;
    fwrite(json, 1, len, stdout);
    fputc('\n', stdout);
    return !ferror(stdout);
}

int cmd_data(int argc, char **argv) {
    if (argc < 1 || strcmp(argv[0], "head") != 0) {
        if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
            printf("usage: ftune data %s\n  rows of a table source as JSON Lines\n", synopsis);
            return CLI_EXIT_OK;
        }
        if (argc >= 1 && argv[0][0] != '-')
            return cli_usage_error("data", NULL, "unknown subcommand \"%s\": data %s", argv[0], synopsis);
        return cli_usage_error("data", NULL, "expected a subcommand: data %s", synopsis);
    }
    cli_args a;
    int rc = cli_parse(&a, "data head", synopsis + 5 /* after "head " */, opts, argc - 1, argv + 1);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (a.n_pos != 1) {
        cli_args_free(&a);
        return cli_usage_error("data head", NULL, "expected one source (a .parquet or .arrow file or a folder of them, a Delta table, an HF dataset org/name/split)");
    }
    ft_data_head_params p;
    ft_data_head_default_params(&p);
    p.limit = cli_int(&a, "limit", 10);
    if (p.limit < -1) {
        cli_args_free(&a);
        return cli_usage_error("data head", "limit", "%lld: give a number of rows (0 or more), or -1 for all",
                               (long long)p.limit);
    }
    p.table_version = cli_has(&a, "table-version") ? cli_int(&a, "table-version", -1) : -1;
    if (cli_has(&a, "table-version") && p.table_version < 0) {
        cli_args_free(&a);
        return cli_usage_error("data", "table-version", "must be a version number (0, 1, ...)");
    }
    char *cols = NULL;
    const char *names[256];
    if (cli_has(&a, "columns")) {
        cols = ft_strdup(cli_str(&a, "columns", ""));
        size_t n = 0;
        for (char *save = NULL, *t = cols ? strtok_r(cols, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ')
                t++;
            if (!*t)
                continue;
            if (n == sizeof names / sizeof *names) {
                ft_free(cols);
                cli_args_free(&a);
                return cli_usage_error("data head", "columns", "at most 256 columns");
            }
            names[n++] = t;
        }
        if (n == 0) {
            ft_free(cols);
            cli_args_free(&a);
            return cli_usage_error("data head", "columns", "give column names separated by commas");
        }
        p.columns = names;
        p.n_columns = n;
    }
    ft_err err;
    ft_err_clear(&err);
    int exit_code = CLI_EXIT_OK;
    if (ft_data_head(a.pos[0], &p, print_row, NULL, &err) != FT_OK)
        exit_code = cli_report("data head", &err);
    fflush(stdout);
    ft_free(cols);
    cli_args_free(&a);
    return exit_code;
}
