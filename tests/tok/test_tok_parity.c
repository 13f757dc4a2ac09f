/* tests/tok/test_tok_parity.c: token-exact parity with Hugging Face `tokenizers` on the
 * generated corpus (tests/fixtures/tok/corpus.jsonl, 3,500+ strings) for the four real
 * tokenizers, with and without special tokens, and decode(encode(x)) against the reference's
 * decode. Goldens come from tools/reference/tok_golden.js (npm tokenizers@0.23.2). */
#include <stdlib.h>
#include <string.h>

#include "ftune/json.h"
#include "ftune/tok.h"
#include "test.h"
#include "tok/tok_test_util.h"

static json_t *load_jsonl(const char *path, size_t *n) {
    char *data;
    size_t len;
    ft_err err;
    if (ft_file_read_all(path, &data, &len, &err))
        return NULL;
    json_t *arr = json_array();
    char *p = data, *end = data + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ln = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (ln) {
            json_error_t je;
            json_t *j = json_loadb(p, ln, JSON_ALLOW_NUL, &je);
            if (!j) {
                fprintf(stderr, "  %s: bad line: %s\n", path, je.text);
                json_decref(arr);
                ft_free(data);
                return NULL;
            }
            json_array_append_new(arr, j);
        }
        p += ln + 1;
    }
    ft_free(data);
    *n = json_array_size(arr);
    return arr;
}

static bool ids_equal(const ft_tok_encoding *e, size_t off, const json_t *ids) {
    for (size_t i = 0; i < json_array_size(ids); i++)
        if (off + i >= e->n || e->ids[off + i] != json_integer_value(json_array_get(ids, i)))
            return false;
    return true;
}

static void show(const char *what, size_t line, const ft_tok_encoding *e, const json_t *want) {
    char *w = ft_json_dumps(want, 0);
    fprintf(stderr, "  %s mismatch at corpus line %zu\n    want %s\n    got  [", what, line + 1, w ? w : "?");
    for (size_t i = 0; i < e->n && i < 64; i++)
        fprintf(stderr, i ? ",%d" : "%d", (int)e->ids[i]);
    fprintf(stderr, "]\n");
    free(w);
}

static void parity(const char *name) {
    char dir[256], gpath[256];
    snprintf(dir, sizeof dir, "tok/%s", name);
    snprintf(gpath, sizeof gpath, "tok/golden-%s.jsonl", name);
    ft_err err;
    ft_tok *t;
    REQUIRE_OK(ft_tok_load(ft_test_fixture(dir), &t, &err), &err);
    size_t nc = 0, ng = 0;
    json_t *corpus = load_jsonl(ft_test_fixture("tok/corpus.jsonl"), &nc);
    json_t *gold = load_jsonl(ft_test_fixture(gpath), &ng);
    REQUIRE(corpus && gold);
    CHECK_EQ_INT(nc, ng);
    REQUIRE(nc >= 3000);
    /* sanitizer builds check a sample to stay fast */
    size_t step = ft_test_sanitized() ? 11 : 1;
    ft_tok_encoding e = {0};
    size_t ok_plain = 0, ok_sp = 0, ok_dec = 0, tried = 0, shown = 0, off_tried = 0, off_ok = 0;
    for (size_t i = 0; i < nc && i < ng; i += step) {
        tried++;
        const json_t *jt = json_object_get(json_array_get(corpus, i), "text");
        const char *text = json_string_value(jt);
        size_t len = json_string_length(jt);
        const json_t *g = json_array_get(gold, i);
        const json_t *ids = json_object_get(g, "ids");
        /* without special tokens */
        CHECK_OK(ft_tok_encode(t, text, len, false, &e, &err), &err);
        if (e.n == json_array_size(ids) && ids_equal(&e, 0, ids))
            ok_plain++;
        else if (shown++ < 5)
            show("ids (no special tokens)", i, &e, ids);
        /* decode */
        char *dec = NULL;
        size_t dn = 0;
        CHECK_OK(ft_tok_decode(t, e.ids, e.n, false, &dec, &dn, &err), &err);
        const json_t *jd = json_object_get(g, "dec");
        const char *want = jd ? json_string_value(jd) : text;
        size_t wn = jd ? json_string_length(jd) : len;
        if (dec && dn == wn && memcmp(dec, want, wn) == 0)
            ok_dec++;
        else if (shown++ < 5)
            fprintf(stderr, "  decode mismatch at line %zu: want \"%.*s\" got \"%.*s\"\n", i + 1, (int)(wn > 200 ? 200 : wn),
                    want, (int)(dn > 200 ? 200 : dn), dec ? dec : "");
        ft_free(dec);
        /* with special tokens */
        CHECK_OK(ft_tok_encode(t, text, len, true, &e, &err), &err);
        const json_t *sp = json_object_get(g, "sp"), *full = json_object_get(g, "sp_full");
        bool good;
        if (full) {
            good = e.n == json_array_size(full) && ids_equal(&e, 0, full);
        } else {
            const json_t *pre = json_array_get(sp, 0), *post = json_array_get(sp, 1);
            size_t np = json_array_size(pre), nm = json_array_size(ids), na = json_array_size(post);
            good = e.n == np + nm + na && ids_equal(&e, 0, pre) && ids_equal(&e, np, ids) && ids_equal(&e, np + nm, post);
        }
        if (good)
            ok_sp++;
        else if (shown++ < 5)
            show("ids (special tokens)", i, &e, full ? full : sp);
        /* byte offsets of each token (recorded for a sample of NFC-stable lines) */
        const json_t *off = json_object_get(g, "off");
        if (off) {
            off_tried++;
            bool same = tok_offsets_match(text, len, &e, off);
            if (same)
                off_ok++;
            else if (shown++ < 5) {
                char *w = ft_json_dumps(off, 0);
                fprintf(stderr, "  offsets mismatch at line %zu: want %.300s\n    got  [", i + 1, w ? w : "?");
                for (size_t k = 0; k < e.n && k < 20; k++)
                    fprintf(stderr, "[%zu,%zu]", e.offsets[k].start, e.offsets[k].end);
                fprintf(stderr, "]\n");
                free(w);
            }
        }
    }
    fprintf(stderr, "  %s: %zu/%zu identical without special tokens, %zu/%zu with, %zu/%zu decode, %zu/%zu offsets\n",
            name, ok_plain, tried, ok_sp, tried, ok_dec, tried, off_ok, off_tried);
    CHECK_EQ_INT(ok_plain, tried);
    CHECK_EQ_INT(ok_sp, tried);
    CHECK_EQ_INT(ok_dec, tried);
    CHECK_EQ_INT(off_ok, off_tried);
    ft_tok_encoding_free(&e);
    json_decref(corpus);
    json_decref(gold);
    ft_tok_free(t);
}

TEST(tok_parity_llama3_rev1) {
    /* rev1 shares rev2's vocabulary and merges, which tok_parity_llama3_rev2 checks under ASan */
    SKIP_IF_SANITIZED("loading this large tokenizer is slow under ASan");
    parity("llama3-instruct-rev1");
}
TEST(tok_parity_llama3_rev2) { parity("llama3-instruct-rev2"); }
TEST(tok_parity_mistral) { parity("mistral-7b-v0.1"); }
TEST(tok_parity_qwen3) { parity("qwen3"); }
/* DBRX's cl100k with its ChatML specials (tools/reference/dbrx_tokenizer.js) */
TEST(tok_parity_dbrx) { parity("dbrx"); }
