/* train/ckpt.c: crash-safe checkpoint folders (ftune/ckpt.h, SPEC §4). Files are written into a
 * temporary folder, listed with sizes and hashes in MANIFEST.json, fsynced, and the folder is
 * renamed into place before `latest` moves; readers trust only folders whose manifest checks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ftune/ckpt.h"
#include "ftune/json.h"

#define MANIFEST "MANIFEST.json"

/* ---------------------------------------------------------------- names and hashing */

bool ft_ckpt_parse_name(const char *name, int64_t *epoch, int64_t *batch) {
    long long e, b;
    int n = 0;
    if (!name || sscanf(name, "ep%lld-ba%lld%n", &e, &b, &n) != 2 || name[n] != 0 || e < 0 || b < 0)
        return false;
    /* Only canonical spellings ("ep01" is not ours). */
    char back[64];
    snprintf(back, sizeof back, "ep%lld-ba%lld", e, b);
    if (strcmp(back, name))
        return false;
    if (epoch)
        *epoch = e;
    if (batch)
        *batch = b;
    return true;
}

/* A 64-bit hash over 8-byte words (multiply-xorshift mixing), fast enough that verifying a
 * checkpoint costs about as much as reading it. Not cryptographic: it catches torn and
 * truncated writes and bit rot, not tampering. */
static uint64_t mix(uint64_t h, uint64_t w) {
    h ^= w * 0x9E3779B97F4A7C15ull;
    h = (h << 27) | (h >> 37);
    return h * 0xBF58476D1CE4E5B9ull + 0x94D049BB133111EBull;
}

ft_status ft_ckpt_hash_file(const char *path, uint64_t *hash, int64_t *size, ft_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FT_ERR_AT(err, errno == ENOENT ? FT_ERR_NOT_FOUND : FT_ERR_IO, path, 0, 0, "cannot open: %s",
                         strerror(errno));
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = ft_malloc(CHUNK);
    if (!buf) {
        close(fd);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    uint64_t h = 0x84222325CBF29CE4ull;
    int64_t total = 0;
    size_t have = 0; /* bytes in buf not yet hashed (< 8 carried over between reads) */
    ft_status s = FT_OK;
    for (;;) {
        ssize_t r = read(fd, buf + have, CHUNK - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            s = FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "read failed: %s", strerror(errno));
            break;
        }
        if (r == 0)
            break;
        total += r;
        have += (size_t)r;
        size_t words = have / 8;
        for (size_t i = 0; i < words; i++) {
            uint64_t w;
            memcpy(&w, buf + 8 * i, 8);
            h = mix(h, w);
        }
        memmove(buf, buf + 8 * words, have - 8 * words);
        have -= 8 * words;
    }
    if (s == FT_OK) {
        uint64_t w = 0;
        memcpy(&w, buf, have);
        h = mix(mix(h, w), (uint64_t)total);
        *hash = h;
        if (size)
            *size = total;
    }
    ft_free(buf);
    close(fd);
    return s;
}

/* ---------------------------------------------------------------- writing */

static bool pid_dead(long pid) { return kill((pid_t)pid, 0) != 0 && errno == ESRCH; }

static void remove_stale_tmps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, ".tmp-", 5))
            continue;
        /* "….PID": left by a writer that died (or by us); a live other writer's is kept. */
        char *p = ft_path_join(dir, de->d_name);
        if (p) {
            const char *dot = strrchr(de->d_name, '.');
            long pid = dot ? strtol(dot + 1, NULL, 10) : 0;
            if (pid <= 0 || pid == (long)getpid() || pid_dead(pid))
                ft_rm_rf(p, NULL);
        }
        ft_free(p);
    }
    closedir(d);
}

ft_status ft_ckpt_begin(const char *run_dir, int64_t epoch, int64_t batch, ft_ckpt_writer *w, ft_err *err) {
    memset(w, 0, sizeof *w);
    snprintf(w->checkpoints_dir, sizeof w->checkpoints_dir, "%s/checkpoints", run_dir);
    snprintf(w->name, sizeof w->name, "ep%lld-ba%lld", (long long)epoch, (long long)batch);
    snprintf(w->tmp_dir, sizeof w->tmp_dir, "%s/.tmp-%s.%ld", w->checkpoints_dir, w->name, (long)getpid());
    snprintf(w->final_dir, sizeof w->final_dir, "%s/%s", w->checkpoints_dir, w->name);
    FT_TRY(ft_mkdir_p(w->checkpoints_dir, err));
    remove_stale_tmps(w->checkpoints_dir);
    FT_TRY(ft_rm_rf(w->tmp_dir, err));
    if (mkdir(w->tmp_dir, 0755) != 0)
        return FT_ERR_AT(err, FT_ERR_IO, w->tmp_dir, 0, 0, "cannot create folder: %s", strerror(errno));
    return FT_OK;
}

char *ft_ckpt_path(const ft_ckpt_writer *w, const char *file) { return ft_path_join(w->tmp_dir, file); }

void ft_ckpt_abort(ft_ckpt_writer *w) {
    if (w->tmp_dir[0])
        ft_rm_rf(w->tmp_dir, NULL);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names of the regular files in a folder (caller frees each and the array). */
static ft_status list_files(const char *dir, char ***names, size_t *n, ft_err *err) {
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return FT_ERR_AT(err, FT_ERR_IO, dir, 0, 0, "cannot open folder: %s", strerror(errno));
    struct dirent *de;
    size_t cap = 0;
    ft_status s = FT_OK;
    while (s == FT_OK && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *p = ft_path_join(dir, de->d_name);
        struct stat st;
        bool reg = p && lstat(p, &st) == 0 && S_ISREG(st.st_mode);
        ft_free(p);
        if (!reg)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = ft_realloc(*names, cap * sizeof(char *));
            if (!nn) {
                s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                break;
            }
            *names = nn;
        }
        if (!((*names)[*n] = ft_strdup(de->d_name)))
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        else
            (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(*names, *n, sizeof(char *), cmp_str);
    return s;
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++)
        ft_free(names[i]);
    ft_free(names);
}

/* Point `latest` (symlink) and latest.txt at `name`, each replaced atomically. */
static ft_status move_latest(const char *cdir, const char *name, ft_err *err) {
    char link_path[1300], tmp_link[1300], txt[1300], line[80];
    snprintf(link_path, sizeof link_path, "%s/latest", cdir);
    snprintf(tmp_link, sizeof tmp_link, "%s/.latest.tmp.%ld", cdir, (long)getpid());
    unlink(tmp_link);
    if (symlink(name, tmp_link) != 0)
        return FT_ERR_AT(err, FT_ERR_IO, tmp_link, 0, 0, "cannot create symlink: %s", strerror(errno));
    if (rename(tmp_link, link_path) != 0) {
        unlink(tmp_link);
        return FT_ERR_AT(err, FT_ERR_IO, link_path, 0, 0, "cannot replace: %s", strerror(errno));
    }
    snprintf(txt, sizeof txt, "%s/latest.txt", cdir);
    int n = snprintf(line, sizeof line, "%s\n", name);
    FT_TRY(ft_file_write_atomic(txt, line, (size_t)n, err));
    return ft_fsync_path(cdir, err);
}

ft_status ft_ckpt_commit(ft_ckpt_writer *w, ft_err *err) {
    char **names = NULL;
    size_t n = 0;
    ft_status s = list_files(w->tmp_dir, &names, &n, err);
    json_t *files = json_array();
    for (size_t i = 0; s == FT_OK && i < n; i++) {
        if (!strcmp(names[i], MANIFEST))
            continue;
        char *p = ft_path_join(w->tmp_dir, names[i]);
        uint64_t h = 0;
        int64_t size = 0;
        s = p ? ft_fsync_path(p, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        if (s == FT_OK)
            s = ft_ckpt_hash_file(p, &h, &size, err);
        ft_free(p);
        if (s == FT_OK) {
            char hx[24];
            snprintf(hx, sizeof hx, "%016llx", (unsigned long long)h);
            json_array_append_new(files, json_pack("{s:s, s:I, s:s}", "name", names[i], "size", (json_int_t)size,
                                                   "hash", hx));
        }
    }
    free_names(names, n);
    if (s == FT_OK) {
        json_t *m = json_pack("{s:s, s:i, s:o}", "checkpoint", w->name, "format", 1, "files", files);
        files = NULL;
        char *text = ft_json_dumps(m, 2);
        json_decref(m);
        char *mp = ft_path_join(w->tmp_dir, MANIFEST);
        if (!text || !mp)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        else
            s = ft_file_write_atomic(mp, text, strlen(text), err);
        free(text);
        ft_free(mp);
    }
    json_decref(files);
    if (s == FT_OK)
        s = ft_fsync_path(w->tmp_dir, err);
    if (s == FT_OK && ft_path_exists(w->final_dir)) {
        /* Same name again (a resumed run saving where it stopped): move the old one aside first so
         * that the rename below cannot fail on a non-empty target. `latest` may name it; it is
         * moved to the new one right after. */
        char old[1300];
        snprintf(old, sizeof old, "%s/.tmp-old-%s.%ld", w->checkpoints_dir, w->name, (long)getpid());
        ft_rm_rf(old, NULL);
        if (rename(w->final_dir, old) != 0)
            s = FT_ERR_AT(err, FT_ERR_IO, w->final_dir, 0, 0, "cannot move aside: %s", strerror(errno));
    }
    if (s == FT_OK && rename(w->tmp_dir, w->final_dir) != 0)
        s = FT_ERR_AT(err, FT_ERR_IO, w->final_dir, 0, 0, "cannot rename %s into place: %s", w->tmp_dir,
                      strerror(errno));
    if (s == FT_OK)
        s = ft_fsync_path(w->checkpoints_dir, err);
    if (s == FT_OK)
        s = move_latest(w->checkpoints_dir, w->name, err);
    if (s != FT_OK)
        ft_ckpt_abort(w);
    else
        remove_stale_tmps(w->checkpoints_dir);
    return s;
}

/* ---------------------------------------------------------------- reading */

ft_status ft_ckpt_verify(const char *dir, bool deep, ft_err *err) {
    char *mp = ft_path_join(dir, MANIFEST);
    if (!mp)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    json_t *m = NULL;
    ft_status s = FT_OK;
    if (!ft_path_is_dir(dir))
        s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, dir, 0, 0, "checkpoint folder does not exist");
    else if (!ft_path_exists(mp))
        s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, dir, 0, 0, "checkpoint is incomplete: " MANIFEST " is missing");
    else
        s = ft_json_load_file(mp, &m, err);
    ft_free(mp);
    json_t *files = m ? json_object_get(m, "files") : NULL;
    if (s == FT_OK && !json_is_array(files))
        s = FT_ERR_AT(err, FT_ERR_PARSE, dir, 0, 0, MANIFEST " has no \"files\" list");
    size_t i;
    json_t *f;
    if (s == FT_OK)
        json_array_foreach(files, i, f) {
            const char *name = json_string_value(json_object_get(f, "name"));
            const char *hx = json_string_value(json_object_get(f, "hash"));
            json_t *sz = json_object_get(f, "size");
            /* a plain file name of this folder: never "", ".", ".." or a path */
            if (!name || !hx || !json_is_integer(sz) || !*name || strchr(name, '/') || !strcmp(name, ".") ||
                !strcmp(name, "..")) {
                s = FT_ERR_AT(err, FT_ERR_PARSE, dir, 0, 0, MANIFEST " entry %zu is malformed", i);
                break;
            }
            char *p = ft_path_join(dir, name);
            struct stat st;
            if (!p) {
                s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            } else if (stat(p, &st) != 0) {
                s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, dir, 0, 0, "checkpoint is missing %s", name);
            } else if ((int64_t)st.st_size != (int64_t)json_integer_value(sz)) {
                s = FT_ERR_AT(err, FT_ERR_PARSE, dir, 0, 0, "%s is %s (%lld of %lld bytes)", name,
                              (int64_t)st.st_size < (int64_t)json_integer_value(sz) ? "truncated" : "too long",
                              (long long)st.st_size, (long long)json_integer_value(sz));
            } else if (deep) {
                uint64_t h;
                s = ft_ckpt_hash_file(p, &h, NULL, err);
                char got[24];
                snprintf(got, sizeof got, "%016llx", (unsigned long long)h);
                if (s == FT_OK && strcmp(got, hx))
                    s = FT_ERR_AT(err, FT_ERR_PARSE, dir, 0, 0, "%s is corrupt (content hash %s, expected %s)", name,
                                  got, hx);
            }
            ft_free(p);
            if (s != FT_OK)
                break;
        }
    json_decref(m);
    if (s != FT_OK && err && !strstr(err->msg, "checkpoint"))
        ft_err_prefix(err, "checkpoint");
    return s;
}

/* The name `latest` gives (symlink first, then latest.txt); NULL if neither is usable. */
static char *read_latest_name(const char *cdir, ft_buf *why) {
    char p[1300], target[256];
    snprintf(p, sizeof p, "%s/latest", cdir);
    ssize_t n = readlink(p, target, sizeof target - 1);
    if (n > 0) {
        target[n] = 0;
        const char *base = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
        if (ft_ckpt_parse_name(base, NULL, NULL))
            return ft_strdup(base);
        if (why) /* optional: ft_ckpt_prune passes none */
            ft_buf_appendf(why, "latest points to \"%s\", which is not a checkpoint name", target);
    }
    snprintf(p, sizeof p, "%s/latest.txt", cdir);
    char *text = NULL;
    size_t len = 0;
    if (ft_file_read_all(p, &text, &len, NULL) != FT_OK)
        return NULL;
    ft_sv sv = ft_sv_trim(ft_sv_from(text, len));
    char *name = ft_strndup(sv.p, sv.n);
    ft_free(text);
    if (name && !ft_ckpt_parse_name(name, NULL, NULL)) {
        if (why)
            ft_buf_appendf(why, "%slatest.txt names \"%.60s\", which is not a checkpoint name", why->len ? "; " : "",
                           name);
        ft_free(name);
        return NULL;
    }
    return name;
}

typedef struct {
    char *name;
    int64_t batch;
} named;

static int cmp_named_desc(const void *a, const void *b) {
    const named *x = a, *y = b;
    return x->batch < y->batch ? 1 : x->batch > y->batch ? -1 : strcmp(y->name, x->name);
}

/* Complete-looking checkpoint folders (by name), newest first. */
static ft_status list_ckpts(const char *cdir, named **out, size_t *n, ft_err *err) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(cdir);
    if (!d)
        return errno == ENOENT ? FT_OK : FT_ERR_AT(err, FT_ERR_IO, cdir, 0, 0, "cannot open: %s", strerror(errno));
    struct dirent *de;
    size_t cap = 0;
    ft_status s = FT_OK;
    while ((de = readdir(d))) {
        int64_t e, b;
        if (!ft_ckpt_parse_name(de->d_name, &e, &b))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            named *nn = ft_realloc(*out, cap * sizeof(named));
            if (!nn) {
                s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                break;
            }
            *out = nn;
        }
        (*out)[*n].name = ft_strdup(de->d_name);
        (*out)[*n].batch = b;
        if ((*out)[*n].name)
            (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof(named), cmp_named_desc);
    return s;
}

static void free_named(named *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        ft_free(v[i].name);
    ft_free(v);
}

static void note(ft_buf *notes, const char *fmt, const char *a, const char *b) {
    char line[2400];
    snprintf(line, sizeof line, fmt, a, b);
    if (notes) /* the caller reports them (the resume turns them into a WARN event) */
        ft_buf_appendf(notes, "%s\n", line);
    else
        FT_LOG_WARN("%s", line);
}

ft_status ft_ckpt_find_latest(const char *run_dir, bool deep, char **out, ft_buf *notes, ft_err *err) {
    *out = NULL;
    char cdir[1100];
    snprintf(cdir, sizeof cdir, "%s/checkpoints", run_dir);
    ft_buf why = {0};
    char *lname = read_latest_name(cdir, &why);
    ft_err e2;
    if (lname) {
        char *p = ft_path_join(cdir, lname);
        if (p && ft_ckpt_verify(p, deep, &e2) == FT_OK) {
            *out = p;
            ft_free(lname);
            ft_buf_free(&why);
            return FT_OK;
        }
        if (p) {
            char m[1600];
            ft_err_format(&e2, m, sizeof m);
            note(notes, "%s; looking for an older complete checkpoint%s", m, "");
        }
        ft_free(p);
    } else if (why.len) {
        note(notes, "%s; looking for an older complete checkpoint%s", ft_buf_cstr(&why), "");
    }
    ft_buf_free(&why);
    named *v = NULL;
    size_t n = 0;
    FT_TRY(list_ckpts(cdir, &v, &n, err));
    for (size_t i = 0; i < n; i++) {
        if (lname && !strcmp(v[i].name, lname))
            continue; /* already rejected above */
        char *p = ft_path_join(cdir, v[i].name);
        if (p && ft_ckpt_verify(p, deep, &e2) == FT_OK) {
            *out = p;
            break;
        }
        if (p) {
            char m[1600];
            ft_err_format(&e2, m, sizeof m);
            note(notes, "skipping %s%s", m, "");
        }
        ft_free(p);
    }
    free_named(v, n);
    ft_free(lname);
    if (!*out)
        return FT_ERR_AT(err, FT_ERR_NOT_FOUND, cdir, 0, 0, "no complete checkpoint");
    return FT_OK;
}

ft_status ft_ckpt_resolve(const char *path_in, char **out, ft_err *err) {
    *out = NULL;
    char *path = NULL;
    ft_status s = ft_path_map(path_in, &path, err);
    if (s != FT_OK)
        return s;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char *parent = ft_strndup(path, (size_t)(base - path) > 0 ? (size_t)(base - path) - 1 : 0);
    if (!parent) {
        ft_free(path);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (!strcmp(base, "latest") || !strcmp(base, "latest.txt")) {
        /* A pointer: resolve within its checkpoints folder (the run folder is its parent). */
        char *run = ft_strndup(parent, strrchr(parent, '/') ? (size_t)(strrchr(parent, '/') - parent) : 0);
        s = run ? ft_ckpt_find_latest(*run ? run : ".", true, out, NULL, err) : FT_ERR(err, FT_ERR_NOMEM, "oom");
        ft_free(run);
    } else if (ft_ckpt_parse_name(base, NULL, NULL) && ft_path_is_dir(path)) {
        s = ft_ckpt_verify(path, true, err);
        if (s == FT_OK)
            *out = ft_strdup(path);
    } else if (!strcmp(base, "checkpoints") && ft_path_is_dir(path)) {
        s = ft_ckpt_find_latest(*parent ? parent : ".", true, out, NULL, err);
    } else if (ft_path_is_dir(path)) {
        s = ft_ckpt_find_latest(path, true, out, NULL, err);
    } else {
        s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, path, 0, 0,
                      "custom_weights_path: not a checkpoint folder (.../checkpoints/ep2-ba30) or a latest pointer");
    }
    ft_free(parent);
    ft_free(path);
    return s;
}

ft_status ft_ckpt_prune(const char *run_dir, int64_t keep, ft_err *err) {
    if (keep <= 0)
        return FT_OK;
    char cdir[1100];
    snprintf(cdir, sizeof cdir, "%s/checkpoints", run_dir);
    char *lname = read_latest_name(cdir, NULL);
    named *v = NULL;
    size_t n = 0;
    ft_status s = list_ckpts(cdir, &v, &n, err);
    /* v is newest first: keep the first `keep`, plus whatever `latest` names. */
    for (size_t i = (size_t)keep; s == FT_OK && i < n; i++) {
        if (lname && !strcmp(v[i].name, lname))
            continue;
        char *p = ft_path_join(cdir, v[i].name);
        s = p ? ft_rm_rf(p, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        ft_free(p);
    }
    if (s == FT_OK)
        s = ft_fsync_path(cdir, err);
    free_named(v, n);
    ft_free(lname);
    return s;
}
