/* tests/train/test_resume_kill.c: a real training process is killed with SIGKILL in the middle of
 * its run; its newest checkpoint is then damaged (truncated weights), and the run is resumed: it
 * falls back to the last complete checkpoint and produces exactly the per-step losses of an
 * uninterrupted run with the same seed and thread count.
 *
 * The training process is this test binary run again (fork + exec of /proc/self/exe, so no
 * OpenMP state crosses a fork) as `ftune_tests --helper train_kill_child` with
 * FT_TRAIN_CHILD_CONFIG naming a run configuration: the helper (not a test) trains it, slowed by a
 * sleep per step so that the kill lands mid-run. */
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ftune/json.h"
#include "test.h"
#include "tiny.h"

static ft_status slow_step(void *u, const ft_train_step_info *i) {
    (void)u;
    (void)i;
    struct timespec ts = {0, 40 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return FT_OK;
}

TEST_HELPER(train_kill_child) {
    const char *path = getenv("FT_TRAIN_CHILD_CONFIG");
    REQUIRE(path);
    ft_err err;
    json_t *j = NULL;
    REQUIRE_OK(ft_json_load_file(path, &j, &err), &err);
    ft_train_config c = ft_train_default_config();
    REQUIRE_OK(ft_train_config_from_json(j, &c, &err), &err);
    json_decref(j);
    ft_train_sink sink = {.on_step = slow_step};
    ft_train_result res;
    CHECK_OK(ft_train_run(&c, &sink, &res, &err), &err);
    ft_train_config_deinit(&c);
}

/* Lines of metrics.jsonl naming the loss (0 if absent). */
static size_t losses_logged(const char *run_dir) {
    double l[64];
    return tiny_read_losses(run_dir, l, 64);
}

TEST(train_resume_after_sigkill) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024], cfgp[1024], run_dir[1100];
    snprintf(model, sizeof model, "%s/model", tmp);
    snprintf(data, sizeof data, "%s/train.jsonl", tmp);
    snprintf(cfgp, sizeof cfgp, "%s/child.json", tmp);
    REQUIRE_OK(tiny_model_write(model, 5, &err), &err);
    REQUIRE_OK(tiny_write_ift(data, 2, &err), &err);
    enum { STEPS = 24 };
    ft_train_config c = tiny_config(model, data, tmp, "whole");
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "24ba", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "save_interval", "4ba", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "global_batch_size", "3", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "micro_batch_size", "2", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "warmup", "3ba", &err), &err);
    /* Two threads: exactness must not depend on running single-threaded. */
    REQUIRE_OK(ft_train_config_set(&c, "threads", "2", &err), &err);
    /* The reference: one uninterrupted run, in this process. */
    ft_train_result res;
    REQUIRE_OK(ft_train_run(&c, NULL, &res, &err), &err);
    double want[STEPS + 8], got[STEPS + 8];
    REQUIRE(tiny_read_losses(res.run_dir, want, STEPS + 8) == STEPS);

    /* The same run in another process, killed once its 10th step is logged (checkpoints at 4
     * and 8 are complete; the 12th may be half-written). */
    REQUIRE_OK(ft_train_config_set(&c, "name", "killed", &err), &err);
    json_t *j = ft_train_config_to_json(&c);
    char *text = json_dumps(j, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(j);
    REQUIRE_OK(ft_file_write_atomic(cfgp, text, strlen(text), &err), &err);
    free(text);
    snprintf(run_dir, sizeof run_dir, "%s/killed", tmp);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        setenv("FT_TRAIN_CHILD_CONFIG", cfgp, 1);
        execl("/proc/self/exe", "ftune_tests", "--helper", "train_kill_child", (char *)NULL);
        _exit(127);
    }
    double t0 = ft_time_now();
    size_t seen = 0;
    while ((seen = losses_logged(run_dir)) < 10 && ft_time_now() - t0 < 60) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    REQUIRE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    size_t at_kill = losses_logged(run_dir);
    printf("    killed the training process after %zu of %d steps\n", at_kill, STEPS);
    REQUIRE(at_kill >= 10 && at_kill < STEPS);

    /* Damage the newest complete checkpoint: resume must fall back to the one before. */
    char *latest = NULL;
    REQUIRE_OK(ft_ckpt_find_latest(run_dir, true, &latest, NULL, &err), &err);
    int64_t ep, ba;
    REQUIRE(ft_ckpt_parse_name(strrchr(latest, '/') + 1, &ep, &ba));
    char wpath[1300];
    snprintf(wpath, sizeof wpath, "%s/model.safetensors", latest);
    struct stat st;
    REQUIRE(stat(wpath, &st) == 0);
    REQUIRE(truncate(wpath, st.st_size / 2) == 0);
    printf("    truncated %s/model.safetensors (step %lld)\n", strrchr(latest, '/') + 1, (long long)ba);
    ft_free(latest);

    ft_train_result res2;
    REQUIRE_OK(ft_train_resume(run_dir, 0, NULL, &res2, &err), &err);
    CHECK_EQ_INT(res2.outcome, FT_TRAIN_COMPLETED);
    CHECK_EQ_INT(tiny_read_losses(run_dir, got, STEPS + 8), STEPS);
    int same = 0;
    for (int i = 0; i < STEPS; i++) {
        if (got[i] == want[i])
            same++;
        else
            ft_test_fail_(__FILE__, __LINE__, "step %d: loss %.17g after kill+resume, %.17g uninterrupted", i + 1,
                          got[i], want[i]);
    }
    printf("    resumed from step %lld: %d/%d per-step losses bit-identical to the uninterrupted run\n",
           (long long)(ba - 4), same, STEPS);
    /* The final weights agree exactly too. */
    char a[1300], b[1300];
    snprintf(a, sizeof a, "%s/model/model.safetensors", res.run_dir);
    snprintf(b, sizeof b, "%s/model/model.safetensors", run_dir);
    uint64_t ha, hb;
    REQUIRE_OK(ft_ckpt_hash_file(a, &ha, NULL, &err), &err);
    REQUIRE_OK(ft_ckpt_hash_file(b, &hb, NULL, &err), &err);
    CHECK(ha == hb);
    ft_train_config_deinit(&c);
}
