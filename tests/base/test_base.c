/* tests/base: errors, buffers, arenas, UTF-8, files, RNG. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ftune/ftune.h" /* the umbrella header compiles on its own */
#include "test.h"

TEST(base_err_format_with_location) {
    ft_err e;
    FT_ERR_AT(&e, FT_ERR_PARSE, "data.jsonl", 3, 14, "bad %s", "value");
    char buf[256];
    ft_err_format(&e, buf, sizeof buf);
    CHECK_STR_EQ(buf, "data.jsonl:3:14: bad value");
    ft_err_prefix(&e, "loading");
    ft_err_format(&e, buf, sizeof buf);
    CHECK_STR_EQ(buf, "data.jsonl:3:14: loading: bad value");
    CHECK_EQ_INT(e.code, FT_ERR_PARSE);
    CHECK(FT_ERR(NULL, FT_ERR_IO, "x") == FT_ERR_IO);
}

TEST(base_buf_grows) {
    ft_buf b = {0};
    for (int i = 0; i < 1000; i++)
        CHECK(ft_buf_appendf(&b, "%d,", i) == FT_OK);
    CHECK(strncmp(ft_buf_cstr(&b), "0,1,2,", 6) == 0);
    CHECK(b.len == strlen(b.data));
    ft_buf_free(&b);
}

TEST(base_alloc_fault_injection) {
    ft_alloc_fail_after(1);
    void *a = ft_malloc(8), *b = ft_malloc(8), *c = ft_malloc(8);
    CHECK(a != NULL);
    CHECK(b == NULL);
    CHECK(c != NULL);
    ft_free(a);
    ft_free(c);
}

TEST(base_arena_alignment_and_full) {
    ft_arena a;
    ft_err e;
    REQUIRE_OK(ft_arena_init(&a, "test", 1 << 16, &e), &e);
    float *x = ft_arena_alloc(&a, 100, &e);
    float *y = ft_arena_alloc(&a, 100, &e);
    CHECK(x && y);
    CHECK(((uintptr_t)y & 63) == 0);
    CHECK(x[0] == 0.0f);
    CHECK(ft_arena_alloc(&a, 1 << 20, &e) == NULL);
    CHECK(e.code == FT_ERR_NOMEM);
    CHECK(strstr(e.msg, "test") != NULL);
    ft_arena_reset(&a);
    CHECK(a.used == 0 && a.peak >= 164);
    ft_arena_deinit(&a);
    CHECK(ft_peak_rss_mb() > 0);
}

TEST(base_utf8) {
    CHECK_EQ_INT(ft_utf8_valid_prefix("h\xc3\xa9llo", 6), 6);
    CHECK_EQ_INT(ft_utf8_valid_prefix("ab\xc3", 3), 2);         /* truncated */
    CHECK_EQ_INT(ft_utf8_valid_prefix("a\xed\xa0\x80", 4), 1);  /* surrogate */
    CHECK_EQ_INT(ft_utf8_valid_prefix("\xc0\xaf", 2), 0);       /* overlong */
    CHECK_EQ_INT(ft_utf8_valid_prefix("\xf4\x90\x80\x80", 4), 0); /* > U+10FFFF */
    char out[4];
    uint32_t cp;
    uint32_t samples[] = {0x41, 0xE9, 0x20AC, 0x1F600, 0x10FFFF};
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        int n = ft_utf8_encode(samples[i], out);
        CHECK(ft_utf8_decode(out, (size_t)n, &cp) == n);
        CHECK_EQ_INT(cp, samples[i]);
    }
}

TEST(base_sv) {
    ft_sv s = ft_sv_cstr("  hello world \n");
    ft_sv t = ft_sv_trim(s);
    CHECK(ft_sv_eq_cstr(t, "hello world"));
    CHECK(ft_sv_starts_with(t, ft_sv_cstr("hell")));
    CHECK(ft_sv_ends_with(t, ft_sv_cstr("world")));
    CHECK_EQ_INT(ft_sv_find_char(t, 'w'), 6);
    CHECK_EQ_INT(ft_sv_find_char(t, 'z'), -1);
}

TEST(base_files_atomic_and_rm) {
    ft_err e;
    char *dir = ft_path_join(ft_test_tmpdir(), "a/b/c");
    REQUIRE_OK(ft_mkdir_p(dir, &e), &e);
    char *f = ft_path_join(dir, "x.txt");
    REQUIRE_OK(ft_file_write_atomic(f, "hello", 5, &e), &e);
    char *data;
    size_t n;
    REQUIRE_OK(ft_file_read_all(f, &data, &n, &e), &e);
    CHECK_EQ_INT(n, 5);
    CHECK_STR_EQ(data, "hello");
    ft_free(data);
    CHECK(ft_file_read_all("/nonexistent/zzz", &data, &n, &e) == FT_ERR_NOT_FOUND);
    CHECK_STR_EQ(e.file, "/nonexistent/zzz");
    char *top = ft_path_join(ft_test_tmpdir(), "a");
    REQUIRE_OK(ft_rm_rf(top, &e), &e);
    CHECK(!ft_path_exists(top));
    ft_free(top);
    ft_free(f);
    ft_free(dir);
}

TEST(base_volumes_mapping) {
    setenv("FTUNE_HOME", "/h", 1);
    char *a = ft_path_map_volumes("dbfs:/Volumes/c/s/v/x.jsonl");
    char *b = ft_path_map_volumes("/Volumes/c/s/v/x.jsonl");
    char *c = ft_path_map_volumes("/data/x.jsonl");
    CHECK_STR_EQ(a, "/h/volumes/c/s/v/x.jsonl");
    CHECK_STR_EQ(b, "/h/volumes/c/s/v/x.jsonl");
    CHECK_STR_EQ(c, "/data/x.jsonl");
    ft_free(a);
    ft_free(b);
    ft_free(c);
    unsetenv("FTUNE_HOME");
}

TEST(base_rng_deterministic_and_uniform) {
    ft_rng r1, r2;
    ft_rng_seed(&r1, 42);
    ft_rng_seed(&r2, 42);
    for (int i = 0; i < 100; i++)
        CHECK(ft_rng_next(&r1) == ft_rng_next(&r2));
    double sum = 0, sq = 0;
    int n = 20000;
    for (int i = 0; i < n; i++) {
        double z = ft_rng_normal(&r1);
        sum += z;
        sq += z * z;
    }
    CHECK_NEAR(sum / n, 0.0, 0.05);
    CHECK_NEAR(sq / n, 1.0, 0.05);
    for (int i = 0; i < 1000; i++)
        CHECK(ft_rng_below(&r1, 7) < 7);
}

TEST(base_json_errors_have_position) {
    json_t *j;
    ft_err e;
    const char *bad = "{\n  \"a\": 1,\n  \"b\": ]\n}";
    CHECK(ft_json_load_buf("cfg.json", bad, strlen(bad), &j, &e) == FT_ERR_PARSE);
    CHECK_STR_EQ(e.file, "cfg.json");
    CHECK_EQ_INT(e.line, 3);
    const char *ok = "{\"n\": 4096.0, \"s\": \"x\", \"b\": true}";
    REQUIRE_OK(ft_json_load_buf("cfg.json", ok, strlen(ok), &j, &e), &e);
    int64_t n = 0;
    CHECK_OK(ft_json_get_int(j, "n", true, &n, "config.json", &e), &e);
    CHECK_EQ_INT(n, 4096);
    const char *s = NULL;
    CHECK(ft_json_get_int(j, "s", true, &n, "config.json", &e) == FT_ERR_INVALID);
    CHECK(strstr(e.msg, "\"s\"") != NULL);
    CHECK(ft_json_get_str(j, "missing", true, &s, "config.json", &e) == FT_ERR_INVALID);
    json_decref(j);
    /* An integer beyond 64 bits (tokenizer_config.json's model_max_length) still loads. */
    const char *big = "{\"model_max_length\": 1000000000000000019884624838656, \"bos\": 1}";
    REQUIRE_OK(ft_json_load_buf("tokenizer_config.json", big, strlen(big), &j, &e), &e);
    CHECK_OK(ft_json_get_int(j, "bos", true, &n, "tokenizer_config.json", &e), &e);
    CHECK_EQ_INT(n, 1);
    json_decref(j);
}

TEST(base_duration_format) {
    char b[32];
    ft_format_duration(192, b, sizeof b);
    CHECK_STR_EQ(b, "3m12s");
    ft_format_duration(45, b, sizeof b);
    CHECK_STR_EQ(b, "45s");
    ft_format_duration(3840, b, sizeof b);
    CHECK_STR_EQ(b, "1h04m");
}

/* Size arithmetic that would wrap is refused (issue #9 item 13): a request near SIZE_MAX used to
 * wrap len + extra + 1 to a small number and "fit" in the buffer, and the append then wrote past
 * it. */
TEST(base_buf_reserve_refuses_wrapping_sizes) {
    ft_buf b = {0};
    REQUIRE(ft_buf_append(&b, "0123456789", 10) == FT_OK);
    CHECK(ft_buf_reserve(&b, SIZE_MAX - 5) != FT_OK);
    CHECK(ft_buf_reserve(&b, SIZE_MAX - 10) != FT_OK);
    CHECK(ft_buf_reserve(&b, SIZE_MAX) != FT_OK);
    CHECK_EQ_INT(b.len, 10);
    CHECK_STR_EQ(ft_buf_cstr(&b), "0123456789");
    /* still usable */
    CHECK(ft_buf_append(&b, "ab", 2) == FT_OK);
    CHECK_STR_EQ(ft_buf_cstr(&b), "0123456789ab");
    ft_buf_free(&b);
    CHECK(ft_strndup("x", SIZE_MAX) == NULL);
    ft_arena a;
    ft_err err;
    CHECK(ft_arena_init(&a, "huge", SIZE_MAX - 100, &err) != FT_OK);
}
