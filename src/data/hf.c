/* data/hf.c: Hugging Face datasets, offline: `org/name[/split]` (split "train" when omitted)
 * resolved in the local caches, choosing the split's files the way the `datasets` library does.
 *
 *   1. the hub cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub):
 *      datasets--org--name/refs/main names a snapshot; in it, in order:
 *        a. README.md's YAML `configs:` (the `default: true` config, else "default", else the
 *           first): its data_files for the split (a string or list means split "train");
 *        b. the sharded pattern data/{split}-NNNNN-of-NNNNN*.* (suffixes such as a hash allowed);
 *        c. the split keywords in folder names, then in file names (train|training;
 *           validation|valid|dev|val; test|testing|eval|evaluation), delimited by "-._ 0-9";
 *        d. all files are "train".
 *      then refs/convert/parquet's snapshot: default/{split}/NNNN.parquet (or default/<name>-{split}.parquet);
 *   2. the datasets cache ($HF_DATASETS_CACHE, else $HF_HOME/datasets): org___name/...
 *      /<builder>-{split}.arrow or <builder>-{split}-NNNNN-of-NNNNN.arrow (the newest folder).
 * Only Parquet and Arrow files are read. Nothing found: an error listing every place looked
 * at and the commands that download the dataset on a machine with internet.
 *
 * `org/name[/split]@rev` reads the hub cache's snapshot of that revision (a commit, a unique
 * commit prefix, or a branch the cache has a ref for) by the same rules, then as a Parquet
 * conversion; the commit read is returned, so that a run can record it and read that snapshot
 * again when refs/main has moved on (ft_data_source_pin). */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/sources.h"

/* ---------------------------------------------------------------- file lists */

typedef struct strv {
    char **v;
    size_t n, cap;
} strv;

static bool strv_push(strv *s, char *x) {
    if (!x)
        return false;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **p = ft_realloc(s->v, cap * sizeof *p);
        if (!p) {
            ft_free(x);
            return false;
        }
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return true;
}

static void strv_free(strv *s) {
    for (size_t i = 0; i < s->n; i++)
        ft_free(s->v[i]);
    ft_free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Relative paths of the regular files under root (symlinks followed: the hub cache's snapshot
 * files are links into blobs/), hidden entries skipped, sorted. */
static bool walk(const char *root, const char *rel, int depth, strv *out) {
    if (depth > 16)
        return true;
    char *dir = rel[0] ? ft_path_join(root, rel) : ft_strdup(root);
    if (!dir)
        return false;
    DIR *d = opendir(dir);
    ft_free(dir);
    if (!d)
        return true;
    strv names = {0};
    bool ok = true;
    struct dirent *de;
    while (ok && (de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            ok = strv_push(&names, ft_strdup(de->d_name));
    closedir(d);
    if (ok && names.n)
        qsort(names.v, names.n, sizeof *names.v, cmp_str);
    for (size_t i = 0; ok && i < names.n; i++) {
        char *r = rel[0] ? ft_asprintf("%s/%s", rel, names.v[i]) : ft_strdup(names.v[i]);
        char *full = r ? ft_path_join(root, r) : NULL;
        struct stat st;
        if (!full)
            ok = false;
        else if (stat(full, &st) == 0 && S_ISDIR(st.st_mode))
            ok = walk(root, r, depth + 1, out);
        else if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
            ok = strv_push(out, r);
            r = NULL;
        }
        ft_free(r);
        ft_free(full);
    }
    strv_free(&names);
    return ok;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static bool readable(const char *p) { return ends_with(p, ".parquet") || ends_with(p, ".arrow"); }

/* ---------------------------------------------------------------- glob (fsspec-style) */

/* '*' within a path segment, '**' across segments (a "**" followed by '/' may match nothing),
 * '?' one character, '[...]' a class ("[!...]" negated). */
static bool glob_match(const char *p, const char *s) {
    while (*p) {
        if (p[0] == '*' && p[1] == '*') {
            p += 2;
            bool slash = *p == '/';
            if (slash)
                p++;
            for (const char *t = s;; t++) {
                if ((slash ? (t == s || t[-1] == '/') : true) && glob_match(p, t))
                    return true;
                if (!*t)
                    return false;
            }
        }
        if (*p == '*') {
            p++;
            for (const char *t = s;; t++) {
                if (glob_match(p, t))
                    return true;
                if (!*t || *t == '/')
                    return false;
            }
        }
        if (!*s)
            return false;
        if (*p == '?') {
            if (*s == '/')
                return false;
        } else if (*p == '[') {
            const char *q = p + 1;
            bool neg = *q == '!' || *q == '^';
            if (neg)
                q++;
            bool hit = false;
            for (bool first = true; *q && (first || *q != ']'); first = false) {
                if (q[1] == '-' && q[2] && q[2] != ']') {
                    hit = hit || (*s >= q[0] && *s <= q[2]);
                    q += 3;
                } else {
                    hit = hit || *s == *q;
                    q++;
                }
            }
            if (*q != ']' || hit == neg)
                return false;
            p = q;
        } else if (*p != *s) {
            return false;
        }
        p++;
        s++;
    }
    return *s == 0;
}

/* ---------------------------------------------------------------- split rules */

static const char *const KW_TRAIN[] = {"train", "training", NULL};
static const char *const KW_VALID[] = {"validation", "valid", "dev", "val", NULL};
static const char *const KW_TEST[] = {"test", "testing", "eval", "evaluation", NULL};

static const char *const *keywords(const char *split) {
    if (!strcmp(split, "train"))
        return KW_TRAIN;
    if (!strcmp(split, "validation"))
        return KW_VALID;
    if (!strcmp(split, "test"))
        return KW_TEST;
    return NULL;
}

static bool is_sep(char c) { return c == '-' || c == '.' || c == '_' || c == ' ' || (c >= '0' && c <= '9'); }

/* Does a name (one path segment, [a, a+n)) hold the keyword as `kw[sep]*` or `*[sep]kw[sep]*`,
 * or (for folders) exactly `kw` / `*[sep]kw`? */
static bool seg_has_kw(const char *a, size_t n, const char *kw, bool dir) {
    size_t k = strlen(kw);
    for (size_t i = 0; i + k <= n; i++) {
        if (memcmp(a + i, kw, k) != 0)
            continue;
        bool before = i == 0 || is_sep(a[i - 1]);
        bool after = i + k < n ? is_sep(a[i + k]) : dir;
        if (before && after)
            return true;
    }
    return false;
}

static bool kw_in_dir(const char *path, const char *kw) {
    const char *s = path;
    for (const char *slash; (slash = strchr(s, '/')) != NULL; s = slash + 1)
        if (seg_has_kw(s, (size_t)(slash - s), kw, true))
            return true;
    return false;
}

static bool kw_in_file(const char *path, const char *kw) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return seg_has_kw(base, strlen(base), kw, false);
}

/* data/{split}-NNNNN-of-NNNNN*.*: the split name of a sharded file, or false. */
static bool sharded_split(const char *path, char *split, size_t cap) {
    if (strncmp(path, "data/", 5) != 0 || strchr(path + 5, '/'))
        return false;
    const char *b = path + 5;
    for (const char *p = b; *p; p++) {
        if (*p != '-' || p == b)
            continue;
        bool ok = true;
        for (int i = 1; i <= 5 && ok; i++)
            ok = p[i] >= '0' && p[i] <= '9';
        ok = ok && strncmp(p + 6, "-of-", 4) == 0;
        for (int i = 10; i < 15 && ok; i++)
            ok = p[i] >= '0' && p[i] <= '9';
        if (ok && strchr(p + 15, '.') && (size_t)(p - b) < cap) {
            memcpy(split, b, (size_t)(p - b));
            split[p - b] = 0;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- README configs (YAML subset) */

typedef struct yconf {
    char *name;
    bool is_default;
    strv splits;   /* split of each pattern */
    strv patterns;
} yconf;

static char *yscalar(const char *s) {
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\r'))
        n--;
    if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0])
        return ft_strndup(s + 1, n - 2);
    return ft_strndup(s, n);
}

static int indent_of(const char *l) {
    int i = 0;
    while (l[i] == ' ')
        i++;
    return i;
}

/* Parse `configs:` of README.md's front matter: just what data_files needs. */
static size_t parse_configs(const char *text, yconf *out, size_t max) {
    if (strncmp(text, "---", 3) != 0)
        return 0;
    const char *end = strstr(text + 3, "\n---");
    if (!end)
        return 0;
    char *fm = ft_strndup(text, (size_t)(end - text));
    if (!fm)
        return 0;
    size_t n = 0;
    bool in_configs = false, in_files = false;
    int item_indent = -1, files_indent = -1;
    char *cur_split = NULL;
    char *save = NULL;
    for (char *line = strtok_r(fm, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int ind = indent_of(line);
        char *l = line + ind;
        if (!*l || *l == '#')
            continue;
        if (ind == 0 && l[0] != '-') {
            in_configs = strncmp(l, "configs:", 8) == 0;
            in_files = false;
            continue;
        }
        if (!in_configs)
            continue;
        /* a new config: "- config_name: x" at the list's indent */
        if (l[0] == '-' && (item_indent < 0 || ind <= item_indent) && strstr(l, "config_name:")) {
            if (n == max)
                break;
            item_indent = ind;
            memset(&out[n], 0, sizeof out[n]);
            out[n].name = yscalar(strstr(l, "config_name:") + 12);
            n++;
            in_files = false;
            continue;
        }
        if (n == 0)
            continue;
        yconf *c = &out[n - 1];
        char *key = l[0] == '-' ? l + 1 : l;
        while (*key == ' ')
            key++;
        if (strncmp(key, "default:", 8) == 0 && ind <= item_indent + 2) {
            char *v = yscalar(key + 8);
            c->is_default = v && strcmp(v, "true") == 0;
            ft_free(v);
            continue;
        }
        if (strncmp(key, "data_files:", 11) == 0) {
            in_files = true;
            files_indent = ind;
            char *v = yscalar(key + 11);
            if (v && *v) { /* data_files: pattern  -> train */
                strv_push(&c->splits, ft_strdup("train"));
                strv_push(&c->patterns, v);
            } else {
                ft_free(v);
            }
            continue;
        }
        if (!in_files)
            continue;
        if (ind < files_indent || (ind == files_indent && l[0] != '-')) {
            in_files = false;
            continue;
        }
        if (strncmp(key, "split:", 6) == 0) {
            ft_free(cur_split);
            cur_split = yscalar(key + 6);
        } else if (strncmp(key, "path:", 5) == 0) {
            char *v = yscalar(key + 5);
            if (v && *v == '[') { /* [a, b] */
                char *p = v + 1;
                for (char *tok; (tok = strsep(&p, ",]")) != NULL;) {
                    char *t = yscalar(tok);
                    if (t && *t) {
                        strv_push(&c->splits, ft_strdup(cur_split ? cur_split : "train"));
                        strv_push(&c->patterns, t);
                    } else {
                        ft_free(t);
                    }
                }
                ft_free(v);
            } else if (v && *v) {
                strv_push(&c->splits, ft_strdup(cur_split ? cur_split : "train"));
                strv_push(&c->patterns, v);
            } else {
                ft_free(v);
            }
        } else if (l[0] == '-') { /* "- pattern" under path: or directly under data_files: */
            char *v = yscalar(l + 1);
            if (v && *v && !strchr(v, ':')) {
                strv_push(&c->splits, ft_strdup(cur_split ? cur_split : "train"));
                strv_push(&c->patterns, v);
            } else {
                ft_free(v);
            }
        }
    }
    ft_free(cur_split);
    ft_free(fm);
    return n;
}

/* ---------------------------------------------------------------- choosing files */

/* The split's files among `all` (relative paths in a snapshot), by the rules above. */
static bool choose_files(const char *snap, const strv *all, const char *split, strv *out, const char **rule) {
    char *readme_path = ft_path_join(snap, "README.md");
    char *readme = NULL;
    size_t len;
    if (readme_path && ft_file_read_all(readme_path, &readme, &len, NULL) != FT_OK)
        readme = NULL;
    ft_free(readme_path);
    yconf confs[32];
    size_t nc = readme ? parse_configs(readme, confs, 32) : 0;
    ft_free(readme);
    if (nc > 0) {
        size_t pick = 0;
        bool found = false;
        for (size_t i = 0; i < nc && !found; i++)
            if (confs[i].is_default) {
                pick = i;
                found = true;
            }
        for (size_t i = 0; i < nc && !found; i++)
            if (confs[i].name && !strcmp(confs[i].name, "default")) {
                pick = i;
                found = true;
            }
        *rule = "README.md configs";
        for (size_t i = 0; i < all->n; i++)
            for (size_t k = 0; k < confs[pick].patterns.n; k++)
                if (!strcmp(confs[pick].splits.v[k], split) && glob_match(confs[pick].patterns.v[k], all->v[i]) &&
                    readable(all->v[i])) {
                    strv_push(out, ft_strdup(all->v[i]));
                    break;
                }
        bool has_patterns = confs[pick].patterns.n > 0;
        for (size_t i = 0; i < nc; i++) {
            ft_free(confs[i].name);
            strv_free(&confs[i].splits);
            strv_free(&confs[i].patterns);
        }
        if (has_patterns)
            return true; /* the card decides, even when the split is not in it */
    }
    /* sharded names */
    bool any_sharded = false;
    for (size_t i = 0; i < all->n; i++) {
        char sp[256];
        if (sharded_split(all->v[i], sp, sizeof sp)) {
            any_sharded = true;
            if (!strcmp(sp, split) && readable(all->v[i]))
                strv_push(out, ft_strdup(all->v[i]));
        }
    }
    if (any_sharded) {
        *rule = "data/{split}-NNNNN-of-NNNNN files";
        return true;
    }
    /* keywords in folder names, then in file names, for any of the three default splits */
    static const char *const splits3[] = {"train", "validation", "test"};
    for (int pass = 0; pass < 2; pass++) {
        bool any = false;
        for (size_t i = 0; i < all->n && !any; i++)
            for (int s = 0; s < 3 && !any; s++)
                for (const char *const *kw = keywords(splits3[s]); *kw && !any; kw++)
                    any = readable(all->v[i]) && (pass == 0 ? kw_in_dir(all->v[i], *kw) : kw_in_file(all->v[i], *kw));
        if (!any)
            continue;
        const char *const *kws = keywords(split);
        for (size_t i = 0; kws && i < all->n; i++)
            for (const char *const *kw = kws; *kw; kw++)
                if (readable(all->v[i]) && (pass == 0 ? kw_in_dir(all->v[i], *kw) : kw_in_file(all->v[i], *kw))) {
                    strv_push(out, ft_strdup(all->v[i]));
                    break;
                }
        *rule = pass == 0 ? "split keywords in folder names" : "split keywords in file names";
        return true;
    }
    /* everything is train */
    *rule = "all files (train)";
    if (!strcmp(split, "train"))
        for (size_t i = 0; i < all->n; i++)
            if (readable(all->v[i]))
                strv_push(out, ft_strdup(all->v[i]));
    return true;
}

/* ---------------------------------------------------------------- caches */

static char *hub_cache(void) {
    const char *c = getenv("HF_HUB_CACHE");
    if (c && *c)
        return ft_strdup(c);
    c = getenv("HF_HOME");
    if (c && *c)
        return ft_path_join(c, "hub");
    const char *home = getenv("HOME");
    return ft_asprintf("%s/.cache/huggingface/hub", home && *home ? home : ".");
}

static char *datasets_cache(void) {
    const char *c = getenv("HF_DATASETS_CACHE");
    if (c && *c)
        return ft_strdup(c);
    c = getenv("HF_HOME");
    if (c && *c)
        return ft_path_join(c, "datasets");
    const char *home = getenv("HOME");
    return ft_asprintf("%s/.cache/huggingface/datasets", home && *home ? home : ".");
}

/* refs/<ref> -> snapshots/<rev> (NULL when absent). */
static char *snapshot_of(const char *repo, const char *ref, char **rev_out) {
    char *refp = ft_asprintf("%s/refs/%s", repo, ref);
    char *rev = NULL;
    size_t len;
    if (!refp || ft_file_read_all(refp, &rev, &len, NULL) != FT_OK) {
        ft_free(refp);
        return NULL;
    }
    ft_free(refp);
    while (len && (rev[len - 1] == '\n' || rev[len - 1] == '\r' || rev[len - 1] == ' '))
        rev[--len] = 0;
    if (!len || strchr(rev, '/')) {
        ft_free(rev);
        return NULL;
    }
    char *snap = ft_asprintf("%s/snapshots/%s", repo, rev);
    if (!snap || !ft_path_is_dir(snap)) {
        ft_free(snap);
        ft_free(rev);
        return NULL;
    }
    *rev_out = rev;
    return snap;
}

static bool fill(hf_split_files *out, const char *root, const strv *rel, const char *dataset, const char *split) {
    out->paths = ft_calloc(rel->n ? rel->n : 1, sizeof *out->paths);
    out->names = ft_calloc(rel->n ? rel->n : 1, sizeof *out->names);
    if (!out->paths || !out->names)
        return false;
    for (size_t i = 0; i < rel->n; i++) {
        out->paths[i] = ft_path_join(root, rel->v[i]);
        out->names[i] = ft_asprintf("%s/%s: %s", dataset, split, rel->v[i]);
        out->n = i + 1;
        if (!out->paths[i] || !out->names[i])
            return false;
    }
    return true;
}

void hf_split_files_free(hf_split_files *f) {
    for (size_t i = 0; i < f->n; i++) {
        ft_free(f->paths[i]);
        ft_free(f->names[i]);
    }
    ft_free(f->paths);
    ft_free(f->names);
    ft_free(f->where);
    ft_free(f->rev);
    memset(f, 0, sizeof *f);
}

/* `<x>-{split}<ext>` or `<x>-{split}-NNNNN-of-NNNNN<ext>` (the datasets cache's Arrow files; the
 * older Parquet conversion's names). */
static bool is_split_file(const char *rel, const char *split, const char *ext) {
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    if (!ends_with(base, ext))
        return false;
    size_t n = strlen(base) - strlen(ext), k = strlen(split);
    if (n > k && base[n - k - 1] == '-' && memcmp(base + n - k, split, k) == 0)
        return true;
    /* "-NNNNN-of-NNNNN" is 15 characters */
    if (n > k + 16 && base[n - 15] == '-' && strncmp(base + n - 9, "-of-", 4) == 0 &&
        base[n - 15 - k - 1] == '-' && memcmp(base + n - 15 - k, split, k) == 0)
        return true;
    return false;
}

/* The Parquet conversion's files of a split: default/<split>/NNNN.parquet, or
 * default/<name>-<split>.parquet (older layout). */
static void choose_converted(const strv *all, const char *split, strv *chosen) {
    for (size_t i = 0; i < all->n; i++) {
        const char *p = all->v[i];
        if (strncmp(p, "default/", 8) != 0 || !ends_with(p, ".parquet"))
            continue;
        const char *a = p + 8, *b = strchr(a, '/');
        bool in_dir =
            b && (size_t)(b - a) == strlen(split) && !strncmp(a, split, strlen(split)) && !strchr(b + 1, '/');
        if (in_dir || (!b && is_split_file(p, split, ".parquet")))
            strv_push(chosen, ft_strdup(p));
    }
}

/* A revision the user named (`org/name@rev`) -> the snapshot folder and its commit: a commit whose
 * snapshot is in the cache, a ref (branch or tag) the cache has a file for, or a prefix of at
 * least 4 characters of exactly one snapshot's commit. NULL when none (`have` lists the snapshots
 * there are). */
static char *snapshot_of_rev(const char *repo, const char *rev, char **commit, char *have, size_t cap) {
    have[0] = 0;
    char *snap = ft_asprintf("%s/snapshots/%s", repo, rev);
    if (snap && ft_path_is_dir(snap) && (*commit = ft_strdup(rev)) != NULL)
        return snap;
    ft_free(snap);
    snap = snapshot_of(repo, rev, commit); /* refs/<rev> */
    if (snap)
        return snap;
    char *dir = ft_asprintf("%s/snapshots", repo);
    DIR *d = dir ? opendir(dir) : NULL;
    char *match = NULL;
    int n_match = 0;
    size_t o = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (o + strlen(de->d_name) + 3 < cap)
            o += (size_t)snprintf(have + o, cap - o, "%s%s", o ? ", " : "", de->d_name);
        if (strlen(rev) >= 4 && !strncmp(de->d_name, rev, strlen(rev)) && n_match++ == 0)
            match = ft_strdup(de->d_name);
    }
    if (d)
        closedir(d);
    ft_free(dir);
    if (n_match == 1 && match) {
        snap = ft_asprintf("%s/snapshots/%s", repo, match);
        if (snap) {
            *commit = match;
            return snap;
        }
    }
    ft_free(match);
    return NULL;
}

/* `org/name[/split][@rev]`: the parts, or false. */
static bool parse_spec(const char *spec, char *org, char *name, char *split, char *rev, size_t cap) {
    split[0] = 0;
    rev[0] = 0;
    snprintf(split, cap, "train");
    char buf[1024];
    if (strlen(spec) >= sizeof buf)
        return false;
    snprintf(buf, sizeof buf, "%s", spec);
    char *at = strrchr(buf, '@');
    if (at) {
        if (!at[1] || strlen(at + 1) >= cap || strchr(at + 1, '/'))
            return false;
        snprintf(rev, cap, "%s", at + 1);
        *at = 0;
    }
    char *s1 = strchr(buf, '/');
    if (!s1 || s1 == buf || (size_t)(s1 - buf) >= cap)
        return false;
    *s1 = 0;
    char *s2 = strchr(s1 + 1, '/');
    if (s2)
        *s2 = 0;
    if (!s1[1] || strlen(s1 + 1) >= cap || (s2 && (!s2[1] || strlen(s2 + 1) >= cap)))
        return false;
    snprintf(org, cap, "%s", buf);
    snprintf(name, cap, "%s", s1 + 1);
    if (s2)
        snprintf(split, cap, "%s", s2 + 1);
    return true;
}

ft_status hf_resolve(const char *spec, hf_split_files *out, ft_err *err) {
    memset(out, 0, sizeof *out);
    char org[256], name[256], split[256], rev[256];
    if (!parse_spec(spec, org, name, split, rev, sizeof org))
        return FT_ERR_AT(err, FT_ERR_INVALID, spec, 0, 0,
                         "a Hugging Face dataset is named org/name, org/name/split, or either with @revision (a "
                         "commit or a branch, as the hub cache has it)");
    char dataset[520];
    snprintf(dataset, sizeof dataset, "%s/%s", org, name);

    ft_buf looked = {0};
    char *hub = hub_cache(), *dsc = datasets_cache();
    char *repo = hub ? ft_asprintf("%s/datasets--%s--%s", hub, org, name) : NULL;
    ft_status s = FT_OK;
    bool done = false;
    if (!hub || !dsc || !repo) {
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        done = true;
    }
    /* 1. hub cache: refs/main, then refs/convert/parquet; or the snapshot of the revision asked for */
    static const char *const refs[] = {"main", "convert/parquet"};
    for (int r = 0; !done && r < 2 && !(rev[0] && r > 0); r++) {
        char *commit = NULL;
        char have[600];
        char *snap = rev[0] ? snapshot_of_rev(repo, rev, &commit, have, sizeof have) : snapshot_of(repo, refs[r], &commit);
        if (rev[0] && !snap) {
            s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, spec, 0, 0,
                          "revision '%s' of Hugging Face dataset %s is not in the hub cache %s/snapshots (%s%s); "
                          "on a machine with internet, download it with\n  huggingface-cli download --repo-type "
                          "dataset %s --revision %s\nthen copy %s to this machine",
                          rev, dataset, repo, have[0] ? "it has: " : "it has no snapshots", have, dataset, rev, repo);
            done = true;
            break;
        }
        if (rev[0])
            ft_buf_appendf(&looked, "\n  hub cache: %s/snapshots/%s", repo, commit);
        else
            ft_buf_appendf(&looked, "\n  hub cache: %s/refs/%s%s", repo, refs[r], snap ? "" : " (absent)");
        if (!snap)
            continue;
        strv all = {0}, chosen = {0};
        const char *rule = "";
        bool ok = walk(snap, "", 0, &all);
        if (ok && r == 0) {
            ok = choose_files(snap, &all, split, &chosen, &rule);
            if (ok && rev[0] && chosen.n == 0) { /* a pinned Parquet conversion snapshot */
                rule = "the Parquet conversion";
                choose_converted(&all, split, &chosen);
            }
        } else if (ok) {
            rule = "the Parquet conversion";
            choose_converted(&all, split, &chosen);
        }
        ft_buf_appendf(&looked, ": snapshot %s, %s: %zu file%s for split '%s'", commit, rule, chosen.n,
                       chosen.n == 1 ? "" : "s", split);
        if (ok && chosen.n > 0) {
            if (!fill(out, snap, &chosen, dataset, split))
                s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            out->where = rev[0] ? ft_asprintf("hub cache, snapshot %.12s", commit)
                                : ft_asprintf("hub cache, %s snapshot %.12s", refs[r], commit);
            out->rev = commit;
            commit = NULL;
            done = true;
        } else if (ok && r == 0 && all.n > 0) {
            size_t other = 0;
            for (size_t i = 0; i < all.n; i++)
                other += !readable(all.v[i]) && !ends_with(all.v[i], ".md") && !ends_with(all.v[i], ".gitattributes");
            if (other)
                ft_buf_appendf(&looked, " (ftune reads .parquet and .arrow files; this snapshot has %zu other data "
                                        "file%s)", other, other == 1 ? "" : "s");
        }
        strv_free(&all);
        strv_free(&chosen);
        ft_free(snap);
        ft_free(commit);
    }
    if (!done && rev[0]) { /* the revision's snapshot has no files for the split: not the datasets cache's */
        s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, spec, 0, 0,
                      "Hugging Face dataset %s, split '%s': nothing to read in the revision asked for. Looked at:%s",
                      dataset, split, looked.data ? looked.data : "");
        done = true;
    }
    /* 2. the datasets cache */
    if (!done) {
        char *base = ft_asprintf("%s/%s___%s", dsc, org, name);
        ft_buf_appendf(&looked, "\n  datasets cache: %s%s", base ? base : "", base && ft_path_is_dir(base) ? "" : " (absent)");
        strv all = {0};
        if (base && ft_path_is_dir(base) && walk(base, "", 0, &all)) {
            /* the newest folder with files of the split */
            char *best_dir = NULL;
            double best_t = -1;
            for (size_t i = 0; i < all.n; i++) {
                if (!is_split_file(all.v[i], split, ".arrow"))
                    continue;
                const char *sl = strrchr(all.v[i], '/');
                char *d = sl ? ft_strndup(all.v[i], (size_t)(sl - all.v[i])) : ft_strdup("");
                char *full = d ? ft_path_join(base, d) : NULL;
                struct stat st;
                double t = full && stat(full, &st) == 0 ? (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9 : 0;
                if (d && (t > best_t || (t == best_t && best_dir && strcmp(d, best_dir) > 0))) {
                    ft_free(best_dir);
                    best_dir = d;
                    best_t = t;
                    d = NULL;
                }
                ft_free(d);
                ft_free(full);
            }
            strv chosen = {0};
            for (size_t i = 0; best_dir && i < all.n; i++) {
                const char *sl = strrchr(all.v[i], '/');
                size_t dl = sl ? (size_t)(sl - all.v[i]) : 0;
                if (is_split_file(all.v[i], split, ".arrow") && dl == strlen(best_dir) && !strncmp(all.v[i], best_dir, dl))
                    strv_push(&chosen, ft_strdup(all.v[i]));
            }
            ft_buf_appendf(&looked, ": %zu .arrow file%s for split '%s'", chosen.n, chosen.n == 1 ? "" : "s", split);
            if (chosen.n > 0) {
                if (!fill(out, base, &chosen, dataset, split))
                    s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                out->where = ft_asprintf("datasets cache %s/%s", base, best_dir);
                done = true;
            }
            strv_free(&chosen);
            ft_free(best_dir);
        }
        strv_free(&all);
        ft_free(base);
    }
    if (!done)
        s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, spec, 0, 0,
                      "no local file or folder of this name, and Hugging Face dataset %s, split '%s', is not in the "
                      "local caches (ftune works offline). Looked at:%s\nOn a machine with internet, download it with\n  huggingface-cli download --repo-type "
                      "dataset %s\nor\n  python3 -c 'import datasets; datasets.load_dataset(\"%s\", split=\"%s\")'\n"
                      "then copy ~/.cache/huggingface/hub/datasets--%s--%s (or the datasets cache) to this machine, "
                      "under $HF_HUB_CACHE or $HF_HOME",
                      dataset, split, looked.data ? looked.data : "", dataset, dataset, split, org, name);
    if (s == FT_OK && !out->where)
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (s != FT_OK)
        hf_split_files_free(out);
    ft_buf_free(&looked);
    ft_free(hub);
    ft_free(dsc);
    ft_free(repo);
    return s;
}
