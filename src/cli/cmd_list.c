/* cli/cmd_list.c: `ftune list [--status S]... [--limit N]`: runs, newest first (SPEC §6). */
#include <string.h>

#include "ftune/json.h"
#include "run_common.h"

static const cli_opt opts[] = {
    {"status", CLI_STR_LIST, "S: only runs with this status (repeatable): PENDING QUEUED STARTING RUNNING "
                             "TERMINATING COMPLETED FAILED STOPPED"},
    {"limit", CLI_INT, "N: at most N runs (default 100; 0: all)"},
    {NULL, 0, NULL},
};

int cmd_list(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "list", "[--status S]... [--limit N]", opts, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    uint32_t mask = 0;
    size_t ns;
    const char **sts = cli_list(&a, "status", &ns);
    for (size_t i = 0; i < ns; i++) {
        ft_run_status st;
        if (!ft_run_status_parse(sts[i], &st)) {
            int rc = cli_usage_error("list", "status", "\"%s\" is not a status (PENDING, QUEUED, STARTING, RUNNING, "
                                                       "TERMINATING, COMPLETED, FAILED, STOPPED)", sts[i]);
            cli_args_free(&a);
            return rc;
        }
        mask |= 1u << st;
    }
    int64_t limit = cli_int(&a, "limit", 100);
    if (limit < 0) {
        cli_args_free(&a);
        return cli_usage_error("list", "limit", "must be >= 0");
    }
    bool json = cli_has(&a, "json");
    cli_args_free(&a);
    ft_store *s;
    int rc = run_open_store_existing("list", &s);
    if (rc)
        return rc;
    ft_run *runs;
    size_t n;
    ft_err err;
    if (ft_store_run_list(s, mask, limit, &runs, &n, &err) != FT_OK) {
        ft_store_close(s);
        return cli_report("list", &err);
    }
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, ft_run_to_json(&runs[i]));
        char *t = ft_json_dumps(arr, 0);
        printf("%s\n", t ? t : "[]");
        free(t);
        json_decref(arr);
    } else if (n == 0) {
        printf("no runs%s (start one with `ftune create`)\n", mask ? " with that status" : "");
    } else {
        printf("%-44s %-12s %5s  %-19s  %s\n", "NAME", "STATUS", "DONE", "CREATED", "MODEL");
        for (size_t i = 0; i < n; i++) {
            char when[32];
            run_format_time(runs[i].created, when, sizeof when);
            printf("%-44s %-12s %4d%%  %-19s  %s\n", runs[i].name, ft_run_status_str(runs[i].status),
                   (int)(100.0 * runs[i].progress), when, runs[i].model ? runs[i].model : "");
        }
    }
    ft_run_list_free(runs, n);
    ft_store_close(s);
    return CLI_EXIT_OK;
}
