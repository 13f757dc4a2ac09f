/* cli/cli.h: the `ftune` commands and their shared flag parser. The CLI is the only part of ftune
 * that prints for users and chooses exit codes: 0 ok, 1 failure, 2 bad usage or invalid input. */
#ifndef FTUNE_CLI_H
#define FTUNE_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "ftune/base.h"

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

typedef enum cli_opt_kind {
    CLI_FLAG,     /* --x            (bool) */
    CLI_STR,      /* --x VALUE */
    CLI_INT,      /* --x 123 */
    CLI_FLOAT,    /* --x 1.5e-6 */
    CLI_STR_LIST, /* --x A --x B    (repeatable) */
} cli_opt_kind;

typedef struct cli_opt {
    const char *name; /* without the leading "--" */
    cli_opt_kind kind;
    const char *help; /* one line; "VALUE: meaning" */
} cli_opt;

#define CLI_MAX_OPTS 64
#define CLI_MAX_POS 64

typedef struct cli_args {
    const char *command;
    cli_opt opts[CLI_MAX_OPTS]; /* the command's options plus --json */
    size_t n_opts;
    bool given[CLI_MAX_OPTS];
    const char *str[CLI_MAX_OPTS];
    int64_t i64[CLI_MAX_OPTS];
    double f64[CLI_MAX_OPTS];
    const char **list[CLI_MAX_OPTS];
    size_t list_n[CLI_MAX_OPTS];
    const char *pos[CLI_MAX_POS];
    size_t n_pos;
} cli_args;

/* Parse argv (after the command name). On a bad flag or value prints "ftune CMD: --flag: why" and
 * the usage to stderr and returns CLI_EXIT_USAGE; "--help" prints the usage and returns -1 (the
 * caller returns CLI_EXIT_OK). Every command accepts --json. */
int cli_parse(cli_args *a, const char *command, const char *synopsis, const cli_opt *opts, int argc, char **argv);
void cli_args_free(cli_args *a);
bool cli_has(const cli_args *a, const char *name);
const char *cli_str(const cli_args *a, const char *name, const char *dflt);
int64_t cli_int(const cli_args *a, const char *name, int64_t dflt);
double cli_float(const cli_args *a, const char *name, double dflt);
/* Values of a repeatable flag; *n gets the count. */
const char **cli_list(const cli_args *a, const char *name, size_t *n);
/* Exit with a usage error naming the flag: prints and returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *command, const char *flag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Print "ftune CMD: message" on stderr and return exit_code (an error without an ft_err). */
int cli_fail(const char *command, int exit_code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* With --json on the command line, errors are also printed on stdout as
 * {"error": {"code", "message", "command", "exit_code", ...}} (main sets this before dispatch). */
void cli_set_json_errors(bool on);
/* Print an ft_err as "ftune CMD: file:line:col: message" and return the exit code that fits its
 * status (2 for invalid input / parse errors / not found, 1 otherwise). */
int cli_report(const char *command, const ft_err *err);

/* An input file named on the command line, or stdin for NULL or "-". NULL (err set) when it
 * cannot be opened or is a folder. The caller fcloses what is not stdin. */
FILE *cli_open_input(const char *path, ft_err *err);
/* One line of a JSONL input as the data reader sees it: without the BOM (line 1), the newline
 * and a CR before it. Returns false for a line to skip (empty or only whitespace). */
bool cli_jsonl_line(const char *line, size_t len, int64_t lineno, const char **start, size_t *n);

/* Print s with every line after the first indented by `indent` spaces (a trailing newline
 * dropped) and control bytes other than tab escaped (\\r, \\xNN), so that in a listing (events,
 * get) an entry's own lines never look like the start of another entry. */
void cli_put_indented(FILE *out, const char *s, int indent);

/* The commands. Each takes argv after the command name. */
typedef int (*cli_cmd_fn)(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_delete(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_registry(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_init_model(int argc, char **argv);
int cmd_debug(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_serve(int argc, char **argv); /* cmd_bench_serve.c: `ftune bench serve` */
int cmd_validate(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench_decode(int argc, char **argv);

#endif
