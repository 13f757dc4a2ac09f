/* tests/io/test_gguf.c: GGUF export (src/io/gguf.c, `ftune export`) checked by llama.cpp itself:
 * node-llama-cpp's prebuilt CPU build loads the exported file (tests/io/gguf_peer.mjs) and, on a
 * set of prompts, must give ftune's greedy continuation, ftune's top-5 next tokens at every step
 * and logits close to ftune's; it must also tokenize texts as ftune does, add BOS as the
 * tokenizer does and carry the chat template. Models are the small random ones `ftune
 * init-model` makes with real tokenizers (Llama 3: byte-level BPE, GQA, llama3 RoPE scaling;
 * Mistral: sentencepiece-style BPE, tied embeddings).
 *
 * Tolerances (max |logit difference| over the vocabulary, relative to max |ftune logit|):
 *   f32 export: 1e-4. Both sides compute in fp32 from the same fp32 weights; they differ only
 *     in summation order (BLAS vs ggml's SIMD dots) and in RoPE's cos/sin, ~1e-6 relative.
 *   bf16 export of a bf16 model: 3e-2. The weights are exactly the same (ftune widens bf16 to
 *     fp32), but ggml's bf16 matrix product rounds the activations to bf16 too (8-bit mantissa,
 *     relative error 2^-9 per operand) and ftune computes in fp32.
 *   f16 export: the same 3e-2 (ggml rounds activations to f16).
 * Top-5: each of llama.cpp's top 5 must be within ftune's top 5, allowing a token whose ftune logit
 * is within the tolerance of ftune's 5th (a near-tie may order either way). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftune/gguf.h"
#include "ftune/json.h"
#include "ftune/model.h"
#include "ftune/store.h"
#include "ftune/tok.h"
#include "test.h"

static const char *peer_missing(void) {
    if (access("tools/npm-llama/node_modules/node-llama-cpp/package.json", R_OK) != 0 ||
        access("tools/npm-llama/node_modules/@node-llama-cpp/linux-x64/package.json", R_OK) != 0)
        return "npm node-llama-cpp with @node-llama-cpp/linux-x64 is missing: `make deps` installs them into "
               "tools/npm-llama";
    if (system("node --version >/dev/null 2>&1") != 0)
        return "node is missing: `make deps` installs it";
    return NULL;
}

static int run_ftune(const char *args, char **out) {
    char *cmd = ft_asprintf("%s %s 2>&1", ft_test_ftune_bin(), args);
    int rc = ft_test_run(cmd, out);
    ft_free(cmd);
    return rc;
}

static const char *const TEXTS[] = {
    "Hello, world! How are you today?",
    "The year 2024 had 366 days; 12345 + 678 = 13023.",
    "  leading spaces\tand tabs\n\nnew lines",
    "ünïcødé: naïve café, 日本語のテキスト, emoji 🙂",
    "fn main() { println!(\"hi\"); } // code",
};
#define N_TEXTS (sizeof TEXTS / sizeof *TEXTS)

typedef struct case_cfg {
    const char *model_dir, *gguf;
    double tol;   /* relative logit tolerance */
    int steps;
    bool long_prompt; /* a ~150-token prompt too (RoPE scaling shows at far positions) */
    bool kv_f32;      /* llama.cpp's KV cache in F32 (its default, F16, rounds keys and values) */
} case_cfg;

/* Build prompts with ftune's tokenizer (add_special_tokens: BOS as the tokenizer adds it), run
 * the peer, compare everything. */
static void compare_with_llama_cpp(const case_cfg *cc) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    ft_tok *tok = NULL;
    REQUIRE(ft_tok_load(cc->model_dir, &tok, &err) == FT_OK);
    ft_tok_info ti;
    ft_tok_get_info(tok, &ti);
    ft_model *m = NULL;
    REQUIRE(ft_model_load(cc->model_dir, NULL, &m, &err) == FT_OK);
    const int64_t V = ft_model_get_config(m)->vocab_size;

    /* Prompts: three texts with the tokenizer's specials, and optionally a long one. */
    json_t *req = json_object(), *prompts = json_array(), *texts = json_array();
    enum { NP_MAX = 4 };
    int32_t *pids[NP_MAX] = {0};
    size_t plen[NP_MAX] = {0}, np = 0;
    ft_tok_encoding e = {0};
    for (size_t i = 0; i < 3; i++) {
        REQUIRE(ft_tok_encode(tok, TEXTS[i], strlen(TEXTS[i]), true, &e, &err) == FT_OK);
        pids[np] = malloc(e.n * sizeof(int32_t));
        memcpy(pids[np], e.ids, e.n * sizeof(int32_t));
        plen[np++] = e.n;
    }
    if (cc->long_prompt) {
        plen[np] = 150;
        pids[np] = malloc(150 * sizeof(int32_t));
        for (size_t k = 0; k < 150; k++)
            pids[np][k] = (int32_t)((k * 7919 + 17) % 30000);
        np++;
    }
    for (size_t p = 0; p < np; p++) {
        json_t *a = json_array();
        for (size_t k = 0; k < plen[p]; k++)
            json_array_append_new(a, json_integer(pids[p][k]));
        json_array_append_new(prompts, a);
    }
    for (size_t i = 0; i < N_TEXTS; i++)
        json_array_append_new(texts, json_string(TEXTS[i]));
    json_object_set_new(req, "prompts", prompts);
    json_object_set_new(req, "texts", texts);
    json_object_set_new(req, "steps", json_integer(cc->steps));
    json_object_set_new(req, "kv_type", json_string(cc->kv_f32 ? "F32" : "F16"));
    char *req_path = ft_path_join(tmp, "request.json");
    REQUIRE(json_dump_file(req, req_path, 0) == 0);
    json_decref(req);

    char *cmd = ft_asprintf("node tests/io/gguf_peer.mjs '%s' '%s' '%s' 2>%s/peer.err", cc->gguf, req_path, tmp, tmp);
    char *out = NULL;
    int rc = ft_test_run(cmd, &out);
    if (rc != 0) {
        char *ep = ft_asprintf("%s/peer.err", tmp), *etext = NULL;
        size_t en = 0;
        ft_file_read_all(ep, &etext, &en, NULL);
        ft_test_fail_(__FILE__, __LINE__, "llama.cpp peer failed (exit %d): %s", rc, etext ? etext : "");
        ft_free(etext);
        ft_free(ep);
        goto cleanup;
    }
    json_t *res = NULL;
    REQUIRE(ft_json_load_buf("peer output", out, strlen(out), &res, &err) == FT_OK);

    /* Vocabulary, specials, chat template. */
    CHECK(json_integer_value(json_object_get(res, "n_vocab")) == V);
    CHECK(json_integer_value(json_object_get(res, "bos")) == ti.bos_id);
    CHECK(json_integer_value(json_object_get(res, "eos")) == ti.eos_id);
    CHECK(json_is_true(json_object_get(res, "add_bos")) == ti.post_adds_bos);
    {
        char *cp = ft_path_join(cc->model_dir, "tokenizer_config.json");
        json_t *tc = NULL;
        REQUIRE(ft_json_load_file(cp, &tc, &err) == FT_OK);
        const char *want = json_string_value(json_object_get(tc, "chat_template"));
        const char *got = json_string_value(json_object_get(res, "chat_template"));
        if (want) {
            CHECK(got && !strcmp(got, want));
        } else {
            CHECK(json_is_null(json_object_get(res, "chat_template")));
        }
        json_decref(tc);
        ft_free(cp);
    }
    /* Tokenization: llama.cpp's tokenizer from the GGUF equals ftune's (no specials added). */
    const json_t *tokd = json_object_get(res, "tokenized");
    REQUIRE(json_array_size(tokd) == N_TEXTS);
    for (size_t i = 0; i < N_TEXTS; i++) {
        REQUIRE(ft_tok_encode(tok, TEXTS[i], strlen(TEXTS[i]), false, &e, &err) == FT_OK);
        const json_t *ids = json_array_get(tokd, i);
        bool same = json_array_size(ids) == e.n;
        for (size_t k = 0; same && k < e.n; k++)
            same = json_integer_value(json_array_get(ids, k)) == e.ids[k];
        if (!same) {
            char *got = json_dumps(ids, JSON_COMPACT);
            ft_test_fail_(__FILE__, __LINE__, "text %zu \"%s\": llama.cpp tokens %s, ftune has %zu tokens (first %d)", i,
                          TEXTS[i], got, e.n, e.n ? e.ids[0] : -1);
            free(got);
        }
    }

    /* Greedy decoding with top-5 and logits at every step. */
    const json_t *runs = json_object_get(res, "runs");
    REQUIRE(json_array_size(runs) == np);
    float *logits = malloc((size_t)V * sizeof(float)), *peer = malloc((size_t)V * sizeof(float));
    ft_kv_cache *kv = NULL;
    REQUIRE(ft_kv_cache_new(m, 512, &kv, &err) == FT_OK);
    double worst = 0.0;
    int near_ties = 0;
    for (size_t p = 0; p < np; p++) {
        const json_t *run = json_array_get(runs, p);
        const json_t *greedy = json_object_get(run, "greedy"), *top5 = json_object_get(run, "top5");
        ft_kv_cache_reset(kv);
        REQUIRE(ft_model_decode(m, kv, pids[p], (int64_t)plen[p], logits, &err) == FT_OK);
        for (int s = 0; s < cc->steps; s++) {
            char *lp = ft_asprintf("%s/logits_%zu_%d.f32", tmp, p, s), *raw = NULL;
            size_t rn = 0;
            REQUIRE(ft_file_read_all(lp, &raw, &rn, &err) == FT_OK);
            REQUIRE(rn == (size_t)V * sizeof(float));
            memcpy(peer, raw, rn);
            ft_free(raw);
            ft_free(lp);
            double maxabs = 0.0, maxdiff = 0.0;
            int32_t arg = 0;
            for (int64_t v = 0; v < V; v++) {
                maxabs = fmax(maxabs, fabs(logits[v]));
                maxdiff = fmax(maxdiff, fabs((double)logits[v] - peer[v]));
                if (logits[v] > logits[arg])
                    arg = (int32_t)v;
            }
            double rel = maxdiff / (maxabs > 0 ? maxabs : 1.0);
            worst = fmax(worst, rel);
            if (rel > cc->tol)
                ft_test_fail_(__FILE__, __LINE__, "prompt %zu step %d: logits differ by %.3g relative (tolerance %.3g)",
                              p, s, rel, cc->tol);
            /* ftune's 5th largest logit */
            float best[5] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
            for (int64_t v = 0; v < V; v++) {
                float x = logits[v];
                for (int k = 0; k < 5; k++)
                    if (x > best[k]) {
                        memmove(best + k + 1, best + k, (size_t)(4 - k) * sizeof(float));
                        best[k] = x;
                        break;
                    }
            }
            const json_t *t5 = json_array_get(top5, (size_t)s);
            REQUIRE(json_array_size(t5) == 5);
            for (size_t k = 0; k < 5; k++) {
                int64_t id = json_integer_value(json_array_get(json_array_get(t5, k), 0));
                REQUIRE(id >= 0 && id < V);
                if (logits[id] < best[4] - cc->tol * maxabs)
                    ft_test_fail_(__FILE__, __LINE__,
                                  "prompt %zu step %d: llama.cpp's top-5 token %lld has ftune logit %g, below ftune's 5th "
                                  "(%g)",
                                  p, s, (long long)id, logits[id], best[4]);
            }
            /* Greedy: the same token, unless ftune's two candidates are closer than the tolerance
             * (a near-tie either side may break); then both go on with llama.cpp's token. */
            int64_t g = json_integer_value(json_array_get(greedy, (size_t)s));
            REQUIRE(g >= 0 && g < V);
            if (g != arg) {
                double gap = (double)logits[arg] - logits[g];
                if (gap > cc->tol * maxabs) {
                    ft_test_fail_(__FILE__, __LINE__,
                                  "prompt %zu step %d: greedy token llama.cpp %lld (ftune logit %g), ftune %d (%g)", p,
                                  s, (long long)g, logits[g], arg, logits[arg]);
                    break;
                }
                near_ties++;
            }
            int32_t next = (int32_t)g;
            if (s + 1 < cc->steps)
                REQUIRE(ft_model_decode(m, kv, &next, 1, logits, &err) == FT_OK);
        }
    }
    fprintf(stderr, "  %s: worst relative logit difference %.3g (tolerance %.3g), %d greedy near-ties\n", cc->gguf,
            worst, cc->tol, near_ties);
    ft_kv_cache_free(kv);
    free(logits);
    free(peer);
    json_decref(res);
cleanup:
    for (size_t p = 0; p < np; p++)
        free(pids[p]);
    ft_tok_encoding_free(&e);
    free(out);
    ft_free(cmd);
    ft_free(req_path);
    ft_model_free(m);
    ft_tok_free(tok);
}

/* Llama 3: byte-level BPE ("gpt2" + "llama-bpe"), BOS from the post-processor, chat template,
 * GQA (4 heads, 2 KV heads), llama3 RoPE scaling (rope_freqs), untied LM head; f32. */
TEST(gguf_llama3_f32_matches_llama_cpp) {
    SKIP_IF_SANITIZED("llama.cpp runs in node; the export code runs under ASan in gguf_export_refuses_and_replaces");
    const char *why = peer_missing();
    if (why)
        SKIP("%s", why);
    const char *tmp = ft_test_tmpdir();
    char *args = ft_asprintf("init-model --out %s/l3 --vocab-size 128256 --hidden-size 64 --intermediate-size 160 "
                             "--layers 2 --heads 4 --kv-heads 2 --tokenizer %s --rope-scaling-llama3 8 "
                             "--rope-original-max-position-embeddings 64 --max-position-embeddings 1024 "
                             "--rope-theta 500000 --rms-norm-eps 1e-5 --seed 5 --std 0.25",
                             tmp, ft_test_fixture("tok/llama3-instruct-rev2"));
    char *out = NULL;
    REQUIRE(run_ftune(args, &out) == 0);
    free(out);
    ft_free(args);
    args = ft_asprintf("export --format gguf --json %s/l3 %s/l3.gguf", tmp, tmp);
    int rc = run_ftune(args, &out);
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "export failed: %s", out ? out : "");
    CHECK(out && strstr(out, "\"tokenizer_model\":\"gpt2\"") && strstr(out, "\"chat_template\":true"));
    free(out);
    ft_free(args);
    char *dir = ft_asprintf("%s/l3", tmp), *gguf = ft_asprintf("%s/l3.gguf", tmp);
    case_cfg cc = {.model_dir = dir, .gguf = gguf, .tol = 1e-4, .steps = 6, .long_prompt = true, .kv_f32 = true};
    compare_with_llama_cpp(&cc);
    ft_free(dir);
    ft_free(gguf);
}

/* Mistral: sentencepiece-style BPE with byte fallback ("llama": scores, byte tokens, space
 * prefix), add_bos_token from tokenizer_config.json, no chat template, tied embeddings, MHA;
 * the model in bf16, exported as bf16 (exact) and as f16. */
TEST(gguf_mistral_bf16_f16_match_llama_cpp) {
    SKIP_IF_SANITIZED("llama.cpp runs in node; the export code runs under ASan in gguf_export_refuses_and_replaces");
    const char *why = peer_missing();
    if (why)
        SKIP("%s", why);
    const char *tmp = ft_test_tmpdir();
    char *args = ft_asprintf("init-model --out %s/mi --architecture MistralForCausalLM --vocab-size 32000 "
                             "--hidden-size 96 --intermediate-size 192 --layers 2 --heads 3 --tie-embeddings "
                             "--tokenizer %s --seed 11 --std 0.25 --dtype bfloat16",
                             tmp, ft_test_fixture("tok/mistral-7b-v0.1"));
    char *out = NULL;
    REQUIRE(run_ftune(args, &out) == 0);
    free(out);
    ft_free(args);
    const char *dts[] = {"bf16", "f16"};
    for (int i = 0; i < 2; i++) {
        args = ft_asprintf("export --format gguf --dtype %s %s/mi %s/mi-%s.gguf", dts[i], tmp, tmp, dts[i]);
        int rc = run_ftune(args, &out);
        if (rc != 0)
            ft_test_fail_(__FILE__, __LINE__, "export failed: %s", out ? out : "");
        CHECK(out && strstr(out, "llama tokenizer, no chat template"));
        free(out);
        ft_free(args);
        char *dir = ft_asprintf("%s/mi", tmp), *gguf = ft_asprintf("%s/mi-%s.gguf", tmp, dts[i]);
        case_cfg cc = {.model_dir = dir, .gguf = gguf, .tol = 3e-2, .steps = 5, .long_prompt = false};
        compare_with_llama_cpp(&cc);
        ft_free(dir);
        ft_free(gguf);
    }
}

/* ---------------------------------------------------------------- structure, registry, refusals */

/* A minimal GGUF v3 reader written from the spec for these checks: the header, every key/value
 * (values skipped by type, strings kept for `want_key`), every tensor info; then that offsets are
 * aligned, in order, non-overlapping and that the data ends the file. Returns false (with a test
 * failure) on any violation. */
typedef struct gg_summary {
    uint64_t n_tensors, n_kv;
    char str_value[4096]; /* value of want_key when it is a string */
    uint64_t tensor_bytes_f32, tensor_bytes_half; /* data by type */
} gg_summary;

static bool gg_read(const uint8_t *d, size_t n, size_t *pos, void *out, size_t k) {
    if (*pos + k > n)
        return false;
    memcpy(out, d + *pos, k);
    *pos += k;
    return true;
}

static bool gg_skip_value(const uint8_t *d, size_t n, size_t *pos, uint32_t type) {
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type > 12)
        return false;
    if (type == 8) {
        uint64_t len;
        if (!gg_read(d, n, pos, &len, 8) || *pos + len > n)
            return false;
        *pos += len;
        return true;
    }
    if (type == 9) {
        uint32_t et;
        uint64_t cnt;
        if (!gg_read(d, n, pos, &et, 4) || !gg_read(d, n, pos, &cnt, 8))
            return false;
        for (uint64_t i = 0; i < cnt; i++)
            if (!gg_skip_value(d, n, pos, et))
                return false;
        return true;
    }
    if (*pos + sz[type] > n)
        return false;
    *pos += sz[type];
    return true;
}

static void gg_check(const char *path, const char *want_key, gg_summary *sum) {
    memset(sum, 0, sizeof *sum);
    char *data = NULL;
    size_t n = 0;
    ft_err err;
    REQUIRE(ft_file_read_all(path, &data, &n, &err) == FT_OK);
    const uint8_t *d = (const uint8_t *)data;
    size_t pos = 0;
    uint32_t version;
    CHECK(n > 24 && !memcmp(d, "GGUF", 4));
    pos = 4;
    REQUIRE(gg_read(d, n, &pos, &version, 4) && version == 3);
    REQUIRE(gg_read(d, n, &pos, &sum->n_tensors, 8) && gg_read(d, n, &pos, &sum->n_kv, 8));
    uint32_t align = 32;
    for (uint64_t i = 0; i < sum->n_kv; i++) {
        uint64_t kl;
        REQUIRE(gg_read(d, n, &pos, &kl, 8) && pos + kl <= n);
        char key[128] = {0};
        memcpy(key, d + pos, kl < sizeof key - 1 ? kl : sizeof key - 1);
        pos += kl;
        uint32_t type;
        REQUIRE(gg_read(d, n, &pos, &type, 4));
        if (!strcmp(key, "general.alignment")) {
            REQUIRE(type == 4 && gg_read(d, n, &pos, &align, 4));
            continue;
        }
        if (want_key && !strcmp(key, want_key) && type == 8) {
            uint64_t len;
            REQUIRE(gg_read(d, n, &pos, &len, 8) && pos + len <= n && len < sizeof sum->str_value);
            memcpy(sum->str_value, d + pos, len);
            pos += len;
            continue;
        }
        REQUIRE(gg_skip_value(d, n, &pos, type));
    }
    uint64_t expect_off = 0;
    for (uint64_t i = 0; i < sum->n_tensors; i++) {
        uint64_t nl;
        REQUIRE(gg_read(d, n, &pos, &nl, 8) && pos + nl <= n);
        pos += nl;
        uint32_t nd, type;
        uint64_t ne[4] = {1, 1, 1, 1}, off, numel = 1;
        REQUIRE(gg_read(d, n, &pos, &nd, 4) && nd >= 1 && nd <= 4);
        for (uint32_t k = 0; k < nd; k++) {
            REQUIRE(gg_read(d, n, &pos, &ne[k], 8));
            numel *= ne[k];
        }
        REQUIRE(gg_read(d, n, &pos, &type, 4) && gg_read(d, n, &pos, &off, 8));
        REQUIRE(type == 0 || type == 1 || type == 30);
        CHECK(off % align == 0);
        CHECK(off == expect_off); /* in order, back to back up to the alignment */
        uint64_t bytes = numel * (type == 0 ? 4 : 2);
        if (type == 0)
            sum->tensor_bytes_f32 += bytes;
        else
            sum->tensor_bytes_half += bytes;
        expect_off = (off + bytes + align - 1) / align * align;
        if (i + 1 == sum->n_tensors)
            expect_off = off + bytes;
    }
    size_t data_start = (pos + align - 1) / align * align;
    CHECK(data_start + expect_off == n);
    ft_free(data);
}

static char *file_sha(const char *path) {
    char hex[65];
    int64_t size;
    if (ft_sha256_file(path, hex, &size, NULL) != FT_OK)
        return NULL;
    return ft_strdup(hex);
}

TEST(gguf_export_refuses_and_replaces) {
    const char *tmp = ft_test_tmpdir();
    char *args = ft_asprintf("init-model --out %s/m --vocab-size 32000 --hidden-size 16 --intermediate-size 32 "
                             "--layers 1 --heads 2 --tokenizer %s --seed 1",
                             tmp, ft_test_fixture("tok/mistral-7b-v0.1"));
    char *out = NULL;
    REQUIRE(run_ftune(args, &out) == 0);
    free(out);
    ft_free(args);

    /* A first export; its structure; a second one to the same path is refused and leaves the
     * file alone; --force replaces it; no temporary file is left behind. */
    args = ft_asprintf("export --format gguf --dtype bf16 %s/m %s/m.gguf", tmp, tmp);
    int rc = run_ftune(args, &out);
    CHECK(rc == 0);
    free(out);
    char *gpath = ft_asprintf("%s/m.gguf", tmp);
    gg_summary g;
    gg_check(gpath, "general.architecture", &g);
    CHECK(!strcmp(g.str_value, "llama"));
    CHECK(g.n_tensors == 2 + 9 + 1); /* embed, 9 per layer, norm, untied output */
    CHECK(g.tensor_bytes_half == (32000 * 16 * 2 + (16 * 16 * 4) + 32 * 16 * 3) * 2ull);
    CHECK(g.tensor_bytes_f32 == (16 * 2 + 16) * 4ull); /* the norms stay f32 */
    char *sha1 = file_sha(gpath);
    rc = run_ftune(args, &out);
    CHECK(rc == 2);
    CHECK(out && strstr(out, "already exists") && strstr(out, "--force"));
    free(out);
    char *sha2 = file_sha(gpath);
    CHECK(sha1 && sha2 && !strcmp(sha1, sha2));
    ft_free(args);
    args = ft_asprintf("export --format gguf --dtype f32 --force %s/m %s/m.gguf", tmp, tmp);
    rc = run_ftune(args, &out);
    CHECK(rc == 0);
    free(out);
    ft_free(args);
    gg_check(gpath, NULL, &g);
    CHECK(g.tensor_bytes_half == 0);
    char *ls = ft_asprintf("ls -a %s", tmp);
    rc = ft_test_run(ls, &out);
    CHECK(rc == 0 && out && !strstr(out, ".tmp-"));
    free(out);
    ft_free(ls);

    /* Refusals with what to do. */
    args = ft_asprintf("export --format onnx %s/m %s/x.onnx", tmp, tmp);
    CHECK(run_ftune(args, &out) == 2 && strstr(out, "gguf"));
    free(out);
    ft_free(args);
    args = ft_asprintf("export --format gguf --dtype q4 %s/m %s/x.gguf", tmp, tmp);
    CHECK(run_ftune(args, &out) == 2 && strstr(out, "f32, f16 or bf16"));
    free(out);
    ft_free(args);
    args = ft_asprintf("export --format gguf %s/m %s", tmp, tmp);
    CHECK(run_ftune(args, &out) == 2 && strstr(out, "is a folder"));
    free(out);
    ft_free(args);
    args = ft_asprintf("export --format gguf %s/m %s/nodir/x.gguf", tmp, tmp);
    CHECK(run_ftune(args, &out) == 2 && strstr(out, "does not exist; create it first"));
    free(out);
    ft_free(args);
    args = ft_asprintf("init-model --out %s/small --vocab-size 1000 --hidden-size 16 --intermediate-size 32 "
                       "--layers 1 --heads 2 --seed 1",
                       tmp);
    REQUIRE(run_ftune(args, &out) == 0);
    free(out);
    ft_free(args);
    args = ft_asprintf("export --format gguf %s/small %s/small.gguf", tmp, tmp);
    CHECK(run_ftune(args, &out) != 0 && strstr(out, "tokenizer.json"));
    free(out);
    ft_free(args);
    char *cp = ft_asprintf("cp %s/tokenizer.json %s/small/", ft_test_fixture("tok/mistral-7b-v0.1"), tmp);
    CHECK(system(cp) == 0);
    ft_free(cp);
    args = ft_asprintf("export --format gguf %s/small %s/small.gguf", tmp, tmp);
    CHECK(run_ftune(args, &out) == 2 && strstr(out, "outside the model's vocabulary"));
    free(out);
    ft_free(args);
    char *small = ft_asprintf("%s/small.gguf", tmp);
    CHECK(!ft_path_exists(small));
    ft_free(small);
    ft_free(sha1);
    ft_free(sha2);
    ft_free(gpath);
}

/* A registered model exports by name and by name/version, to the same bytes as its folder. */
TEST(gguf_export_registered_model) {
    const char *tmp = ft_test_tmpdir();
    char *home = ft_asprintf("%s/home", tmp);
    REQUIRE(ft_mkdir_p(home, NULL) == FT_OK);
    setenv("FTUNE_HOME", home, 1);
    char *args = ft_asprintf("init-model --out %s/m --vocab-size 32000 --hidden-size 16 --intermediate-size 32 "
                             "--layers 1 --heads 2 --tie-embeddings --tokenizer %s --seed 2",
                             tmp, ft_test_fixture("tok/mistral-7b-v0.1"));
    char *out = NULL;
    REQUIRE(run_ftune(args, &out) == 0);
    free(out);
    ft_free(args);
    char *db = ft_asprintf("%s/ftune.db", home), *src = ft_asprintf("%s/m", tmp);
    ft_store *s = NULL;
    ft_err err;
    REQUIRE(ft_store_open(db, &s, &err) == FT_OK);
    REQUIRE(ft_registry_register(s, home, "main.demo.tiny", src, NULL, NULL, NULL, NULL, &err) == FT_OK);
    ft_store_close(s);
    const char *names[] = {"main.demo.tiny", "main.demo.tiny/1"};
    char *shas[3] = {0};
    for (int i = 0; i < 2; i++) {
        args = ft_asprintf("export --format gguf --dtype f16 --name tiny %s %s/r%d.gguf", names[i], tmp, i);
        int rc = run_ftune(args, &out);
        if (rc != 0)
            ft_test_fail_(__FILE__, __LINE__, "export %s: exit %d: %s", names[i], rc, out ? out : "");
        free(out);
        ft_free(args);
        char *p = ft_asprintf("%s/r%d.gguf", tmp, i);
        shas[i] = file_sha(p);
        gg_summary g;
        gg_check(p, "general.name", &g);
        CHECK(!strcmp(g.str_value, "tiny"));
        CHECK(g.n_tensors == 2 + 9); /* tied: no output tensor */
        ft_free(p);
    }
    args = ft_asprintf("export --format gguf --dtype f16 --name tiny %s %s/folder.gguf", src, tmp);
    CHECK(run_ftune(args, &out) == 0);
    free(out);
    ft_free(args);
    char *fp = ft_asprintf("%s/folder.gguf", tmp);
    shas[2] = file_sha(fp);
    CHECK(shas[0] && shas[1] && shas[2] && !strcmp(shas[0], shas[1]) && !strcmp(shas[0], shas[2]));
    /* Without --name, a registered model's file is named after it. */
    args = ft_asprintf("export --format gguf main.demo.tiny %s/named.gguf", tmp);
    CHECK(run_ftune(args, &out) == 0);
    free(out);
    ft_free(args);
    char *np = ft_asprintf("%s/named.gguf", tmp);
    gg_summary g;
    gg_check(np, "general.name", &g);
    CHECK(!strcmp(g.str_value, "main.demo.tiny"));
    args = ft_asprintf("export --format gguf main.demo.nosuch %s/x.gguf", tmp);
    CHECK(run_ftune(args, &out) == 2);
    free(out);
    ft_free(args);
    for (int i = 0; i < 3; i++)
        ft_free(shas[i]);
    ft_free(np);
    ft_free(fp);
    ft_free(db);
    ft_free(src);
    ft_free(home);
}

/* `ftune create --export-gguf f16`: the registered version holds model.gguf, written from the
 * trained weights (byte-identical to exporting that version afterwards) with the chat template. */
TEST(gguf_export_at_registration) {
    SKIP_IF_SANITIZED("trains a run end to end; the export code runs under ASan in gguf_export_refuses_and_replaces");
    const char *tmp = ft_test_tmpdir();
    char *home = ft_asprintf("%s/home", tmp);
    REQUIRE(ft_mkdir_p(home, NULL) == FT_OK);
    char *args = ft_asprintf("init-model --out %s/base --vocab-size 128256 --hidden-size 16 --intermediate-size 32 "
                             "--layers 1 --heads 2 --tie-embeddings --max-position-embeddings 256 --tokenizer %s "
                             "--seed 1",
                             tmp, ft_test_fixture("tok/llama3-instruct-rev2"));
    char *out = NULL;
    REQUIRE(run_ftune(args, &out) == 0);
    free(out);
    ft_free(args);
    ft_buf b = {0};
    for (int i = 0; i < 8; i++)
        ft_buf_appendf(&b,
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"Say %d\"},{\"role\":\"assistant\","
                       "\"content\":\"%d\"}]}\n",
                       i, i);
    char *data = ft_asprintf("%s/train.jsonl", tmp);
    REQUIRE(ft_file_write_atomic(data, b.data, b.len, NULL) == FT_OK);
    ft_buf_free(&b);
    args = ft_asprintf("create --model %s/base --train-data-path %s --register-to main.test.g --export-gguf f16 "
                       "--training-duration 2ba --global-batch-size 2 --micro-batch-size 2 --context-length 64 "
                       "--learning-rate 1e-2 --threads 1 --eval-max-new-tokens 2 --experiment-path %s/exp --json",
                       tmp, data, tmp);
    char *cmd = ft_asprintf("FTUNE_HOME='%s' USER=tester OMP_NUM_THREADS=1 %s %s 2>&1", home, ft_test_ftune_bin(), args);
    int rc = ft_test_run(cmd, &out);
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "create --export-gguf failed (exit %d): %s", rc, out ? out : "");
    free(out);
    ft_free(cmd);
    ft_free(args);
    char *reg = ft_asprintf("%s/registry/main/test/g/1/model.gguf", home);
    REQUIRE(ft_path_exists(reg));
    gg_summary g;
    gg_check(reg, "tokenizer.chat_template", &g);
    CHECK(g.str_value[0] && strstr(g.str_value, "start_header_id"));
    CHECK(g.tensor_bytes_half > 0);
    /* The same bytes as exporting the registered version now: the trained weights, not the base. */
    cmd = ft_asprintf("FTUNE_HOME='%s' %s export --format gguf --dtype f16 --name model main.test.g/1 %s/again.gguf "
                      "2>&1",
                      home, ft_test_ftune_bin(), tmp);
    CHECK(ft_test_run(cmd, &out) == 0);
    free(out);
    ft_free(cmd);
    char *again = ft_asprintf("%s/again.gguf", tmp);
    char *s1 = file_sha(reg), *s2 = file_sha(again);
    CHECK(s1 && s2 && !strcmp(s1, s2));
    cmd = ft_asprintf("%s export --format gguf --dtype f16 --name model %s/base %s/base.gguf 2>&1", ft_test_ftune_bin(),
                      tmp, tmp);
    CHECK(ft_test_run(cmd, &out) == 0);
    free(out);
    ft_free(cmd);
    char *basep = ft_asprintf("%s/base.gguf", tmp);
    char *s3 = file_sha(basep);
    CHECK(s1 && s3 && strcmp(s1, s3) != 0);
    ft_free(s1);
    ft_free(s2);
    ft_free(s3);
    ft_free(basep);
    ft_free(again);
    ft_free(reg);
    ft_free(data);
    ft_free(home);
}
