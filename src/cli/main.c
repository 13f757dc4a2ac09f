/* cli/main.c: `ftune COMMAND ...`: dispatch to the commands (one file each in src/cli/). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ftune/ftune.h"
#include "run_common.h"

typedef struct {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
} command;

/* Keep in the order `ftune help` shows them. */
static const command commands[] = {
    {"create", cmd_create, "fine-tune a model: create a run and run it (or --detach)"},
    {"list", cmd_list, "list runs"},
    {"get", cmd_get, "show one run: status, progress, parameters"},
    {"events", cmd_events, "a run's events (--follow)"},
    {"metrics", cmd_metrics, "a run's metrics by step"},
    {"cancel", cmd_cancel, "stop runs (they keep their last checkpoint)"},
    {"delete", cmd_delete, "delete runs and their files"},
    {"resume", cmd_resume, "continue an interrupted run from its latest checkpoint"},
    {"models", cmd_models, "the supported models and which are present locally"},
    {"export", cmd_export, "write a model as one GGUF file for llama.cpp / Ollama: export --format gguf MODEL OUT.gguf"},
    {"registry", cmd_registry, "registered models: registry list | registry show NAME | registry delete NAME/VERSION"},
    {"serve", cmd_serve, "the web UI and REST API: ftune serve [--host H] [--port 8080] [--token-file F]"},
    {"worker", cmd_worker, "the background worker that runs queued runs"},
    {"validate", cmd_validate, "check training data: every problem with file:line:column, then a summary"},
    {"data", cmd_data, "look at table data: data head SOURCE [--limit N] [--columns a,b] (rows as JSON Lines)"},
    {"tokenize", cmd_tokenize, "token ids of a text with a model's tokenizer.json (--jsonl for many)"},
    {"chat-template", cmd_chat_template, "render conversations with a model's chat template (--mask: trainable spans and tokens)"},
    {"generate", cmd_generate, "sample a completion from a model, streamed as it is generated"},
    {"init-model", cmd_init_model, "write a randomly initialised HF-format model (tests, benchmarks, demo)"},
    {"debug", cmd_debug, "check the numbers: debug forward (loss, logits, gradients) | debug train-steps"},
    {"bench", cmd_bench, "speed: bench train-step | decode | serve"},
    {"version", cmd_version, "print the version"},
};

static void usage(FILE *out) {
    fprintf(out, "ftune %s: fine-tune foundation language models on your own data and machines\n\n"
                 "usage: ftune COMMAND [options]   (ftune COMMAND --help for its options)\n\ncommands:\n",
            FTUNE_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(out, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nexit codes:\n"
                 "  0   success\n"
                 "  1   failure: a run that failed or was stopped, a file or the store that could not be\n"
                 "      read or written, an unavailable resource\n"
                 "  2   bad usage or invalid input: an unknown or bad flag, invalid data or config, a run,\n"
                 "      model or file that does not exist\n"
                 "  128+N  killed by signal N before ftune could record anything (130: Ctrl-C); a run in\n"
                 "      progress instead stops after a checkpoint on Ctrl-C, SIGTERM or SIGHUP and exits 1\n"
                 "\nWith --json, errors are also printed on stdout as {\"error\": {\"code\", \"message\", ...}}.\n"
                 "FTUNE_HOME (default ~/.ftune) holds ftune.db, the runs' folders and the model registry.\n");
}

int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("ftune %s\n", FTUNE_VERSION);
    return CLI_EXIT_OK;
}

int main(int argc, char **argv) {
    /* decoding is latency-bound: its threads spin briefly between regions (ftune/tensor.h) */
    bool latency = argc >= 2 && (!strcmp(argv[1], "serve") || !strcmp(argv[1], "generate") ||
                                 (!strcmp(argv[1], "bench") && argc >= 3 &&
                                  (!strcmp(argv[2], "decode") || !strcmp(argv[2], "serve"))));
    ft_runtime_init(argv, latency); /* may re-exec this program once (ftune/tensor.h) */
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version"))
        return cmd_version(0, NULL);
    for (int i = 2; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--json"))
            cli_set_json_errors(true);
    /* Two-word commands ("debug forward", "bench train-step", "registry list") are dispatched
     * by their first word; the command parses the second. */
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            /* Under mpirun/srun, a run is trained by all the processes (data parallelism). */
            if ((!strcmp(argv[1], "create") || !strcmp(argv[1], "resume")) && ft_comm_launched_by_mpi())
                return run_distributed(argv[1], commands[i].fn, argc - 2, argv + 2);
            return commands[i].fn(argc - 2, argv + 2);
        }
    /* one line, not the whole help: the list of names, and where the help is */
    char names[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < sizeof commands / sizeof *commands && used < sizeof names; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", commands[i].name);
    return cli_fail(argv[1], CLI_EXIT_USAGE, "unknown command; the commands are %s (`ftune help` describes them)", names);
}
