/* cli/cmd_get.c: `ftune get RUN`: one run, its status with progress and ETA, its parameters,
 * checkpoints, last evaluation and registered model (SPEC §6). --json prints the run object with
 * its checkpoints and evaluations. */
#include <string.h>

#include "ftune/json.h"
#include "ftune/runs.h"
#include "run_common.h"

/* "N processes on H hosts: a (ranks 0, 2), b (ranks 1, 3)" when the hosts are one per rank, else the
 * hosts as recorded; "1 process on HOST" for one. */
static void print_world(const ft_run *r) {
    int64_t world;
    json_t *hosts;
    if (!ft_runs_world(r, &world, &hosts))
        return;
    size_t nh = json_array_size(hosts);
    printf("%-20s %lld process%s", "processes", (long long)world, world == 1 ? "" : "es");
    if (nh && (int64_t)nh == world) {
        /* distinct hosts in order of their first rank, each with its ranks */
        size_t distinct = 0;
        for (size_t i = 0; i < nh; i++) {
            const char *h = json_string_value(json_array_get(hosts, i));
            bool seen = false;
            for (size_t k = 0; k < i && !seen; k++)
                seen = strcmp(h, json_string_value(json_array_get(hosts, k))) == 0;
            distinct += !seen;
        }
        printf(" on %zu host%s:", distinct, distinct == 1 ? "" : "s");
        size_t shown = 0;
        for (size_t i = 0; i < nh; i++) {
            const char *h = json_string_value(json_array_get(hosts, i));
            bool seen = false;
            for (size_t k = 0; k < i && !seen; k++)
                seen = strcmp(h, json_string_value(json_array_get(hosts, k))) == 0;
            if (seen)
                continue;
            printf("%s %s (rank", shown++ ? "," : "", h);
            size_t nr = 0;
            for (size_t k = i; k < nh; k++)
                nr += strcmp(h, json_string_value(json_array_get(hosts, k))) == 0;
            printf("%s", nr == 1 ? "" : "s");
            const char *sep = " ";
            for (size_t k = i; k < nh; k++)
                if (strcmp(h, json_string_value(json_array_get(hosts, k))) == 0) {
                    printf("%s%zu", sep, k);
                    sep = ", ";
                }
            printf(")");
        }
    } else if (nh) {
        printf(" on");
        for (size_t i = 0; i < nh; i++)
            printf("%s %s", i ? "," : "", json_string_value(json_array_get(hosts, i)));
    }
    putchar('\n');
    json_decref(hosts);
}

int cmd_get(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "get", "RUN", NULL, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    int rc = run_expect_one_run("get", &a);
    if (rc)
        return rc;
    const char *name = a.pos[0];
    bool json = cli_has(&a, "json");
    ft_store *s;
    rc = run_open_store_args("get", &a, &s);
    if (rc)
        return rc;
    ft_run r;
    ft_err err;
    if (ft_store_run_get(s, name, &r, &err) != FT_OK) {
        rc = cli_report("get", &err);
    } else if (json) {
        run_print_json_full(s, &r);
    } else {
        char line[512], t1[32], t2[32], t3[32];
        run_status_line(&r, line, sizeof line);
        run_format_time(r.created, t1, sizeof t1);
        run_format_time(r.started, t2, sizeof t2);
        run_format_time(r.finished, t3, sizeof t3);
        printf("%-20s %s\n", "name", r.name);
        printf("%-20s %s\n", "status", line);
        if (r.details) {
            printf("%-20s ", "details");
            cli_put_indented(stdout, r.details, 21);
            putchar('\n');
        }
        printf("%-20s %s\n", "model", r.model ? r.model : "");
        printf("%-20s %s\n", "task_type", r.task_type ? r.task_type : "");
        printf("%-20s %s\n", "train_data_path", r.train_data_path ? r.train_data_path : "");
        if (r.eval_data_path)
            printf("%-20s %s\n", "eval_data_path", r.eval_data_path);
        if (r.custom_weights_path)
            printf("%-20s %s\n", "custom_weights_path", r.custom_weights_path);
        printf("%-20s %s\n", "register_to", r.register_to ? r.register_to : "");
        printf("%-20s %s\n", "training_duration", r.training_duration ? r.training_duration : "");
        printf("%-20s %g\n", "learning_rate", r.learning_rate);
        if (r.context_length > 0)
            printf("%-20s %lld\n", "context_length", (long long)r.context_length);
        char dt[16], route[32];
        if (ft_runs_precision(s, r.name, dt, sizeof dt, route, sizeof route))
            printf("%-20s %s (GEMM route %s)\n", "dtype", dt, route);
        printf("%-20s %s\n", "experiment_path", r.experiment_path ? r.experiment_path : "");
        printf("%-20s %s\n", "run folder", r.run_dir ? r.run_dir : "");
        printf("%-20s %s\n", "created", t1);
        printf("%-20s %s\n", "started", t2);
        printf("%-20s %s\n", "finished", t3);
        print_world(&r);
        if (r.pid && !ft_run_status_is_final(r.status))
            printf("%-20s %lld on %s\n", "process", (long long)r.pid, r.host ? r.host : "?");
        if (r.registered_name)
            printf("%-20s %s\n", "registered model", r.registered_name);
        ft_checkpoint_row *ck;
        size_t n;
        if (ft_store_checkpoint_list(s, name, &ck, &n, NULL) == FT_OK) {
            /* keep_checkpoints removes older ones: count what is on disk, not what was saved */
            size_t kept = 0, last = 0;
            for (size_t i = 0; i < n; i++)
                if (ck[i].path && ft_path_exists(ck[i].path)) {
                    kept++;
                    last = i;
                }
            if (kept == n && n)
                printf("%-20s %s (%zu kept)\n", "latest checkpoint", ck[last].path, kept);
            else if (kept)
                printf("%-20s %s (%zu kept of %zu saved)\n", "latest checkpoint", ck[last].path, kept, n);
            else if (n)
                printf("%-20s none on disk (%zu saved, since removed)\n", "latest checkpoint", n);
            ft_checkpoint_list_free(ck, n);
        }
        ft_metric *m;
        if (ft_store_metrics_list(s, name, "loss", &m, &n, NULL) == FT_OK) {
            if (n)
                printf("%-20s %.4f at step %lld\n", "loss", m[n - 1].value, (long long)m[n - 1].step);
            ft_free(m);
        }
        ft_metric *ev, *acc;
        size_t ne, na;
        if (ft_store_metrics_list(s, name, "eval_loss", &ev, &ne, NULL) == FT_OK) {
            if (ne && ft_store_metrics_list(s, name, "eval_token_accuracy", &acc, &na, NULL) == FT_OK) {
                if (na)
                    printf("%-20s loss %.4f, token accuracy %.1f%% at step %lld (all: --json)\n", "evaluation",
                           ev[ne - 1].value, 100.0 * acc[na - 1].value, (long long)ev[ne - 1].step);
                ft_free(acc);
            }
            ft_free(ev);
        }
    }
    ft_run_deinit(&r);
    ft_store_close(s);
    cli_args_free(&a);
    return rc;
}
