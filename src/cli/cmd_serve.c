/* cli/cmd_serve.c: `ftune serve [--host 127.0.0.1] [--port 8080] [--token-file F] [--workers N]
 * [--model M]... [--slots N]` (SPEC §6b): the web UI, the REST API and the OpenAI-compatible /v1
 * (ftune/server.h) until SIGTERM or Ctrl-C. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "ftune/server.h"

static const cli_opt opts[] = {
    {"host", CLI_STR, "H: address to bind (default 127.0.0.1; anything but loopback needs --token-file)"},
    {"port", CLI_INT, "N: port (default 8080; 0: any free port, printed at start)"},
    {"token-file", CLI_STR, "F: file holding the bearer token that every API request must carry"},
    {"workers", CLI_INT, "N: runs executed at once (default 1; each run uses --threads or all cores)"},
    {"max-body", CLI_INT, "BYTES: largest request body accepted (default 1048576)"},
    {"model", CLI_STR_LIST, "M: load M at start for /v1 (registered c.s.n[/version], folder or hub id; repeatable)"},
    {"slots", CLI_INT, "N: sequences each model decodes at once for /v1 (default 8)"},
    {NULL, 0, NULL},
};

/* The token: the file's first line without surrounding white space. */
static int read_token(const char *path, char **token) {
    char *data = NULL;
    size_t len = 0;
    ft_err err;
    if (ft_file_read_all(path, &data, &len, &err) != FT_OK)
        return cli_usage_error("serve", "token-file", "%s", err.msg);
    char *p = data;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    size_t n = strcspn(p, "\r\n");
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n < 16) {
        ft_free(data);
        return cli_usage_error("serve", "token-file", "%s: the token must be at least 16 characters (e.g. `openssl "
                                                      "rand -hex 32 > %s`)", path, path);
    }
    *token = ft_strndup(p, n);
    memset(data, 0, len);
    ft_free(data);
    struct stat sb;
    if (stat(path, &sb) == 0 && (sb.st_mode & 077))
        fprintf(stderr, "ftune serve: warning: %s is readable by other users (chmod 600 %s)\n", path, path);
    return CLI_EXIT_OK;
}

int cmd_serve(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "serve", "[--host 127.0.0.1] [--port 8080] [--token-file F] [--workers N] [--model M]...",
                        opts, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    int rc = CLI_EXIT_OK;
    char *token = NULL;
    ft_server_params p;
    ft_server_default_params(&p);
    p.host = cli_str(&a, "host", p.host);
    p.port = (int)cli_int(&a, "port", p.port);
    p.workers = (int)cli_int(&a, "workers", p.workers);
    if (cli_has(&a, "max-body"))
        p.max_body = (size_t)cli_int(&a, "max-body", 1 << 20);
    p.models = cli_list(&a, "model", &p.n_models);
    p.infer_slots = cli_int(&a, "slots", 8);
    if (p.infer_slots < 1 || p.infer_slots > 256) {
        rc = cli_usage_error("serve", "slots", "must be between 1 and 256");
        goto done;
    }
    if (a.n_pos) {
        rc = cli_usage_error("serve", NULL, "unexpected argument \"%s\"", a.pos[0]);
        goto done;
    }
    if (p.port < 0 || p.port > 65535) {
        rc = cli_usage_error("serve", "port", "must be 0..65535");
        goto done;
    }
    if (p.workers < 1 || p.workers > 64) {
        rc = cli_usage_error("serve", "workers", "must be 1..64 (runs executed at once), got %d", p.workers);
        goto done;
    }
    if (cli_has(&a, "max-body") && cli_int(&a, "max-body", 0) < 1024) {
        rc = cli_usage_error("serve", "max-body", "must be at least 1024");
        goto done;
    }
    if (cli_has(&a, "token-file") && (rc = read_token(cli_str(&a, "token-file", ""), &token)) != CLI_EXIT_OK)
        goto done;
    p.token = token;
    /* The server supervises `ftune worker` and creates and deletes runs through this binary. */
    char self[4096];
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sn > 0) {
        self[sn] = 0;
        p.exe = self;
    }
    if (!token && !ft_server_host_is_loopback(p.host)) {
        rc = cli_usage_error("serve", "host", "%s is not a loopback address: serving it needs --token-file FILE "
                                              "(every API request then carries Authorization: Bearer <token>)", p.host);
        goto done;
    }
    /* Block the stop signals here, before the server's threads exist, so they inherit the mask
     * and only sigwait below receives them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    ft_server *srv;
    ft_err err;
    if (ft_server_start(&p, &srv, &err) != FT_OK) {
        rc = cli_report("serve", &err);
        goto done;
    }
    bool v6 = strchr(p.host, ':') != NULL;
    char *home = ft_home_dir();
    fprintf(stderr, "ftune serve: http://%s%s%s:%d/  (API under /api/, OpenAI-compatible /v1, store %s%s; Ctrl-C stops)\n", v6 ? "[" : "",
            p.host, v6 ? "]" : "", ft_server_port(srv), home ? home : "?", token ? "; bearer token required" : "");
    ft_free(home);
    printf("listening %d\n", ft_server_port(srv));
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "ftune serve: %s: stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    ft_server_stop(srv);
    fprintf(stderr, "ftune serve: stopped\n");
done:
    if (token) {
        memset(token, 0, strlen(token));
        ft_free(token);
    }
    cli_args_free(&a);
    return rc;
}
