/* tests/gen/test_generate_cli.c: `ftune generate` end to end: the streamed text equals the
 * library's greedy completion, --json reports it, bad flags exit 2 naming the flag, a missing
 * model exits 2. */
#include <stdlib.h>

#include "ftune/gen.h"
#include "ftune/json.h"
#include "test.h"
#include "train/tiny.h"

TEST(gen_cli_generate) {
    const char *dir = ft_test_tmpdir();
    ft_err err;
    REQUIRE_OK(tiny_model_write(dir, 6, &err), &err);
    /* The library's greedy answer. */
    ft_model_params mp = ft_model_default_params();
    ft_tensor_set_threads(1);
    ft_model *m = NULL;
    ft_tok *tok = NULL;
    ft_generator *g = NULL;
    REQUIRE_OK(ft_model_load(dir, &mp, &m, &err), &err);
    REQUIRE_OK(ft_tok_load(dir, &tok, &err), &err);
    REQUIRE_OK(ft_gen_new(m, tok, dir, 0, &g, &err), &err);
    ft_gen_params gp = ft_gen_default_params();
    gp.sampling.temperature = 0;
    gp.max_new_tokens = 16;
    ft_gen_output want;
    REQUIRE_OK(ft_gen_text(g, "Once upon", &gp, &want, &err), &err);
    char cmd[2048];
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s generate --model %s --prompt 'Once upon' --temperature 0 --max-new-tokens 16 --threads 1",
             ft_test_ftune_bin(), dir);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    /* Streamed text, then a newline. */
    ft_buf expect = {0};
    ft_buf_appendf(&expect, "%s\n", want.text);
    CHECK_STR_EQ(out, ft_buf_cstr(&expect));
    free(out);
    ft_buf_free(&expect);
    snprintf(cmd, sizeof cmd, "%s generate --model %s --prompt 'Once upon' --temperature 0 --max-new-tokens 16 --json --threads 1",
             ft_test_ftune_bin(), dir);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    json_t *j = out ? json_loads(out, 0, NULL) : NULL;
    CHECK(j && json_is_string(json_object_get(j, "text")));
    if (j)
        CHECK_STR_EQ(json_string_value(json_object_get(j, "text")), want.text);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "new_tokens")), (long long)want.n_ids);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "finish_reason")), want.stopped ? "stop" : "length");
    json_decref(j);
    free(out);
    /* More new tokens than the context (256 positions) holds: it says so, in both forms. The
     * greedy run of this seeded model never emits its stop token (it is deterministic); if a change
     * makes it stop, the case would prove nothing, so it fails: pick another seed or prompt. */
    snprintf(cmd, sizeof cmd, "%s generate --model %s --prompt 'Once upon' --temperature 0 --max-new-tokens 1000 --json "
             "--threads 1", ft_test_ftune_bin(), dir);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    j = out ? json_loads(out, 0, NULL) : NULL;
    free(out);
    if (json_is_true(json_object_get(j, "stopped")))
        ft_test_fail_(__FILE__, __LINE__, "the greedy run stopped at a stop token before the context was full");
    CHECK_STR_EQ(json_string_value(json_object_get(j, "finish_reason")), "context");
    snprintf(cmd, sizeof cmd, "%s generate --model %s --prompt 'Once upon' --temperature 0 --max-new-tokens 1000 "
             "--threads 1 2>&1 >/dev/null", ft_test_ftune_bin(), dir);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 0);
    CHECK(out && strstr(out, "context") && strstr(out, "is full"));
    free(out);
    json_decref(j);
    /* Bad usage: exit 2, the flag named on stderr. */
    const char *bad[] = {"--top-p 0", "--temperature -1", "--max-new-tokens 0", "--top-k -2", "--chat --prompt"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "%s generate --model %s --prompt hi --threads 1 %s 2>&1", ft_test_ftune_bin(), dir, bad[i]);
        out = NULL;
        int rc = ft_test_run(cmd, &out);
        if (rc != 2)
            ft_test_fail_(__FILE__, __LINE__, "%s: exit %d, expected 2 (%s)", bad[i], rc, out ? out : "");
        free(out);
    }
    snprintf(cmd, sizeof cmd, "%s generate --model %s/nope --prompt hi 2>&1", ft_test_ftune_bin(), dir);
    out = NULL;
    CHECK_EQ_INT(ft_test_run(cmd, &out), 2);
    CHECK(out && strstr(out, "nope"));
    free(out);
    ft_gen_output_free(&want);
    ft_gen_free(g);
    ft_tok_free(tok);
    ft_model_free(m);
}
