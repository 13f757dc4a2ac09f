/* cli/cmd_worker.c: `ftune worker`: the background worker (ft_runs_worker). It runs queued runs,
 * --workers N at once (one worker per FTUNE_HOME, held by a lock file), and resumes runs of this
 * machine whose process died. `ftune create --detach` starts one with --until-idle when none is
 * running; `ftune serve --workers N` supervises one. */
#include "run_common.h"

static const cli_opt opts[] = {
    {"until-idle", CLI_FLAG, "exit when nothing is queued"},
    {"poll", CLI_FLOAT, "S: seconds between looks at the queue (default 2)"},
    {"quiet", CLI_FLAG, "no progress lines"},
    {"workers", CLI_INT, "N: runs executed at once (default 1)"},
    {NULL, 0, NULL},
};

int cmd_worker(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "worker", "[--until-idle] [--poll S] [--workers N]", opts, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    double poll = cli_float(&a, "poll", 2.0);
    bool until_idle = cli_has(&a, "until-idle"), quiet = cli_has(&a, "quiet");
    int64_t workers = cli_int(&a, "workers", 1);
    cli_args_free(&a);
    if (workers < 1 || workers > 64)
        return cli_usage_error("worker", "workers", "must be 1..64, got %lld", (long long)workers);
    if (!(poll > 0 && poll <= 3600))
        return cli_usage_error("worker", "poll", "must be more than 0 and at most 3600 seconds, got %g", poll);
    return run_worker_loop(until_idle, poll, quiet, (int)workers);
}
