/* tests/comm/test_dp.c: data-parallel training (issue #15) under mpirun, against one process.
 *
 * The reference of "the same bits" is one process computing what N ranks compute: each rank's
 * share of the micro-batches accumulated alone, the shares added in rank order
 * (FTUNE_DP_SIMULATE_RANKS=N, train/dp.c's simulation). Against it, N = 2 and 4 ranks must give
 * identical per-step losses and byte-identical checkpoints (weights and optimizer state), in fp32
 * and in bf16 mixed precision; ZeRO-1 on and off the same bits; an ordinary one-process run (all micro-batches accumulated in one
 * gradient) the same losses within 1e-6 relative. The step test puts a rank on fully masked
 * micro-batches and covers the Mixtral and DBRX load-balancing losses, whose routing counts are
 * over the global batch, and bf16. The kill test SIGKILLs one rank of a 2-rank run at a random step: the job ends
 * within seconds, the latest checkpoint is a complete one, and the run resumed on 1 process
 * continues exactly; a 1-process run killed and resumed on 2 ranks too.
 *
 * The processes are this test binary (`--helper mpi_dp_*`) under mpirun, bounded by timeouts. */
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ftune/json.h"
#include "mpi_util.h"
#include "test.h"
#include "train/tiny.h"

/* ---------------------------------------------------------------- the step */

static ft_model_config dense_config(void) {
    ft_model_config c;
    ft_model_config_default(&c);
    c.vocab_size = 300;
    c.hidden_size = 64;
    c.intermediate_size = 96;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.rms_norm_eps = 1e-5;
    c.initializer_range = 0.1;
    c.max_position_embeddings = 64;
    return c;
}

static ft_model_config moe_config(void) {
    ft_model_config c = dense_config();
    snprintf(c.architecture, sizeof c.architecture, "MixtralForCausalLM");
    snprintf(c.model_type, sizeof c.model_type, "mixtral");
    c.intermediate_size = 32;
    c.num_local_experts = 4;
    c.num_experts_per_tok = 2;
    c.router_aux_loss_coef = 0.1;
    c.output_router_logits = true;
    return c;
}

/* DBRX's shape (tests/model/test_dbrx.c's): LayerNorm, Wqkv clamped at 0.8, 5 experts top-3 with
 * 1-norm weights, the 4.40 aux loss; vocabulary 300 like the others. */
static ft_model_config dbrx_config(void) {
    static const char json[] =
        "{\"architectures\": [\"DbrxForCausalLM\"], \"model_type\": \"dbrx\", \"d_model\": 16, \"n_heads\": 4, "
        "\"n_layers\": 2, \"max_seq_len\": 64, \"vocab_size\": 300, \"initializer_range\": 0.3, "
        "\"output_router_logits\": true, \"tie_word_embeddings\": false, "
        "\"attn_config\": {\"clip_qkv\": 0.8, \"kv_n_heads\": 2, \"rope_theta\": 500000}, "
        "\"ffn_config\": {\"ffn_hidden_size\": 12, \"moe_num_experts\": 5, \"moe_top_k\": 3, \"moe_jitter_eps\": null, "
        "\"moe_loss_weight\": 0.1, \"moe_normalize_expert_weights\": 1, \"ffn_act_fn\": {\"name\": \"silu\"}}}";
    ft_model_config c;
    ft_err err;
    FT_ASSERT(ft_model_config_load_buf("dbrx.json", json, strlen(json), &c, &err) == FT_OK);
    return c;
}

enum { SB = 6, ST = 12 };

/* Rows 3..5 have no trainable target: with one row a micro-batch, rank 1 of 2 (and ranks 2, 3 of
 * 4) gets only fully masked micro-batches. */
static void step_batch(uint64_t seed, int64_t V, int32_t *ids, int32_t *tgt, ft_batch *b) {
    ft_rng r;
    ft_rng_seed(&r, seed);
    for (int64_t n = 0; n < SB * ST; n++) {
        ids[n] = (int32_t)ft_rng_below(&r, (uint64_t)V);
        tgt[n] = n / ST >= 3 || n % 4 == 0 ? -100 : (int32_t)ft_rng_below(&r, (uint64_t)V);
    }
    *b = (ft_batch){.B = SB, .T = ST, .input_ids = ids, .targets = tgt};
}

static ft_status new_model_dtype(const ft_model_config *c, ft_dtype dt, ft_model **m, ft_workspace **ws, ft_err *err) {
    ft_model_params p = ft_model_default_params();
    p.training = true;
    FT_TRY(ft_model_new_random(c, 11, &p, m, err));
    ft_workspace_params wp = ft_workspace_default_params();
    wp.max_batch = 1;
    wp.max_seq = ST;
    wp.training = true;
    wp.dtype = dt;
    return ft_workspace_new(*m, &wp, ws, err);
}

static ft_status new_model(const ft_model_config *c, ft_model **m, ft_workspace **ws, ft_err *err) {
    return new_model_dtype(c, FT_DTYPE_FP32, m, ws, err);
}

TEST_HELPER(mpi_dp_step_child) {
    ft_err err;
    ft_comm *comm = NULL;
    REQUIRE_OK(ft_comm_world(&comm, &err), &err);
    const int64_t N = ft_comm_size(comm), me = ft_comm_rank(comm);
    int32_t ids[SB * ST], tgt[SB * ST];
    /* variants: 0 dense, 1 Mixtral (aux loss), 2 DBRX (aux loss), 3 dense in bf16 mixed precision */
    for (int moe = 0; moe < 4; moe++)
        for (int zero = 1; zero >= 0; zero--) {
            ft_model_config c = moe == 1 ? moe_config() : moe == 2 ? dbrx_config() : dense_config();
            const ft_dtype dt = moe == 3 ? FT_DTYPE_BF16 : FT_DTYPE_FP32;
            ft_model *m[3] = {0};
            ft_workspace *ws[3] = {0};
            for (int k = 0; k < 3; k++)
                REQUIRE_OK(new_model_dtype(&c, dt, &m[k], &ws[k], &err), &err);
            ft_train_dp *dp = NULL, *sim = NULL;
            REQUIRE_OK(train_dp_new(comm, 0, zero, m[0], &dp, &err), &err);
            REQUIRE_OK(train_dp_new(NULL, N, zero, m[1], &sim, &err), &err);
            if (moe == 0 || moe == 3)
                REQUIRE(dp->n_chunks >= 2 * N); /* every rank owns a shard */
            train_opt *o[3];
            REQUIRE_OK(train_opt_new_dp(m[0], FT_OPTIMIZER_ADAMW, 0.1, 1e-2, dp, &o[0], &err), &err);
            REQUIRE_OK(train_opt_new_dp(m[1], FT_OPTIMIZER_ADAMW, 0.1, 1e-2, sim, &o[1], &err), &err);
            REQUIRE_OK(train_opt_new_dp(m[2], FT_OPTIMIZER_ADAMW, 0.1, 1e-2, NULL, &o[2], &err), &err);
            for (int step = 0; step < 4; step++) {
                ft_batch b;
                step_batch(100 + (uint64_t)step, c.vocab_size, ids, tgt, &b);
                int64_t n = 0;
                for (int64_t i = 0; i < SB * ST; i++)
                    n += tgt[i] != -100;
                ft_train_step_result r[3];
                for (int k = 0; k < 3; k++) {
                    ft_train_step_params p = {.micro = 1, .denom = (double)n, .lr = 1e-2, .max_norm = 0.5,
                                              .dp = k == 0 ? dp : k == 1 ? sim : NULL};
                    REQUIRE_OK(ft_train_step(m[k], ws[k], train_opt_optim(o[k]), &b, &p, &r[k], &err), &err);
                    CHECK(r[k].updated);
                }
                if (r[0].loss != r[1].loss || r[0].grad_norm != r[1].grad_norm || r[0].aux_loss != r[1].aux_loss)
                    ft_test_fail_(__FILE__, __LINE__,
                                  "moe %d zero %d step %d rank %lld: loss %.17g norm %.17g aux %.17g, simulation %.17g "
                                  "%.17g %.17g",
                                  moe, zero, step, (long long)me, r[0].loss, r[0].grad_norm, r[0].aux_loss, r[1].loss,
                                  r[1].grad_norm, r[1].aux_loss);
                CHECK_EQ_INT(r[0].n_trainable, n);
                /* the ordinary step groups the sums differently; in bf16 that moves roundings of
                 * the 16-bit operands too */
                const double tol = dt == FT_DTYPE_BF16 ? 1e-3 : 1e-6;
                if (!(fabs(r[0].loss - r[2].loss) <= tol * fabs(r[2].loss)))
                    ft_test_fail_(__FILE__, __LINE__, "variant %d step %d: loss %.17g, one process %.17g", moe, step,
                                  r[0].loss, r[2].loss);
                if (moe == 1 || moe == 2)
                    CHECK(r[0].aux_loss > 0 && fabs(r[0].aux_loss - r[2].aux_loss) <= 1e-6 * r[2].aux_loss);
            }
            int64_t ne = ft_model_n_elements(m[0]), bad = 0;
            const float *a = ft_model_param(m[0], 0)->data, *s = ft_model_param(m[1], 0)->data;
            for (int64_t i = 0; i < ne; i++)
                bad += memcmp(&a[i], &s[i], sizeof(float)) != 0;
            if (bad)
                ft_test_fail_(__FILE__, __LINE__, "variant %d zero %d rank %lld: %lld of %lld weights differ", moe, zero,
                              (long long)me, (long long)bad, (long long)ne);
            /* the optimizer state: this rank's shard (ZeRO-1) or all of it, against the simulation's */
            int64_t olo = zero ? dp->lo : 0, ohi = zero ? dp->hi : ne, obad = 0;
            for (int k = 0; k < ft_optim_n_buffers(train_opt_optim(o[0])); k++) {
                const float *x = ft_optim_buffer(train_opt_optim(o[0]), k), *y = ft_optim_buffer(train_opt_optim(o[1]), k);
                obad += memcmp(x, y + olo, (size_t)(ohi - olo) * sizeof(float)) != 0;
            }
            if (obad)
                ft_test_fail_(__FILE__, __LINE__, "variant %d zero %d rank %lld: the optimizer state differs", moe, zero,
                              (long long)me);
            for (int k = 0; k < 3; k++) {
                train_opt_free(o[k]);
                ft_workspace_free(ws[k]);
                ft_model_free(m[k]);
            }
            train_dp_free(dp);
            train_dp_free(sim);
        }
    if (me == 0)
        printf("mpi_dp_step_child: %lld ranks ok\n", (long long)N);
    ft_comm_free(comm);
}

TEST(comm_mpi_dp_step_equals_rank_order_simulation) {
    SKIP_WITHOUT_MPI();
    for (int np = 2; np <= 4; np += 2) {
        char cmd[2048];
        mpi_test_launch(cmd, sizeof cmd, 180, np);
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "%s --helper mpi_dp_step_child 2>&1", mpi_test_self());
        char *out = NULL;
        int st = ft_test_run(cmd, &out);
        if (st != 0 || !strstr(out, "ranks ok"))
            ft_test_fail_(__FILE__, __LINE__, "-np %d: exit %d, output:\n%s", np, st, out);
        ft_free(out);
    }
}

TEST(comm_dp_simulation_of_one_rank_is_the_plain_step) {
    /* Runs in every build: a "1-rank" data-parallel step is exactly the ordinary step. */
    ft_err err;
    ft_model_config c = dense_config();
    ft_model *m[2];
    ft_workspace *ws[2];
    for (int k = 0; k < 2; k++)
        REQUIRE_OK(new_model(&c, &m[k], &ws[k], &err), &err);
    ft_train_dp *sim = NULL;
    REQUIRE_OK(train_dp_new(NULL, 1, true, m[0], &sim, &err), &err);
    train_opt *o[2];
    REQUIRE_OK(train_opt_new_dp(m[0], FT_OPTIMIZER_LION, 0, 1e-3, sim, &o[0], &err), &err);
    REQUIRE_OK(train_opt_new(m[1], FT_OPTIMIZER_LION, 0, 1e-3, &o[1], &err), &err);
    int32_t ids[SB * ST], tgt[SB * ST];
    for (int step = 0; step < 2; step++) {
        ft_batch b;
        step_batch(7 + (uint64_t)step, c.vocab_size, ids, tgt, &b);
        ft_train_step_result r[2];
        for (int k = 0; k < 2; k++) {
            ft_train_step_params p = {.micro = 2, .denom = 1, .lr = 1e-3, .max_norm = 1.0, .dp = k ? NULL : sim};
            int64_t n = 0;
            for (int64_t i = 0; i < SB * ST; i++)
                n += tgt[i] != -100;
            p.denom = (double)n;
            REQUIRE_OK(ft_train_step(m[k], ws[k], train_opt_optim(o[k]), &b, &p, &r[k], &err), &err);
        }
        CHECK(r[0].loss == r[1].loss && r[0].grad_norm == r[1].grad_norm);
    }
    CHECK(memcmp(ft_model_param(m[0], 0)->data, ft_model_param(m[1], 0)->data,
                 (size_t)ft_model_n_elements(m[0]) * sizeof(float)) == 0);
    for (int k = 0; k < 2; k++) {
        train_opt_free(o[k]);
        ft_workspace_free(ws[k]);
        ft_model_free(m[k]);
    }
    train_dp_free(sim);
}

/* ---------------------------------------------------------------- whole runs */

static ft_status slow_step(void *u, const ft_train_step_info *i) {
    (void)i;
    const char *ms = u;
    struct timespec ts = {0, atol(ms) * 1000 * 1000};
    nanosleep(&ts, NULL);
    return FT_OK;
}

/* A run on the ranks of mpirun (or one process): FT_DP_CONFIG names its configuration;
 * FT_DP_RESUME a run folder to resume instead; FT_DP_PIDDIR where each rank writes <rank>.pid;
 * FT_DP_SLEEP_MS a pause after each step (rank 0; the others wait for it). */
TEST_HELPER(mpi_dp_run_child) {
    ft_err err;
    ft_comm *comm = NULL;
    REQUIRE_OK(ft_comm_world(&comm, &err), &err);
    const char *piddir = getenv("FT_DP_PIDDIR"), *sleep_ms = getenv("FT_DP_SLEEP_MS");
    if (piddir) {
        char p[1200], v[32];
        snprintf(p, sizeof p, "%s/%lld.pid", piddir, (long long)ft_comm_rank(comm));
        snprintf(v, sizeof v, "%lld\n", (long long)getpid());
        REQUIRE_OK(ft_file_write_atomic(p, v, strlen(v), &err), &err);
    }
    if (ft_comm_rank(comm) > 0) {
        int st = 0;
        CHECK_OK(ft_train_follow(comm, &st, &err), &err);
        CHECK_EQ_INT(st, 0);
        ft_comm_free(comm);
        return;
    }
    ft_train_sink sink = {.user = (void *)sleep_ms, .on_step = sleep_ms ? slow_step : NULL};
    ft_train_result res;
    ft_status s;
    const char *resume = getenv("FT_DP_RESUME");
    if (resume) {
        s = ft_train_resume_on(resume, 0, comm, &sink, &res, &err);
    } else {
        json_t *j = NULL;
        REQUIRE_OK(ft_json_load_file(getenv("FT_DP_CONFIG"), &j, &err), &err);
        ft_train_config c = ft_train_default_config();
        REQUIRE_OK(ft_train_config_from_json(j, &c, &err), &err);
        json_decref(j);
        s = ft_train_run_on(&c, comm, &sink, &res, &err);
        ft_train_config_deinit(&c);
    }
    CHECK_OK(s, &err);
    CHECK(res.outcome == FT_TRAIN_COMPLETED);
    CHECK_OK(ft_train_release(comm, s == FT_OK ? 0 : 1, &err), &err);
    ft_comm_free(comm);
}

static ft_train_config dp_config(const char *tmp, const char *model, const char *data, const char *name,
                                 const char *duration, const char *save) {
    ft_train_config c = tiny_config(model, data, tmp, name);
    ft_err err;
    FT_ASSERT(ft_train_config_set(&c, "global_batch_size", "4", &err) == FT_OK);
    FT_ASSERT(ft_train_config_set(&c, "training_duration", duration, &err) == FT_OK);
    FT_ASSERT(ft_train_config_set(&c, "save_interval", save, &err) == FT_OK);
    FT_ASSERT(ft_train_config_set(&c, "grad_clip", "0.5", &err) == FT_OK);
    FT_ASSERT(ft_train_config_set(&c, "weight_decay", "0.01", &err) == FT_OK);
    return c;
}

/* The run in one process, simulating `sim` ranks (0: an ordinary run). */
static ft_status run_here(const ft_train_config *c, int sim, ft_err *err) {
    char v[16];
    snprintf(v, sizeof v, "%d", sim);
    if (sim)
        setenv("FTUNE_DP_SIMULATE_RANKS", v, 1);
    ft_train_result res;
    ft_status s = ft_train_run(c, NULL, &res, err);
    unsetenv("FTUNE_DP_SIMULATE_RANKS");
    return s;
}

static ft_status resume_here(const char *run_dir, int sim, ft_err *err) {
    char v[16];
    snprintf(v, sizeof v, "%d", sim);
    if (sim)
        setenv("FTUNE_DP_SIMULATE_RANKS", v, 1);
    ft_train_result res;
    ft_status s = ft_train_resume(run_dir, 0, NULL, &res, err);
    unsetenv("FTUNE_DP_SIMULATE_RANKS");
    return s;
}

/* "timeout mpirun -np N [-x VAR...] self --helper mpi_dp_run_child" with FT_DP_CONFIG = cfg_path. */
static void run_cmd(char *cmd, size_t cap, int np, const char *env, const char *cfg_path, const char *resume) {
    mpi_test_launch(cmd, cap, 240, np);
    snprintf(cmd + strlen(cmd), cap - strlen(cmd), "%s -x FT_DP_CONFIG=%s %s%s %s --helper mpi_dp_run_child 2>&1",
             env, cfg_path, resume ? "-x FT_DP_RESUME=" : "", resume ? resume : "", mpi_test_self());
}

static ft_status write_cfg(const ft_train_config *c, const char *path, ft_err *err) {
    json_t *j = ft_train_config_to_json(c);
    char *t = json_dumps(j, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(j);
    ft_status s = ft_file_write_atomic(path, t, strlen(t), err);
    free(t);
    return s;
}

static size_t losses_of(const char *tmp, const char *name, double *l, size_t cap) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    return tiny_read_losses(dir, l, cap);
}

/* The bytes of the latest checkpoint's `file` in run tmp/name (owned). */
static char *ckpt_file(const char *tmp, const char *name, const char *file, size_t *len) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    char *ck = NULL, *data = NULL;
    if (ft_ckpt_find_latest(dir, true, &ck, NULL, NULL) != FT_OK)
        return NULL;
    char *p = ft_path_join(ck, file);
    if (ft_file_read_all(p, &data, len, NULL) != FT_OK)
        data = NULL;
    ft_free(p);
    ft_free(ck);
    return data;
}

/* Losses equal bit for bit and the final checkpoint's weights and optimizer state byte for byte. */
static void check_same_run(const char *tmp, const char *a, const char *b, size_t want_steps) {
    double la[64], lb[64];
    size_t na = losses_of(tmp, a, la, 64), nb = losses_of(tmp, b, lb, 64);
    if (na != want_steps || nb != want_steps) {
        ft_test_fail_(__FILE__, __LINE__, "%s has %zu losses, %s %zu; expected %zu", a, na, b, nb, want_steps);
        return;
    }
    for (size_t i = 0; i < na; i++)
        if (memcmp(&la[i], &lb[i], sizeof(double)))
            ft_test_fail_(__FILE__, __LINE__, "step %zu: %s loss %.17g, %s %.17g", i + 1, a, la[i], b, lb[i]);
    const char *files[] = {"model.safetensors", "optimizer.safetensors"};
    for (int k = 0; k < 2; k++) {
        size_t n1 = 0, n2 = 0;
        char *x = ckpt_file(tmp, a, files[k], &n1), *y = ckpt_file(tmp, b, files[k], &n2);
        if (!x || !y || n1 != n2 || memcmp(x, y, n1))
            ft_test_fail_(__FILE__, __LINE__, "%s: the final checkpoints of %s and %s differ", files[k], a, b);
        ft_free(x);
        ft_free(y);
    }
}

TEST(comm_mpi_dp_runs_equal_one_process_bit_for_bit) {
    SKIP_WITHOUT_MPI();
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024], cfgp[1200], cmd[4096];
    REQUIRE_OK(tiny_setup(tmp, 5, 2, model, data, sizeof model, &err), &err);
    enum { STEPS = 5 };
    /* "-bf16": bf16 mixed precision (fp32 master weights and optimizer state) */
    const char *names[] = {"sim2", "sim4", "plain", "sim2-bf16"};
    int sims[] = {2, 4, 0, 2};
    for (int k = 0; k < 4; k++) {
        ft_train_config c = dp_config(tmp, model, data, names[k], "5ba", "1000ba");
        if (strstr(names[k], "bf16"))
            REQUIRE_OK(ft_train_config_set(&c, "dtype", "bf16", &err), &err);
        REQUIRE_OK(run_here(&c, sims[k], &err), &err);
        ft_train_config_deinit(&c);
    }
    struct {
        const char *name, *env, *ref;
        int np;
    } runs[] = {{"np2", "", "sim2", 2},
                {"np4", "", "sim4", 4},
                {"np2-zero-off", "-x FTUNE_ZERO=0", "np2", 2},
                {"np2-bf16", "", "sim2-bf16", 2}};
    for (size_t k = 0; k < sizeof runs / sizeof *runs; k++) {
        ft_train_config c = dp_config(tmp, model, data, runs[k].name, "5ba", "1000ba");
        if (strstr(runs[k].name, "bf16"))
            REQUIRE_OK(ft_train_config_set(&c, "dtype", "bf16", &err), &err);
        snprintf(cfgp, sizeof cfgp, "%s/%s.json", tmp, runs[k].name);
        REQUIRE_OK(write_cfg(&c, cfgp, &err), &err);
        ft_train_config_deinit(&c);
        run_cmd(cmd, sizeof cmd, runs[k].np, runs[k].env, cfgp, NULL);
        char *out = NULL;
        int st = ft_test_run(cmd, &out);
        if (st != 0)
            ft_test_fail_(__FILE__, __LINE__, "%s: exit %d:\n%s", runs[k].name, st, out);
        ft_free(out);
        check_same_run(tmp, runs[k].name, runs[k].ref, STEPS);
    }
    /* The ordinary one-process run: the same losses up to the order of the additions. */
    double lp[64], l2[64];
    REQUIRE(losses_of(tmp, "plain", lp, 64) == STEPS && losses_of(tmp, "np2", l2, 64) == STEPS);
    for (int i = 0; i < STEPS; i++)
        if (!(fabs(lp[i] - l2[i]) <= 1e-6 * fabs(lp[i])))
            ft_test_fail_(__FILE__, __LINE__, "step %d: one process %.17g, 2 ranks %.17g", i + 1, lp[i], l2[i]);
}

/* Start `cmd` in the background (its own process group); returns its pid. */
static pid_t start_bg(const char *cmd) {
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Wait for the run tmp/name to log at least n losses (false after 120 s). */
/* Waits until run `name` logged n losses and its folder holds a complete checkpoint: a loss is
 * logged before that step's checkpoint is committed, so the count alone does not promise one. */
static bool wait_losses(const char *tmp, const char *name, size_t n) {
    double l[64];
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    for (int i = 0; i < 2400; i++) {
        char *ck = NULL;
        bool have = losses_of(tmp, name, l, 64) >= n && ft_ckpt_find_latest(dir, true, &ck, NULL, NULL) == FT_OK;
        ft_free(ck);
        if (have)
            return true;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static int wait_exit(pid_t pid, double *secs) {
    double t0 = ft_time_now();
    int st = 0;
    waitpid(pid, &st, 0);
    *secs = ft_time_now() - t0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST(comm_mpi_dp_killed_rank_resumes_on_another_count) {
    SKIP_WITHOUT_MPI();
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024], cfgp[1200], cmd[4096], piddir[1100];
    REQUIRE_OK(tiny_setup(tmp, 9, 3, model, data, sizeof model, &err), &err);
    enum { STEPS = 8 };
    ft_train_config ref = dp_config(tmp, model, data, "uninterrupted", "8ba", "2ba");
    REQUIRE_OK(run_here(&ref, 2, &err), &err);
    ft_train_config_deinit(&ref);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int kill_after = 2 + rand() % 4; /* a random step, past the first checkpoint */

    /* A: 2 ranks, rank 1 killed; resumed in one process. */
    ft_train_config c = dp_config(tmp, model, data, "A", "8ba", "2ba");
    snprintf(cfgp, sizeof cfgp, "%s/A.json", tmp);
    REQUIRE_OK(write_cfg(&c, cfgp, &err), &err);
    ft_train_config_deinit(&c);
    snprintf(piddir, sizeof piddir, "%s/pids", tmp);
    mkdir(piddir, 0755);
    char env[1400];
    snprintf(env, sizeof env, "-x FT_DP_PIDDIR=%s -x FT_DP_SLEEP_MS=250", piddir);
    run_cmd(cmd, sizeof cmd, 2, env, cfgp, NULL);
    pid_t job = start_bg(cmd);
    REQUIRE(job > 0);
    bool reached = wait_losses(tmp, "A", (size_t)kill_after);
    char pidp[1200], *pidtext = NULL;
    size_t plen = 0;
    snprintf(pidp, sizeof pidp, "%s/1.pid", piddir);
    if (!reached || ft_file_read_all(pidp, &pidtext, &plen, NULL) != FT_OK) {
        kill(-job, SIGKILL);
        waitpid(job, NULL, 0);
        ft_free(pidtext);
        REQUIRE(!"the 2-rank run did not get going");
    }
    pid_t rank1 = (pid_t)atol(pidtext);
    ft_free(pidtext);
    kill(rank1, SIGKILL);
    double secs = 0;
    int st = wait_exit(job, &secs);
    kill(-job, SIGKILL); /* whatever is left of the job's group */
    CHECK(st != 0);
    if (secs > 20)
        ft_test_fail_(__FILE__, __LINE__, "the job took %.1f s to end after rank 1 was killed", secs);
    double l[64];
    size_t logged = losses_of(tmp, "A", l, 64);
    CHECK(logged < STEPS);
    /* latest names a complete checkpoint, from before the kill */
    char dir[1200], *ck = NULL;
    snprintf(dir, sizeof dir, "%s/A", tmp);
    REQUIRE_OK(ft_ckpt_find_latest(dir, true, &ck, NULL, &err), &err);
    int64_t ep, ba;
    const char *slash = strrchr(ck, '/');
    CHECK(ft_ckpt_parse_name(slash ? slash + 1 : ck, &ep, &ba) && ba <= (int64_t)logged && ba % 2 == 0);
    ft_free(ck);
    REQUIRE_OK(resume_here(dir, 2, &err), &err);
    check_same_run(tmp, "A", "uninterrupted", STEPS);
    printf("  killed rank 1 after step %d (%zu logged), the job ended in %.1f s, resumed on 1 process from step %lld\n",
           kill_after, logged, secs, (long long)ba);

    /* B: one process (simulating 2 ranks) killed; resumed on 2 ranks. */
    c = dp_config(tmp, model, data, "B", "8ba", "2ba");
    snprintf(cfgp, sizeof cfgp, "%s/B.json", tmp);
    REQUIRE_OK(write_cfg(&c, cfgp, &err), &err);
    ft_train_config_deinit(&c);
    snprintf(cmd, sizeof cmd, "FTUNE_DP_SIMULATE_RANKS=2 FT_DP_SLEEP_MS=250 FT_DP_CONFIG=%s exec %s --helper mpi_dp_run_child",
             cfgp, mpi_test_self());
    job = start_bg(cmd);
    reached = wait_losses(tmp, "B", (size_t)kill_after);
    kill(-job, SIGKILL);
    waitpid(job, NULL, 0);
    REQUIRE(reached);
    snprintf(dir, sizeof dir, "%s/B", tmp);
    run_cmd(cmd, sizeof cmd, 2, "", cfgp, dir);
    char *out = NULL;
    st = ft_test_run(cmd, &out);
    if (st != 0)
        ft_test_fail_(__FILE__, __LINE__, "resuming B on 2 ranks: exit %d:\n%s", st, out);
    ft_free(out);
    check_same_run(tmp, "B", "uninterrupted", STEPS);
}

/* ---------------------------------------------------------------- the command line */

TEST(comm_mpi_dp_cli_create_records_world_and_refuses_detach) {
    SKIP_WITHOUT_MPI();
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024], cmd[4096];
    REQUIRE_OK(tiny_setup(tmp, 3, 2, model, data, sizeof model, &err), &err);
    char args[3000];
    snprintf(args, sizeof args,
             "%s create --model %s --train-data-path %s --task-type INSTRUCTION_FINETUNE --register-to main.default "
             "--context-length 64 --global-batch-size 4 --micro-batch-size 1 --training-duration 3ba "
             "--learning-rate 1e-2 --threads 1 --experiment-path %s/exp --quiet",
             ft_test_ftune_bin(), model, data, tmp);
    mpi_test_launch(cmd, sizeof cmd, 120, 2);
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "-x FTUNE_HOME=%s/home %s --name cli1 2>&1", tmp, args);
    char *out = NULL;
    int st = ft_test_run(cmd, &out);
    if (st != 0)
        ft_test_fail_(__FILE__, __LINE__, "mpirun ftune create: exit %d:\n%s", st, out);
    ft_free(out);
    snprintf(cmd, sizeof cmd, "FTUNE_HOME=%s/home %s get cli1 2>&1", tmp, ft_test_ftune_bin());
    st = ft_test_run(cmd, &out);
    CHECK_EQ_INT(st, 0);
    CHECK(strstr(out, "COMPLETED"));
    if (!strstr(out, "2 processes on 1 host"))
        ft_test_fail_(__FILE__, __LINE__, "ftune get does not show the 2 processes:\n%s", out);
    ft_free(out);
    /* --detach hands a run to the one-process worker: refused, and every rank exits 2 */
    mpi_test_launch(cmd, sizeof cmd, 120, 2);
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "-x FTUNE_HOME=%s/home %s --name cli2 --detach 2>&1", tmp,
             args);
    st = ft_test_run(cmd, &out);
    CHECK(st == 2);
    if (!strstr(out, "trains in the foreground"))
        ft_test_fail_(__FILE__, __LINE__, "exit %d:\n%s", st, out);
    ft_free(out);
}

/* ---------------------------------------------------------------- a rank that fails (issue #15's gaps) */

/* `ftune ARGS` with FTUNE_HOME=tmp/home: exit status, output in *out (owned). `pre` goes before
 * the binary: an mpirun launch (mpi_test_launch) or environment assignments. */
static int ftune_cli(const char *tmp, const char *pre, const char *args, char **out) {
    char cmd[8192];
    if (strstr(pre, "mpirun"))
        snprintf(cmd, sizeof cmd, "%s-x FTUNE_HOME=%s/home %s %s 2>&1", pre, tmp, ft_test_ftune_bin(), args);
    else
        snprintf(cmd, sizeof cmd, "timeout -k 5 240 env FTUNE_HOME=%s/home %s %s %s 2>&1", tmp, pre, ft_test_ftune_bin(),
                 args);
    return ft_test_run(cmd, out);
}

/* The create arguments of the fault tests' runs: 8 steps of 4 rows, a checkpoint every 2. */
static void fault_args(char *buf, size_t cap, const char *model, const char *data, const char *tmp, const char *name) {
    snprintf(buf, cap,
             "create --model %s --train-data-path %s --task-type INSTRUCTION_FINETUNE --register-to main.default "
             "--context-length 64 --global-batch-size 4 --micro-batch-size 1 --training-duration 8ba "
             "--save-interval 2ba --learning-rate 1e-2 --weight-decay 0.01 --grad-clip 0.5 --seed 7 --threads 1 "
             "--experiment-path %s/exp --quiet --name %s",
             model, data, tmp, name);
}

/* `ftune get NAME` and `ftune events NAME` both say `want` (and get says FAILED). */
static void check_failed_with(const char *tmp, const char *name, const char *want) {
    char args[256], *out = NULL;
    snprintf(args, sizeof args, "get %s", name);
    ftune_cli(tmp, "", args, &out);
    if (!strstr(out, "FAILED") || !strstr(out, want))
        ft_test_fail_(__FILE__, __LINE__, "ftune get %s does not say FAILED and \"%s\":\n%s", name, want, out);
    ft_free(out);
    snprintf(args, sizeof args, "events %s", name);
    ftune_cli(tmp, "", args, &out);
    const char *f = strstr(out, "FAILED");
    if (!f || !strstr(f, want))
        ft_test_fail_(__FILE__, __LINE__, "ftune events %s has no FAILED event saying \"%s\":\n%s", name, want, out);
    ft_free(out);
}

/* The latest checkpoint of run tmp/exp/name is complete, at step `ba`, and no partial one is left. */
static void check_latest(const char *tmp, const char *name, int64_t ba) {
    char dir[1200], ckdir[1300];
    snprintf(dir, sizeof dir, "%s/exp/%s", tmp, name);
    char *ck = NULL;
    ft_err err;
    if (ft_ckpt_find_latest(dir, true, &ck, NULL, &err) != FT_OK) {
        ft_test_fail_(__FILE__, __LINE__, "%s: no complete checkpoint: %s", name, err.msg);
        return;
    }
    int64_t ep, got;
    const char *slash = strrchr(ck, '/');
    if (!ft_ckpt_parse_name(slash ? slash + 1 : ck, &ep, &got) || got != ba)
        ft_test_fail_(__FILE__, __LINE__, "%s: latest is %s, expected the checkpoint of step %lld", name, ck, (long long)ba);
    ft_free(ck);
    snprintf(ckdir, sizeof ckdir, "ls -a %s/checkpoints | grep -c '^\\.tmp' ", dir);
    char *out = NULL;
    ft_test_run(ckdir, &out);
    if (atoi(out) != 0)
        ft_test_fail_(__FILE__, __LINE__, "%s: a partial checkpoint folder is left in %s/checkpoints", name, dir);
    ft_free(out);
}

TEST(comm_mpi_dp_failing_rank_stops_every_rank_and_the_run_resumes) {
    SKIP_WITHOUT_MPI();
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024], args[4096], pre[1024], exp[1100], *out = NULL;
    REQUIRE_OK(tiny_setup(tmp, 9, 3, model, data, sizeof model, &err), &err);
    snprintf(exp, sizeof exp, "%s/exp", tmp);
    /* the reference: one process computing what 2 ranks compute, uninterrupted */
    fault_args(args, sizeof args, model, data, tmp, "ref");
    int st = ftune_cli(tmp, "FTUNE_DP_SIMULATE_RANKS=2", args, &out);
    if (st != 0)
        ft_test_fail_(__FILE__, __LINE__, "the reference run: exit %d:\n%s", st, out);
    ft_free(out);

    /* 1. rank 1's share of step 5 fails (an I/O error only it sees): every rank stops at once */
    mpi_test_launch(pre, sizeof pre, 120, 2);
    strcat(pre, "-x FTUNE_TEST_FAULT=fail@1:5 -x FTUNE_COMM_TIMEOUT_S=20 ");
    fault_args(args, sizeof args, model, data, tmp, "f1");
    double t0 = ft_time_now();
    st = ftune_cli(tmp, pre, args, &out);
    double secs = ft_time_now() - t0;
    if (st == 0 || st == 124 || st == 137 || secs > 20)
        ft_test_fail_(__FILE__, __LINE__, "fail@1:5: exit %d after %.1f s (want a failure, well within the 20 s "
                      "timeout):\n%s", st, secs, out);
    ft_free(out);
    check_failed_with(tmp, "f1", "step 5 of 8: rank 1 of 2 (host ");
    check_failed_with(tmp, "f1", "Input/output error (injected by FTUNE_TEST_FAULT)");
    check_latest(tmp, "f1", 4);
    /* resumed (on 2 ranks, from the command line): exactly the uninterrupted run */
    mpi_test_launch(pre, sizeof pre, 120, 2);
    st = ftune_cli(tmp, pre, "resume f1", &out);
    if (st != 0)
        ft_test_fail_(__FILE__, __LINE__, "mpirun -np 2 ftune resume f1: exit %d:\n%s", st, out);
    ft_free(out);
    check_same_run(exp, "f1", "ref", 8);
    printf("  fail@1:5: every rank stopped in %.1f s; FAILED with rank 1's error; resumed from step 4, exact\n", secs);

    /* 2. rank 0 fails writing the checkpoint of step 4 (disk full): the followers do not hang */
    mpi_test_launch(pre, sizeof pre, 120, 2);
    strcat(pre, "-x FTUNE_TEST_FAULT=ckpt@0:4 -x FTUNE_COMM_TIMEOUT_S=20 ");
    fault_args(args, sizeof args, model, data, tmp, "f2");
    t0 = ft_time_now();
    st = ftune_cli(tmp, pre, args, &out);
    secs = ft_time_now() - t0;
    if (st == 0 || st == 124 || st == 137 || secs > 20)
        ft_test_fail_(__FILE__, __LINE__, "ckpt@0:4: exit %d after %.1f s:\n%s", st, secs, out);
    ft_free(out);
    check_failed_with(tmp, "f2", "No space left on device (injected by FTUNE_TEST_FAULT)");
    check_latest(tmp, "f2", 2);
    /* resumed in one process (simulating the 2 ranks' grouping): exact */
    st = ftune_cli(tmp, "FTUNE_DP_SIMULATE_RANKS=2", "resume f2", &out);
    if (st != 0)
        ft_test_fail_(__FILE__, __LINE__, "ftune resume f2: exit %d:\n%s", st, out);
    ft_free(out);
    check_same_run(exp, "f2", "ref", 8);
    printf("  ckpt@0:4: every rank stopped in %.1f s; latest stayed at step 2; resumed on 1 process, exact\n", secs);

    /* 2b. rank 0's own share of step 3 fails; rank 1 cannot read its batch of step 4: the same */
    const char *more[][3] = {{"fail@0:3", "f4", "step 3 of 8: rank 0 of 2 (host "},
                             {"read@1:4", "f5", "step 4 of 8: rank 1 of 2 (host "}};
    for (int k = 0; k < 2; k++) {
        mpi_test_launch(pre, sizeof pre, 120, 2);
        snprintf(pre + strlen(pre), sizeof pre - strlen(pre), "-x FTUNE_TEST_FAULT=%s -x FTUNE_COMM_TIMEOUT_S=20 ",
                 more[k][0]);
        fault_args(args, sizeof args, model, data, tmp, more[k][1]);
        t0 = ft_time_now();
        st = ftune_cli(tmp, pre, args, &out);
        secs = ft_time_now() - t0;
        if (st == 0 || st == 124 || st == 137 || secs > 20)
            ft_test_fail_(__FILE__, __LINE__, "%s: exit %d after %.1f s:\n%s", more[k][0], st, secs, out);
        ft_free(out);
        check_failed_with(tmp, more[k][1], more[k][2]);
        check_failed_with(tmp, more[k][1], "Input/output error (injected by FTUNE_TEST_FAULT)");
        check_latest(tmp, more[k][1], 2);
    }

    /* 3. NaN in rank 1's share from step 3 on: every rank skips the same updates, the run ends
     * as diverged, naming rank 1 */
    mpi_test_launch(pre, sizeof pre, 120, 2);
    strcat(pre, "-x FTUNE_TEST_FAULT=nan@1:3 -x FTUNE_COMM_TIMEOUT_S=20 ");
    fault_args(args, sizeof args, model, data, tmp, "f3");
    st = ftune_cli(tmp, pre, args, &out);
    if (st == 0 || st == 124 || st == 137)
        ft_test_fail_(__FILE__, __LINE__, "nan@1:3: exit %d:\n%s", st, out);
    ft_free(out);
    check_failed_with(tmp, "f3", "training diverged");
    check_failed_with(tmp, "f3", "first in the share of rank 1 of 2 (host ");
    ftune_cli(tmp, "", "events f3", &out);
    const char *w = strstr(out, "step 3: non-finite loss or gradient, first in the share of rank 1 of 2");
    if (!w || !strstr(out, "update skipped (3 in a row)"))
        ft_test_fail_(__FILE__, __LINE__, "the skipped updates do not name rank 1:\n%s", out);
    ft_free(out);
}

/* ---------------------------------------------------------------- memory per rank */

/* Runs FT_RSS_CMD (sh -c) as a child and writes its peak resident memory (ru_maxrss, the kernel's
 * VmHWM at exit) to FT_RSS_OUT.<rank> in bytes; exits with the child's status. Under mpirun each
 * rank is this wrapper around one ftune process. */
TEST_HELPER(mpi_rss_wrap) {
    const char *cmd = getenv("FT_RSS_CMD"), *outp = getenv("FT_RSS_OUT"), *rank = getenv("OMPI_COMM_WORLD_RANK");
    REQUIRE(cmd && outp);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    REQUIRE(wait4(pid, &st, 0, &ru) == pid);
    char p[1200], v[64];
    snprintf(p, sizeof p, "%s.%s", outp, rank ? rank : "0");
    snprintf(v, sizeof v, "%lld\n", (long long)ru.ru_maxrss * 1024);
    ft_err err;
    REQUIRE_OK(ft_file_write_atomic(p, v, strlen(v), &err), &err);
    fflush(stdout);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

/* "501 MiB" / "1.23 GiB" at s, in bytes (0 when not a size). */
static double size_at(const char *s) {
    char *end = NULL;
    double v = s ? strtod(s, &end) : 0;
    if (!s || end == s)
        return 0;
    while (*end == ' ')
        end++;
    double mult = !strncmp(end, "GiB", 3) ? 1073741824.0 : !strncmp(end, "MiB", 3) ? 1048576.0 : !strncmp(end, "KiB", 3) ? 1024.0 : 0;
    return v * mult;
}

static double file_number(const char *path) {
    char *t = NULL;
    size_t n = 0;
    double v = ft_file_read_all(path, &t, &n, NULL) == FT_OK ? strtod(t, NULL) : 0;
    ft_free(t);
    return v;
}

TEST(comm_mpi_dp_memory_plan_per_rank_within_10pct) {
    SKIP_WITHOUT_MPI();
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024], big[1100], cmd[8192], args[4096], *out = NULL;
    REQUIRE_OK(tiny_setup(tmp, 3, 2, model, data, sizeof model, &err), &err);
    /* 39M parameters, most of them a 65536-row embedding (150 MiB of fp32 per copy): the weights,
     * gradients, optimizer state and receive buffers dominate the process's own memory */
    snprintf(big, sizeof big, "%s/big", tmp);
    snprintf(cmd, sizeof cmd,
             "%s init-model --out %s --vocab-size 65536 --hidden-size 512 --intermediate-size 1024 --layers 2 "
             "--heads 8 --tie-embeddings --max-position-embeddings 256 --tokenizer %s 2>&1",
             ft_test_ftune_bin(), big, ft_test_fixture("train/tinytok"));
    int st = ft_test_run(cmd, &out);
    REQUIRE(st == 0);
    ft_free(out);
    struct {
        const char *name, *env;
        int np;
    } runs[] = {{"one", "", 1}, {"two", "", 2}, {"two-nozero", "-x FTUNE_ZERO=0 ", 2}};
    for (size_t k = 0; k < sizeof runs / sizeof *runs; k++) {
        snprintf(args, sizeof args,
                 "exec %s create --model %s --train-data-path %s --task-type INSTRUCTION_FINETUNE --register-to "
                 "main.default --context-length 32 --global-batch-size 2 --micro-batch-size 1 --training-duration 2ba "
                 "--activation-checkpointing off --threads 1 --experiment-path %s/exp --quiet --name %s",
                 ft_test_ftune_bin(), big, data, tmp, runs[k].name);
        char launch[1024] = "";
        if (runs[k].np > 1)
            mpi_test_launch(launch, sizeof launch, 240, runs[k].np);
        else
            snprintf(launch, sizeof launch, "timeout -k 5 240 env OMP_NUM_THREADS=1 ");
        snprintf(cmd, sizeof cmd, "FTUNE_HOME=%s/home FT_RSS_OUT=%s/rss-%s FT_RSS_CMD='%s' %s%s%s%s --helper mpi_rss_wrap 2>&1",
                 tmp, tmp, runs[k].name, args, launch, runs[k].np > 1 ? "-x FTUNE_HOME -x FT_RSS_OUT -x FT_RSS_CMD " : "",
                 runs[k].env, mpi_test_self());
        st = ft_test_run(cmd, &out);
        if (st != 0) {
            ft_test_fail_(__FILE__, __LINE__, "%s: exit %d:\n%s", runs[k].name, st, out);
            ft_free(out);
            continue;
        }
        ft_free(out);
        /* the prediction, as the run's MODEL_INITIALIZED event says it */
        char ev[256];
        snprintf(ev, sizeof ev, "events %s", runs[k].name);
        ftune_cli(tmp, "", ev, &out);
        const char *p = strstr(out, "predicted peak memory ");
        double want0 = p ? size_at(p + strlen("predicted peak memory ")) : 0, want_others = want0;
        const char *o = p ? strstr(p, " on rank 0, ") : NULL;
        if (runs[k].np > 1)
            want_others = o ? size_at(o + strlen(" on rank 0, ")) : 0;
        if (!(want0 > 0 && want_others > 0))
            ft_test_fail_(__FILE__, __LINE__, "%s: no prediction in the events:\n%s", runs[k].name, out);
        ft_free(out);
        if (runs[k].np == 2 && !*runs[k].env) { /* `ftune validate --processes 2` predicts the same */
            snprintf(cmd, sizeof cmd,
                     "validate --model %s --task-type INSTRUCTION_FINETUNE --context-length 32 --global-batch-size 2 "
                     "--micro-batch-size 1 --activation-checkpointing off --threads 1 --no-estimate --processes 2 %s",
                     big, data);
            ftune_cli(tmp, "", cmd, &out);
            const char *v = strstr(out, "memory: predicted peak ");
            double v_rank0 = v ? size_at(v + strlen("memory: predicted peak ")) : 0;
            const char *vo = v ? strstr(v, " per process of 2 (ranks > 0: ") : NULL;
            double v_others = vo ? size_at(vo + strlen(" per process of 2 (ranks > 0: ")) : 0;
            if (fabs(v_rank0 - want0) > 1048576 || fabs(v_others - want_others) > 1048576)
                ft_test_fail_(__FILE__, __LINE__, "validate --processes 2 says %.0f / %.0f MiB, the run %.0f / %.0f:\n%s",
                              v_rank0 / 1048576, v_others / 1048576, want0 / 1048576, want_others / 1048576, out);
            ft_free(out);
        }
        for (int r = 0; r < runs[k].np; r++) {
            char rp[1200];
            snprintf(rp, sizeof rp, "%s/rss-%s.%d", tmp, runs[k].name, r);
            double got = file_number(rp), want = r ? want_others : want0;
            double dev = got > 0 ? (want - got) / got : 1e9;
            printf("  %s rank %d: VmHWM %.1f MiB, predicted %.1f MiB (%+.1f%%)\n", runs[k].name, r, got / 1048576.0,
                   want / 1048576.0, 100 * dev);
            if (!(fabs(dev) <= 0.10))
                ft_test_fail_(__FILE__, __LINE__, "%s rank %d: measured %.1f MiB, predicted %.1f MiB: %+.1f%% (> 10%%)",
                              runs[k].name, r, got / 1048576.0, want / 1048576.0, 100 * dev);
        }
    }
}

/* The lines of metrics.jsonl naming `name` ("loss", "aux_loss", "grad_norm"), concatenated (owned). */
static char *metric_lines(const char *run_dir, const char *name) {
    char p[1200], key[64], *text = NULL;
    size_t n = 0;
    snprintf(p, sizeof p, "%s/metrics.jsonl", run_dir);
    snprintf(key, sizeof key, "\"name\": \"%s\"", name);
    ft_buf b = {0};
    if (ft_file_read_all(p, &text, &n, NULL) == FT_OK)
        for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
            nl = strchr(line, '\n');
            size_t len = nl ? (size_t)(nl - line) : strlen(line);
            if (memmem(line, len, key, strlen(key)))
                ft_buf_appendf(&b, "%.*s\n", (int)len, line);
        }
    ft_free(text);
    return b.data ? b.data : ft_strdup("");
}

TEST(comm_mpi_dp_dbrx_run_equals_rank_order_simulation) {
    SKIP_WITHOUT_MPI();
    /* A DBRX-shaped model (clamped Wqkv, top-2 of 4 experts, the load-balancing loss over the global
     * batch's routing) through `ftune create` on 2 ranks and in one process computing the same
     * grouping: identical losses, aux losses and gradient norms, byte-identical checkpoints. */
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024], dbrx[1100], cmd[4096], args[4096], pre[1024], exp[1100], *out = NULL;
    REQUIRE_OK(tiny_setup(tmp, 5, 2, model, data, sizeof model, &err), &err);
    snprintf(dbrx, sizeof dbrx, "%s/dbrx", tmp);
    snprintf(exp, sizeof exp, "%s/exp", tmp);
    snprintf(cmd, sizeof cmd,
             "%s init-model --out %s --arch dbrx --vocab-size 259 --hidden-size 32 --intermediate-size 24 --layers 2 "
             "--heads 4 --kv-heads 2 --experts 4 --experts-per-tok 2 --output-router-logits --clip-qkv 0.8 "
             "--max-position-embeddings 256 --tokenizer %s 2>&1",
             ft_test_ftune_bin(), dbrx, ft_test_fixture("train/tinytok"));
    REQUIRE(ft_test_run(cmd, &out) == 0);
    ft_free(out);
    const char *names[2] = {"dsim", "dnp2"};
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof args,
                 "create --model %s --train-data-path %s --task-type INSTRUCTION_FINETUNE --register-to main.default "
                 "--context-length 64 --global-batch-size 4 --micro-batch-size 1 --training-duration 4ba "
                 "--learning-rate 1e-2 --seed 7 --threads 1 --experiment-path %s --quiet --name %s",
                 dbrx, data, exp, names[k]);
        if (k)
            mpi_test_launch(pre, sizeof pre, 120, 2);
        int st = ftune_cli(tmp, k ? pre : "FTUNE_DP_SIMULATE_RANKS=2", args, &out);
        if (st != 0)
            ft_test_fail_(__FILE__, __LINE__, "%s: exit %d:\n%s", names[k], st, out);
        ft_free(out);
    }
    check_same_run(exp, "dnp2", "dsim", 4);
    const char *metrics[] = {"aux_loss", "grad_norm"};
    for (int k = 0; k < 2; k++) {
        char a[1200], b[1200];
        snprintf(a, sizeof a, "%s/dsim", exp);
        snprintf(b, sizeof b, "%s/dnp2", exp);
        char *x = metric_lines(a, metrics[k]), *y = metric_lines(b, metrics[k]);
        if (!*x || strcmp(x, y))
            ft_test_fail_(__FILE__, __LINE__, "%s differs (or is missing):\none process:\n%s2 ranks:\n%s", metrics[k], x, y);
        ft_free(x);
        ft_free(y);
    }
}
