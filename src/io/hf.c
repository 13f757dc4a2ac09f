/* io/hf.c: Hugging Face model folders: resolving model names (local path, registered model,
 * hub id in the offline HF cache; SPEC §1) and writing an HF folder (config.json, safetensors
 * weights, generation_config.json, tokenizer files) that transformers loads unchanged.
 * Contracts in include/ftune/hf.h. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/hf.h"
#include "ftune/json.h"

/* ---------------------------------------------------------------- names */

char *ft_hf_cache_dir(void) {
    const char *v = getenv("HF_HUB_CACHE");
    if (v && *v)
        return ft_strdup(v);
    v = getenv("HF_HOME");
    if (v && *v)
        return ft_path_join(v, "hub");
    v = getenv("HOME");
    return ft_asprintf("%s/.cache/huggingface/hub", v && *v ? v : ".");
}

static bool name_part_ok(const char *s, size_t n) {
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static bool all_digits(const char *s) {
    if (!*s || strlen(s) > 15)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* "c.s.n" or "c.s.n/7": split into the three parts and the version (0 when absent).
 * False when it does not have that form. */
static bool parse_registry_name(const char *name, char parts[3][128], int64_t *version) {
    const char *slash = strchr(name, '/');
    size_t len = slash ? (size_t)(slash - name) : strlen(name);
    *version = 0;
    if (slash) {
        if (!all_digits(slash + 1))
            return false;
        *version = strtoll(slash + 1, NULL, 10);
        if (*version <= 0)
            return false;
    }
    /* Exactly two dots, three non-empty parts of [A-Za-z0-9_-]. */
    const char *p = name, *end = name + len;
    for (int i = 0; i < 3; i++) {
        const char *dot = i < 2 ? memchr(p, '.', (size_t)(end - p)) : NULL;
        const char *stop = i < 2 ? dot : end;
        if (!stop || (size_t)(stop - p) >= 128 || !name_part_ok(p, (size_t)(stop - p)))
            return false;
        memcpy(parts[i], p, (size_t)(stop - p));
        parts[i][stop - p] = 0;
        p = stop + 1;
    }
    return true;
}

ft_status ft_hf_registry_dir(const char *name, int64_t version, char **dir, ft_err *err) {
    char parts[3][128];
    int64_t v_in_name;
    *dir = NULL;
    if (!parse_registry_name(name, parts, &v_in_name))
        return FT_ERR(err, FT_ERR_INVALID, "\"%s\" is not a registered model name (catalog.schema.model[/version])",
                      name);
    if (!version)
        version = v_in_name;
    char *home = ft_home_dir();
    char *base = home ? ft_asprintf("%s/registry/%s/%s/%s", home, parts[0], parts[1], parts[2]) : NULL;
    ft_free(home);
    if (!base)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (!version) {
        /* The newest numeric version; anything else in the folder (temporary clones) is ignored. */
        DIR *d = opendir(base);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)))
                if (all_digits(e->d_name)) {
                    int64_t v = strtoll(e->d_name, NULL, 10);
                    if (v > version)
                        version = v;
                }
            closedir(d);
        }
        if (!version) {
            ft_status s = FT_ERR(err, FT_ERR_NOT_FOUND, "registered model %s has no versions (looked in %s)", name, base);
            ft_free(base);
            return s;
        }
    }
    char *p = ft_asprintf("%s/%lld", base, (long long)version);
    ft_free(base);
    if (!p)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (!ft_path_is_dir(p)) {
        ft_status s = FT_ERR(err, FT_ERR_NOT_FOUND, "registered model %s has no version %lld (looked in %s)", name,
                             (long long)version, p);
        ft_free(p);
        return s;
    }
    *dir = p;
    return FT_OK;
}

static bool is_commit_hash(const char *s) {
    size_t n = strlen(s);
    if (n != 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* org/name[@rev] in the hub cache. Returns the snapshot folder or NULL, appending what it tried
 * to `tried`. */
static char *resolve_hub(const char *name, ft_buf *tried) {
    /* "org/name" or a bare "name" (legacy hub ids), each optionally "@revision". */
    const char *at = strchr(name, '@');
    size_t repo_len = at ? (size_t)(at - name) : strlen(name);
    const char *rev = at ? at + 1 : "main";
    const char *slash = memchr(name, '/', repo_len);
    if (repo_len == 0 || !*rev || strstr(rev, "..") || strchr(rev, '@') || rev[0] == '/')
        return NULL;
    if (slash && (slash == name || slash == name + repo_len - 1 || memchr(slash + 1, '/', repo_len - (size_t)(slash - name) - 1)))
        return NULL;
    for (size_t i = 0; i < repo_len; i++)
        if (name[i] != '/' && !isalnum((unsigned char)name[i]) && !strchr("-_.", name[i]))
            return NULL;
    if (strstr(name, "..") && strstr(name, "..") < name + repo_len)
        return NULL;
    char *cache = ft_hf_cache_dir();
    if (!cache)
        return NULL;
    /* The cache folder name: "models--" + repo id with '/' replaced by "--". */
    char *repo = slash ? ft_asprintf("%s/models--%.*s--%.*s", cache, (int)(slash - name), name,
                                     (int)(repo_len - (size_t)(slash - name) - 1), slash + 1)
                       : ft_asprintf("%s/models--%.*s", cache, (int)repo_len, name);
    ft_free(cache);
    if (!repo)
        return NULL;
    char *result = NULL;
    char *ref = ft_asprintf("%s/refs/%s", repo, rev);
    char *commit = NULL;
    if (ref && ft_path_exists(ref) && !ft_path_is_dir(ref)) {
        size_t n;
        if (ft_file_read_all(ref, &commit, &n, NULL) == FT_OK) {
            while (n && isspace((unsigned char)commit[n - 1]))
                commit[--n] = 0;
        }
    } else if (is_commit_hash(rev)) {
        commit = ft_strdup(rev);
    }
    ft_buf_appendf(tried, "\n  %s (hub id in the Hugging Face cache: %s)", ref ? ref : repo,
                   ft_path_is_dir(repo) ? (commit ? "" : "no such ref") : "not downloaded");
    if (commit && *commit && !strchr(commit, '/')) {
        char *snap = ft_asprintf("%s/snapshots/%s", repo, commit);
        if (snap && ft_path_is_dir(snap)) {
            result = snap;
        } else {
            ft_buf_appendf(tried, "\n  %s (missing snapshot)", snap ? snap : repo);
            ft_free(snap);
        }
    } else if (!commit && !at && ft_path_is_dir(repo)) {
        /* No refs/main (a cache filled by hand or by snapshot_download(revision=hash)): accept a
         * single snapshot, which is unambiguous. */
        char *snaps = ft_path_join(repo, "snapshots");
        DIR *d = snaps ? opendir(snaps) : NULL;
        int count = 0;
        char only[256] = "";
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)))
                if (e->d_name[0] != '.') {
                    count++;
                    snprintf(only, sizeof only, "%s", e->d_name);
                }
            closedir(d);
        }
        if (count == 1)
            result = ft_asprintf("%s/%s", snaps, only);
        else if (count > 1)
            ft_buf_appendf(tried, "\n  %s (%d snapshots and no refs/main: name one with %.*s@REVISION)",
                           snaps, count, (int)repo_len, name);
        ft_free(snaps);
    }
    ft_free(commit);
    ft_free(ref);
    ft_free(repo);
    return result;
}

static ft_status check_model_dir(const char *dir, const char *name, ft_err *err) {
    char *cfg = ft_path_join(dir, "config.json");
    bool ok = cfg && ft_path_exists(cfg);
    ft_free(cfg);
    if (!ok)
        return FT_ERR_AT(err, FT_ERR_NOT_FOUND, dir, 0, 0, "model \"%s\" resolves to this folder, which has no config.json",
                         name);
    return FT_OK;
}

ft_status ft_hf_resolve(const char *name, char **dir, ft_err *err) {
    *dir = NULL;
    if (!name || !*name)
        return FT_ERR(err, FT_ERR_INVALID, "empty model name");
    ft_buf tried = {0};
    ft_status s;
    /* 1. A local path (with /Volumes mapped as SPEC §1 says). */
    char *local = NULL;
    FT_TRY(ft_path_map(name, &local, err));
    if (ft_path_is_dir(local)) {
        s = check_model_dir(local, name, err);
        if (s == FT_OK)
            *dir = local;
        else
            ft_free(local);
        return s;
    }
    ft_buf_appendf(&tried, "\n  %s (local folder: does not exist)", local);
    ft_free(local);
    /* 2. A registered model. */
    char parts[3][128];
    int64_t version;
    if (parse_registry_name(name, parts, &version)) {
        char *rd = NULL;
        ft_err e2;
        if (ft_hf_registry_dir(name, 0, &rd, &e2) == FT_OK) {
            ft_buf_free(&tried);
            s = check_model_dir(rd, name, err);
            if (s == FT_OK)
                *dir = rd;
            else
                ft_free(rd);
            return s;
        }
        ft_buf_appendf(&tried, "\n  registry: %s", e2.msg);
    }
    /* 3. A hub id in the offline cache. */
    char *hub = resolve_hub(name, &tried);
    if (hub) {
        ft_buf_free(&tried);
        s = check_model_dir(hub, name, err);
        if (s == FT_OK)
            *dir = hub;
        else
            ft_free(hub);
        return s;
    }
    s = FT_ERR(err, FT_ERR_NOT_FOUND,
               "model \"%s\" not found; looked at:%s\n(ftune works offline: download hub models into the Hugging "
               "Face cache first, or give a local folder)",
               name, ft_buf_cstr(&tried));
    ft_buf_free(&tried);
    return s;
}

/* ---------------------------------------------------------------- writing */

static const char *const tokenizer_files[] = {
    "tokenizer.json",   "tokenizer_config.json", "special_tokens_map.json",
    "tokenizer.model",  "added_tokens.json",     "chat_template.jinja",
};

ft_status ft_hf_copy_tokenizer(const char *src_dir, const char *dst_dir, int *n_copied, ft_err *err) {
    int n = 0;
    bool any_model = false;
    if (n_copied)
        *n_copied = 0;
    if (!ft_path_is_dir(src_dir))
        return FT_ERR_AT(err, FT_ERR_NOT_FOUND, src_dir, 0, 0, "tokenizer folder does not exist");
    for (size_t i = 0; i < sizeof tokenizer_files / sizeof *tokenizer_files; i++) {
        char *src = ft_path_join(src_dir, tokenizer_files[i]);
        char *dst = ft_path_join(dst_dir, tokenizer_files[i]);
        ft_status s = FT_OK;
        if (!src || !dst)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        else if (ft_path_exists(src) && strcmp(src, dst) != 0) {
            s = ft_file_copy(src, dst, err);
            n++;
            if (i == 0 || i == 3)
                any_model = true;
        } else if (ft_path_exists(src)) {
            if (i == 0 || i == 3)
                any_model = true;
        }
        ft_free(src);
        ft_free(dst);
        FT_TRY(s);
    }
    if (n_copied)
        *n_copied = n;
    if (!any_model)
        return FT_ERR_AT(err, FT_ERR_NOT_FOUND, src_dir, 0, 0, "no tokenizer.json or tokenizer.model in this folder");
    return FT_OK;
}

static json_t *ids_json(const int64_t *ids, int n) {
    if (n == 1)
        return json_integer(ids[0]);
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

ft_status ft_hf_write_generation_config(const ft_model_config *c, const char *dir, ft_err *err) {
    json_t *o = json_object();
    if (!o)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    json_object_set_new(o, "_from_model_config", json_true());
    if (c->bos_token_id >= 0)
        json_object_set_new(o, "bos_token_id", json_integer(c->bos_token_id));
    if (c->n_eos > 0)
        json_object_set_new(o, "eos_token_id", ids_json(c->eos_token_ids, c->n_eos));
    if (c->pad_token_id >= 0)
        json_object_set_new(o, "pad_token_id", json_integer(c->pad_token_id));
    json_object_set_new(o, "transformers_version", json_string("4.44.2"));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(o);
    char *withnl = text ? ft_asprintf("%s\n", text) : NULL;
    free(text);
    char *p = ft_path_join(dir, "generation_config.json");
    ft_status s = withnl && p ? ft_file_write_atomic(p, withnl, strlen(withnl), err)
                              : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_free(withnl);
    ft_free(p);
    return s;
}

static ft_status write_generation_config(const ft_model_config *c, const char *dir, const char *from, ft_err *err) {
    char *src = from ? ft_path_join(from, "generation_config.json") : NULL;
    char *dst = ft_path_join(dir, "generation_config.json");
    ft_status s;
    if (!dst || (from && !src))
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    else if (src && ft_path_exists(src) && strcmp(src, dst) != 0)
        s = ft_file_copy(src, dst, err);
    else if (src && ft_path_exists(src))
        s = FT_OK; /* exporting over the source folder: keep it */
    else
        s = ft_hf_write_generation_config(c, dir, err);
    ft_free(src);
    ft_free(dst);
    return s;
}

ft_hf_export_params ft_hf_export_default_params(void) {
    return (ft_hf_export_params){
        .dtype = FT_ST_DTYPE_F32,
        .max_shard_bytes = FT_ST_DEFAULT_SHARD_BYTES,
        .tokenizer_dir = NULL,
        .require_tokenizer = false,
        .metadata = NULL,
        .generation_config_from = NULL,
    };
}

#define FILL_CHUNK ((int64_t)1 << 20) /* elements per fill call: 4 MiB of fp32 */

ft_status ft_hf_export(const char *dir, const ft_model_config *c, ft_hf_fill_fn fill, void *ctx,
                       const ft_hf_export_params *pp, ft_err *err) {
    ft_hf_export_params p = pp ? *pp : ft_hf_export_default_params();
    if (p.dtype != FT_ST_DTYPE_F32 && p.dtype != FT_ST_DTYPE_BF16 && p.dtype != FT_ST_DTYPE_F16)
        return FT_ERR(err, FT_ERR_UNSUPPORTED, "export dtype %s is not supported (F32, BF16, F16)",
                      ft_st_dtype_name(p.dtype));
    FT_TRY(ft_model_config_validate(c, err));
    FT_TRY(ft_mkdir_p(dir, err));
    ft_model_config cc = *c;
    snprintf(cc.torch_dtype, sizeof cc.torch_dtype, "%s",
             p.dtype == FT_ST_DTYPE_BF16 ? "bfloat16" : p.dtype == FT_ST_DTYPE_F16 ? "float16" : "float32");

    /* config.json goes last: until it is there, the folder is visibly not a model. */
    if (p.tokenizer_dir) {
        ft_err e2;
        ft_status ts2 = ft_hf_copy_tokenizer(p.tokenizer_dir, dir, NULL, &e2);
        if (ts2 != FT_OK && (p.require_tokenizer || ts2 != FT_ERR_NOT_FOUND)) {
            if (err)
                *err = e2;
            return ts2;
        }
    }
    FT_TRY(write_generation_config(&cc, dir, p.generation_config_from, err));

    size_t n = ft_model_config_tensors(&cc, NULL, 0);
    ft_tensor_spec *ts = ft_calloc(n, sizeof *ts);
    float *buf = ft_malloc((size_t)FILL_CHUNK * sizeof(float));
    char *wpath = ft_path_join(dir, "model.safetensors");
    ft_st_writer *w = NULL;
    ft_status s = ts && buf && wpath ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (s == FT_OK) {
        ft_model_config_tensors(&cc, ts, n);
        ft_st_write_params wp = ft_st_write_default_params();
        wp.max_shard_bytes = p.max_shard_bytes;
        s = ft_st_writer_new(wpath, &wp, &w, err);
    }
    for (const char *const *m = p.metadata; s == FT_OK && m && m[0] && m[1]; m += 2)
        s = ft_st_writer_metadata(w, m[0], m[1], err);
    for (size_t i = 0; i < n && s == FT_OK; i++)
        s = ft_st_writer_add(w, ts[i].name, p.dtype, ts[i].ndim, ts[i].shape, err);
    for (size_t i = 0; i < n && s == FT_OK; i++) {
        int64_t numel = ft_tensor_spec_numel(&ts[i]);
        for (int64_t at = 0; at < numel && s == FT_OK; at += FILL_CHUNK) {
            int64_t k = numel - at < FILL_CHUNK ? numel - at : FILL_CHUNK;
            s = fill(ctx, i, &ts[i], at, buf, k, err);
            if (s == FT_OK)
                s = ft_st_writer_write_f32(w, ts[i].name, buf, k, err);
        }
    }
    if (s == FT_OK)
        s = ft_st_writer_finish(w, err);
    ft_st_writer_free(w);
    ft_free(ts);
    ft_free(buf);
    ft_free(wpath);
    if (s == FT_OK) {
        char *cp = ft_path_join(dir, "config.json");
        s = cp ? ft_model_config_save(&cc, cp, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        ft_free(cp);
    }
    return s;
}

typedef struct arrays_ctx {
    const float *const *data;
} arrays_ctx;

static ft_status fill_from_arrays(void *ctx, size_t index, const ft_tensor_spec *t, int64_t offset, float *out,
                                  int64_t n, ft_err *err) {
    (void)t;
    (void)err;
    const arrays_ctx *a = ctx;
    memcpy(out, a->data[index] + offset, (size_t)n * sizeof(float));
    return FT_OK;
}

ft_status ft_hf_export_arrays(const char *dir, const ft_model_config *c, const float *const *data, size_t n_tensors,
                              const ft_hf_export_params *p, ft_err *err) {
    size_t n = ft_model_config_tensors(c, NULL, 0);
    if (n != n_tensors)
        return FT_ERR(err, FT_ERR_INVALID, "export: %zu tensors given, the config has %zu", n_tensors, n);
    arrays_ctx a = {data};
    return ft_hf_export(dir, c, fill_from_arrays, &a, p, err);
}

/* ---------------------------------------------------------------- tokenizer ids */

/* "bos_token": "<s>" or {"content": "<s>", ...}. */
static const char *special_content(const json_t *tc, const char *key) {
    const json_t *v = json_object_get(tc, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int64_t token_id(const json_t *tok, const char *content) {
    if (!content)
        return -1;
    const json_t *added = json_object_get(tok, "added_tokens");
    size_t i;
    const json_t *e;
    json_array_foreach(added, i, e) {
        const json_t *c = json_object_get(e, "content"), *id = json_object_get(e, "id");
        if (json_is_string(c) && json_is_integer(id) && !strcmp(json_string_value(c), content))
            return json_integer_value(id);
    }
    const json_t *vocab = json_object_get(json_object_get(tok, "model"), "vocab");
    const json_t *id = json_is_object(vocab) ? json_object_get(vocab, content) : NULL;
    return json_is_integer(id) ? json_integer_value(id) : -1;
}

ft_status ft_hf_tokenizer_ids(const char *dir, int64_t *bos, int64_t *eos, int64_t *n_vocab, ft_err *err) {
    if (bos)
        *bos = -1;
    if (eos)
        *eos = -1;
    if (n_vocab)
        *n_vocab = 0;
    char *tp = ft_path_join(dir, "tokenizer.json"), *cp = ft_path_join(dir, "tokenizer_config.json");
    if (!tp || !cp) {
        ft_free(tp);
        ft_free(cp);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    json_t *tok = NULL, *tc = NULL;
    ft_status s = FT_OK;
    if (ft_path_exists(tp))
        s = ft_json_load_file(tp, &tok, err);
    if (s == FT_OK && ft_path_exists(cp))
        s = ft_json_load_file(cp, &tc, err);
    if (s == FT_OK && tok) {
        int64_t maxid = -1;
        const json_t *vocab = json_object_get(json_object_get(tok, "model"), "vocab"), *e;
        const char *k;
        size_t i;
        if (json_is_object(vocab)) {
            json_object_foreach((json_t *)vocab, k, e) {
                if (json_is_integer(e) && json_integer_value(e) > maxid)
                    maxid = json_integer_value(e);
            }
        } else if (json_is_array(vocab)) { /* Unigram: [[piece, score], ...], ids are positions */
            maxid = (int64_t)json_array_size(vocab) - 1;
        }
        json_array_foreach(json_object_get(tok, "added_tokens"), i, e) {
            const json_t *id = json_object_get(e, "id");
            if (json_is_integer(id) && json_integer_value(id) > maxid)
                maxid = json_integer_value(id);
        }
        if (n_vocab)
            *n_vocab = maxid + 1;
        if (tc) {
            if (bos)
                *bos = token_id(tok, special_content(tc, "bos_token"));
            if (eos)
                *eos = token_id(tok, special_content(tc, "eos_token"));
        }
    }
    json_decref(tok);
    json_decref(tc);
    ft_free(tp);
    ft_free(cp);
    return s;
}
