/* tests/data/test_sources.c: table sources (src/data/arrow.c, delta.c, delta_dv.c, hf.c, tables.c)
 * against files written by others: Arrow IPC from npm apache-arrow (expected rows from
 * apache-arrow's own reading, tools/reference/arrow_fixtures.mjs), the Delta project's golden
 * tables (expected rows read from their expected/ Parquet files by DuckDB,
 * tools/reference/delta_fixtures.mjs), delta-kernel-rs test tables, and hub / datasets caches
 * laid out here. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/parquet.h"
#include "data/sources.h"
#include "data/tables.h"
#include "test.h"

/* ---------------------------------------------------------------- helpers */

static char *slurp(const char *path) {
    char *d = NULL;
    size_t n;
    return ft_file_read_all(path, &d, &n, NULL) == FT_OK ? d : NULL;
}

/* A canonical text of a JSON value for multiset comparison: keys sorted, numbers compared as
 * doubles to 6 significant digits (float32 columns print their shortest float32 form, other
 * readers the widened double), timestamps without their UTC marker (writers disagree on the
 * Parquet isAdjustedToUTC flag of the same instants). */
static void canon(const json_t *v, ft_buf *o) {
    if (json_is_object(v)) {
        const char *keys[256];
        size_t n = 0;
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (n < 256) keys[n++] = k;
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
                const char *t = keys[j];
                keys[j] = keys[j - 1];
                keys[j - 1] = t;
            }
        ft_buf_putc(o, '{');
        for (size_t i = 0; i < n; i++) {
            ft_buf_appendf(o, "%s:", keys[i]);
            canon(json_object_get(v, keys[i]), o);
            ft_buf_putc(o, ',');
        }
        ft_buf_putc(o, '}');
    } else if (json_is_array(v)) {
        ft_buf_putc(o, '[');
        size_t i;
        json_t *x;
        json_array_foreach((json_t *)v, i, x) {
            canon(x, o);
            ft_buf_putc(o, ',');
        }
        ft_buf_putc(o, ']');
    } else if (json_is_number(v)) {
        ft_buf_appendf(o, "%.6g", json_number_value(v) + 0.0); /* -0 == 0 (JSON.stringify(-0) is "0") */
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = strlen(s);
        if (n == 27 && s[10] == 'T' && s[26] == 'Z')
            n = 26;
        ft_buf_appendf(o, "\"%.*s\"", (int)n, s);
    } else {
        char *t = json_dumps(v, JSON_ENCODE_ANY);
        ft_buf_appendf(o, "%s", t ? t : "?");
        free(t);
    }
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct rowset {
    char **v;
    size_t n, cap;
} rowset;

static void rowset_add(rowset *r, const json_t *row) {
    ft_buf b = {0};
    canon(row, &b);
    ft_buf_putc(&b, 0);
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->v = ft_realloc(r->v, r->cap * sizeof *r->v);
    }
    r->v[r->n++] = b.data;
}

static void rowset_free(rowset *r) {
    for (size_t i = 0; i < r->n; i++)
        ft_free(r->v[i]);
    ft_free(r->v);
    memset(r, 0, sizeof *r);
}

/* Rows of a JSON Lines file (integers read as reals: u64 extremes do not fit jansson's int). */
static bool rowset_from_jsonl(rowset *r, const char *path) {
    char *text = slurp(path);
    if (!text)
        return false;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *v = json_loads(l, JSON_DECODE_INT_AS_REAL, &je);
        if (!v) {
            ft_free(text);
            return false;
        }
        rowset_add(r, v);
        json_decref(v);
    }
    ft_free(text);
    return true;
}

/* Every row of a source, all columns, as `data head` would print them: JSON text per cell,
 * assembled into an object and parsed back (integers as reals, as above). */
static ft_status rowset_from_source(rowset *r, const char *spec, int64_t version, ft_buf *first_line, ft_err *err) {
    src_set *set;
    FT_TRY(src_set_open(spec, version, &set, err));
    /* the columns: the Delta schema, else the first file's */
    const char *cols[256];
    size_t nc = 0;
    arrow_file *af = NULL;
    pq_file *pf = NULL;
    ft_status s = FT_OK;
    if (set->delta) {
        for (size_t i = 0; i < set->delta->n_fields && nc < 256; i++)
            cols[nc++] = set->delta->fields[i].name;
    } else if (set->n && set->files[0].kind == SRC_ARROW) {
        s = arrow_open(set->files[0].path, set->files[0].name, &af, err);
        for (size_t i = 0; s == FT_OK && i < arrow_n_columns(af) && nc < 256; i++)
            cols[nc++] = arrow_column_name(af, i);
    } else if (set->n) {
        s = pq_open(set->files[0].path, set->files[0].name, &pf, err);
        const pq_node *root = s == FT_OK ? pq_node_at(pf, 0) : NULL;
        for (int32_t i = 0; root && i < root->n_children && nc < 256; i++)
            cols[nc++] = pq_node_at(pf, root->children[i])->name;
    }
    src_cursor *c = NULL;
    if (s == FT_OK)
        s = src_cursor_open(set, cols, nc, &c, err);
    ft_buf line = {0};
    while (s == FT_OK) {
        const data_value *cells;
        src_pos pos;
        bool done;
        s = src_cursor_next(c, &cells, &pos, &done, err);
        if (s != FT_OK || done)
            break;
        line.len = 0;
        ft_buf_putc(&line, '{');
        for (size_t i = 0; s == FT_OK && i < nc; i++) {
            ft_buf_appendf(&line, "%s\"%s\":", i ? "," : "", cols[i]);
            s = data_value_write_json(&line, &cells[i], err);
        }
        ft_buf_putc(&line, '}');
        if (first_line && first_line->len == 0) {
            ft_buf_append(first_line, line.data, line.len);
            ft_buf_putc(first_line, 0);
        }
        json_error_t je;
        json_t *v = json_loadb(line.data, line.len, JSON_DECODE_INT_AS_REAL, &je);
        if (!v) {
            s = FT_ERR(err, FT_ERR_PARSE, "data head's JSON does not parse: %s: %.*s", je.text, (int)line.len,
                       line.data);
            break;
        }
        rowset_add(r, v);
        json_decref(v);
    }
    ft_buf_free(&line);
    src_cursor_free(c);
    arrow_close(af);
    pq_close(pf);
    src_set_free(set);
    return s;
}

/* Multiset equality; prints the first differences. */
static bool rowsets_equal(rowset *a, rowset *b, const char *what) {
    if (a->n > 1) /* qsort(NULL, 0) is undefined (UBSan): a table may have no rows */
        qsort(a->v, a->n, sizeof *a->v, cmp_cstr);
    if (b->n > 1)
        qsort(b->v, b->n, sizeof *b->v, cmp_cstr);
    bool eq = a->n == b->n;
    for (size_t i = 0; eq && i < a->n; i++)
        eq = strcmp(a->v[i], b->v[i]) == 0;
    if (!eq) {
        fprintf(stderr, "  %s: %zu rows read, %zu expected\n", what, a->n, b->n);
        for (size_t i = 0, shown = 0; i < a->n && i < b->n && shown < 3; i++)
            if (strcmp(a->v[i], b->v[i]) != 0) {
                fprintf(stderr, "    read:     %.300s\n    expected: %.300s\n", a->v[i], b->v[i]);
                shown++;
            }
    }
    return eq;
}

static bool parquet_available(void) {
    pq_file *f = NULL;
    ft_err e;
    ft_err_clear(&e);
    ft_status s = pq_open(ft_test_fixture("data/delta/simple_table/part-00000-2befed33-c358-4768-a43c-3eda0d2a499d-c000.snappy.parquet"),
                          "probe", &f, &e);
    pq_close(f);
    return s != FT_ERR_UNSUPPORTED;
}

/* ---------------------------------------------------------------- Arrow IPC */

static void arrow_case(const char *file, const char *expected) {
    rowset got = {0}, want = {0};
    ft_err err;
    ft_err_clear(&err);
    ft_buf first = {0};
    CHECK_OK(rowset_from_source(&got, ft_test_fixture(file), -1, &first, &err), &err);
    REQUIRE(rowset_from_jsonl(&want, ft_test_fixture(expected)));
    CHECK(want.n >= 5);
    CHECK(rowsets_equal(&got, &want, file));
    /* integers are exact at any width (the multiset compares them as doubles) */
    CHECK(first.data && strstr(first.data, "\"u64\":18446744073709551615"));
    CHECK(first.data && strstr(first.data, "\"i64\":-9223372036854775808"));
    CHECK(first.data && strstr(first.data, "\"tsu\":\"2021-09-08T11:11:11.000000Z\""));
    ft_buf_free(&first);
    rowset_free(&got);
    rowset_free(&want);
}

TEST(arrow_stream_every_type_as_apache_arrow_reads_it) {
    arrow_case("data/arrow/types.stream.arrow", "data/arrow/types.stream.expected.jsonl");
}

TEST(arrow_file_format_every_type_as_apache_arrow_reads_it) {
    arrow_case("data/arrow/types.file.arrow", "data/arrow/types.file.expected.jsonl");
}

TEST(arrow_damaged_files_are_errors_not_crashes) {
    char *data = NULL;
    size_t n;
    ft_err err;
    ft_err_clear(&err);
    REQUIRE(ft_file_read_all(ft_test_fixture("data/arrow/types.stream.arrow"), &data, &n, &err) == FT_OK);
    int64_t rows;
    CHECK_OK(arrow_decode_memory((const uint8_t *)data, n, &rows, &err), &err);
    CHECK_EQ_INT(rows, 10);
    /* every truncation, and flipped bytes all over: an error or rows, never a crash */
    for (size_t cut = 0; cut < n; cut += 7)
        (void)arrow_decode_memory((const uint8_t *)data, cut, &rows, NULL);
    for (size_t i = 0; i < n; i += 3) {
        uint8_t *m = ft_malloc(n);
        memcpy(m, data, n);
        m[i] ^= 0x5A;
        (void)arrow_decode_memory(m, n, &rows, NULL);
        ft_free(m);
    }
    /* not Arrow at all */
    ft_status s = arrow_decode_memory((const uint8_t *)"hello world, not arrow", 22, &rows, &err);
    CHECK(s == FT_ERR_PARSE);
    ft_free(data);
}

static ft_data_report *validate_path(const char *path, ft_task_type task) {
    ft_validate_params p;
    ft_validate_default_params(&p, task);
    p.threads = 1;
    ft_data_report *r = NULL;
    ft_err err;
    ft_err_clear(&err);
    ft_status s = ft_data_validate(path, &p, &r, NULL, &err);
    if (s != FT_OK) {
        char m[1600];
        ft_err_format(&err, m, sizeof m);
        ft_test_fail_(__FILE__, __LINE__, "validate %s: %s", path, m);
    }
    return r;
}

TEST(arrow_training_rows_for_each_task_with_bad_rows_located) {
    static const ft_task_type tasks[] = {FT_TASK_CHAT_COMPLETION, FT_TASK_INSTRUCTION_FINETUNE,
                                         FT_TASK_CONTINUED_PRETRAIN};
    for (int t = 0; t < 3; t++) {
        ft_data_report *r = validate_path(ft_test_fixture("data/arrow/train.arrow"), tasks[t]);
        REQUIRE(r);
        CHECK(r->valid);
        CHECK_EQ_INT(r->n_records, 3);
        CHECK_EQ_INT(r->n_valid_records, 3);
        ft_data_report_free(r);
        /* row 1 (0-based) is bad for every task: chat without an answer, a null prompt, a null text */
        r = validate_path(ft_test_fixture("data/arrow/train_bad.arrow"), tasks[t]);
        REQUIRE(r);
        CHECK(!r->valid);
        CHECK_EQ_INT(r->n_valid_records, 2);
        REQUIRE(r->n_issues >= 1);
        CHECK_EQ_INT(r->issues[0].row, 1);
        CHECK_EQ_INT(r->issues[0].line, 0);
        CHECK(!strncmp(r->issues[0].message, "row 1: ", 7));
        CHECK(strstr(r->issues[0].file, "train_bad.arrow") != NULL);
        ft_data_report_free(r);
    }
}

/* ---------------------------------------------------------------- deletion vectors */

TEST(delta_dv_inline_vector_of_delta_kernel) {
    /* delta-kernel-rs's inline test vector: deletes rows {3, 4, 7, 11, 18, 29} */
    const char *z = "^Bg9^0rr910000000000iXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L";
    delta_snapshot s = {.root = "/", .display = "t"};
    delta_file f = {.rel = "x.parquet", .has_dv = true,
                    .dv = {.storage = 'i', .path_or_inline = (char *)z, .offset = -1, .size = 44, .cardinality = 6}};
    uint64_t *rows;
    size_t n;
    ft_err err;
    ft_err_clear(&err);
    REQUIRE_OK(delta_dv_rows(&s, &f, &rows, &n, &err), &err);
    static const uint64_t want[] = {3, 4, 7, 11, 18, 29};
    REQUIRE(n == 6);
    for (size_t i = 0; i < 6; i++)
        CHECK_EQ_INT(rows[i], want[i]);
    ft_free(rows);
    /* a wrong cardinality is an error, not silently other rows */
    f.dv.cardinality = 5;
    CHECK(delta_dv_rows(&s, &f, &rows, &n, &err) == FT_ERR_PARSE);
}

TEST(delta_dv_file_crc_checked) {
    ft_err err;
    ft_err_clear(&err);
    delta_snapshot *s = NULL;
    const char *root = ft_test_fixture("data/delta/table-with-dv-small");
    REQUIRE_OK(delta_snapshot_load(root, "dv-small", -1, &s, &err), &err);
    REQUIRE(s->n_files == 1 && s->files[0].has_dv);
    uint64_t *rows;
    size_t n;
    REQUIRE_OK(delta_dv_rows(s, &s->files[0], &rows, &n, &err), &err);
    CHECK_EQ_INT(n, 2); /* the log's cardinality, checked inside too */
    ft_free(rows);
    /* a damaged copy: the CRC catches it */
    const char *tmp = ft_test_tmpdir();
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp -r %s %s/t && f=$(ls %s/t/deletion_vector_*.bin) && printf '\\377' | dd of=$f bs=1 seek=12 conv=notrunc 2>/dev/null",
             root, tmp, tmp);
    REQUIRE(system(cmd) == 0);
    char copy[1024];
    snprintf(copy, sizeof copy, "%s/t", tmp);
    delta_snapshot *s2 = NULL;
    REQUIRE_OK(delta_snapshot_load(copy, "dv-small-copy", -1, &s2, &err), &err);
    ft_status st = delta_dv_rows(s2, &s2->files[0], &rows, &n, &err);
    CHECK(st == FT_ERR_PARSE);
    CHECK(strstr(err.msg, "CRC") != NULL);
    delta_snapshot_free(s2);
    delta_snapshot_free(s);
}

/* ---------------------------------------------------------------- Delta log replay */

TEST(delta_must_fail_tables_give_clear_errors) {
    static const struct {
        const char *table, *msg;
    } cases[] = {
        {"deltalog-invalid-protocol-version", "reader version 99"},
        {"deltalog-state-reconstruction-without-metadata", "no metaData action"},
        {"data-reader-absolute-paths-escaped-chars", "no metaData action"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "data/delta/golden/%s/delta", cases[i].table);
        delta_snapshot *s = NULL;
        ft_err err;
        ft_err_clear(&err);
        ft_status st = delta_snapshot_load(ft_test_fixture(rel), cases[i].table, -1, &s, &err);
        CHECK(st != FT_OK);
        if (!strstr(err.msg, cases[i].msg))
            ft_test_fail_(__FILE__, __LINE__, "%s: got \"%s\", want \"%s\"", cases[i].table, err.msg, cases[i].msg);
        delta_snapshot_free(s);
    }
    /* a folder that is not a table */
    delta_snapshot *s = NULL;
    ft_err err;
    ft_err_clear(&err);
    CHECK(delta_snapshot_load(ft_test_fixture("data/arrow"), "arrow", -1, &s, &err) == FT_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "_delta_log") != NULL);
}

/* The checkpoint-missing-metadata/protocol tables need their Parquet checkpoint read. */
TEST(delta_must_fail_checkpoint_tables) {
    if (!parquet_available())
        SKIP("the Parquet reader is not in this build yet (checkpoints are Parquet files)");
    static const struct {
        const char *table, *msg;
    } cases[] = {
        {"deltalog-state-reconstruction-from-checkpoint-missing-metadata", "no metaData action"},
        {"deltalog-state-reconstruction-from-checkpoint-missing-protocol", "no protocol action"},
    };
    for (size_t i = 0; i < 2; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "data/delta/golden/%s/delta", cases[i].table);
        delta_snapshot *s = NULL;
        ft_err err;
        ft_err_clear(&err);
        CHECK(delta_snapshot_load(ft_test_fixture(rel), cases[i].table, -1, &s, &err) != FT_OK);
        if (!strstr(err.msg, cases[i].msg))
            ft_test_fail_(__FILE__, __LINE__, "%s: got \"%s\", want \"%s\"", cases[i].table, err.msg, cases[i].msg);
        delta_snapshot_free(s);
    }
}

TEST(delta_log_gaps_versions_and_keys) {
    const char *tmp = ft_test_tmpdir();
    char cmd[2048], t[1024];
    /* simple_table: versions 0..4, JSON commits only */
    snprintf(t, sizeof t, "%s/simple", tmp);
    snprintf(cmd, sizeof cmd, "cp -r %s %s", ft_test_fixture("data/delta/simple_table"), t);
    REQUIRE(system(cmd) == 0);
    ft_err err;
    ft_err_clear(&err);
    delta_snapshot *s = NULL;
    REQUIRE_OK(delta_snapshot_load(t, "simple", -1, &s, &err), &err);
    CHECK_EQ_INT(s->version, 4);
    size_t latest_files = s->n_files;
    CHECK(latest_files > 0);
    delta_snapshot_free(s);
    /* an older version; one past the end is an error naming the latest */
    REQUIRE_OK(delta_snapshot_load(t, "simple", 0, &s, &err), &err);
    CHECK_EQ_INT(s->version, 0);
    delta_snapshot_free(s);
    s = NULL;
    CHECK(delta_snapshot_load(t, "simple", 9, &s, &err) == FT_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "latest version is 4") != NULL);
    /* a gap */
    snprintf(cmd, sizeof cmd, "rm %s/_delta_log/00000000000000000002.json", t);
    REQUIRE(system(cmd) == 0);
    CHECK(delta_snapshot_load(t, "simple", -1, &s, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "commit 2 is missing") != NULL);
    /* the version before the gap still reads */
    CHECK_OK(delta_snapshot_load(t, "simple", 1, &s, &err), &err);
    delta_snapshot_free(s);
    /* a broken commit names its file and line */
    snprintf(cmd, sizeof cmd, "printf '{\"add\": \\n' > %s/_delta_log/00000000000000000001.json", t);
    REQUIRE(system(cmd) == 0);
    s = NULL;
    CHECK(delta_snapshot_load(t, "simple", 1, &s, &err) == FT_ERR_PARSE);
    CHECK(strstr(err.file, "00000000000000000001.json") != NULL);
    CHECK_EQ_INT(err.line, 1);
    /* an unknown reader feature */
    snprintf(t, sizeof t, "%s/feat", tmp);
    snprintf(cmd, sizeof cmd, "%s/_delta_log", t);
    REQUIRE(ft_mkdir_p(cmd, NULL) == FT_OK);
    snprintf(cmd, sizeof cmd, "%s/_delta_log/00000000000000000000.json", t);
    FILE *fp = fopen(cmd, "w");
    REQUIRE(fp);
    fputs("{\"protocol\":{\"minReaderVersion\":3,\"minWriterVersion\":7,\"readerFeatures\":[\"deletionVectors\","
          "\"futureThing\"]}}\n{\"metaData\":{\"id\":\"x\",\"format\":{\"provider\":\"parquet\"},\"schemaString\":"
          "\"{\\\"type\\\":\\\"struct\\\",\\\"fields\\\":[]}\",\"partitionColumns\":[],\"configuration\":{}}}\n",
          fp);
    fclose(fp);
    CHECK(delta_snapshot_load(t, "feat", -1, &s, &err) == FT_ERR_UNSUPPORTED);
    if (!strstr(err.msg, "futureThing"))
        fprintf(stderr, "  unknown feature: %s\n", err.msg);
    CHECK(strstr(err.msg, "futureThing") != NULL);
}

TEST(delta_add_remove_keyed_by_path_and_dv) {
    /* log-replay-dv-key-cases: the same file re-added with successive deletion vectors */
    ft_err err;
    ft_err_clear(&err);
    delta_snapshot *s = NULL;
    REQUIRE_OK(delta_snapshot_load(ft_test_fixture("data/delta/golden/log-replay-dv-key-cases/delta"), "dv-keys", -1,
                                   &s, &err),
               &err);
    CHECK_EQ_INT(s->n_files, 1);
    if (s->n_files == 1)
        CHECK(s->files[0].has_dv);
    delta_snapshot_free(s);
    /* URI-decoded paths: a path with %20 and %23 */
    REQUIRE_OK(delta_snapshot_load(ft_test_fixture("data/delta/golden/log-replay-special-characters/delta"), "special",
                                   -1, &s, &err),
               &err);
    for (size_t i = 0; i < s->n_files; i++)
        CHECK(strchr(s->files[i].rel, '%') == NULL);
    delta_snapshot_free(s);
}

TEST(delta_fuzz_entry_accepts_any_bytes) {
    static const char *inputs[] = {"", "\n\n", "{", "[]", "{\"add\":{}}", "{\"add\":{\"path\":\"a\",\"deletionVector\":{}}}",
                                   "{\"remove\":{\"path\":\"%zz\"}}", "{\"sidecar\":{\"path\":\"x\"}}", "null\n1\n\"s\""};
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++)
        (void)delta_check_commit(inputs[i], strlen(inputs[i]), NULL);
    uint64_t *rows;
    size_t n;
    static const uint8_t junk[] = {0xD1, 0x3A, 0x3A, 0x64, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x3B, 0x30, 0, 0};
    CHECK(delta_dv_decode(junk, sizeof junk, &rows, &n, NULL) != FT_OK);
}

/* ---------------------------------------------------------------- golden tables */

/* Golden tables that are not a plain latest-snapshot comparison (refs/README.md) or that
 * must fail (tested above). data-skipping-basic-stats-all-types-columnmapping-id, on that list
 * of the reference reader's, is compared: its INT96 `timestamp` column is UTC as Delta's type
 * says, and its columns are found by field id. */
static bool golden_skipped(const char *name) {
    static const char *const skip[] = {"data-reader-partition-values",
                                       "parquet-all-types",
                                       "parquet-all-types-legacy-format",
                                       "log-replay-special-characters-b",
                                       "delete-re-add-same-file-different-transactions",
                                       NULL};
    for (size_t i = 0; skip[i]; i++)
        if (!strcmp(skip[i], name))
            return true;
    return strncmp(name, "canonicalized-paths-", 20) == 0;
}

TEST(delta_golden_tables_equal_expected) {
    if (!parquet_available())
        SKIP("the Parquet reader is not in this build yet (Delta data files are Parquet)");
    const char *dir = ft_test_fixture("data/delta/golden");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls %s", dir);
    char *list = NULL;
    REQUIRE(ft_test_run(cmd, &list) == 0);
    int same = 0, differ = 0, failed = 0;
    char *save = NULL;
    for (char *name = strtok_r(list, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
        char exp[1024], tbl[1024];
        snprintf(exp, sizeof exp, "%s/%s/expected.jsonl", dir, name);
        snprintf(tbl, sizeof tbl, "%s/%s/delta", dir, name);
        if (access(exp, R_OK) != 0 || golden_skipped(name))
            continue;
        rowset got = {0}, want = {0};
        ft_err err;
        ft_err_clear(&err);
        ft_status s = rowset_from_source(&got, tbl, -1, NULL, &err);
        if (s != FT_OK) {
            char m[1600];
            ft_err_format(&err, m, sizeof m);
            fprintf(stderr, "  golden %s: %s\n", name, m);
            failed++;
        } else if (!rowset_from_jsonl(&want, exp)) {
            fprintf(stderr, "  golden %s: cannot read expected rows\n", name);
            failed++;
        } else if (rowsets_equal(&got, &want, name)) {
            same++;
        } else {
            differ++;
        }
        rowset_free(&got);
        rowset_free(&want);
    }
    ft_free(list);
    fprintf(stderr, "  golden tables: %d read identically, %d differ, %d failed\n", same, differ, failed);
    CHECK(same >= 51);
    CHECK_EQ_INT(differ, 0);
    CHECK_EQ_INT(failed, 0);
}

/* Column mapping, id mode: columns and nested struct fields are matched by Parquet field_id,
 * never by name (tools/reference/delta_id_mode.mjs: a golden table whose data files' column
 * names were swapped, and a DuckDB-written file with misleading names at every level and a
 * dropped column named like a live one's physical name); list elements and map keys and values
 * by the ids of delta.columnMapping.nested.ids (tools/reference/delta_nested_ids.mjs: lists of
 * structs, a map of structs, a list of lists of structs, every struct field misnamed; the same
 * file under a log whose map ids are other ids is refused, not read as the column). */
TEST(delta_column_mapping_id_mode_by_field_id) {
    static const char *const tables[] = {"data/delta/id_mode_swapped", "data/delta/id_mode_nested",
                                         "data/delta/id_mode_nested_ids"};
    for (size_t i = 0; i < 3; i++) {
        char tbl[512], exp[512];
        snprintf(tbl, sizeof tbl, "%s/delta", ft_test_fixture(tables[i]));
        snprintf(exp, sizeof exp, "%s/expected.jsonl", ft_test_fixture(tables[i]));
        rowset got = {0}, want = {0};
        ft_err err;
        ft_err_clear(&err);
        CHECK_OK(rowset_from_source(&got, tbl, -1, NULL, &err), &err);
        REQUIRE(rowset_from_jsonl(&want, exp));
        CHECK(want.n >= 9);
        CHECK(rowsets_equal(&got, &want, tables[i]));
        rowset_free(&got);
        rowset_free(&want);
    }
    /* data head asks for logical names */
    char *out = NULL;
    char *cmd = ft_asprintf("%s data head %s/delta --limit 2 --columns info,id", ft_test_ftune_bin(),
                            ft_test_fixture("data/delta/id_mode_nested"));
    REQUIRE(cmd);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    CHECK_STR_EQ(out, "{\"info\":{\"lang\":null},\"id\":0}\n{\"info\":{\"lang\":\"en-1\"},\"id\":1}\n");
    ft_free(out);
    ft_free(cmd);
    /* the map's key and value carry ids 11 and 12 in the file, the log says 21 and 22 */
    char stale[512];
    snprintf(stale, sizeof stale, "%s/stale", ft_test_fixture("data/delta/id_mode_nested_ids"));
    rowset got = {0};
    ft_err err;
    ft_err_clear(&err);
    CHECK(rowset_from_source(&got, stale, -1, NULL, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "the map key of col-tags has Parquet field id 11 in the file, but the table's schema gives "
                          "it id 21 (delta.columnMapping.nested.ids)") != NULL);
    rowset_free(&got);
    /* training rows of the nested-ids table: its chat column reads as the conversation */
    char tbl[512];
    snprintf(tbl, sizeof tbl, "%s/delta", ft_test_fixture("data/delta/id_mode_nested_ids"));
    ft_data_report *r = validate_path(tbl, FT_TASK_CHAT_COMPLETION);
    REQUIRE(r);
    CHECK(r->valid);
    CHECK_EQ_INT(r->n_records, 9);
    ft_data_report_free(r);
}

/* ---------------------------------------------------------------- Hugging Face caches */

static void put(const char *root, const char *rel, const char *src_or_text, bool copy) {
    char path[2048], cmd[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char *slash = strrchr(path, '/');
    *slash = 0;
    ft_mkdir_p(path, NULL);
    *slash = '/';
    if (copy) {
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src_or_text, path);
        if (system(cmd) != 0)
            ft_test_fail_(__FILE__, __LINE__, "cp failed");
    } else {
        FILE *f = fopen(path, "w");
        fputs(src_or_text, f);
        fclose(f);
    }
}

static size_t hf_count(const char *spec, char *where, size_t cap, ft_err *err) {
    hf_split_files f = {0};
    ft_status s = hf_resolve(spec, &f, err);
    size_t n = s == FT_OK ? f.n : (size_t)-1;
    if (where)
        snprintf(where, cap, "%s", s == FT_OK ? f.where : err->msg);
    hf_split_files_free(&f);
    return n;
}

TEST(hf_hub_cache_split_rules_and_datasets_cache) {
    const char *tmp = ft_test_tmpdir();
    char hub[1024], dsc[1024];
    snprintf(hub, sizeof hub, "%s/hub", tmp);
    snprintf(dsc, sizeof dsc, "%s/datasets", tmp);
    setenv("HF_HUB_CACHE", hub, 1);
    setenv("HF_DATASETS_CACHE", dsc, 1);
    const char *arrow = ft_test_fixture("data/arrow/train.arrow");
    char a[1024];
    snprintf(a, sizeof a, "%s", arrow);
    ft_err err;
    ft_err_clear(&err);
    char where[2048];
    /* sharded names with a hash suffix */
    put(hub, "datasets--org--sharded/refs/main", "abc123\n", false);
    put(hub, "datasets--org--sharded/snapshots/abc123/data/train-00000-of-00002-1a2b3c.arrow", a, true);
    put(hub, "datasets--org--sharded/snapshots/abc123/data/train-00001-of-00002-4d5e6f.arrow", a, true);
    put(hub, "datasets--org--sharded/snapshots/abc123/data/test-00000-of-00001-777777.arrow", a, true);
    put(hub, "datasets--org--sharded/snapshots/abc123/README.md", "---\nlicense: mit\n---\n# card\n", false);
    CHECK_EQ_INT(hf_count("org/sharded", where, sizeof where, &err), 2);
    CHECK_EQ_INT(hf_count("org/sharded/test", NULL, 0, &err), 1);
    CHECK(strstr(where, "abc123") != NULL);
    /* README configs win over names */
    put(hub, "datasets--org--card/refs/main", "r1", false);
    put(hub, "datasets--org--card/snapshots/r1/README.md",
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: sft/*.arrow\n  - split: "
        "test\n    path:\n    - evalset/a.arrow\n---\n",
        false);
    put(hub, "datasets--org--card/snapshots/r1/sft/x.arrow", a, true);
    put(hub, "datasets--org--card/snapshots/r1/sft/y.arrow", a, true);
    put(hub, "datasets--org--card/snapshots/r1/evalset/a.arrow", a, true);
    put(hub, "datasets--org--card/snapshots/r1/train.arrow", a, true); /* not in the card: ignored */
    CHECK_EQ_INT(hf_count("org/card/train", NULL, 0, &err), 2);
    CHECK_EQ_INT(hf_count("org/card/test", NULL, 0, &err), 1);
    /* keywords: folder names first, then file names ("valid" but not "validity") */
    put(hub, "datasets--org--kw/refs/main", "r2", false);
    put(hub, "datasets--org--kw/snapshots/r2/my_train.arrow", a, true);
    put(hub, "datasets--org--kw/snapshots/r2/dev-1.arrow", a, true);
    put(hub, "datasets--org--kw/snapshots/r2/validity.arrow", a, true);
    CHECK_EQ_INT(hf_count("org/kw", NULL, 0, &err), 1);
    CHECK_EQ_INT(hf_count("org/kw/validation", NULL, 0, &err), 1);
    /* the Parquet conversion branch when main has nothing readable */
    put(hub, "datasets--org--conv/refs/main", "m", false);
    put(hub, "datasets--org--conv/snapshots/m/data.csv", "a,b\n", false);
    put(hub, "datasets--org--conv/refs/convert/parquet", "p", false);
    put(hub, "datasets--org--conv/snapshots/p/default/train/0000.parquet", a, true);
    CHECK_EQ_INT(hf_count("org/conv", where, sizeof where, &err), 1);
    CHECK(strstr(where, "convert/parquet") != NULL);
    /* the datasets cache: the newest folder */
    put(dsc, "org___cached/default/0.0.0/old/cached-train.arrow", a, true);
    put(dsc, "org___cached/default/0.0.0/new/cached-train-00000-of-00002.arrow", a, true);
    put(dsc, "org___cached/default/0.0.0/new/cached-train-00001-of-00002.arrow", a, true);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "touch -d '2020-01-01' %s/org___cached/default/0.0.0/old", dsc);
    CHECK(system(cmd) == 0);
    CHECK_EQ_INT(hf_count("org/cached/train", where, sizeof where, &err), 2);
    CHECK(strstr(where, "new") != NULL);
    /* a revision: the commit, a unique prefix of 4+ characters, a branch the cache has a ref for;
     * the Parquet conversion's snapshot by its commit too */
    CHECK_EQ_INT(hf_count("org/sharded@abc123", where, sizeof where, &err), 2);
    CHECK(strstr(where, "snapshot abc123") != NULL);
    CHECK_EQ_INT(hf_count("org/sharded/test@abc1", NULL, 0, &err), 1);
    CHECK_EQ_INT(hf_count("org/sharded@main", NULL, 0, &err), 2);
    CHECK_EQ_INT(hf_count("org/conv@p", where, sizeof where, &err), 1);
    CHECK_EQ_INT(hf_count("org/sharded@zzzz", NULL, 0, &err), (size_t)-1);
    CHECK(err.code == FT_ERR_NOT_FOUND && strstr(err.msg, "revision 'zzzz'") && strstr(err.msg, "it has: abc123") &&
          strstr(err.msg, "huggingface-cli download --repo-type dataset org/sharded --revision zzzz"));
    CHECK_EQ_INT(hf_count("org/sharded@abc", NULL, 0, &err), (size_t)-1); /* too short to be a prefix */
    {
        hf_split_files f = {0};
        CHECK_OK(hf_resolve("org/kw/validation", &f, &err), &err);
        CHECK(f.rev && !strcmp(f.rev, "r2"));
        hf_split_files_free(&f);
    }
    /* what a run records: the commit read now; nothing for a pinned id or the datasets cache */
    char *pinned = NULL;
    CHECK_OK(ft_data_source_pin("org/sharded/test", &pinned, &err), &err);
    CHECK(pinned && !strcmp(pinned, "org/sharded/test@abc123"));
    ft_free(pinned);
    CHECK_OK(ft_data_source_pin("org/conv", &pinned, &err), &err);
    CHECK(pinned && !strcmp(pinned, "org/conv@p"));
    ft_free(pinned);
    CHECK_OK(ft_data_source_pin("org/sharded@abc123", &pinned, &err), &err);
    CHECK(!pinned);
    /* not there: where ftune looked and how to download */
    CHECK_EQ_INT(hf_count("org/missing/train", NULL, 0, &err), (size_t)-1);
    CHECK(err.code == FT_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "huggingface-cli download --repo-type dataset org/missing") != NULL);
    CHECK(strstr(err.msg, "datasets--org--missing") != NULL);
    CHECK_OK(ft_data_source_pin("org/cached/train", &pinned, &err), &err);
    CHECK(!pinned);
    /* and through the reader, for training */
    ft_data_report *r = validate_path("org/sharded/train", FT_TASK_CHAT_COMPLETION);
    if (r) {
        CHECK(r->valid);
        CHECK_EQ_INT(r->n_records, 6);
        CHECK(strstr(r->sources[0], "org/sharded/train: data/train-00000-of-00002-1a2b3c.arrow") != NULL);
        ft_data_report_free(r);
    }
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_DATASETS_CACHE");
}

TEST(table_names_map_under_ftune_home) {
    const char *tmp = ft_test_tmpdir();
    char home[1024], cmd[2048];
    snprintf(home, sizeof home, "%s/home", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p %s/tables/main/default && cp -r %s %s/tables/main/default/dv", home,
             ft_test_fixture("data/delta/table-with-dv-small"), home);
    REQUIRE(system(cmd) == 0);
    const char *old = getenv("FTUNE_HOME");
    char *saved = old ? ft_strdup(old) : NULL;
    setenv("FTUNE_HOME", home, 1);
    src_set *set = NULL;
    ft_err err;
    ft_err_clear(&err);
    CHECK_OK(src_set_open("main.default.dv", -1, &set, &err), &err);
    if (set) {
        CHECK_EQ_INT(set->n, 1);
        CHECK(strstr(set->summary, "version 1") != NULL);
        CHECK(strstr(set->files[0].name, "main.default.dv@v1/part-00000") == set->files[0].name);
    }
    src_set_free(set);
    set = NULL;
    CHECK_OK(src_set_open("main.default.dv@0", -1, &set, &err), &err);
    if (set)
        CHECK_EQ_INT(set->delta->version, 0);
    src_set_free(set);
    set = NULL;
    CHECK(src_set_open("main.default.nope", -1, &set, &err) == FT_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "tables/main/default/nope") != NULL);
    if (saved) {
        setenv("FTUNE_HOME", saved, 1);
        ft_free(saved);
    } else {
        unsetenv("FTUNE_HOME");
    }
}

/* ---------------------------------------------------------------- the command line */

static int ftune_cmd(char **out, const char *env, const char *args) {
    char *bin = ft_path_canonical(ft_test_ftune_bin());
    char *cmd = ft_asprintf("%s '%s' %s 2>&1", env, bin, args);
    int rc = ft_test_run(cmd, out);
    ft_free(cmd);
    ft_free(bin);
    return rc;
}

TEST(cli_validate_table_sources) {
    char *o = NULL;
    char args[2048];
    /* an Arrow file for each task; the summary says what was read */
    static const char *const tasks[] = {"CHAT_COMPLETION", "INSTRUCTION_FINETUNE", "CONTINUED_PRETRAIN"};
    for (int t = 0; t < 3; t++) {
        snprintf(args, sizeof args, "validate --task-type %s %s", tasks[t], ft_test_fixture("data/arrow/train.arrow"));
        CHECK_EQ_INT(ftune_cmd(&o, "", args), 0);
        CHECK(o && strstr(o, "valid: 3 records in 1 file") && strstr(o, "read: file "));
        free(o);
        /* bad rows: the file, then the row (0-based), exit 2 */
        snprintf(args, sizeof args, "validate --task-type %s %s", tasks[t],
                 ft_test_fixture("data/arrow/train_bad.arrow"));
        CHECK_EQ_INT(ftune_cmd(&o, "", args), 2);
        CHECK(o && strstr(o, "train_bad.arrow: error: row 1: "));
        free(o);
        /* --json: "row" says it, "line" is 0 */
        snprintf(args, sizeof args, "validate --json --task-type %s %s", tasks[t],
                 ft_test_fixture("data/arrow/train_bad.arrow"));
        CHECK_EQ_INT(ftune_cmd(&o, "", args), 2);
        json_t *j = o ? json_loads(o, 0, NULL) : NULL;
        json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
        CHECK(e0 && json_integer_value(json_object_get(e0, "row")) == 1 &&
              json_integer_value(json_object_get(e0, "line")) == 0);
        json_decref(j);
        free(o);
    }
    /* a table version for something that is not a Delta table */
    snprintf(args, sizeof args, "validate --table-version 1 %s", ft_test_fixture("data/arrow/train.arrow"));
    CHECK(ftune_cmd(&o, "", args) != 0);
    CHECK(o && strstr(o, "not a Delta table"));
    free(o);
    /* an HF dataset id not in the caches: where ftune looked and how to download */
    char env[1024];
    snprintf(env, sizeof env, "HF_HUB_CACHE='%s/hub' HF_DATASETS_CACHE='%s/ds'", ft_test_tmpdir(), ft_test_tmpdir());
    CHECK(ftune_cmd(&o, env, "validate someorg/somedata/train") != 0);
    CHECK(o && strstr(o, "huggingface-cli download --repo-type dataset someorg/somedata"));
    free(o);
    /* bad rows of an HF dataset: dataset, split, file in the repository, row */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "h=%s/hub2/datasets--org--bad && mkdir -p $h/refs $h/snapshots/r1/data && printf r1 > $h/refs/main && "
             "cp %s/part-00000.parquet $h/snapshots/r1/data/validation-00000-of-00001.parquet",
             ft_test_tmpdir(), ft_test_fixture("data/delta/train_table"));
    REQUIRE(system(cmd) == 0);
    snprintf(env, sizeof env, "HF_HUB_CACHE='%s/hub2'", ft_test_tmpdir());
    CHECK_EQ_INT(ftune_cmd(&o, env, "validate --task-type CHAT_COMPLETION org/bad/validation"), 2);
    CHECK(o && strstr(o, "org/bad/validation: data/validation-00000-of-00001.parquet: error: Hugging Face dataset "
                         "org/bad, split validation, file data/validation-00000-of-00001.parquet, row 4: "));
    free(o);
}

/* ---------------------------------------------------------------- delta-kernel-rs tables */

static int64_t count_rows(const char *spec, int64_t version, int64_t *n_null_first, ft_err *err) {
    src_set *set;
    if (src_set_open(spec, version, &set, err) != FT_OK)
        return -1;
    const char *col = set->delta && set->delta->n_fields ? set->delta->fields[0].name : NULL;
    src_cursor *c = NULL;
    int64_t n = 0;
    if (n_null_first)
        *n_null_first = 0;
    if (!col || src_cursor_open(set, &col, 1, &c, err) != FT_OK)
        n = -1;
    while (n >= 0) {
        const data_value *cells;
        src_pos pos;
        bool done;
        if (src_cursor_next(c, &cells, &pos, &done, err) != FT_OK) {
            n = -1;
            break;
        }
        if (done)
            break;
        n++;
        if (n_null_first && cells[0].kind == DATA_V_NULL)
            (*n_null_first)++;
    }
    src_cursor_free(c);
    src_set_free(set);
    return n;
}

/* Rows the writer says the live files hold: numRecords of each add minus its deletion vector's
 * cardinality (both from the log, written by Spark). */
static int64_t rows_by_stats(const char *spec) {
    src_set *set;
    if (src_set_open(spec, -1, &set, NULL) != FT_OK)
        return -2;
    int64_t n = 0;
    for (size_t i = 0; i < set->delta->n_files; i++) {
        const delta_file *f = &set->delta->files[i];
        if (f->n_records < 0) {
            n = -3;
            break;
        }
        n += f->n_records - (f->has_dv ? f->dv.cardinality : 0);
    }
    src_set_free(set);
    return n;
}

TEST(delta_kernel_tables) {
    if (!parquet_available())
        SKIP("the Parquet reader is not in this build yet (Delta data files are Parquet)");
    ft_err err;
    ft_err_clear(&err);
    static const char *const by_stats[] = {"with-short-dv", "table-without-dv-small", "mixed-nulls",
                                           "basic_partitioned", "compacted-log-files-table", NULL};
    for (size_t i = 0; by_stats[i]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "data/delta/kernel/%s", by_stats[i]);
        const char *t = ft_test_fixture(rel);
        int64_t want = rows_by_stats(t), nulls = 0;
        int64_t got = count_rows(t, -1, by_stats[i][0] == 'b' ? &nulls : NULL, &err);
        if (got != want || want <= 0)
            ft_test_fail_(__FILE__, __LINE__, "%s: %lld rows read, the log's stats say %lld (%s)", by_stats[i],
                          (long long)got, (long long)want, err.msg);
        if (by_stats[i][0] == 'b') /* the __HIVE_DEFAULT_PARTITION__ partition: letter is null */
            CHECK(nulls >= 1);
    }
    /* v2 checkpoints with JSON and Parquet sidecars: delta-kernel-rs expects ids {0 x3} + 0..29 +
     * 0..99 + 0..99 + 0..999 (its generate_sidecar_expected_data) */
    static const char *const v2[] = {"v2-checkpoints-json-with-sidecars", "v2-checkpoints-parquet-with-sidecars"};
    for (int k = 0; k < 2; k++) {
        char rel[256];
        snprintf(rel, sizeof rel, "data/delta/kernel/%s", v2[k]);
        rowset got = {0}, want = {0};
        CHECK_OK(rowset_from_source(&got, ft_test_fixture(rel), -1, NULL, &err), &err);
        static const int ranges[] = {1, 1, 1, 30, 100, 100, 1000};
        for (int r = 0; r < 7; r++)
            for (int id = 0; id < ranges[r]; id++) {
                json_t *o = json_pack("{s:f}", "id", (double)id);
                rowset_add(&want, o);
                json_decref(o);
            }
        CHECK(rowsets_equal(&got, &want, v2[k]));
        rowset_free(&got);
        rowset_free(&want);
    }
    /* a multi-part checkpoint (3 parts); a checkpoint without _last_checkpoint */
    delta_snapshot *s = NULL;
    CHECK_OK(delta_snapshot_load(ft_test_fixture("data/delta/kernel/v1-multi-part-struct-stats-only"), "mp", -1, &s,
                                 &err),
             &err);
    if (s)
        CHECK_EQ_INT(s->version, 5);
    delta_snapshot_free(s);
    s = NULL;
    CHECK_OK(delta_snapshot_load(ft_test_fixture("data/delta/kernel/with_checkpoint_no_last_checkpoint"), "nolc", -1,
                                 &s, &err),
             &err);
    if (s) {
        CHECK_EQ_INT(s->version, 3);
        CHECK(s->n_files >= 1);
    }
    delta_snapshot_free(s);
    /* a missing checkpoint part: with the commits before it gone too, an error naming the part */
    const char *tmp = ft_test_tmpdir();
    char cmd[2048], t[1024];
    snprintf(t, sizeof t, "%s/mp", tmp);
    snprintf(cmd, sizeof cmd, "cp -r %s %s && rm %s/_delta_log/00000000000000000005.checkpoint.0000000002.0000000003.parquet %s/_delta_log/00000000000000000000.json",
             ft_test_fixture("data/delta/kernel/v1-multi-part-struct-stats-only"), t, t, t);
    REQUIRE(system(cmd) == 0);
    s = NULL;
    CHECK(delta_snapshot_load(t, "mp", -1, &s, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "missing part 2 of 3") != NULL);
    /* column mapping of partition columns (logs only): physical names resolve */
    static const char *const cm[] = {"id", "name", "none"};
    for (int k = 0; k < 3; k++) {
        char rel[256];
        snprintf(rel, sizeof rel, "data/delta/kernel/partition_cm/%s", cm[k]);
        s = NULL;
        CHECK_OK(delta_snapshot_load(ft_test_fixture(rel), cm[k], -1, &s, &err), &err);
        if (s)
            CHECK_EQ_INT(s->cm_mode, k == 0 ? 2 : k == 1 ? 1 : 0);
        delta_snapshot_free(s);
    }
}

/* ---------------------------------------------------------------- ftune create on every source */

#include "train/tiny.h"

/* ---------------------------------------------------------------- training runs on table sources
 * Each test below trains the tiny model on tables under a home and a hub cache of its own. */

typedef struct {
    char home[1024], model[1024], hub[1024];
    char *bin; /* the ftune binary's canonical path */
} run_env;

/* The test's home, hub cache and tiny model; false (after a failed check) when the model cannot
 * be written. */
static bool run_env_init(run_env *e) {
    const char *tmp = ft_test_tmpdir();
    snprintf(e->home, sizeof e->home, "%s/home", tmp);
    snprintf(e->model, sizeof e->model, "%s/model", tmp);
    snprintf(e->hub, sizeof e->hub, "%s/hub", tmp);
    e->bin = NULL;
    ft_err err;
    ft_err_clear(&err);
    ft_status s = tiny_model_write(e->model, 3, &err);
    CHECK_OK(s, &err);
    if (s != FT_OK)
        return false;
    e->bin = ft_path_canonical(ft_test_ftune_bin());
    return e->bin != NULL;
}

/* `ftune create` of one batch-2, context-64, one-thread run named `name` on `source` as `task`,
 * with `extra` flags, in e's home and hub cache; its output into *out (free()). */
static int run_create(const run_env *e, const char *source, const char *task, const char *name, const char *extra,
                      char **out) {
    char *cmd = ft_asprintf("FTUNE_HOME='%s' HF_HUB_CACHE='%s' USER=tester '%s' create --model '%s' "
                            "--train-data-path '%s' --task-type %s --register-to main.test --global-batch-size 2 "
                            "--micro-batch-size 2 --context-length 64 --threads 1 --name %s %s 2>&1",
                            e->home, e->hub, e->bin, e->model, source, task, name, extra);
    *out = NULL;
    int rc = ft_test_run(cmd, out);
    ft_free(cmd);
    return rc;
}

/* A worker runs the queue until idle; then the run `name` must be COMPLETED (file:line of the
 * caller in the failure). */
static void run_queue_until_completed(const run_env *e, const char *name, const char *file, int line) {
    char *cmd = ft_asprintf(
        "export FTUNE_HOME='%s' HF_HUB_CACHE='%s' USER=tester; '%s' worker --until-idle --quiet >/dev/null 2>&1; "
        "for i in $(seq 300); do '%s' list 2>&1 | grep -q -e PENDING -e QUEUED -e STARTING -e RUNNING -e TERMINATING "
        "|| break; sleep 1; done; '%s' get %s 2>&1",
        e->home, e->hub, e->bin, e->bin, e->bin, name);
    char *out = NULL;
    ft_test_run(cmd, &out);
    if (!out || !strstr(out, "COMPLETED"))
        ft_test_fail_(file, line, "the run %s did not complete: %s", name, out ? out : "");
    free(out);
    ft_free(cmd);
}

/* The shell line that makes main.default.chats (version 0) in `home`: the schema of the Delta
 * table `src` (data/delta/train_table) and its good data file part-00001. */
static char *delta_chats_cmd(const char *home, const char *src) {
    return ft_asprintf("t=%s/tables/main/default/chats && mkdir -p $t/_delta_log && cp %s/part-00001.parquet $t/ && "
                       "{ head -2 %s/_delta_log/00000000000000000000.json; cat %s/_delta_log/00000000000000000002.json; } "
                       "> $t/_delta_log/00000000000000000000.json",
                       home, src, src, src);
}

TEST(cli_create_from_delta_hf_and_parquet_folder_each_task) {
    if (!parquet_available())
        SKIP("the Parquet reader is not in this build yet (these sources hold Parquet files)");
    if (ft_test_sanitized())
        SKIP("nine training runs: the optimized build runs them");
    run_env e;
    REQUIRE(run_env_init(&e));
    char cmd[4096], folder[1024];
    snprintf(folder, sizeof folder, "%s/pq", ft_test_tmpdir());
    const char *table = ft_test_fixture("data/delta/train_table");
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/tables/main/default %s/datasets--org--tiny/refs %s/datasets--org--tiny/snapshots/r1/data %s "
             "&& cp -r %s %s/tables/main/default/train && printf r1 > %s/datasets--org--tiny/refs/main "
             "&& cp %s/part-00001.parquet %s/datasets--org--tiny/snapshots/r1/data/train-00000-of-00001.parquet "
             "&& cp %s/part-00001.parquet %s/a.parquet && cp %s/part-00001.parquet %s/b.parquet",
             e.home, e.hub, e.hub, folder, table, e.home, e.hub, table, e.hub, table, folder, table, folder);
    REQUIRE(system(cmd) == 0);
    static const char *const tasks[] = {"CHAT_COMPLETION", "INSTRUCTION_FINETUNE", "CONTINUED_PRETRAIN"};
    const char *sources[] = {"main.default.train", "org/tiny/train", folder};
    for (int s = 0; s < 3; s++)
        for (int t = 0; t < 3; t++) {
            char *out = NULL, name[32];
            snprintf(name, sizeof name, "run%d%d", s, t);
            int rc = run_create(&e, sources[s], tasks[t], name,
                                "--learning-rate 1e-3 --training-duration 1ba --data-prep-cluster-id 0123-abc --json",
                                &out);
            /* the chat rows of the table's version 2 hold one bad row (row 5 of part-00000, as DuckDB's
             * file_row_number counts): refused, located */
            if (s == 0 && t == 0) {
                CHECK(rc != 0);
                CHECK(out && strstr(out, "main.default.train@v2/part-00000.parquet: error: Delta table "
                                         "main.default.train version 2, data file part-00000.parquet, row 5: "));
            } else if (rc != 0 || !out || !strstr(out, "\"COMPLETED\"")) {
                ft_test_fail_(__FILE__, __LINE__, "create from %s as %s: rc %d: %.2000s", sources[s], tasks[t], rc,
                              out ? out : "");
            }
            free(out);
        }
    /* chat from a Delta table without bad rows (train_table's schema and its good file) */
    char *out = NULL, *mk = delta_chats_cmd(e.home, table);
    int rc = system(mk);
    ft_free(mk);
    REQUIRE(rc == 0);
    rc = run_create(&e, "main.default.chats", "CHAT_COMPLETION", "chats", "--training-duration 1ba --json", &out);
    if (rc != 0 || !out || !strstr(out, "\"COMPLETED\""))
        ft_test_fail_(__FILE__, __LINE__, "chat from a Delta table: %.2000s", out ? out : "");
    free(out);
    /* chat from the version before the bad row appeared is refused too (rows 4 and 5), and
     * --table-version reads it */
    out = NULL;
    snprintf(cmd, sizeof cmd,
             "FTUNE_HOME='%s' USER=tester '%s' validate --table-version 0 main.default.train 2>&1", e.home, e.bin);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    CHECK(out && strstr(out, "main.default.train@v0/part-00000.parquet: error: Delta table main.default.train version 0, "
                             "data file part-00000.parquet, row 4: ") &&
          strstr(out, "main.default.train@v0/part-00000.parquet: error: Delta table main.default.train version 0, "
                      "data file part-00000.parquet, row 5: "));
    free(out);
    ft_free(e.bin);
}

/* A run records the Delta table version it validated (`table@N`, shown by `ftune get`), and its
 * worker reads that snapshot even after the table moved on (here: to a version without rows). */
TEST(cli_create_on_delta_pins_the_table_version) {
    if (!parquet_available())
        SKIP("the Parquet reader is not in this build yet (Delta data files are Parquet)");
    if (ft_test_sanitized())
        SKIP("a training run: the optimized build runs it");
    run_env e;
    REQUIRE(run_env_init(&e));
    char cmd[8192];
    /* version 0 of main.default.chats: train_table's schema and its good file part-00001 */
    char *mk = delta_chats_cmd(e.home, ft_test_fixture("data/delta/train_table"));
    int rc = system(mk);
    ft_free(mk);
    REQUIRE(rc == 0);
    char *out = NULL;
    rc = run_create(&e, "main.default.chats", "CHAT_COMPLETION", "pinned",
                    "--eval-data-path main.default.chats --training-duration 2ba --detach --quiet", &out);
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "create: rc %d: %s", rc, out ? out : "");
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd, "FTUNE_HOME='%s' USER=tester '%s' get pinned 2>&1", e.home, e.bin);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    CHECK(out && strstr(out, "train_data_path      main.default.chats@0\n"));
    CHECK(out && strstr(out, "eval_data_path       main.default.chats@0\n"));
    free(out);
    /* version 1 removes the only data file: the latest snapshot has no rows */
    snprintf(cmd, sizeof cmd,
             "printf '%%s\\n' '{\"remove\":{\"path\":\"part-00001.parquet\",\"deletionTimestamp\":2,"
             "\"dataChange\":true}}' > %s/tables/main/default/chats/_delta_log/00000000000000000001.json",
             e.home);
    REQUIRE(system(cmd) == 0);
    out = NULL;
    snprintf(cmd, sizeof cmd, "FTUNE_HOME='%s' '%s' validate --task-type CHAT_COMPLETION main.default.chats 2>&1",
             e.home, e.bin);
    CHECK(ft_test_run(cmd, &out) != 0);
    CHECK(out && strstr(out, "version 1") && strstr(out, "no data files"));
    free(out);
    run_queue_until_completed(&e, "pinned", __FILE__, __LINE__);
    ft_free(e.bin);
}

/* A run on an HF dataset of the hub cache reads the snapshot refs/main named at create time, as a
 * Delta run reads its table@N: `ftune create` records org/name/split@<commit>, and the queued
 * worker trains on those rows after refs/main has moved to a snapshot with a bad row (which
 * validation of the unpinned id now refuses). */
TEST(cli_create_on_hf_dataset_pins_the_revision) {
    if (ft_test_sanitized())
        SKIP("a training run: the optimized build runs it");
    run_env e;
    REQUIRE(run_env_init(&e));
    char cmd[8192];
    const char *c1 = "1111111111111111111111111111111111111111", *c2 = "2222222222222222222222222222222222222222";
    snprintf(cmd, sizeof cmd,
             "d=%s/datasets--org--moving && mkdir -p $d/refs $d/snapshots/%s/data $d/snapshots/%s/data && "
             "printf %s > $d/refs/main && cp %s $d/snapshots/%s/data/train-00000-of-00001.arrow && "
             "cp %s $d/snapshots/%s/data/train-00000-of-00001.arrow",
             e.hub, c1, c2, c1, ft_test_fixture("data/arrow/train.arrow"), c1,
             ft_test_fixture("data/arrow/train_bad.arrow"), c2);
    REQUIRE(system(cmd) == 0);
    char *out = NULL;
    int rc = run_create(&e, "org/moving/train", "CHAT_COMPLETION", "hfpinned",
                        "--eval-data-path org/moving --training-duration 2ba --detach --quiet", &out);
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "create: rc %d: %s", rc, out ? out : "");
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd, "FTUNE_HOME='%s' USER=tester '%s' get hfpinned 2>&1", e.home, e.bin);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    char want[256];
    snprintf(want, sizeof want, "train_data_path      org/moving/train@%s\n", c1);
    CHECK(out && strstr(out, want));
    snprintf(want, sizeof want, "eval_data_path       org/moving@%s\n", c1);
    CHECK(out && strstr(out, want));
    free(out);
    /* refs/main moves on to a snapshot whose row 1 has no assistant answer */
    snprintf(cmd, sizeof cmd, "printf %s > %s/datasets--org--moving/refs/main", c2, e.hub);
    REQUIRE(system(cmd) == 0);
    out = NULL;
    snprintf(cmd, sizeof cmd, "HF_HUB_CACHE='%s' '%s' validate --task-type CHAT_COMPLETION org/moving/train 2>&1", e.hub,
             e.bin);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    CHECK(out && strstr(out, "row 1: ") && strstr(out, "snapshot 222222222222"));
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd, "HF_HUB_CACHE='%s' '%s' validate --task-type CHAT_COMPLETION org/moving/train@%.7s 2>&1",
             e.hub, e.bin, c1);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    CHECK(out && strstr(out, "snapshot 111111111111"));
    free(out);
    run_queue_until_completed(&e, "hfpinned", __FILE__, __LINE__);
    ft_free(e.bin);
}

/* The same through Arrow files in the hub cache (no Parquet needed): table names and HF ids reach
 * the trainer's reader as they are, not as paths. */
TEST(cli_create_from_hf_arrow_each_task) {
    if (ft_test_sanitized())
        SKIP("three training runs: the optimized build runs them");
    run_env e;
    REQUIRE(run_env_init(&e));
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/datasets--org--tinyarrow/refs %s/datasets--org--tinyarrow/snapshots/r1/data && printf r1 > "
             "%s/datasets--org--tinyarrow/refs/main && cp %s %s/datasets--org--tinyarrow/snapshots/r1/data/"
             "train-00000-of-00001.arrow",
             e.hub, e.hub, e.hub, ft_test_fixture("data/arrow/train.arrow"), e.hub);
    REQUIRE(system(cmd) == 0);
    static const char *const tasks[] = {"CHAT_COMPLETION", "INSTRUCTION_FINETUNE", "CONTINUED_PRETRAIN"};
    for (int t = 0; t < 3; t++) {
        char *out = NULL, name[32];
        snprintf(name, sizeof name, "arrow%d", t);
        int rc = run_create(&e, "org/tinyarrow/train", tasks[t], name,
                            "--learning-rate 1e-3 --training-duration 1ba --data-prep-cluster-id 0123-abc --json", &out);
        if (rc != 0 || !out || !strstr(out, "\"COMPLETED\""))
            ft_test_fail_(__FILE__, __LINE__, "create from org/tinyarrow/train as %s: rc %d: %.2000s", tasks[t], rc,
                          out ? out : "");
        free(out);
    }
    ft_free(e.bin);
}
