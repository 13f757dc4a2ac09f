/* tests/tok/test_tok_api.c: the tokenizer API beyond raw ids: offsets, special tokens and
 * tokenizer_config.json info, vocabulary lookups, streaming decode, batch encoding, invalid
 * UTF-8, clear errors for unknown components, and the `ftune tokenize` command. */
#include <stdlib.h>
#include <string.h>

#include "ftune/tok.h"
#include "test.h"

/* Tokenizers load once per test binary (Llama 3 takes most of a second): a small cache,
 * emptied at exit. Tests must not free what load() returns. */
static struct {
    const char *name;
    ft_tok *t;
} cache[8];

__attribute__((destructor)) static void cache_free(void) {
    for (int i = 0; i < 8; i++)
        ft_tok_free(cache[i].t);
}

static ft_tok *load(const char *name) {
    for (int i = 0; i < 8; i++)
        if (cache[i].name && !strcmp(cache[i].name, name))
            return cache[i].t;
    char dir[128];
    snprintf(dir, sizeof dir, "tok/%s", name);
    ft_err err;
    ft_tok *t = NULL;
    CHECK_OK(ft_tok_load(ft_test_fixture(dir), &t, &err), &err);
    for (int i = 0; i < 8; i++)
        if (!cache[i].name) {
            cache[i].name = name;
            cache[i].t = t;
            break;
        }
    return t;
}

TEST(tok_offsets_byte_ranges) {
    ft_tok *t = load("llama3-instruct-rev2");
    REQUIRE(t);
    const char *text = "h\xc3\xa9llo \xf0\x9f\x98\x80 world<|eot_id|>";
    size_t n = strlen(text);
    ft_tok_encoding e = {0};
    ft_err err;
    REQUIRE_OK(ft_tok_encode(t, text, n, true, &e, &err), &err);
    REQUIRE(e.n >= 4);
    CHECK_EQ_INT(e.ids[0], 128000); /* BOS from the post-processor, span (0, 0) */
    CHECK_EQ_INT(e.offsets[0].start, 0);
    CHECK_EQ_INT(e.offsets[0].end, 0);
    CHECK_EQ_INT(e.ids[e.n - 1], 128009);
    CHECK_EQ_INT(e.offsets[e.n - 1].start, n - strlen("<|eot_id|>"));
    CHECK_EQ_INT(e.offsets[e.n - 1].end, n);
    /* model tokens tile the text in order (whole characters) */
    size_t pos = 0;
    for (size_t i = 1; i < e.n; i++) {
        CHECK(e.offsets[i].start <= e.offsets[i].end && e.offsets[i].end <= n);
        CHECK(e.offsets[i].start >= (pos > 0 && e.offsets[i].start < pos ? e.offsets[i].start : pos));
        pos = e.offsets[i].end;
    }
    CHECK_EQ_INT(pos, n);
    /* " world" is one token and its span is exactly that text */
    bool found = false;
    for (size_t i = 0; i < e.n; i++)
        if (e.offsets[i].end - e.offsets[i].start == 6 && !memcmp(text + e.offsets[i].start, " world", 6))
            found = true;
    CHECK(found);
    ft_tok_encoding_free(&e);
}

TEST(tok_offsets_through_normalizer) {
    /* Mistral prepends and replaces spaces with U+2581: offsets still point into the input */
    ft_tok *t = load("mistral-7b-v0.1");
    REQUIRE(t);
    const char *text = "Hello world";
    ft_tok_encoding e = {0};
    ft_err err;
    REQUIRE_OK(ft_tok_encode(t, text, strlen(text), false, &e, &err), &err);
    REQUIRE(e.n == 2);
    CHECK_EQ_INT(e.offsets[0].start, 0);
    CHECK_EQ_INT(e.offsets[0].end, 5);
    CHECK_EQ_INT(e.offsets[1].start, 5);
    CHECK_EQ_INT(e.offsets[1].end, 11);
    ft_tok_encoding_free(&e);
}

TEST(tok_info_and_vocab) {
    ft_tok *a = load("llama3-instruct-rev1"), *b = load("llama3-instruct-rev2"), *m = load("mistral-7b-v0.1"),
           *q = load("qwen3");
    REQUIRE(a && b && m && q);
    ft_tok_info i;
    ft_tok_get_info(a, &i);
    CHECK(!i.post_adds_bos);
    CHECK_EQ_INT(i.bos_id, 128000);
    CHECK_EQ_INT(i.eos_id, 128001);
    ft_tok_get_info(b, &i);
    CHECK(i.post_adds_bos && !i.post_adds_eos);
    CHECK_EQ_INT(i.post_bos_id, 128000);
    CHECK_EQ_INT(i.eos_id, 128009);
    CHECK_STR_EQ(i.eos_token, "<|eot_id|>");
    ft_tok_get_info(m, &i);
    CHECK_EQ_INT(i.bos_id, 1);
    CHECK_EQ_INT(i.eos_id, 2);
    CHECK_EQ_INT(i.unk_id, 0);
    CHECK_EQ_INT(i.config_add_bos, 1);
    CHECK_EQ_INT(i.config_add_eos, 0);
    ft_tok_get_info(q, &i);
    CHECK_EQ_INT(i.bos_id, -1);
    CHECK_EQ_INT(i.eos_id, 151645);
    CHECK_EQ_INT(i.pad_id, 151643);
    CHECK_EQ_INT(i.config_add_bos, 0);
    CHECK_EQ_INT(i.config_add_eos, -1);

    CHECK_EQ_INT(ft_tok_vocab_size(b), 128256);
    CHECK_EQ_INT(ft_tok_vocab_size(m), 32000);
    CHECK_EQ_INT(ft_tok_token_to_id(b, "<|eot_id|>", 10), 128009);
    CHECK_EQ_INT(ft_tok_token_to_id(b, "Hello", 5), 9906);
    CHECK_EQ_INT(ft_tok_token_to_id(b, "no such token", 13), -1);
    CHECK_STR_EQ(ft_tok_id_to_token(b, 9906), "Hello");
    CHECK_STR_EQ(ft_tok_id_to_token(m, 1), "<s>");
    CHECK(ft_tok_id_to_token(b, -1) == NULL);
    CHECK(ft_tok_id_to_token(b, 1 << 30) == NULL);
    CHECK(ft_tok_is_special(b, 128009));
    CHECK(!ft_tok_is_special(b, 9906));
    CHECK(ft_tok_is_special(q, 151645));
}

TEST(tok_decode_skip_special) {
    ft_tok *t = load("llama3-instruct-rev2");
    REQUIRE(t);
    const char *text = "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>";
    ft_tok_encoding e = {0};
    ft_err err;
    REQUIRE_OK(ft_tok_encode(t, text, strlen(text), true, &e, &err), &err);
    char *s;
    REQUIRE_OK(ft_tok_decode(t, e.ids, e.n, true, &s, NULL, &err), &err);
    CHECK_STR_EQ(s, "user\n\nHi!");
    ft_free(s);
    REQUIRE_OK(ft_tok_decode(t, e.ids, e.n, false, &s, NULL, &err), &err);
    CHECK(!strncmp(s, "<|begin_of_text|><|start_header_id|>user", 40));
    ft_free(s);
    ft_tok_encoding_free(&e);
}

/* Streaming decode emits only whole characters and adds up to the full decode. */
static void stream_check(const char *name) {
    ft_tok *t = load(name);
    REQUIRE(t);
    const char *text = "Stream \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb and "
                       "\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a emoji \xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd done.";
    ft_tok_encoding e = {0};
    ft_err err;
    REQUIRE_OK(ft_tok_encode(t, text, strlen(text), false, &e, &err), &err);
    char *full;
    size_t fn;
    REQUIRE_OK(ft_tok_decode(t, e.ids, e.n, false, &full, &fn, &err), &err);
    ft_tok_stream *s;
    REQUIRE_OK(ft_tok_stream_new(t, false, &s, &err), &err);
    ft_buf acc = {0};
    for (size_t i = 0; i < e.n; i++) {
        size_t before = acc.len;
        CHECK_OK(ft_tok_stream_push(s, e.ids[i], &acc, &err), &err);
        CHECK_EQ_INT(ft_utf8_valid_prefix(acc.data + before, acc.len - before), acc.len - before);
    }
    CHECK_EQ_INT(acc.len, fn);
    CHECK(acc.len == fn && memcmp(acc.data, full, fn) == 0);
    /* after a reset the stream starts over */
    ft_tok_stream_reset(s);
    acc.len = 0;
    for (size_t i = 0; i < e.n; i++)
        CHECK_OK(ft_tok_stream_push(s, e.ids[i], &acc, &err), &err);
    CHECK(acc.len == fn && memcmp(acc.data, full, fn) == 0);
    ft_buf_free(&acc);
    ft_tok_stream_free(s);
    ft_free(full);
    ft_tok_encoding_free(&e);
}
TEST(tok_stream_llama3) { stream_check("llama3-instruct-rev2"); }
TEST(tok_stream_mistral) { stream_check("mistral-7b-v0.1"); }
TEST(tok_stream_qwen3) { stream_check("qwen3"); }

TEST(tok_stream_holds_partial_chars) {
    /* Mistral byte-fallback: the 4 byte tokens of an emoji give nothing until the last one */
    ft_tok *t = load("mistral-7b-v0.1");
    REQUIRE(t);
    ft_err err;
    int32_t ids[4];
    const char *bytes = "<0xF0><0x9F><0xAB><0xA0>"; /* U+1FAE0 */
    for (int i = 0; i < 4; i++) {
        ids[i] = ft_tok_token_to_id(t, bytes + 6 * i, 6);
        REQUIRE(ids[i] >= 0);
    }
    ft_tok_stream *s;
    REQUIRE_OK(ft_tok_stream_new(t, false, &s, &err), &err);
    ft_buf acc = {0};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(ft_tok_stream_push(s, ids[i], &acc, &err), &err);
        CHECK_EQ_INT(acc.len, 0);
    }
    CHECK_OK(ft_tok_stream_push(s, ids[3], &acc, &err), &err);
    CHECK_EQ_INT(acc.len, 4);
    CHECK(acc.len == 4 && !memcmp(acc.data, "\xf0\x9f\xab\xa0", 4));
    ft_buf_free(&acc);
    ft_tok_stream_free(s);
}

TEST(tok_invalid_utf8) {
    /* ill-formed bytes encode like the string with U+FFFD in their place; offsets cover them */
    ft_tok *t = load("qwen3");
    REQUIRE(t);
    const char bad[] = "\xff\xfe" "abc\xe2\x82" " x\xc0";
    const char good[] = "\xef\xbf\xbd\xef\xbf\xbd" "abc\xef\xbf\xbd" " x\xef\xbf\xbd";
    ft_tok_encoding a = {0}, b = {0};
    ft_err err;
    REQUIRE_OK(ft_tok_encode(t, bad, sizeof bad - 1, false, &a, &err), &err);
    REQUIRE_OK(ft_tok_encode(t, good, sizeof good - 1, false, &b, &err), &err);
    CHECK_EQ_INT(a.n, b.n);
    for (size_t i = 0; i < a.n && i < b.n; i++)
        CHECK_EQ_INT(a.ids[i], b.ids[i]);
    for (size_t i = 0; i < a.n; i++)
        CHECK(a.offsets[i].end <= sizeof bad - 1);
    CHECK_EQ_INT(a.offsets[a.n - 1].end, sizeof bad - 1);
    /* every byte value alone, and NUL inside text */
    for (int c = 0; c < 256; c++) {
        char s[3] = {'a', (char)c, 'b'};
        CHECK_OK(ft_tok_encode(t, s, 3, true, &a, &err), &err);
        CHECK(a.n >= 1);
    }
    CHECK_OK(ft_tok_encode(t, NULL, 0, true, &a, &err), &err);
    CHECK_EQ_INT(a.n, 0);
    ft_tok_encoding_free(&a);
    ft_tok_encoding_free(&b);
}

TEST(tok_bytes_round_trip) {
    /* Llama 3 is byte-level with no normalizer: decode(encode(x)) gives x back for every byte
     * value (a lone byte >= 0x80 is ill-formed and comes back as U+FFFD), two-byte sequences
     * included */
    ft_tok *t = load("llama3-instruct-rev2");
    REQUIRE(t);
    ft_tok_encoding e = {0};
    ft_err err;
    for (int c = 0; c < 256; c++) {
        for (int d = 0; d < 256; d += 51) {
            char s[4] = {'a', (char)c, (char)d, 'b'};
            REQUIRE_OK(ft_tok_encode(t, s, 4, false, &e, &err), &err);
            char *out;
            size_t n;
            REQUIRE_OK(ft_tok_decode(t, e.ids, e.n, false, &out, &n, &err), &err);
            /* expected: valid UTF-8 kept, ill-formed parts as U+FFFD */
            char want[16];
            size_t wn = 0;
            for (size_t i = 0; i < 4;) {
                size_t v = ft_utf8_valid_prefix(s + i, 4 - i);
                memcpy(want + wn, s + i, v);
                wn += v;
                i += v;
                if (i < 4) {
                    memcpy(want + wn, "\xef\xbf\xbd", 3);
                    wn += 3;
                    /* maximal subpart: a valid lead followed by a fitting continuation counts as one */
                    unsigned char b0 = (unsigned char)s[i];
                    size_t k = 1;
                    if (b0 >= 0xC2 && b0 <= 0xF4 && i + 1 < 4) {
                        unsigned char b1 = (unsigned char)s[i + 1];
                        unsigned lo = b0 == 0xE0 ? 0xA0 : b0 == 0xF0 ? 0x90 : 0x80;
                        unsigned hi = b0 == 0xED ? 0x9F : b0 == 0xF4 ? 0x8F : 0xBF;
                        if (b0 >= 0xE0 && b1 >= lo && b1 <= hi)
                            k = 2; /* an incomplete 3/4-byte sequence cut by 'b' */
                    }
                    i += k;
                }
            }
            if (n != wn || memcmp(out, want, n) != 0)
                ft_test_fail_(__FILE__, __LINE__, "bytes %02x %02x: decode(encode(x)) differs", c, d);
            ft_free(out);
        }
    }
    ft_tok_encoding_free(&e);
}

TEST(tok_batch_matches_sequential) {
    ft_tok *t = load("llama3-instruct-rev2");
    REQUIRE(t);
    enum { N = 200 };
    char *texts[N];
    size_t lens[N];
    for (int i = 0; i < N; i++) {
        texts[i] = i % 50 == 7 ? ft_strdup("") /* empty texts too */
                               : ft_asprintf("Text %d: the quick brown fox %d jumps \xe4\xb8\xad\xe6\x96\x87 %s", i,
                                             i * 7919, i % 3 ? "<|eot_id|>" : "   \n");
        lens[i] = strlen(texts[i]);
    }
    ft_tok_batch b;
    ft_err err;
    REQUIRE_OK(ft_tok_encode_batch(t, (const char *const *)texts, lens, N, false, 4, &b, &err), &err);
    CHECK_EQ_INT(b.n_texts, N);
    ft_tok_encoding e = {0};
    for (int i = 0; i < N; i++) {
        CHECK_OK(ft_tok_encode(t, texts[i], lens[i], false, &e, &err), &err);
        CHECK_EQ_INT(b.row_start[i + 1] - b.row_start[i], e.n);
        if (b.row_start[i + 1] - b.row_start[i] == e.n)
            CHECK(memcmp(b.ids + b.row_start[i], e.ids, e.n * sizeof(int32_t)) == 0);
    }
    ft_tok_encoding_free(&e);
    ft_tok_batch_free(&b);
    for (int i = 0; i < N; i++)
        ft_free(texts[i]);
}

static void expect_error(const char *json, ft_status code, const char *needle1, const char *needle2) {
    ft_tok *t = NULL;
    ft_err err;
    ft_err_clear(&err);
    ft_status s = ft_tok_load_buf("test.json", json, strlen(json), NULL, 0, &t, &err);
    CHECK_EQ_INT(s, code);
    CHECK(t == NULL);
    if (needle1 && !strstr(err.msg, needle1))
        ft_test_fail_(__FILE__, __LINE__, "error \"%s\" lacks \"%s\"", err.msg, needle1);
    if (needle2 && !strstr(err.msg, needle2))
        ft_test_fail_(__FILE__, __LINE__, "error \"%s\" lacks \"%s\"", err.msg, needle2);
    ft_tok_free(t);
}

TEST(tok_unknown_components_are_named) {
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Sequence\","
                 "\"pretokenizers\":[{\"type\":\"Digits\"},{\"type\":\"UnicodeScripts\"}]}}",
                 FT_ERR_UNSUPPORTED, "pre_tokenizer.pretokenizers[1]", "UnicodeScripts");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"normalizer\":{\"type\":\"Sequence\","
                 "\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"BertNormalizer\"}]}}",
                 FT_ERR_UNSUPPORTED, "normalizer.normalizers[1]", "BertNormalizer");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"decoder\":{\"type\":\"WordPiece\"}}",
                 FT_ERR_UNSUPPORTED, "decoder", "WordPiece");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"post_processor\":{\"type\":\"Sequence\","
                 "\"processors\":[{\"type\":\"Weird\"}]}}",
                 FT_ERR_UNSUPPORTED, "post_processor.processors[0]", "Weird");
    expect_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", FT_ERR_UNSUPPORTED, "model", "Unigram");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}", FT_ERR_INVALID, "merges[0]",
                 "\"b\"");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\","
                 "\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\",\"invert\":false}}",
                 FT_ERR_INVALID, "pre_tokenizer.pattern", "regex");
    expect_error("{\"model\":", FT_ERR_PARSE, NULL, NULL);
    expect_error("[]", FT_ERR_INVALID, NULL, NULL);
}

TEST(tok_cli_tokenize) {
    char cmd[1024], *out = NULL;
    const char *bin = ft_test_ftune_bin();
    char model[512];
    snprintf(model, sizeof model, "%s", ft_test_fixture("tok/llama3-instruct-rev2"));
    snprintf(cmd, sizeof cmd, "%s tokenize --model %s 'Hello world!'", bin, model);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    CHECK_STR_EQ(out, "128000 9906 1917 0\n");
    free(out);
    /* the small Mistral tokenizer for the rest (faster to load) */
    snprintf(model, sizeof model, "%s", ft_test_fixture("tok/mistral-7b-v0.1"));
    snprintf(cmd, sizeof cmd, "%s tokenize --model %s --no-special-tokens --json 'Hello world!'", bin, model);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    CHECK_STR_EQ(out, "{\"ids\":[22557,1526,28808],\"count\":3}\n");
    free(out);
    snprintf(cmd, sizeof cmd,
             "printf '{\"text\": \"Hello world!\"}\\n{\"text\": \"</s>\"}\\n' | %s tokenize --model %s --jsonl", bin,
             model);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    CHECK_STR_EQ(out, "{\"ids\":[1,22557,1526,28808]}\n{\"ids\":[1,2]}\n");
    free(out);
    /* a hub id resolved through the Hugging Face cache */
    const char *tmp = ft_test_tmpdir();
    snprintf(cmd, sizeof cmd,
             "d=%s/models--acme--tiny && mkdir -p $d/refs $d/snapshots/c0ffee && printf c0ffee > $d/refs/main && "
             "echo '{}' > $d/snapshots/c0ffee/config.json && cp %s/* $d/snapshots/c0ffee/ && "
             "HF_HUB_CACHE=%s %s tokenize --model acme/tiny 'Hello world!'",
             tmp, model, tmp, bin);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    CHECK_STR_EQ(out, "1 22557 1526 28808\n");
    free(out);
    snprintf(cmd, sizeof cmd, "HF_HUB_CACHE=%s %s tokenize --model acme/absent 'x' 2>/dev/null", tmp, bin);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize 'x' 2>/dev/null", bin);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize --model /nonexistent/dir 'x' 2>/dev/null", bin);
    CHECK(ft_test_run(cmd, &out) != 0);
    free(out);
}
