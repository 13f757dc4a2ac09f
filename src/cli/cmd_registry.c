/* cli/cmd_registry.c: `ftune registry list`, `ftune registry show NAME[/VERSION]` and `ftune
 * registry delete NAME/VERSION`: registered models (SPEC §1) and their versions. --json for show:
 * {"name": ..., "versions": [{"version": 1, "path": ..., "run": ..., "created": ..., ...}]}. */
#include <stdlib.h>
#include <string.h>

#include "ftune/json.h"
#include "run_common.h"

static void print_versions_human(const ft_model_version *v, size_t n, bool list) {
    if (n == 0) {
        printf("no registered models (a completed run registers one)\n");
        return;
    }
    printf("%-40s %7s  %-19s  %-40s %s\n", list ? "NAME" : "NAME", list ? "LATEST" : "VERSION", "CREATED", "RUN",
           "PATH");
    for (size_t i = 0; i < n; i++) {
        char when[32];
        run_format_time(v[i].created, when, sizeof when);
        printf("%-40s %7lld  %-19s  %-40s %s\n", v[i].name, (long long)v[i].version, when, v[i].run ? v[i].run : "-",
               v[i].path);
    }
}

static const cli_opt delete_opts[] = {
    {"force", CLI_FLAG, "delete even while another ftune process registers a version of that model"},
    {NULL, 0, NULL},
};

/* `ftune registry delete NAME/VERSION... [--force]`: the version's files and record; its number is
 * never given again. */
static int registry_delete(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "registry delete", "NAME/VERSION... [--force]", delete_opts, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    if (a.n_pos == 0) {
        cli_args_free(&a);
        return cli_usage_error("registry delete", NULL, "expected NAME/VERSION (e.g. main.demo.model/2)");
    }
    bool json = cli_has(&a, "json"), force = cli_has(&a, "force");
    ft_store *s;
    int rc = run_open_store_args("registry", &a, &s);
    if (rc)
        return rc;
    json_t *done = json_array();
    for (size_t i = 0; i < a.n_pos; i++) {
        ft_err err;
        ft_status st = ft_registry_delete(s, NULL, a.pos[i], force, &err);
        if (st == FT_OK) {
            json_array_append_new(done, json_string(a.pos[i]));
            if (!json)
                printf("deleted %s\n", a.pos[i]);
        } else {
            int r2 = cli_report("registry delete", &err);
            rc = rc ? rc : r2;
        }
    }
    if (json) {
        char *t = ft_json_dumps(done, 0);
        printf("%s\n", t ? t : "[]");
        free(t);
    }
    json_decref(done);
    ft_store_close(s);
    cli_args_free(&a);
    return rc;
}

int cmd_registry(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "delete"))
        return registry_delete(argc - 1, argv + 1);
    if (argc < 1 || (strcmp(argv[0], "list") && strcmp(argv[0], "show"))) {
        if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
            printf("usage: ftune registry list [--json]\n       ftune registry show NAME[/VERSION] [--json]\n"
                   "       ftune registry delete NAME/VERSION... [--force] [--json]\n");
            return CLI_EXIT_OK;
        }
        return cli_usage_error("registry", NULL,
                               "expected `registry list`, `registry show NAME[/VERSION]` or `registry delete "
                               "NAME/VERSION`");
    }
    bool show = !strcmp(argv[0], "show");
    cli_args a;
    int prc = cli_parse(&a, show ? "registry show" : "registry list", show ? "NAME[/VERSION]" : "", NULL, argc - 1,
                        argv + 1);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    if (show ? a.n_pos != 1 : a.n_pos != 0) {
        cli_args_free(&a);
        return cli_usage_error("registry", NULL, show ? "show: expected one model name" : "list takes no arguments");
    }
    bool json = cli_has(&a, "json");
    ft_store *s;
    int rc = run_open_store_args("registry", &a, &s);
    if (rc)
        return rc;
    ft_model_version *v;
    size_t n;
    ft_err err;
    ft_status st = show ? ft_registry_show(s, a.pos[0], &v, &n, &err) : ft_registry_list(s, &v, &n, &err);
    if (st != FT_OK) {
        rc = cli_report("registry", &err);
    } else {
        if (json) {
            json_t *out;
            if (show) {
                out = json_object();
                json_object_set_new(out, "name", json_string(n ? v[0].name : a.pos[0]));
                json_t *vs = json_array();
                for (size_t i = 0; i < n; i++) {
                    json_t *o = ft_model_version_to_json(&v[i]);
                    json_object_del(o, "name");
                    json_array_append_new(vs, o);
                }
                json_object_set_new(out, "versions", vs);
            } else {
                out = json_array();
                for (size_t i = 0; i < n; i++) {
                    json_t *o = json_object();
                    json_object_set_new(o, "name", json_string(v[i].name));
                    json_object_set_new(o, "latest_version", json_integer(v[i].version));
                    json_object_set_new(o, "path", json_string(v[i].path));
                    json_array_append_new(out, o);
                }
            }
            char *t = ft_json_dumps(out, 0);
            printf("%s\n", t ? t : "{}");
            free(t);
            json_decref(out);
        } else {
            print_versions_human(v, n, !show);
            if (show)
                for (size_t i = 0; i < n; i++)
                    printf("  v%lld metrics %s  tokenizer %s%s%s\n", (long long)v[i].version,
                           v[i].metrics_json ? v[i].metrics_json : "{}", v[i].tokenizer_hash ? v[i].tokenizer_hash : "-",
                           v[i].checkpoint ? "  from " : "", v[i].checkpoint ? v[i].checkpoint : "");
        }
        ft_model_version_list_free(v, n);
    }
    ft_store_close(s);
    cli_args_free(&a);
    return rc;
}
