/* tests/train/test_config.c: durations, the LinearWithWarmup schedule's exact step indexing, and
 * the run configuration's parsing, JSON round trip and trajectory hash. */
#include <stdlib.h>

#include "ftune/json.h"
#include "ftune/train.h"
#include "test.h"

TEST(train_duration_parse) {
    ft_duration d;
    ft_err err;
    CHECK_OK(ft_duration_parse("1ep", "training_duration", &d, &err), &err);
    CHECK_EQ_INT(d.value, 1);
    CHECK_EQ_INT(d.unit, FT_DURATION_EPOCHS);
    CHECK_OK(ft_duration_parse("1000tok", "training_duration", &d, &err), &err);
    CHECK_EQ_INT(d.value, 1000);
    CHECK_EQ_INT(d.unit, FT_DURATION_TOKENS);
    CHECK_OK(ft_duration_parse("30ba", "training_duration", &d, &err), &err);
    CHECK_EQ_INT(d.value, 30);
    CHECK_EQ_INT(d.unit, FT_DURATION_BATCHES);
    const char *bad[] = {"", "ep", "3", "3x", "3 ep", "-1ep", "0ba", "1.5ep", "3EP", "99999999999999999999ba", "3epx"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(ft_duration_parse(bad[i], "training_duration", &d, &err) == FT_ERR_INVALID);
        CHECK(strstr(err.msg, "training_duration") != NULL);
    }
    CHECK(ft_duration_parse("3x", "training_duration", &d, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "ep, tok or ba") != NULL);
    char buf[32];
    ft_duration_format((ft_duration){.value = 250, .unit = FT_DURATION_TOKENS}, buf, sizeof buf);
    CHECK_STR_EQ(buf, "250tok");
}

TEST(train_duration_to_steps) {
    CHECK_EQ_INT(ft_duration_to_steps((ft_duration){.value = 30, .unit = FT_DURATION_BATCHES}, 7, 100), 30);
    CHECK_EQ_INT(ft_duration_to_steps((ft_duration){.value = 3, .unit = FT_DURATION_EPOCHS}, 7, 100), 21);
    CHECK_EQ_INT(ft_duration_to_steps((ft_duration){.value = 1000, .unit = FT_DURATION_TOKENS}, 7, 100), 10);
    CHECK_EQ_INT(ft_duration_to_steps((ft_duration){.value = 1001, .unit = FT_DURATION_TOKENS}, 7, 100), 11);
    CHECK_EQ_INT(ft_duration_to_steps((ft_duration){.value = 5, .unit = FT_DURATION_TOKENS}, 7, 100), 1);
}

/* The indexing convention pinned: the t-th update (t from 0) uses multiplier t/t_w in warmup,
 * then 1 - (t - t_w)/(total - t_w). 100 steps, 2% warmup -> t_w = 2. */
TEST(train_schedule_linear_with_warmup) {
    ft_schedule s = {.total_steps = 100, .warmup_steps = 2, .peak_lr = 1e-3};
    CHECK_NEAR(ft_schedule_multiplier(&s, 0), 0.0, 0);
    CHECK_NEAR(ft_schedule_multiplier(&s, 1), 0.5, 0);
    CHECK_NEAR(ft_schedule_multiplier(&s, 2), 1.0, 0);
    CHECK_NEAR(ft_schedule_multiplier(&s, 3), 1.0 - 1.0 / 98.0, 1e-15);
    CHECK_NEAR(ft_schedule_multiplier(&s, 51), 0.5, 1e-15);
    CHECK_NEAR(ft_schedule_multiplier(&s, 99), 1.0 / 98.0, 1e-15);
    CHECK_NEAR(ft_schedule_multiplier(&s, 100), 0.0, 0);
    CHECK_NEAR(ft_schedule_lr(&s, 1), 5e-4, 1e-18);
    /* No warmup: full peak at the first step. */
    ft_schedule s0 = {.total_steps = 10, .warmup_steps = 0, .peak_lr = 1};
    CHECK_NEAR(ft_schedule_multiplier(&s0, 0), 1.0, 0);
    CHECK_NEAR(ft_schedule_multiplier(&s0, 5), 0.5, 0);
    /* Monotone up then down. */
    ft_schedule s2 = {.total_steps = 1000, .warmup_steps = 20, .peak_lr = 1};
    for (int64_t t = 1; t < 1000; t++) {
        double a = ft_schedule_multiplier(&s2, t - 1), b = ft_schedule_multiplier(&s2, t);
        if (t <= 20)
            CHECK(b > a);
        else
            CHECK(b < a);
    }
}

TEST(train_config_set_and_errors) {
    ft_train_config c = ft_train_default_config();
    ft_err err;
    CHECK_EQ_INT(c.training_duration.value, 1);
    CHECK_EQ_INT(c.training_duration.unit, FT_DURATION_EPOCHS);
    CHECK_NEAR(c.learning_rate, 5e-7, 0);
    CHECK_NEAR(c.grad_clip, 1.0, 0);
    CHECK(c.warmup.is_fraction && c.warmup.fraction == 0.02);
    CHECK_OK(ft_train_config_set(&c, "model", "/m", &err), &err);
    CHECK_OK(ft_train_config_set(&c, "learning-rate", "1e-5", &err), &err);
    CHECK_NEAR(c.learning_rate, 1e-5, 0);
    CHECK_OK(ft_train_config_set(&c, "training_duration", "30ba", &err), &err);
    CHECK_OK(ft_train_config_set(&c, "warmup", "10ba", &err), &err);
    CHECK(!c.warmup.is_fraction && c.warmup.duration.value == 10);
    CHECK_OK(ft_train_config_set(&c, "warmup", "5%", &err), &err);
    CHECK(c.warmup.is_fraction && fabs(c.warmup.fraction - 0.05) < 1e-15);
    CHECK_OK(ft_train_config_set(&c, "optimizer", "lion", &err), &err);
    CHECK_EQ_INT(c.optimizer, FT_OPTIMIZER_LION);
    CHECK_OK(ft_train_config_set(&c, "eval_prompts", "a", &err), &err);
    CHECK_OK(ft_train_config_set(&c, "eval_prompts", "b", &err), &err);
    CHECK_EQ_INT(c.n_eval_prompts, 2);
    CHECK_OK(ft_train_config_set(&c, "task_type", "INSTRUCTION_FINETUNE", &err), &err);
    CHECK_OK(ft_train_config_set(&c, "save_interval", "5ba", &err), &err);
    CHECK_OK(ft_train_config_set(&c, "dtype", "bfloat16", &err), &err);
    CHECK_STR_EQ(c.dtype, "bf16");
    CHECK_OK(ft_train_config_set(&c, "dtype", "auto", &err), &err);
    CHECK_STR_EQ(c.dtype, "auto");

    struct {
        const char *k, *v, *needle;
    } bad[] = {
        {"learning_rate", "abc", "learning_rate"},       {"learning_rate", "-1", "learning_rate"},
        {"optimizer", "sgd", "adamw or lion"},           {"task_type", "CHAT", "CHAT_COMPLETION"},
        {"global_batch_size", "-3", "global_batch_size"}, {"save_interval", "100tok", "Nba or Nep"},
        {"warmup", "abc", "warmup"},                      {"nonsense", "1", "unknown parameter"},
        {"loss_on", "some", "all_assistant"},             {"dtype", "fp16", "fp32, bf16 or auto"},
        {"context_length", "1", "at least 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ft_status s = ft_train_config_set(&c, bad[i].k, bad[i].v, &err);
        CHECK(s != FT_OK);
        if (s != FT_OK && !strstr(err.msg, bad[i].needle))
            ft_test_fail_(__FILE__, __LINE__, "%s=%s: message \"%s\" lacks \"%s\"", bad[i].k, bad[i].v, err.msg,
                          bad[i].needle);
    }
    /* Cross-field validation. */
    CHECK(ft_train_config_validate(&c, &err) == FT_ERR_INVALID); /* no data path */
    CHECK_OK(ft_train_config_set(&c, "train_data_path", "/d", &err), &err);
    CHECK_OK(ft_train_config_set(&c, "name", "r", &err), &err);
    CHECK_OK(ft_train_config_set(&c, "experiment_path", "/e", &err), &err);
    CHECK_OK(ft_train_config_validate(&c, &err), &err);
    CHECK_OK(ft_train_config_set(&c, "global_batch_size", "4", &err), &err);
    CHECK_OK(ft_train_config_set(&c, "micro_batch_size", "8", &err), &err);
    CHECK(ft_train_config_validate(&c, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "micro_batch_size") != NULL);
    ft_train_config_deinit(&c);
}

TEST(train_config_json_round_trip_and_hash) {
    ft_train_config c = ft_train_default_config();
    ft_err err;
    const char *kv[][2] = {{"model", "/models/tiny"},      {"train_data_path", "/d/train.jsonl"},
                           {"register_to", "main.demo"},   {"eval_data_path", "/d/eval.jsonl"},
                           {"eval_prompts", "Hello"},      {"eval_prompts", "Wie geht's? \xc3\xa9"},
                           {"training_duration", "3ep"},   {"learning_rate", "3.3e-4"},
                           {"context_length", "128"},      {"experiment_path", "/tmp/x"},
                           {"name", "run-1"},              {"seed", "99"},
                           {"global_batch_size", "8"},     {"micro_batch_size", "2"},
                           {"warmup", "7.5%"},             {"save_interval", "10ba"},
                           {"keep_checkpoints", "2"},      {"threads", "2"}};
    for (size_t i = 0; i < sizeof kv / sizeof *kv; i++)
        REQUIRE_OK(ft_train_config_set(&c, kv[i][0], kv[i][1], &err), &err);
    json_t *j = ft_train_config_to_json(&c);
    ft_train_config d = ft_train_default_config();
    REQUIRE_OK(ft_train_config_from_json(j, &d, &err), &err);
    json_t *j2 = ft_train_config_to_json(&d);
    CHECK(json_equal(j, j2));
    CHECK(ft_train_config_hash(&c) == ft_train_config_hash(&d));
    CHECK_EQ_INT(d.n_eval_prompts, 2);
    CHECK_STR_EQ(d.eval_prompts[1], "Wie geht's? \xc3\xa9");
    /* Fields that do not change the trajectory leave the hash alone; those that do change it. */
    uint64_t h = ft_train_config_hash(&c);
    REQUIRE_OK(ft_train_config_set(&d, "threads", "1", &err), &err);
    REQUIRE_OK(ft_train_config_set(&d, "keep_checkpoints", "5", &err), &err);
    CHECK(ft_train_config_hash(&d) == h);
    REQUIRE_OK(ft_train_config_set(&d, "seed", "100", &err), &err);
    CHECK(ft_train_config_hash(&d) != h);
    /* Copy is deep. */
    ft_train_config e;
    REQUIRE_OK(ft_train_config_copy(&e, &c, &err), &err);
    CHECK(e.model != c.model);
    CHECK_STR_EQ(e.model, c.model);
    ft_train_config_deinit(&e);
    /* Bad JSON values are reported with the parameter. */
    json_t *bad = json_pack("{s:s}", "training_duration", "2 epochs");
    ft_train_config f = ft_train_default_config();
    CHECK(ft_train_config_from_json(bad, &f, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "training_duration") != NULL);
    json_decref(bad);
    ft_train_config_deinit(&f);
    json_decref(j);
    json_decref(j2);
    ft_train_config_deinit(&c);
    ft_train_config_deinit(&d);
    char *rd = NULL;
    ft_train_config g = ft_train_default_config();
    REQUIRE_OK(ft_train_config_set(&g, "experiment_path", "/a/b", &err), &err);
    REQUIRE_OK(ft_train_config_set(&g, "name", "r1", &err), &err);
    rd = ft_train_run_dir(&g);
    CHECK_STR_EQ(rd, "/a/b/r1");
    ft_free(rd);
    ft_train_config_deinit(&g);
}
