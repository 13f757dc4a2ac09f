/* tests/io/test_safetensors.c: the safetensors reader and writer: fp16/bf16 conversions against
 * independent references, writer -> reader round trips (single and sharded), and every class of
 * malformed file, each asserting the status code and that the message names the file and the
 * tensor. */
#include <stdlib.h>
#include <string.h>

#include "ftune/safetensors.h"
#include "test.h"

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* An independent bf16 rounding: choose between the two neighbours by comparing distances in
 * double precision, ties to the even mantissa. */
static uint16_t ref_bf16(float f) {
    uint32_t x = bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return 0xffff; /* NaN: checked separately */
    uint16_t lo = (uint16_t)(x >> 16), hi = (uint16_t)(lo + 1);
    double d = f, dl = from_bits((uint32_t)lo << 16), dh;
    if ((hi & 0x7f80) == 0x7f80 && (hi & 0x7f) == 0) /* hi is infinity: its "value" for rounding is 2^128 */
        dh = (f < 0 ? -1 : 1) * 0x1p128;
    else
        dh = from_bits((uint32_t)hi << 16);
    double el = fabs(d - dl), eh = fabs(dh - d);
    if (el < eh)
        return lo;
    if (eh < el)
        return hi;
    return (lo & 1) ? hi : lo;
}

TEST(io_bf16_rounding) {
    /* Hand-picked ties and near-ties. 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125. */
    CHECK_EQ_INT(ft_st_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(ft_st_f32_to_bf16(from_bits(0x3f808000)), 0x3f80); /* tie, even down */
    CHECK_EQ_INT(ft_st_f32_to_bf16(from_bits(0x3f818000)), 0x3f82); /* tie, even up */
    CHECK_EQ_INT(ft_st_f32_to_bf16(from_bits(0x3f808001)), 0x3f81);
    CHECK_EQ_INT(ft_st_f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80); /* max float rounds to inf */
    CHECK_EQ_INT(ft_st_f32_to_bf16(-0.0f), 0x8000);
    uint16_t nan = ft_st_f32_to_bf16(NAN);
    CHECK((nan & 0x7f80) == 0x7f80 && (nan & 0x7f) != 0);
    /* Every bf16 survives bf16 -> f32 -> bf16. */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ft_st_bf16_to_f32((uint16_t)h);
        if (isnan(f))
            continue;
        if (ft_st_f32_to_bf16(f) != h) {
            CHECK_EQ_INT(ft_st_f32_to_bf16(f), h);
            break;
        }
    }
    /* Random floats against the reference rounding. */
    ft_rng r;
    ft_rng_seed(&r, 7);
    for (int i = 0; i < 200000; i++) {
        float f = from_bits((uint32_t)ft_rng_next(&r));
        if (isnan(f))
            continue;
        if (ft_st_f32_to_bf16(f) != ref_bf16(f)) {
            CHECK_EQ_INT(ft_st_f32_to_bf16(f), ref_bf16(f));
            break;
        }
    }
}

TEST(io_f16_rounding) {
    CHECK_EQ_INT(ft_st_f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ_INT(ft_st_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);        /* tie, even down */
    CHECK_EQ_INT(ft_st_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);    /* tie, even up */
    CHECK_EQ_INT(ft_st_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ_INT(ft_st_f32_to_f16(65519.0f), 0x7bff);
    CHECK_EQ_INT(ft_st_f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ_INT(ft_st_f32_to_f16(INFINITY), 0x7c00);
    CHECK_EQ_INT(ft_st_f32_to_f16(-INFINITY), 0xfc00);
    CHECK_EQ_INT(ft_st_f32_to_f16(0x1p-14f), 0x0400);               /* smallest normal */
    CHECK_EQ_INT(ft_st_f32_to_f16(0x1p-24f), 0x0001);               /* smallest subnormal */
    CHECK_EQ_INT(ft_st_f32_to_f16(0x1p-25f), 0x0000);               /* tie, even down to 0 */
    CHECK_EQ_INT(ft_st_f32_to_f16(0x1.8p-25f), 0x0001);
    CHECK_EQ_INT(ft_st_f32_to_f16(0x1.8p-24f), 0x0002);             /* 1.5 units: tie, even up */
    CHECK_EQ_INT(ft_st_f32_to_f16(0x1p-30f), 0x0000);
    CHECK_EQ_INT(ft_st_f32_to_f16(-2.0f), 0xc000);
    uint16_t nan = ft_st_f32_to_f16(NAN);
    CHECK((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff) != 0);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ft_st_f16_to_f32((uint16_t)h);
        if (isnan(f))
            continue;
        if (ft_st_f32_to_f16(f) != h) {
            CHECK_EQ_INT(ft_st_f32_to_f16(f), h);
            break;
        }
    }
#ifdef __FLT16_MAX__
    /* The compiler's _Float16 conversion (IEEE round to nearest even) as the reference, both ways. */
    ft_rng r;
    ft_rng_seed(&r, 11);
    for (int i = 0; i < 200000; i++) {
        /* Bias toward the half range: exponents around [-30, 17]. */
        float f = from_bits(((uint32_t)ft_rng_next(&r) & 0x807fffffu) | ((uint32_t)(97 + ft_rng_below(&r, 48)) << 23));
        _Float16 h = (_Float16)f;
        uint16_t want;
        memcpy(&want, &h, 2);
        if (ft_st_f32_to_f16(f) != want) {
            CHECK_EQ_INT(ft_st_f32_to_f16(f), want);
            break;
        }
    }
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t u = (uint16_t)h;
        _Float16 v;
        memcpy(&v, &u, 2);
        float want = (float)v, got = ft_st_f16_to_f32(u);
        if (!(isnan(want) && isnan(got)) && bits(want) != bits(got)) {
            CHECK_EQ_INT(bits(got), bits(want));
            break;
        }
    }
#endif
}

/* ---------------------------------------------------------------- round trips */

static char *tmp_path(const char *name) { return ft_path_join(ft_test_tmpdir(), name); }

TEST(io_roundtrip_dtypes) {
    ft_err err;
    float a[6] = {1.0f, -2.5f, 3.14159f, 1e-3f, 65504.0f, from_bits(0x3f808000)};
    float b[3] = {0.5f, 0.25f, -0.125f};
    int64_t sa[2] = {2, 3}, sb[1] = {3};
    const ft_st_dtype dts[3] = {FT_ST_DTYPE_F32, FT_ST_DTYPE_BF16, FT_ST_DTYPE_F16};
    for (int k = 0; k < 3; k++) {
        char *p = tmp_path("rt.safetensors");
        ft_st_writer *w;
        REQUIRE_OK(ft_st_writer_new(p, NULL, &w, &err), &err);
        CHECK_OK(ft_st_writer_metadata(w, "step", "42", &err), &err);
        CHECK_OK(ft_st_writer_add(w, "model.a.weight", dts[k], 2, sa, &err), &err);
        CHECK_OK(ft_st_writer_add(w, "b", dts[k], 1, sb, &err), &err);
        CHECK_OK(ft_st_writer_add(w, "empty", FT_ST_DTYPE_F32, 2, (int64_t[]){0, 4}, &err), &err);
        /* The first tensor in two pieces: streaming. */
        CHECK_OK(ft_st_writer_write_f32(w, "model.a.weight", a, 4, &err), &err);
        CHECK_OK(ft_st_writer_write_f32(w, "model.a.weight", a + 4, 2, &err), &err);
        /* A wrong name is refused (order is part of the contract). */
        CHECK(ft_st_writer_write_f32(w, "empty", b, 3, &err) != FT_OK);
        CHECK_OK(ft_st_writer_write_f32(w, "b", b, 3, &err), &err);
        CHECK_OK(ft_st_writer_write_f32(w, "empty", NULL, 0, &err), &err);
        REQUIRE_OK(ft_st_writer_finish(w, &err), &err);
        ft_st_writer_free(w);

        /* Layout: header length is a multiple of 8, header padded with spaces. */
        char *raw;
        size_t len;
        REQUIRE_OK(ft_file_read_all(p, &raw, &len, &err), &err);
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--)
            hl = (hl << 8) | (uint8_t)raw[i];
        CHECK_EQ_INT(hl % 8, 0);
        size_t es = ft_st_dtype_size(dts[k]);
        CHECK_EQ_INT(len, 8 + hl + 9 * es);
        CHECK(strstr(raw + 8, "\"__metadata__\":{\"format\":\"pt\",\"step\":\"42\"}") != NULL);
        ft_free(raw);

        ft_st_reader *r;
        REQUIRE_OK(ft_st_open(p, &r, &err), &err);
        CHECK_EQ_INT(ft_st_count(r), 3);
        CHECK_STR_EQ(ft_st_metadata(r, "format"), "pt");
        CHECK_STR_EQ(ft_st_metadata(r, "step"), "42");
        const ft_st_tensor *t;
        REQUIRE_OK(ft_st_get(r, "model.a.weight", 2, sa, &t, &err), &err);
        CHECK_EQ_INT(t->dtype, dts[k]);
        CHECK_STR_EQ(t->file, p);
        float out[6];
        REQUIRE_OK(ft_st_read_f32(t, out, 6, &err), &err);
        for (int i = 0; i < 6; i++) {
            float want = dts[k] == FT_ST_DTYPE_F32    ? a[i]
                         : dts[k] == FT_ST_DTYPE_BF16 ? ft_st_bf16_to_f32(ft_st_f32_to_bf16(a[i]))
                                                      : ft_st_f16_to_f32(ft_st_f32_to_f16(a[i]));
            CHECK_EQ_INT(bits(out[i]), bits(want));
        }
        if (dts[k] == FT_ST_DTYPE_BF16) /* the tie rounds to even: exactly 1.0 */
            CHECK_EQ_INT(bits(out[5]), bits(1.0f));
        REQUIRE_OK(ft_st_get(r, "b", 1, sb, &t, &err), &err);
        REQUIRE_OK(ft_st_read_f32(t, out, 3, &err), &err);
        for (int i = 0; i < 3; i++) /* exactly representable in all three */
            CHECK_EQ_INT(bits(out[i]), bits(b[i]));
        REQUIRE_OK(ft_st_get(r, "empty", 2, (int64_t[]){0, 4}, &t, &err), &err);
        CHECK_EQ_INT(t->numel, 0);
        /* Shape and element-count mismatches name file and tensor. */
        CHECK_EQ_INT(ft_st_get(r, "b", 1, (int64_t[]){4}, &t, &err), FT_ERR_INVALID);
        CHECK(strstr(err.msg, "\"b\"") && !strcmp(err.file, p));
        CHECK_EQ_INT(ft_st_get(r, "nope", 1, sb, &t, &err), FT_ERR_NOT_FOUND);
        CHECK(strstr(err.msg, "nope") != NULL);
        t = ft_st_find(r, "b");
        CHECK_EQ_INT(ft_st_read_f32(t, out, 2, &err), FT_ERR_INVALID);
        ft_st_close(r);
        ft_free(p);
    }
}

TEST(io_writer_errors) {
    ft_err err;
    char *p = tmp_path("w.safetensors");
    ft_st_writer *w;
    REQUIRE_OK(ft_st_writer_new(p, NULL, &w, &err), &err);
    int64_t s[1] = {4};
    CHECK_OK(ft_st_writer_add(w, "x", FT_ST_DTYPE_F32, 1, s, &err), &err);
    CHECK_EQ_INT(ft_st_writer_add(w, "x", FT_ST_DTYPE_F32, 1, s, &err), FT_ERR_INVALID);
    CHECK_EQ_INT(ft_st_writer_add(w, "__metadata__", FT_ST_DTYPE_F32, 1, s, &err), FT_ERR_INVALID);
    float v[4] = {1, 2, 3, 4};
    CHECK_OK(ft_st_writer_write_f32(w, "x", v, 2, &err), &err);
    /* Finishing with a tensor half written fails and leaves no file under the final name. */
    CHECK(ft_st_writer_finish(w, &err) != FT_OK);
    CHECK(strstr(err.msg, "\"x\"") != NULL);
    ft_st_writer_free(w);
    CHECK(!ft_path_exists(p));
    /* Nor does a writer dropped mid-way leave its temporary file. */
    char *cmd = ft_asprintf("ls %s | wc -l", ft_test_tmpdir());
    char *out;
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    CHECK_EQ_INT(atoi(out), 0);
    ft_free(out);
    ft_free(cmd);
    ft_free(p);
}

TEST(io_roundtrip_sharded) {
    ft_err err;
    char *p = tmp_path("model.safetensors");
    /* A stale single file must not survive a sharded save (transformers would prefer it). */
    REQUIRE_OK(ft_file_write_atomic(p, "stale", 5, &err), &err);
    ft_st_write_params wp = ft_st_write_default_params();
    wp.max_shard_bytes = 100; /* bytes */
    wp.durable = false;
    ft_st_writer *w;
    REQUIRE_OK(ft_st_writer_new(p, &wp, &w, &err), &err);
    /* 10 tensors of 16 floats (64 bytes): greedy packing -> one per shard, except that
     * 20-byte ones fit in pairs after them. */
    char names[12][32];
    int64_t sizes[12];
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof names[i], "t.%d", i);
        sizes[i] = i % 2 ? 5 : 16;
        CHECK_OK(ft_st_writer_add(w, names[i], FT_ST_DTYPE_F32, 1, &sizes[i], &err), &err);
    }
    size_t ns = ft_st_writer_n_shards(w);
    CHECK_EQ_INT(ns, 6); /* 64+20 per shard */
    for (int i = 0; i < 12; i++) {
        float v[16];
        for (int j = 0; j < 16; j++)
            v[j] = (float)(100 * i + j);
        CHECK_OK(ft_st_writer_write_f32(w, names[i], v, sizes[i], &err), &err);
    }
    REQUIRE_OK(ft_st_writer_finish(w, &err), &err);
    ft_st_writer_free(w);
    CHECK(!ft_path_exists(p));
    char *s3 = tmp_path("model-00003-of-00006.safetensors");
    CHECK(ft_path_exists(s3));
    char *idx = tmp_path("model.safetensors.index.json");
    char *text;
    REQUIRE_OK(ft_file_read_all(idx, &text, NULL, &err), &err);
    CHECK(strstr(text, "\"total_size\": 504") != NULL); /* 6 * (64 + 20) */
    CHECK(strstr(text, "\"t.4\": \"model-00003-of-00006.safetensors\"") != NULL);
    ft_free(text);

    /* Open through the folder, the index, and a single shard. */
    ft_st_reader *r;
    REQUIRE_OK(ft_st_open(ft_test_tmpdir(), &r, &err), &err);
    CHECK_EQ_INT(ft_st_count(r), 12);
    for (int i = 0; i < 12; i++) {
        const ft_st_tensor *t;
        REQUIRE_OK(ft_st_get(r, names[i], 1, &sizes[i], &t, &err), &err);
        float v[16];
        REQUIRE_OK(ft_st_read_f32(t, v, sizes[i], &err), &err);
        for (int j = 0; j < sizes[i]; j++)
            CHECK_EQ_INT((int)v[j], 100 * i + j);
    }
    CHECK(strstr(ft_st_find(r, "t.4")->file, "model-00003-of-00006") != NULL);
    ft_st_close(r);
    REQUIRE_OK(ft_st_open(idx, &r, &err), &err);
    CHECK_EQ_INT(ft_st_count(r), 12);
    ft_st_close(r);
    REQUIRE_OK(ft_st_open(s3, &r, &err), &err);
    CHECK_EQ_INT(ft_st_count(r), 2);
    ft_st_close(r);

    /* Saving again unsharded removes the stale index. */
    float one = 1;
    REQUIRE_OK(ft_st_save_f32(p, 1, (const char *[]){"x"}, (int[]){1}, (const int64_t *[]){(int64_t[]){1}},
                              (const float *[]){&one}, FT_ST_DTYPE_F32, &err),
               &err);
    CHECK(!ft_path_exists(idx));
    REQUIRE_OK(ft_st_open(ft_test_tmpdir(), &r, &err), &err);
    CHECK_EQ_INT(ft_st_count(r), 1);
    ft_st_close(r);
    ft_free(s3);
    ft_free(idx);
    ft_free(p);
}

/* ---------------------------------------------------------------- malformed files */

/* A file from a header text, a declared header length (-1: the real one) and `data_len` data bytes. */
static char *make_file(const char *name, const char *header, int64_t declared, size_t data_len) {
    size_t hl = strlen(header);
    size_t len = 8 + hl + data_len;
    uint8_t *buf = calloc(1, len);
    uint64_t h = declared < 0 ? hl : (uint64_t)declared;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(h >> (8 * i));
    memcpy(buf + 8, header, hl);
    char *p = tmp_path(name);
    ft_err err;
    ft_file_write_atomic(p, buf, len, &err);
    free(buf);
    return p;
}

typedef struct bad_case {
    const char *what;
    const char *header;
    int64_t declared;
    size_t data_len;
    ft_status code;
    const char *tensor; /* the message must name it (NULL: no tensor involved) */
} bad_case;

TEST(io_malformed_files) {
    const bad_case cases[] = {
        {"header length past EOF", "{}", 1000, 0, FT_ERR_RANGE, NULL},
        {"not JSON", "{\"a\": [1, 2", -1, 0, FT_ERR_PARSE, NULL},
        {"not an object", "[1, 2, 3]   ", -1, 0, FT_ERR_PARSE, NULL},
        {"entry not an object", "{\"w\": 3}", -1, 0, FT_ERR_PARSE, "w"},
        {"missing dtype", "{\"w\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", -1, 8, FT_ERR_PARSE, "w"},
        {"missing shape", "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", -1, 8, FT_ERR_PARSE, "w"},
        {"missing offsets", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2]}}", -1, 8, FT_ERR_PARSE, "w"},
        {"unknown dtype", "{\"w\": {\"dtype\": \"F12\", \"shape\": [2], \"data_offsets\": [0, 8]}}", -1, 8,
         FT_ERR_UNSUPPORTED, "w"},
        {"negative dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", -1, 8,
         FT_ERR_PARSE, "w"},
        {"size mismatch", "{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", -1, 8,
         FT_ERR_INVALID, "w"},
        {"dtype mismatch (BF16 size with F32 dtype)",
         "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 8]}}", -1, 8, FT_ERR_INVALID, "w"},
        {"offsets reversed", "{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 0]}}", -1, 8,
         FT_ERR_INVALID, "w"},
        {"offsets out of bounds", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", -1, 8,
         FT_ERR_RANGE, "w"},
        {"truncated data", "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", -1, 10,
         FT_ERR_RANGE, "w"},
        {"overlap",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
         -1, 12, FT_ERR_INVALID, "b"},
        {"gap",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
         -1, 12, FT_ERR_INVALID, "b"},
        {"trailing bytes", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", -1, 12,
         FT_ERR_INVALID, NULL},
        {"duplicate name",
         "{\"dup\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
         " \"dup\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
         -1, 8, FT_ERR_PARSE, "dup"},
        {"metadata not strings", "{\"__metadata__\": {\"k\": 1}}", -1, 0, FT_ERR_PARSE, NULL},
        {"too many dims",
         "{\"w\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 1]}}", -1, 1,
         FT_ERR_UNSUPPORTED, "w"},
        {"shape overflow",
         "{\"w\": {\"dtype\": \"F64\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 0]}}", -1, 0,
         FT_ERR_INVALID, "w"},
        {"offsets not integers", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, \"4\"]}}", -1,
         4, FT_ERR_PARSE, "w"},
        {"invalid UTF-8 in header", "{\"w\xff\": {}}", -1, 0, FT_ERR_PARSE, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bad_case *c = &cases[i];
        char *p = make_file("bad.safetensors", c->header, c->declared, c->data_len);
        ft_st_reader *r = NULL;
        ft_err err;
        ft_err_clear(&err);
        ft_status s = ft_st_open(p, &r, &err);
        char msg[1600];
        ft_err_format(&err, msg, sizeof msg);
        if (s != c->code)
            ft_test_fail_(__FILE__, __LINE__, "%s: got %s (%s), expected %s", c->what, ft_status_str(s), msg,
                          ft_status_str(c->code));
        CHECK(r == NULL);
        if (!strstr(msg, p))
            ft_test_fail_(__FILE__, __LINE__, "%s: message does not name the file: %s", c->what, msg);
        if (c->tensor) {
            char q[64];
            snprintf(q, sizeof q, "\"%s\"", c->tensor);
            if (!strstr(msg, q))
                ft_test_fail_(__FILE__, __LINE__, "%s: message does not name tensor %s: %s", c->what, q, msg);
        }
        ft_free(p);
    }
    /* Files shorter than the length field, and empty ones. */
    ft_err err;
    ft_st_reader *r = NULL;
    char *p = tmp_path("short.safetensors");
    REQUIRE_OK(ft_file_write_atomic(p, "abc", 3, &err), &err);
    CHECK_EQ_INT(ft_st_open(p, &r, &err), FT_ERR_PARSE);
    CHECK_STR_EQ(err.file, p);
    REQUIRE_OK(ft_file_write_atomic(p, "", 0, &err), &err);
    CHECK_EQ_INT(ft_st_open(p, &r, &err), FT_ERR_PARSE);
    ft_free(p);
    CHECK_EQ_INT(ft_st_open("/nonexistent/x.safetensors", &r, &err), FT_ERR_NOT_FOUND);
    /* A folder without weights says so; one with .bin weights says why it is refused. */
    CHECK_EQ_INT(ft_st_open(ft_test_tmpdir(), &r, &err), FT_ERR_NOT_FOUND);
    p = tmp_path("pytorch_model.bin");
    REQUIRE_OK(ft_file_write_atomic(p, "x", 1, &err), &err);
    CHECK_EQ_INT(ft_st_open(ft_test_tmpdir(), &r, &err), FT_ERR_UNSUPPORTED);
    ft_free(p);
}

TEST(io_malformed_index) {
    ft_err err;
    ft_st_reader *r = NULL;
    /* One good shard holding "a". */
    char *shard = tmp_path("s1.safetensors");
    float one = 1;
    REQUIRE_OK(ft_st_save_f32(shard, 1, (const char *[]){"a"}, (int[]){1}, (const int64_t *[]){(int64_t[]){1}},
                              (const float *[]){&one}, FT_ST_DTYPE_F32, &err),
               &err);
    struct {
        const char *json;
        ft_status code;
        const char *needle;
    } cases[] = {
        {"{\"metadata\": {}}", FT_ERR_PARSE, "weight_map"},
        {"{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s1.safetensors\"}}", FT_ERR_NOT_FOUND, "\"b\""},
        {"{\"weight_map\": {\"a\": \"missing.safetensors\"}}", FT_ERR_NOT_FOUND, "missing.safetensors"},
        {"{\"weight_map\": {\"a\": \"../s1.safetensors\"}}", FT_ERR_INVALID, "\"a\""},
        {"{\"weight_map\": {\"a\": 5}}", FT_ERR_PARSE, "\"a\""},
        {"{\"weight_map\": ", FT_ERR_PARSE, "index"},
    };
    char *idx = tmp_path("model.safetensors.index.json");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        REQUIRE_OK(ft_file_write_atomic(idx, cases[i].json, strlen(cases[i].json), &err), &err);
        ft_status s = ft_st_open(ft_test_tmpdir(), &r, &err);
        char msg[1600];
        ft_err_format(&err, msg, sizeof msg);
        if (s != cases[i].code || !strstr(msg, cases[i].needle))
            ft_test_fail_(__FILE__, __LINE__, "index case %zu: got %s: %s", i, ft_status_str(s), msg);
        CHECK(r == NULL);
    }
    /* The same tensor in two shards. */
    char *shard2 = tmp_path("s2.safetensors");
    REQUIRE_OK(ft_file_copy(shard, shard2, &err), &err);
    const char *two = "{\"weight_map\": {\"a\": \"s1.safetensors\", \"z\": \"s2.safetensors\"}}";
    REQUIRE_OK(ft_file_write_atomic(idx, two, strlen(two), &err), &err);
    CHECK_EQ_INT(ft_st_open(idx, &r, &err), FT_ERR_INVALID);
    CHECK(strstr(err.msg, "\"a\"") != NULL);
    ft_free(shard2);
    ft_free(shard);
    ft_free(idx);
}

TEST(io_open_buffer) {
    ft_err err;
    ft_st_reader *r;
    /* A minimal valid file in memory: one BF16 scalar-shaped [1] tensor. */
    const char hdr[] = "{\"x\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}";
    uint8_t buf[8 + sizeof hdr - 1 + 2];
    uint64_t hl = sizeof hdr - 1;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    buf[8 + hl] = 0xc0; /* bf16 0x3fc0 = 1.5 */
    buf[8 + hl + 1] = 0x3f;
    REQUIRE_OK(ft_st_open_buffer("<mem>", buf, sizeof buf, &r, &err), &err);
    float v;
    REQUIRE_OK(ft_st_read_f32(ft_st_find(r, "x"), &v, 1, &err), &err);
    CHECK_EQ_INT(bits(v), bits(1.5f));
    ft_st_close(r);
    /* U8 tensors open (raw access) but do not convert. */
    const char h2[] = "{\"m\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}";
    uint8_t b2[8 + sizeof h2 - 1 + 2] = {0};
    b2[0] = sizeof h2 - 1;
    memcpy(b2 + 8, h2, sizeof h2 - 1);
    REQUIRE_OK(ft_st_open_buffer("<mem>", b2, sizeof b2, &r, &err), &err);
    float f2[2];
    CHECK_EQ_INT(ft_st_read_f32(ft_st_find(r, "m"), f2, 2, &err), FT_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "\"m\"") != NULL);
    ft_st_close(r);
}

/* PyTorch's own fp32 -> bf16 / fp16 conversions (tests/io/gen_rounding_golden.py; regenerated and
 * compared by `make check-reference`), in a file written by Python, not by ftune. */
TEST(io_rounding_matches_torch) {
    ft_err err;
    ft_st_reader *r;
    REQUIRE_OK(ft_st_open(ft_test_fixture("io/torch_rounding.safetensors"), &r, &err), &err);
    const ft_st_tensor *x = ft_st_find(r, "x"), *xb = ft_st_find(r, "x_bf16"), *xh = ft_st_find(r, "x_f16");
    REQUIRE(x && xb && xh);
    REQUIRE(x->dtype == FT_ST_DTYPE_F32 && xb->dtype == FT_ST_DTYPE_BF16 && xh->dtype == FT_ST_DTYPE_F16);
    REQUIRE(x->numel > 4000 && xb->numel == x->numel && xh->numel == x->numel);
    const uint8_t *px = x->data, *pb = xb->data, *ph = xh->data;
    int bad_b = 0, bad_h = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        uint32_t u = (uint32_t)px[4 * i] | (uint32_t)px[4 * i + 1] << 8 | (uint32_t)px[4 * i + 2] << 16 |
                     (uint32_t)px[4 * i + 3] << 24;
        float f = from_bits(u);
        uint16_t tb = (uint16_t)(pb[2 * i] | pb[2 * i + 1] << 8), th = (uint16_t)(ph[2 * i] | ph[2 * i + 1] << 8);
        if (ft_st_f32_to_bf16(f) != tb && bad_b++ < 5)
            ft_test_fail_(__FILE__, __LINE__, "bf16(%a = 0x%08x): ftune 0x%04x, torch 0x%04x", f, u,
                          ft_st_f32_to_bf16(f), tb);
        if (ft_st_f32_to_f16(f) != th && bad_h++ < 5)
            ft_test_fail_(__FILE__, __LINE__, "f16(%a = 0x%08x): ftune 0x%04x, torch 0x%04x", f, u, ft_st_f32_to_f16(f),
                          th);
        /* And back: widening is exact. */
        float wb = ft_st_bf16_to_f32(tb), wh = ft_st_f16_to_f32(th);
        if (!isnan(f) && (bits(wb) != ((uint32_t)tb << 16) || (isfinite(wh) && (float)wh != wh)))
            ft_test_fail_(__FILE__, __LINE__, "widening of element %lld", (long long)i);
    }
    CHECK_EQ_INT(bad_b, 0);
    CHECK_EQ_INT(bad_h, 0);
    CHECK(strstr(ft_st_metadata(r, "source"), "torch") != NULL);
    ft_st_close(r);
}

/* Allocation failures at every point of open (single file and sharded) and of a sharded write:
 * each run either succeeds or reports FT_ERR_NOMEM, and (under ASan) leaks nothing. */
TEST(io_alloc_failures) {
    ft_err err;
    char *dir = ft_path_join(ft_test_tmpdir(), "m");
    ft_mkdir_p(dir, NULL);
    char *p = ft_path_join(dir, "model.safetensors");
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t s4[1] = {4}, s22[2] = {2, 2};
    int nomem_w = 0, ok_w = 0;
    for (int64_t n = 0; n < 200; n++) {
        ft_st_write_params wp = ft_st_write_default_params();
        wp.max_shard_bytes = 16;
        wp.durable = false;
        ft_st_writer *w = NULL;
        ft_alloc_fail_after(n);
        ft_status s = ft_st_writer_new(p, &wp, &w, &err);
        if (s == FT_OK)
            s = ft_st_writer_metadata(w, "k", "v", &err);
        if (s == FT_OK)
            s = ft_st_writer_add(w, "a", FT_ST_DTYPE_F32, 1, s4, &err);
        if (s == FT_OK)
            s = ft_st_writer_add(w, "b", FT_ST_DTYPE_BF16, 2, s22, &err);
        if (s == FT_OK)
            s = ft_st_writer_write_f32(w, "a", v, 4, &err);
        if (s == FT_OK)
            s = ft_st_writer_write_f32(w, "b", v, 4, &err);
        if (s == FT_OK)
            s = ft_st_writer_finish(w, &err);
        ft_st_writer_free(w);
        ft_alloc_fail_after(-1);
        if (s == FT_OK) {
            ok_w++;
            break; /* past the last allocation */
        }
        if (s != FT_ERR_NOMEM)
            ft_test_fail_(__FILE__, __LINE__, "write, failing allocation %lld: %s: %s", (long long)n, ft_status_str(s),
                          err.msg);
        nomem_w++;
    }
    CHECK(nomem_w > 5 && ok_w == 1);
    int nomem_r = 0, ok_r = 0;
    for (int64_t n = 0; n < 200; n++) {
        ft_st_reader *r = NULL;
        ft_alloc_fail_after(n);
        ft_status s = ft_st_open(dir, &r, &err);
        ft_alloc_fail_after(-1);
        if (s == FT_OK) {
            CHECK_EQ_INT(ft_st_count(r), 2);
            ft_st_close(r);
            ok_r++;
            break;
        }
        if (s != FT_ERR_NOMEM)
            ft_test_fail_(__FILE__, __LINE__, "open, failing allocation %lld: %s: %s", (long long)n, ft_status_str(s),
                          err.msg);
        CHECK(r == NULL);
        nomem_r++;
    }
    CHECK(nomem_r > 5 && ok_r == 1);
    ft_free(p);
    ft_free(dir);
}
