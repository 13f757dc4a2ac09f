/* tests/train/test_run_plan.c: how a run plans and paces itself: epochs with the default save
 * interval (every epoch and the end), keep_checkpoints, automatic batch sizes, the learning rate
 * each step actually used (LinearWithWarmup, first update at lr 0), and loss-spike detection. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>

#include "test.h"
#include "tiny.h"

/* Values of metric `name` by step (1-based) from metrics.jsonl; returns the last step. */
static size_t read_metric(const char *run_dir, const char *name, double *v, size_t cap) {
    char *p = ft_path_join(run_dir, "metrics.jsonl"), *data = NULL, pat[96];
    snprintf(pat, sizeof pat, "\"name\": \"%s\", \"value\": %%lf", name);
    size_t n = 0;
    if (ft_file_read_all(p, &data, NULL, NULL) == FT_OK)
        for (char *line = data; line && *line;) {
            char *nl = strchr(line, '\n');
            long long step;
            int off = 0;
            if (sscanf(line, "{\"step\": %lld, %n", &step, &off) == 1 && step >= 1 && (size_t)step <= cap &&
                sscanf(line + off, pat, &v[step - 1]) == 1 && (size_t)step > n)
                n = (size_t)step;
            line = nl ? nl + 1 : NULL;
        }
    ft_free(data);
    ft_free(p);
    return n;
}

TEST(train_epochs_save_interval_keep_and_auto_batch) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024];
    REQUIRE_OK(tiny_setup(tmp, 2, 2, model, data, sizeof model, &err), &err);
    ft_train_config c = tiny_config(model, data, tmp, "epochs");
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "3ep", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "global_batch_size", "0", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "micro_batch_size", "0", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "keep_checkpoints", "2", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "save_interval", "0", &err), &err); /* the default: every epoch */
    ft_train_result res;
    REQUIRE_OK(ft_train_run(&c, NULL, &res, &err), &err);
    /* 16 samples of ~25 tokens pack into a few rows of 64: automatic global batch = rows / 8,
     * at least 1; the micro-batch fits in it. */
    CHECK(res.global_batch_size >= 1 && res.global_batch_size <= 2);
    CHECK(res.micro_batch_size >= 1 && res.micro_batch_size <= res.global_batch_size);
    CHECK_EQ_INT(res.context_length, 64);
    CHECK_EQ_INT(res.epochs_done, 3);
    /* A checkpoint per epoch; keep_checkpoints 2 leaves the last two. */
    char cdir[1200];
    snprintf(cdir, sizeof cdir, "%s/checkpoints", res.run_dir);
    DIR *d = opendir(cdir);
    REQUIRE(d);
    int n = 0, eps[8] = {0};
    struct dirent *de;
    while ((de = readdir(d))) {
        int64_t e, b;
        if (ft_ckpt_parse_name(de->d_name, &e, &b)) {
            if (n < 8)
                eps[n] = (int)e;
            n++;
        }
    }
    closedir(d);
    CHECK_EQ_INT(n, 2);
    CHECK((eps[0] == 2 && eps[1] == 3) || (eps[0] == 3 && eps[1] == 2));
    CHECK(strstr(res.last_checkpoint, "/ep3-ba") != NULL);
    /* The eval of each checkpoint is kept even when the checkpoint is pruned: none here (no eval
     * data, no prompts), so no eval folder. */
    char ev[1200];
    snprintf(ev, sizeof ev, "%s/eval", res.run_dir);
    CHECK(!ft_path_exists(ev));
    ft_train_config_deinit(&c);
}

TEST(train_lr_per_step_follows_schedule) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024];
    REQUIRE_OK(tiny_setup(tmp, 2, 1, model, data, sizeof model, &err), &err);
    ft_train_config c = tiny_config(model, data, tmp, "lr");
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "10ba", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "warmup", "20%", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "learning_rate", "1e-3", &err), &err);
    ft_train_result res;
    REQUIRE_OK(ft_train_run(&c, NULL, &res, &err), &err);
    double lr[16];
    REQUIRE(read_metric(res.run_dir, "lr", lr, 16) == 10);
    /* t_w = floor(0.2 * 10) = 2: 0, 0.5, 1, then down by 1/8 each step. */
    const double want[10] = {0, 0.5, 1, 7.0 / 8, 6.0 / 8, 5.0 / 8, 4.0 / 8, 3.0 / 8, 2.0 / 8, 1.0 / 8};
    for (int i = 0; i < 10; i++)
        CHECK_NEAR(lr[i], 1e-3 * want[i], 1e-15);
    /* Default warmup 2% of 10 steps rounds down to 0: full lr at once. */
    REQUIRE_OK(ft_train_config_set(&c, "warmup", "2%", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "name", "lr2", &err), &err);
    REQUIRE_OK(ft_train_run(&c, NULL, &res, &err), &err);
    REQUIRE(read_metric(res.run_dir, "lr", lr, 16) == 10);
    CHECK_NEAR(lr[0], 1e-3, 1e-15);
    CHECK_NEAR(lr[9], 1e-4, 1e-15);
    double gn[16], tps[16], tt[16];
    CHECK_EQ_INT(read_metric(res.run_dir, "grad_norm", gn, 16), 10);
    CHECK_EQ_INT(read_metric(res.run_dir, "tokens_per_s", tps, 16), 10);
    CHECK_EQ_INT(read_metric(res.run_dir, "trainable_tokens", tt, 16), 10);
    for (int i = 0; i < 10; i++)
        CHECK(gn[i] > 0 && tps[i] > 0 && tt[i] > 0);
    ft_train_config_deinit(&c);
}

TEST(train_loss_spike_zscore) {
    double w[8];
    int64_t n = 0, pos = 0;
    double z;
    /* A noisy plateau around 2.0, then a jump. */
    const double seq[] = {2.0, 2.1, 1.9, 2.05, 1.95, 2.0, 2.02, 1.98};
    for (size_t i = 0; i < 8; i++)
        CHECK(!train_spike_check(w, 8, &n, &pos, seq[i], 5.0, &z));
    CHECK_EQ_INT(n, 8);
    CHECK(train_spike_check(w, 8, &n, &pos, 3.0, 5.0, &z));
    CHECK(z > 5.0);
    /* Falling loss is never a spike. */
    CHECK(!train_spike_check(w, 8, &n, &pos, 0.5, 5.0, &z));
    CHECK(z < 0);
    /* Too little history: no judgement. */
    double w2[8];
    int64_t n2 = 0, p2 = 0;
    CHECK(!train_spike_check(w2, 8, &n2, &p2, 1.0, 5.0, &z));
    CHECK(!train_spike_check(w2, 8, &n2, &p2, 100.0, 5.0, &z));
}

/* The micro-batch size changes only the summation order: whole runs agree to float rounding. */
TEST(train_runs_agree_across_micro_batch_sizes) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024];
    REQUIRE_OK(tiny_setup(tmp, 2, 2, model, data, sizeof model, &err), &err);
    double loss[3][8];
    const char *micro[3] = {"1", "2", "3"};
    for (int k = 0; k < 3; k++) {
        char name[16];
        snprintf(name, sizeof name, "micro%s", micro[k]);
        ft_train_config c = tiny_config(model, data, tmp, name);
        REQUIRE_OK(ft_train_config_set(&c, "training_duration", "8ba", &err), &err);
        REQUIRE_OK(ft_train_config_set(&c, "global_batch_size", "3", &err), &err);
        REQUIRE_OK(ft_train_config_set(&c, "micro_batch_size", micro[k], &err), &err);
        REQUIRE_OK(ft_train_config_set(&c, "learning_rate", "1e-3", &err), &err);
        ft_train_result res;
        REQUIRE_OK(ft_train_run(&c, NULL, &res, &err), &err);
        CHECK_EQ_INT(res.micro_batch_size, atoi(micro[k]));
        REQUIRE(read_metric(res.run_dir, "loss", loss[k], 8) == 8);
        ft_train_config_deinit(&c);
    }
    double worst = 0;
    for (int k = 1; k < 3; k++)
        for (int i = 0; i < 8; i++)
            worst = fmax(worst, fabs(loss[k][i] - loss[0][i]) / loss[0][i]);
    printf("    micro-batch 1 vs 2 vs 3 over 8 steps: largest relative loss difference %.2g\n", worst);
    CHECK(worst < 1e-5);
}
