/* tests/cli: a hostile user at the command line, through the real binary: the exact shape of
 * error messages (each said once, with where, on one line), long messages printed whole, and
 * the exit codes (2 bad usage or input, 1 runtime failure). Each test has its own FTUNE_HOME. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"

/* Run `ftune ARGS` (printf-style) with FTUNE_HOME under the test's folder; stdout and stderr
 * together into *out (free()). Returns the exit status. */
static int ftune(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ftune(char **out, const char *fmt, ...) {
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *bin = ft_path_canonical(ft_test_ftune_bin());
    char *cmd = ft_asprintf("cd '%s' && FTUNE_HOME='%s/home' USER=tester '%s' %s 2>&1 </dev/null", ft_test_tmpdir(),
                            ft_test_tmpdir(), bin ? bin : ft_test_ftune_bin(), args);
    ft_free(bin);
    *out = NULL;
    int rc = ft_test_run(cmd, out);
    ft_free(cmd);
    return rc;
}

/* The lines of `out` that contain `needle`: exactly one, and it equals `want`. */
static void check_line(const char *out, const char *want, const char *file, int line) {
    if (!out || !strstr(out, want)) {
        ft_test_fail_(file, line, "expected the line \"%s\" in:\n%s", want, out ? out : "(no output)");
        return;
    }
    const char *at = strstr(out, want);
    bool whole = (at == out || at[-1] == '\n') && (at[strlen(want)] == '\n' || at[strlen(want)] == 0);
    if (!whole)
        ft_test_fail_(file, line, "\"%s\" is not a whole line of:\n%s", want, out);
}
#define CHECK_LINE(out, want) check_line((out), (want), __FILE__, __LINE__)

/* A tiny chat model in the test's folder (`name`), made by init-model with the tinytok tokenizer
 * and `extra` flags. */
static bool tiny_model(const char *name, const char *extra) {
    char *out = NULL, *tok = ft_path_canonical(ft_test_fixture("train/tinytok"));
    int rc = ftune(&out, "init-model --out %s --vocab-size 259 --hidden-size 48 --intermediate-size 64 --layers 2 "
                         "--heads 4 --kv-heads 2 --tokenizer '%s' %s",
                   name, tok ? tok : "?", extra);
    ft_free(tok);
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "init-model: %s", out ? out : "");
    free(out);
    return rc == 0;
}

/* Write `text` to the test folder's file `name`. */
static bool put(const char *name, const char *text) {
    char *p = ft_path_join(ft_test_tmpdir(), name);
    ft_err err;
    ft_status s = ft_file_write_atomic(p, text, strlen(text), &err);
    ft_free(p);
    return s == FT_OK;
}

static const char chat_line[] =
    "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n";

/* ---------------------------------------------------------------- message shapes */

/* `ftune serve --model DIR` on a model whose config.json is wrong: one line, the file once as
 * the location, the flag, then what is wrong (was "--model DIR: : DIR/config.json: ..."). */
TEST(hostile_serve_bad_model_message_shape) {
    REQUIRE(tiny_model("m", ""));
    REQUIRE(put("m/config.json", "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
                                 "\"hidden_size\": \"x\"}"));
    char *out = NULL;
    int rc = ftune(&out, "serve --model %s/m --port 0", ft_test_tmpdir());
    CHECK_EQ_INT(rc, 2);
    char want[2048];
    snprintf(want, sizeof want, "ftune serve: %s/m/config.json: --model %s/m: \"hidden_size\" must be an integer",
             ft_test_tmpdir(), ft_test_tmpdir());
    CHECK_LINE(out, want);
    free(out);
}

/* The estimated-time line of validate and create carries a long refusal whole (it was cut at 256
 * bytes): DBRX with moe_jitter_eps set. */
TEST(hostile_estimate_line_keeps_a_long_message_whole) {
    REQUIRE(tiny_model("dx", "--arch dbrx --experts 4 --experts-per-tok 3 --clip-qkv 0.1"));
    char *cfg = NULL;
    size_t n;
    char *path = ft_path_join(ft_test_tmpdir(), "dx/config.json");
    ft_err err;
    REQUIRE_OK(ft_file_read_all(path, &cfg, &n, &err), &err);
    char *at = strstr(cfg, "\"moe_jitter_eps\": null");
    REQUIRE(at);
    char *edited = ft_asprintf("%.*s\"moe_jitter_eps\": 0.01%s", (int)(at - cfg), cfg, at + strlen("\"moe_jitter_eps\": null"));
    ft_free(cfg);
    REQUIRE_OK(ft_file_write_atomic(path, edited, strlen(edited), &err), &err);
    ft_free(edited);
    ft_free(path);
    REQUIRE(put("d.jsonl", chat_line));
    const char *want = "estimated training time: unavailable (no estimate: the model's \"ffn_config.moe_jitter_eps\": "
                       "0.01 is not supported for training: it multiplies the router's input by fresh random noise "
                       "every step, which makes a step irreproducible and breaks exact resume; set it to null in "
                       "config.json's ffn_config to fine-tune this model (generation ignores it either way))";
    char *out = NULL;
    ftune(&out, "validate --model dx --task-type CHAT_COMPLETION d.jsonl");
    CHECK_LINE(out, want);
    free(out);
    CHECK_EQ_INT(ftune(&out, "create --model dx --train-data-path d.jsonl --register-to main.t --training-duration 1ba "
                             "--context-length 32"),
                 2);
    CHECK_LINE(out, want);
    free(out);
}

/* ---------------------------------------------------------------- hostile inputs */

/* The lines of out (trailing newline not counted). */
static int n_lines(const char *out) {
    int n = 0;
    for (const char *p = out; p && *p; p++)
        n += *p == '\n' && p[1] != 0;
    return out && *out ? n + 1 : 0;
}

/* An unknown command: one line naming it and the commands, exit 2 (it printed the whole help). */
TEST(hostile_unknown_command_is_one_line) {
    char *out = NULL;
    CHECK_EQ_INT(ftune(&out, "frobnicate --model x"), 2);
    CHECK_EQ_INT(n_lines(out), 1);
    CHECK(out && !strncmp(out, "ftune frobnicate: unknown command; the commands are create, list, ", 66) &&
          strstr(out, "(`ftune help` describes them)\n"));
    free(out);
}

/* `data` with a wrong subcommand or a negative --limit: usage errors that say so. */
TEST(hostile_data_head_usage_errors) {
    char *out = NULL;
    CHECK_EQ_INT(ftune(&out, "data tail x.parquet"), 2);
    CHECK_LINE(out, "ftune data: unknown subcommand \"tail\": data head SOURCE [--limit N] [--columns a,b] "
                    "[--table-version N]");
    free(out);
    char *src = ft_path_canonical(ft_test_fixture("parquet/chat.parquet"));
    REQUIRE(src);
    CHECK_EQ_INT(ftune(&out, "data head '%s' --limit -5", src), 2);
    CHECK_LINE(out, "ftune data head: --limit: -5: give a number of rows (0 or more), or -1 for all");
    free(out);
    ft_free(src);
}

/* A Parquet file cut in the middle (a copy that stopped): said to be truncated, with its size,
 * by data head and by validate (exit 2 both), never a crash. */
TEST(hostile_truncated_parquet_says_truncated) {
    char *src = ft_path_canonical(ft_test_fixture("parquet/chat.parquet")), *data = NULL;
    REQUIRE(src);
    size_t n;
    ft_err err;
    REQUIRE_OK(ft_file_read_all(src, &data, &n, &err), &err);
    ft_free(src);
    char *cut = ft_path_join(ft_test_tmpdir(), "cut.parquet");
    REQUIRE_OK(ft_file_write_atomic(cut, data, n / 2, &err), &err);
    ft_free(cut);
    ft_free(data);
    char want[512];
    snprintf(want, sizeof want,
             "cut.parquet: truncated parquet file: it starts as one (PAR1) but its last bytes are not a footer (%zu "
             "bytes: cut short while copying or writing?); copy or write it again",
             n / 2);
    char *out = NULL, line[600];
    CHECK_EQ_INT(ftune(&out, "data head cut.parquet"), 2);
    snprintf(line, sizeof line, "ftune data head: %s", want);
    CHECK_LINE(out, line);
    free(out);
    CHECK_EQ_INT(ftune(&out, "validate --task-type CHAT_COMPLETION cut.parquet"), 2);
    snprintf(line, sizeof line, "%.*s: error: %s", (int)strlen("cut.parquet"), want, want + strlen("cut.parquet: "));
    CHECK_LINE(out, line);
    free(out);
}

/* A folder where a file is expected (debug forward --batch): an input error, exit 2, saying so
 * (it was exit 1, "not a regular file"). */
TEST(hostile_folder_for_a_file_is_an_input_error) {
    REQUIRE(tiny_model("m", ""));
    char *out = NULL, want[1200];
    CHECK_EQ_INT(ftune(&out, "debug forward --model m --batch '%s'", ft_test_tmpdir()), 2);
    snprintf(want, sizeof want, "ftune debug forward: %s: is a folder, not a file", ft_test_tmpdir());
    CHECK_LINE(out, want);
    free(out);
}

/* `ftune serve` on a port another program holds: one line saying so, exit 1 (a runtime failure),
 * at once (no hang). */
TEST(hostile_serve_on_a_port_in_use) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        close(fd);
        REQUIRE(!"a listening socket on 127.0.0.1");
    }
    int port = ntohs(sa.sin_port);
    char *out = NULL, want[200];
    int rc = ftune(&out, "serve --port %d", port);
    close(fd);
    CHECK_EQ_INT(rc, 1);
    CHECK_EQ_INT(n_lines(out), 1);
    snprintf(want, sizeof want, "ftune serve: cannot listen on 127.0.0.1 port %d (in use, or not an address of this machine)",
             port);
    CHECK_LINE(out, want);
    free(out);
}

/* FTUNE_HOME where no folder can be made (under a file): create and serve say it is ftune's home
 * and which setting names it, in one line, exit 1 (the machine refused; create blamed
 * --experiment-path, which the user had not given, with exit 2). */
TEST(hostile_home_that_cannot_be_made_is_named) {
    REQUIRE(put("file", "x"));
    char *bin = ft_path_canonical(ft_test_ftune_bin()), *home = ft_path_join(ft_test_tmpdir(), "file/home");
    REQUIRE(bin && home);
    char *cmd = ft_asprintf("cd '%s' && FTUNE_HOME='%s' USER=tester '%s' create --model m --train-data-path d.jsonl "
                            "--register-to a.b --no-validate-inputs --name r1 2>&1 </dev/null",
                            ft_test_tmpdir(), home, bin);
    char *out = NULL, want[2048];
    CHECK_EQ_INT(ft_test_run(cmd, &out), 1);
    snprintf(want, sizeof want,
             "ftune create: the run folder %s/experiments/Users/tester/r1/r1 cannot be used: Not a directory (the "
             "default experiment path, under ftune's home %s, $FTUNE_HOME: point FTUNE_HOME at a writable folder or "
             "give an experiment path)",
             home, home);
    CHECK_EQ_INT(n_lines(out), 1);
    CHECK_LINE(out, want);
    free(out);
    ft_free(cmd);
    cmd = ft_asprintf("cd '%s' && FTUNE_HOME='%s' '%s' serve --port 0 2>&1 </dev/null", ft_test_tmpdir(), home, bin);
    CHECK_EQ_INT(ft_test_run(cmd, &out), 1);
    CHECK_EQ_INT(n_lines(out), 1);
    snprintf(want, sizeof want,
             ": cannot create folder: Not a directory (ftune's home %s, $FTUNE_HOME: point FTUNE_HOME at a writable "
             "folder)\n",
             home);
    CHECK(out && !strncmp(out, "ftune serve: ", 13) && strlen(out) > strlen(want) &&
          !strcmp(out + strlen(out) - strlen(want), want));
    free(out);
    ft_free(cmd);
    ft_free(home);
    ft_free(bin);
}

/* Two-word commands with a wrong or missing second word, and an argument to a command that takes
 * none: one line saying so, exit 2 (debug and bench printed their usage without saying what was
 * wrong; models ignored the argument). */
TEST(hostile_wrong_subcommands_and_extra_arguments) {
    static const struct {
        const char *args, *line;
    } cases[] = {
        {"debug bogus", "ftune debug: unknown subcommand \"bogus\": forward or train-steps (`ftune debug --help`)"},
        {"debug", "ftune debug: expected a subcommand: forward or train-steps (`ftune debug --help`)"},
        {"bench bogus", "ftune bench: unknown subcommand \"bogus\": train-step, decode or serve (`ftune bench --help`)"},
        {"models llama", "ftune models: takes no arguments (got \"llama\"): it lists every model"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out = NULL;
        CHECK_EQ_INT(ftune(&out, "%s", cases[i].args), 2);
        CHECK_EQ_INT(n_lines(out), 1);
        CHECK_LINE(out, cases[i].line);
        free(out);
    }
}
