/* store/registry.c: the model registry (SPEC §1): three-level names catalog.schema.model, each
 * registration a new version whose files are a clone of a run's exported HF folder under
 * $FTUNE_HOME/registry/<catalog>/<schema>/<model>/<version>/.
 *
 * Crash safety: the clone is written into a hidden temporary folder (.incoming-<pid>-<time>)
 * beside the versions and every file fsynced; inside the IMMEDIATE transaction that picks the
 * version number the folder is renamed to that number (never over an existing one) and the row
 * inserted. A crash leaves at most a temporary folder of a dead process, which the next command
 * removes (ft_registry_clean_incoming), or a version folder without a row, which is kept.
 *
 * Numbering (issue #9): the next version is one above the highest the store has recorded (rows,
 * and the highest ever given, so a deleted version's number is not reused) and the highest
 * version folder on disk, so that an emptied or lost ftune.db can never make a registration
 * overwrite a registered model. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_internal.h"

/* ---------------------------------------------------------------- names */

static bool name_part_ok(const char *p, size_t n) {
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Why `name` is not catalog.schema.model (NULL when it is), into buf. */
static const char *name_problem(const char *name, char *buf, size_t cap) {
    static const char *const part_names[] = {"catalog", "schema", "model"};
    size_t parts = 1;
    for (const char *p = name; *p; p++)
        parts += *p == '.';
    if (parts != 3) {
        snprintf(buf, cap, "it has %zu part%s separated by '.', not 3", parts, parts == 1 ? "" : "s");
        return buf;
    }
    const char *p = name;
    for (int k = 0; k < 3; k++) {
        const char *e = strchr(p, '.');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0) {
            snprintf(buf, cap, "the %s part is empty", part_names[k]);
            return buf;
        }
        if (n > 128) {
            snprintf(buf, cap, "the %s part is %zu characters long; at most 128 are allowed", part_names[k], n);
            return buf;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-')) {
                if (c > 32 && c < 127)
                    snprintf(buf, cap, "the %s part has the character '%c'", part_names[k], c);
                else
                    snprintf(buf, cap, "the %s part has the byte 0x%02X", part_names[k], c);
                return buf;
            }
        }
        p += n + 1;
    }
    return NULL;
}

ft_status ft_registry_check_name(const char *name, ft_err *err) {
    char why[160];
    if (!name_problem(name, why, sizeof why))
        return FT_OK;
    size_t len = strlen(name);
    return FT_ERR(err, FT_ERR_INVALID,
                  "\"%.60s%s\" is not a registered model name: %s (expected catalog.schema.model, each part 1 to "
                  "128 letters, digits, '_' or '-')",
                  name, len > 60 ? "..." : "", why);
}

/* "c.s.n" -> "c/s/n" (caller frees). */
static char *name_to_rel(const char *name) {
    char *r = ft_strdup(name);
    if (!r)
        return NULL;
    for (char *p = r; *p; p++)
        if (*p == '.')
            *p = '/';
    return r;
}

/* ---------------------------------------------------------------- copying */

/* Copy a folder tree (regular files and folders; symlinks are followed, so `latest`-style links
 * become plain copies). Every file is fsynced by ft_file_copy; folders after their contents. */
static ft_status copy_tree(const char *src, const char *dst, int depth, ft_err *err) {
    if (depth > 16)
        return FT_ERR(err, FT_ERR_LIMIT, "%s: folders nested too deep to copy", src);
    FT_TRY(ft_mkdir_p(dst, err));
    DIR *d = opendir(src);
    if (!d)
        return FT_ERR_AT(err, errno == ENOENT ? FT_ERR_NOT_FOUND : FT_ERR_IO, src, 0, 0, "cannot open folder: %s",
                         strerror(errno));
    ft_status st = FT_OK;
    struct dirent *e;
    while (st == FT_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *s = ft_path_join(src, e->d_name), *t = ft_path_join(dst, e->d_name);
        if (!s || !t)
            st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        struct stat sb;
        if (st == FT_OK && stat(s, &sb) != 0)
            st = FT_ERR_AT(err, FT_ERR_IO, s, 0, 0, "cannot stat: %s", strerror(errno));
        if (st == FT_OK) {
            if (S_ISDIR(sb.st_mode))
                st = copy_tree(s, t, depth + 1, err);
            else if (S_ISREG(sb.st_mode))
                st = ft_file_copy(s, t, err);
        }
        ft_free(s);
        ft_free(t);
    }
    closedir(d);
    if (st == FT_OK)
        st = ft_fsync_path(dst, err);
    return st;
}

/* FNV-1a 64 over the tokenizer files: enough to tell whether two versions share a tokenizer and
 * chat template (tokenizer_config.json's, or chat_template.jinja beside it), which is all the hash is for (not a security property). */
static void hash_file(const char *dir, const char *file, uint64_t *h, bool *any) {
    char *p = ft_path_join(dir, file), *data = NULL;
    size_t n = 0;
    if (p && ft_file_read_all(p, &data, &n, NULL) == FT_OK) {
        for (size_t i = 0; i < n; i++) {
            *h ^= (unsigned char)data[i];
            *h *= 1099511628211ull;
        }
        *any = true;
    }
    ft_free(data);
    ft_free(p);
}

/* ---------------------------------------------------------------- temporary folders */

/* Whether `pid` is a live ftune process. A pid that is not alive, or that now belongs to a
 * program other than ftune (a recycled pid), is not. */
static bool ftune_pid_alive(long pid) {
    if (pid <= 0)
        return false;
    if (pid == (long)getpid())
        return true;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return false;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true; /* cannot tell: assume it is */
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0; /* argv[0] ends at the first NUL */
    const char *base = strrchr(buf, '/');
    return n == 0 || strstr(base ? base + 1 : buf, "ftune") != NULL;
}

/* The pid in ".incoming-<pid>-..." or ".deleting-<pid>-...", or 0 when the name is neither. */
static long temp_pid(const char *name) {
    const char *p = !strncmp(name, ".incoming-", 10) ? name + 10 : !strncmp(name, ".deleting-", 10) ? name + 10 : NULL;
    if (!p || *p < '0' || *p > '9')
        return 0;
    return strtol(p, NULL, 10);
}

/* In one model folder: remove the temporary folders of dead processes; *busy (may be NULL) says
 * whether a live process has one (a registration or deletion in progress). */
static ft_status clean_model_dir(const char *dir, bool *busy, ft_err *err) {
    if (busy)
        *busy = false;
    DIR *d = opendir(dir);
    if (!d)
        return FT_OK;
    ft_status st = FT_OK;
    for (struct dirent *e; (e = readdir(d));) {
        long pid = temp_pid(e->d_name);
        if (!pid)
            continue;
        if (ftune_pid_alive(pid)) {
            if (busy)
                *busy = true;
            continue;
        }
        char *p = ft_path_join(dir, e->d_name);
        ft_status s2 = p ? ft_rm_rf(p, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        if (s2 != FT_OK && st == FT_OK)
            st = s2;
        ft_free(p);
    }
    closedir(d);
    return st;
}

/* The subfolders of `dir` whose names are registry name parts (caller frees with the count). */
static char **list_parts(const char *dir, size_t *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char **v = NULL;
    size_t cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!name_part_ok(e->d_name, strlen(e->d_name)))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = ft_realloc(v, cap * sizeof *nv);
            if (!nv)
                break;
            v = nv;
        }
        v[*n] = ft_path_join(dir, e->d_name);
        if (v[*n])
            (*n)++;
    }
    closedir(d);
    return v;
}

static void free_parts(char **v, size_t n) {
    for (size_t i = 0; i < n; i++)
        ft_free(v[i]);
    ft_free(v);
}

ft_status ft_registry_clean_incoming(const char *home, ft_err *err) {
    char *home_owned = home ? NULL : ft_home_dir();
    if (!home)
        home = home_owned;
    char *reg = home ? ft_path_join(home, "registry") : NULL;
    ft_status st = reg ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    size_t nc = 0, ns, nm;
    char **cats = reg ? list_parts(reg, &nc) : NULL;
    for (size_t i = 0; i < nc; i++) {
        char **schemas = list_parts(cats[i], &ns);
        for (size_t j = 0; j < ns; j++) {
            char **models = list_parts(schemas[j], &nm);
            for (size_t k = 0; k < nm; k++) {
                ft_status s2 = clean_model_dir(models[k], NULL, err);
                if (s2 != FT_OK && st == FT_OK)
                    st = s2;
            }
            free_parts(models, nm);
        }
        free_parts(schemas, ns);
    }
    free_parts(cats, nc);
    ft_free(reg);
    ft_free(home_owned);
    return st;
}

/* The highest numeric version folder in a model's folder (0 when none). */
static int64_t max_version_folder(const char *root) {
    int64_t best = 0;
    DIR *d = opendir(root);
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        const char *p = e->d_name;
        if (*p < '1' || *p > '9')
            continue;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (*end == 0 && v > best)
            best = v;
    }
    closedir(d);
    return best;
}

/* rename(2) that never replaces: a version folder is never overwritten, not even an empty one. */
static int rename_noreplace(const char *from, const char *to) {
#ifdef RENAME_NOREPLACE
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS) /* a file system without the flag falls through */
        return -1;
#endif
    struct stat st;
    if (lstat(to, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(from, to);
}

/* ---------------------------------------------------------------- versions */

void ft_model_version_deinit(ft_model_version *v) {
    if (!v)
        return;
    ft_free(v->name);
    ft_free(v->path);
    ft_free(v->run);
    ft_free(v->checkpoint);
    ft_free(v->metrics_json);
    ft_free(v->tokenizer_hash);
    memset(v, 0, sizeof *v);
}

void ft_model_version_list_free(ft_model_version *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        ft_model_version_deinit(&v[i]);
    ft_free(v);
}

json_t *ft_model_version_to_json(const ft_model_version *v) {
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(v->name ? v->name : ""));
    json_object_set_new(o, "version", json_integer(v->version));
    json_object_set_new(o, "path", json_string(v->path ? v->path : ""));
    json_object_set_new(o, "run", v->run ? json_string(v->run) : json_null());
    json_object_set_new(o, "checkpoint", v->checkpoint ? json_string(v->checkpoint) : json_null());
    json_object_set_new(o, "created", store_time_json(v->created));
    json_t *m = v->metrics_json ? json_loads(v->metrics_json, 0, NULL) : NULL;
    json_object_set_new(o, "metrics", m ? m : json_object());
    json_object_set_new(o, "tokenizer_hash", v->tokenizer_hash ? json_string(v->tokenizer_hash) : json_null());
    return o;
}

#define VERSION_COLS "name, version, path, run, checkpoint, metrics, tokenizer_hash, created"

static void read_version_row(sqlite3_stmt *st, ft_model_version *v) {
    memset(v, 0, sizeof *v);
    v->name = store_col_text(st, 0);
    v->version = sqlite3_column_int64(st, 1);
    v->path = store_col_text(st, 2);
    v->run = store_col_text(st, 3);
    v->checkpoint = store_col_text(st, 4);
    v->metrics_json = store_col_text(st, 5);
    v->tokenizer_hash = store_col_text(st, 6);
    v->created = sqlite3_column_double(st, 7);
}

static ft_status collect_versions(ft_store *s, sqlite3_stmt *st, ft_model_version **out, size_t *n, ft_err *err) {
    size_t cap = 0;
    ft_model_version *v = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            ft_model_version *nv = ft_realloc(v, cap * sizeof *nv);
            if (!nv) {
                ft_model_version_list_free(v, *n);
                *n = 0;
                sqlite3_finalize(st);
                return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            }
            v = nv;
        }
        read_version_row(st, &v[(*n)++]);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        ft_model_version_list_free(v, *n);
        *n = 0;
        return store_sql_err(s, err, "reading the registry");
    }
    *out = v;
    return FT_OK;
}

ft_status ft_registry_register(ft_store *s, const char *home, const char *name, const char *src_dir,
                               const char *run, const char *checkpoint, const char *metrics_json,
                               ft_model_version *out, ft_err *err) {
    if (out)
        memset(out, 0, sizeof *out);
    FT_TRY(ft_registry_check_name(name, err));
    if (!ft_path_is_dir(src_dir))
        return FT_ERR_AT(err, FT_ERR_NOT_FOUND, src_dir, 0, 0, "no model folder to register");
    char *home_owned = home ? NULL : ft_home_dir();
    if (!home)
        home = home_owned;
    char *rel = name_to_rel(name);
    char *root = (home && rel) ? ft_asprintf("%s/registry/%s", home, rel) : NULL;
    char *tmp = root ? ft_asprintf("%s/.incoming-%ld-%.0f", root, (long)getpid(), store_now() * 1e6) : NULL;
    char *dest = NULL;
    ft_status st = (!rel || !root || !tmp) ? FT_ERR(err, FT_ERR_NOMEM, "out of memory") : FT_OK;
    if (st == FT_OK)
        st = ft_mkdir_p(root, err);
    if (st == FT_OK)
        clean_model_dir(root, NULL, NULL); /* leftovers of killed registrations of this model */
    if (st == FT_OK)
        st = copy_tree(src_dir, tmp, 0, err);

    uint64_t h = 1469598103934665603ull;
    bool any = false;
    hash_file(src_dir, "tokenizer.json", &h, &any);
    hash_file(src_dir, "tokenizer_config.json", &h, &any);
    hash_file(src_dir, "chat_template.jinja", &h, &any); /* replaces the config's template (tpl.h) */
    char hash[32];
    snprintf(hash, sizeof hash, "fnv1a64:%016llx", (unsigned long long)h);

    bool began = false, renamed = false;
    int64_t version = 0;
    if (st == FT_OK) {
        st = store_begin(s, err);
        began = st == FT_OK;
    }
    sqlite3_stmt *q = NULL;
    if (st == FT_OK)
        st = store_prepare(s, "INSERT OR IGNORE INTO registered_models (name, created) VALUES (?, ?)", &q, err);
    if (st == FT_OK) {
        sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(q, 2, store_now());
        if (sqlite3_step(q) != SQLITE_DONE)
            st = store_sql_err(s, err, "registering a model");
        sqlite3_finalize(q);
    }
    if (st == FT_OK)
        st = store_prepare(s,
                           "SELECT MAX((SELECT COALESCE(MAX(version), 0) FROM model_versions WHERE name = ?1),"
                           " (SELECT last_version FROM registered_models WHERE name = ?1)) + 1",
                           &q, err);
    if (st == FT_OK) {
        sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) == SQLITE_ROW)
            version = sqlite3_column_int64(q, 0);
        else
            st = store_sql_err(s, err, "numbering a version");
        sqlite3_finalize(q);
    }
    if (st == FT_OK) {
        /* Folders count too: a store that was emptied or replaced must not reuse their numbers. */
        int64_t on_disk = max_version_folder(root);
        if (on_disk >= version)
            version = on_disk + 1;
        dest = ft_asprintf("%s/%lld", root, (long long)version);
        if (!dest)
            st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (st == FT_OK) {
        if (rename_noreplace(tmp, dest) != 0)
            st = errno == EEXIST || errno == ENOTEMPTY
                     ? FT_ERR_AT(err, FT_ERR_INVALID, dest, 0, 0,
                                 "version %lld of %s already exists on disk; a registered version is never "
                                 "overwritten (another registration got there first: try again)",
                                 (long long)version, name)
                     : FT_ERR_AT(err, FT_ERR_IO, dest, 0, 0, "cannot move the registered copy into place: %s",
                                 strerror(errno));
        else
            renamed = true;
    }
    if (st == FT_OK)
        st = ft_fsync_path(root, err);
    if (st == FT_OK)
        st = store_prepare(s,
                           "INSERT INTO model_versions (" VERSION_COLS ") VALUES (?,?,?,?,?,?,?,?)", &q, err);
    double now = store_now();
    if (st == FT_OK) {
        sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 2, version);
        sqlite3_bind_text(q, 3, dest, -1, SQLITE_TRANSIENT);
        store_bind_text(q, 4, run);
        store_bind_text(q, 5, checkpoint);
        store_bind_text(q, 6, metrics_json ? metrics_json : "{}");
        store_bind_text(q, 7, any ? hash : NULL);
        sqlite3_bind_double(q, 8, now);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = store_sql_err(s, err, "recording a version");
        sqlite3_finalize(q);
    }
    if (st == FT_OK)
        st = store_prepare(s, "UPDATE registered_models SET last_version = MAX(last_version, ?2) WHERE name = ?1", &q,
                           err);
    if (st == FT_OK) {
        sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 2, version);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = store_sql_err(s, err, "recording a version");
        sqlite3_finalize(q);
    }
    if (st == FT_OK)
        st = store_commit(s, err);
    if (st != FT_OK) {
        if (began)
            store_rollback(s);
        if (renamed)
            ft_rm_rf(dest, NULL);
        if (tmp)
            ft_rm_rf(tmp, NULL);
    } else if (out) {
        out->name = ft_strdup(name);
        out->version = version;
        out->path = ft_strdup(dest);
        out->run = run ? ft_strdup(run) : NULL;
        out->checkpoint = checkpoint ? ft_strdup(checkpoint) : NULL;
        out->metrics_json = ft_strdup(metrics_json ? metrics_json : "{}");
        out->tokenizer_hash = any ? ft_strdup(hash) : NULL;
        out->created = now;
    }
    ft_free(rel);
    ft_free(root);
    ft_free(tmp);
    ft_free(dest);
    ft_free(home_owned);
    return st;
}

ft_status ft_registry_list(ft_store *s, ft_model_version **out, size_t *n, ft_err *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s,
                         "SELECT " VERSION_COLS " FROM model_versions v WHERE version = "
                         "(SELECT MAX(version) FROM model_versions w WHERE w.name = v.name) ORDER BY name",
                         &st, err));
    return collect_versions(s, st, out, n, err);
}

ft_status ft_registry_show(ft_store *s, const char *name, ft_model_version **out, size_t *n, ft_err *err) {
    *out = NULL;
    *n = 0;
    char base[512];
    int64_t version = 0;
    const char *slash = strchr(name, '/');
    /* the name first: "../../etc" is a bad name, not a bad version */
    snprintf(base, sizeof base, "%.*s", (int)(slash ? (size_t)(slash - name) : strlen(name)), name);
    FT_TRY(ft_registry_check_name(base, err));
    if (slash) {
        char *end;
        long long v = strtoll(slash + 1, &end, 10);
        if (end == slash + 1 || *end || v <= 0)
            return FT_ERR(err, FT_ERR_INVALID, "\"%s\": the version after '/' must be a positive number", name);
        version = v;
    }
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s,
                         "SELECT " VERSION_COLS " FROM model_versions WHERE name = ?1 AND (?2 = 0 OR version = ?2) "
                         "ORDER BY version",
                         &st, err));
    sqlite3_bind_text(st, 1, base, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, version);
    FT_TRY(collect_versions(s, st, out, n, err));
    if (*n == 0)
        return FT_ERR(err, FT_ERR_NOT_FOUND, "no registered model \"%s\" (see `ftune registry list`)", name);
    return FT_OK;
}

ft_status ft_registry_delete(ft_store *s, const char *home, const char *name_version, bool force, ft_err *err) {
    const char *slash = strchr(name_version, '/');
    char *end = NULL;
    long long version = slash ? strtoll(slash + 1, &end, 10) : 0;
    if (!slash || end == slash + 1 || *end || version <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "\"%s\": expected NAME/VERSION (catalog.schema.model/3)", name_version);
    char name[512];
    snprintf(name, sizeof name, "%.*s", (int)(slash - name_version), name_version);
    FT_TRY(ft_registry_check_name(name, err));
    ft_model_version *v = NULL;
    size_t n = 0;
    FT_TRY(ft_registry_show(s, name_version, &v, &n, err));
    ft_model_version_list_free(v, n);
    char *home_owned = home ? NULL : ft_home_dir();
    if (!home)
        home = home_owned;
    char *rel = name_to_rel(name);
    char *root = home && rel ? ft_asprintf("%s/registry/%s", home, rel) : NULL;
    char *dir = root ? ft_asprintf("%s/%lld", root, version) : NULL;
    char *gone = root ? ft_asprintf("%s/.deleting-%ld-%lld", root, (long)getpid(), version) : NULL;
    ft_status st = dir && gone ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    bool busy = false;
    if (st == FT_OK)
        clean_model_dir(root, &busy, NULL);
    if (st == FT_OK && busy && !force)
        st = FT_ERR(err, FT_ERR_INVALID,
                    "%s is being registered or deleted by another ftune process right now; try again when it is "
                    "done (or use --force)",
                    name);
    /* Out of the resolver's sight first (a rename), then the row, then the files: a crash leaves
     * either the version as it was or a .deleting folder the next command removes. */
    bool moved = false;
    if (st == FT_OK && ft_path_exists(dir)) {
        if (rename(dir, gone) != 0)
            st = FT_ERR_AT(err, FT_ERR_IO, dir, 0, 0, "cannot move the version aside to delete it: %s",
                           strerror(errno));
        else
            moved = true;
    }
    bool began = false;
    if (st == FT_OK)
        began = (st = store_begin(s, err)) == FT_OK;
    sqlite3_stmt *q = NULL;
    if (st == FT_OK)
        st = store_prepare(s, "UPDATE registered_models SET last_version = MAX(last_version, ?2) WHERE name = ?1", &q,
                           err);
    if (st == FT_OK) {
        sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 2, version);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = store_sql_err(s, err, "deleting a version");
        sqlite3_finalize(q);
    }
    if (st == FT_OK)
        st = store_prepare(s, "DELETE FROM model_versions WHERE name = ?1 AND version = ?2", &q, err);
    if (st == FT_OK) {
        sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 2, version);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = store_sql_err(s, err, "deleting a version");
        sqlite3_finalize(q);
    }
    if (st == FT_OK)
        st = store_commit(s, err);
    if (st != FT_OK) {
        if (began)
            store_rollback(s);
        if (moved)
            rename(gone, dir);
    } else if (moved) {
        st = ft_rm_rf(gone, err);
    }
    ft_free(gone);
    ft_free(dir);
    ft_free(root);
    ft_free(rel);
    ft_free(home_owned);
    return st;
}
