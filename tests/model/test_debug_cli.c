/* tests/model: `ftune debug forward` end to end on a reference golden: the printed loss, the
 * --logits-out and --grads-out files (names, shapes, values within the issue #2 tolerances), and
 * usage errors. */
#include <stdlib.h>

#include "ftune/safetensors.h"
#include "test.h"

static void golden_dir(char *buf, size_t cap, const char *name) {
    const char *env = getenv("FT_REFERENCE_DIR");
    if (env && *env)
        snprintf(buf, cap, "%s/%s", env, name);
    else
        snprintf(buf, cap, "%s/%s", ft_test_fixture("reference"), name);
}

static double rel_err(const ft_st_tensor *got, const ft_st_tensor *want) {
    int64_t n = want->numel;
    float *a = ft_malloc((size_t)n * 4), *b = ft_malloc((size_t)n * 4);
    ft_err err;
    double worst = 1e30, mx = 0;
    if (got->numel == n && ft_st_read_f32(got, a, n, &err) == FT_OK && ft_st_read_f32(want, b, n, &err) == FT_OK) {
        worst = 0;
        for (int64_t i = 0; i < n; i++) {
            worst = fmax(worst, fabs((double)a[i] - b[i]));
            mx = fmax(mx, fabs(b[i]));
        }
        worst /= fmax(mx, 1e-30);
    }
    ft_free(a);
    ft_free(b);
    return worst;
}

TEST(debug_forward_cli_matches_reference) {
    char dir[600], cmd[2400], lo[700], go[700], exp[700];
    golden_dir(dir, sizeof dir, "mqa_tied_hd12");
    const char *tmp = ft_test_tmpdir();
    snprintf(lo, sizeof lo, "%s/logits.safetensors", tmp);
    snprintf(go, sizeof go, "%s/grads.safetensors", tmp);
    snprintf(exp, sizeof exp, "%s/expected.safetensors", dir);
    snprintf(cmd, sizeof cmd, "%s debug forward --model %s --batch %s/batch.json --logits-out %s --grads-out %s --json",
             ft_test_ftune_bin(), dir, dir, lo, go);
    char *out = NULL;
    int rc = ft_test_run(cmd, &out);
    REQUIRE(rc == 0 && out);
    double loss = -1;
    long long n = -1;
    CHECK(sscanf(out, "{\"loss\": %lf, \"trainable_tokens\": %lld}", &loss, &n) == 2);
    free(out);
    ft_err err;
    ft_st_reader *want = NULL, *gl = NULL, *gg = NULL;
    REQUIRE_OK(ft_st_open(exp, &want, &err), &err);
    REQUIRE_OK(ft_st_open(lo, &gl, &err), &err);
    REQUIRE_OK(ft_st_open(go, &gg, &err), &err);
    const char *lf = ft_st_metadata(want, "loss_f64");
    REQUIRE(lf);
    CHECK_NEAR(loss, strtod(lf, NULL), 1e-5 * strtod(lf, NULL));
    const ft_st_tensor *lt = ft_st_find(gl, "logits");
    REQUIRE(lt && lt->ndim == 3 && lt->dtype == FT_ST_DTYPE_F32);
    CHECK(rel_err(lt, ft_st_find(want, "logits")) <= 1e-4);
    size_t n_grads = 0;
    for (size_t i = 0; i < ft_st_count(want); i++) {
        const ft_st_tensor *w = ft_st_tensor_at(want, i);
        if (strncmp(w->name, "grad.", 5) != 0)
            continue;
        n_grads++;
        const ft_st_tensor *g = ft_st_find(gg, w->name + 5);
        if (!g) {
            ft_test_fail_(__FILE__, __LINE__, "--grads-out lacks %s", w->name + 5);
            continue;
        }
        CHECK(g->dtype == FT_ST_DTYPE_F32);
        CHECK(rel_err(g, w) <= 1e-4);
    }
    CHECK_EQ_INT(ft_st_count(gg), n_grads);
    CHECK(ft_st_find(gg, "lm_head.weight") == NULL); /* tied */
    ft_st_close(want);
    ft_st_close(gl);
    ft_st_close(gg);
}

TEST(debug_forward_cli_usage_errors) {
    char dir[600], cmd[1600];
    golden_dir(dir, sizeof dir, "mha_untied");
    snprintf(cmd, sizeof cmd, "%s debug forward --batch %s/batch.json 2>/dev/null", ft_test_ftune_bin(), dir);
    CHECK_EQ_INT(ft_test_run(cmd, NULL), 2); /* --model missing */
    snprintf(cmd, sizeof cmd, "%s debug forward --model %s --batch /nonexistent.json 2>/dev/null", ft_test_ftune_bin(),
             dir);
    CHECK_EQ_INT(ft_test_run(cmd, NULL), 2);
    const char *tmp = ft_test_tmpdir();
    char bad[700];
    snprintf(bad, sizeof bad, "%s/bad.json", tmp);
    const char *txt = "{\"input_ids\": [[1, 2, 999]], \"targets\": [[2, 3, -100]]}"; /* 999 >= vocab */
    ft_err err;
    REQUIRE_OK(ft_file_write_atomic(bad, txt, strlen(txt), &err), &err);
    snprintf(cmd, sizeof cmd, "%s debug forward --model %s --batch %s 2>/dev/null", ft_test_ftune_bin(), dir, bad);
    CHECK_EQ_INT(ft_test_run(cmd, NULL), 2);
    snprintf(cmd, sizeof cmd, "%s debug train-steps --model %s --batch %s/batch.json --steps 3 --json",
             ft_test_ftune_bin(), dir, dir);
    char *out = NULL;
    REQUIRE(ft_test_run(cmd, &out) == 0 && out);
    double l0, l1, l2;
    CHECK(sscanf(out, "{\"losses\": [%lf, %lf, %lf]", &l0, &l1, &l2) == 3);
    CHECK(l2 < l0);
    free(out);
}
