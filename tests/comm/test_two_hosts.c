/* tests/comm/test_two_hosts.c: MPI between two hosts for real. tools/two-hosts.sh makes two network
 * namespaces joined by a veth pair (each its own address and hostname), starts one rank in each with
 * mpirun over TCP (no shared-memory transport), under a time limit, and removes the namespaces and
 * whatever runs in them afterwards, on failure too.
 *
 * - two_hosts_mpi_probe: a tiny MPI program (tests/fixtures/mpi/two_hosts_probe.c, built here with
 *   mpicc) gathers the hostnames and allreduces 8 MiB; the sum is exact, the hosts are the two
 *   namespaces, the veth pair carried the payload both ways, and nothing is left behind.
 * - two_hosts_cleanup_on_timeout: a job that hangs is killed at its limit; exit 124, namespaces and
 *   processes gone.
 *
 * - two_hosts_ftune_create_equals_one_host: `ftune create` on 2 ranks across the two namespaces
 *   (the store, model and data on the shared filesystem, as on a cluster's shared home) against the
 *   same run on 2 ranks of one host over shared memory: identical per-step losses, byte-identical
 *   registered weights; `ftune get` names both hosts by rank; the link carried the traffic.
 *
 * They need root (namespaces) and Open MPI (mpirun, mpicc), the last one also an ftune built with
 * MPI (make MPI=1: make test runs tests/comm/ again on that build); otherwise they are skipped,
 * saying why. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftune/json.h"
#include "test.h"

#define HARNESS "tools/two-hosts.sh"

/* Why the two-host tests cannot run here, or NULL when they can. */
static const char *why_not(void) {
    if (geteuid() != 0)
        return "network namespaces need root";
    if (ft_test_run("command -v mpirun >/dev/null 2>&1 && command -v mpicc >/dev/null 2>&1", NULL) != 0)
        return "Open MPI is not installed (mpirun, mpicc: Debian openmpi-bin, libopenmpi-dev)";
    if (ft_test_run("command -v ip >/dev/null 2>&1 && command -v unshare >/dev/null 2>&1", NULL) != 0)
        return "iproute2 (ip) or util-linux (unshare) is not installed";
    return NULL;
}

/* The value of `key=` in a KEY=VALUE file's text (owned by the caller), or NULL. */
static char *stat_value(const char *text, const char *key) {
    size_t kl = strlen(key);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=')
            return ft_strndup(p + kl + 1, len - kl - 1);
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* True when a namespace named in "namespaces=A B" still exists. */
static bool namespaces_left(const char *stats) {
    char *names = stat_value(stats, "namespaces");
    if (!names)
        return false;
    char *list = NULL;
    ft_test_run("ip netns list 2>/dev/null", &list);
    bool left = false;
    char *save = NULL;
    for (char *tok = strtok_r(names, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
        for (const char *p = list; p && (p = strstr(p, tok)); p += strlen(tok))
            if (p[strlen(tok)] == ' ' || p[strlen(tok)] == '\n' || p[strlen(tok)] == '\0')
                left = true;
    free(list);
    free(names);
    return left;
}

TEST(two_hosts_mpi_probe) {
    const char *why = why_not();
    if (why)
        SKIP("%s", why);
    const char *dir = ft_test_tmpdir();
    char *probe = ft_path_join(dir, "probe"), *stats = ft_path_join(dir, "stats"), *out = NULL;
    char *cmd = ft_asprintf("mpicc -O1 '%s' -o '%s' 2>&1", ft_test_fixture("mpi/two_hosts_probe.c"), probe);
    int rc = ft_test_run(cmd, &out);
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "mpicc failed (%d): %s", rc, out);
    free(out);
    free(cmd);
    REQUIRE(rc == 0);

    /* 1 Mi doubles = 8 MiB per rank */
    cmd = ft_asprintf("sh %s --timeout 120 --stats '%s' -- '%s' 1048576 2>&1", HARNESS, stats, probe);
    rc = ft_test_run(cmd, &out);
    free(cmd);
    if (rc == 3)
        SKIP("cannot make network namespaces here: %s", out);
    CHECK_EQ_INT(rc, 0);
    if (!strstr(out, "probe ranks=2 hosts=ftune-host-a,ftune-host-b doubles=1048576 sum=ok"))
        ft_test_fail_(__FILE__, __LINE__, "unexpected output of the two-host job:\n%s", out);
    free(out);

    char *text = NULL;
    size_t n = 0;
    REQUIRE(ft_file_read_all(stats, &text, &n, NULL) == FT_OK);
    char *a = stat_value(text, "a_tx_bytes"), *b = stat_value(text, "b_tx_bytes");
    REQUIRE(a && b);
    /* each side sends at least half of its 8 MiB through the link whatever the allreduce algorithm */
    long long atx = atoll(a), btx = atoll(b);
    if (atx < 4 << 20 || btx < 4 << 20)
        ft_test_fail_(__FILE__, __LINE__, "the veth pair carried too little: a sent %lld bytes, b %lld", atx, btx);
    CHECK(!namespaces_left(text));
    free(a);
    free(b);
    free(text);
    free(probe);
    free(stats);
}

TEST(two_hosts_cleanup_on_timeout) {
    const char *why = why_not();
    if (why)
        SKIP("%s", why);
    const char *dir = ft_test_tmpdir();
    char *stats = ft_path_join(dir, "stats"), *out = NULL;
    /* a job that never ends, recognisable by its argument among the machine's processes */
    char *marker = ft_asprintf("%d.%d", 300 + (int)(getpid() % 600), (int)(getpid() % 997));
    char *cmd = ft_asprintf("sh %s --timeout 2 --stats '%s' -- sleep %s 2>&1", HARNESS, stats, marker);
    double t0 = ft_time_now();
    int rc = ft_test_run(cmd, &out);
    double dt = ft_time_now() - t0;
    free(cmd);
    if (rc == 3)
        SKIP("cannot make network namespaces here: %s", out);
    CHECK_EQ_INT(rc, 124);
    CHECK(out && strstr(out, "ran out of its 2s"));
    CHECK(dt < 30);
    free(out);
    char *text = NULL;
    size_t n = 0;
    REQUIRE(ft_file_read_all(stats, &text, &n, NULL) == FT_OK);
    CHECK(!namespaces_left(text));
    free(text);
    cmd = ft_asprintf("ps -eo args | grep -c '^sleep %s$'", marker);
    ft_test_run(cmd, &out);
    CHECK_EQ_INT(atoi(out ? out : "1"), 0);
    free(out);
    free(cmd);
    free(marker);
    free(stats);
}

/* ------------------------------------------------------------------------------------------------
 * ftune itself on two hosts */

static const char *const TEMPLATE2 =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token }}{% endif %}{% endfor %}";

/* A tokenizer with a chat template, a tiny model and 32 chat examples under dir. */
static bool make_model_and_data(const char *dir, char **model, char **train) {
    char *tok = ft_path_join(dir, "tok");
    ft_mkdir_p(tok, NULL);
    char *src = ft_path_join(ft_test_fixture("tok/mistral-7b-v0.1"), "tokenizer.json");
    char *dst = ft_path_join(tok, "tokenizer.json");
    bool ok = ft_file_copy(src, dst, NULL) == FT_OK;
    ft_free(src);
    ft_free(dst);
    json_t *cfg = json_pack("{s:s, s:s, s:s, s:b, s:b, s:s}", "bos_token", "<s>", "eos_token", "</s>", "unk_token",
                            "<unk>", "add_bos_token", 1, "add_eos_token", 0, "chat_template", TEMPLATE2);
    char *text = json_dumps(cfg, JSON_INDENT(1));
    char *cpath = ft_path_join(tok, "tokenizer_config.json");
    ok = ok && ft_file_write_atomic(cpath, text, strlen(text), NULL) == FT_OK;
    free(text);
    ft_free(cpath);
    json_decref(cfg);
    *model = ft_path_join(dir, "model");
    *train = ft_path_join(dir, "train.jsonl");
    char *out = NULL;
    char *cmd = ft_asprintf("%s init-model --out '%s' --vocab-size 32000 --hidden-size 16 --intermediate-size 32 "
                            "--layers 1 --heads 2 --tie-embeddings --max-position-embeddings 256 --tokenizer '%s' "
                            "--seed 1 2>&1",
                            ft_test_ftune_bin(), *model, tok);
    if (ok && ft_test_run(cmd, &out) != 0) {
        ft_test_fail_(__FILE__, __LINE__, "init-model failed: %s", out ? out : "");
        ok = false;
    }
    free(out);
    ft_free(cmd);
    ft_free(tok);
    static const char *const people[] = {"Maria", "John", "Aisha", "Kenji"};
    static const char *const cities[] = {"Paris", "Lima", "Oslo", "Rome"};
    ft_buf b = {0};
    for (int i = 0; i < 32; i++)
        ft_buf_appendf(&b,
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"Where is %s? %s went to %s.\"},"
                       "{\"role\":\"assistant\",\"content\":\"%s\"}]}\n",
                       people[i % 4], people[i % 4], cities[(i / 4) % 4], cities[(i / 4) % 4]);
    ok = ok && ft_file_write_atomic(*train, b.data, b.len, NULL) == FT_OK;
    ft_buf_free(&b);
    return ok;
}

/* `ftune metrics RUN --name loss --json` of the run in home, as JSON text of the values. */
static char *loss_values(const char *home, const char *run) {
    char *out = NULL, *cmd = ft_asprintf("FTUNE_HOME='%s' %s metrics %s --name loss --json 2>&1", home,
                                         ft_test_ftune_bin(), run);
    int rc = ft_test_run(cmd, &out);
    ft_free(cmd);
    json_error_t je;
    json_t *j = rc == 0 && out ? json_loads(out, 0, &je) : NULL;
    if (!json_is_array(j)) {
        ft_test_fail_(__FILE__, __LINE__, "ftune metrics %s exited %d: %s", run, rc, out ? out : "");
        free(out);
        json_decref(j);
        return NULL;
    }
    free(out);
    json_t *v = json_array();
    for (size_t i = 0; i < json_array_size(j); i++)
        json_array_append(v, json_object_get(json_array_get(j, i), "value"));
    char *text = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(v);
    json_decref(j);
    return text;
}

static json_t *get_run_json(const char *home, const char *run) {
    char *out = NULL, *cmd = ft_asprintf("FTUNE_HOME='%s' %s get %s --json 2>&1", home, ft_test_ftune_bin(), run);
    int rc = ft_test_run(cmd, &out);
    ft_free(cmd);
    json_error_t je;
    json_t *j = rc == 0 && out ? json_loads(out, 0, &je) : NULL;
    if (!j)
        ft_test_fail_(__FILE__, __LINE__, "ftune get %s exited %d: %s", run, rc, out ? out : "");
    free(out);
    return j;
}

#define CREATE_FLAGS                                                                                           \
    "create --model '%s' --train-data-path '%s' --register-to main.test.m --learning-rate 1e-3 "                \
    "--global-batch-size 4 --micro-batch-size 1 --context-length 64 --training-duration 4ba --threads 1 "     \
    "--seed 5 --export-dtype fp32 --quiet --name %s"

TEST(two_hosts_ftune_create_equals_one_host) {
    const char *why = why_not();
    if (why)
        SKIP("%s", why);
    char *bin = ft_asprintf("ldd '%s' 2>/dev/null | grep -q libmpi", ft_test_ftune_bin());
    int mpi_built = ft_test_run(bin, NULL) == 0;
    ft_free(bin);
    if (!mpi_built)
        SKIP("%s is built without MPI (make MPI=1; make test runs this on build-mpi/)", ft_test_ftune_bin());
    const char *dir = ft_test_tmpdir();
    char *model = NULL, *train = NULL;
    REQUIRE(make_model_and_data(dir, &model, &train));
    char *home1 = ft_path_join(dir, "home-one-host"), *home2 = ft_path_join(dir, "home-two-hosts");
    char *stats = ft_path_join(dir, "stats"), *out = NULL;

    /* one host: 2 ranks over shared memory */
    char *cmd = ft_asprintf("FTUNE_HOME='%s' OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 "
                            "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout -k 5 300 mpirun -np 2 --oversubscribe "
                            "--bind-to none --mca btl self,vader -x FTUNE_HOME -x OMP_NUM_THREADS %s " CREATE_FLAGS
                            " 2>&1",
                            home1, ft_test_ftune_bin(), model, train, "onehost");
    int rc = ft_test_run(cmd, &out);
    ft_free(cmd);
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "one host, 2 ranks: exit %d:\n%s", rc, out ? out : "");
    free(out);
    REQUIRE(rc == 0);

    /* two hosts: one rank in each namespace, TCP over the veth pair; the agent passes the
     * environment (FTUNE_HOME) on, as -x would over ssh */
    cmd = ft_asprintf("FTUNE_HOME='%s' OMP_NUM_THREADS=1 sh %s --timeout 300 --stats '%s' -- %s " CREATE_FLAGS " 2>&1",
                      home2, HARNESS, stats, ft_test_ftune_bin(), model, train, "twohosts");
    rc = ft_test_run(cmd, &out);
    ft_free(cmd);
    if (rc == 3)
        SKIP("cannot make network namespaces here: %s", out);
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "two hosts, 2 ranks: exit %d:\n%s", rc, out ? out : "");
    free(out);
    REQUIRE(rc == 0);

    char *l1 = loss_values(home1, "onehost"), *l2 = loss_values(home2, "twohosts");
    REQUIRE(l1 && l2);
    json_error_t je;
    json_t *la = json_loads(l1, 0, &je);
    CHECK_EQ_INT((int64_t)json_array_size(la), 4);
    json_decref(la);
    if (strcmp(l1, l2) != 0)
        ft_test_fail_(__FILE__, __LINE__, "losses differ:\n one host  %s\n two hosts %s", l1, l2);
    free(l1);
    free(l2);

    char *w1 = ft_path_join(home1, "registry/main/test/m/1/model.safetensors");
    char *w2 = ft_path_join(home2, "registry/main/test/m/1/model.safetensors");
    char *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    REQUIRE(ft_file_read_all(w1, &b1, &n1, NULL) == FT_OK);
    REQUIRE(ft_file_read_all(w2, &b2, &n2, NULL) == FT_OK);
    CHECK(n1 > 1000000 && n1 == n2 && memcmp(b1, b2, n1) == 0);
    ft_free(b1);
    ft_free(b2);
    ft_free(w1);
    ft_free(w2);

    /* rank 0 recorded the two hosts by rank; one host's run both ranks on this machine's name */
    json_t *j = get_run_json(home2, "twohosts");
    CHECK_STR_EQ(json_string_value(json_object_get(j, "status")), "COMPLETED");
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "world_size")), 2);
    json_t *h = json_object_get(j, "hosts");
    CHECK_EQ_INT((int64_t)json_array_size(h), 2);
    CHECK_STR_EQ(json_string_value(json_array_get(h, 0)), "ftune-host-a");
    CHECK_STR_EQ(json_string_value(json_array_get(h, 1)), "ftune-host-b");
    json_decref(j);
    j = get_run_json(home1, "onehost");
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "world_size")), 2);
    h = json_object_get(j, "hosts");
    const char *h0 = json_string_value(json_array_get(h, 0)), *h1 = json_string_value(json_array_get(h, 1));
    CHECK(json_array_size(h) == 2 && h0 && h1 && !strcmp(h0, h1));
    json_decref(j);

    /* the ranks' traffic crossed the link: at least the weights' all-gathers (tiny model ~2 MB) */
    char *text = NULL;
    size_t n = 0;
    REQUIRE(ft_file_read_all(stats, &text, &n, NULL) == FT_OK);
    char *a = stat_value(text, "a_tx_bytes"), *b = stat_value(text, "b_tx_bytes");
    REQUIRE(a && b);
    if (atoll(a) < 1000000 || atoll(b) < 1000000)
        ft_test_fail_(__FILE__, __LINE__, "the veth pair carried too little: a sent %s bytes, b %s", a, b);
    CHECK(!namespaces_left(text));
    free(a);
    free(b);
    ft_free(text);
    ft_free(stats);
    ft_free(home1);
    ft_free(home2);
    ft_free(model);
    ft_free(train);
}
