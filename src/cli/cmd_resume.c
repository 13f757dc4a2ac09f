/* cli/cmd_resume.c: `ftune resume RUN`: continue an interrupted run (killed, crashed, stopped or
 * failed) from its latest complete checkpoint, in the foreground (SPEC §4: the losses are those of
 * an uninterrupted run). */
#include <string.h>
#include <unistd.h>

#include "ftune/runs.h"
#include "run_common.h"

static const cli_opt opts[] = {
    {"threads", CLI_INT, "N: threads (the losses match an uninterrupted run with the same count)"},
    {"quiet", CLI_FLAG, "no progress bar or event lines"},
    {"allow-changed-data", CLI_FLAG, "resume even though the data changed since the run started (a WARN event)"},
    {NULL, 0, NULL},
};

int cmd_resume(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "resume", "RUN", opts, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    int rc = run_expect_one_run("resume", &a);
    if (rc)
        return rc;
    int64_t threads = cli_int(&a, "threads", 0);
    if (threads < 0 || threads > 4096) {
        cli_args_free(&a);
        return cli_usage_error("resume", "threads", "must be between 1 and 4096");
    }
    const char *name = a.pos[0];
    bool json = cli_has(&a, "json");
    ft_store *s;
    rc = run_open_store_args("resume", &a, &s);
    if (rc)
        return rc;
    ft_run r;
    ft_err err;
    if (ft_store_run_get(s, name, &r, &err) != FT_OK) {
        rc = cli_report("resume", &err);
        goto out;
    }
    bool allow = cli_has(&a, "allow-changed-data");
    int data_changed = -1;
    ft_buf changes = {0};
    if (r.status == FT_RUN_COMPLETED) {
        fprintf(stderr, "ftune resume: %s has already completed\n", name);
        rc = CLI_EXIT_USAGE;
    } else if (r.status != FT_RUN_PENDING && !ft_run_status_is_final(r.status) && r.status != FT_RUN_QUEUED &&
               run_process_alive(&r)) {
        fprintf(stderr, "ftune resume: %s is %s in process %lld on %s\n", name, ft_run_status_str(r.status),
                (long long)r.pid, r.host ? r.host : "?");
        rc = CLI_EXIT_FAIL;
    } else if (!allow && (data_changed = ft_runs_data_check(&r, &changes, NULL)) > 0) {
        /* Refused before anything changes: the run keeps its status. */
        fprintf(stderr,
                "ftune resume: %s: the data changed since the run started, so the resumed steps would "
                "train on other data than the steps before:\n",
                name);
        for (const char *line = ft_buf_cstr(&changes); *line;) {
            const char *nl = strchr(line, '\n');
            int len = nl ? (int)(nl - line) : (int)strlen(line);
            fprintf(stderr, "  %.*s\n", len, line);
            line += len + (nl != NULL);
        }
        fprintf(stderr, "Restore the data, or resume with --allow-changed-data to continue on the data as it is now "
                        "(recorded as a WARN event).\n");
        rc = CLI_EXIT_USAGE;
    } else {
        char msg[256];
        snprintf(msg, sizeof msg, "resuming %s run from its latest checkpoint", ft_run_status_str(r.status));
        if (r.status == FT_RUN_PENDING)
            ft_store_run_set_status(s, name, FT_RUN_QUEUED, "QUEUED", "INFO", "queued to run here", NULL, NULL);
        if (ft_store_run_take_over(s, name, r.pid, getpid(), run_hostname(), &err) != FT_OK ||
            ft_store_run_set_status(s, name, FT_RUN_STARTING, "TRAIN_UPDATED", "INFO", msg, NULL, &err) != FT_OK) {
            rc = cli_report("resume", &err);
        } else {
            run_exec_opts o = {.resume = true,
                               .show = !cli_has(&a, "quiet"),
                               .threads = (int)threads,
                               .allow_changed_data = allow,
                               /* checked above and found identical: not hashed twice */
                               .data_checked = data_changed == 0 && changes.len == 0};
            rc = run_execute(s, name, &o);
            ft_run fin;
            if (json && ft_store_run_get(s, name, &fin, NULL) == FT_OK) {
                run_print_json_full(s, &fin);
                ft_run_deinit(&fin);
            }
        }
    }
    ft_buf_free(&changes);
    ft_run_deinit(&r);
out:
    ft_store_close(s);
    cli_args_free(&a);
    return rc;
}
