/* data/delta.c: Delta Lake tables (delta-io/delta PROTOCOL.md): resolving `catalog.schema.table`
 * to a folder, and the snapshot of a version by log replay.
 *
 * Replay: list _delta_log once; pick the newest complete checkpoint at or before the version
 * (classic `N.checkpoint.parquet`, multi-part `N.checkpoint.i.n.parquet`, v2
 * `N.checkpoint.<uuid>.json|parquet` with sidecars in _delta_log/_sidecars/); then apply the JSON
 * commits after it in order. `_last_checkpoint` is only a hint, so it is not needed: the listing
 * is the truth. Files are keyed by (path, deletion vector id): an `add` puts the key live, a
 * `remove` takes it out. The latest `protocol` and `metaData` win. Anything ftune cannot read
 * correctly (a reader feature it does not know, a gap in the versions, a missing checkpoint
 * part, no protocol or metadata) is an error naming the table and the version, never a guess.
 *
 * Memory: the live-file state (one entry per file ever added since the checkpoint); rows are
 * never held here. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/parquet.h"
#include "data/sources.h"

void src_strv_free(char **v) {
    if (!v)
        return;
    for (size_t i = 0; v[i]; i++)
        ft_free(v[i]);
    ft_free(v);
}

/* ---------------------------------------------------------------- names and folders */

bool delta_is_table(const char *path) {
    char *log = ft_path_join(path, "_delta_log");
    bool ok = log && ft_path_is_dir(log);
    ft_free(log);
    return ok;
}

static bool all_digits(const char *s, size_t n) {
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool is_table_name(const char *s, size_t n) {
    int dots = 0;
    size_t seg = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (seg == 0)
                return false;
            dots++;
            seg = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                   c == '-') {
            seg++;
        } else {
            return false;
        }
    }
    return dots == 2 && seg > 0;
}

ft_status delta_resolve(const char *spec, char **root, int64_t *version, ft_err *err) {
    *root = NULL;
    size_t n = strlen(spec);
    const char *at = strrchr(spec, '@');
    if (at && all_digits(at + 1, strlen(at + 1))) {
        errno = 0;
        long long v = strtoll(at + 1, NULL, 10);
        if (errno)
            return FT_ERR_AT(err, FT_ERR_INVALID, spec, 0, 0, "table version out of range");
        *version = v;
        n = (size_t)(at - spec);
    }
    char *base = ft_strndup(spec, n);
    if (!base)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    char *path = NULL;
    if (is_table_name(base, n) && !ft_path_exists(base)) {
        char *home = ft_home_dir();
        char *rel = ft_strdup(base);
        for (char *p = rel; p && *p; p++)
            if (*p == '.')
                *p = '/';
        path = home && rel ? ft_asprintf("%s/tables/%s", home, rel) : NULL;
        ft_free(home);
        ft_free(rel);
    } else {
        ft_status ms = ft_path_map(base, &path, err);
        if (ms != FT_OK) {
            ft_free(base);
            return ms;
        }
    }
    if (!path) {
        ft_free(base);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (!ft_path_is_dir(path)) {
        ft_status s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, spec, 0, 0,
                                "no such Delta table: looked for the folder %s (a table `catalog.schema.table` "
                                "lives in $FTUNE_HOME/tables/catalog/schema/table, with its _delta_log/ folder)",
                                path);
        ft_free(path);
        ft_free(base);
        return s;
    }
    ft_free(base);
    *root = path;
    return FT_OK;
}

/* ---------------------------------------------------------------- URI paths */

static int hexv(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode once (RFC 3986); a stray '%' is kept. */
static char *uri_decode(const char *s) {
    size_t n = strlen(s);
    char *o = ft_malloc(n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n + 0 && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
            o[k++] = (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
            i += 2;
        } else {
            o[k++] = s[i];
        }
    }
    o[k] = 0;
    return o;
}

/* A path from the log -> the file to open. Relative paths are under the table root; absolute
 * URIs must be local (`file:`). */
static ft_status resolve_data_path(const char *root, const char *display, const char *raw, char **rel_out,
                                   char **abs_out, ft_err *err) {
    *rel_out = *abs_out = NULL;
    const char *colon = strchr(raw, ':');
    const char *slash = strchr(raw, '/');
    bool has_scheme = colon && (!slash || colon < slash) && colon > raw;
    char *dec = NULL;
    if (has_scheme) {
        if (strncmp(raw, "file:", 5) != 0)
            return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, display, 0, 0,
                             "data file %s is not on the local file system; ftune reads local tables only (copy "
                             "the table, with its files, under $FTUNE_HOME/tables)",
                             raw);
        const char *p = raw + 5;
        if (strncmp(p, "//", 2) == 0) {
            p += 2;
            const char *s2 = strchr(p, '/'); /* skip an authority ("localhost" or empty) */
            p = s2 ? s2 : p + strlen(p);
        }
        dec = uri_decode(p);
        if (!dec)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        *abs_out = dec;
        *rel_out = ft_strdup(dec);
    } else {
        dec = uri_decode(raw);
        if (!dec)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        *rel_out = dec;
        *abs_out = dec[0] == '/' ? ft_strdup(dec) : ft_path_join(root, dec);
    }
    if (!*rel_out || !*abs_out) {
        ft_free(*rel_out);
        ft_free(*abs_out);
        *rel_out = *abs_out = NULL;
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    return FT_OK;
}

/* ---------------------------------------------------------------- the log listing */

enum { LOG_COMMIT, LOG_CLASSIC, LOG_MULTI, LOG_V2 };

typedef struct log_entry {
    int64_t version;
    int kind;
    int64_t part, parts; /* multi-part */
    char *name;
} log_entry;

static int cmp_entry(const void *a, const void *b) {
    const log_entry *x = a, *y = b;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return strcmp(x->name, y->name);
}

static bool ends_with_json(const char *s) {
    size_t n = strlen(s);
    return n >= 5 && strcmp(s + n - 5, ".json") == 0;
}

static bool parse_log_name(const char *nm, log_entry *e) {
    size_t n = strlen(nm);
    if (n < 21 || !all_digits(nm, 20) || nm[20] != '.')
        return false;
    e->version = strtoll(nm, NULL, 10);
    const char *rest = nm + 21;
    size_t rn = n - 21;
    if (strcmp(rest, "json") == 0) {
        e->kind = LOG_COMMIT;
        return true;
    }
    if (strncmp(rest, "checkpoint.", 11) != 0)
        return false; /* .crc, .compacted.json, temporary files */
    rest += 11;
    rn -= 11;
    if (strcmp(rest, "parquet") == 0) {
        e->kind = LOG_CLASSIC;
        return true;
    }
    /* multi-part: 10 digits . 10 digits .parquet */
    if (rn == 10 + 1 + 10 + 8 && all_digits(rest, 10) && rest[10] == '.' && all_digits(rest + 11, 10) &&
        strcmp(rest + 21, ".parquet") == 0) {
        e->kind = LOG_MULTI;
        e->part = strtoll(rest, NULL, 10);
        e->parts = strtoll(rest + 11, NULL, 10);
        return e->part >= 1 && e->part <= e->parts;
    }
    /* v2: <uuid>.json | <uuid>.parquet */
    const char *dot = strrchr(rest, '.');
    if (dot && (strcmp(dot, ".json") == 0 || strcmp(dot, ".parquet") == 0) && dot - rest == 36) {
        e->kind = LOG_V2;
        return true;
    }
    return false;
}

typedef struct log_list {
    log_entry *e;
    size_t n, cap;
} log_list;

static void log_list_free(log_list *l) {
    for (size_t i = 0; i < l->n; i++)
        ft_free(l->e[i].name);
    ft_free(l->e);
}

static ft_status list_log(const char *logdir, const char *display, log_list *l, ft_err *err) {
    DIR *d = opendir(logdir);
    if (!d)
        return FT_ERR_AT(err, errno == ENOENT ? FT_ERR_NOT_FOUND : FT_ERR_IO, display, 0, 0,
                         "not a Delta table: cannot open %s: %s", logdir, strerror(errno));
    struct dirent *de;
    ft_status s = FT_OK;
    while ((de = readdir(d)) != NULL) {
        log_entry e = {0};
        if (!parse_log_name(de->d_name, &e))
            continue;
        if (l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 64;
            log_entry *p = ft_realloc(l->e, cap * sizeof *p);
            if (!p) {
                s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                break;
            }
            l->e = p;
            l->cap = cap;
        }
        e.name = ft_strdup(de->d_name);
        if (!e.name) {
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            break;
        }
        l->e[l->n++] = e;
    }
    closedir(d);
    if (s == FT_OK)
        qsort(l->e, l->n, sizeof *l->e, cmp_entry);
    return s;
}

/* ---------------------------------------------------------------- replay state */

typedef struct fmap_slot {
    char *key; /* path \x01 dv id */
    size_t idx;
} fmap_slot;

typedef struct replay {
    const char *root, *display;
    int64_t version; /* being applied, for messages */
    const char *action_file; /* the log file being applied */
    json_t *protocol, *metadata;
    delta_file *files;
    bool *live;
    size_t n, cap;
    fmap_slot *slots;
    size_t n_slots; /* power of two */
    size_t n_used;
    bool in_checkpoint;
    /* sidecars named by a v2 checkpoint */
    char **sidecars;
    size_t n_sidecars, cap_sidecars;
} replay;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static void dv_free(delta_dv *dv) {
    ft_free(dv->path_or_inline);
    memset(dv, 0, sizeof *dv);
}

static void file_free(delta_file *f) {
    ft_free(f->rel);
    ft_free(f->abs);
    json_decref(f->partition);
    dv_free(&f->dv);
    memset(f, 0, sizeof *f);
}

static ft_status fmap_grow(replay *r, ft_err *err) {
    size_t n = r->n_slots ? r->n_slots * 2 : 1024;
    fmap_slot *ns = ft_calloc(n, sizeof *ns);
    if (!ns)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory replaying the Delta log");
    for (size_t i = 0; i < r->n_slots; i++) {
        if (!r->slots[i].key)
            continue;
        size_t j = hash_str(r->slots[i].key) & (n - 1);
        while (ns[j].key)
            j = (j + 1) & (n - 1);
        ns[j] = r->slots[i];
    }
    ft_free(r->slots);
    r->slots = ns;
    r->n_slots = n;
    return FT_OK;
}

/* The slot of `key` (found, or the empty slot where it goes). */
static fmap_slot *fmap_find(replay *r, const char *key) {
    size_t j = hash_str(key) & (r->n_slots - 1);
    while (r->slots[j].key && strcmp(r->slots[j].key, key) != 0)
        j = (j + 1) & (r->n_slots - 1);
    return &r->slots[j];
}

/* ---------------------------------------------------------------- actions */

static const char *jstr(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool jint(const json_t *o, const char *k, int64_t *out) {
    const json_t *v = json_object_get(o, k);
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_string(v) && all_digits(json_string_value(v), strlen(json_string_value(v)))) {
        *out = strtoll(json_string_value(v), NULL, 10);
        return true;
    }
    return false;
}

/* A map as a checkpoint's Parquet reader yields it ([{"key","value"}...]) or as JSON commits
 * have it ({k: v}) -> an object (new reference). */
static json_t *as_object(json_t *m) {
    if (json_is_object(m))
        return json_incref(m);
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (json_is_array(m)) {
        size_t i;
        json_t *kv;
        json_array_foreach(m, i, kv) {
            const char *k = jstr(kv, "key");
            json_t *v = json_object_get(kv, "value");
            if (k)
                json_object_set(o, k, v ? v : json_null());
        }
    }
    return o;
}

static ft_status bad_action(replay *r, ft_err *err, const char *what) {
    return FT_ERR_AT(err, FT_ERR_PARSE, r->display, 0, 0, "Delta log %s (version %lld): %s", r->action_file,
                     (long long)r->version, what);
}

/* The unique id of a deletion vector (PROTOCOL.md: storageType + pathOrInlineDv [+ "@" offset]). */
static ft_status dv_from_json(replay *r, const json_t *j, delta_dv *dv, bool *has, ft_err *err) {
    memset(dv, 0, sizeof *dv);
    *has = false;
    if (!j || json_is_null(j))
        return FT_OK;
    const char *st = jstr(j, "storageType"), *p = jstr(j, "pathOrInlineDv");
    if (!st || strlen(st) != 1 || !strchr("uip", st[0]) || !p)
        return bad_action(r, err, "a deletion vector without a known storageType ('u', 'i', 'p') and pathOrInlineDv");
    dv->storage = st[0];
    dv->path_or_inline = ft_strdup(p);
    if (!dv->path_or_inline)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    dv->offset = -1;
    int64_t v;
    if (jint(j, "offset", &v))
        dv->offset = v;
    if (!jint(j, "sizeInBytes", &dv->size) || dv->size < 0) {
        dv_free(dv);
        return bad_action(r, err, "a deletion vector without sizeInBytes");
    }
    if (!jint(j, "cardinality", &dv->cardinality))
        dv->cardinality = -1;
    *has = true;
    return FT_OK;
}

static char *file_key(const char *path, const delta_dv *dv, bool has_dv) {
    if (!has_dv)
        return ft_asprintf("%s\x01", path);
    if (dv->offset >= 0)
        return ft_asprintf("%s\x01%c%s@%lld", path, dv->storage, dv->path_or_inline, (long long)dv->offset);
    return ft_asprintf("%s\x01%c%s", path, dv->storage, dv->path_or_inline);
}

static ft_status apply_file(replay *r, const json_t *a, bool add, ft_err *err) {
    const char *raw = jstr(a, "path");
    if (!raw)
        return bad_action(r, err, add ? "an add action without a path" : "a remove action without a path");
    delta_dv dv;
    bool has_dv;
    FT_TRY(dv_from_json(r, json_object_get(a, "deletionVector"), &dv, &has_dv, err));
    /* the key uses the path as written (decoding is only for opening the file) */
    char *key = file_key(raw, &dv, has_dv);
    if (!key) {
        dv_free(&dv);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (r->n_used * 2 >= r->n_slots) {
        ft_status s = fmap_grow(r, err);
        if (s != FT_OK) {
            ft_free(key);
            dv_free(&dv);
            return s;
        }
    }
    fmap_slot *slot = fmap_find(r, key);
    if (!add) {
        if (slot->key)
            r->live[slot->idx] = false;
        ft_free(key);
        dv_free(&dv);
        return FT_OK;
    }
    delta_file f = {0};
    f.dv = dv;
    f.has_dv = has_dv;
    f.n_records = -1;
    ft_status s = resolve_data_path(r->root, r->display, raw, &f.rel, &f.abs, err);
    if (s == FT_OK) {
        f.partition = as_object(json_object_get(a, "partitionValues"));
        if (!f.partition)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (s == FT_OK) {
        const char *stats = jstr(a, "stats");
        if (stats) {
            json_t *js = json_loads(stats, 0, NULL);
            int64_t nr;
            if (js && jint(js, "numRecords", &nr))
                f.n_records = nr;
            json_decref(js);
        }
    }
    if (s != FT_OK) {
        file_free(&f);
        ft_free(key);
        return s;
    }
    if (slot->key) { /* the same (path, dv) added again: the newer action wins */
        file_free(&r->files[slot->idx]);
        r->files[slot->idx] = f;
        r->live[slot->idx] = true;
        ft_free(key);
        return FT_OK;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        delta_file *nf = ft_realloc(r->files, cap * sizeof *nf);
        bool *nl = nf ? ft_realloc(r->live, cap * sizeof *nl) : NULL;
        if (nf)
            r->files = nf;
        if (!nf || !nl) {
            file_free(&f);
            ft_free(key);
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory replaying the Delta log");
        }
        r->live = nl;
        r->cap = cap;
    }
    r->files[r->n] = f;
    r->live[r->n] = true;
    slot->key = key;
    slot->idx = r->n++;
    r->n_used++;
    return FT_OK;
}

static ft_status apply_action(replay *r, json_t *act, ft_err *err) {
    if (!json_is_object(act))
        return bad_action(r, err, "an action that is not a JSON object");
    json_t *v;
    if ((v = json_object_get(act, "add")) && !json_is_null(v))
        FT_TRY(apply_file(r, v, true, err));
    /* a checkpoint's removes are tombstones for VACUUM, not for reads */
    if ((v = json_object_get(act, "remove")) && !json_is_null(v) && !r->in_checkpoint)
        FT_TRY(apply_file(r, v, false, err));
    if ((v = json_object_get(act, "protocol")) && !json_is_null(v)) {
        json_decref(r->protocol);
        r->protocol = json_incref(v);
    }
    if ((v = json_object_get(act, "metaData")) && !json_is_null(v)) {
        json_decref(r->metadata);
        r->metadata = json_incref(v);
    }
    if ((v = json_object_get(act, "sidecar")) && !json_is_null(v)) {
        const char *p = jstr(v, "path");
        if (!p)
            return bad_action(r, err, "a sidecar action without a path");
        if (!r->in_checkpoint)
            return bad_action(r, err, "a sidecar action outside a checkpoint");
        if (r->n_sidecars == r->cap_sidecars) {
            size_t cap = r->cap_sidecars ? r->cap_sidecars * 2 : 8;
            char **ns = ft_realloc(r->sidecars, cap * sizeof *ns);
            if (!ns)
                return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            r->sidecars = ns;
            r->cap_sidecars = cap;
        }
        char *dec = uri_decode(p);
        if (!dec)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        r->sidecars[r->n_sidecars++] = dec;
    }
    return FT_OK;
}

/* Apply every line of a JSON commit (or a v2 checkpoint's JSON). */
static ft_status apply_json_lines(replay *r, const char *data, size_t len, const char *name, ft_err *err) {
    size_t i = 0;
    int64_t line = 0;
    while (i < len) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - data) : len;
        line++;
        size_t a = i, b = end;
        while (a < b && (data[a] == ' ' || data[a] == '\t' || data[a] == '\r'))
            a++;
        while (b > a && (data[b - 1] == ' ' || data[b - 1] == '\t' || data[b - 1] == '\r'))
            b--;
        if (b > a) {
            json_error_t je;
            json_t *act = json_loadb(data + a, b - a, 0, &je);
            if (!act)
                return FT_ERR_AT(err, FT_ERR_PARSE, name, line, je.column > 0 ? je.column : 1,
                                 "Delta log: not JSON: %s", je.text);
            ft_status s = apply_action(r, act, err);
            json_decref(act);
            if (s != FT_OK) {
                if (err && !err->file[0])
                    snprintf(err->file, sizeof err->file, "%s", name);
                return s;
            }
        }
        i = end + 1;
    }
    return FT_OK;
}

static ft_status apply_json_file(replay *r, const char *path, const char *name, ft_err *err) {
    char *data;
    size_t len;
    ft_status s = ft_file_read_all(path, &data, &len, err);
    if (s != FT_OK)
        return s;
    s = apply_json_lines(r, data, len, name, err);
    ft_free(data);
    return s;
}

static ft_status row_apply(void *ctx, json_t *row, int64_t row_index, ft_err *err) {
    (void)row_index;
    return apply_action(ctx, row, err);
}

static ft_status apply_parquet_file(replay *r, const char *path, const char *name, ft_err *err) {
    static const char *const cols[] = {"add", "remove", "protocol", "metaData", "sidecar", NULL};
    return src_parquet_each_row(path, name, cols, row_apply, r, err);
}

ft_status delta_check_commit(const char *data, size_t len, ft_err *err) {
    replay r = {.root = "/", .display = "fuzz", .action_file = "fuzz"};
    ft_status s = apply_json_lines(&r, data, len, "fuzz", err);
    for (size_t i = 0; i < r.n; i++)
        file_free(&r.files[i]);
    for (size_t i = 0; i < r.n_slots; i++)
        ft_free(r.slots[i].key);
    for (size_t i = 0; i < r.n_sidecars; i++)
        ft_free(r.sidecars[i]);
    ft_free(r.sidecars);
    ft_free(r.slots);
    ft_free(r.files);
    ft_free(r.live);
    json_decref(r.protocol);
    json_decref(r.metadata);
    return s;
}

/* ---------------------------------------------------------------- protocol and schema */

static const char *const READER_FEATURES[] = {"columnMapping", "deletionVectors", "timestampNtz",
                                              "v2Checkpoint",  "vacuumProtocolCheck", NULL};

static ft_status check_protocol(const delta_snapshot *s, ft_err *err) {
    int64_t minr = 0;
    if (!jint(s->protocol, "minReaderVersion", &minr))
        return FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0, "Delta table version %lld: protocol without minReaderVersion",
                         (long long)s->version);
    if (minr < 1 || minr > 3)
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, s->display, 0, 0,
                         "Delta table version %lld needs reader version %lld; ftune reads reader versions 1 to 3",
                         (long long)s->version, (long long)minr);
    if (minr == 3) {
        json_t *fs = json_object_get(s->protocol, "readerFeatures");
        size_t i;
        json_t *f;
        if (fs && !json_is_array(fs) && !json_is_null(fs))
            return FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0, "Delta protocol: readerFeatures is not a list");
        json_array_foreach(fs, i, f) {
            const char *name = json_string_value(f);
            bool ok = false;
            for (size_t k = 0; name && READER_FEATURES[k]; k++)
                ok = ok || strcmp(name, READER_FEATURES[k]) == 0;
            if (!ok)
                return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, s->display, 0, 0,
                                 "Delta table version %lld uses the reader feature '%s', which ftune does not "
                                 "implement (it reads columnMapping, deletionVectors, timestampNtz, v2Checkpoint, "
                                 "vacuumProtocolCheck)",
                                 (long long)s->version, name ? name : "?");
        }
    }
    return FT_OK;
}

static ft_status load_schema(delta_snapshot *s, ft_err *err) {
    const char *ss = jstr(s->metadata, "schemaString");
    if (!ss)
        return FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0, "Delta table version %lld: metadata without schemaString",
                         (long long)s->version);
    json_error_t je;
    s->schema = json_loads(ss, 0, &je);
    json_t *fields = json_object_get(s->schema, "fields");
    if (!s->schema || !json_is_array(fields))
        return FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0,
                         "Delta table version %lld: the schema is not a struct type with fields",
                         (long long)s->version);
    json_t *conf = as_object(json_object_get(s->metadata, "configuration"));
    const char *mode = conf ? jstr(conf, "delta.columnMapping.mode") : NULL;
    s->cm_mode = !mode || strcmp(mode, "none") == 0 ? 0 : strcmp(mode, "name") == 0 ? 1 : strcmp(mode, "id") == 0 ? 2 : -1;
    if (s->cm_mode < 0) {
        ft_status st = FT_ERR_AT(err, FT_ERR_UNSUPPORTED, s->display, 0, 0, "unknown column mapping mode '%s'", mode);
        json_decref(conf);
        return st;
    }
    json_decref(conf);
    json_t *pcols = json_object_get(s->metadata, "partitionColumns");
    size_t n = json_array_size(fields);
    s->fields = ft_calloc(n ? n : 1, sizeof *s->fields);
    if (!s->fields)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *f = json_array_get(fields, i);
        const char *name = jstr(f, "name");
        json_t *type = json_object_get(f, "type");
        if (!name || !type)
            return FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0, "Delta schema: field %zu without name or type", i);
        const char *phys = NULL;
        if (s->cm_mode) {
            phys = jstr(json_object_get(f, "metadata"), "delta.columnMapping.physicalName");
            if (!phys)
                return FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0,
                                 "Delta schema: column mapping is on but field '%s' has no physical name", name);
        }
        delta_field *df = &s->fields[s->n_fields++];
        df->name = ft_strdup(name);
        df->physical = ft_strdup(phys ? phys : name);
        df->type = type;
        if (!df->name || !df->physical)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        size_t k;
        json_t *pc;
        json_array_foreach(pcols, k, pc) if (json_is_string(pc) && strcmp(json_string_value(pc), name) == 0)
            df->partition = true;
    }
    return FT_OK;
}

void delta_snapshot_free(delta_snapshot *s) {
    if (!s)
        return;
    ft_free(s->root);
    ft_free(s->display);
    json_decref(s->protocol);
    json_decref(s->metadata);
    for (size_t i = 0; i < s->n_fields; i++) {
        ft_free(s->fields[i].name);
        ft_free(s->fields[i].physical);
    }
    ft_free(s->fields);
    json_decref(s->schema);
    for (size_t i = 0; i < s->n_files; i++)
        file_free(&s->files[i]);
    ft_free(s->files);
    ft_free(s);
}

static int cmp_file(const void *a, const void *b) {
    return strcmp(((const delta_file *)a)->rel, ((const delta_file *)b)->rel);
}

/* ---------------------------------------------------------------- snapshot */

/* Is there a complete checkpoint at entries [i, j) (all of one version)? *kind tells which. */
static bool checkpoint_complete(const log_list *l, size_t i, size_t j, int *kind, int64_t *missing_part,
                                int64_t *parts) {
    *missing_part = 0;
    for (size_t k = i; k < j; k++)
        if (l->e[k].kind == LOG_CLASSIC || l->e[k].kind == LOG_V2) {
            *kind = l->e[k].kind;
            return true;
        }
    /* multi-part: some n with all parts 1..n present */
    for (size_t k = i; k < j; k++) {
        if (l->e[k].kind != LOG_MULTI)
            continue;
        int64_t n = l->e[k].parts;
        bool all = true;
        for (int64_t p = 1; p <= n && all; p++) {
            bool found = false;
            for (size_t m = i; m < j && !found; m++)
                found = l->e[m].kind == LOG_MULTI && l->e[m].parts == n && l->e[m].part == p;
            if (!found) {
                all = false;
                *missing_part = p;
                *parts = n;
            }
        }
        if (all) {
            *kind = LOG_MULTI;
            *parts = n;
            return true;
        }
    }
    return false;
}

static ft_status replay_checkpoint(replay *r, const char *logdir, const log_list *l, size_t i, size_t j, int kind,
                                   int64_t parts, ft_err *err) {
    r->in_checkpoint = true;
    ft_status s = FT_OK;
    for (size_t k = i; k < j && s == FT_OK; k++) {
        const log_entry *e = &l->e[k];
        if (e->kind != kind || (kind == LOG_MULTI && e->parts != parts))
            continue;
        char *p = ft_path_join(logdir, e->name);
        char *nm = ft_asprintf("%s/_delta_log/%s", r->display, e->name);
        r->action_file = e->name;
        if (!p || !nm)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        else if (ends_with_json(e->name))
            s = apply_json_file(r, p, nm, err);
        else
            s = apply_parquet_file(r, p, nm, err);
        ft_free(p);
        ft_free(nm);
        if (kind != LOG_MULTI)
            break; /* one classic or v2 file (several v2 UUIDs at one version are equivalent) */
    }
    for (size_t k = 0; k < r->n_sidecars && s == FT_OK; k++) {
        char *p = ft_asprintf("%s/_sidecars/%s", logdir, r->sidecars[k]);
        char *nm = ft_asprintf("%s/_delta_log/_sidecars/%s", r->display, r->sidecars[k]);
        if (!p || !nm) {
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        } else if (!ft_path_exists(p)) {
            s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, r->display, 0, 0,
                          "Delta checkpoint at version %lld names the sidecar file %s, which is missing",
                          (long long)r->version, nm);
        } else {
            r->action_file = r->sidecars[k];
            s = apply_parquet_file(r, p, nm, err);
        }
        ft_free(p);
        ft_free(nm);
    }
    r->in_checkpoint = false;
    return s;
}

ft_status delta_snapshot_load(const char *root, const char *display, int64_t version, delta_snapshot **out,
                              ft_err *err) {
    *out = NULL;
    char *logdir = ft_path_join(root, "_delta_log");
    if (!logdir)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (!ft_path_is_dir(logdir)) {
        ft_status s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, display, 0, 0,
                                "not a Delta table: %s has no _delta_log folder", root);
        ft_free(logdir);
        return s;
    }
    log_list l = {0};
    replay r = {.root = root, .display = display};
    delta_snapshot *snap = ft_calloc(1, sizeof *snap);
    ft_status s = snap ? list_log(logdir, display, &l, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    int64_t latest = -1;
    for (size_t i = 0; s == FT_OK && i < l.n; i++)
        if (l.e[i].version > latest)
            latest = l.e[i].version;
    if (s == FT_OK && latest < 0)
        s = FT_ERR_AT(err, FT_ERR_INVALID, display, 0, 0, "not a Delta table: %s has no commits", logdir);
    if (s == FT_OK && version > latest)
        s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, display, 0, 0,
                      "Delta table has no version %lld: its latest version is %lld", (long long)version,
                      (long long)latest);
    int64_t target = version >= 0 ? version : latest;

    /* newest complete checkpoint at or before target, whose later commits are all present */
    size_t cp_i = 0, cp_j = 0;
    int cp_kind = -1;
    int64_t cp_parts = 0, cp_version = -1;
    int64_t broken_version = -1, broken_part = 0, broken_parts = 0;
    for (size_t j = l.n; s == FT_OK && j > 0;) {
        size_t i = j;
        int64_t v = l.e[j - 1].version;
        while (i > 0 && l.e[i - 1].version == v)
            i--;
        if (v <= target) {
            int kind;
            int64_t missing, parts = 0;
            if (checkpoint_complete(&l, i, j, &kind, &missing, &parts)) {
                cp_i = i;
                cp_j = j;
                cp_kind = kind;
                cp_parts = parts;
                cp_version = v;
                break;
            }
            if (missing && broken_version < 0) {
                broken_version = v;
                broken_part = missing;
                broken_parts = parts;
            }
        }
        j = i;
    }
    /* commits cp_version+1 .. target must all be there */
    int64_t next = cp_version + 1;
    for (size_t i = 0; s == FT_OK && i < l.n; i++) {
        const log_entry *e = &l.e[i];
        if (e->kind != LOG_COMMIT || e->version <= cp_version || e->version > target)
            continue;
        if (e->version != next)
            break;
        next++;
    }
    if (s == FT_OK && next <= target) {
        if (broken_version >= 0 && broken_version > cp_version)
            s = FT_ERR_AT(err, FT_ERR_INVALID, display, 0, 0,
                          "Delta log is incomplete: the checkpoint at version %lld is missing part %lld of %lld, "
                          "and commit %lld is not in _delta_log either",
                          (long long)broken_version, (long long)broken_part, (long long)broken_parts,
                          (long long)next);
        else if (cp_version < 0 && next == 0)
            s = FT_ERR_AT(err, FT_ERR_INVALID, display, 0, 0,
                          "Delta log is incomplete: no checkpoint at or before version %lld and no commit 0 "
                          "(the log was cleaned up?)",
                          (long long)target);
        else
            s = FT_ERR_AT(err, FT_ERR_INVALID, display, 0, 0,
                          "Delta log has a gap: commit %lld is missing (needed to read version %lld%s)",
                          (long long)next, (long long)target,
                          cp_version >= 0 ? ", after the checkpoint" : "");
    }
    if (s == FT_OK && cp_kind >= 0) {
        r.version = cp_version;
        s = replay_checkpoint(&r, logdir, &l, cp_i, cp_j, cp_kind, cp_parts, err);
    }
    for (size_t i = 0; s == FT_OK && i < l.n; i++) {
        const log_entry *e = &l.e[i];
        if (e->kind != LOG_COMMIT || e->version <= cp_version || e->version > target)
            continue;
        char *p = ft_path_join(logdir, e->name);
        char *nm = ft_asprintf("%s/_delta_log/%s", display, e->name);
        r.version = e->version;
        r.action_file = e->name;
        s = p && nm ? apply_json_file(&r, p, nm, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        ft_free(p);
        ft_free(nm);
    }
    if (s == FT_OK) {
        snap->version = target;
        snap->root = ft_strdup(root);
        snap->display = ft_strdup(display);
        if (!snap->root || !snap->display)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (s == FT_OK && !r.protocol)
        s = FT_ERR_AT(err, FT_ERR_INVALID, display, 0, 0,
                      "Delta log has no protocol action for version %lld%s: the table is damaged", (long long)target,
                      cp_version >= 0 ? " (not in the checkpoint nor in the commits after it)" : "");
    if (s == FT_OK && !r.metadata)
        s = FT_ERR_AT(err, FT_ERR_INVALID, display, 0, 0,
                      "Delta log has no metaData action for version %lld%s: the table is damaged", (long long)target,
                      cp_version >= 0 ? " (not in the checkpoint nor in the commits after it)" : "");
    if (s == FT_OK) {
        snap->protocol = r.protocol;
        snap->metadata = r.metadata;
        r.protocol = r.metadata = NULL;
        s = check_protocol(snap, err);
    }
    if (s == FT_OK)
        s = load_schema(snap, err);
    if (s == FT_OK) {
        size_t n_live = 0;
        for (size_t i = 0; i < r.n; i++)
            n_live += r.live[i];
        snap->files = ft_calloc(n_live ? n_live : 1, sizeof *snap->files);
        if (!snap->files)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        for (size_t i = 0; s == FT_OK && i < r.n; i++)
            if (r.live[i]) {
                snap->files[snap->n_files++] = r.files[i];
                memset(&r.files[i], 0, sizeof r.files[i]);
            }
        if (s == FT_OK)
            qsort(snap->files, snap->n_files, sizeof *snap->files, cmp_file);
    }
    for (size_t i = 0; i < r.n; i++)
        file_free(&r.files[i]);
    for (size_t i = 0; i < r.n_slots; i++)
        ft_free(r.slots[i].key);
    for (size_t i = 0; i < r.n_sidecars; i++)
        ft_free(r.sidecars[i]);
    ft_free(r.sidecars);
    ft_free(r.slots);
    ft_free(r.files);
    ft_free(r.live);
    json_decref(r.protocol);
    json_decref(r.metadata);
    log_list_free(&l);
    ft_free(logdir);
    if (s != FT_OK) {
        delta_snapshot_free(snap);
        return s;
    }
    *out = snap;
    return FT_OK;
}

/* ---------------------------------------------------------------- rows */

/* Decimal type "decimal(p,s)" -> scale, or -1. */
static int decimal_scale(const char *t) {
    int p, sc;
    if (sscanf(t, "decimal(%d,%d)", &p, &sc) == 2 || sscanf(t, "decimal(%d, %d)", &p, &sc) == 2)
        return sc;
    return -1;
}

/* A decimal text ("-2342342.23423", "1E+2", "0.00004") as its unscaled value at `scale`: 16
 * big-endian two's-complement bytes. false when it is not a decimal or does not fit. */
static bool decimal_unscaled(const char *raw, int scale, uint8_t be[16]) {
    const char *p = raw;
    bool neg = false;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    char digits[96];
    int64_t nd = 0, point = -1, exp = 0;
    for (; *p && *p != 'e' && *p != 'E'; p++) {
        if (*p == '.' && point < 0)
            point = nd;
        else if (*p >= '0' && *p <= '9' && nd < 90)
            digits[nd++] = *p;
        else
            return false;
    }
    if (*p) {
        char *end;
        exp = strtoll(p + 1, &end, 10);
        if (*end || exp > 100 || exp < -100)
            return false;
    }
    if (nd == 0)
        return false;
    if (point < 0)
        point = nd;
    /* value = digits * 10^(exp - (nd - point)); unscaled = value * 10^scale */
    int64_t shift = exp - (nd - point) + scale;
    int64_t keep = nd;
    if (shift < 0) { /* the dropped digits must be zeros */
        for (int64_t i = nd + shift; i < nd; i++)
            if (i >= 0 && digits[i] != '0')
                return false;
        keep = nd + shift;
    }
    uint32_t mag[4] = {0}; /* little-endian 32-bit limbs */
    for (int64_t i = 0; i < keep + (shift > 0 ? shift : 0); i++) {
        uint64_t carry = i < keep ? (uint64_t)(digits[i] - '0') : 0;
        for (int k = 0; k < 4; k++) {
            uint64_t x = (uint64_t)mag[k] * 10 + carry;
            mag[k] = (uint32_t)x;
            carry = x >> 32;
        }
        if (carry || mag[3] >> 31)
            return false;
    }
    if (neg) { /* two's complement */
        uint64_t c = 1;
        for (int k = 0; k < 4; k++) {
            uint64_t x = (uint64_t)(uint32_t)~mag[k] + c;
            mag[k] = (uint32_t)x;
            c = x >> 32;
        }
    }
    for (int k = 0; k < 4; k++)
        for (int b = 0; b < 4; b++)
            be[15 - (k * 4 + b)] = (uint8_t)(mag[k] >> (8 * b));
    return true;
}

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DD[ T]HH:MM:SS[.ffffff][Z|+00:00]" -> microseconds; false if not that shape. */
static bool parse_timestamp(const char *s, int64_t *us) {
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    if (sscanf(s, "%d-%d-%d%n", &y, &mo, &d, &n) != 3)
        return false;
    const char *p = s + n;
    if (*p == ' ' || *p == 'T') {
        int m2 = 0;
        if (sscanf(p + 1, "%d:%d:%d%n", &h, &mi, &sec, &m2) != 3)
            return false;
        p += 1 + m2;
    }
    int64_t frac = 0;
    if (*p == '.') {
        int k = 0;
        p++;
        for (; *p >= '0' && *p <= '9'; p++, k++)
            if (k < 6)
                frac = frac * 10 + (*p - '0');
        for (; k < 6; k++)
            frac *= 10;
    }
    if (*p == 'Z')
        p++;
    else if (strcmp(p, "+00:00") == 0)
        p += 6;
    if (*p)
        return false;
    *us = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) * 1000000) + frac;
    return true;
}

ft_status delta_partition_value(const delta_snapshot *s, const delta_file *f, const delta_field *df,
                                src_pool *pool, data_value *out, ft_err *err) {
    memset(out, 0, sizeof *out);
    json_t *rawj = json_object_get(f->partition, df->physical);
    if (!rawj && s->cm_mode)
        rawj = json_object_get(f->partition, df->name);
    const char *raw = json_string_value(rawj);
    const char *t = json_string_value(df->type);
    if (!raw)
        return FT_OK; /* null partition (__HIVE_DEFAULT_PARTITION__ in the folder name) */
    bool ok = t != NULL;
    if (!ok) {
    } else if (!strcmp(t, "string") || !strcmp(t, "binary")) {
        size_t n = strlen(raw);
        uint8_t *b = src_pool_alloc(pool, n + 1);
        if (!b)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        memcpy(b, raw, n);
        out->kind = !strcmp(t, "string") ? DATA_V_STRING : DATA_V_BINARY;
        out->bytes = b;
        out->n = (uint32_t)n;
    } else if (raw[0] == 0) {
        /* an empty string is null for every type but string */
    } else if (!strcmp(t, "long") || !strcmp(t, "integer") || !strcmp(t, "short") || !strcmp(t, "byte")) {
        char *end;
        errno = 0;
        long long v = strtoll(raw, &end, 10);
        ok = !*end && !errno;
        out->kind = DATA_V_INT;
        out->i = v;
    } else if (!strcmp(t, "boolean")) {
        ok = !strcmp(raw, "true") || !strcmp(raw, "false");
        out->kind = DATA_V_BOOL;
        out->b = raw[0] == 't';
    } else if (!strcmp(t, "float") || !strcmp(t, "double")) {
        char *end;
        double v = !strcmp(raw, "NaN") ? NAN : !strcmp(raw, "Infinity") ? INFINITY
                                            : !strcmp(raw, "-Infinity") ? -INFINITY
                                                                        : strtod(raw, &end);
        if (isfinite(v))
            ok = !*end;
        out->kind = !strcmp(t, "float") ? DATA_V_FLOAT : DATA_V_DOUBLE;
        out->f = !strcmp(t, "float") ? (double)(float)v : v;
    } else if (!strcmp(t, "date")) {
        int y, m, d, n = 0;
        ok = sscanf(raw, "%d-%d-%d%n", &y, &m, &d, &n) == 3 && !raw[n];
        out->kind = DATA_V_DATE;
        out->i = ok ? days_from_civil(y, m, d) : 0;
    } else if (!strcmp(t, "timestamp") || !strcmp(t, "timestamp_ntz")) {
        int64_t us = 0;
        ok = parse_timestamp(raw, &us);
        out->kind = DATA_V_TIMESTAMP;
        out->unit = DATA_MICROS;
        out->utc = !strcmp(t, "timestamp");
        out->i = us;
    } else if (decimal_scale(t) >= 0) {
        uint8_t *be = src_pool_alloc(pool, 16);
        if (!be)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        ok = decimal_unscaled(raw, decimal_scale(t), be);
        out->kind = DATA_V_DECIMAL;
        out->scale = decimal_scale(t);
        out->bytes = be;
        out->n = 16;
    } else {
        ok = false;
    }
    if (!ok) {
        memset(out, 0, sizeof *out);
        return FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0,
                         "Delta table version %lld, file %s: partition value '%s' of column '%s' is not a valid %s",
                         (long long)s->version, f->rel, raw, df->name, t ? t : "value of a primitive type");
    }
    return FT_OK;
}

void delta_type_timestamp(const char *type, data_value *v) {
    if (v->kind == DATA_V_TIMESTAMP && type && !strcmp(type, "timestamp"))
        v->utc = true;
    else if (v->kind == DATA_V_TIMESTAMP && type && !strcmp(type, "timestamp_ntz"))
        v->utc = false;
}

/* Column mapping inside nested values: struct fields carry physical names in the files. */
static ft_status rename_value(const data_value *in, const json_t *type, src_pool *pool, data_value *out, int depth,
                              ft_err *err) {
    *out = *in;
    if (json_is_string(type)) { /* Delta's `timestamp` is UTC-adjusted whatever the file says (INT96) */
        delta_type_timestamp(json_string_value(type), out);
        return FT_OK;
    }
    if (depth > 256)
        return FT_OK;
    const char *kind = jstr(type, "type");
    if (!kind)
        return FT_OK;
    if (!strcmp(kind, "struct") && in->kind == DATA_V_STRUCT) {
        json_t *fields = json_object_get(type, "fields");
        size_t n = json_array_size(fields);
        data_value *items = src_pool_alloc(pool, (n ? n : 1) * sizeof *items);
        const char **names = src_pool_alloc(pool, (n ? n : 1) * sizeof *names);
        if (!items || !names)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *f = json_array_get(fields, i);
            const char *name = jstr(f, "name");
            const char *phys = jstr(json_object_get(f, "metadata"), "delta.columnMapping.physicalName");
            names[i] = name ? name : "";
            memset(&items[i], 0, sizeof items[i]);
            for (uint32_t k = 0; in->names && k < in->n; k++)
                if (strcmp(in->names[k], phys ? phys : names[i]) == 0) {
                    FT_TRY(rename_value(&in->items[k], json_object_get(f, "type"), pool, &items[i], depth + 1, err));
                    break;
                }
        }
        out->items = items;
        out->names = names;
        out->n = (uint32_t)n;
        return FT_OK;
    }
    if ((!strcmp(kind, "array") && in->kind == DATA_V_LIST) || (!strcmp(kind, "map") && in->kind == DATA_V_MAP)) {
        size_t n = in->kind == DATA_V_MAP ? 2 * (size_t)in->n : in->n;
        data_value *items = src_pool_alloc(pool, (n ? n : 1) * sizeof *items);
        if (!items)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            const json_t *t = in->kind == DATA_V_LIST ? json_object_get(type, "elementType")
                                                      : json_object_get(type, i % 2 ? "valueType" : "keyType");
            FT_TRY(rename_value(&in->items[i], t, pool, &items[i], depth + 1, err));
        }
        out->items = items;
        return FT_OK;
    }
    return FT_OK;
}

ft_status delta_rename_value(const delta_snapshot *s, const delta_field *df, const data_value *in, src_pool *pool,
                             data_value *out, ft_err *err) {
    if (!s->cm_mode) {
        *out = *in;
        return FT_OK;
    }
    return rename_value(in, df->type, pool, out, 0, err);
}

/* Column mapping, id mode: the data files' columns are the table's by Parquet field_id, whatever
 * their names. Nodes matched by id take the physical name (what the rest of the reading looks
 * up); nodes with an id the schema does not have (dropped columns) take an empty name. */
static const pq_node *only_child(const pq_file *pq, const pq_node *n) {
    return n && n->n_children == 1 ? pq_node_at(pq, n->children[0]) : NULL;
}

/* The child of a list or map that holds `what` ("element", "key", "value") by the ids Delta keeps
 * for them (delta.columnMapping.nested.ids on the nearest struct field, keyed by the field's
 * physical name and the path down: "col-a.element", "col-a.value.element"; IcebergCompatV2
 * writers record them and put them on the Parquet nodes). `cands` are the places the Parquet
 * rules allow for it, in order; `want` the id the table gives it (-1: none). A file whose nodes
 * carry ids must have it where the rules put it: a different id means the data is not this
 * column's (refused: never read as other values); a file without ids is read by position. */
static ft_status nested_child(const delta_snapshot *s, const pq_file *pq, const pq_node *const *cands, int n_cands,
                              int64_t want, const char *path, const char *what, const pq_node **out, ft_err *err) {
    *out = NULL;
    for (int i = 0; i < n_cands; i++)
        if (cands[i] && !*out)
            *out = cands[i];
    if (want < 0)
        return FT_OK;
    bool any_id = false;
    for (int i = 0; i < n_cands; i++) {
        if (!cands[i] || !cands[i]->has_field_id)
            continue;
        any_id = true;
        if (cands[i]->field_id == want) {
            *out = cands[i];
            return FT_OK;
        }
    }
    if (!any_id)
        return FT_OK;
    return FT_ERR_AT(err, FT_ERR_INVALID, s->display, 0, 0,
                     "Delta table %s version %lld, data file %s: the %s of %s has Parquet field id %d in the file, but "
                     "the table's schema gives it id %lld (delta.columnMapping.nested.ids): the file does not hold "
                     "this column's data",
                     s->display, (long long)s->version, pq_name(pq), what, path, (*out)->field_id, (long long)want);
}

/* id of `path.what` in a nested-ids object, or -1 */
static int64_t nested_id(const json_t *ids, const char *path, const char *what, char *key, size_t cap) {
    snprintf(key, cap, "%s.%s", path, what);
    int64_t id;
    return ids && jint(ids, key, &id) ? id : -1;
}

/* `ids`/`path`: the nested ids of the nearest enclosing struct field and the path from it
 * ("col-a", "col-a.element", ...). */
static ft_status map_ids(const delta_snapshot *s, const json_t *type, pq_file *pq, const pq_node *node,
                         const json_t *ids, const char *path, int depth, ft_err *err) {
    if (!node || !json_is_object(type) || depth > 256)
        return FT_OK;
    const char *kind = jstr(type, "type");
    if (!kind)
        return FT_OK;
    char key[1024];
    if (!strcmp(kind, "struct")) {
        json_t *fields = json_object_get(type, "fields");
        int32_t nch = node->n_children;
        for (int32_t k = 0; k < nch; k++) {
            int32_t ci = node->children[k];
            const pq_node *c = pq_node_at(pq, ci);
            if (!c || !c->has_field_id)
                continue;
            const json_t *match = NULL;
            size_t i;
            json_t *f;
            json_array_foreach(fields, i, f) {
                int64_t id;
                if (jint(json_object_get(f, "metadata"), "delta.columnMapping.id", &id) && id == c->field_id) {
                    match = f;
                    break;
                }
            }
            const json_t *meta = match ? json_object_get(match, "metadata") : NULL;
            const char *phys = match ? jstr(meta, "delta.columnMapping.physicalName") : NULL;
            const char *name = match ? (phys ? phys : jstr(match, "name")) : "";
            FT_TRY(pq_rename_node(pq, ci, name ? name : "", err));
            if (match)
                FT_TRY(map_ids(s, json_object_get(match, "type"), pq, pq_node_at(pq, ci),
                               json_object_get(meta, "delta.columnMapping.nested.ids"), name ? name : "", depth + 1,
                               err));
        }
    } else if (!strcmp(kind, "array")) {
        /* LIST: the repeated group's only child, or (two-level lists) the repeated group itself */
        const pq_node *rep = only_child(pq, node);
        const pq_node *cands[2] = {rep && rep->n_children == 1 ? only_child(pq, rep) : NULL, rep};
        const pq_node *el;
        int64_t want = nested_id(ids, path, "element", key, sizeof key);
        FT_TRY(nested_child(s, pq, cands, 2, want, path, "list element", &el, err));
        FT_TRY(map_ids(s, json_object_get(type, "elementType"), pq, el, ids, key, depth + 1, err));
    } else if (!strcmp(kind, "map")) {
        const pq_node *kv = only_child(pq, node);
        if (kv && kv->n_children == 2) {
            static const char *const what[2] = {"key", "value"};
            for (int k = 0; k < 2; k++) {
                const pq_node *cands[1] = {pq_node_at(pq, kv->children[k])}, *child;
                int64_t want = nested_id(ids, path, what[k], key, sizeof key);
                FT_TRY(nested_child(s, pq, cands, 1, want, path, k ? "map value" : "map key", &child, err));
                char sub_path[1024];
                snprintf(sub_path, sizeof sub_path, "%s", key);
                FT_TRY(map_ids(s, json_object_get(type, k ? "valueType" : "keyType"), pq, child, ids, sub_path,
                               depth + 1, err));
            }
        }
    }
    return FT_OK;
}

ft_status delta_map_field_ids(const delta_snapshot *s, pq_file *pq, ft_err *err) {
    if (s->cm_mode != 2)
        return FT_OK;
    const pq_node *root = pq_node_at(pq, 0);
    bool any = false;
    for (int32_t k = 0; root && k < root->n_children && !any; k++)
        any = pq_node_at(pq, root->children[k])->has_field_id;
    if (!any) /* a file written without field ids: its columns go by physical name */
        return FT_OK;
    return map_ids(s, s->schema, pq, root, NULL, "", 0, err);
}

const delta_field *delta_find_field(const delta_snapshot *s, const char *name) {
    for (size_t i = 0; i < s->n_fields; i++)
        if (strcmp(s->fields[i].name, name) == 0)
            return &s->fields[i];
    return NULL;
}
