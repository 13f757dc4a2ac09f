/* tests/data/test_validate.c: validation reports every problem at its exact line and column
 * (tests/fixtures/data/errors*.jsonl hold one example of every kind), readers handle folders,
 * BOM, CRLF, blank lines, over-long lines and symlink loops. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ftune/data.h"
#include "test.h"

typedef struct got {
    ft_data_issue is[128];
    char msg[128][700];
    char file[128][256];
    int n;
} got;

static void keep(void *ctx, const ft_data_issue *is) {
    got *g = ctx;
    if (g->n >= 128)
        return;
    g->is[g->n] = *is;
    snprintf(g->msg[g->n], sizeof g->msg[0], "%s", is->message);
    snprintf(g->file[g->n], sizeof g->file[0], "%s", is->file);
    g->is[g->n].message = g->msg[g->n];
    g->is[g->n].file = g->file[g->n];
    g->n++;
}

typedef struct want {
    int64_t line, column;
    ft_issue_level level;
    const char *substr;
} want;

static void check_issues(const got *g, const want *w, int n) {
    CHECK_EQ_INT(g->n, n);
    for (int i = 0; i < n && i < g->n; i++) {
        if (g->is[i].line != w[i].line || g->is[i].column != w[i].column || g->is[i].level != w[i].level ||
            !strstr(g->is[i].message, w[i].substr))
            ft_test_fail_(__FILE__, __LINE__, "issue %d: got %lld:%lld %s \"%s\", expected %lld:%lld %s \"%s\"", i,
                          (long long)g->is[i].line, (long long)g->is[i].column,
                          g->is[i].level ? "warning" : "error", g->is[i].message, (long long)w[i].line,
                          (long long)w[i].column, w[i].level ? "warning" : "error", w[i].substr);
    }
}

static ft_data_report *run(const char *path, ft_task_type task, size_t max_line, got *g) {
    ft_validate_params p;
    ft_validate_default_params(&p, task);
    if (max_line)
        p.reader.max_line_bytes = max_line;
    p.on_issue = keep;
    p.on_issue_ctx = g;
    p.threads = 2;
    ft_data_report *r = NULL;
    ft_err err;
    ft_err_clear(&err);
    ft_status s = ft_data_validate(path, &p, &r, NULL, &err);
    if (s != FT_OK)
        ft_test_fail_(__FILE__, __LINE__, "validate %s: %s", path, err.msg);
    return r;
}

#define E FT_ISSUE_ERROR
#define W FT_ISSUE_WARNING

TEST(validate_chat_every_error_kind) {
    static got g;
    memset(&g, 0, sizeof g);
    ft_data_report *r = run(ft_test_fixture("data/errors.jsonl"), FT_TASK_CHAT_COMPLETION, 4096, &g);
    REQUIRE(r);
    static const want w[] = {
        {2, 49, E, "invalid JSON"},
        {3, 1, E, "expected a JSON object"},
        {4, 1, E, "missing \"messages\""},
        {5, 14, E, "\"messages\" must be a list"},
        {6, 14, E, "\"messages\" is empty"},
        {7, 15, E, "messages[0] must be an object"},
        {8, 15, E, "has no \"role\""},
        {9, 15, E, "has no \"content\""},
        {10, 24, E, "role must be a string"},
        {11, 24, E, "unknown role \"bot\""},
        {12, 59, E, "system message may only come first"},
        {13, 59, E, "must alternate"},
        {14, 14, E, "no assistant message"},
        {15, 102, E, "last message must be from the assistant"},
        {16, 43, E, "content must be a string, found null"},
        {17, 47, E, "invalid UTF-8: byte 0xE9"},
        {18, 43, E, "lone surrogate"},
        {19, 1, E, "over-long line"},
        {20, 94, E, "duplicate object key"},
        {21, 83, W, "content is empty"},
        {22, 2, W, "unexpected key \"id\""},
        {22, 58, W, "unexpected key \"name\""},
        {23, 1, E, "INSTRUCTION_FINETUNE"},
    };
    check_issues(&g, w, (int)(sizeof w / sizeof *w));
    CHECK(!r->valid);
    CHECK_EQ_INT(r->n_records, 24); /* line 24 is blank */
    CHECK_EQ_INT(r->n_valid_records, 4);
    CHECK_EQ_INT(r->n_errors, 20);
    CHECK_EQ_INT(r->n_warnings, 3);
    /* the byte offset of the invalid byte: line 17 starts after 16 lines */
    CHECK_EQ_INT(g.is[15].offset, 1253);
    ft_data_report_free(r);
}

TEST(validate_ift_every_error_kind_bom_crlf) {
    static got g;
    memset(&g, 0, sizeof g);
    ft_data_report *r = run(ft_test_fixture("data/errors_ift.jsonl"), FT_TASK_INSTRUCTION_FINETUNE, 0, &g);
    REQUIRE(r);
    static const want w[] = {
        {2, 1, E, "missing \"response\""},
        {3, 1, E, "missing \"prompt\""},
        {4, 39, E, "both \"response\" and \"completion\""},
        {5, 12, E, "\"prompt\" must be a string, found a list"},
        {6, 32, E, "\"completion\" must be a string, found a number"},
        {7, 30, W, "\"response\" is empty"},
        {7, 34, W, "unexpected key \"source\""},
        {8, 1, E, "CHAT_COMPLETION"},
        {9, 1, E, "expected a JSON object"},
    };
    check_issues(&g, w, (int)(sizeof w / sizeof *w));
    CHECK_EQ_INT(r->n_records, 9);
    CHECK_EQ_INT(r->n_valid_records, 2);
    ft_data_report_free(r);
}

TEST(validate_empty_file_and_missing_path) {
    static got g;
    memset(&g, 0, sizeof g);
    ft_data_report *r = run(ft_test_fixture("data/empty.jsonl"), FT_TASK_CHAT_COMPLETION, 0, &g);
    REQUIRE(r);
    static const want w[] = {{1, 1, E, "empty file"}};
    check_issues(&g, w, 1);
    CHECK(!r->valid);
    ft_data_report_free(r);

    ft_validate_params p;
    ft_validate_default_params(&p, FT_TASK_CHAT_COMPLETION);
    ft_err err;
    ft_err_clear(&err);
    CHECK_EQ_INT(ft_data_validate("/nonexistent/data.jsonl", &p, &r, NULL, &err), FT_ERR_NOT_FOUND);
    /* a Delta table name that names no table: where ftune looked */
    CHECK_EQ_INT(ft_data_validate("main.sales.chats", &p, &r, NULL, &err), FT_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "tables/main/sales/chats") != NULL);
}

static void write_file(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        ft_test_fail_(__FILE__, __LINE__, "cannot write %s", path);
        return;
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

TEST(reader_folder_sorted_recursive_loop_safe) {
    const char *d = ft_test_tmpdir();
    char p[1024];
    snprintf(p, sizeof p, "%s/b", d);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/b/sub", d);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/b/sub/loop", d);
    CHECK(symlink("..", p) == 0); /* b/sub/loop -> b: a cycle */
    const char *rec = "{\"prompt\": \"p\", \"response\": \"r\"}\n";
    snprintf(p, sizeof p, "%s/z.jsonl", d);
    write_file(p, rec, strlen(rec));
    snprintf(p, sizeof p, "%s/b/sub/a.jsonl", d);
    const char *a = "\n\n{\"prompt\": \"p\", \"response\": \"r\"}\r\n  \n";
    write_file(p, a, strlen(a));
    snprintf(p, sizeof p, "%s/b-c.jsonl", d);
    write_file(p, rec, strlen(rec));
    snprintf(p, sizeof p, "%s/notes.txt", d);
    write_file(p, "ignored", 7);
    ft_reader *r = NULL;
    ft_err err;
    ft_err_clear(&err);
    REQUIRE_OK(ft_reader_open(d, FT_TASK_INSTRUCTION_FINETUNE, NULL, &r, &err), &err);
    CHECK_EQ_INT(r->n_sources, 3);
    if (r->n_sources == 3) { /* sorted by path bytes: "b-c" < "b/sub" ('-' < '/') < "z" */
        CHECK(strstr(r->source_names[0], "/b-c.jsonl") != NULL);
        CHECK(strstr(r->source_names[1], "/b/sub/a.jsonl") != NULL);
        CHECK(strstr(r->source_names[2], "/z.jsonl") != NULL);
    }
    ft_record rec_out;
    bool done;
    int n = 0;
    int64_t lines[8];
    while (ft_reader_next(r, &rec_out, &done, &err) == FT_OK && !done && n < 8) {
        CHECK_EQ_INT(rec_out.kind, FT_RECORD_JSON_TEXT);
        CHECK(rec_out.len == strlen(rec) - 1); /* no CR, no LF */
        lines[n++] = rec_out.loc.line;
    }
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(lines[1], 3); /* two blank lines skipped, numbering kept */
    /* fetch by location gives the same bytes */
    ft_buf scratch = {0};
    ft_data_loc loc = {1, 3, 2, (int64_t)strlen(rec) - 1};
    REQUIRE_OK(ft_reader_fetch(r, &loc, &scratch, &rec_out, &err), &err);
    CHECK(rec_out.len == strlen(rec) - 1 && memcmp(rec_out.data, rec, rec_out.len) == 0);
    ft_buf_free(&scratch);
    ft_reader_free(r);

    /* CPT: only .txt files; the same loop is safe */
    REQUIRE_OK(ft_reader_open(d, FT_TASK_CONTINUED_PRETRAIN, NULL, &r, &err), &err);
    CHECK_EQ_INT(r->n_sources, 1);
    ft_reader_free(r);
}

TEST(reader_over_long_line_bounded) {
    const char *d = ft_test_tmpdir();
    char p[1024];
    snprintf(p, sizeof p, "%s/long.jsonl", d);
    size_t n = 300000;
    char *big = malloc(n + 200);
    REQUIRE(big);
    size_t k = (size_t)snprintf(big, 200, "{\"prompt\": \"a\", \"response\": \"");
    memset(big + k, 'x', n);
    k += n;
    k += (size_t)snprintf(big + k, 200, "\"}\n{\"prompt\": \"a\", \"response\": \"b\"}\n");
    write_file(p, big, k);
    free(big);
    static got g;
    memset(&g, 0, sizeof g);
    ft_validate_params vp;
    ft_validate_default_params(&vp, FT_TASK_INSTRUCTION_FINETUNE);
    vp.reader.max_line_bytes = 1000;
    vp.reader.chunk_bytes = 256; /* many reads per line */
    vp.on_issue = keep;
    vp.on_issue_ctx = &g;
    ft_data_report *r = NULL;
    ft_err err;
    REQUIRE_OK(ft_data_validate(p, &vp, &r, NULL, &err), &err);
    static const want w[] = {{1, 1, E, "over-long line: more than 1000 bytes"}};
    check_issues(&g, w, 1);
    CHECK_EQ_INT(r->n_records, 2);
    CHECK_EQ_INT(r->n_valid_records, 1);
    ft_data_report_free(r);
}

TEST(validate_cpt_txt_utf8) {
    const char *d = ft_test_tmpdir();
    char p[1024];
    snprintf(p, sizeof p, "%s/a.txt", d);
    write_file(p, "\xEF\xBB\xBFgood text\n", 13);
    snprintf(p, sizeof p, "%s/b.txt", d);
    write_file(p, "line one\nline \xC3\x28two\n", 20);
    snprintf(p, sizeof p, "%s/c.txt", d);
    write_file(p, "", 0);
    static got g;
    memset(&g, 0, sizeof g);
    ft_data_report *r = run(d, FT_TASK_CONTINUED_PRETRAIN, 0, &g);
    REQUIRE(r);
    static const want w[] = {{2, 6, E, "not UTF-8: invalid byte 0xC3 at byte offset 14"}, {1, 1, E, "empty file"}};
    check_issues(&g, w, 2);
    CHECK_EQ_INT(r->n_records, 3);
    ft_data_report_free(r);
}

/* The record checker never crashes and finds the same errors as the file path does. */
TEST(check_record_direct) {
    static got g;
    memset(&g, 0, sizeof g);
    const char *s = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"user\", \"content\": \"x\"}]}";
    int64_t n = ft_data_check_record(FT_TASK_CHAT_COMPLETION, "mem", 7, s, strlen(s), NULL, keep, &g);
    CHECK_EQ_INT(n, 2); /* adjacent users, and no assistant */
    CHECK_EQ_INT(g.is[0].line, 7);
    CHECK_EQ_INT(g.is[0].column, 59);
    /* an empty key is an unexpected key too, located at its quote */
    g.n = 0;
    const char *ek = "{\"prompt\": \"a\", \"\": 1, \"response\": \"b\"}";
    CHECK_EQ_INT(ft_data_check_record(FT_TASK_INSTRUCTION_FINETUNE, "mem", 1, ek, strlen(ek), NULL, keep, &g), 0);
    CHECK(g.n == 1 && g.is[0].level == FT_ISSUE_WARNING && g.is[0].column == 17);
    const char *bad[] = {"", "{", "[[[[", "{\"messages\": [{\"role\"", "\"\\u", "{\"a\":1}}", "nul", "{\"messages\":[1,{}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        g.n = 0;
        CHECK(ft_data_check_record(FT_TASK_CHAT_COMPLETION, "mem", 1, bad[i], strlen(bad[i]), NULL, keep, &g) > 0);
        CHECK(g.n > 0 && g.is[0].column >= 1 && g.is[0].column <= (int64_t)strlen(bad[i]) + 1);
    }
}

/* `ftune validate`: every problem as file:line:column, exit 2 for invalid data, 0 for valid. */
/* Issue #9 item 9: a device or pipe never ends (/dev/zero spun forever skipping its first
 * "line"): it is refused at open with a message, in bounded time. A dangling *.jsonl symlink in
 * a folder is an error naming it, not a silently smaller data set. */
TEST(reader_refuses_devices_pipes_and_dangling_links) {
    ft_reader *r = NULL;
    ft_err err;
    ft_err_clear(&err);
    CHECK_EQ_INT(ft_reader_open("/dev/zero", FT_TASK_CHAT_COMPLETION, NULL, &r, &err), FT_ERR_INVALID);
    CHECK(r == NULL && strstr(err.msg, "not a regular file (a device)") && strstr(err.file, "/dev/zero"));
    const char *d = ft_test_tmpdir();
    char p[1024], cmd[2048], *out = NULL;
    snprintf(p, sizeof p, "%s/fifo.jsonl", d);
    REQUIRE(mkfifo(p, 0600) == 0);
    CHECK_EQ_INT(ft_reader_open(p, FT_TASK_CHAT_COMPLETION, NULL, &r, &err), FT_ERR_INVALID);
    CHECK(strstr(err.msg, "a pipe") != NULL);
    /* the command the issue names returns at once with exit 2 */
    snprintf(cmd, sizeof cmd, "timeout 20 %s validate --max-line-bytes 1000 /dev/zero 2>&1", ft_test_ftune_bin());
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    CHECK(out && strstr(out, "/dev/zero: not a regular file") != NULL);
    free(out);

    snprintf(p, sizeof p, "%s/data", d);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/data/a.jsonl", d);
    const char *rec = "{\"prompt\": \"p\", \"response\": \"r\"}\n";
    write_file(p, rec, strlen(rec));
    snprintf(p, sizeof p, "%s/data/b.jsonl", d);
    REQUIRE(symlink("/nonexistent/ftune-test/b.jsonl", p) == 0);
    snprintf(p, sizeof p, "%s/data", d);
    CHECK_EQ_INT(ft_reader_open(p, FT_TASK_INSTRUCTION_FINETUNE, NULL, &r, &err), FT_ERR_NOT_FOUND);
    CHECK(strstr(err.file, "b.jsonl") && strstr(err.msg, "symbolic link whose target does not exist"));
    ft_reader_free(r);
}

TEST(cli_validate_end_to_end) {
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s validate --max-line-bytes 4096 %s 2>&1", ft_test_ftune_bin(),
             ft_test_fixture("data/errors.jsonl"));
    int rc = ft_test_run(cmd, &out);
    CHECK_EQ_INT(rc, 2);
    REQUIRE(out);
    CHECK(strstr(out, "errors.jsonl:17:47: error: invalid UTF-8: byte 0xE9") != NULL);
    CHECK(strstr(out, "errors.jsonl:15:102: error: the last message must be from the assistant") != NULL);
    CHECK(strstr(out, "errors.jsonl:22:58: warning: messages[0]: unexpected key \"name\"") != NULL);
    CHECK(strstr(out, "20 errors, 3 warnings") != NULL);
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd, "%s validate --task-type INSTRUCTION_FINETUNE --json %s", ft_test_ftune_bin(),
             ft_test_fixture("data/ift.jsonl"));
    rc = ft_test_run(cmd, &out);
    CHECK_EQ_INT(rc, 0);
    CHECK(out && strstr(out, "\"valid\": true") != NULL);
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd, "%s validate --task-type NOPE x.jsonl 2>&1", ft_test_ftune_bin());
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    CHECK(out && strstr(out, "--task-type") != NULL);
    free(out);
}

/* dbfs:/Volumes/... and /Volumes/... read $FTUNE_HOME/volumes/..., and problems are reported
 * under the name the user wrote. */
TEST(reader_volumes_mapping) {
    const char *home = ft_test_tmpdir();
    char p[1024];
    snprintf(p, sizeof p, "%s/volumes/main/default/vol", home);
    ft_err err;
    REQUIRE_OK(ft_mkdir_p(p, &err), &err);
    snprintf(p, sizeof p, "%s/volumes/main/default/vol/train.jsonl", home);
    write_file(p, "{\"prompt\": 1, \"response\": \"r\"}\n", 31);
    const char *old = getenv("FTUNE_HOME");
    char *saved = old ? strdup(old) : NULL;
    setenv("FTUNE_HOME", home, 1);
    static got g;
    const char *names[] = {"dbfs:/Volumes/main/default/vol/train.jsonl", "/Volumes/main/default/vol"};
    for (int i = 0; i < 2; i++) {
        memset(&g, 0, sizeof g);
        ft_data_report *r = run(names[i], FT_TASK_INSTRUCTION_FINETUNE, 0, &g);
        if (r) {
            static const want w[] = {{1, 12, E, "\"prompt\" must be a string"}};
            check_issues(&g, w, 1);
            CHECK(g.n == 1 && !strncmp(g.file[0], names[i], strlen(names[i])));
            ft_data_report_free(r);
        }
    }
    if (saved) {
        setenv("FTUNE_HOME", saved, 1);
        free(saved);
    } else {
        unsetenv("FTUNE_HOME");
    }
}

/* `ftune validate --model`: token statistics from the model's tokenizer, and a time estimate
 * from a measured training step of that model (a tiny random one here). */
TEST(cli_validate_with_model) {
    char cmd[4096], *out = NULL;
    const char *d = ft_test_tmpdir();
    snprintf(cmd, sizeof cmd,
             "%s init-model --out %s/m --vocab-size 32000 --hidden-size 32 --intermediate-size 64 --layers 1 "
             "--heads 2 --max-position-embeddings 256 --tokenizer %s >/dev/null 2>&1",
             ft_test_ftune_bin(), d, ft_test_fixture("tok/mistral-7b-v0.1"));
    REQUIRE(ft_test_run(cmd, &out) == 0);
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd,
             "%s validate --model %s/m --task-type INSTRUCTION_FINETUNE --context-length 32 --training-duration 3ep "
             "--threads 1 %s 2>&1",
             ft_test_ftune_bin(), d, ft_test_fixture("data/ift.jsonl"));
    int rc = ft_test_run(cmd, &out);
    CHECK_EQ_INT(rc, 0);
    REQUIRE(out);
    CHECK(strstr(out, "samples 6, tokens 112 (before truncation 196), trainable tokens 57") != NULL);
    CHECK(strstr(out, "truncated samples 1") != NULL);
    CHECK(strstr(out, "tokens per epoch 112 x 3 epochs = 336 tokens") != NULL);
    CHECK(strstr(out, "estimated training time: ") && strstr(out, "from a measured forward+backward"));
    free(out);
    out = NULL;
    /* context longer than the model's maximum: bad usage naming the flag */
    snprintf(cmd, sizeof cmd, "%s validate --model %s/m --context-length 100000 %s 2>&1", ft_test_ftune_bin(), d,
             ft_test_fixture("data/chat.jsonl"));
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    CHECK(out && strstr(out, "--context-length") != NULL);
    free(out);
}
