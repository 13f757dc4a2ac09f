/* runs/files.c: which folders a run may use and what `ftune delete` may remove (issue #9).
 *
 * The rule: ftune removes only what it created. `create` refuses a run folder that is $FTUNE_HOME,
 * holds it, or lies inside it anywhere but experiments/ and volumes/, and one that already exists
 * with something in it; it then makes the folder (and its missing parents) and writes a marker,
 * .ftune-run, naming the run and the folders it made. `delete` removes, inside a folder whose
 * marker names the run, only the entries a run writes (train_config.json, checkpoints/, ...), then
 * the folders the marker lists when they are empty. Anything else stays, and delete says so.
 * Runs recorded before the marker existed count as ftune's when their train_config.json names
 * them. */
#include <dirent.h>
#include <signal.h>
#include <time.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ftune/json.h"
#include "ftune/train.h"
#include "ftune/runs.h"

#define MARKER ".ftune-run"

/* What the run service adds to a run folder beside the trainer's files (ftune/train.h). */
static const char *const runs_entries[] = {MARKER, FT_RUNS_DATA_FINGERPRINT, NULL};

char *ft_runs_dir_forbidden(const char *dir) {
    char *home = ft_home_dir();
    if (!home)
        return ft_strdup("out of memory");
    char *exp = ft_path_join(home, "experiments"), *vol = ft_path_join(home, "volumes");
    char *why = NULL;
    if (!exp || !vol)
        why = ft_strdup("out of memory");
    else if (ft_path_within(home, dir))
        why = ft_asprintf("it is FTUNE_HOME (%s) or holds it", home);
    else if (ft_path_within(dir, home) && !((ft_path_within(dir, exp) && strcmp(dir, exp)) ||
                                            (ft_path_within(dir, vol) && strcmp(dir, vol))))
        why = ft_asprintf("it is inside FTUNE_HOME (%s), where only experiments/ and volumes/ may hold runs", home);
    ft_free(exp);
    ft_free(vol);
    ft_free(home);
    return why;
}

/* The run named in the folder's marker (caller frees), NULL when none; *created (may be NULL)
 * gets the folders the marker says create made. */
static char *read_marker(const char *dir, json_t **created) {
    if (created)
        *created = NULL;
    char *p = ft_path_join(dir, MARKER);
    json_t *j = NULL;
    char *run = NULL;
    if (p && ft_json_load_file(p, &j, NULL) == FT_OK && json_is_object(j)) {
        const char *r = json_string_value(json_object_get(j, "run"));
        run = r ? ft_strdup(r) : NULL;
        if (created && json_is_array(json_object_get(j, "created")))
            *created = json_incref(json_object_get(j, "created"));
    }
    json_decref(j);
    ft_free(p);
    return run;
}

/* Whether the folder holds train_config.json naming `name` (a run recorded before markers). */
static bool legacy_config_names(const char *dir, const char *name) {
    char *p = ft_path_join(dir, "train_config.json");
    json_t *j = NULL;
    bool yes = p && ft_json_load_file(p, &j, NULL) == FT_OK &&
               !strcmp(json_string_value(json_object_get(j, "name")) ? json_string_value(json_object_get(j, "name")) : "",
                       name);
    json_decref(j);
    ft_free(p);
    return yes;
}

char *ft_runs_dir_owner(const char *dir) { return read_marker(dir, NULL); }

ft_status ft_runs_dir_make(const char *run_dir, const char *name, ft_err *err) {
    json_t *created = json_array();
    ft_status s = FT_OK;
    char *p = ft_strdup(run_dir);
    if (!p || !created)
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (char *q = p ? p + 1 : NULL; s == FT_OK && q; q++) {
        if (*q != '/' && *q != 0)
            continue;
        char c = *q;
        *q = 0;
        if (mkdir(p, 0755) == 0)
            json_array_append_new(created, json_string(p));
        else if (errno != EEXIST)
            s = FT_ERR_AT(err, FT_ERR_IO, p, 0, 0, "cannot create folder: %s", strerror(errno));
        else if (!ft_path_is_dir(p))
            s = FT_ERR_AT(err, FT_ERR_IO, p, 0, 0, "exists and is not a folder");
        *q = c;
        if (c == 0)
            break;
    }
    if (s == FT_OK) {
        json_t *m = json_pack("{s:s, s:O}", "run", name, "created", created);
        char *text = m ? json_dumps(m, JSON_INDENT(1)) : NULL;
        char *mp = ft_path_join(run_dir, MARKER);
        s = text && mp ? ft_file_write_atomic(mp, text, strlen(text), err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        free(text);
        ft_free(mp);
        json_decref(m);
    }
    if (s != FT_OK) { /* take back the folders made here, innermost first */
        for (size_t i = json_array_size(created); i-- > 0;)
            rmdir(json_string_value(json_array_get(created, i)));
    }
    json_decref(created);
    ft_free(p);
    return s;
}

/* An entry a run writes: one of the trainer's or the CLI's, or a temporary file of an atomic
 * write of one ("<entry>.tmp.<pid>"). */
static bool ftune_entry(const char *e) {
    const char *const *lists[2] = {ft_train_run_entries, runs_entries};
    for (int l = 0; l < 2; l++)
        for (const char *const *k = lists[l]; *k; k++) {
            size_t n = strlen(*k);
            if (!strncmp(e, *k, n) && (e[n] == 0 || !strncmp(e + n, ".tmp.", 5)))
                return true;
        }
    return false;
}

/* The default experiment folder /Users/<user>/<run> of a run recorded before markers: once the
 * run folder inside it is gone, remove it when it is empty and inside ftune's experiments. */
static void remove_empty_legacy_parent(const char *run_dir) {
    char *home = ft_home_dir();
    char *root = home ? ft_path_join(home, "experiments") : NULL;
    char *parent = ft_strdup(run_dir);
    char *slash = parent ? strrchr(parent, '/') : NULL;
    if (root && slash) {
        *slash = 0;
        if (ft_path_within(parent, root) && strcmp(parent, root))
            rmdir(parent); /* fails, harmlessly, when not empty */
    }
    ft_free(home);
    ft_free(root);
    ft_free(parent);
}

ft_status ft_runs_dir_remove(const char *run_dir, const char *name, ft_buf *note) {
    if (!run_dir || !*run_dir)
        return FT_OK;
    if (run_dir[0] != '/') {
        ft_buf_appendf(note, "kept %s: the record names a relative folder, which cannot be told apart from another "
                             "folder of that name", run_dir);
        return FT_OK;
    }
    struct stat st;
    if (lstat(run_dir, &st) != 0) {
        int e = errno;
        if (e == ENOENT)
            return FT_OK; /* nothing there */
        ft_buf_appendf(note, "could not reach the run folder %s: %s", run_dir, strerror(e));
        /* A path the system cannot even name holds nothing to remove. */
        return e == ENAMETOOLONG || e == ENOTDIR || e == ELOOP ? FT_OK : FT_ERR_IO;
    }
    if (S_ISLNK(st.st_mode)) {
        ft_buf_appendf(note, "kept %s: it is a symbolic link, which ftune never creates for a run folder", run_dir);
        return FT_OK;
    }
    if (!S_ISDIR(st.st_mode)) {
        ft_buf_appendf(note, "kept %s: it is not a folder", run_dir);
        return FT_OK;
    }
    char *dir = ft_path_canonical(run_dir);
    if (!dir) {
        ft_buf_appendf(note, "kept %s: its path cannot be resolved", run_dir);
        return FT_OK;
    }
    char *why = ft_runs_dir_forbidden(dir);
    if (why) {
        ft_buf_appendf(note, "kept %s: %s", dir, why);
        ft_free(why);
        ft_free(dir);
        return FT_OK;
    }
    json_t *created = NULL;
    char *owner = read_marker(dir, &created);
    bool marked = owner && !strcmp(owner, name);
    bool legacy = !owner && legacy_config_names(dir, name);
    ft_free(owner);
    if (!marked && !legacy) {
        ft_buf_appendf(note, "kept %s: ftune did not create it for %s (no %s marker naming the run)", dir, name,
                       MARKER);
        json_decref(created);
        ft_free(dir);
        return FT_OK;
    }
    ft_status rc = FT_OK;
    ft_buf foreign = {0};
    size_t n_foreign = 0;
    DIR *d = opendir(dir);
    if (!d) {
        ft_buf_appendf(note, "could not open the run folder %s: %s", dir, strerror(errno));
        rc = FT_ERR_IO;
    }
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, MARKER))
            continue;
        if (!ftune_entry(e->d_name)) {
            if (n_foreign++ < 5)
                ft_buf_appendf(&foreign, "%s%s", n_foreign > 1 ? ", " : "", e->d_name);
            continue;
        }
        char *p = ft_path_join(dir, e->d_name);
        ft_err err;
        if (!p || ft_rm_rf(p, &err) != FT_OK) {
            char m[1200];
            if (p)
                ft_err_format(&err, m, sizeof m);
            ft_buf_appendf(note, "%scould not remove %s", note->len ? "; " : "", p ? m : "(out of memory)");
            rc = FT_ERR_IO;
        }
        ft_free(p);
    }
    if (d)
        closedir(d);
    if (n_foreign) {
        ft_buf_appendf(note, "%skept %s: it holds %zu entr%s ftune did not create (%s%s)", note->len ? "; " : "", dir,
                       n_foreign, n_foreign == 1 ? "y" : "ies", ft_buf_cstr(&foreign), n_foreign > 5 ? ", ..." : "");
    } else if (rc == FT_OK) {
        char *mp = ft_path_join(dir, MARKER);
        if (mp)
            unlink(mp);
        ft_free(mp);
        /* The folder itself goes when create made it (an empty folder the user made stays). */
        bool made = legacy;
        for (size_t i = 0; created && i < json_array_size(created); i++)
            {
            const char *c = json_string_value(json_array_get(created, i));
            made |= c && !strcmp(c, dir);
        }
        if (made && rmdir(dir) != 0 && errno != ENOENT) {
            ft_buf_appendf(note, "%scould not remove %s: %s", note->len ? "; " : "", dir, strerror(errno));
            rc = FT_ERR_IO;
        }
        /* Then the parents create made, innermost first, when empty; never one of FTUNE_HOME's own. */
        for (size_t i = created ? json_array_size(created) : 0; i-- > 0;) {
            const char *p = json_string_value(json_array_get(created, i));
            char *pw = p && strcmp(p, dir) ? ft_runs_dir_forbidden(p) : NULL;
            if (p && strcmp(p, dir) && !pw && ft_path_within(dir, p))
                rmdir(p); /* fails, harmlessly, when another run or the user uses it */
            ft_free(pw);
        }
        if (legacy)
            remove_empty_legacy_parent(dir);
    }
    ft_buf_free(&foreign);
    json_decref(created);
    ft_free(dir);
    return rc;
}

/* ---------------------------------------------------------------- deleting a run */

ft_status ft_runs_delete(ft_store *s, const char *name, bool force, ft_buf *note, ft_err *err) {
    ft_run r;
    FT_TRY(ft_store_run_get(s, name, &r, err));
    bool active = !ft_run_status_is_final(r.status) && r.status != FT_RUN_PENDING && r.status != FT_RUN_QUEUED;
    if (active && ft_runs_process_alive(&r)) {
        ft_status st = FT_OK;
        if (!force)
            st = FT_ERR(err, FT_ERR_INVALID, "%s is %s (pid %lld): cancel it first, or force the deletion (`ftune delete --force`)", name,
                        ft_run_status_str(r.status), (long long)r.pid);
        else if (r.host && strcmp(r.host, ft_runs_hostname()) != 0)
            st = FT_ERR(err, FT_ERR_INVALID, "%s runs on %s; stop it there first", name, r.host);
        if (st != FT_OK) {
            ft_run_deinit(&r);
            return st;
        }
        /* TERMINATING first: a worker that sees the process die then records STOPPED instead of
         * resuming the run under our feet. */
        ft_store_run_set_status(s, name, FT_RUN_TERMINATING, NULL, NULL, NULL, "deleted", NULL);
        kill((pid_t)r.pid, SIGKILL);
        for (int k = 0; k < 100 && ft_runs_process_alive(&r); k++) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    /* Only what ftune created for this run goes; the record goes in any case, even when its
     * folder cannot be reached (a path too long, a folder made unreadable), with a note saying
     * what stayed. */
    ft_buf local = {0};
    ft_buf *nb = note ? note : &local;
    ft_status frc = ft_runs_dir_remove(r.run_dir, name, nb);
    ft_status st = ft_store_run_delete(s, name, err);
    if (st == FT_OK && frc != FT_OK)
        st = FT_ERR(err, frc, "%s: %s", name, ft_buf_cstr(nb));
    ft_buf_free(&local);
    ft_run_deinit(&r);
    return st;
}
