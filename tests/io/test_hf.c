/* tests/io/test_hf.c: model name resolution (local folders, the offline Hugging Face cache with a
 * fake cache tree, registered models), HF folder export, tokenizer files and ids, and
 * `ftune init-model` end to end (files, names, shapes, init statistics, determinism). */
#include <stdlib.h>
#include <string.h>

#include "ftune/hf.h"
#include "ftune/json.h"
#include "test.h"

static void write_text(const char *dir, const char *rel, const char *text) {
    char *p = ft_path_join(dir, rel);
    char *slash = strrchr(p, '/');
    *slash = 0;
    ft_mkdir_p(p, NULL);
    *slash = '/';
    ft_err err;
    if (ft_file_write_atomic(p, text, strlen(text), &err) != FT_OK)
        ft_test_fail_(__FILE__, __LINE__, "cannot write %s: %s", p, err.msg);
    ft_free(p);
}

static void set_env(const char *k, const char *v) {
    if (v)
        setenv(k, v, 1);
    else
        unsetenv(k);
}

/* Save and restore the variables the resolver reads. */
typedef struct env_save {
    char *v[4];
} env_save;
static const char *const env_names[4] = {"HF_HUB_CACHE", "HF_HOME", "HOME", "FTUNE_HOME"};
static void env_push(env_save *s) {
    for (int i = 0; i < 4; i++) {
        const char *v = getenv(env_names[i]);
        s->v[i] = v ? ft_strdup(v) : NULL;
    }
}
static void env_pop(env_save *s) {
    for (int i = 0; i < 4; i++) {
        set_env(env_names[i], s->v[i]);
        ft_free(s->v[i]);
    }
}

TEST(hf_resolve_cache) {
    const char *tmp = ft_test_tmpdir();
    env_save es;
    env_push(&es);
    char *cache = ft_path_join(tmp, "hub");
    const char *rev = "0123456789abcdef0123456789abcdef01234567";
    const char *rev2 = "fedcba9876543210fedcba9876543210fedcba98";
    char rel[512];
    snprintf(rel, sizeof rel, "hub/models--meta-llama--Llama-3.2-1B/snapshots/%s/config.json", rev);
    write_text(tmp, rel, "{}");
    snprintf(rel, sizeof rel, "hub/models--meta-llama--Llama-3.2-1B/snapshots/%s/config.json", rev2);
    write_text(tmp, rel, "{}");
    write_text(tmp, "hub/models--meta-llama--Llama-3.2-1B/refs/main", rev); /* as huggingface_hub writes it */
    write_text(tmp, "hub/models--meta-llama--Llama-3.2-1B/refs/v2", rev2);
    set_env("HF_HUB_CACHE", cache);
    set_env("HF_HOME", "/nonexistent-hf-home");
    set_env("FTUNE_HOME", tmp);

    ft_err err;
    char *dir = NULL;
    REQUIRE_OK(ft_hf_resolve("meta-llama/Llama-3.2-1B", &dir, &err), &err);
    char want[1024];
    snprintf(want, sizeof want, "%s/models--meta-llama--Llama-3.2-1B/snapshots/%s", cache, rev);
    CHECK_STR_EQ(dir, want);
    ft_free(dir);
    /* A named ref and a commit hash. */
    REQUIRE_OK(ft_hf_resolve("meta-llama/Llama-3.2-1B@v2", &dir, &err), &err);
    CHECK(strstr(dir, rev2) != NULL);
    ft_free(dir);
    char byhash[200];
    snprintf(byhash, sizeof byhash, "meta-llama/Llama-3.2-1B@%s", rev2);
    REQUIRE_OK(ft_hf_resolve(byhash, &dir, &err), &err);
    CHECK(strstr(dir, rev2) != NULL);
    ft_free(dir);

    /* HF_HOME/hub when HF_HUB_CACHE is unset; ~/.cache/huggingface/hub when neither is. */
    set_env("HF_HUB_CACHE", NULL);
    char *hfhome = ft_path_join(tmp, "hfhome");
    write_text(hfhome, "hub/models--org--m/refs/main", rev);
    snprintf(rel, sizeof rel, "hub/models--org--m/snapshots/%s/config.json", rev);
    write_text(hfhome, rel, "{}");
    set_env("HF_HOME", hfhome);
    REQUIRE_OK(ft_hf_resolve("org/m", &dir, &err), &err);
    CHECK(strstr(dir, "hfhome/hub/models--org--m/snapshots/") != NULL);
    ft_free(dir);
    set_env("HF_HOME", NULL);
    set_env("HOME", hfhome);
    char *c = ft_hf_cache_dir();
    snprintf(want, sizeof want, "%s/.cache/huggingface/hub", hfhome);
    CHECK_STR_EQ(c, want);
    ft_free(c);
    snprintf(rel, sizeof rel, ".cache/huggingface/hub/models--org--m/snapshots/%s/config.json", rev);
    write_text(hfhome, rel, "{}");
    /* No refs/main but a single snapshot: accepted. */
    REQUIRE_OK(ft_hf_resolve("org/m", &dir, &err), &err);
    CHECK(strstr(dir, ".cache/huggingface/hub/models--org--m/snapshots/") != NULL);
    ft_free(dir);

    /* A legacy bare hub id. */
    snprintf(rel, sizeof rel, "hub/models--gpt2/snapshots/%s/config.json", rev);
    write_text(tmp, rel, "{}");
    write_text(tmp, "hub/models--gpt2/refs/main", rev);
    set_env("HF_HUB_CACHE", cache);
    REQUIRE_OK(ft_hf_resolve("gpt2", &dir, &err), &err);
    CHECK(strstr(dir, "models--gpt2/snapshots/") != NULL);
    ft_free(dir);

    /* Not found: the message lists where it looked. */
    set_env("HF_HUB_CACHE", cache);
    CHECK_EQ_INT(ft_hf_resolve("nobody/nothing", &dir, &err), FT_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "models--nobody--nothing") != NULL);
    CHECK(strstr(err.msg, "nobody/nothing") != NULL);
    CHECK(dir == NULL);
    /* A ref pointing at a missing snapshot. */
    write_text(tmp, "hub/models--a--b/refs/main", rev);
    CHECK_EQ_INT(ft_hf_resolve("a/b", &dir, &err), FT_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "missing snapshot") != NULL);
    /* Path tricks are not hub ids. */
    CHECK_EQ_INT(ft_hf_resolve("a/b@../../x", &dir, &err), FT_ERR_NOT_FOUND);
    CHECK_EQ_INT(ft_hf_resolve("", &dir, &err), FT_ERR_INVALID);

    ft_free(hfhome);
    ft_free(cache);
    env_pop(&es);
}

TEST(hf_resolve_local_and_registry) {
    const char *tmp = ft_test_tmpdir();
    env_save es;
    env_push(&es);
    set_env("FTUNE_HOME", tmp);
    set_env("HF_HUB_CACHE", tmp);
    ft_err err;
    char *dir = NULL;
    /* A local folder. */
    char *local = ft_path_join(tmp, "mymodel");
    write_text(local, "config.json", "{}");
    REQUIRE_OK(ft_hf_resolve(local, &dir, &err), &err);
    CHECK_STR_EQ(dir, local);
    ft_free(dir);
    /* A local folder without config.json is refused with a reason. */
    char *empty = ft_path_join(tmp, "empty");
    ft_mkdir_p(empty, NULL);
    CHECK_EQ_INT(ft_hf_resolve(empty, &dir, &err), FT_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "config.json") != NULL);

    /* Registered models: newest numeric version unless one is named; temporary folders ignored. */
    write_text(tmp, "registry/main/default/tiny/1/config.json", "{}");
    write_text(tmp, "registry/main/default/tiny/2/config.json", "{}");
    write_text(tmp, "registry/main/default/tiny/10/config.json", "{}");
    write_text(tmp, "registry/main/default/tiny/.tmp-11/config.json", "{}");
    REQUIRE_OK(ft_hf_resolve("main.default.tiny", &dir, &err), &err);
    char want[1024];
    snprintf(want, sizeof want, "%s/registry/main/default/tiny/10", tmp);
    CHECK_STR_EQ(dir, want);
    ft_free(dir);
    REQUIRE_OK(ft_hf_resolve("main.default.tiny/2", &dir, &err), &err);
    snprintf(want, sizeof want, "%s/registry/main/default/tiny/2", tmp);
    CHECK_STR_EQ(dir, want);
    ft_free(dir);
    CHECK_EQ_INT(ft_hf_resolve("main.default.tiny/3", &dir, &err), FT_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "version 3") != NULL);
    CHECK_EQ_INT(ft_hf_resolve("main.default.other", &dir, &err), FT_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "registry") != NULL);
    CHECK_EQ_INT(ft_hf_registry_dir("a.b", 0, &dir, &err), FT_ERR_INVALID);
    CHECK_EQ_INT(ft_hf_registry_dir("a.b.c.d", 0, &dir, &err), FT_ERR_INVALID);
    CHECK_EQ_INT(ft_hf_registry_dir("a..c", 0, &dir, &err), FT_ERR_INVALID);
    CHECK_EQ_INT(ft_hf_registry_dir("a.b.c/0", 0, &dir, &err), FT_ERR_INVALID);
    CHECK_EQ_INT(ft_hf_registry_dir("a.b.c/x", 0, &dir, &err), FT_ERR_INVALID);
    REQUIRE_OK(ft_hf_registry_dir("main.default.tiny", 1, &dir, &err), &err);
    CHECK(strstr(dir, "tiny/1") != NULL);
    ft_free(dir);
    ft_free(local);
    ft_free(empty);
    env_pop(&es);
}

TEST(hf_tokenizer_ids_and_copy) {
    ft_err err;
    const char *src = ft_test_fixture("io/tokenizer");
    char srcbuf[600];
    snprintf(srcbuf, sizeof srcbuf, "%s", src);
    int64_t bos, eos, nv;
    REQUIRE_OK(ft_hf_tokenizer_ids(srcbuf, &bos, &eos, &nv, &err), &err);
    CHECK_EQ_INT(bos, 1);
    CHECK_EQ_INT(eos, 40); /* {"content": "<|eot|>"}, an added token */
    CHECK_EQ_INT(nv, 41);
    int n = 0;
    REQUIRE_OK(ft_hf_copy_tokenizer(srcbuf, ft_test_tmpdir(), &n, &err), &err);
    CHECK_EQ_INT(n, 3);
    char *p = ft_path_join(ft_test_tmpdir(), "tokenizer_config.json");
    CHECK(ft_path_exists(p));
    ft_free(p);
    /* A folder with no tokenizer. */
    char *none = ft_path_join(ft_test_tmpdir(), "none");
    ft_mkdir_p(none, NULL);
    CHECK_EQ_INT(ft_hf_copy_tokenizer(none, ft_test_tmpdir(), &n, &err), FT_ERR_NOT_FOUND);
    ft_free(none);
}

static ft_model_config tiny_config(void) {
    ft_model_config c;
    ft_model_config_default(&c);
    c.vocab_size = 64;
    c.hidden_size = 16;
    c.intermediate_size = 24;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 1;
    c.head_dim = 8;
    c.tie_word_embeddings = true;
    return c;
}

TEST(hf_export_arrays_sharded) {
    ft_err err;
    ft_model_config c = tiny_config();
    size_t n = ft_model_config_tensors(&c, NULL, 0);
    ft_tensor_spec *ts = calloc(n, sizeof *ts);
    ft_model_config_tensors(&c, ts, n);
    float **data = calloc(n, sizeof *data);
    for (size_t i = 0; i < n; i++) {
        int64_t k = ft_tensor_spec_numel(&ts[i]);
        data[i] = malloc((size_t)k * sizeof(float));
        for (int64_t j = 0; j < k; j++)
            data[i][j] = (float)i + (float)j / 1024.0f;
    }
    char *dir = ft_path_join(ft_test_tmpdir(), "export");
    ft_hf_export_params p = ft_hf_export_default_params();
    p.max_shard_bytes = 2048; /* force several shards */
    p.tokenizer_dir = ft_test_fixture("io/tokenizer");
    const char *meta[] = {"ftune_run", "test", NULL};
    p.metadata = meta;
    REQUIRE_OK(ft_hf_export_arrays(dir, &c, (const float *const *)data, n, &p, &err), &err);
    char *idx = ft_path_join(dir, "model.safetensors.index.json");
    CHECK(ft_path_exists(idx));
    char *ls0 = ft_asprintf("ls %s | grep -c -- '-of-'", dir), *lo0 = NULL;
    ft_test_run(ls0, &lo0);
    CHECK(atoi(lo0) > 2);
    ft_free(lo0);
    ft_free(ls0);
    ft_st_reader *r;
    REQUIRE_OK(ft_st_open(dir, &r, &err), &err);
    CHECK_EQ_INT(ft_st_count(r), n);
    CHECK_STR_EQ(ft_st_metadata(r, "ftune_run"), "test");
    for (size_t i = 0; i < n; i++) {
        const ft_st_tensor *t;
        REQUIRE_OK(ft_st_get(r, ts[i].name, ts[i].ndim, ts[i].shape, &t, &err), &err);
        int64_t k = ft_tensor_spec_numel(&ts[i]);
        float *back = malloc((size_t)k * sizeof(float));
        REQUIRE_OK(ft_st_read_f32(t, back, k, &err), &err);
        CHECK(memcmp(back, data[i], (size_t)k * sizeof(float)) == 0);
        free(back);
    }
    ft_st_close(r);
    ft_model_config back;
    char *cp = ft_path_join(dir, "config.json");
    REQUIRE_OK(ft_model_config_load(cp, &back, &err), &err);
    CHECK(back.tie_word_embeddings);
    CHECK_EQ_INT(back.num_key_value_heads, 1);
    char *tj = ft_path_join(dir, "tokenizer.json"), *gc = ft_path_join(dir, "generation_config.json");
    CHECK(ft_path_exists(tj));
    CHECK(ft_path_exists(gc));
    /* Exporting again unsharded into the same folder leaves no stale index behind; a source
     * generation_config.json is copied as it is. */
    p.max_shard_bytes = 0;
    char *gsrc = ft_path_join(ft_test_tmpdir(), "gsrc");
    write_text(gsrc, "generation_config.json", "{\"do_sample\": true, \"temperature\": 0.6}\n");
    p.generation_config_from = gsrc;
    p.dtype = FT_ST_DTYPE_BF16;
    REQUIRE_OK(ft_hf_export_arrays(dir, &c, (const float *const *)data, n, &p, &err), &err);
    CHECK(!ft_path_exists(idx));
    char *shard1 = ft_path_join(dir, "model-00001-of-00004.safetensors");
    char *ls = ft_asprintf("ls %s | grep -c -- '-of-'", dir);
    char *lo = NULL;
    ft_test_run(ls, &lo);
    CHECK_EQ_INT(atoi(lo), 0); /* the earlier shards are gone */
    ft_free(lo);
    ft_free(ls);
    ft_free(shard1);
    REQUIRE_OK(ft_model_config_load(cp, &back, &err), &err);
    CHECK_STR_EQ(back.torch_dtype, "bfloat16");
    char *gtext = NULL;
    REQUIRE_OK(ft_file_read_all(gc, &gtext, NULL, &err), &err);
    CHECK(strstr(gtext, "temperature") != NULL);
    ft_free(gtext);
    ft_free(gsrc);
    /* Wrong tensor count. */
    CHECK_EQ_INT(ft_hf_export_arrays(dir, &c, (const float *const *)data, n - 1, &p, &err), FT_ERR_INVALID);
    for (size_t i = 0; i < n; i++)
        free(data[i]);
    free(data);
    free(ts);
    ft_free(tj);
    ft_free(gc);
    ft_free(cp);
    ft_free(idx);
    ft_free(dir);
}

/* ---------------------------------------------------------------- ftune init-model */

static int run_ftune(const char *args, char **out) {
    char *cmd = ft_asprintf("%s %s 2>&1", ft_test_ftune_bin(), args);
    int rc = ft_test_run(cmd, out);
    ft_free(cmd);
    return rc;
}

TEST(hf_init_model_e2e) {
    ft_err err;
    char *dir = ft_path_join(ft_test_tmpdir(), "m");
    char tokdir[600];
    snprintf(tokdir, sizeof tokdir, "%s", ft_test_fixture("io/tokenizer"));
    char *args = ft_asprintf("init-model --out %s --vocab-size 256 --hidden-size 64 --intermediate-size 96 "
                             "--layers 2 --heads 4 --kv-heads 2 --head-dim 24 --rope-theta 500000 "
                             "--max-position-embeddings 512 --rope-scaling-llama3 8 --tokenizer %s --seed 5 --json",
                             dir, tokdir);
    char *out = NULL;
    int rc = run_ftune(args, &out);
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "init-model exited %d: %s", rc, out);
    REQUIRE(rc == 0);
    json_t *j;
    REQUIRE_OK(ft_json_load_buf("stdout", out, strlen(out), &j, &err), &err);
    int64_t np = 0;
    CHECK_OK(ft_json_get_int(j, "n_params", true, &np, "stdout", &err), &err);
    json_decref(j);
    ft_free(out);

    ft_model_config c;
    char *cp = ft_path_join(dir, "config.json");
    REQUIRE_OK(ft_model_config_load(cp, &c, &err), &err);
    CHECK_EQ_INT(c.head_dim, 24);
    CHECK_EQ_INT(c.rope_scaling, FT_ROPE_LLAMA3);
    CHECK_NEAR(c.rope_factor, 8.0, 0);
    CHECK_EQ_INT(c.bos_token_id, 1);       /* from the tokenizer */
    CHECK_EQ_INT(c.eos_token_ids[0], 40);  /* its eos_token is <|eot|> */
    CHECK_EQ_INT(np, ft_model_config_n_params(&c));
    CHECK_EQ_INT(np, 256 * 64 * 2 + 64 + 2 * (2 * 64 + 96 * 64 * 2 + 48 * 64 * 2 + 3 * 96 * 64));

    ft_st_reader *r;
    REQUIRE_OK(ft_st_open(dir, &r, &err), &err);
    size_t n = ft_model_config_tensors(&c, NULL, 0);
    ft_tensor_spec *ts = calloc(n, sizeof *ts);
    ft_model_config_tensors(&c, ts, n);
    CHECK_EQ_INT(ft_st_count(r), n);
    double sum = 0, sum2 = 0;
    int64_t count = 0;
    for (size_t i = 0; i < n; i++) {
        const ft_st_tensor *t;
        REQUIRE_OK(ft_st_get(r, ts[i].name, ts[i].ndim, ts[i].shape, &t, &err), &err);
        CHECK_EQ_INT(t->dtype, FT_ST_DTYPE_F32);
        int64_t k = t->numel;
        float *v = malloc((size_t)k * sizeof(float));
        REQUIRE_OK(ft_st_read_f32(t, v, k, &err), &err);
        for (int64_t e = 0; e < k; e++) {
            if (ts[i].ndim == 1) {
                if (v[e] != 1.0f) {
                    ft_test_fail_(__FILE__, __LINE__, "%s[%lld] = %g, expected 1", ts[i].name, (long long)e, v[e]);
                    break;
                }
            } else {
                sum += v[e];
                sum2 += (double)v[e] * v[e];
                count++;
            }
        }
        free(v);
    }
    double mean = sum / (double)count, sd = sqrt(sum2 / (double)count - mean * mean);
    /* ~60k samples: the standard error of the sd is ~0.02/sqrt(2*60k) = 6e-5. */
    CHECK_NEAR(mean, 0.0, 5e-4);
    CHECK_NEAR(sd, 0.02, 5e-4);
    CHECK(ft_st_find(r, "lm_head.weight") != NULL);
    ft_st_close(r);
    char *tj = ft_path_join(dir, "tokenizer.json"), *tc = ft_path_join(dir, "tokenizer_config.json");
    CHECK(ft_path_exists(tj) && ft_path_exists(tc));

    /* Same seed, same bytes; another seed, other bytes. bf16 output is bf16. */
    char *dir2 = ft_path_join(ft_test_tmpdir(), "m2"), *dir3 = ft_path_join(ft_test_tmpdir(), "m3");
    char *a2 = ft_asprintf("init-model --out %s --vocab-size 256 --hidden-size 64 --intermediate-size 96 --layers 2 "
                           "--heads 4 --kv-heads 2 --head-dim 24 --rope-theta 500000 --max-position-embeddings 512 "
                           "--rope-scaling-llama3 8 --tokenizer %s --seed 5",
                           dir2, tokdir);
    CHECK_EQ_INT(run_ftune(a2, NULL), 0);
    char *cmp = ft_asprintf("cmp -s %s/model.safetensors %s/model.safetensors", dir, dir2);
    CHECK_EQ_INT(ft_test_run(cmp, NULL), 0);
    char *a3 = ft_asprintf("init-model --out %s --vocab-size 256 --hidden-size 64 --intermediate-size 96 --layers 1 "
                           "--heads 4 --seed 6 --tie-embeddings --dtype bfloat16 --eos-token-id 7 --eos-token-id 9",
                           dir3);
    CHECK_EQ_INT(run_ftune(a3, NULL), 0);
    REQUIRE_OK(ft_st_open(dir3, &r, &err), &err);
    CHECK(ft_st_find(r, "lm_head.weight") == NULL);
    CHECK_EQ_INT(ft_st_find(r, "model.embed_tokens.weight")->dtype, FT_ST_DTYPE_BF16);
    ft_st_close(r);
    char *cp3 = ft_path_join(dir3, "config.json");
    REQUIRE_OK(ft_model_config_load(cp3, &c, &err), &err);
    CHECK_EQ_INT(c.n_eos, 2);
    CHECK_EQ_INT(c.eos_token_ids[1], 9);
    CHECK_STR_EQ(c.torch_dtype, "bfloat16");
    CHECK(c.tie_word_embeddings);

    /* A tokenizer whose bos_token is null: the model has no BOS. */
    char *nobos = ft_path_join(ft_test_tmpdir(), "nobos");
    char *tsrc = ft_path_join(tokdir, "tokenizer.json"), *tdst = ft_path_join(nobos, "tokenizer.json");
    write_text(nobos, "tokenizer_config.json", "{\"bos_token\": null, \"eos_token\": \"</s>\"}");
    REQUIRE_OK(ft_file_copy(tsrc, tdst, &err), &err);
    char *a4 = ft_asprintf("init-model --out %s/m4 --vocab-size 64 --hidden-size 16 --intermediate-size 16 --layers 1 "
                           "--heads 2 --tokenizer %s",
                           ft_test_tmpdir(), nobos);
    CHECK_EQ_INT(run_ftune(a4, NULL), 0);
    char *cp4 = ft_asprintf("%s/m4/config.json", ft_test_tmpdir());
    REQUIRE_OK(ft_model_config_load(cp4, &c, &err), &err);
    CHECK_EQ_INT(c.bos_token_id, -1);
    CHECK_EQ_INT(c.eos_token_ids[0], 2);
    ft_free(cp4);
    ft_free(a4);
    ft_free(tsrc);
    ft_free(tdst);
    ft_free(nobos);

    /* Usage errors exit 2 naming the flag. */
    char *o = NULL;
    CHECK_EQ_INT(run_ftune("init-model --out /tmp/x --vocab-size 10", &o), 2);
    CHECK(o && strstr(o, "--hidden-size") != NULL);
    ft_free(o);
    char *bad = ft_asprintf("init-model --out %s/x --vocab-size 10 --hidden-size 30 --intermediate-size 8 --layers 1 "
                            "--heads 4",
                            ft_test_tmpdir());
    CHECK_EQ_INT(run_ftune(bad, &o), 2); /* 30 / 4 is not an even head_dim */
    ft_free(o);
    char *small = ft_asprintf("init-model --out %s/y --vocab-size 10 --hidden-size 16 --intermediate-size 8 "
                              "--layers 1 --heads 2 --tokenizer %s",
                              ft_test_tmpdir(), tokdir);
    CHECK_EQ_INT(run_ftune(small, &o), 2); /* the tokenizer has ids up to 40 */
    CHECK(o && strstr(o, "--vocab-size") != NULL);
    ft_free(o);
    ft_free(small);
    ft_free(bad);
    ft_free(cp3);
    ft_free(a3);
    ft_free(a2);
    ft_free(cmp);
    ft_free(dir2);
    ft_free(dir3);
    ft_free(tj);
    ft_free(tc);
    free(ts);
    ft_free(cp);
    ft_free(args);
    ft_free(dir);
}

/* Allocation failures at every point of an export and of name resolution: FT_ERR_NOMEM or
 * success, never a crash or (under ASan) a leak. */
TEST(hf_alloc_failures) {
    ft_err err;
    ft_model_config c = tiny_config();
    size_t n = ft_model_config_tensors(&c, NULL, 0);
    ft_tensor_spec *ts = calloc(n, sizeof *ts);
    ft_model_config_tensors(&c, ts, n);
    float **data = calloc(n, sizeof *data);
    for (size_t i = 0; i < n; i++)
        data[i] = calloc((size_t)ft_tensor_spec_numel(&ts[i]), sizeof(float));
    char *dir = ft_path_join(ft_test_tmpdir(), "x");
    ft_hf_export_params p = ft_hf_export_default_params();
    p.max_shard_bytes = 4096;
    int nomem = 0, ok = 0;
    for (int64_t k = 0; k < 2000 && !ok; k++) {
        ft_alloc_fail_after(k);
        ft_status s = ft_hf_export_arrays(dir, &c, (const float *const *)data, n, &p, &err);
        ft_alloc_fail_after(-1);
        if (s == FT_OK)
            ok = 1;
        else if (s == FT_ERR_NOMEM)
            nomem++;
        else
            ft_test_fail_(__FILE__, __LINE__, "failing allocation %lld: %s: %s", (long long)k, ft_status_str(s),
                          err.msg);
    }
    CHECK(ok && nomem > 10);
    env_save es;
    env_push(&es);
    set_env("HF_HUB_CACHE", ft_test_tmpdir());
    for (int64_t k = 0; k < 200; k++) {
        char *out = NULL;
        ft_alloc_fail_after(k);
        ft_status s = ft_hf_resolve("org/none", &out, &err);
        ft_alloc_fail_after(-1);
        CHECK(s == FT_ERR_NOMEM || s == FT_ERR_NOT_FOUND);
        CHECK(out == NULL);
        if (s == FT_ERR_NOT_FOUND)
            break;
    }
    env_pop(&es);
    for (size_t i = 0; i < n; i++)
        free(data[i]);
    free(data);
    free(ts);
    ft_free(dir);
}
