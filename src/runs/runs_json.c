/* runs/runs_json.c: the JSON objects of runs that the CLI prints (`get --json`, `create --json`)
 * and the server serves (GET /api/runs/{name}, .../checkpoints, .../evaluations): one writer for
 * both faces. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/json.h"
#include "ftune/runs.h"

json_t *ft_runs_checkpoints_json(ft_store *s, const char *run) {
    json_t *cks = json_array();
    ft_checkpoint_row *ck;
    size_t n;
    if (ft_store_checkpoint_list(s, run, &ck, &n, NULL) != FT_OK)
        return cks;
    for (size_t i = 0; i < n; i++) {
        if (!ck[i].path || !ft_path_exists(ck[i].path)) /* removed by keep_checkpoints */
            continue;
        char t[40];
        ft_store_format_time(ck[i].time, t, sizeof t);
        json_array_append_new(cks, json_pack("{s:s, s:s, s:I, s:I, s:s}", "name", ck[i].name, "path", ck[i].path,
                                             "step", (json_int_t)ck[i].step, "epoch", (json_int_t)ck[i].epoch,
                                             "created", t));
    }
    ft_checkpoint_list_free(ck, n);
    return cks;
}

static int cmp_eval_step(const void *a, const void *b) {
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "step"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "step"));
    return x < y ? -1 : x > y;
}

json_t *ft_runs_evaluations_json(const char *run_dir) {
    json_t *arr = json_array();
    char *edir = run_dir ? ft_path_join(run_dir, "eval") : NULL;
    DIR *d = edir ? opendir(edir) : NULL;
    json_t **items = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".json") || de->d_name[0] == '.')
            continue;
        char *path = ft_path_join(edir, de->d_name);
        json_t *j = NULL;
        if (path && ft_json_load_file(path, &j, NULL) == FT_OK && json_is_object(j)) {
            json_object_set_new(j, "path", json_string(path));
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 8;
                json_t **ni = ft_realloc(items, nc * sizeof *ni);
                if (!ni) {
                    json_decref(j);
                    ft_free(path);
                    break;
                }
                items = ni;
                cap = nc;
            }
            items[n++] = j;
        } else {
            json_decref(j);
        }
        ft_free(path);
    }
    if (d)
        closedir(d);
    if (n)
        qsort(items, n, sizeof *items, cmp_eval_step);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, items[i]);
    ft_free(items);
    ft_free(edir);
    return arr;
}

bool ft_runs_precision(ft_store *s, const char *run, char *dtype, size_t dtype_size, char *route, size_t route_size) {
    dtype[0] = route[0] = 0;
    ft_event *ev;
    size_t n;
    if (ft_store_event_list(s, run, 0, &ev, &n, NULL) != FT_OK)
        return false;
    bool found = false;
    for (size_t i = n; i-- > 0 && !found;) {
        if (strcmp(ev[i].type, "MODEL_INITIALIZED") || !ev[i].message)
            continue;
        const char *p = strstr(ev[i].message, "dtype ");
        char d[16], r[32];
        if (p && sscanf(p, "dtype %15[a-z0-9] (GEMM route %31[a-z0-9-]", d, r) == 2) {
            snprintf(dtype, dtype_size, "%s", d);
            snprintf(route, route_size, "%s", r);
            found = true;
        }
    }
    ft_event_list_free(ev, n);
    return found;
}

bool ft_runs_world(const ft_run *r, int64_t *world_size, json_t **hosts) {
    json_error_t je;
    json_t *cfg = r->config_json ? json_loads(r->config_json, 0, &je) : NULL;
    json_t *ws = cfg ? json_object_get(cfg, "world_size") : NULL;
    json_t *hs = cfg ? json_object_get(cfg, "hosts") : NULL;
    bool known = false;
    if (ws || hs) {
        /* recorded: trust it only when well formed */
        bool ok = json_is_integer(ws) && json_integer_value(ws) > 0 && (!hs || json_is_array(hs));
        for (size_t i = 0; ok && hs && i < json_array_size(hs); i++)
            ok = json_is_string(json_array_get(hs, i));
        if (ok) {
            *world_size = (int64_t)json_integer_value(ws);
            *hosts = hs ? json_deep_copy(hs) : json_array();
            known = true;
        }
    } else if (r->started > 0) {
        *world_size = 1;
        *hosts = json_array();
        if (r->host)
            json_array_append_new(*hosts, json_string(r->host));
        known = true;
    }
    json_decref(cfg);
    return known;
}

json_t *ft_runs_run_json_full(ft_store *s, const ft_run *r) {
    json_t *j = ft_run_to_json(r);
    char dt[16], route[32];
    if (ft_runs_precision(s, r->name, dt, sizeof dt, route, sizeof route)) {
        json_object_set_new(j, "dtype", json_string(dt));
        json_object_set_new(j, "gemm_route", json_string(route));
    }
    int64_t world;
    json_t *hosts;
    if (ft_runs_world(r, &world, &hosts)) {
        json_object_set_new(j, "world_size", json_integer((json_int_t)world));
        json_object_set_new(j, "hosts", hosts);
    }
    json_object_set_new(j, "checkpoints", ft_runs_checkpoints_json(s, r->name));
    json_object_set_new(j, "evaluations", ft_runs_evaluations_json(r->run_dir));
    return j;
}
