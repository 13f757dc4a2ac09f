/* cli/cmd_cancel.c: `ftune cancel RUN...`: a queued run stops at once; a running one moves to
 * TERMINATING and its process stops at the next step boundary after saving a checkpoint, then
 * records STOPPED (SPEC §5). --wait waits for that. */
#include <string.h>
#include <time.h>

#include "ftune/runs.h"
#include "run_common.h"

static const cli_opt opts[] = {
    {"wait", CLI_FLAG, "wait until each run has stopped"},
    {NULL, 0, NULL},
};

int cmd_cancel(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "cancel", "RUN... [--wait]", opts, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    if (a.n_pos == 0) {
        cli_args_free(&a);
        return cli_usage_error("cancel", NULL, "expected at least one run name");
    }
    bool json = cli_has(&a, "json"), wait = cli_has(&a, "wait");
    ft_store *s;
    int rc = run_open_store_args("cancel", &a, &s);
    if (rc)
        return rc;
    for (size_t i = 0; i < a.n_pos; i++) {
        const char *name = a.pos[i];
        ft_run r;
        ft_err err;
        if (ft_store_run_get(s, name, &r, &err) != FT_OK) {
            rc = cli_report("cancel", &err);
            continue;
        }
        const char *what = NULL;
        ft_status st = ft_runs_cancel(s, name, &what, &err);
        if (st != FT_OK) {
            rc = cli_report("cancel", &err);
            ft_run_deinit(&r);
            continue;
        }
        while (wait) {
            ft_run cur;
            if (ft_store_run_get(s, name, &cur, NULL) != FT_OK)
                break;
            bool done = ft_run_status_is_final(cur.status) || run_is_orphaned(&cur);
            ft_run_deinit(&cur);
            if (done)
                break;
            struct timespec ts = {0, 200 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        ft_run cur;
        if (ft_store_run_get(s, name, &cur, NULL) == FT_OK) {
            if (json)
                run_print_json(&cur);
            else
                printf("%s: %s (%s)\n", name, what, ft_run_status_str(cur.status));
            ft_run_deinit(&cur);
        }
        ft_run_deinit(&r);
    }
    ft_store_close(s);
    cli_args_free(&a);
    return rc;
}
