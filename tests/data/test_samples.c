/* tests/data/test_samples.c: samples, packing and the loader against goldens made by
 * independent implementations (tools/reference/data_golden.js: HF tokenizers;
 * tools/reference/pack_golden.py: the packing rule in Python), plus determinism and O(1) resume
 * of the loader. */
#include <stdlib.h>

#include "ftune/data.h"
#include "ftune/json.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"
#include "test.h"

static json_t *golden(const char *name) {
    json_t *j = NULL;
    ft_err err;
    if (ft_json_load_file(ft_test_fixture(name), &j, &err) != FT_OK)
        ft_test_fail_(__FILE__, __LINE__, "cannot load %s: %s", name, err.msg);
    return j;
}

static ft_tok *load_tok(const char *dir) {
    ft_tok *t = NULL;
    ft_err err;
    if (ft_tok_load(ft_test_fixture(dir), &t, &err) != FT_OK)
        ft_test_fail_(__FILE__, __LINE__, "cannot load tokenizer %s: %s", dir, err.msg);
    return t;
}

/* Validate the file at path as `task` with tok and context length T, building the dataset;
 * threads > 0 overrides the default thread count. */
static ft_status prepare(const char *path, ft_task_type task, ft_tok *tok, int64_t T, int threads,
                         ft_data_report **rep, ft_dataset **ds, ft_err *err) {
    ft_validate_params p;
    ft_validate_default_params(&p, task);
    p.sample.tok = tok;
    p.sample.context_length = T;
    p.build_dataset = true;
    if (threads > 0)
        p.threads = threads;
    return ft_data_validate(path, &p, rep, ds, err);
}

/* Each sample's ids and trainable flags equal the golden's (built with HF tokenizers). */
static void check_samples(const json_t *g, ft_task_type task, ft_tok *tok) {
    int64_t T = json_integer_value(json_object_get(g, "T"));
    ft_reader *r = NULL;
    ft_err err;
    REQUIRE_OK(ft_reader_open(ft_test_fixture(json_string_value(json_object_get(g, "file"))), task, NULL, &r, &err),
               &err);
    ft_sample_params sp = {.task = task, .tok = tok, .context_length = T};
    ft_sample_scratch sc = {0};
    ft_sample s = {0};
    json_t *samples = json_object_get(g, "samples");
    size_t i = 0;
    ft_record rec;
    bool done;
    while (ft_reader_next(r, &rec, &done, &err) == FT_OK && !done) {
        json_t *want = json_array_get(samples, i);
        REQUIRE(want);
        json_t *parsed = NULL;
        if (rec.kind == FT_RECORD_JSON_TEXT)
            parsed = json_loadb(rec.data, rec.len, 0, NULL);
        CHECK_OK(ft_sample_build(&sp, parsed, &rec, &sc, &s, &err), &err);
        json_decref(parsed);
        json_t *ids = json_object_get(want, "ids");
        const char *tr = json_string_value(json_object_get(want, "trainable"));
        CHECK_EQ_INT(s.n, json_array_size(ids));
        CHECK_EQ_INT(s.n_full, json_integer_value(json_object_get(want, "n_full")));
        bool same = s.n == json_array_size(ids);
        for (size_t k = 0; same && k < s.n; k++)
            same = s.ids[k] == json_integer_value(json_array_get(ids, k)) && s.trainable[k] == (tr[k] == '1');
        if (!same)
            ft_test_fail_(__FILE__, __LINE__, "sample %zu differs from the golden", i);
        i++;
    }
    CHECK_EQ_INT(i, json_array_size(samples));
    ft_sample_free(&s);
    ft_sample_scratch_free(&sc);
    ft_reader_free(r);
}

/* One epoch of the loader without shuffling equals the Python packing golden, row by row. */
static void check_pack(const json_t *gp, ft_dataset *ds, int64_t T) {
    json_t *rows = json_object_get(gp, "rows");
    ft_loader_params lp;
    ft_loader_default_params(&lp, 1, T, 1);
    lp.pack.shuffle = false;
    lp.threads = 2;
    ft_loader *l = NULL;
    ft_err err;
    REQUIRE_OK(ft_loader_new(ds, &lp, NULL, &l, &err), &err);
    ft_epoch_counts ec;
    REQUIRE_OK(ft_dataset_count_epoch(ds, &lp.pack, 0, &ec, &err), &err);
    CHECK_EQ_INT(ec.rows, json_array_size(rows));
    for (size_t r = 0; r < json_array_size(rows); r++) {
        ft_data_batch *b = NULL;
        REQUIRE_OK(ft_loader_next(l, &b, &err), &err);
        json_t *want = json_array_get(rows, r);
        const char *names[] = {"input_ids", "targets", "position_ids", "sample_ids"};
        const int32_t *have[] = {b->batch.input_ids, b->batch.targets, b->batch.position_ids, b->batch.sample_ids};
        for (int k = 0; k < 4; k++) {
            json_t *a = json_object_get(want, names[k]);
            bool same = (int64_t)json_array_size(a) == T;
            for (int64_t t = 0; same && t < T; t++)
                same = have[k][t] == json_integer_value(json_array_get(a, (size_t)t));
            if (!same)
                ft_test_fail_(__FILE__, __LINE__, "row %zu: %s differs from the golden", r, names[k]);
        }
        CHECK_EQ_INT(b->epoch, 0);
        CHECK_EQ_INT(b->epoch_ended, r + 1 == json_array_size(rows));
        ft_loader_release(l, b);
    }
    ft_loader_free(l);
}

/* The golden test of one task: its samples against golden_samples.json[key], then the dataset
 * validated from `data` (its report checked by check_report) packed as golden_pack.json[key]. */
static void golden_case(const char *key, const char *tok_dir, const char *data, ft_task_type task,
                        void (*check_report)(const ft_data_report *rep)) {
    json_t *g = golden("data/golden_samples.json"), *gp = golden("data/golden_pack.json");
    REQUIRE(g && gp);
    json_t *gk = json_object_get(g, key);
    ft_tok *tok = load_tok(tok_dir);
    REQUIRE(tok);
    check_samples(gk, task, tok);
    ft_data_report *rep = NULL;
    ft_dataset *ds = NULL;
    ft_err err;
    int64_t T = json_integer_value(json_object_get(gk, "T"));
    REQUIRE_OK(prepare(ft_test_fixture(data), task, tok, T, 2, &rep, &ds, &err), &err);
    check_report(rep);
    REQUIRE(ds);
    check_pack(json_object_get(gp, key), ds, T);
    ft_dataset_free(ds);
    ft_data_report_free(rep);
    ft_tok_free(tok);
    json_decref(g);
    json_decref(gp);
}

static void check_ift_report(const ft_data_report *rep) {
    CHECK(rep->valid);
    CHECK_EQ_INT(rep->n_samples, 6);
    CHECK_EQ_INT(rep->n_truncated, 1);
    CHECK_EQ_INT(rep->n_tokens, 28 + 11 + 24 + 32 + 12 + 5);
    CHECK_EQ_INT(rep->n_tokens_full, 28 + 11 + 24 + 116 + 12 + 5);
    CHECK_EQ_INT(rep->n_trainable, 9 + 4 + 4 + 27 + 10 + 3);
}

TEST(samples_ift_golden_and_packing) {
    golden_case("ift", "tok/mistral-7b-v0.1", "data/ift.jsonl", FT_TASK_INSTRUCTION_FINETUNE, check_ift_report);
}

static void check_cpt_report(const ft_data_report *rep) {
    CHECK(rep->valid);
    CHECK_EQ_INT(rep->n_records, 2);
    CHECK_EQ_INT(rep->n_samples, 5); /* 75 tokens: 24+24+24+3; 5 tokens: 5 */
    CHECK_EQ_INT(rep->n_trainable, 23 * 3 + 2 + 4);
}

TEST(samples_cpt_golden_and_packing) {
    golden_case("cpt", "tok/llama3-instruct-rev1", "data/cpt", FT_TASK_CONTINUED_PRETRAIN, check_cpt_report);
}

TEST(samples_no_trainable_token_is_an_error) {
    ft_tok *tok = load_tok("tok/mistral-7b-v0.1");
    REQUIRE(tok);
    char path[1024];
    snprintf(path, sizeof path, "%s/x.jsonl", ft_test_tmpdir());
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fprintf(f, "{\"prompt\": \"ok\", \"response\": \"fine\"}\n");
    fprintf(f, "{\"prompt\": \"%s\", \"response\": \"lost\"}\n",
             "a very long prompt that fills the whole context and leaves nothing for the answer at all");
    fclose(f);
    ft_validate_params p;
    ft_validate_default_params(&p, FT_TASK_INSTRUCTION_FINETUNE);
    p.sample.tok = tok;
    p.sample.context_length = 8;
    ft_data_report *rep = NULL;
    ft_err err;
    REQUIRE_OK(ft_data_validate(path, &p, &rep, NULL, &err), &err);
    CHECK(!rep->valid);
    CHECK_EQ_INT(rep->n_no_trainable, 1);
    CHECK_EQ_INT(rep->n_errors, 1);
    REQUIRE(rep->n_issues == 1);
    CHECK_EQ_INT(rep->issues[0].line, 2);
    CHECK(strstr(rep->issues[0].message, "no trainable token") != NULL);
    ft_data_report_free(rep);
    ft_tok_free(tok);
}

TEST(pack_permutation_is_a_bijection) {
    ft_pack_params p;
    ft_pack_default_params(&p, 16, 99);
    for (int64_t n = 1; n < 300; n += 37) {
        char *seen = calloc((size_t)n, 1);
        REQUIRE(seen);
        bool ok = true, moved = false;
        for (int64_t i = 0; i < n; i++) {
            int64_t j = ft_pack_permute(&p, 3, i, n);
            ok = ok && j >= 0 && j < n && !seen[j];
            if (j >= 0 && j < n)
                seen[j] = 1;
            moved = moved || j != i;
        }
        CHECK(ok);
        if (n > 2)
            CHECK(moved);
        free(seen);
    }
    /* epochs differ */
    int same = 0;
    for (int64_t i = 0; i < 100; i++)
        same += ft_pack_permute(&p, 0, i, 100) == ft_pack_permute(&p, 1, i, 100);
    CHECK(same < 20);
}

TEST(pack_cursor_json_round_trip) {
    ft_data_cursor c, d;
    ft_data_cursor_init(&c, 5);
    c.epoch = 2;
    c.window = 7;
    c.row = 11;
    c.rows_done = 1234;
    ft_rng_next(&c.rng);
    json_t *j = ft_data_cursor_to_json(&c);
    ft_err err;
    REQUIRE_OK(ft_data_cursor_from_json(j, &d, &err), &err);
    CHECK(memcmp(&c, &d, sizeof c) == 0);
    json_object_set_new(j, "row", json_string("x"));
    CHECK(ft_data_cursor_from_json(j, &d, &err) == FT_ERR_INVALID);
    json_decref(j);
}

/* Same batches whatever the thread count; a loader started from a saved cursor continues with
 * exactly the batches that followed it. */
TEST(loader_deterministic_and_resumes) {
    ft_tok *tok = load_tok("tok/mistral-7b-v0.1");
    REQUIRE(tok);
    char path[1024];
    snprintf(path, sizeof path, "%s/many.jsonl", ft_test_tmpdir());
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    for (int i = 0; i < 50; i++) {
        fprintf(f, "{\"prompt\": \"Question %d:", i);
        for (int k = 0; k < i % 13; k++)
            fprintf(f, " word%d", k * i);
        fprintf(f, "\", \"response\": \"Answer %d\"}\n", i * 7);
    }
    fclose(f);
    ft_data_report *rep = NULL;
    ft_dataset *ds = NULL;
    ft_err err;
    REQUIRE_OK(prepare(path, FT_TASK_INSTRUCTION_FINETUNE, tok, 64, 0, &rep, &ds, &err), &err);
    REQUIRE(ds);
    enum { NB = 30, B = 2, T = 64 };
    static int32_t ref[NB][4][B * T];
    static ft_data_cursor cur[NB];
    int threads[] = {1, 3};
    for (int v = 0; v < 2; v++) {
        ft_loader_params lp;
        ft_loader_default_params(&lp, B, T, 42);
        lp.pack.window = 16; /* many windows, several epochs in 30 batches */
        lp.threads = threads[v];
        lp.prefetch = 2;
        ft_loader *l = NULL;
        REQUIRE_OK(ft_loader_new(ds, &lp, NULL, &l, &err), &err);
        bool same = true;
        for (int k = 0; k < NB; k++) {
            ft_data_batch *b = NULL;
            REQUIRE_OK(ft_loader_next(l, &b, &err), &err);
            const int32_t *a[] = {b->batch.input_ids, b->batch.targets, b->batch.position_ids, b->batch.sample_ids};
            for (int q = 0; q < 4; q++) {
                if (v == 0)
                    memcpy(ref[k][q], a[q], sizeof ref[k][q]);
                else
                    same = same && memcmp(ref[k][q], a[q], sizeof ref[k][q]) == 0;
            }
            if (v == 0)
                cur[k] = b->cursor;
            ft_loader_release(l, b);
        }
        CHECK(same);
        ft_loader_free(l);
    }
    ft_epoch_counts ec;
    ft_pack_params pp;
    ft_pack_default_params(&pp, T, 42);
    pp.window = 16;
    REQUIRE_OK(ft_dataset_count_epoch(ds, &pp, 0, &ec, &err), &err);
    CHECK(ec.rows * 2 < NB * B); /* the run crossed at least two epoch boundaries */
    CHECK(cur[NB - 1].epoch >= 2);
    /* resume after batch 12 (through JSON, as a checkpoint stores it) */
    json_t *j = ft_data_cursor_to_json(&cur[12]);
    ft_data_cursor c;
    REQUIRE_OK(ft_data_cursor_from_json(j, &c, &err), &err);
    json_decref(j);
    ft_loader_params lp;
    ft_loader_default_params(&lp, B, T, 42);
    lp.pack.window = 16;
    ft_loader *l = NULL;
    REQUIRE_OK(ft_loader_new(ds, &lp, &c, &l, &err), &err);
    bool same = true;
    for (int k = 13; k < NB; k++) {
        ft_data_batch *b = NULL;
        REQUIRE_OK(ft_loader_next(l, &b, &err), &err);
        same = same && memcmp(ref[k][0], b->batch.input_ids, sizeof ref[k][0]) == 0 &&
               memcmp(ref[k][1], b->batch.targets, sizeof ref[k][1]) == 0 &&
               memcmp(ref[k][3], b->batch.sample_ids, sizeof ref[k][3]) == 0;
        ft_loader_release(l, b);
    }
    CHECK(same);
    ft_loader_free(l);
    /* every row's tokens come from whole samples: positions restart at each sample id change */
    bool layout = true;
    for (int k = 0; k < NB; k++)
        for (int t = 1; t < B * T; t++) {
            if (t % T == 0)
                continue;
            int32_t s0 = ref[k][3][t - 1], s1 = ref[k][3][t], p1 = ref[k][2][t];
            if (s1 >= 0 && s1 == s0 && p1 != ref[k][2][t - 1] + 1)
                layout = false;
            if (s1 >= 0 && s1 != s0 && p1 != 0)
                layout = false;
        }
    CHECK(layout);
    ft_dataset_free(ds);
    ft_data_report_free(rep);
    ft_tok_free(tok);
}

/* Chat samples: the template rendered by ftune/tpl.h, tokenized, and masked, equal the golden
 * from Jinja2 + HF tokenizers, for loss on all assistant turns and on the last one only. */
TEST(samples_chat_golden) {
    json_t *g = golden("data/golden_samples.json");
    REQUIRE(g);
    json_t *gc = json_object_get(g, "chat");
    ft_tok *tok = load_tok("tok/llama3-instruct-rev2");
    ft_chat *chat = NULL;
    ft_err err;
    REQUIRE(tok);
    /* the template and its tokens as the golden script read them from tokenizer_config.json */
    json_t *cr = golden("data/chat_render.json");
    REQUIRE(cr);
    REQUIRE_OK(ft_chat_from_template(json_string_value(json_object_get(cr, "template")),
                                     json_string_value(json_object_get(cr, "bos_token")),
                                     json_string_value(json_object_get(cr, "eos_token")), &chat, &err),
               &err);
    json_decref(cr);
    int64_t T = json_integer_value(json_object_get(gc, "T"));
    for (int last = 0; last < 2; last++) {
        ft_reader *r = NULL;
        REQUIRE_OK(ft_reader_open(ft_test_fixture("data/chat.jsonl"), FT_TASK_CHAT_COMPLETION, NULL, &r, &err), &err);
        ft_sample_params sp = {.task = FT_TASK_CHAT_COMPLETION, .tok = tok, .chat = chat, .context_length = T,
                               .last_assistant = last};
        ft_sample_scratch sc = {0};
        ft_sample s = {0};
        ft_record rec;
        bool done;
        size_t i = 0;
        while (ft_reader_next(r, &rec, &done, &err) == FT_OK && !done) {
            json_t *want = json_array_get(json_object_get(gc, "samples"), i);
            REQUIRE(want);
            json_t *parsed = json_loadb(rec.data, rec.len, 0, NULL);
            CHECK_OK(ft_sample_build(&sp, parsed, &rec, &sc, &s, &err), &err);
            json_decref(parsed);
            json_t *ids = json_object_get(want, "ids");
            const char *tr = json_string_value(json_object_get(want, last ? "trainable_last" : "trainable"));
            CHECK_EQ_INT(s.n, json_array_size(ids));
            CHECK_EQ_INT(s.n_full, json_integer_value(json_object_get(want, "n_full")));
            CHECK_EQ_INT(s.truncated, s.n_full > (size_t)T);
            bool same = s.n == json_array_size(ids);
            for (size_t k = 0; same && k < s.n; k++)
                same = s.ids[k] == json_integer_value(json_array_get(ids, k)) && s.trainable[k] == (tr[k] == '1');
            if (!same)
                ft_test_fail_(__FILE__, __LINE__, "chat sample %zu (last_assistant %d) differs from the golden", i, last);
            i++;
        }
        CHECK_EQ_INT(i, 3);
        ft_sample_free(&s);
        ft_sample_scratch_free(&sc);
        ft_reader_free(r);
    }
    /* through validation: counts and the packed rows */
    ft_validate_params p;
    ft_validate_default_params(&p, FT_TASK_CHAT_COMPLETION);
    p.sample.tok = tok;
    p.sample.chat = chat;
    p.sample.context_length = T;
    p.build_dataset = true;
    ft_data_report *rep = NULL;
    ft_dataset *ds = NULL;
    REQUIRE_OK(ft_data_validate(ft_test_fixture("data/chat.jsonl"), &p, &rep, &ds, &err), &err);
    CHECK(rep->valid);
    CHECK_EQ_INT(rep->n_samples, 3);
    CHECK_EQ_INT(rep->n_truncated, 1);
    CHECK_EQ_INT(rep->n_tokens, 20 + 39 + 48);
    CHECK_EQ_INT(rep->n_trainable, 3 + 6 + 19);
    json_t *gp = golden("data/golden_pack.json");
    if (ds && gp)
        check_pack(json_object_get(gp, "chat"), ds, T);
    json_decref(gp);
    ft_dataset_free(ds);
    ft_data_report_free(rep);
    ft_chat_free(chat);
    ft_tok_free(tok);
    json_decref(g);
}

/* The epoch counts the trainer plans with equal what the loader then delivers, epoch by epoch. */
TEST(loader_rows_match_epoch_counts) {
    ft_tok *tok = load_tok("tok/mistral-7b-v0.1");
    REQUIRE(tok);
    char path[1024];
    snprintf(path, sizeof path, "%s/d.jsonl", ft_test_tmpdir());
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    for (int i = 0; i < 90; i++) {
        fprintf(f, "{\"prompt\": \"P%d", i);
        for (int k = 0; k < (i * 7) % 9; k++)
            fprintf(f, " w%d", k);
        fprintf(f, "\", \"completion\": \"C%d\"}\n", i);
    }
    fclose(f);
    ft_data_report *rep = NULL;
    ft_dataset *ds = NULL;
    ft_err err;
    REQUIRE_OK(prepare(path, FT_TASK_INSTRUCTION_FINETUNE, tok, 40, 0, &rep, &ds, &err), &err);
    REQUIRE(ds);
    ft_loader_params lp;
    ft_loader_default_params(&lp, 1, 40, 7);
    lp.pack.window = 32;
    ft_loader *l = NULL;
    REQUIRE_OK(ft_loader_new(ds, &lp, NULL, &l, &err), &err);
    for (int64_t e = 0; e < 3; e++) {
        ft_epoch_counts ec;
        REQUIRE_OK(ft_dataset_count_epoch(ds, &lp.pack, e, &ec, &err), &err);
        int64_t rows = 0, tokens = 0, trainable = 0;
        for (;;) {
            ft_data_batch *b = NULL;
            REQUIRE_OK(ft_loader_next(l, &b, &err), &err);
            CHECK_EQ_INT(b->epoch, e);
            rows++;
            tokens += b->n_tokens;
            trainable += b->n_trainable;
            bool end = b->epoch_ended;
            ft_loader_release(l, b);
            if (end)
                break;
        }
        CHECK_EQ_INT(rows, ec.rows);
        CHECK_EQ_INT(tokens, ec.tokens);
        CHECK_EQ_INT(trainable, ec.trainable);
        CHECK_EQ_INT(tokens, ft_dataset_n_tokens(ds));
    }
    ft_loader_free(l);
    ft_dataset_free(ds);
    ft_data_report_free(rep);
    ft_tok_free(tok);
}

/* Chat validation renders every conversation with the model's template: a template error is a
 * validation error on that record's line. */
TEST(validate_chat_template_errors_surface) {
    ft_tok *tok = load_tok("tok/mistral-7b-v0.1");
    REQUIRE(tok);
    ft_chat *chat = NULL;
    ft_err err;
    REQUIRE_OK(ft_chat_from_template("{% for m in messages %}{% if m['content'] == 'boom' %}"
                                     "{{ raise_exception('content boom refused') }}{% endif %}"
                                     "{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}",
                                     NULL, NULL, &chat, &err),
               &err);
    char path[1024];
    snprintf(path, sizeof path, "%s/c.jsonl", ft_test_tmpdir());
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n");
    fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"boom\"}, {\"role\": \"assistant\", \"content\": \"x\"}]}\n");
    fclose(f);
    ft_validate_params p;
    ft_validate_default_params(&p, FT_TASK_CHAT_COMPLETION);
    p.sample.tok = tok;
    p.sample.chat = chat;
    p.sample.context_length = 64;
    ft_data_report *rep = NULL;
    REQUIRE_OK(ft_data_validate(path, &p, &rep, NULL, &err), &err);
    CHECK(!rep->valid);
    CHECK_EQ_INT(rep->n_errors, 1);
    REQUIRE(rep->n_issues == 1);
    CHECK_EQ_INT(rep->issues[0].line, 2);
    CHECK_EQ_INT(rep->issues[0].column, 1);
    CHECK(strstr(rep->issues[0].message, "chat template") && strstr(rep->issues[0].message, "content boom refused"));
    CHECK_EQ_INT(rep->n_samples, 1);
    ft_data_report_free(rep);
    ft_chat_free(chat);
    ft_tok_free(tok);
}
