/* tests/train/test_trainer.c: the trainer end to end on a tiny model: gradients identical across
 * micro-batch sizes, a synthetic task learned (loss below a stated value, greedy answers
 * correct), stop and resume giving the same losses, non-finite losses stopping the run, and the
 * exported folder reloading with the same logits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftune/ckpt.h"
#include "ftune/gen.h"
#include "ftune/json.h"
#include "test.h"
#include "tiny.h"

TEST(train_gradients_equal_across_micro_batch_sizes) {
    const char *dir = ft_test_tmpdir();
    ft_err err;
    REQUIRE_OK(tiny_model_write(dir, 3, &err), &err);
    enum { B = 4, T = 16 };
    ft_tensor_set_threads(1);
    ft_model_params mp = ft_model_default_params();
    mp.training = true;
    ft_model *m = NULL;
    REQUIRE_OK(ft_model_load(dir, &mp, &m, &err), &err);
    ft_workspace_params wp = ft_workspace_default_params();
    wp.max_batch = B;
    wp.max_seq = T;
    wp.training = true;
    ft_workspace *ws = NULL;
    REQUIRE_OK(ft_workspace_new(m, &wp, &ws, &err), &err);
    int32_t in[B * T], tg[B * T];
    ft_rng r;
    ft_rng_seed(&r, 11);
    int64_t n_train = 0;
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)ft_rng_below(&r, 259);
        /* Uneven trainable counts per row: row b trains on its last 4 + 3b positions. */
        int b = i / T, t = i % T;
        tg[i] = t >= T - 4 - 3 * b ? (int32_t)ft_rng_below(&r, 259) : -100;
        n_train += tg[i] >= 0;
    }
    ft_batch batch = {.B = B, .T = T, .input_ids = in, .targets = tg};
    size_t np = ft_model_n_params(m);
    float **ref = calloc(np, sizeof(float *));
    double loss_ref = 0;
    int64_t micros[] = {4, 2, 1, 3};
    for (size_t k = 0; k < 4; k++) {
        double ls;
        int64_t nt;
        REQUIRE_OK(train_accumulate(m, ws, &batch, micros[k], (double)n_train, &ls, &nt, &err), &err);
        CHECK_EQ_INT(nt, n_train);
        if (k == 0) {
            loss_ref = ls;
            for (size_t i = 0; i < np; i++) {
                ft_param *p = ft_model_param(m, i);
                ref[i] = malloc((size_t)p->numel * sizeof(float));
                memcpy(ref[i], p->grad, (size_t)p->numel * sizeof(float));
            }
            continue;
        }
        CHECK_NEAR(ls, loss_ref, 1e-6 * fabs(loss_ref));
        double worst = 0;
        for (size_t i = 0; i < np; i++) {
            ft_param *p = ft_model_param(m, i);
            double mx = 0, d = 0;
            for (int64_t j = 0; j < p->numel; j++) {
                mx = fmax(mx, fabs(ref[i][j]));
                d = fmax(d, fabs(ref[i][j] - p->grad[j]));
            }
            if (mx > 0)
                worst = fmax(worst, d / mx);
        }
        printf("    micro %lld: max gradient difference %.2g of max abs, loss sum %.17g vs %.17g\n", (long long)micros[k], worst, ls, loss_ref);
        /* The same sums in another order: equal to float rounding. */
        if (!(worst <= 1e-5))
            ft_test_fail_(__FILE__, __LINE__, "micro %lld: gradient differs by %.3g relative", (long long)micros[k],
                          worst);
    }
    for (size_t i = 0; i < np; i++)
        free(ref[i]);
    free(ref);
    ft_workspace_free(ws);
    ft_model_free(m);
}

/* Greedy answers of a model folder for every fact; returns how many are right. */
static size_t greedy_correct(const char *model_dir, bool print) {
    ft_err err;
    ft_model_params mp = ft_model_default_params();
    ft_tensor_set_threads(1);
    ft_model *m = NULL;
    ft_tok *tok = NULL;
    ft_generator *g = NULL;
    size_t ok = 0;
    if (ft_model_load(model_dir, &mp, &m, &err) != FT_OK || ft_tok_load(model_dir, &tok, &err) != FT_OK ||
        ft_gen_new(m, tok, model_dir, 64, &g, &err) != FT_OK) {
        ft_test_fail_(__FILE__, __LINE__, "loading %s: %s", model_dir, err.msg);
    } else {
        for (size_t i = 0; i < tiny_n_facts; i++) {
            ft_gen_params gp = ft_gen_default_params();
            gp.sampling.temperature = 0;
            gp.max_new_tokens = 12;
            ft_gen_output out;
            if (ft_gen_text(g, tiny_prompts[i], &gp, &out, &err) != FT_OK) {
                ft_test_fail_(__FILE__, __LINE__, "generate: %s", err.msg);
                break;
            }
            if (print)
                printf("    %-20s -> \"%s\"%s\n", tiny_prompts[i], out.text, out.stopped ? " </s>" : "");
            ok += out.stopped && !strcmp(out.text, tiny_answers[i]);
            ft_gen_output_free(&out);
        }
    }
    ft_gen_free(g);
    ft_tok_free(tok);
    ft_model_free(m);
    return ok;
}

typedef struct {
    int events[16];
    int64_t steps;
    int64_t stop_after; /* should_stop once this many steps are done (0: never) */
    int64_t ckpts;
} recorder;

static ft_status rec_event(void *u, ft_train_event t, ft_log_level l, const char *msg) {
    (void)l;
    (void)msg;
    ((recorder *)u)->events[t]++;
    return FT_OK;
}
static ft_status rec_step(void *u, const ft_train_step_info *i) {
    ((recorder *)u)->steps = i->step;
    return FT_OK;
}
static ft_status rec_ckpt(void *u, const char *path, int64_t e, int64_t b) {
    (void)path;
    (void)e;
    (void)b;
    ((recorder *)u)->ckpts++;
    return FT_OK;
}
static bool rec_stop(void *u) {
    recorder *r = u;
    return r->stop_after > 0 && r->steps >= r->stop_after;
}

TEST(train_learns_synthetic_task) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024], eval[1024];
    snprintf(model, sizeof model, "%s/model", tmp);
    snprintf(data, sizeof data, "%s/train.jsonl", tmp);
    snprintf(eval, sizeof eval, "%s/eval.jsonl", tmp);
    REQUIRE_OK(tiny_model_write(model, 1, &err), &err);
    REQUIRE_OK(tiny_write_ift(data, 2, &err), &err);
    REQUIRE_OK(tiny_write_ift(eval, 1, &err), &err);
    size_t before = greedy_correct(model, false);
    ft_train_config c = tiny_config(model, data, tmp, "learn");
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "60ba", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "global_batch_size", "4", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "micro_batch_size", "2", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "eval_data_path", eval, &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "eval_prompts", "capital of France?", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "eval_max_new_tokens", "8", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "save_interval", "30ba", &err), &err);
    recorder rec = {0};
    ft_train_sink sink = {.user = &rec, .on_event = rec_event, .on_step = rec_step, .on_checkpoint = rec_ckpt};
    ft_train_result res;
    REQUIRE_OK(ft_train_run(&c, &sink, &res, &err), &err);
    CHECK_EQ_INT(res.outcome, FT_TRAIN_COMPLETED);
    CHECK_EQ_INT(res.steps_done, 60);
    CHECK_EQ_INT(rec.steps, 60);
    double loss[64];
    size_t n = tiny_read_losses(res.run_dir, loss, 64);
    CHECK_EQ_INT(n, 60);
    printf("    learning curve (loss by step):");
    for (size_t i = 0; i < n; i += 5)
        printf(" %zu:%.3f", i + 1, loss[i]);
    printf(" %zu:%.3f\n    eval loss %.4f, token accuracy %.3f\n", n, loss[n - 1], res.eval_loss,
           res.eval_token_accuracy);
    CHECK(loss[0] > 4.0);      /* ~ln(259) = 5.56 at the start */
    CHECK(loss[n - 1] < 0.25); /* the stated bar: the facts are learned */
    CHECK(res.has_eval && res.eval_loss < 0.25 && res.eval_token_accuracy > 0.9);
    /* Events: one of each phase, checkpoints at 30 and 60. */
    CHECK_EQ_INT(rec.events[FT_EVENT_STARTED], 1);
    CHECK_EQ_INT(rec.events[FT_EVENT_DATA_VALIDATED], 1);
    CHECK_EQ_INT(rec.events[FT_EVENT_MODEL_INITIALIZED], 1);
    CHECK(rec.events[FT_EVENT_TRAIN_UPDATED] >= 10);
    CHECK_EQ_INT(rec.events[FT_EVENT_CHECKPOINT_SAVED], 2);
    CHECK_EQ_INT(rec.events[FT_EVENT_EVAL_COMPLETED], 2);
    CHECK_EQ_INT(rec.events[FT_EVENT_TRAIN_FINISHED], 1);
    CHECK_EQ_INT(rec.ckpts, 2);
    char p[1300];
    snprintf(p, sizeof p, "%s/checkpoints/ep%lld-ba60", res.run_dir, (long long)res.epochs_done);
    CHECK(ft_path_is_dir(p));
    snprintf(p, sizeof p, "%s/eval/ep%lld-ba60.json", res.run_dir, (long long)res.epochs_done);
    json_t *ej = NULL;
    CHECK_OK(ft_json_load_file(p, &ej, &err), &err);
    json_t *g0 = json_array_get(json_object_get(ej, "generations"), 0);
    CHECK(g0 && json_is_string(json_object_get(g0, "completion")));
    json_decref(ej);
    /* Greedy generations of the exported model answer the facts. */
    size_t after = greedy_correct(res.export_dir, true);
    printf("    greedy answers correct: %zu/%zu before, %zu/%zu after\n", before, tiny_n_facts, after, tiny_n_facts);
    CHECK_EQ_INT(before, 0);
    CHECK(after >= tiny_n_facts - 1);
    ft_train_config_deinit(&c);
}

/* Stop on request after 5 steps, resume: the losses equal those of one uninterrupted run. */
TEST(train_stop_and_resume_same_losses) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024];
    REQUIRE_OK(tiny_setup(tmp, 2, 1, model, data, sizeof model, &err), &err);
    ft_train_config c = tiny_config(model, data, tmp, "whole");
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "12ba", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "save_interval", "4ba", &err), &err);
    ft_train_result res;
    REQUIRE_OK(ft_train_run(&c, NULL, &res, &err), &err);
    double a[16], b[16];
    CHECK_EQ_INT(tiny_read_losses(res.run_dir, a, 16), 12);

    REQUIRE_OK(ft_train_config_set(&c, "name", "parts", &err), &err);
    recorder rec = {.stop_after = 6};
    ft_train_sink sink = {.user = &rec, .on_step = rec_step, .should_stop = rec_stop, .on_event = rec_event};
    REQUIRE_OK(ft_train_run(&c, &sink, &res, &err), &err);
    CHECK_EQ_INT(res.outcome, FT_TRAIN_STOPPED);
    CHECK_EQ_INT(res.steps_done, 6);
    CHECK(strstr(res.last_checkpoint, "-ba6") != NULL);
    CHECK_EQ_INT(rec.events[FT_EVENT_STOPPED], 1);
    /* A second start of the same run folder is refused: it must be resumed. */
    ft_train_result res2;
    CHECK(ft_train_run(&c, NULL, &res2, &err) == FT_ERR_INVALID);
    REQUIRE_OK(ft_train_resume(res.run_dir, 0, NULL, &res, &err), &err);
    CHECK_EQ_INT(res.outcome, FT_TRAIN_COMPLETED);
    CHECK_EQ_INT(tiny_read_losses(res.run_dir, b, 16), 12);
    for (int i = 0; i < 12; i++)
        if (a[i] != b[i])
            ft_test_fail_(__FILE__, __LINE__, "step %d: loss %.17g resumed vs %.17g uninterrupted", i + 1, b[i], a[i]);
    ft_train_config_deinit(&c);
}

TEST(train_nonfinite_stops_the_run) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024];
    REQUIRE_OK(tiny_setup(tmp, 2, 1, model, data, sizeof model, &err), &err);
    /* Poison the final norm: every logit, loss and gradient becomes NaN. */
    ft_model_params mp = ft_model_default_params();
    ft_tensor_set_threads(1);
    ft_model *m = NULL;
    REQUIRE_OK(ft_model_load(model, &mp, &m, &err), &err);
    ft_param *norm = ft_model_find_param(m, "model.norm.weight");
    REQUIRE(norm);
    for (int64_t i = 0; i < norm->numel; i++)
        norm->data[i] = NAN;
    REQUIRE_OK(train_export(m, model, model, FT_ST_DTYPE_F32, 0, &err), &err);
    ft_model_free(m);
    ft_train_config c = tiny_config(model, data, tmp, "nan");
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "10ba", &err), &err);
    recorder rec = {0};
    ft_train_sink sink = {.user = &rec, .on_event = rec_event};
    ft_train_result res;
    CHECK(ft_train_run(&c, &sink, &res, &err) == FT_ERR_NUMERIC);
    CHECK(strstr(err.msg, "3 updates in a row") != NULL);
    CHECK_EQ_INT(res.outcome, FT_TRAIN_FAILED);
    CHECK_EQ_INT(res.skipped_updates, 3);
    CHECK_EQ_INT(rec.events[FT_EVENT_FAILED], 1);
    CHECK(rec.events[FT_EVENT_TRAIN_UPDATED] >= 3);
    ft_train_config_deinit(&c);
}

/* custom_weights_path: the weights of another run's checkpoint, checked for architecture. */
TEST(train_custom_weights_path) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], other[1024], data[1024];
    snprintf(other, sizeof other, "%s/other", tmp);
    REQUIRE_OK(tiny_setup(tmp, 2, 1, model, data, sizeof model, &err), &err);
    ft_train_config c = tiny_config(model, data, tmp, "first");
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "20ba", &err), &err);
    ft_train_result res;
    REQUIRE_OK(ft_train_run(&c, NULL, &res, &err), &err);
    double first[32], second[32];
    REQUIRE(tiny_read_losses(res.run_dir, first, 32) == 20);
    char latest[1200];
    snprintf(latest, sizeof latest, "%s/checkpoints/latest", res.run_dir);
    REQUIRE_OK(ft_train_config_set(&c, "name", "second", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "custom_weights_path", latest, &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "2ba", &err), &err);
    REQUIRE_OK(ft_train_run(&c, NULL, &res, &err), &err);
    REQUIRE(tiny_read_losses(res.run_dir, second, 32) == 2);
    /* It starts where the first run ended, not from the random model. */
    CHECK(second[0] < first[0] - 1.0);
    /* Another architecture is refused. */
    ft_model_config mc;
    char cp[1300];
    snprintf(cp, sizeof cp, "%s/config.json", model);
    REQUIRE_OK(ft_model_config_load(cp, &mc, &err), &err);
    mc.intermediate_size = 64;
    ft_model_params mp = ft_model_default_params();
    ft_tensor_set_threads(1);
    ft_model *m = NULL;
    REQUIRE_OK(ft_model_new_random(&mc, 1, &mp, &m, &err), &err);
    REQUIRE_OK(train_export(m, model, other, FT_ST_DTYPE_F32, 0, &err), &err);
    ft_model_free(m);
    REQUIRE_OK(ft_train_config_set(&c, "name", "third", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "model", other, &err), &err);
    CHECK(ft_train_run(&c, NULL, &res, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "intermediate_size") != NULL);
    ft_train_config_deinit(&c);
}

typedef struct {
    char warn[4096];
} warn_recorder;
static ft_status warn_event(void *u, ft_train_event t, ft_log_level l, const char *msg) {
    warn_recorder *w = u;
    if (t == FT_EVENT_TRAIN_UPDATED && l == FT_LOG_WARN && !w->warn[0])
        snprintf(w->warn, sizeof w->warn, "%s", msg);
    return FT_OK;
}

/* Resume past corrupt checkpoints says, in one WARN event, what was skipped and where the run
 * continues: an older checkpoint, or step 0 when none is complete. */
TEST(train_resume_reports_corrupt_checkpoints) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024], run_dir[1024], f[1400];
    REQUIRE_OK(tiny_setup(tmp, 2, 1, model, data, sizeof model, &err), &err);
    ft_train_config c = tiny_config(model, data, tmp, "corrupt");
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "6ba", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "save_interval", "2ba", &err), &err);
    recorder rec = {.stop_after = 4};
    ft_train_sink sink = {.user = &rec, .on_step = rec_step, .should_stop = rec_stop};
    ft_train_result res;
    REQUIRE_OK(ft_train_run(&c, &sink, &res, &err), &err);
    REQUIRE(res.outcome == FT_TRAIN_STOPPED && strstr(res.last_checkpoint, "-ba4"));
    snprintf(run_dir, sizeof run_dir, "%s", res.run_dir);
    /* the newest is truncated: back to ba2 */
    snprintf(f, sizeof f, "%s/model.safetensors", res.last_checkpoint);
    REQUIRE(truncate(f, 100) == 0);
    warn_recorder w = {{0}};
    ft_train_sink ws = {.user = &w, .on_event = warn_event};
    REQUIRE_OK(ft_train_resume(run_dir, 0, &ws, &res, &err), &err);
    CHECK(strstr(w.warn, "truncated") && strstr(w.warn, "resuming from") && strstr(w.warn, "-ba2"));
    CHECK(!strstr(w.warn, "step 0"));
    CHECK_EQ_INT(res.outcome, FT_TRAIN_COMPLETED);
    /* every checkpoint corrupt: the run starts over, and says so */
    for (;;) {
        char *latest = NULL;
        ft_buf notes = {0};
        ft_status st = ft_ckpt_find_latest(run_dir, true, &latest, &notes, NULL);
        ft_buf_free(&notes);
        if (st != FT_OK)
            break;
        snprintf(f, sizeof f, "%s/model.safetensors", latest);
        ft_free(latest);
        REQUIRE(truncate(f, 100) == 0);
    }
    memset(&w, 0, sizeof w);
    REQUIRE_OK(ft_train_resume(run_dir, 0, &ws, &res, &err), &err);
    CHECK(strstr(w.warn, "no complete checkpoint is left: the run starts again from step 0") != NULL);
    CHECK_EQ_INT(res.outcome, FT_TRAIN_COMPLETED);
    ft_train_config_deinit(&c);
}

/* err is optional (issue #9 item 13): a run or a resume that fails with err == NULL reports its
 * reason in the result instead of writing through the NULL pointer. */
TEST(train_failure_without_err_pointer) {
    const char *tmp = ft_test_tmpdir();
    char model[1024], data[1024];
    ft_err err;
    REQUIRE_OK(tiny_setup(tmp, 5, 1, model, data, sizeof model, &err), &err);
    /* data that passes the configuration check but not the run's: a line that is not JSON */
    REQUIRE_OK(ft_file_write_atomic(data, "{\"prompt\": \"a\", \"response\": \"b\"}\nnot json\n", 43, &err), &err);
    ft_train_config c = tiny_config(model, data, tmp, "bad");
    ft_train_result res;
    CHECK(ft_train_run(&c, NULL, &res, NULL) != FT_OK);
    CHECK_EQ_INT(res.outcome, FT_TRAIN_FAILED);
    CHECK(res.reason[0] != 0 && strstr(res.reason, "invalid configuration") == NULL);
    printf("    reason: %s\n", res.reason);
    /* an invalid configuration: the reason says what is wrong */
    REQUIRE_OK(ft_train_config_set(&c, "name", "bad2", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "experiment_path", "", &err), &err);
    CHECK(ft_train_run(&c, NULL, &res, NULL) != FT_OK);
    CHECK(res.reason[0] != 0 && strcmp(res.reason, "invalid configuration") != 0);
    printf("    reason: %s\n", res.reason);
    /* resume of a folder that is not a run */
    char *nodir = ft_asprintf("%s/not-a-run", tmp);
    CHECK(ft_train_resume(nodir, 0, NULL, &res, NULL) != FT_OK);
    CHECK(res.reason[0] != 0 && strcmp(res.reason, "cannot resume") != 0);
    printf("    reason: %s\n", res.reason);
    ft_free(nodir);
    ft_train_config_deinit(&c);
}

/* trainer_state.json is checked before resume trusts it (issue #9: found while writing
 * fuzz_trainer_state): each damaged field is refused by name. A micro-batch of 0 used to reach
 * the trainer's divisions. */
TEST(train_state_parse_refuses_damaged_states) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024];
    REQUIRE_OK(tiny_setup(tmp, 2, 1, model, data, sizeof model, &err), &err);
    ft_train_config c = tiny_config(model, data, tmp, "st");
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "4ba", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "save_interval", "2ba", &err), &err);
    ft_train_result res;
    recorder rec = {.stop_after = 2};
    ft_train_sink sink = {.user = &rec, .on_step = rec_step, .should_stop = rec_stop, .on_event = rec_event};
    REQUIRE_OK(ft_train_run(&c, &sink, &res, &err), &err);
    char *ckpt = NULL;
    REQUIRE_OK(ft_ckpt_find_latest(res.run_dir, true, &ckpt, NULL, &err), &err);
    char *sp = ft_path_join(ckpt, "trainer_state.json");
    char *text = NULL;
    size_t len = 0;
    REQUIRE_OK(ft_file_read_all(sp, &text, &len, &err), &err);
    ft_train_state st;
    REQUIRE_OK(ft_train_state_parse(sp, text, len, &st, &err), &err);
    CHECK_EQ_INT(st.step, 2);
    CHECK_EQ_INT(st.micro_batch_size, 1);
    CHECK(st.n_loss_window == 2 && st.has_last_loss && st.last_loss == st.loss_window[1]);
    ft_train_state_deinit(&st);
    const struct {
        const char *key, *value, *says;
    } bad[] = {{"micro_batch_size", "0", "micro_batch_size"},   {"micro_batch_size", "5", "larger than"},
               {"global_batch_size", "-1", "global_batch_size"}, {"step", "99", "past"},
               {"step", "-3", "step"},                          {"total_steps", "0", "total_steps"},
               {"warmup_steps", "100", "warmup_steps"},         {"config_hash", "\"../x\"", "config_hash"},
               {"loss_window", "[1, \"x\"]", "loss_window"},     {"elapsed_s", "-1", "elapsed_s"},
               {"cursor", "{}", "cursor"},                       {"tokens_seen", "1.5", "tokens_seen"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *j = json_loads(text, 0, NULL);
        REQUIRE(j);
        json_object_set_new(j, bad[i].key, json_loads(bad[i].value, JSON_DECODE_ANY, NULL));
        char *t2 = json_dumps(j, 0);
        json_decref(j);
        ft_status s = ft_train_state_parse(sp, t2, strlen(t2), &st, &err);
        if (s == FT_OK || !strstr(err.msg, bad[i].says))
            ft_test_fail_(__FILE__, __LINE__, "%s = %s: %s", bad[i].key, bad[i].value, s == FT_OK ? "accepted" : err.msg);
        ft_train_state_deinit(&st);
        if (i == 0) { /* the same damage through a real resume (the manifest updated to match) */
            REQUIRE_OK(ft_file_write_atomic(sp, t2, strlen(t2), &err), &err);
            uint64_t h;
            int64_t size;
            REQUIRE_OK(ft_ckpt_hash_file(sp, &h, &size, &err), &err);
            char *mp = ft_path_join(ckpt, "MANIFEST.json");
            json_t *m = NULL;
            REQUIRE_OK(ft_json_load_file(mp, &m, &err), &err);
            size_t k;
            json_t *f;
            json_array_foreach(json_object_get(m, "files"), k, f) {
                if (!strcmp(json_string_value(json_object_get(f, "name")), "trainer_state.json")) {
                    char hx[24];
                    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)h);
                    json_object_set_new(f, "hash", json_string(hx));
                    json_object_set_new(f, "size", json_integer(size));
                }
            }
            char *mt = json_dumps(m, 0);
            json_decref(m);
            REQUIRE_OK(ft_file_write_atomic(mp, mt, strlen(mt), &err), &err);
            free(mt);
            ft_free(mp);
            ft_train_result res2;
            CHECK(ft_train_resume(res.run_dir, 0, NULL, &res2, &err) != FT_OK);
            CHECK(strstr(err.msg, "micro_batch_size") != NULL);
            printf("    resume with micro_batch_size 0: %s\n", err.msg);
        }
        free(t2);
    }
    ft_free(text);
    ft_free(sp);
    ft_free(ckpt);
    ft_train_config_deinit(&c);
}

/* The message shape of a bad data cursor in a trainer state: located once, in the state's file,
 * with no empty segment ("path: : data cursor: ..." before). */
TEST(trainer_state_bad_cursor_message_shape) {
    const char *text = "{\"format\": 1, \"step\": 1, \"epoch\": 0, \"total_steps\": 2, \"warmup_steps\": 0, "
                       "\"config_hash\": \"f411f1580c46e802\", \"global_batch_size\": 2, \"micro_batch_size\": 1, "
                       "\"context_length\": 64, \"tokens_seen\": 10, \"skipped_updates\": 0, \"nonfinite_in_a_row\": 0, "
                       "\"loss_spikes\": 0, \"elapsed_s\": 0.5, \"cursor\": {\"epoch\": 0, \"window\": 0, \"row\": 1, "
                       "\"rng\": [\"1\"], \"rows_done\": 2}}";
    ft_train_state st;
    ft_err err;
    ft_err_clear(&err);
    CHECK(ft_train_state_parse("ckpt/trainer_state.json", text, strlen(text), &st, &err) == FT_ERR_INVALID);
    char m[2048];
    ft_err_format(&err, m, sizeof m);
    CHECK_STR_EQ(m, "ckpt/trainer_state.json: data cursor: \"rng\" must be a list of 4 hex strings");
}
