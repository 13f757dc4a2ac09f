/* tests/cli: the run lifecycle end to end with real (tiny) training through the ftune binary:
 * create -> COMPLETED with every event in order and the model registered and usable by name;
 * a failure with a bad data path; cancel of a detached run; a run killed with SIGKILL resumed by
 * `ftune resume` and by the worker with the losses of an uninterrupted run; delete.
 * Each test has its own FTUNE_HOME. */
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ftune/json.h"
#include "ftune/store.h"
#include "test.h"

/* A Mistral-format chat template of our own (the Mistral base tokenizer has none). */
static const char *const TEMPLATE =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token }}{% endif %}{% endfor %}";

typedef struct env {
    char home[1024];
    char model[1024];
    char train[1024];
    char eval[1024];
} env;

/* Tokenizer with the template, a tiny model, 48 chat examples and 8 eval ones. */
static bool setup(env *e) {
    const char *tmp = ft_test_tmpdir();
    snprintf(e->home, sizeof e->home, "%s/home", tmp);
    snprintf(e->model, sizeof e->model, "%s/model", tmp);
    snprintf(e->train, sizeof e->train, "%s/train.jsonl", tmp);
    snprintf(e->eval, sizeof e->eval, "%s/eval.jsonl", tmp);
    const char *tok_src = ft_test_fixture("tok/mistral-7b-v0.1");
    char tok[1100];
    snprintf(tok, sizeof tok, "%s/tok", tmp);
    ft_mkdir_p(tok, NULL);
    char *src = ft_path_join(tok_src, "tokenizer.json"), *dst = ft_path_join(tok, "tokenizer.json");
    ft_status st = ft_file_copy(src, dst, NULL);
    ft_free(src);
    ft_free(dst);
    if (st != FT_OK) {
        ft_test_fail_(__FILE__, __LINE__, "missing tokenizer fixture %s", tok_src);
        return false;
    }
    json_t *cfg = json_pack("{s:s, s:s, s:s, s:b, s:b, s:s}", "bos_token", "<s>", "eos_token", "</s>", "unk_token",
                            "<unk>", "add_bos_token", 1, "add_eos_token", 0, "chat_template", TEMPLATE);
    char *text = json_dumps(cfg, JSON_INDENT(1));
    char *cpath = ft_path_join(tok, "tokenizer_config.json");
    ft_file_write_atomic(cpath, text, strlen(text), NULL);
    free(text);
    ft_free(cpath);
    json_decref(cfg);
    /* Small and tied: checkpoints (weights + optimizer state) stay about 6 MB. */
    char *out = NULL;
    if (ft_test_sh(&out,
           "%s init-model --out '%s' --vocab-size 32000 --hidden-size 16 --intermediate-size 32 --layers 1 "
           "--heads 2 --tie-embeddings --max-position-embeddings 256 --tokenizer '%s' --seed 1 2>&1",
           ft_test_ftune_bin(), e->model, tok) != 0) {
        ft_test_fail_(__FILE__, __LINE__, "init-model failed: %s", out ? out : "");
        free(out);
        return false;
    }
    free(out);
    static const char *const people[] = {"Maria", "John", "Aisha", "Kenji"};
    static const char *const cities[] = {"Paris", "Lima", "Oslo", "Rome"};
    ft_buf b = {0}, v = {0};
    for (int i = 0; i < 56; i++) {
        ft_buf *t = i < 48 ? &b : &v;
        ft_buf_appendf(t,
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"Where is %s? %s went to %s.\"},"
                       "{\"role\":\"assistant\",\"content\":\"%s\"}]}\n",
                       people[i % 4], people[i % 4], cities[(i / 4) % 4], cities[(i / 4) % 4]);
    }
    ft_file_write_atomic(e->train, b.data, b.len, NULL);
    ft_file_write_atomic(e->eval, v.data, v.len, NULL);
    ft_buf_free(&b);
    ft_buf_free(&v);
    return true;
}

/* The common create flags: a short deterministic run. */
#define RUN_FLAGS                                                                                              \
    "--register-to main.test --learning-rate 1e-3 --global-batch-size 4 --micro-batch-size 2 --context-length 64 " \
    "--threads 1 --seed 5 --eval-max-new-tokens 4"

static int ftune(const env *e, char **out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int ftune(const env *e, char **out, const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return ft_test_sh(out, "FTUNE_HOME='%s' USER=tester OMP_NUM_THREADS=1 %s %s 2>/dev/null", e->home, ft_test_ftune_bin(),
              args);
}

/* The last line of a command's output, parsed. */
static json_t *last_json(const char *out) {
    if (!out)
        return NULL;
    const char *end = out + strlen(out);
    while (end > out && end[-1] == '\n')
        end--;
    const char *start = end;
    while (start > out && start[-1] != '\n')
        start--;
    return json_loadb(start, (size_t)(end - start), 0, NULL);
}

static json_t *get_run(const env *e, const char *name) {
    char *out;
    if (ftune(e, &out, "get %s --json", name) != 0) {
        free(out);
        return NULL;
    }
    json_t *j = last_json(out);
    free(out);
    return j;
}

static const char *jstr(json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* Losses of a run by step, from `ftune metrics --json`. */
static size_t losses(const env *e, const char *name, double *out, size_t cap) {
    char *txt;
    if (ftune(e, &txt, "metrics %s --name loss --json", name) != 0) {
        free(txt);
        return 0;
    }
    json_t *j = last_json(txt);
    free(txt);
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(j) && n < cap; i++)
        out[n++] = json_real_value(json_object_get(json_array_get(j, i), "value"));
    json_decref(j);
    return n;
}

TEST(lifecycle_create_to_completed_registered_and_usable) {
    env e;
    REQUIRE(setup(&e));
    char *out;
    int rc = ftune(&e, &out,
                   "create --model '%s' --train-data-path '%s' --eval-data-path '%s' " RUN_FLAGS
                   " --name first --training-duration 4ba --save-interval 2ba --register-to main.test.ner --json "
                   "--eval-prompt 'Where is Maria? Maria went to Oslo.'",
                   e.model, e.train, e.eval);
    json_t *run = last_json(out);
    free(out);
    CHECK_EQ_INT(rc, 0);
    REQUIRE(run);
    CHECK_STR_EQ(jstr(run, "status"), "COMPLETED");
    CHECK_STR_EQ(jstr(run, "registered_model"), "main.test.ner/1");
    CHECK_NEAR(json_real_value(json_object_get(run, "progress")), 1.0, 1e-9);
    /* the run object carries its checkpoints (every 2 of 4 steps) and evaluations (with the
     * eval prompt's completion), as `get --json` does */
    json_t *cks = json_object_get(run, "checkpoints"), *evs = json_object_get(run, "evaluations");
    CHECK_EQ_INT((int64_t)json_array_size(cks), 2);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(cks, 1), "step")), 4);
    CHECK(ft_path_exists(jstr(json_array_get(cks, 1), "path")));
    CHECK_EQ_INT((int64_t)json_array_size(evs), 2);
    json_t *ev_last = json_array_get(evs, 1);
    CHECK_EQ_INT(json_integer_value(json_object_get(ev_last, "step")), 4);
    CHECK(json_is_real(json_object_get(ev_last, "eval_loss")) && json_is_real(json_object_get(ev_last, "eval_token_accuracy")));
    CHECK_STR_EQ(jstr(json_array_get(json_object_get(ev_last, "generations"), 0), "prompt"),
                 "Where is Maria? Maria went to Oslo.");
    json_decref(run);
    run = get_run(&e, "first");
    CHECK_EQ_INT((int64_t)json_array_size(json_object_get(run, "evaluations")), 2);
    /* the precision it trained in (issue #10): the default dtype and its route */
    CHECK_STR_EQ(jstr(run, "dtype"), "fp32");
    CHECK_STR_EQ(jstr(run, "gemm_route"), "sgemm");
    json_decref(run);
    REQUIRE(ftune(&e, &out, "get first") == 0);
    CHECK(out && strstr(out, "dtype                fp32 (GEMM route sgemm)"));
    free(out);

    /* every event of SPEC §5 in order */
    REQUIRE(ftune(&e, &out, "events first --json") == 0);
    json_t *ev = last_json(out);
    free(out);
    static const char *const order[] = {"CREATED",         "QUEUED",           "STARTED",
                                        "DATA_VALIDATED",  "MODEL_INITIALIZED", "TRAIN_UPDATED",
                                        "CHECKPOINT_SAVED", "EVAL_COMPLETED",   "TRAIN_FINISHED",
                                        "REGISTERED",      "COMPLETED"};
    size_t k = 0;
    for (size_t i = 0; i < json_array_size(ev); i++) {
        json_t *x = json_array_get(ev, i);
        CHECK_EQ_INT(json_integer_value(json_object_get(x, "seq")), (int64_t)i + 1);
        if (k < 11 && !strcmp(jstr(x, "type"), order[k]))
            k++;
    }
    if (k != 11)
        ft_test_fail_(__FILE__, __LINE__, "events out of order: matched %zu of 11, stuck before %s", k,
                      order[k < 11 ? k : 10]);
    CHECK_STR_EQ(jstr(json_array_get(ev, json_array_size(ev) - 1), "type"), "COMPLETED");
    json_decref(ev);

    double l[64];
    CHECK_EQ_INT(losses(&e, "first", l, 64), 4);

    /* the registered clone is a complete HF folder, named like any model */
    char *p = ft_asprintf("%s/registry/main/test/ner/1/model.safetensors", e.home);
    CHECK(ft_path_exists(p));
    ft_free(p);
    REQUIRE(ftune(&e, &out, "registry show main.test.ner --json") == 0);
    json_t *reg = last_json(out);
    free(out);
    CHECK_STR_EQ(jstr(json_array_get(json_object_get(reg, "versions"), 0), "run"), "first");
    json_decref(reg);
    CHECK_EQ_INT(ftune(&e, &out, "generate --model main.test.ner --prompt 'Where is John?' --chat --temperature 0 "
                                 "--max-new-tokens 4"),
                 0);
    free(out);
    CHECK_EQ_INT(ftune(&e, &out, "generate --model main.test.ner/1 --prompt 'x' --max-new-tokens 2"), 0);
    free(out);
    /* generate --dtype (issue #10): bf16 decoding says so; an unknown dtype is a usage error */
    CHECK_EQ_INT(ftune(&e, &out, "generate --model main.test.ner/1 --prompt 'x' --max-new-tokens 3 --temperature 0 "
                                 "--dtype bf16 --json"),
                 0);
    json_t *g16 = last_json(out);
    free(out);
    CHECK_STR_EQ(jstr(g16, "dtype"), "bf16");
    CHECK(strstr(jstr(g16, "gemm_route"), "-bf16") != NULL);
    CHECK(json_integer_value(json_object_get(g16, "new_tokens")) >= 1); /* an EOS may end it early */
    json_decref(g16);
    CHECK_EQ_INT(ftune(&e, &out, "generate --model main.test.ner/1 --prompt 'x' --dtype fp8"), 2);
    free(out);
    /* an unknown FTUNE_GEMM route: refused before any run is recorded, saying what is allowed */
    CHECK_EQ_INT(ft_test_sh(&out, "FTUNE_HOME='%s' FTUNE_GEMM=mkl %s create --model '%s' --train-data-path '%s' " RUN_FLAGS
                          " --name gemmbad --dtype bf16 2>&1",
                    e.home, ft_test_ftune_bin(), e.model, e.train),
                 2);
    CHECK(out && strstr(out, "FTUNE_GEMM=mkl") && strstr(out, "sgemm or onednn"));
    free(out);
    CHECK(get_run(&e, "gemmbad") == NULL);
    char *batch = ft_path_join(ft_test_tmpdir(), "batch.json");
    const char *bj = "{\"input_ids\": [[1, 733, 16289, 28793]], \"targets\": [[733, 16289, 28793, 2]], "
                     "\"position_ids\": [[0, 1, 2, 3]], \"sample_ids\": [[0, 0, 0, 0]]}";
    ft_file_write_atomic(batch, bj, strlen(bj), NULL);
    CHECK_EQ_INT(ftune(&e, &out, "debug forward --model main.test.ner --batch '%s' --json", batch), 0);
    CHECK(out && strstr(out, "loss"));
    free(out);
    ft_free(batch);
    /* and as the starting model of a new run, whose register_to without a name uses the run name */
    rc = ftune(&e, &out,
               "create --model main.test.ner --train-data-path '%s' " RUN_FLAGS " --name second --training-duration 1ba --json",
               e.train);
    run = last_json(out);
    free(out);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_EQ(jstr(run, "registered_model"), "main.test.second/1");
    json_decref(run);

    /* delete removes the run's files; the registered clone stays */
    json_t *r1 = get_run(&e, "first");
    char *dir = ft_strdup(jstr(r1, "run_dir"));
    json_decref(r1);

    /* custom_weights_path of another architecture: refused by validation (exit 2, nothing
     * recorded); without validation the run fails, and --quiet still prints why */
    char *other = ft_path_join(ft_test_tmpdir(), "other-model"), *tok = ft_path_join(ft_test_tmpdir(), "tok");
    REQUIRE(ft_test_sh(NULL, "%s init-model --out '%s' --vocab-size 32000 --hidden-size 32 --intermediate-size 32 --layers 1 "
                     "--heads 2 --tie-embeddings --max-position-embeddings 256 --tokenizer '%s' --seed 1 >/dev/null 2>&1",
               ft_test_ftune_bin(), other, tok) == 0);
    CHECK_EQ_INT(ft_test_sh(&out, "FTUNE_HOME='%s' %s create --model '%s' --train-data-path '%s' " RUN_FLAGS
                          " --name cw --custom-weights-path '%s/checkpoints/latest' 2>&1",
                    e.home, ft_test_ftune_bin(), other, e.train, dir),
                 2);
    CHECK(out && strstr(out, "--custom-weights-path") && strstr(out, "hidden_size"));
    free(out);
    CHECK(get_run(&e, "cw") == NULL);
    CHECK_EQ_INT(ft_test_sh(&out, "FTUNE_HOME='%s' %s create --model '%s' --train-data-path '%s' " RUN_FLAGS
                          " --name cw2 --no-validate-inputs --quiet --custom-weights-path '%s/checkpoints/latest' 2>&1",
                    e.home, ft_test_ftune_bin(), other, e.train, dir),
                 1);
    CHECK(out && strstr(out, "cw2 FAILED") && strstr(out, "hidden_size"));
    free(out);
    ft_free(other);
    ft_free(tok);
    CHECK(ft_path_is_dir(dir));
    CHECK_EQ_INT(ftune(&e, NULL, "delete first"), 0);
    CHECK(!ft_path_exists(dir));
    CHECK(get_run(&e, "first") == NULL);
    p = ft_asprintf("%s/registry/main/test/ner/1/config.json", e.home);
    CHECK(ft_path_exists(p));
    ft_free(p);
    ft_free(dir);
}

TEST(lifecycle_failure_is_recorded_with_its_reason) {
    env e;
    REQUIRE(setup(&e));
    char *out;
    int rc = ftune(&e, &out,
                   "create --model '%s' --train-data-path /nonexistent/train.jsonl --no-validate-inputs " RUN_FLAGS
                   " --name bad --json",
                   e.model);
    json_t *run = last_json(out);
    free(out);
    CHECK_EQ_INT(rc, 1);
    CHECK_STR_EQ(jstr(run, "status"), "FAILED");
    CHECK(strstr(jstr(run, "details"), "/nonexistent/train.jsonl") != NULL);
    json_decref(run);
    REQUIRE(ftune(&e, &out, "events bad --json") == 0);
    json_t *ev = last_json(out);
    free(out);
    json_t *last = json_array_get(ev, json_array_size(ev) - 1);
    CHECK_STR_EQ(jstr(last, "type"), "FAILED");
    CHECK_STR_EQ(jstr(last, "level"), "ERROR");
    CHECK(strstr(jstr(last, "message"), "/nonexistent/train.jsonl") != NULL);
    json_decref(ev);
    /* validation (the default) refuses it before anything is recorded */
    CHECK_EQ_INT(ftune(&e, NULL, "create --model '%s' --train-data-path /nonexistent/t.jsonl " RUN_FLAGS " --name bad2",
                       e.model),
                 2);
    CHECK(get_run(&e, "bad2") == NULL);
    /* and reports every bad record with file:line:column */
    char *bad = ft_path_join(ft_test_tmpdir(), "bad.jsonl");
    const char *text = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n"
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"}]}\n"
                       "{\"messages\": 5}\n";
    ft_file_write_atomic(bad, text, strlen(text), NULL);
    CHECK_EQ_INT(ft_test_sh(&out, "FTUNE_HOME='%s' %s create --model '%s' --train-data-path '%s' " RUN_FLAGS " --name bad3 2>&1",
                    e.home, ft_test_ftune_bin(), e.model, bad),
                 2);
    char *l2 = ft_asprintf("%s:2:", bad), *l3 = ft_asprintf("%s:3:14:", bad);
    CHECK(out && strstr(out, l2) && strstr(out, l3) && strstr(out, "in 2 of 3 records"));
    free(out);
    ft_free(l2);
    ft_free(l3);
    ft_free(bad);
    CHECK(get_run(&e, "bad3") == NULL);
    /* The same validation as `ftune validate`: through the tokenizer at the run's context length
     * (a user turn longer than it leaves no trainable token: an error only tokens reveal), ... */
    char *longp = ft_path_join(ft_test_tmpdir(), "long.jsonl");
    ft_buf lb = {0};
    ft_buf_appendf(&lb, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n");
    ft_buf_appendf(&lb, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < 100; i++)
        ft_buf_appendf(&lb, "word%d ", i);
    ft_buf_appendf(&lb, "\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n");
    ft_file_write_atomic(longp, lb.data, lb.len, NULL);
    ft_buf_free(&lb);
    CHECK_EQ_INT(ft_test_sh(&out, "FTUNE_HOME='%s' %s create --model '%s' --train-data-path '%s' " RUN_FLAGS " --name bad4 2>&1",
                    e.home, ft_test_ftune_bin(), e.model, longp),
                 2);
    char *l4 = ft_asprintf("%s:2:", longp);
    CHECK(out && strstr(out, l4) && strstr(out, "in 1 of 2 records"));
    free(out);
    ft_free(l4);
    ft_free(longp);
    CHECK(get_run(&e, "bad4") == NULL);
    /* ... a context length above the model's maximum (256) is refused naming the flag ... */
    CHECK_EQ_INT(ft_test_sh(&out, "FTUNE_HOME='%s' %s create --model '%s' --train-data-path '%s' --register-to main.test "
                          "--context-length 512 --name bad5 2>&1",
                    e.home, ft_test_ftune_bin(), e.model, e.train),
                 2);
    CHECK(out && strstr(out, "--context-length") && strstr(out, "256"));
    free(out);
    CHECK(get_run(&e, "bad5") == NULL);
    /* ... so are truncated weights (naming --model and the file) */
    char *mbad = ft_path_join(ft_test_tmpdir(), "model-bad");
    REQUIRE(ft_test_sh(NULL, "cp -r '%s' '%s' && truncate -s 1000 '%s/model.safetensors'", e.model, mbad, mbad) == 0);
    CHECK_EQ_INT(ft_test_sh(&out, "FTUNE_HOME='%s' %s create --model '%s' --train-data-path '%s' " RUN_FLAGS " --name bad6 2>&1",
                    e.home, ft_test_ftune_bin(), mbad, e.train),
                 2);
    CHECK(out && strstr(out, "--model") && strstr(out, "model.safetensors"));
    free(out);
    ft_free(mbad);
    CHECK(get_run(&e, "bad6") == NULL);
    /* ... and valid data gets the summary with the measured estimate, counting the optimizer steps
     * as `ftune validate` does for the same settings. */
    char *vout = NULL;
    CHECK_EQ_INT(ft_test_sh(&vout, "%s validate --model '%s' --context-length 64 --training-duration 2ep --global-batch-size 4 '%s' 2>&1",
                    ft_test_ftune_bin(), e.model, e.train),
                 0);
    CHECK_EQ_INT(ft_test_sh(&out, "FTUNE_HOME='%s' %s create --model '%s' --train-data-path '%s' " RUN_FLAGS
                          " --training-duration 2ep --name ok6 2>&1",
                    e.home, ft_test_ftune_bin(), e.model, e.train),
                 0);
    const char *want = vout ? strstr(vout, "optimizer steps") : NULL;
    CHECK(want && out && strstr(out, "estimated training time: ") && !strstr(out, "estimated training time: unavailable"));
    /* the same "N optimizer steps" figure in both summaries */
    if (want) {
        const char *st = want;
        while (st > vout && st[-1] != ' ')
            st--;
        st--;
        while (st > vout && st[-1] != ' ')
            st--;
        char steps[64];
        snprintf(steps, sizeof steps, "%.*s", (int)(want - st + strlen("optimizer steps")), st);
        CHECK(out && strstr(out, steps));
    }
    free(vout);
    free(out);
}

/* Poll `get` until the run's status is one of `want` (|-separated) or ~60 s pass. */
static bool wait_status(const env *e, const char *name, const char *want) {
    for (int i = 0; i < 600; i++) {
        json_t *r = get_run(e, name);
        const char *st = jstr(r, "status");
        bool hit = *st && strstr(want, st) != NULL;
        json_decref(r);
        if (hit)
            return true;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

TEST(lifecycle_cancel_a_detached_run) {
    /* The executor code is the one the other lifecycle tests run under ASan. */
    SKIP_IF_SANITIZED("every ftune process takes about a second to start under ASan");
    env e;
    REQUIRE(setup(&e));
    char *out;
    REQUIRE(ftune(&e, &out,
                  "create --model '%s' --train-data-path '%s' " RUN_FLAGS
                  " --name long --training-duration 100000ba --save-interval 5ba --keep-checkpoints 3 --detach",
                  e.model, e.train) == 0);
    CHECK(out && strncmp(out, "long", 4) == 0);
    free(out);
    REQUIRE(wait_status(&e, "long", "RUNNING"));
    /* one run at a time: a second detached run waits in the queue */
    REQUIRE(ftune(&e, NULL,
                  "create --model '%s' --train-data-path '%s' " RUN_FLAGS
                  " --name later --training-duration 100000ba --detach",
                  e.model, e.train) == 0);
    json_t *later = get_run(&e, "later");
    CHECK_STR_EQ(jstr(later, "status"), "QUEUED");
    json_decref(later);
    /* a running run is not deleted without --force */
    CHECK_EQ_INT(ftune(&e, NULL, "delete long"), 1);
    REQUIRE(ftune(&e, &out, "cancel long --wait --json") == 0);
    json_t *run = last_json(out);
    free(out);
    CHECK_STR_EQ(jstr(run, "status"), "STOPPED");
    CHECK_STR_EQ(jstr(run, "details"), "cancelled");
    char *latest = ft_asprintf("%s/checkpoints/latest.txt", jstr(run, "run_dir"));
    CHECK(ft_path_exists(latest)); /* the last checkpoint is kept */
    ft_free(latest);
    json_decref(run);
    REQUIRE(ftune(&e, &out, "events long --json") == 0);
    json_t *ev = last_json(out);
    free(out);
    CHECK_STR_EQ(jstr(json_array_get(ev, json_array_size(ev) - 1), "type"), "STOPPED");
    json_decref(ev);
    /* the worker takes the queued run next; delete --force kills it and removes it, and the
     * worker does not resume it */
    REQUIRE(wait_status(&e, "later", "RUNNING"));
    later = get_run(&e, "later");
    char *later_dir = ft_strdup(jstr(later, "run_dir"));
    json_decref(later);
    CHECK_EQ_INT(ftune(&e, NULL, "delete later --force"), 0);
    CHECK(get_run(&e, "later") == NULL);
    CHECK(!ft_path_exists(later_dir));
    ft_free(later_dir);
    /* the on-demand worker leaves by itself once the queue is empty */
    char *lock = ft_asprintf("flock -n '%s/worker.lock' true", e.home);
    bool free_lock = false;
    for (int i = 0; i < 100 && !free_lock; i++) {
        free_lock = ft_test_sh(NULL, "%s", lock) == 0;
        if (!free_lock) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK(free_lock);
    ft_free(lock);
}

TEST(lifecycle_ctrl_c_stops_a_foreground_run) {
    /* The executor code is the one the other lifecycle tests run under ASan. */
    SKIP_IF_SANITIZED("every ftune process takes about a second to start under ASan");
    env e;
    REQUIRE(setup(&e));
    char args[4096];
    snprintf(args, sizeof args,
             "create --model '%s' --train-data-path '%s' " RUN_FLAGS
             " --name fg --training-duration 100000ba --save-interval 5ba --keep-checkpoints 3 --quiet",
             e.model, e.train);
    char *cmd = ft_asprintf("FTUNE_HOME='%s' OMP_NUM_THREADS=1 exec %s %s >/dev/null 2>&1", e.home,
                            ft_test_ftune_bin(), args);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    ft_free(cmd);
    bool running = wait_status(&e, "fg", "RUNNING");
    kill(pid, SIGINT);
    int status = 0;
    waitpid(pid, &status, 0);
    REQUIRE(running);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    json_t *r = get_run(&e, "fg");
    CHECK_STR_EQ(jstr(r, "status"), "STOPPED");
    char *latest = ft_asprintf("%s/checkpoints/latest.txt", jstr(r, "run_dir"));
    CHECK(ft_path_exists(latest));
    ft_free(latest);
    json_decref(r);
}

/* Start `ftune create` for `name` that SIGKILLs itself after step 5 (checkpoint at 4) (FTUNE_DEBUG_KILL_AT_STEP). */
static void create_killed(const env *e, const char *name) {
    int rc = ft_test_sh(NULL,
                "FTUNE_HOME='%s' FTUNE_DEBUG_KILL_AT_STEP=5 OMP_NUM_THREADS=1 %s create --model '%s' "
                "--train-data-path '%s' " RUN_FLAGS " --name %s --training-duration 8ba --save-interval 2ba "
                ">/dev/null 2>&1",
                e->home, ft_test_ftune_bin(), e->model, e->train, name);
    CHECK(rc != 0); /* killed */
}

TEST(lifecycle_sigkill_then_resume_and_worker_give_identical_losses) {
    env e;
    REQUIRE(setup(&e));
    char *out;
    REQUIRE(ftune(&e, &out,
                  "create --model '%s' --train-data-path '%s' " RUN_FLAGS
                  " --name whole --training-duration 8ba --save-interval 2ba --json",
                  e.model, e.train) == 0);
    free(out);
    double ref[64], got[64];
    REQUIRE(losses(&e, "whole", ref, 64) == 8);

    /* killed, then `ftune resume` */
    create_killed(&e, "killed1");
    json_t *r = get_run(&e, "killed1");
    CHECK_STR_EQ(jstr(r, "status"), "RUNNING"); /* as the crash left it */
    json_decref(r);
    REQUIRE(ftune(&e, &out, "get killed1") == 0);
    CHECK(out && strstr(out, "process is gone"));
    free(out);
    REQUIRE(ftune(&e, &out, "resume killed1 --json") == 0);
    r = last_json(out);
    free(out);
    CHECK_STR_EQ(jstr(r, "status"), "COMPLETED");
    json_decref(r);
    REQUIRE(losses(&e, "killed1", got, 64) == 8);
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(got[i], ref[i], 1e-6);

    /* killed, then the worker finds it and resumes it */
    create_killed(&e, "killed2");
    REQUIRE(ftune(&e, NULL, "worker --until-idle --quiet") == 0);
    r = get_run(&e, "killed2");
    CHECK_STR_EQ(jstr(r, "status"), "COMPLETED");
    CHECK_STR_EQ(jstr(r, "registered_model"), "main.test.killed2/1");
    json_decref(r);
    REQUIRE(losses(&e, "killed2", got, 64) == 8);
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(got[i], ref[i], 1e-6);
    REQUIRE(ftune(&e, &out, "events killed2 --json") == 0);
    CHECK(out && strstr(out, "is gone: resuming from the latest checkpoint"));
    free(out);
}

/* Issue #9 item 6: a run that trained to the end but was not registered (the registration failed,
 * or the process was killed between TRAIN_FINISHED and REGISTERED) and is then resumed registers
 * the real final loss, step count and checkpoint, not 0.0 and null. */
TEST(lifecycle_resumed_registration_records_the_real_metrics) {
    env e;
    REQUIRE(setup(&e));
    /* a file where the registry needs a folder: the registration after training fails */
    char *reg = ft_path_join(e.home, "registry"), *block = ft_path_join(e.home, "registry/main");
    ft_mkdir_p(reg, NULL);
    REQUIRE_OK(ft_file_write_atomic(block, "x", 1, NULL), (ft_err *)NULL);
    char *out;
    int rc = ftune(&e, &out,
                   "create --model '%s' --train-data-path '%s' --eval-data-path '%s' " RUN_FLAGS
                   " --name late --training-duration 3ba --register-to main.test.late --json",
                   e.model, e.train, e.eval);
    json_t *run = last_json(out);
    free(out);
    CHECK_EQ_INT(rc, 1);
    CHECK_STR_EQ(jstr(run, "status"), "FAILED");
    CHECK(strstr(jstr(run, "details"), "registration failed") != NULL);
    json_decref(run);
    unlink(block);
    rc = ftune(&e, &out, "resume late --json");
    run = last_json(out);
    free(out);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_EQ(jstr(run, "status"), "COMPLETED");
    CHECK_STR_EQ(jstr(run, "registered_model"), "main.test.late/1");
    json_decref(run);
    double l[16];
    REQUIRE(losses(&e, "late", l, 16) == 3);
    REQUIRE(ftune(&e, &out, "registry show main.test.late --json") == 0);
    json_t *j = last_json(out);
    free(out);
    json_t *v = json_array_get(json_object_get(j, "versions"), 0);
    json_t *m = json_object_get(v, "metrics");
    CHECK(json_is_number(json_object_get(m, "final_loss")));
    CHECK(l[2] > 0);
    CHECK_NEAR(json_number_value(json_object_get(m, "final_loss")), l[2], 1e-6 * l[2]);
    CHECK_EQ_INT(json_integer_value(json_object_get(m, "steps")), 3);
    CHECK(json_is_number(json_object_get(m, "eval_loss")));
    const char *ck = jstr(v, "checkpoint");
    CHECK(strstr(ck, "/checkpoints/ep") && strstr(ck, "-ba3"));
    json_decref(j);
    ft_free(reg);
    ft_free(block);
}

/* Issue #9 item 11: closing the terminal (SIGHUP) stops a foreground run like SIGTERM: recorded
 * STOPPED with the reason and its last checkpoint kept (what `resume` continues from). Before, HUP
 * killed the process mid-step and the run showed RUNNING "(its process is gone)". */
TEST(lifecycle_sighup_stops_a_foreground_run_resumably) {
    if (ft_test_sanitized())
        SKIP("every ftune process costs a second to start under ASan; the optimized suite runs this");
    env e;
    REQUIRE(setup(&e));
    char *cmd = ft_asprintf("FTUNE_HOME='%s' OMP_NUM_THREADS=1 exec %s create --model '%s' --train-data-path '%s' "
                            RUN_FLAGS " --name hup --training-duration 100000ba --save-interval 5ba --keep-checkpoints 3 --quiet "
                            ">/dev/null 2>&1",
                            e.home, ft_test_ftune_bin(), e.model, e.train);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    ft_free(cmd);
    bool running = wait_status(&e, "hup", "RUNNING");
    kill(pid, SIGHUP);
    int status = 0;
    waitpid(pid, &status, 0);
    REQUIRE(running);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    json_t *r = get_run(&e, "hup");
    CHECK_STR_EQ(jstr(r, "status"), "STOPPED");
    CHECK(strstr(jstr(r, "details"), "SIGHUP") != NULL);
    char *latest = ft_asprintf("%s/checkpoints/latest.txt", jstr(r, "run_dir"));
    CHECK(ft_path_exists(latest));
    ft_free(latest);
    json_decref(r);
    char *out = NULL;
    REQUIRE(ftune(&e, &out, "events hup --json") == 0);
    json_t *ev = last_json(out);
    free(out);
    json_t *last = json_array_get(ev, json_array_size(ev) - 1);
    CHECK_STR_EQ(jstr(last, "type"), "STOPPED");
    json_decref(ev);
}

/* Start `ftune create ARGS` for run `name` in a child process (stdout/stderr to `log`). */
static pid_t start_create(const env *e, const char *envs, const char *name, const char *extra, const char *log) {
    char *cmd = ft_asprintf("FTUNE_HOME='%s' OMP_NUM_THREADS=1 %s exec %s create --model '%s' --train-data-path '%s' "
                            RUN_FLAGS " --name %s %s --quiet >'%s' 2>&1",
                            e->home, envs, ft_test_ftune_bin(), e->model, e->train, name, extra, log);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    ft_free(cmd);
    return pid;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Another process's exclusive lock on ftune.db (what `sqlite3 ftune.db` in a long transaction
 * holds): returns the connection holding it, NULL on failure. */
static sqlite3 *lock_store(const env *e) {
    char *db = ft_asprintf("%s/ftune.db", e->home);
    sqlite3 *h = NULL;
    bool ok = sqlite3_open(db, &h) == SQLITE_OK;
    ft_free(db);
    sqlite3_busy_timeout(h, 10000);
    if (!ok || sqlite3_exec(h, "BEGIN EXCLUSIVE", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(h);
        return NULL;
    }
    return h;
}

static void unlock_store(sqlite3 *h) {
    sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(h);
}

static char *latest_checkpoint(const env *e, const char *name) {
    json_t *r = get_run(e, name);
    char *p = ft_asprintf("%s/checkpoints/latest.txt", jstr(r, "run_dir"));
    json_decref(r);
    char *txt = NULL;
    size_t n = 0;
    if (ft_file_read_all(p, &txt, &n, NULL) != FT_OK)
        txt = NULL;
    ft_free(p);
    return txt;
}

/* Issue #9 item 10: another process holding an exclusive lock on ftune.db for seconds during a
 * run: training and checkpoints go on meanwhile (before, every store write waited for the lock,
 * and failed the run after 30 s), the records written in the meantime all arrive afterwards, in
 * order, and a WARN event says what happened. */
TEST(lifecycle_locked_store_does_not_stop_training) {
    if (ft_test_sanitized())
        SKIP("every ftune process costs a second to start under ASan; the optimized suite runs this");
    env e;
    REQUIRE(setup(&e));
    char log[1100];
    snprintf(log, sizeof log, "%s/create.log", ft_test_tmpdir());
    pid_t pid = start_create(&e, "", "locked", "--training-duration 1000000ba --save-interval 20ba --keep-checkpoints 3", log);
    REQUIRE(pid > 0);
    bool running = wait_status(&e, "locked", "RUNNING");
    char *before = NULL;
    for (int i = 0; running && i < 300 && !before; i++) {
        before = latest_checkpoint(&e, "locked");
        if (!before)
            sleep_s(0.1);
    }
    sqlite3 *h = before ? lock_store(&e) : NULL;
    char *during = NULL;
    if (h) {
        sleep_s(4);
        during = latest_checkpoint(&e, "locked"); /* a file: readable while the store is locked */
        unlock_store(h);
    }
    /* the WARN event arrives with the records that waited */
    bool warned = false;
    for (int i = 0; h && i < 300 && !warned; i++) {
        char *out = NULL;
        if (ftune(&e, &out, "events locked") == 0 && out && strstr(out, "the run store was unavailable for"))
            warned = true;
        free(out);
        if (!warned)
            sleep_s(0.1);
    }
    char *out = NULL;
    int crc = ftune(&e, &out, "cancel locked --wait --json");
    free(out);
    int status = 0;
    if (crc != 0)
        kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    REQUIRE(running);
    REQUIRE(before != NULL);
    REQUIRE(h != NULL);
    CHECK(during && strcmp(before, during) != 0); /* checkpoints went on under the lock */
    CHECK(warned);
    CHECK_EQ_INT(crc, 0);
    json_t *r = get_run(&e, "locked");
    CHECK_STR_EQ(jstr(r, "status"), "STOPPED");
    json_decref(r);
    /* every step's loss reached the store, steps 1..N without a gap */
    static double l[200000];
    size_t n = losses(&e, "locked", l, sizeof l / sizeof *l);
    REQUIRE(ftune(&e, &out, "metrics locked --name loss --json") == 0);
    json_t *j = last_json(out);
    free(out);
    CHECK(n > 0 && json_array_size(j) == n);
    for (size_t i = 0; i < json_array_size(j); i++)
        if (json_integer_value(json_object_get(json_array_get(j, i), "step")) != (json_int_t)(i + 1)) {
            ft_test_fail_(__FILE__, __LINE__, "metric %zu has step %lld", i,
                          (long long)json_integer_value(json_object_get(json_array_get(j, i), "step")));
            break;
        }
    json_decref(j);
    ft_free(before);
    ft_free(during);
}

/* ...and a store that stays unavailable longer than FTUNE_STORE_OUTAGE_S stops the run after a
 * checkpoint with that reason (recorded once the store takes writes again), resumable. */
TEST(lifecycle_long_store_outage_fails_the_run_with_its_reason) {
    if (ft_test_sanitized())
        SKIP("every ftune process costs a second to start under ASan; the optimized suite runs this");
    env e;
    REQUIRE(setup(&e));
    char log[1100];
    snprintf(log, sizeof log, "%s/create.log", ft_test_tmpdir());
    pid_t pid = start_create(&e, "FTUNE_STORE_OUTAGE_S=2", "outage",
                             "--training-duration 1000000ba --save-interval 20ba --keep-checkpoints 3", log);
    REQUIRE(pid > 0);
    bool running = wait_status(&e, "outage", "RUNNING");
    sqlite3 *h = running ? lock_store(&e) : NULL;
    if (h) {
        sleep_s(5); /* past the 2 s limit: the run stops; its final writes wait for the lock */
        unlock_store(h);
    } else {
        kill(pid, SIGKILL);
    }
    int status = 0;
    bool exited = waitpid(pid, &status, 0) == pid;
    REQUIRE(running && h);
    CHECK(exited && WIFEXITED(status) && WEXITSTATUS(status) == 1);
    char *text = NULL;
    size_t n = 0;
    ft_err err;
    CHECK_OK(ft_file_read_all(log, &text, &n, &err), &err);
    CHECK(text && strstr(text, "the run store has been unavailable for more than 2 s") &&
          strstr(text, "ftune resume outage"));
    ft_free(text);
    json_t *r = get_run(&e, "outage");
    CHECK_STR_EQ(jstr(r, "status"), "FAILED");
    CHECK(strstr(jstr(r, "details"), "database is locked") != NULL);
    json_decref(r);
    char *latest = latest_checkpoint(&e, "outage");
    CHECK(latest != NULL);
    ft_free(latest);
}

/* Issue #9 item 3: a resumed run must see the data its first steps saw. Changed content is refused
 * by `ftune resume` (naming the file and what changed, the run left as it was) and fails the run
 * when the worker finds it; --allow-changed-data continues with a WARN event. A file only touched
 * (same bytes) is no reason to refuse. */
TEST(lifecycle_resume_refuses_changed_data) {
    env e;
    REQUIRE(setup(&e));
    create_killed(&e, "touched");
    create_killed(&e, "changed");
    create_killed(&e, "changed2");
    /* touched: same bytes, another time */
    struct timeval tv[2] = {{1000000000, 0}, {1000000000, 0}};
    REQUIRE(utimes(e.train, tv) == 0);
    char *out;
    CHECK_EQ_INT(ftune(&e, &out, "resume touched --json"), 0);
    free(out);
    REQUIRE(ftune(&e, &out, "events touched --json") == 0);
    CHECK(out && strstr(out, "content unchanged"));
    free(out);
    /* changed: one more record */
    char *data = NULL;
    size_t len = 0;
    REQUIRE_OK(ft_file_read_all(e.train, &data, &len, NULL), (ft_err *)NULL);
    ft_buf b = {0};
    ft_buf_append(&b, data, len);
    ft_buf_appendf(&b, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Oslo\"}]}\n");
    REQUIRE_OK(ft_file_write_atomic(e.train, b.data, b.len, NULL), (ft_err *)NULL);
    ft_buf_free(&b);
    ft_free(data);
    CHECK_EQ_INT(ft_test_sh(&out, "FTUNE_HOME='%s' %s resume changed 2>&1", e.home, ft_test_ftune_bin()), 2);
    CHECK(out && strstr(out, e.train) && strstr(out, "size") && strstr(out, "sha256") &&
          strstr(out, "--allow-changed-data"));
    free(out);
    json_t *r = get_run(&e, "changed");
    CHECK_STR_EQ(jstr(r, "status"), "RUNNING"); /* untouched by the refusal */
    json_decref(r);
    /* the worker fails such runs, saying why */
    CHECK_EQ_INT(ftune(&e, NULL, "worker --until-idle --quiet"), 0);
    r = get_run(&e, "changed2");
    CHECK_STR_EQ(jstr(r, "status"), "FAILED");
    CHECK(strstr(jstr(r, "details"), "changed since the run started") != NULL);
    json_decref(r);
    /* the explicit override: continues, recorded as a WARN event */
    CHECK_EQ_INT(ftune(&e, &out, "resume changed --allow-changed-data --json"), 0);
    r = last_json(out);
    free(out);
    CHECK_STR_EQ(jstr(r, "status"), "COMPLETED");
    json_decref(r);
    REQUIRE(ftune(&e, &out, "events changed --json") == 0);
    json_t *ev = last_json(out);
    free(out);
    bool warned = false;
    for (size_t i = 0; i < json_array_size(ev); i++) {
        json_t *x = json_array_get(ev, i);
        if (!strcmp(jstr(x, "level"), "WARN") && strstr(jstr(x, "message"), "--allow-changed-data") &&
            strstr(jstr(x, "message"), e.train))
            warned = true;
    }
    CHECK(warned);
    json_decref(ev);
}
