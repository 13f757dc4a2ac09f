/* data/fingerprint.c: what a data path was made of when a run started (issue #9): every file
 * its reader opens, with size, modification time and SHA-256 of the content, so that a resumed
 * run can tell that it would train on other data than the steps before it, and say which file
 * changed and how. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ftune/data.h"

ft_status ft_data_fingerprint(const char *path, ft_task_type task, json_t **out, ft_err *err) {
    *out = NULL;
    ft_reader *r = NULL;
    FT_TRY(ft_reader_open(path, task, NULL, &r, err));
    json_t *files = json_array();
    ft_status s = files ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; s == FT_OK && i < r->n_sources; i++) {
        const char *p = r->source_paths[i];
        struct stat st;
        if (stat(p, &st) != 0) {
            s = FT_ERR_AT(err, FT_ERR_IO, p, 0, 0, "cannot stat the data file");
            break;
        }
        if (!S_ISREG(st.st_mode)) { /* /dev/zero, a FIFO: no end to hash */
            s = FT_ERR_AT(err, FT_ERR_UNSUPPORTED, p, 0, 0, "not a regular file: its content cannot be fingerprinted");
            break;
        }
        char hex[65];
        int64_t size = 0;
        s = ft_sha256_file(p, hex, &size, err);
        if (s != FT_OK)
            break;
        double mtime = (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
        json_t *f = json_pack("{s:s, s:I, s:f, s:s}", "path", p, "size", (json_int_t)size, "mtime", mtime, "sha256",
                              hex);
        if (!f || json_array_append_new(files, f) != 0)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    ft_reader_free(r);
    if (s == FT_OK) {
        *out = json_pack("{s:s, s:o}", "path", path, "files", files);
        if (!*out)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    } else {
        json_decref(files);
    }
    return s;
}

static void fmt_time(double t, char *buf, size_t cap) {
    time_t secs = (time_t)t;
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *find_file(const json_t *fp, const char *path) {
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(fp, "files"), i, f) {
        const char *p = json_string_value(json_object_get(f, "path"));
        if (p && !strcmp(p, path))
            return f;
    }
    return NULL;
}

int ft_data_fingerprint_compare(const json_t *before, const json_t *now, ft_buf *changes) {
    int content = 0;
    size_t n_lines = 0;
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(before, "files"), i, f) {
        const char *p = json_string_value(json_object_get(f, "path"));
        if (!p)
            continue;
        json_t *g = find_file(now, p);
        if (!g) {
            ft_buf_appendf(changes, "%s%s: no longer part of the data (removed or renamed)", n_lines++ ? "\n" : "", p);
            content++;
            continue;
        }
        int64_t s0 = json_integer_value(json_object_get(f, "size")), s1 = json_integer_value(json_object_get(g, "size"));
        double t0 = json_number_value(json_object_get(f, "mtime")), t1 = json_number_value(json_object_get(g, "mtime"));
        const char *h0 = json_string_value(json_object_get(f, "sha256")), *h1 = json_string_value(json_object_get(g, "sha256"));
        bool size_changed = s0 != s1, hash_changed = !h0 || !h1 || strcmp(h0, h1), time_changed = t0 != t1;
        if (!size_changed && !hash_changed && !time_changed)
            continue;
        ft_buf_appendf(changes, "%s%s:", n_lines++ ? "\n" : "", p);
        if (size_changed)
            ft_buf_appendf(changes, " size %lld -> %lld bytes;", (long long)s0, (long long)s1);
        if (time_changed) {
            char a[40], b[40];
            fmt_time(t0, a, sizeof a);
            fmt_time(t1, b, sizeof b);
            ft_buf_appendf(changes, " modified %s -> %s;", a, b);
        }
        if (hash_changed)
            ft_buf_appendf(changes, " sha256 %.12s... -> %.12s...", h0 ? h0 : "?", h1 ? h1 : "?");
        else
            ft_buf_appendf(changes, " same content (sha256 %.12s...)", h0);
        content += hash_changed || size_changed;
    }
    json_array_foreach(json_object_get(now, "files"), i, f) {
        const char *p = json_string_value(json_object_get(f, "path"));
        if (p && !find_file(before, p)) {
            ft_buf_appendf(changes, "%s%s: new in the data", n_lines++ ? "\n" : "", p);
            content++;
        }
    }
    return content;
}
