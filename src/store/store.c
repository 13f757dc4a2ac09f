/* store/store.c: the run store in SQLite (SPEC §1, §5): opening with numbered migrations, runs and
 * their status lifecycle, events, metrics and checkpoints. The registry is in registry.c.
 *
 * Why WAL + synchronous=FULL: in WAL mode a commit appends to the -wal file; with FULL that file
 * is fsynced at every commit, so a committed event survives a power cut, not only a killed
 * process (NORMAL would survive a SIGKILL but could lose the last commits on power loss). The
 * cost is one fsync per commit; the trainer commits once per step at most, so it is small next
 * to a training step. A process killed mid-transaction leaves an uncommitted tail in the WAL,
 * which SQLite ignores at the next open. */
#include <math.h>
#include <sqlite3.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <sys/time.h>

#include "ftune/json.h"
#include "ftune/store.h"
#include "store_internal.h"

/* ---------------------------------------------------------------- helpers */

double store_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

/* What to do about a failed SQLite call, in words a user can act on: SQLite's own messages
 * ("unable to open database file", "disk I/O error") say neither why nor what next. */
static const char *store_advice(int code) {
    switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return "another process holds a lock on it (a long transaction in another program?); try again when it "
               "is released";
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return "it cannot be written (read-only file, folder or file system): check the permissions of "
               "$FTUNE_HOME and ftune.db, or point FTUNE_HOME at a writable folder";
    case SQLITE_CANTOPEN:
        return "it cannot be opened: check that $FTUNE_HOME exists and is a writable folder (and ftune.db a "
               "file), or point FTUNE_HOME elsewhere";
    case SQLITE_FULL:
        return "the disk is full: free space (e.g. `ftune delete` old runs, or remove files) and try again";
    case SQLITE_IOERR:
        return "the disk refused a read or write (full disk, removed or failing device, quota): free space or "
               "check the disk, then try again";
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return "the database file is damaged: move ftune.db aside (keep it: `sqlite3 ftune.db .recover` can "
               "often save its rows), then ftune starts an empty store; run folders and the registry under "
               "$FTUNE_HOME are kept";
    default: return NULL;
    }
}

ft_status store_sql_err(ft_store *s, ft_err *err, const char *what) {
    int code = sqlite3_extended_errcode(s->db);
    ft_status st = (code == SQLITE_NOMEM) ? FT_ERR_NOMEM : FT_ERR_IO;
    const char *advice = store_advice(code);
    return FT_ERR(err, st, "store %s: %s: %s%s%s", s->path, what, sqlite3_errmsg(s->db), advice ? ": " : "",
                  advice ? advice : "");
}

ft_status store_exec(ft_store *s, const char *sql, ft_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        const char *advice = store_advice(sqlite3_extended_errcode(s->db));
        ft_status st = FT_ERR(err, FT_ERR_IO, "store %s: %s%s%s", s->path, msg ? msg : "error", advice ? ": " : "",
                              advice ? advice : "");
        sqlite3_free(msg);
        return st;
    }
    return FT_OK;
}

void ft_store_set_busy_timeout(ft_store *s, int ms) { sqlite3_busy_timeout(s->db, ms); }

ft_status store_prepare(ft_store *s, const char *sql, sqlite3_stmt **st, ft_err *err) {
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
        return store_sql_err(s, err, "prepare");
    return FT_OK;
}

/* Bind a string or NULL. */
void store_bind_text(sqlite3_stmt *st, int i, const char *v) {
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

char *store_col_text(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? ft_strdup((const char *)t) : NULL;
}

ft_status store_begin(ft_store *s, ft_err *err) { return store_exec(s, "BEGIN IMMEDIATE", err); }
ft_status store_commit(ft_store *s, ft_err *err) { return store_exec(s, "COMMIT", err); }
void store_rollback(ft_store *s) { sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); }

/* Ends a transaction opened with store_begin: commit when rs is FT_OK, roll back otherwise
 * (also when the commit itself fails). Returns the final status. */
static ft_status store_finish(ft_store *s, ft_status rs, ft_err *err) {
    if (rs == FT_OK)
        rs = store_commit(s, err);
    if (rs != FT_OK)
        store_rollback(s);
    return rs;
}

/* Makes room for row n in a growing result array v of elem-byte rows (capacity *cap, first
 * allocation `first` rows, then doubling). Returns the array to use, or NULL when out of memory,
 * in which case v is untouched for the caller to free. */
static void *store_grow(void *v, size_t *cap, size_t n, size_t elem, size_t first) {
    if (n < *cap)
        return v;
    size_t nc = *cap ? *cap * 2 : first;
    void *nv = ft_realloc(v, nc * elem);
    if (nv)
        *cap = nc;
    return nv;
}

/* Steps a statement that returns no rows once and finalizes it; `what` names the action in the error. */
static ft_status store_step_done(ft_store *s, sqlite3_stmt *st, const char *what, ft_err *err) {
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store_sql_err(s, err, what);
    return FT_OK;
}

/* ---------------------------------------------------------------- migrations
 * Migration k (1-based) takes the schema from version k-1 to k. Never edit a released one:
 * append a new one. Each runs in one IMMEDIATE transaction that re-reads the version first, so
 * two processes opening a fresh store at once apply it once. */
static const char *const migrations[] = {
    /* 1: the first schema */
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL UNIQUE,"
    "  status TEXT NOT NULL,"
    "  model TEXT, task_type TEXT, train_data_path TEXT, register_to TEXT, eval_data_path TEXT,"
    "  custom_weights_path TEXT, training_duration TEXT, learning_rate REAL, context_length INTEGER,"
    "  experiment_path TEXT, run_dir TEXT, config TEXT NOT NULL DEFAULT '{}',"
    "  details TEXT, registered_name TEXT, pid INTEGER NOT NULL DEFAULT 0, host TEXT,"
    "  progress REAL NOT NULL DEFAULT 0, eta_s REAL NOT NULL DEFAULT -1,"
    "  created REAL NOT NULL, started REAL NOT NULL DEFAULT 0, finished REAL NOT NULL DEFAULT 0,"
    "  updated REAL NOT NULL);"
    "CREATE INDEX runs_status ON runs(status, created);"
    "CREATE TABLE events ("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL, time REAL NOT NULL, type TEXT NOT NULL, level TEXT NOT NULL,"
    "  message TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;"
    "CREATE TABLE metrics ("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  step INTEGER NOT NULL, name TEXT NOT NULL, value REAL, time REAL NOT NULL,"
    "  PRIMARY KEY (run_id, name, step)) WITHOUT ROWID;"
    "CREATE INDEX metrics_step ON metrics(run_id, step);"
    "CREATE TABLE checkpoints ("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL, path TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL,"
    "  time REAL NOT NULL, PRIMARY KEY (run_id, name)) WITHOUT ROWID;"
    "CREATE TABLE registered_models ("
    "  name TEXT PRIMARY KEY, created REAL NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE model_versions ("
    "  name TEXT NOT NULL REFERENCES registered_models(name),"
    "  version INTEGER NOT NULL, path TEXT NOT NULL, run TEXT, checkpoint TEXT, metrics TEXT,"
    "  tokenizer_hash TEXT, created REAL NOT NULL, PRIMARY KEY (name, version)) WITHOUT ROWID;",
    /* 2: the highest version each model ever had, so that a deleted version's number is never
     * given again (a consumer pinned to c.s.n/3 must never get other weights) */
    "ALTER TABLE registered_models ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0;"
    "UPDATE registered_models SET last_version ="
    "  (SELECT COALESCE(MAX(version), 0) FROM model_versions v WHERE v.name = registered_models.name);",
};
#define N_MIGRATIONS ((int64_t)(sizeof migrations / sizeof *migrations))

int64_t ft_store_schema_latest(void) { return N_MIGRATIONS; }

static ft_status read_version(ft_store *s, int64_t *v, ft_err *err) {
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, "SELECT COALESCE(MAX(version), 0) FROM schema_version", &st, err));
    int rc = sqlite3_step(st);
    *v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return store_sql_err(s, err, "reading the schema version");
    return FT_OK;
}

int64_t ft_store_schema_version(ft_store *s) {
    int64_t v = -1;
    if (read_version(s, &v, NULL) != FT_OK)
        return -1;
    return v;
}

static ft_status migrate(ft_store *s, ft_err *err) {
    /* An up-to-date store is only read here: a read-only command works on a read-only home, on a
     * full disk and while another process holds the write lock. */
    int64_t v0 = 0;
    if (read_version(s, &v0, NULL) == FT_OK && v0 == N_MIGRATIONS)
        return FT_OK;
    FT_TRY(store_exec(s, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied REAL)",
                      err));
    for (;;) {
        FT_TRY(store_begin(s, err));
        int64_t v;
        ft_status st = read_version(s, &v, err);
        if (st != FT_OK) {
            store_rollback(s);
            return st;
        }
        if (v > N_MIGRATIONS) {
            store_rollback(s);
            return FT_ERR(err, FT_ERR_UNSUPPORTED,
                          "store %s has schema version %lld, newer than this ftune knows (%lld): upgrade ftune",
                          s->path, (long long)v, (long long)N_MIGRATIONS);
        }
        if (v == N_MIGRATIONS) {
            store_rollback(s);
            return FT_OK;
        }
        st = store_exec(s, migrations[v], err);
        if (st == FT_OK) {
            char sql[128];
            snprintf(sql, sizeof sql, "INSERT INTO schema_version VALUES (%lld, %.6f)", (long long)(v + 1),
                     store_now());
            st = store_exec(s, sql, err);
        }
        if (st == FT_OK)
            st = store_commit(s, err);
        if (st != FT_OK) {
            store_rollback(s);
            ft_err_prefix(err, "migration %lld", (long long)(v + 1));
            return st;
        }
    }
}

/* Whether the file system of db_path has less than 1 MiB left for this user. */
static bool store_disk_nearly_full(const char *db_path) {
    if (!strcmp(db_path, ":memory:"))
        return false;
    char *dir = ft_strdup(db_path);
    if (!dir)
        return false;
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = 0;
    struct statvfs v;
    bool full = statvfs(slash ? dir : ".", &v) == 0 && (uint64_t)v.f_bavail * (uint64_t)v.f_frsize < ((uint64_t)1 << 20);
    ft_free(dir);
    return full;
}

/* A store in a folder that cannot be written (a read-only mount, a folder without write
 * permission): WAL mode cannot create its ftune.db-shm there, so SQLite cannot even read. When
 * the store was closed cleanly (no ftune.db-wal, or an empty one), the file alone holds every
 * commit, and it is opened as immutable: read-only, without locks or -shm. Writes then fail with
 * "readonly database", which store_advice explains. Returns whether it reopened s. */
static bool reopen_immutable(ft_store *s) {
    char *dir = ft_strdup(s->path), *wal = ft_asprintf("%s-wal", s->path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash)
        *(slash == dir ? slash + 1 : slash) = 0;
    struct stat ws;
    bool ok = dir && wal && access(slash ? dir : ".", W_OK) != 0 && ft_path_exists(s->path) &&
              (stat(wal, &ws) != 0 || ws.st_size == 0);
    ft_free(dir);
    ft_free(wal);
    if (!ok)
        return false;
    /* the path as a URI: percent-encode what a URI would read otherwise */
    ft_buf uri = {0};
    ft_buf_appendf(&uri, "file:");
    for (const char *p = s->path; *p; p++) {
        if (*p == '%' || *p == '?' || *p == '#')
            ft_buf_appendf(&uri, "%%%02X", (unsigned char)*p);
        else
            ft_buf_append(&uri, p, 1);
    }
    ft_buf_appendf(&uri, "?immutable=1");
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(ft_buf_cstr(&uri), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                             NULL);
    ft_buf_free(&uri);
    if (rc != SQLITE_OK) {
        sqlite3_close_v2(db);
        return false;
    }
    sqlite3_close_v2(s->db);
    s->db = db;
    return true;
}

ft_status ft_store_open(const char *db_path, ft_store **out, ft_err *err) {
    *out = NULL;
    ft_store *s = ft_calloc(1, sizeof *s);
    if (!s)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    s->path = ft_strdup(db_path);
    if (sqlite3_open_v2(db_path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        ft_status st = FT_ERR(err, FT_ERR_IO, "cannot open store %s: %s", db_path,
                              s->db ? sqlite3_errmsg(s->db) : "out of memory");
        ft_store_close(s);
        return st;
    }
    /* A long busy timeout: a run's writer holds the lock for milliseconds, but a slow disk's
     * fsync under load can take seconds. journal_mode needs the lock too, hence after it. */
    sqlite3_busy_timeout(s->db, 30000);
    ft_status st = FT_OK;
    /* On a full disk the shared-memory index of WAL mode (ftune.db-shm, 32 KiB) cannot be
     * created, and every command would fail with "disk I/O error", also `list` and the `delete`
     * that would free space. In exclusive locking mode SQLite keeps that index in memory instead;
     * the cost, other processes waiting while this one has the store open, is what a full disk
     * calls for. */
    if (store_disk_nearly_full(db_path))
        st = store_exec(s, "PRAGMA locking_mode=EXCLUSIVE", err);
    if (st == FT_OK)
        st = store_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err);
    if (st != FT_OK && reopen_immutable(s)) {
        ft_err_clear(err);
        st = store_exec(s, "PRAGMA foreign_keys=ON", err);
    }
    if (st == FT_OK)
        st = migrate(s, err);
    if (st != FT_OK) {
        ft_store_close(s);
        return st;
    }
    *out = s;
    return FT_OK;
}

ft_status ft_store_open_home(ft_store **out, ft_err *err) {
    char *home = ft_home_dir();
    if (!home)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_status st = ft_home_make(home, err);
    char *db = st == FT_OK ? ft_path_join(home, "ftune.db") : NULL;
    if (st == FT_OK)
        st = ft_store_open(db, out, err);
    ft_free(db);
    ft_free(home);
    return st;
}

ft_status ft_store_open_home_existing(ft_store **out, ft_err *err) {
    char *home = ft_home_dir();
    char *db = home ? ft_path_join(home, "ftune.db") : NULL;
    ft_free(home);
    if (!db)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    /* No store yet: an empty one in memory answers "no runs" without creating folders. */
    ft_status st = ft_store_open(ft_path_exists(db) ? db : ":memory:", out, err);
    ft_free(db);
    return st;
}

void ft_store_close(ft_store *s) {
    if (!s)
        return;
    if (s->db)
        sqlite3_close_v2(s->db);
    ft_free(s->path);
    ft_free(s);
}

/* ---------------------------------------------------------------- statuses */

static const char *const status_names[FT_RUN_N_STATUS] = {
    "PENDING", "QUEUED", "STARTING", "RUNNING", "TERMINATING", "COMPLETED", "FAILED", "STOPPED",
};

const char *ft_run_status_str(ft_run_status s) {
    return (unsigned)s < FT_RUN_N_STATUS ? status_names[s] : "UNKNOWN";
}

bool ft_run_status_parse(const char *s, ft_run_status *out) {
    for (int i = 0; i < FT_RUN_N_STATUS; i++)
        if (!strcasecmp(s, status_names[i])) {
            *out = (ft_run_status)i;
            return true;
        }
    return false;
}

bool ft_run_status_is_final(ft_run_status s) {
    return s == FT_RUN_COMPLETED || s == FT_RUN_FAILED || s == FT_RUN_STOPPED;
}

bool ft_run_transition_ok(ft_run_status from, ft_run_status to) {
    if (from == to)
        return true;
    if (from == FT_RUN_COMPLETED)
        return false;
    bool active = from == FT_RUN_STARTING || from == FT_RUN_RUNNING || from == FT_RUN_TERMINATING;
    switch (to) {
    case FT_RUN_PENDING: return false;
    case FT_RUN_QUEUED: return from == FT_RUN_PENDING || active;
    case FT_RUN_STARTING:
        return from == FT_RUN_QUEUED || active || from == FT_RUN_FAILED || from == FT_RUN_STOPPED;
    case FT_RUN_RUNNING: return from == FT_RUN_STARTING;
    case FT_RUN_TERMINATING: return !ft_run_status_is_final(from);
    case FT_RUN_COMPLETED: return from == FT_RUN_RUNNING || from == FT_RUN_TERMINATING;
    case FT_RUN_FAILED:
    case FT_RUN_STOPPED: return !ft_run_status_is_final(from);
    default: return false;
    }
}

/* ---------------------------------------------------------------- runs */

void ft_run_deinit(ft_run *r) {
    if (!r)
        return;
    char **strs[] = {&r->name,          &r->model,          &r->task_type,         &r->train_data_path,
                     &r->register_to,   &r->eval_data_path, &r->custom_weights_path, &r->training_duration,
                     &r->experiment_path, &r->run_dir,      &r->config_json,       &r->details,
                     &r->registered_name, &r->host};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        ft_free(*strs[i]);
        *strs[i] = NULL;
    }
}

#define RUN_COLS                                                                                               \
    "id, name, status, model, task_type, train_data_path, register_to, eval_data_path, custom_weights_path, "  \
    "training_duration, learning_rate, context_length, experiment_path, run_dir, config, details, "            \
    "registered_name, pid, host, progress, eta_s, created, started, finished, updated"

static void read_run(sqlite3_stmt *st, ft_run *r) {
    memset(r, 0, sizeof *r);
    int c = 0;
    r->id = sqlite3_column_int64(st, c++);
    r->name = store_col_text(st, c++);
    const char *status = (const char *)sqlite3_column_text(st, c++);
    if (!status || !ft_run_status_parse(status, &r->status))
        r->status = FT_RUN_FAILED;
    r->model = store_col_text(st, c++);
    r->task_type = store_col_text(st, c++);
    r->train_data_path = store_col_text(st, c++);
    r->register_to = store_col_text(st, c++);
    r->eval_data_path = store_col_text(st, c++);
    r->custom_weights_path = store_col_text(st, c++);
    r->training_duration = store_col_text(st, c++);
    r->learning_rate = sqlite3_column_double(st, c++);
    r->context_length = sqlite3_column_int64(st, c++);
    r->experiment_path = store_col_text(st, c++);
    r->run_dir = store_col_text(st, c++);
    r->config_json = store_col_text(st, c++);
    r->details = store_col_text(st, c++);
    r->registered_name = store_col_text(st, c++);
    r->pid = sqlite3_column_int64(st, c++);
    r->host = store_col_text(st, c++);
    r->progress = sqlite3_column_double(st, c++);
    r->eta_s = sqlite3_column_double(st, c++);
    r->created = sqlite3_column_double(st, c++);
    r->started = sqlite3_column_double(st, c++);
    r->finished = sqlite3_column_double(st, c++);
    r->updated = sqlite3_column_double(st, c++);
}

void store_iso_time(double t, char *buf, size_t cap) {
    time_t secs = (time_t)t;
    struct tm tm;
    gmtime_r(&secs, &tm);
    int ms = (int)((t - (double)secs) * 1000.0);
    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

void ft_store_format_time(double t, char *buf, size_t cap) {
    store_iso_time(t, buf, cap);
}

json_t *store_time_json(double t) {
    if (t <= 0)
        return json_null();
    char buf[40];
    store_iso_time(t, buf, sizeof buf);
    return json_string(buf);
}

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

json_t *ft_run_to_json(const ft_run *r) {
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(r->name ? r->name : ""));
    json_object_set_new(o, "status", json_string(ft_run_status_str(r->status)));
    json_object_set_new(o, "model", str_or_null(r->model));
    json_object_set_new(o, "task_type", str_or_null(r->task_type));
    json_object_set_new(o, "train_data_path", str_or_null(r->train_data_path));
    json_object_set_new(o, "register_to", str_or_null(r->register_to));
    json_object_set_new(o, "eval_data_path", str_or_null(r->eval_data_path));
    json_object_set_new(o, "custom_weights_path", str_or_null(r->custom_weights_path));
    json_object_set_new(o, "training_duration", str_or_null(r->training_duration));
    json_object_set_new(o, "learning_rate", json_real(r->learning_rate));
    json_object_set_new(o, "context_length", r->context_length > 0 ? json_integer(r->context_length) : json_null());
    json_object_set_new(o, "experiment_path", str_or_null(r->experiment_path));
    json_object_set_new(o, "run_dir", str_or_null(r->run_dir));
    json_object_set_new(o, "details", str_or_null(r->details));
    json_object_set_new(o, "registered_model", str_or_null(r->registered_name));
    json_object_set_new(o, "progress", json_real(r->progress));
    json_object_set_new(o, "eta_s", r->eta_s >= 0 ? json_real(r->eta_s) : json_null());
    json_object_set_new(o, "pid", r->pid ? json_integer(r->pid) : json_null());
    json_object_set_new(o, "host", str_or_null(r->host));
    json_object_set_new(o, "created", store_time_json(r->created));
    json_object_set_new(o, "started", store_time_json(r->started));
    json_object_set_new(o, "finished", store_time_json(r->finished));
    json_t *cfg = NULL;
    if (r->config_json)
        cfg = json_loads(r->config_json, 0, NULL);
    json_object_set_new(o, "config", cfg ? cfg : json_object());
    return o;
}

/* The id of a run by name; FT_ERR_NOT_FOUND when there is none. */
ft_status store_run_id(ft_store *s, const char *name, int64_t *id, ft_err *err) {
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, "SELECT id FROM runs WHERE name = ?", &st, err));
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return FT_OK;
    if (rc == SQLITE_DONE)
        return FT_ERR(err, FT_ERR_NOT_FOUND, "no run named \"%s\"", name);
    return store_sql_err(s, err, "looking up a run");
}

/* Insert an event inside an open transaction. */
static ft_status add_event_locked(ft_store *s, int64_t run_id, const char *type, const char *level,
                                  const char *message, int64_t *seq_out, ft_err *err) {
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s,
                         "INSERT INTO events (run_id, seq, time, type, level, message) "
                         "VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?1), ?2, ?3, ?4, ?5) "
                         "RETURNING seq",
                         &st, err));
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_double(st, 2, store_now());
    sqlite3_bind_text(st, 3, type, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, level ? level : "INFO", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, message ? message : "", -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && seq_out)
        *seq_out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return store_sql_err(s, err, "adding an event");
    return FT_OK;
}

ft_status ft_store_run_create(ft_store *s, const ft_run *r, ft_err *err) {
    if (!r->name || !*r->name)
        return FT_ERR(err, FT_ERR_INVALID, "a run needs a name");
    FT_TRY(store_begin(s, err));
    sqlite3_stmt *st = NULL;
    ft_status rs = store_prepare(
        s,
        "INSERT INTO runs (name, status, model, task_type, train_data_path, register_to, eval_data_path, "
        "custom_weights_path, training_duration, learning_rate, context_length, experiment_path, run_dir, config, "
        "created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        &st, err);
    if (rs == FT_OK) {
        double now = store_now();
        int c = 1;
        sqlite3_bind_text(st, c++, r->name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, c++, "PENDING", -1, SQLITE_STATIC);
        store_bind_text(st, c++, r->model);
        store_bind_text(st, c++, r->task_type);
        store_bind_text(st, c++, r->train_data_path);
        store_bind_text(st, c++, r->register_to);
        store_bind_text(st, c++, r->eval_data_path);
        store_bind_text(st, c++, r->custom_weights_path);
        store_bind_text(st, c++, r->training_duration);
        sqlite3_bind_double(st, c++, r->learning_rate);
        sqlite3_bind_int64(st, c++, r->context_length);
        store_bind_text(st, c++, r->experiment_path);
        store_bind_text(st, c++, r->run_dir);
        store_bind_text(st, c++, r->config_json ? r->config_json : "{}");
        sqlite3_bind_double(st, c++, now);
        sqlite3_bind_double(st, c++, now);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_CONSTRAINT)
            rs = FT_ERR(err, FT_ERR_INVALID, "a run named \"%s\" already exists", r->name);
        else if (rc != SQLITE_DONE)
            rs = store_sql_err(s, err, "creating a run");
        sqlite3_finalize(st);
    }
    if (rs == FT_OK) {
        char *msg = ft_asprintf("run %s created from %s", r->name, r->model ? r->model : "?");
        rs = add_event_locked(s, sqlite3_last_insert_rowid(s->db), "CREATED", "INFO", msg, NULL, err);
        ft_free(msg);
    }
    return store_finish(s, rs, err);
}

ft_status ft_store_run_get(ft_store *s, const char *name, ft_run *out, ft_err *err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, "SELECT " RUN_COLS " FROM runs WHERE name = ?", &st, err));
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_run(st, out);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return FT_OK;
    if (rc == SQLITE_DONE)
        return FT_ERR(err, FT_ERR_NOT_FOUND, "no run named \"%s\" (see `ftune list`)", name);
    return store_sql_err(s, err, "reading a run");
}

ft_status ft_store_run_list(ft_store *s, uint32_t status_mask, int64_t limit, ft_run **runs, size_t *n,
                            ft_err *err) {
    *runs = NULL;
    *n = 0;
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, "SELECT " RUN_COLS " FROM runs ORDER BY created DESC, id DESC", &st, err));
    size_t cap = 0;
    ft_run *v = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ft_run r;
        read_run(st, &r);
        if (status_mask && !(status_mask & (1u << r.status))) {
            ft_run_deinit(&r);
            continue;
        }
        ft_run *nv = store_grow(v, &cap, *n, sizeof *nv, 16);
        if (!nv) {
            ft_run_deinit(&r);
            ft_run_list_free(v, *n);
            sqlite3_finalize(st);
            *n = 0;
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        }
        v = nv;
        v[(*n)++] = r;
        if (limit > 0 && (int64_t)*n >= limit)
            break;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        ft_run_list_free(v, *n);
        *n = 0;
        return store_sql_err(s, err, "listing runs");
    }
    *runs = v;
    return FT_OK;
}

void ft_run_list_free(ft_run *runs, size_t n) {
    for (size_t i = 0; i < n; i++)
        ft_run_deinit(&runs[i]);
    ft_free(runs);
}

ft_status ft_store_run_set_status(ft_store *s, const char *name, ft_run_status to, const char *event_type,
                                  const char *level, const char *message, const char *details, ft_err *err) {
    FT_TRY(store_begin(s, err));
    ft_run r;
    ft_status rs = ft_store_run_get(s, name, &r, err);
    if (rs == FT_OK && !ft_run_transition_ok(r.status, to))
        rs = FT_ERR(err, FT_ERR_INVALID, "run %s is %s: it cannot become %s", name, ft_run_status_str(r.status),
                    ft_run_status_str(to));
    if (rs == FT_OK) {
        sqlite3_stmt *st;
        rs = store_prepare(s,
                           "UPDATE runs SET status = ?2, updated = ?4,"
                           " details = CASE WHEN ?2 = 'STARTING' THEN ?3 ELSE COALESCE(?3, details) END,"
                           " started = CASE WHEN ?2 = 'STARTING' THEN ?4 ELSE started END,"
                           " finished = CASE WHEN ?2 IN ('COMPLETED','FAILED','STOPPED') THEN ?4 ELSE 0 END,"
                           " progress = CASE WHEN ?2 = 'COMPLETED' THEN 1.0 ELSE progress END,"
                           " pid = CASE WHEN ?2 IN ('COMPLETED','FAILED','STOPPED') THEN 0 ELSE pid END"
                           " WHERE id = ?1",
                           &st, err);
        if (rs == FT_OK) {
            sqlite3_bind_int64(st, 1, r.id);
            sqlite3_bind_text(st, 2, ft_run_status_str(to), -1, SQLITE_STATIC);
            store_bind_text(st, 3, details);
            sqlite3_bind_double(st, 4, store_now());
            if (sqlite3_step(st) != SQLITE_DONE)
                rs = store_sql_err(s, err, "updating a run's status");
            sqlite3_finalize(st);
        }
    }
    if (rs == FT_OK && event_type && (r.status != to || strcmp(event_type, ft_run_status_str(to)) != 0))
        rs = add_event_locked(s, r.id, event_type, level, message, NULL, err);
    rs = store_finish(s, rs, err);
    ft_run_deinit(&r);
    return rs;
}

/* Run one UPDATE on a run by name; NOT_FOUND when no row changed. */
static ft_status update_run(ft_store *s, const char *name, const char *sql, sqlite3_stmt **stp, ft_err *err) {
    (void)sql;
    sqlite3_stmt *st = *stp;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    int changes = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    *stp = NULL;
    if (rc != SQLITE_DONE)
        return store_sql_err(s, err, "updating a run");
    if (changes == 0)
        return FT_ERR(err, FT_ERR_NOT_FOUND, "no run named \"%s\"", name);
    return FT_OK;
}

ft_status ft_store_run_set_owner(ft_store *s, const char *name, int64_t pid, const char *host, ft_err *err) {
    const char *sql = "UPDATE runs SET pid = ?2, host = ?3, updated = ?4 WHERE name = ?1";
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, sql, &st, err));
    sqlite3_bind_int64(st, 2, pid);
    store_bind_text(st, 3, host);
    sqlite3_bind_double(st, 4, store_now());
    return update_run(s, name, sql, &st, err);
}

ft_status ft_store_run_take_over(ft_store *s, const char *name, int64_t expected_pid, int64_t pid, const char *host,
                                 ft_err *err) {
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, "UPDATE runs SET pid = ?3, host = ?4, updated = ?5 WHERE name = ?1 AND pid = ?2", &st,
                         err));
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, expected_pid);
    sqlite3_bind_int64(st, 3, pid);
    store_bind_text(st, 4, host);
    sqlite3_bind_double(st, 5, store_now());
    int rc = sqlite3_step(st);
    int changes = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store_sql_err(s, err, "taking over a run");
    if (changes == 1)
        return FT_OK;
    ft_run r;
    FT_TRY(ft_store_run_get(s, name, &r, err));
    ft_status out = FT_ERR(err, FT_ERR_INVALID, "run %s has been taken over by process %lld on %s", name,
                           (long long)r.pid, r.host ? r.host : "?");
    ft_run_deinit(&r);
    return out;
}

ft_status ft_store_run_set_progress(ft_store *s, const char *name, double progress, double eta_s, ft_err *err) {
    const char *sql = "UPDATE runs SET progress = ?2, eta_s = ?3, updated = ?4 WHERE name = ?1";
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, sql, &st, err));
    sqlite3_bind_double(st, 2, progress);
    sqlite3_bind_double(st, 3, eta_s);
    sqlite3_bind_double(st, 4, store_now());
    return update_run(s, name, sql, &st, err);
}

ft_status ft_store_run_set_registered(ft_store *s, const char *name, const char *registered_name, ft_err *err) {
    const char *sql = "UPDATE runs SET registered_name = ?2, updated = ?3 WHERE name = ?1";
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, sql, &st, err));
    store_bind_text(st, 2, registered_name);
    sqlite3_bind_double(st, 3, store_now());
    return update_run(s, name, sql, &st, err);
}

ft_status ft_store_run_set_config(ft_store *s, const char *name, const char *config_json, ft_err *err) {
    const char *sql = "UPDATE runs SET config = ?2, updated = ?3 WHERE name = ?1";
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, sql, &st, err));
    store_bind_text(st, 2, config_json);
    sqlite3_bind_double(st, 3, store_now());
    return update_run(s, name, sql, &st, err);
}

ft_status ft_store_run_claim_next(ft_store *s, int64_t pid, const char *host, char **name, ft_err *err) {
    *name = NULL;
    FT_TRY(store_begin(s, err));
    sqlite3_stmt *st;
    ft_status rs = store_prepare(s, "SELECT name FROM runs WHERE status = 'QUEUED' AND pid = 0 ORDER BY created, id LIMIT 1",
                                 &st, err);
    char *got = NULL;
    if (rs == FT_OK) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            got = store_col_text(st, 0);
        else if (rc != SQLITE_DONE)
            rs = store_sql_err(s, err, "finding a queued run");
        sqlite3_finalize(st);
    }
    if (rs == FT_OK && got) {
        /* Nested calls reuse the open transaction: BEGIN inside them would fail, so do the
         * update here directly. */
        rs = store_prepare(s,
                           "UPDATE runs SET status = 'STARTING', pid = ?2, host = ?3, started = ?4, updated = ?4 "
                           "WHERE name = ?1",
                           &st, err);
        if (rs == FT_OK) {
            sqlite3_bind_text(st, 1, got, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(st, 2, pid);
            store_bind_text(st, 3, host);
            sqlite3_bind_double(st, 4, store_now());
            if (sqlite3_step(st) != SQLITE_DONE)
                rs = store_sql_err(s, err, "claiming a run");
            sqlite3_finalize(st);
        }
    }
    rs = store_finish(s, rs, err);
    if (rs != FT_OK) {
        ft_free(got);
        return rs;
    }
    *name = got;
    return FT_OK;
}

ft_status ft_store_run_delete(ft_store *s, const char *name, ft_err *err) {
    int64_t id;
    FT_TRY(store_run_id(s, name, &id, err));
    FT_TRY(store_begin(s, err));
    static const char *const sqls[] = {"DELETE FROM events WHERE run_id = ?", "DELETE FROM metrics WHERE run_id = ?",
                                       "DELETE FROM checkpoints WHERE run_id = ?", "DELETE FROM runs WHERE id = ?"};
    ft_status rs = FT_OK;
    for (size_t i = 0; i < 4 && rs == FT_OK; i++) {
        sqlite3_stmt *st;
        rs = store_prepare(s, sqls[i], &st, err);
        if (rs != FT_OK)
            break;
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) != SQLITE_DONE)
            rs = store_sql_err(s, err, "deleting a run");
        sqlite3_finalize(st);
    }
    return store_finish(s, rs, err);
}

/* ---------------------------------------------------------------- events */

ft_status ft_store_event_add(ft_store *s, const char *run, const char *type, const char *level,
                             const char *message, int64_t *seq, ft_err *err) {
    int64_t id;
    FT_TRY(store_run_id(s, run, &id, err));
    FT_TRY(store_begin(s, err));
    ft_status rs = add_event_locked(s, id, type, level, message, seq, err);
    return store_finish(s, rs, err);
}

ft_status ft_store_event_list(ft_store *s, const char *run, int64_t after_seq, ft_event **events, size_t *n,
                              ft_err *err) {
    *events = NULL;
    *n = 0;
    int64_t id;
    FT_TRY(store_run_id(s, run, &id, err));
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, "SELECT seq, time, type, level, message FROM events WHERE run_id = ? AND seq > ? ORDER BY seq",
                         &st, err));
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, after_seq);
    size_t cap = 0;
    ft_event *v = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ft_event *nv = store_grow(v, &cap, *n, sizeof *nv, 32);
        if (!nv) {
            ft_event_list_free(v, *n);
            sqlite3_finalize(st);
            *n = 0;
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        }
        v = nv;
        ft_event *e = &v[(*n)++];
        memset(e, 0, sizeof *e);
        e->seq = sqlite3_column_int64(st, 0);
        e->time = sqlite3_column_double(st, 1);
        snprintf(e->type, sizeof e->type, "%s", (const char *)sqlite3_column_text(st, 2));
        snprintf(e->level, sizeof e->level, "%s", (const char *)sqlite3_column_text(st, 3));
        e->message = store_col_text(st, 4);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        ft_event_list_free(v, *n);
        *n = 0;
        return store_sql_err(s, err, "listing events");
    }
    *events = v;
    return FT_OK;
}

void ft_event_list_free(ft_event *events, size_t n) {
    for (size_t i = 0; i < n; i++)
        ft_free(events[i].message);
    ft_free(events);
}

json_t *ft_event_to_json(const ft_event *e) {
    json_t *o = json_object();
    json_object_set_new(o, "seq", json_integer(e->seq));
    json_object_set_new(o, "time", store_time_json(e->time));
    json_object_set_new(o, "type", json_string(e->type));
    json_object_set_new(o, "level", json_string(e->level));
    json_object_set_new(o, "message", json_string(e->message ? e->message : ""));
    return o;
}

/* ---------------------------------------------------------------- metrics */

/* Inserts (or replaces) n metric rows of a run in one transaction, all stamped with the same
 * time. Row i is m[i] when m is given, otherwise (step, names[i], values[i]). */
static ft_status metrics_insert(ft_store *s, const char *run, size_t n, const ft_metric *m, int64_t step,
                                const char *const *names, const double *values, ft_err *err) {
    int64_t id;
    FT_TRY(store_run_id(s, run, &id, err));
    FT_TRY(store_begin(s, err));
    sqlite3_stmt *st = NULL;
    ft_status rs = store_prepare(s, "INSERT OR REPLACE INTO metrics (run_id, step, name, value, time) VALUES (?,?,?,?,?)",
                                 &st, err);
    double now = store_now();
    for (size_t i = 0; rs == FT_OK && i < n; i++) {
        double value = m ? m[i].value : values[i];
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, m ? m[i].step : step);
        sqlite3_bind_text(st, 3, m ? m[i].name : names[i], -1, SQLITE_TRANSIENT);
        if (isfinite(value))
            sqlite3_bind_double(st, 4, value);
        else
            sqlite3_bind_null(st, 4); /* SQLite stores NaN as NULL anyway; say so explicitly */
        sqlite3_bind_double(st, 5, now);
        if (sqlite3_step(st) != SQLITE_DONE)
            rs = store_sql_err(s, err, "adding a metric");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return store_finish(s, rs, err);
}

ft_status ft_store_metrics_add(ft_store *s, const char *run, int64_t step, const char *const *names,
                               const double *values, size_t n, ft_err *err) {
    return metrics_insert(s, run, n, NULL, step, names, values, err);
}

ft_status ft_store_metrics_add_batch(ft_store *s, const char *run, const ft_metric *m, size_t n, ft_err *err) {
    if (n == 0)
        return FT_OK;
    return metrics_insert(s, run, n, m, 0, NULL, NULL, err);
}

ft_status ft_store_metrics_list(ft_store *s, const char *run, const char *name, ft_metric **out, size_t *n,
                                ft_err *err) {
    *out = NULL;
    *n = 0;
    int64_t id;
    FT_TRY(store_run_id(s, run, &id, err));
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s,
                         "SELECT step, name, value, time FROM metrics WHERE run_id = ?1 AND (?2 IS NULL OR name = ?2) "
                         "ORDER BY step, name",
                         &st, err));
    sqlite3_bind_int64(st, 1, id);
    store_bind_text(st, 2, name);
    size_t cap = 0;
    ft_metric *v = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ft_metric *nv = store_grow(v, &cap, *n, sizeof *nv, 64);
        if (!nv) {
            ft_free(v);
            sqlite3_finalize(st);
            *n = 0;
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        }
        v = nv;
        ft_metric *m = &v[(*n)++];
        m->step = sqlite3_column_int64(st, 0);
        snprintf(m->name, sizeof m->name, "%s", (const char *)sqlite3_column_text(st, 1));
        m->value = sqlite3_column_type(st, 2) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 2);
        m->time = sqlite3_column_double(st, 3);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        ft_free(v);
        *n = 0;
        return store_sql_err(s, err, "listing metrics");
    }
    *out = v;
    return FT_OK;
}

ft_status ft_store_metrics_truncate(ft_store *s, const char *run, int64_t step, ft_err *err) {
    int64_t id;
    FT_TRY(store_run_id(s, run, &id, err));
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, "DELETE FROM metrics WHERE run_id = ? AND step > ?", &st, err));
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, step);
    return store_step_done(s, st, "truncating metrics", err);
}

/* ---------------------------------------------------------------- checkpoints */

ft_status ft_store_checkpoint_add(ft_store *s, const char *run, const char *name, const char *path, int64_t step,
                                  int64_t epoch, ft_err *err) {
    int64_t id;
    FT_TRY(store_run_id(s, run, &id, err));
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, "INSERT OR REPLACE INTO checkpoints (run_id, name, path, step, epoch, time) VALUES (?,?,?,?,?,?)",
                         &st, err));
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, step);
    sqlite3_bind_int64(st, 5, epoch);
    sqlite3_bind_double(st, 6, store_now());
    return store_step_done(s, st, "recording a checkpoint", err);
}

ft_status ft_store_checkpoint_list(ft_store *s, const char *run, ft_checkpoint_row **out, size_t *n, ft_err *err) {
    *out = NULL;
    *n = 0;
    int64_t id;
    FT_TRY(store_run_id(s, run, &id, err));
    sqlite3_stmt *st;
    FT_TRY(store_prepare(s, "SELECT name, path, step, epoch, time FROM checkpoints WHERE run_id = ? ORDER BY step, time",
                         &st, err));
    sqlite3_bind_int64(st, 1, id);
    size_t cap = 0;
    ft_checkpoint_row *v = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ft_checkpoint_row *nv = store_grow(v, &cap, *n, sizeof *nv, 8);
        if (!nv) {
            ft_checkpoint_list_free(v, *n);
            sqlite3_finalize(st);
            *n = 0;
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        }
        v = nv;
        ft_checkpoint_row *c = &v[(*n)++];
        snprintf(c->name, sizeof c->name, "%s", (const char *)sqlite3_column_text(st, 0));
        c->path = store_col_text(st, 1);
        c->step = sqlite3_column_int64(st, 2);
        c->epoch = sqlite3_column_int64(st, 3);
        c->time = sqlite3_column_double(st, 4);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        ft_checkpoint_list_free(v, *n);
        *n = 0;
        return store_sql_err(s, err, "listing checkpoints");
    }
    *out = v;
    return FT_OK;
}

void ft_checkpoint_list_free(ft_checkpoint_row *rows, size_t n) {
    for (size_t i = 0; i < n; i++)
        ft_free(rows[i].path);
    ft_free(rows);
}
