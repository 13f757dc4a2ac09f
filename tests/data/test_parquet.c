/* tests/data/test_parquet.c: the Parquet reader against files written by others.
 * tests/fixtures/parquet/ is made by tools/parquet-fixtures.mjs: DuckDB (every codec x page
 * v1/v2, nested columns with nulls and empty lists, maps, decimals, timestamps), parquet-wasm
 * (parquet-rs: v2 pages with is_compressed=false, DELTA_* encodings, BYTE_STREAM_SPLIT,
 * dictionary fallback, several row groups) and hyparquet-writer (two-member GZIP, BROTLI, DELTA_*);
 * NAME.expected.jsonl holds the rows as DuckDB reads them, in the `data head` mapping. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/parquet.h"
#include "ftune/data.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"
#include "test.h"

/* ---------------------------------------------------------------- helpers */

typedef struct lines {
    char **s;
    size_t n, cap;
} lines;

static bool keep_line(void *ctx, const char *json, size_t len) {
    lines *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->s = realloc(l->s, l->cap * sizeof *l->s);
    }
    l->s[l->n++] = strndup(json, len);
    return true;
}

static void lines_free(lines *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

static void read_lines(const char *path, lines *l) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&buf, &cap, f)) > 0) {
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            n--;
        keep_line(l, buf, (size_t)n);
    }
    free(buf);
    fclose(f);
}

/* Same JSON value: objects with the same keys in the same order, numbers equal (a float32 or
 * a number printed differently compares within 1e-6 relative). */
static bool same_json(const json_t *a, const json_t *b) {
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        double x = json_number_value(a), y = json_number_value(b);
        return x == y || fabs(x - y) <= 1e-6 * fmax(fabs(x), fabs(y));
    }
    if (json_typeof(a) != json_typeof(b))
        return false;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same_json(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *k;
        json_t *v;
        void *ib = json_object_iter((json_t *)b);
        json_object_foreach((json_t *)a, k, v) {
            if (!ib || strcmp(k, json_object_iter_key(ib)) || !same_json(v, json_object_iter_value(ib)))
                return false;
            ib = json_object_iter_next((json_t *)b, ib);
        }
        return true;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

/* Integers beyond 64 bits do not load in jansson: such lines load with INT_AS_REAL and every
 * long digit run of the expected line must appear in the line read, exactly. */
static bool same_line(const char *got, const char *want) {
    size_t flags = 0;
    json_t *g = json_loads(got, flags, NULL), *w = json_loads(want, flags, NULL);
    bool big = false;
    if (!g || !w) {
        json_decref(g);
        json_decref(w);
        big = true;
        flags = JSON_DECODE_INT_AS_REAL;
        g = json_loads(got, flags, NULL);
        w = json_loads(want, flags, NULL);
    }
    bool ok = g && w && same_json(g, w);
    json_decref(g);
    json_decref(w);
    for (const char *p = want; ok && big && *p; p++) {
        size_t n = strspn(p, "0123456789");
        if (n >= 16 && (p == want || !strchr("0123456789.", p[-1]))) {
            char run[64];
            snprintf(run, sizeof run, "%.*s", (int)(n < 63 ? n : 63), p);
            ok = strstr(got, run) != NULL;
        }
        if (n)
            p += n - 1;
    }
    return ok;
}

/* ---------------------------------------------------------------- the matrix */

/* Every fixture reads exactly as DuckDB reads it, row by row, every column. */
TEST(parquet_fixtures_match_duckdb) {
    const char *dir = ft_test_fixture("parquet");
    DIR *d = opendir(dir);
    REQUIRE(d);
    int files = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 9 || strcmp(de->d_name + n - 8, ".parquet") || !strncmp(de->d_name, "bad-", 4))
            continue;
        char path[1024], exp[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        snprintf(exp, sizeof exp, "%s/%.*s.expected.jsonl", dir, (int)(n - 8), de->d_name);
        lines got = {0}, want = {0};
        read_lines(exp, &want);
        if (want.n == 0) {
            ft_test_fail_(__FILE__, __LINE__, "%s: no expected rows (run tools/parquet-fixtures.mjs)", de->d_name);
            continue;
        }
        ft_data_head_params p;
        ft_data_head_default_params(&p);
        p.limit = -1;
        ft_err err;
        ft_err_clear(&err);
        if (ft_data_head(path, &p, keep_line, &got, &err) != FT_OK)
            ft_test_fail_(__FILE__, __LINE__, "%s: %s", de->d_name, err.msg);
        if (got.n != want.n)
            ft_test_fail_(__FILE__, __LINE__, "%s: %zu rows, DuckDB reads %zu", de->d_name, got.n, want.n);
        int bad = 0;
        for (size_t i = 0; i < got.n && i < want.n; i++)
            if (!same_line(got.s[i], want.s[i]) && bad++ < 2)
                ft_test_fail_(__FILE__, __LINE__, "%s row %zu:\n  got  %s\n  want %s", de->d_name, i, got.s[i],
                              want.s[i]);
        lines_free(&got);
        lines_free(&want);
        files++;
    }
    closedir(d);
    CHECK(files >= 20); /* the matrix is there */
}

/* --columns picks and orders columns; --limit stops early; unknown columns are named. */
TEST(parquet_head_columns_and_limit) {
    lines got = {0};
    const char *cols[] = {"s", "id"};
    ft_data_head_params p;
    ft_data_head_default_params(&p);
    p.limit = 3;
    p.columns = cols;
    p.n_columns = 2;
    ft_err err;
    REQUIRE_OK(ft_data_head(ft_test_fixture("parquet/duckdb-zstd-v2.parquet"), &p, keep_line, &got, &err), &err);
    CHECK_EQ_INT(got.n, 3);
    if (got.n == 3)
        CHECK_STR_EQ(got.s[0], "{\"s\":\"row 0 naïve café 你好 \\\"q\\\" \\\\ \",\"id\":0}");
    lines_free(&got);
    /* a column asked for twice (as --prompt-column x --response-column x does) */
    const char *twice[] = {"messages", "messages"};
    p.columns = twice;
    p.limit = 2;
    REQUIRE_OK(ft_data_head(ft_test_fixture("parquet/duckdb-zstd-v2.parquet"), &p, keep_line, &got, &err), &err);
    CHECK_EQ_INT(got.n, 2);
    if (got.n == 2)
        CHECK(strstr(got.s[1], "{\"messages\":[{\"role\":\"user\",\"content\":\"question 1\"}") != NULL);
    lines_free(&got);
    const char *nope[] = {"nope"};
    p.columns = nope;
    p.n_columns = 1;
    CHECK(ft_data_head(ft_test_fixture("parquet/duckdb-zstd-v2.parquet"), &p, keep_line, &got, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "no column \"nope\"") && strstr(err.msg, "messages"));
    lines_free(&got);
}

/* A deprecated codec is refused with the file, the column and the codec named. */
TEST(parquet_deprecated_codec_named) {
    lines got = {0};
    ft_err err;
    ft_err_clear(&err);
    ft_status s = ft_data_head(ft_test_fixture("parquet/bad-codec-lz4.parquet"), NULL, keep_line, &got, &err);
    CHECK(s == FT_ERR_UNSUPPORTED);
    CHECK(strstr(err.file, "bad-codec-lz4.parquet") != NULL);
    CHECK(strstr(err.msg, "column \"text\"") && strstr(err.msg, "LZ4") && strstr(err.msg, "Hadoop"));
    lines_free(&got);
}

/* ---------------------------------------------------------------- hostile input */

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

/* Inputs fuzz_parquet and fuzz_parquet_thrift found (kept as their seeds): an error or rows,
 * no sanitizer report (this test matters in the ASan+UBSan run). */
TEST(parquet_fuzz_regressions) {
    static const char *const files[] = {"../fuzz/corpus/parquet_thrift/regress-nested-groups-announce-too-many",
                                        "../fuzz/corpus/parquet/regress-empty-data-page",
                                        "../fuzz/corpus/parquet/regress-row-groups-listed-twice"};
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        size_t n = 0;
        uint8_t *b = slurp(ft_test_fixture(files[k]), &n);
        REQUIRE(b && n > 0);
        ft_err err;
        ft_err_clear(&err);
        if (k > 0) {
            (void)pq_decode_memory(b, n, &err);
        } else {
            pq_file *f = NULL;
            /* nested groups announce more fields than the schema has elements */
            CHECK(pq_open_footer_bytes(b, n, "fuzz.parquet", &f, &err) == FT_ERR_PARSE);
            pq_close(f);
        }
        free(b);
    }
}

/* Truncations and byte flips everywhere in real files end in an error or in rows, never in a
 * crash, a hang or a sanitizer report. */
TEST(parquet_damaged_files_fail_cleanly) {
    const char *names[] = {"parquet/duckdb-snappy-v1.parquet", "parquet/pw-v2-zstd-delta.parquet",
                           "parquet/hyw-gzip2.parquet", "parquet/pw-v1-lz4raw-fallback.parquet"};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        size_t n = 0;
        uint8_t *orig = slurp(ft_test_fixture(names[k]), &n);
        REQUIRE(orig && n > 100);
        uint8_t *b = malloc(n);
        ft_err err;
        CHECK_OK(pq_decode_memory(orig, n, &err), &err);
        int errors = 0, trials = ft_test_sanitized() ? 150 : 600;
        for (int t = 0; t < trials; t++) {
            memcpy(b, orig, n);
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t len = n;
            if (t % 3 == 0)
                len = (size_t)(x % n); /* truncated */
            else
                for (int f = 0; f < 1 + (int)(x >> 60); f++) { /* a few bytes changed */
                    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                    b[x % n] ^= (uint8_t)(x >> 32 | 1);
                }
            errors += pq_decode_memory(b, len, &err) != FT_OK;
        }
        CHECK(errors > trials / 4); /* most damage is noticed */
        free(b);
        free(orig);
    }
}

/* ---------------------------------------------------------------- training data */

typedef struct issues {
    char msg[64][700];
    int64_t line[64], row[64];
    int n;
} issues;

static void keep_issue(void *ctx, const ft_data_issue *is) {
    issues *g = ctx;
    if (g->n < 64) {
        snprintf(g->msg[g->n], sizeof g->msg[0], "%s", is->message);
        g->line[g->n] = is->line;
        g->row[g->n] = is->row;
        g->n++;
    }
}

static ft_data_report *validate(const char *path, ft_task_type task, const ft_reader_params *rp, issues *g) {
    ft_validate_params p;
    ft_validate_default_params(&p, task);
    if (rp)
        p.reader = *rp;
    p.on_issue = keep_issue;
    p.on_issue_ctx = g;
    p.threads = 2;
    ft_data_report *r = NULL;
    ft_err err;
    ft_err_clear(&err);
    if (ft_data_validate(path, &p, &r, NULL, &err) != FT_OK)
        ft_test_fail_(__FILE__, __LINE__, "validate %s: %s", path, err.msg);
    return r;
}

/* Every bad row is located by its 0-based row in the file (as pandas and DuckDB's file_row_number
 * count; the issue's line is 0: a row is not a line of text), then by row group and row in it: chat rows with null or empty `messages` and a
 * null `content` (DuckDB matrix, one row group), IFT rows with a null prompt (parquet-wasm, row
 * groups of 7 rows). */
TEST(parquet_validate_locates_rows) {
    issues g = {0};
    ft_data_report *r = validate(ft_test_fixture("parquet/duckdb-gzip-v1.parquet"), FT_TASK_CHAT_COMPLETION, NULL, &g);
    REQUIRE(r);
    CHECK_EQ_INT(r->n_records, 40);
    CHECK(!r->valid);
    /* row 4 (i % 9 == 4): messages is null; row 33 (i % 11 == 0): a null content */
    bool null_messages = false, null_content = false;
    for (int i = 0; i < g.n; i++) {
        CHECK_EQ_INT(g.line[i], 0);
        if (g.row[i] == 4 && !strncmp(g.msg[i], "row 4 (row 4 of row group 0): \"messages\"", 40))
            null_messages = true;
        if (g.row[i] == 33 && !strncmp(g.msg[i], "row 33 (row 33 of row group 0): messages[1].content", 51))
            null_content = true;
    }
    CHECK_EQ_INT(r->n_errors, 11);
    CHECK(null_messages);
    CHECK(null_content);
    ft_data_report_free(r);

    /* IFT with renamed columns: prompt from `text` of the parquet-wasm file, response from `many` */
    memset(&g, 0, sizeof g);
    ft_reader_params rp = ft_reader_default_params();
    rp.prompt_column = "text";
    rp.response_column = "many";
    r = validate(ft_test_fixture("parquet/pw-v2-snappy-groups.parquet"), FT_TASK_INSTRUCTION_FINETUNE, &rp, &g);
    REQUIRE(r);
    CHECK_EQ_INT(r->n_records, 60);
    /* rows 7, 17, ... have a null text: row 17 is in row group 2 (groups of 7), row 3 */
    bool found = false;
    for (int i = 0; i < g.n; i++)
        found = found || (g.row[i] == 17 && strstr(g.msg[i], "row 17 (row 3 of row group 2; \"prompt\" is column \"text\"; \"response\" is column \"many\"): ") &&
                          strstr(g.msg[i], "\"prompt\" must be a string, found null"));
    CHECK(found);
    CHECK_EQ_INT(r->n_errors, 6);
    ft_data_report_free(r);

    /* a missing column is one problem for the file, naming the columns it has and the option */
    memset(&g, 0, sizeof g);
    r = validate(ft_test_fixture("parquet/pw-v2-snappy-groups.parquet"), FT_TASK_INSTRUCTION_FINETUNE, NULL, &g);
    REQUIRE(r);
    CHECK_EQ_INT(r->n_errors, 1);
    CHECK(g.n == 1 && strstr(g.msg[0], "no column \"prompt\"") && strstr(g.msg[0], "text, many") &&
          strstr(g.msg[0], "--prompt-column"));
    ft_data_report_free(r);

    /* CPT reads `text` (renamed here) */
    memset(&g, 0, sizeof g);
    rp = ft_reader_default_params();
    rp.text_column = "prompt";
    r = validate(ft_test_fixture("parquet/hyw-brotli.parquet"), FT_TASK_CONTINUED_PRETRAIN, &rp, &g);
    REQUIRE(r);
    CHECK(r->valid);
    CHECK_EQ_INT(r->n_records, 30);
    ft_data_report_free(r);
}

/* Parquet rows reach validation as trees built straight from the cells (FT_RECORD_JSON_VALUE),
 * not as JSON text parsed again; the loader fetches the text the reader spilled. Both must be the
 * same record: for every column of every fixture (read as an IFT prompt, so every type and
 * nesting goes through), the tree equals what jansson parses from the spilled text, and a
 * reader opened with no_fetch yields the same trees and keeps no copy. */
TEST(parquet_record_trees_equal_their_spilled_text) {
    const char *dir = ft_test_fixture("parquet");
    DIR *d = opendir(dir);
    REQUIRE(d);
    struct dirent *de;
    int64_t n_trees = 0, n_problems = 0;
    ft_buf scratch = {0};
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 9 || strcmp(de->d_name + n - 8, ".parquet") || !strncmp(de->d_name, "bad-", 4))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        ft_err err;
        pq_file *f = NULL;
        REQUIRE_OK(pq_open(path, de->d_name, &f, &err), &err);
        const pq_node *root = pq_node_at(f, 0);
        for (int32_t c = 0; c < root->n_children; c++) {
            const char *col = pq_node_at(f, root->children[c])->name;
            ft_reader *rd[2] = {0};
            for (int k = 0; k < 2; k++) {
                ft_reader_params rp = ft_reader_default_params();
                rp.prompt_column = rp.response_column = col;
                rp.no_fetch = k == 1;
                REQUIRE_OK(ft_reader_open(path, FT_TASK_INSTRUCTION_FINETUNE, &rp, &rd[k], &err), &err);
            }
            for (;;) {
                ft_record rec[2];
                bool done[2];
                REQUIRE_OK(ft_reader_next(rd[0], &rec[0], &done[0], &err), &err);
                REQUIRE_OK(ft_reader_next(rd[1], &rec[1], &done[1], &err), &err);
                CHECK(done[0] == done[1]);
                if (done[0] || done[1])
                    break;
                CHECK_EQ_INT(rec[0].kind, rec[1].kind);
                CHECK_EQ_INT(rec[0].loc.line, rec[1].loc.line);
                if (rec[0].kind == FT_RECORD_PROBLEM) {
                    n_problems++;
                    CHECK_STR_EQ(rec[0].problem, rec[1].problem);
                    continue;
                }
                if (rec[0].kind != FT_RECORD_JSON_VALUE || rec[1].kind != FT_RECORD_JSON_VALUE) {
                    ft_test_fail_(__FILE__, __LINE__, "%s column %s: record kind %d", de->d_name, col, rec[0].kind);
                    break;
                }
                CHECK(json_equal(rec[0].value, rec[1].value));
                CHECK_EQ_INT(rec[1].loc.a, -1); /* nothing spilled */
                ft_record back;
                REQUIRE_OK(ft_reader_fetch(rd[0], &rec[0].loc, &scratch, &back, &err), &err);
                CHECK(ft_reader_fetch(rd[1], &rec[1].loc, &scratch, &back, &err) != FT_OK);
                REQUIRE_OK(ft_reader_fetch(rd[0], &rec[0].loc, &scratch, &back, &err), &err);
                json_error_t je;
                json_t *parsed = json_loadb(back.data, back.len, JSON_REJECT_DUPLICATES, &je);
                if (!parsed || !json_equal(parsed, rec[0].value)) {
                    char *tree = json_dumps(rec[0].value, JSON_COMPACT);
                    ft_test_fail_(__FILE__, __LINE__, "%s column %s row %lld:\n  tree %s\n  text %.*s (%s)", de->d_name,
                                  col, (long long)rec[0].loc.line, tree, (int)back.len, back.data,
                                  parsed ? "differs" : je.text);
                    free(tree);
                }
                json_decref(parsed);
                n_trees++;
            }
            ft_reader_free(rd[0]);
            ft_reader_free(rd[1]);
        }
        pq_close(f);
    }
    closedir(d);
    ft_buf_free(&scratch);
    CHECK(n_trees > 1000); /* the matrix went through */
    printf("# %lld trees equal their text, %lld problem rows\n", (long long)n_trees, (long long)n_problems);
}

/* What a JSONL line cannot carry is a row problem or typed as JSON would type it
 * (tools/reference/parquet_record_edges.mjs): a NUL byte in a content is refused with the column
 * and byte named; a UBIGINT beyond int64 is a number (not text) to the checks. */
TEST(parquet_record_edges_nul_and_uint64) {
    issues g = {0};
    ft_data_report *r = validate(ft_test_fixture("parquet/bad-nul-content.parquet"), FT_TASK_CHAT_COMPLETION, NULL, &g);
    REQUIRE(r);
    CHECK_EQ_INT(r->n_records, 2);
    CHECK_EQ_INT(r->n_errors, 1);
    CHECK(g.n == 1 && g.row[0] == 0 &&
          !strcmp(g.msg[0], "row 0 (row 0 of row group 0): column \"messages\": a NUL byte (U+0000) at byte 2 of the "
                            "value: text for training cannot hold it"));
    ft_data_report_free(r);
    memset(&g, 0, sizeof g);
    r = validate(ft_test_fixture("parquet/bad-u64-prompt.parquet"), FT_TASK_INSTRUCTION_FINETUNE, NULL, &g);
    REQUIRE(r);
    CHECK(g.n == 1 && !strcmp(g.msg[0], "row 0 (row 0 of row group 0): \"prompt\" must be a string, found a number"));
    ft_data_report_free(r);
}

/* The same data as JSONL and as Parquet (converted by DuckDB) makes the same samples, the same
 * statistics and the same shuffled batches: the Parquet records reach the loader through the
 * reader's spill and fetch. */
static void same_as_jsonl(const char *jsonl, const char *parquet, ft_task_type task, const char *tok_dir) {
    ft_tok *tok = NULL;
    ft_chat *chat = NULL;
    ft_err err;
    REQUIRE_OK(ft_tok_load(ft_test_fixture(tok_dir), &tok, &err), &err);
    if (task == FT_TASK_CHAT_COMPLETION)
        REQUIRE_OK(ft_chat_load(ft_test_fixture(tok_dir), &chat, &err), &err);
    ft_data_report *rep[2] = {0};
    ft_dataset *ds[2] = {0};
    const char *paths[2] = {ft_test_fixture(jsonl), ft_test_fixture(parquet)};
    char saved[2][1024];
    for (int k = 0; k < 2; k++) {
        snprintf(saved[k], sizeof saved[k], "%s", paths[k]);
        ft_validate_params p;
        ft_validate_default_params(&p, task);
        p.sample.tok = tok;
        p.sample.chat = chat;
        p.sample.context_length = 48;
        p.build_dataset = true;
        p.threads = 2;
        REQUIRE_OK(ft_data_validate(saved[k], &p, &rep[k], &ds[k], &err), &err);
        REQUIRE(rep[k]->valid && ds[k]);
    }
    CHECK_EQ_INT(rep[0]->n_records, rep[1]->n_records);
    CHECK_EQ_INT(rep[0]->n_samples, rep[1]->n_samples);
    CHECK_EQ_INT(rep[0]->n_tokens, rep[1]->n_tokens);
    CHECK_EQ_INT(rep[0]->n_tokens_full, rep[1]->n_tokens_full);
    CHECK_EQ_INT(rep[0]->n_trainable, rep[1]->n_trainable);
    CHECK_EQ_INT(rep[0]->rows_per_epoch, rep[1]->rows_per_epoch);
    ft_loader *l[2] = {0};
    for (int k = 0; k < 2; k++) {
        ft_loader_params lp;
        ft_loader_default_params(&lp, 2, 48, 7);
        lp.pack.window = 3;
        lp.threads = 2;
        REQUIRE_OK(ft_loader_new(ds[k], &lp, NULL, &l[k], &err), &err);
    }
    for (int step = 0; step < 6; step++) {
        ft_data_batch *b[2];
        REQUIRE_OK(ft_loader_next(l[0], &b[0], &err), &err);
        REQUIRE_OK(ft_loader_next(l[1], &b[1], &err), &err);
        size_t n = 2 * 48 * sizeof(int32_t);
        CHECK(!memcmp(b[0]->batch.input_ids, b[1]->batch.input_ids, n));
        CHECK(!memcmp(b[0]->batch.targets, b[1]->batch.targets, n));
        CHECK(!memcmp(b[0]->batch.sample_ids, b[1]->batch.sample_ids, n));
        ft_loader_release(l[0], b[0]);
        ft_loader_release(l[1], b[1]);
    }
    for (int k = 0; k < 2; k++) {
        ft_loader_free(l[k]);
        ft_dataset_free(ds[k]);
        ft_data_report_free(rep[k]);
    }
    ft_chat_free(chat);
    ft_tok_free(tok);
}

TEST(parquet_chat_same_as_jsonl) {
    same_as_jsonl("data/chat.jsonl", "parquet/chat.parquet", FT_TASK_CHAT_COMPLETION, "tok/llama3-instruct-rev2");
}
TEST(parquet_ift_same_as_jsonl) {
    same_as_jsonl("data/ift.jsonl", "parquet/ift.parquet", FT_TASK_INSTRUCTION_FINETUNE, "tok/mistral-7b-v0.1");
}
TEST(parquet_cpt_same_as_txt) {
    same_as_jsonl("data/cpt", "parquet/cpt.parquet", FT_TASK_CONTINUED_PRETRAIN, "tok/mistral-7b-v0.1");
}

/* `ftune create` on Parquet for the three tasks: a folder of .parquet files (chat), a file
 * (CPT), and IFT from a file without `prompt`, with renamed columns, queued with --detach so that
 * the worker reads the column names back from the stored run configuration. */
TEST(cli_create_parquet_three_tasks) {
    if (ft_test_sanitized())
        SKIP("trains three tiny runs: the optimized build covers it");
    char cmd[8192], *out = NULL;
    const char *d = ft_test_tmpdir();
    snprintf(cmd, sizeof cmd,
             "%s init-model --out %s/m --vocab-size 128256 --hidden-size 32 --intermediate-size 64 --layers 1 "
             "--heads 2 --max-position-embeddings 256 --tokenizer %s >/dev/null 2>&1 && mkdir -p %s/chat && "
             "cp %s %s/chat/a.parquet && cp %s %s/chat/b.parquet",
             ft_test_ftune_bin(), d, ft_test_fixture("tok/llama3-instruct-rev2"), d,
             ft_test_fixture("parquet/chat.parquet"), d, ft_test_fixture("parquet/chat.parquet"), d);
    REQUIRE(ft_test_run(cmd, &out) == 0);
    free(out);
    const char *flags = "--training-duration 1ba --context-length 128 --threads 1 --quiet";
    struct {
        const char *task, *data, *extra, *reg;
    } runs[] = {
        {"CHAT_COMPLETION", "chat", "", "main.t.chat"},
        {"CONTINUED_PRETRAIN", NULL, "", "main.t.cpt"},
        {"INSTRUCTION_FINETUNE", NULL, "--prompt-column many --response-column many --detach", "main.t.ift"},
    };
    for (int k = 0; k < 3; k++) {
        char data[1024];
        if (k == 0)
            snprintf(data, sizeof data, "%s/chat", d);
        else
            snprintf(data, sizeof data, "%s",
                     ft_test_fixture(k == 1 ? "parquet/cpt.parquet" : "parquet/pw-v2-uncompressed.parquet"));
        snprintf(cmd, sizeof cmd,
                 "FTUNE_HOME=%s/home USER=tester %s create --model %s/m --task-type %s --train-data-path %s "
                 "--register-to %s %s %s 2>&1",
                 d, ft_test_ftune_bin(), d, runs[k].task, data, runs[k].reg, flags, runs[k].extra);
        out = NULL;
        int rc = ft_test_run(cmd, &out);
        if (rc != 0)
            ft_test_fail_(__FILE__, __LINE__, "%s: exit %d: %s", runs[k].task, rc, out ? out : "");
        free(out);
    }
    /* the file has no `prompt`: the queued run completes only if the worker reads the columns */
    snprintf(cmd, sizeof cmd,
             "export FTUNE_HOME=%s/home USER=tester; %s worker --until-idle --quiet >/dev/null 2>&1; "
             "for i in $(seq 120); do %s list 2>&1 | grep -q -e PENDING -e QUEUED -e STARTING -e RUNNING -e TERMINATING || break; sleep 1; done; "
             "%s list 2>&1",
             d, ft_test_ftune_bin(), ft_test_ftune_bin(), ft_test_ftune_bin());
    out = NULL;
    ft_test_run(cmd, &out);
    REQUIRE(out);
    int completed = 0, failed = 0;
    for (const char *p = out; (p = strstr(p, "COMPLETED")) != NULL; p++)
        completed++;
    for (const char *p = out; (p = strstr(p, "FAILED")) != NULL; p++)
        failed++;
    CHECK_EQ_INT(completed, 3);
    CHECK_EQ_INT(failed, 0);
    free(out);
}
