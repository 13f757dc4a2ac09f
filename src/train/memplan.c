/* train/memplan.c: the memory planner of ftune/memplan.h (issue #10 item 3): a run's peak
 * resident memory predicted from the engine's own sizing functions, the machine's available
 * memory (/proc/meminfo, cgroup v2 and v1 limits), and the automatic micro-batch and
 * checkpointing choices within a limit, with a refusal that says what would fit. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/comm.h"
#include "ftune/memplan.h"
#include "ftune/model.h"
#include "train_internal.h"

#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)

/* ---------------------------------------------------------------- the machine */

/* The value of "Key: N kB" in a /proc-style file, in bytes; 0 when absent. */
static uint64_t kv_kib(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[256];
    size_t kl = strlen(key);
    uint64_t v = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtoull(line + kl + 1, NULL, 10) * 1024;
            break;
        }
    fclose(f);
    return v;
}

/* The value of "key N" in a cgroup memory.stat; 0 when absent. */
static uint64_t stat_value(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[256];
    size_t kl = strlen(key);
    uint64_t v = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ' ') {
            v = strtoull(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* One number from a file ("max" and unreadable files: 0). */
static uint64_t file_number(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[64] = "";
    bool ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok || !isdigit((unsigned char)buf[0]))
        return 0;
    return strtoull(buf, NULL, 10);
}

/* This process's path in one cgroup hierarchy from /proc/self/cgroup: v2's "0::/a/b" (controllers
 * "") or v1's "4:memory:/a/b" (controllers "memory"); false if absent. */
static bool cgroup_path(const char *controllers, char *buf, size_t cap) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = 0;
        bool match = !strcmp(c1 + 1, controllers);
        char *save = NULL;
        for (char *t = strtok_r(c1 + 1, ",", &save); !match && *controllers && t; t = strtok_r(NULL, ",", &save))
            match = !strcmp(t, controllers);
        if (match) {
            snprintf(buf, cap, "%s", c2 + 1);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* Walk from this process's cgroup up to the root of one hierarchy (a parent's limit binds its
 * children too), keeping the tightest limit and that cgroup's usage less its inactive file cache
 * (reclaimable). v1 writes "no limit" as a huge number. */
static void walk_cgroups(ft_memplan_machine *m, const char *root, const char *rel_in, const char *limit_file,
                         const char *usage_file, const char *inactive_key) {
    char rel[1024], dir[1200], path[1300];
    snprintf(rel, sizeof rel, "%s", rel_in);
    for (;;) {
        snprintf(dir, sizeof dir, "%s%s", root, strcmp(rel, "/") ? rel : "");
        snprintf(path, sizeof path, "%s/%s", dir, limit_file);
        uint64_t lim = file_number(path);
        if (lim && lim < ((uint64_t)1 << 60) && (!m->cgroup_limit || lim < m->cgroup_limit)) {
            m->cgroup_limit = lim;
            snprintf(path, sizeof path, "%s/%s", dir, usage_file);
            uint64_t cur = file_number(path);
            snprintf(path, sizeof path, "%s/memory.stat", dir);
            uint64_t inactive = stat_value(path, inactive_key);
            m->cgroup_used = cur > inactive ? cur - inactive : 0;
        }
        char *slash = strrchr(rel, '/');
        if (!slash || !strcmp(rel, "/"))
            break;
        if (slash == rel)
            strcpy(rel, "/");
        else
            *slash = 0;
    }
}

/* Both hierarchies (a hybrid system has the memory controller in v1 beside an empty v2). */
static void read_cgroup(ft_memplan_machine *m) {
    char rel[1024];
    if (cgroup_path("", rel, sizeof rel))
        walk_cgroups(m, "/sys/fs/cgroup", rel, "memory.max", "memory.current", "inactive_file");
    if (cgroup_path("memory", rel, sizeof rel))
        walk_cgroups(m, "/sys/fs/cgroup/memory", rel, "memory.limit_in_bytes", "memory.usage_in_bytes",
                     "total_inactive_file");
}

void ft_memplan_machine_read(ft_memplan_machine *m) {
    memset(m, 0, sizeof *m);
    m->mem_total = kv_kib("/proc/meminfo", "MemTotal");
    m->mem_available = kv_kib("/proc/meminfo", "MemAvailable");
    read_cgroup(m);
    char a[32], b[32];
    if (m->mem_available) {
        m->available = m->mem_available;
        snprintf(m->source, sizeof m->source, "MemAvailable %s of %s", ft_memplan_format_bytes(m->mem_available, a, 32),
                 ft_memplan_format_bytes(m->mem_total, b, 32));
    } else if (m->mem_total) {
        m->available = m->mem_total;
        snprintf(m->source, sizeof m->source, "MemTotal %s", ft_memplan_format_bytes(m->mem_total, a, 32));
    }
    if (m->cgroup_limit) {
        uint64_t room = m->cgroup_limit > m->cgroup_used ? m->cgroup_limit - m->cgroup_used : 0;
        if (!m->available || room < m->available) {
            m->available = room;
            snprintf(m->source, sizeof m->source, "the cgroup's limit %s less %s in use",
                     ft_memplan_format_bytes(m->cgroup_limit, a, 32), ft_memplan_format_bytes(m->cgroup_used, b, 32));
        }
    }
}

uint64_t ft_memplan_default_limit(const ft_memplan_machine *m) {
    uint64_t share = (uint64_t)((double)m->available * 0.95), headroom = 512 * MIB;
    uint64_t below = m->available > headroom ? m->available - headroom : 0;
    return share < below ? share : below;
}

const char *ft_memplan_format_bytes(uint64_t bytes, char *buf, size_t cap) {
    if (bytes >= ((uint64_t)1 << 50))
        snprintf(buf, cap, "%.1f PiB", (double)bytes / (double)((uint64_t)1 << 50));
    else if (bytes >= ((uint64_t)1 << 40))
        snprintf(buf, cap, "%.1f TiB", (double)bytes / (double)((uint64_t)1 << 40));
    else if (bytes >= GIB)
        snprintf(buf, cap, "%.2f GiB", (double)bytes / (double)GIB);
    else
        snprintf(buf, cap, bytes < 10 * MIB ? "%.1f MiB" : "%.0f MiB", (double)bytes / (double)MIB);
    return buf;
}

ft_status ft_memplan_parse_limit(const char *s, const ft_memplan_machine *m, uint64_t *out, ft_err *err) {
    const char *what = "expected a size such as 20G, 1.5T, 900M or 80% (of the available memory); K, M, G, T are "
                       "powers of 1024";
    if (!s || !*s)
        return FT_ERR(err, FT_ERR_INVALID, "memory_limit: empty: %s", what);
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v <= 0)
        return FT_ERR(err, FT_ERR_INVALID, "memory_limit \"%s\": %s", s, what);
    double mult = 1;
    if (*end == '%') {
        if (end[1] || v > 100)
            return FT_ERR(err, FT_ERR_INVALID, "memory_limit \"%s\": a percentage is 1..100%% of the available memory",
                          s);
        if (!m || !m->available)
            return FT_ERR(err, FT_ERR_INVALID, "memory_limit \"%s\": the available memory is unknown here; give a size",
                          s);
        *out = (uint64_t)((double)m->available * v / 100.0);
        return FT_OK;
    }
    switch (toupper((unsigned char)*end)) {
    case 'K': mult = 1024.0; end++; break;
    case 'M': mult = 1024.0 * 1024; end++; break;
    case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (mult > 1 && (*end == 'i' || *end == 'I'))
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end)
        return FT_ERR(err, FT_ERR_INVALID, "memory_limit \"%s\": %s", s, what);
    double bytes = v * mult;
    if (bytes < 16.0 * 1024 * 1024 || bytes > 1e18)
        return FT_ERR(err, FT_ERR_INVALID, "memory_limit \"%s\": must be between 16 MiB and an exabyte", s);
    *out = (uint64_t)bytes;
    return FT_OK;
}

/* ---------------------------------------------------------------- the prediction */

bool ft_memplan_ckpt_parse(const char *s, ft_memplan_ckpt *out) {
    if (!s)
        return false;
    if (!strcmp(s, "auto"))
        *out = FT_MEMPLAN_CKPT_AUTO;
    else if (!strcmp(s, "on"))
        *out = FT_MEMPLAN_CKPT_ON;
    else if (!strcmp(s, "off"))
        *out = FT_MEMPLAN_CKPT_OFF;
    else
        return false;
    return true;
}

ft_memplan_params ft_memplan_default_params(const ft_model_config *c) {
    ft_memplan_params p;
    memset(&p, 0, sizeof p);
    if (c)
        p.model = *c;
    p.dtype = FT_DTYPE_FP32;
    p.optimizer = FT_OPTIM_ADAMW;
    p.training = true;
    p.micro_batch = 1;
    p.context_length = 2048;
    p.zero = true;
    return p;
}

/* The process's own resident memory beside the engine's arenas: measured with `ftune bench
 * train-step` (peak RSS less the arenas: 8-16 MiB on 2 threads; the prediction is 3-4% above the
 * measured peak on the small config, within 0.1% on medium) plus, for a run, the tokenizer, chat
 * template, SQLite and loader threads (a generous 32 MiB: a run of the tiny test model peaks at
 * 63 MiB in all), and the OpenBLAS/OpenMP per-thread buffers and stacks. */
static uint64_t process_bytes(const ft_memplan_params *p, int threads) {
    uint64_t b = 16 * MIB + (uint64_t)threads * 4 * MIB;
    if (p->run)
        b += 32 * MIB;
    return b;
}

/* The flat parameter elements of a model (what the optimizer and the gradients hold). */
static int64_t model_elements(const ft_model_config *c) {
    size_t cnt = ft_model_config_tensors(c, NULL, 0);
    ft_tensor_spec *specs = ft_calloc(cnt ? cnt : 1, sizeof *specs);
    if (!specs)
        return 0;
    ft_model_config_tensors(c, specs, cnt);
    int64_t n = 0;
    for (size_t i = 0; i < cnt; i++)
        n += ft_tensor_spec_numel(&specs[i]);
    ft_free(specs);
    return n;
}

/* The largest shard of n elements among `world` ranks, in train/dp.c's layout: whole chunks of
 * FT_GRAD_CHUNK elements (ft_comm_shard), the last one cut at n. */
static int64_t largest_shard(int64_t n, int64_t world) {
    int64_t chunks = (n + FT_GRAD_CHUNK - 1) / FT_GRAD_CHUNK, most = 0;
    for (int64_t r = 0; r < world; r++) {
        int64_t clo, chi;
        ft_comm_shard(chunks, world, r, &clo, &chi);
        int64_t lo = clo * FT_GRAD_CHUNK < n ? clo * FT_GRAD_CHUNK : n, hi = chi * FT_GRAD_CHUNK < n ? chi * FT_GRAD_CHUNK : n;
        if (hi - lo > most)
            most = hi - lo;
    }
    return most;
}

void ft_memplan_estimate(const ft_memplan_params *p, ft_memplan *out) {
    memset(out, 0, sizeof *out);
    const int threads = p->threads > 0 ? p->threads : ft_tensor_threads();
    size_t params = 0, grads = 0;
    ft_model_state_bytes(&p->model, p->training, &params, &grads);
    out->params = params;
    out->grads = p->training ? grads : 0;
    out->optimizer = p->training ? ft_optim_state_bytes(&p->model, p->optimizer) : 0;
    uint64_t unfilled = 0; /* what ranks > 0 never touch */
    if (p->training && p->world_size > 1) {
        /* data parallelism (train/dp.c, comm.c): ZeRO-1's shard of the state (the largest rank's),
         * the reduce-scatter's receive buffers (ft_comm_scratch_floats: N slots of the largest
         * shard) and the per-chunk sums of squares of the gradient norm (doubles) */
        const int64_t n = model_elements(&p->model), N = p->world_size, most = largest_shard(n, N);
        const int nbuf = p->optimizer == FT_OPTIM_ADAMW ? 2 : 1;
        if (p->zero)
            out->optimizer = ((uint64_t)most * (uint64_t)nbuf + 16) * sizeof(float);
        out->comm = (uint64_t)most * (uint64_t)N * sizeof(float) +
                    (uint64_t)((n + FT_GRAD_CHUNK - 1) / FT_GRAD_CHUNK) * sizeof(double);
        unfilled = (uint64_t)most * sizeof(float);
        if (!p->zero) { /* no gather into rank 0's own slot either: no rank fills it */
            out->comm -= unfilled;
            unfilled = 0;
        }
    }
    ft_workspace_params wp = ft_workspace_default_params();
    wp.max_batch = p->micro_batch > 0 ? p->micro_batch : 1;
    wp.max_seq = p->context_length > 0 ? p->context_length : 1;
    wp.training = p->training;
    wp.checkpointing = p->training && p->checkpointing;
    wp.dtype = p->dtype;
    wp.threads = threads;
    out->workspace = ft_workspace_bytes(&p->model, &wp);
    /* the loader's batches: input ids, targets, positions, sample ids (int32) for each of
     * `prefetch` batches of global_batch rows (double: a huge batch must not wrap) */
    double G = (double)(p->global_batch > 0 ? p->global_batch : wp.max_batch);
    double batches = (double)(p->prefetch > 0 ? p->prefetch : 0) * 4.0 * sizeof(int32_t) * G * (double)wp.max_seq;
    out->batches = batches > 1.8e19 ? UINT64_MAX / 2 : (uint64_t)batches;
    out->process = process_bytes(p, threads);
    /* bf16 keeps per-thread buffers that grow to the largest product and stay
     * (src/tensor/gemm_bf16.c). On oneDNN: the activation operands packed to 16 bits (weights and
     * the LM head are bf16 already and read in place): A the widest of a layer's gradients (N rows
     * of gate|up) or a logits chunk, B a layer's widest saved input; the LM head's input gradient
     * splits a chunk's logits among the threads, each packing its share. On sgemm: a 16 MiB block
     * of an expanded bf16 weight per thread. */
    if (p->dtype == FT_DTYPE_BF16) {
        const ft_model_config *c = &p->model;
        double N = (double)wp.max_batch * (double)wp.max_seq, C = (double)c->hidden_size,
               F = (double)c->intermediate_size, V = (double)c->vocab_size,
               Q = (double)c->num_attention_heads * (double)c->head_dim;
        double chunk_rows = fmin(fmax(floor((64.0 * MIB) / (V * 4.0)), 16.0), N);
        if (ft_tensor_bf16_route(NULL) == FT_GEMM_ONEDNN) {
            double a = fmax(N * 2.0 * F, chunk_rows * V), b = N * fmax(F, fmax(C, Q));
            double others = threads > 1 ? chunk_rows * V * (double)(threads - 1) / (double)threads : 0.0;
            out->gemm_pack = (uint64_t)(2.0 * (a + b + others));
        } else {
            out->gemm_pack = (uint64_t)threads * 16 * MIB;
        }
    }
    double total = (double)out->params + (double)out->grads + (double)out->optimizer + (double)out->workspace +
                   (double)out->batches + (double)out->process + (double)out->gemm_pack + (double)out->comm;
    out->total = total > 1.8e19 ? UINT64_MAX / 2 : (uint64_t)total;
    out->total_others = out->total - (unfilled < out->total ? unfilled : 0);
}

void ft_memplan_describe(const ft_memplan_params *p, const ft_memplan *m, char *buf, size_t cap) {
    char t[32], w[32], g[32], o[32], a[32], b[32], pr[32], gp[32], cm[32], per[96] = "", shard[48] = "", ot[32];
    const bool dp = p->training && p->world_size > 1;
    if (dp) {
        snprintf(per, sizeof per, " per process of %lld (ranks > 0: %s)", (long long)p->world_size,
                 ft_memplan_format_bytes(m->total_others, ot, 32));
        snprintf(shard, sizeof shard, p->zero ? " (its 1/%lld, ZeRO-1)" : " (whole, ZeRO-1 off)", (long long)p->world_size);
    }
    snprintf(buf, cap,
             "%s%s = weights %s%s%s%s%s%s + activations %s (micro-batch %lld x %lld tokens%s, %s)%s%s%s%s%s%s + process %s",
             ft_memplan_format_bytes(m->total, t, 32), per, ft_memplan_format_bytes(m->params, w, 32),
             p->training ? " + gradients " : "", p->training ? ft_memplan_format_bytes(m->grads, g, 32) : "",
             p->training ? (p->optimizer == FT_OPTIM_LION ? " + Lion state " : " + AdamW state ") : "",
             p->training ? ft_memplan_format_bytes(m->optimizer, o, 32) : "", shard,
             ft_memplan_format_bytes(m->workspace, a, 32), (long long)p->micro_batch, (long long)p->context_length,
             p->training && p->checkpointing ? ", checkpointed" : "", ft_dtype_name(p->dtype),
             m->batches ? " + loader batches " : "", m->batches ? ft_memplan_format_bytes(m->batches, b, 32) : "",
             m->gemm_pack ? " + bf16 GEMM buffers " : "", m->gemm_pack ? ft_memplan_format_bytes(m->gemm_pack, gp, 32) : "",
             m->comm ? " + data-parallel buffers " : "", m->comm ? ft_memplan_format_bytes(m->comm, cm, 32) : "",
             ft_memplan_format_bytes(m->process, pr, 32));
}

/* ---------------------------------------------------------------- choices within a limit */

static uint64_t total_for(const ft_memplan_params *base, int64_t micro, bool ckpt, int64_t T, ft_optim_kind opt,
                          ft_memplan *plan) {
    ft_memplan_params q = *base;
    q.micro_batch = micro;
    q.checkpointing = ckpt;
    q.context_length = T;
    q.optimizer = opt;
    ft_memplan m;
    ft_memplan_estimate(&q, plan ? plan : &m);
    return plan ? plan->total : m.total;
}

/* What would make a plan fit, appended to msg: each change alone, with its prediction. */
static void suggestions(const ft_memplan_params *p, bool ckpt_allowed, uint64_t limit, char *msg, size_t cap) {
    size_t n = strlen(msg);
    char x[32], y[32];
    int k = 0;
#define SUGGEST(...)                                                                              \
    do {                                                                                          \
        if (n < cap) {                                                                            \
            n += (size_t)snprintf(msg + n, cap - n, "%s", k++ ? "; " : " To fit: ");              \
            if (n < cap)                                                                          \
                n += (size_t)snprintf(msg + n, cap - n, __VA_ARGS__);                             \
        }                                                                                         \
    } while (0)
    const bool ck = p->checkpointing;
    const int64_t T = p->context_length;
    if (p->micro_batch > 1 && total_for(p, 1, ck, T, p->optimizer, NULL) <= limit)
        SUGGEST("--micro-batch-size 1 (%s)", ft_memplan_format_bytes(total_for(p, 1, ck, T, p->optimizer, NULL), x, 32));
    if (!ck && ckpt_allowed && p->training) {
        uint64_t t = total_for(p, p->micro_batch, true, T, p->optimizer, NULL);
        SUGGEST("--activation-checkpointing on (%s)", ft_memplan_format_bytes(t, x, 32));
    }
    if (p->training && p->optimizer == FT_OPTIM_ADAMW) {
        uint64_t t = total_for(p, 1, ck || ckpt_allowed, T, FT_OPTIM_LION, NULL);
        if (t <= limit)
            SUGGEST("--optimizer lion, whose state is half of AdamW's (%s)", ft_memplan_format_bytes(t, x, 32));
    }
    /* the data loader's batches: the largest global batch that fits */
    if (p->prefetch > 0 && p->global_batch > 1) {
        ft_memplan_params q = *p;
        int64_t glo = 0, ghi = p->global_batch - 1;
        while (glo < ghi) {
            int64_t mid = glo + (ghi - glo + 1) / 2;
            q.global_batch = mid;
            if (total_for(&q, mid < p->micro_batch ? mid : p->micro_batch, ck, T, p->optimizer, NULL) <= limit)
                glo = mid;
            else
                ghi = mid - 1;
        }
        if (glo >= 1)
            SUGGEST("--global-batch-size %lld or less (the loader keeps %lld batches of it ready)", (long long)glo,
                    (long long)p->prefetch);
    }
    /* the longest context that fits with micro-batch 1 (and checkpointing when allowed) */
    int64_t lo = 0, hi = T;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (total_for(p, 1, ck || ckpt_allowed, mid, p->optimizer, NULL) <= limit)
            lo = mid;
        else
            hi = mid - 1;
    }
    if (lo >= 2 && lo < T)
        SUGGEST("--context-length %lld or less", (long long)lo);
    ft_memplan fl;
    if (total_for(p, 1, ck || ckpt_allowed, 2, p->optimizer, &fl) > limit)
        SUGGEST("even 2 tokens a row need %s (the weights%s alone %s): a smaller model",
                ft_memplan_format_bytes(fl.total, x, 32), p->training ? ", gradients and optimizer state" : "",
                ft_memplan_format_bytes(fl.params + fl.grads + fl.optimizer, y, 32));
    SUGGEST("a larger --memory-limit, if the machine has it");
    if (n < cap)
        snprintf(msg + n, cap - n, ".");
#undef SUGGEST
}

static ft_status fit(const ft_memplan_params *p, int64_t micro_max, ft_memplan_ckpt ckpt, uint64_t limit,
                     const char *limit_src, ft_memplan_choice *out, ft_err *err) {
    memset(out, 0, sizeof *out);
    const bool can_off = ckpt != FT_MEMPLAN_CKPT_ON, can_on = p->training && ckpt != FT_MEMPLAN_CKPT_OFF;
    int64_t lo = micro_max > 0 ? 1 : p->micro_batch, hi = micro_max > 0 ? micro_max : p->micro_batch;
    /* no checkpointing first (faster), the largest micro-batch that fits, then the same with it */
    for (int pass = 0; pass < 2; pass++) {
        bool ck = pass == 1;
        if ((ck && !can_on) || (!ck && !can_off))
            continue;
        for (int64_t m = hi; m >= lo; m--) {
            ft_memplan plan;
            if (total_for(p, m, ck, p->context_length, p->optimizer, &plan) <= limit) {
                out->dtype = p->dtype;
                out->micro_batch = m;
                out->checkpointing = ck;
                out->plan = plan;
                return FT_OK;
            }
        }
    }
    /* nothing fits: report the smallest plan allowed */
    ft_memplan_params q = *p;
    q.micro_batch = lo;
    q.checkpointing = can_on;
    ft_memplan_estimate(&q, &out->plan);
    out->dtype = p->dtype;
    out->micro_batch = lo;
    out->checkpointing = q.checkpointing;
    char desc[800], l[32], msg[2000];
    ft_memplan_describe(&q, &out->plan, desc, sizeof desc);
    snprintf(msg, sizeof msg, "does not fit in memory: the run needs an estimated %s, above the limit of %s%s%s%s.",
             desc, ft_memplan_format_bytes(limit, l, 32), limit_src ? " (" : "", limit_src ? limit_src : "",
             limit_src ? ")" : "");
    suggestions(&q, can_on, limit, msg, sizeof msg);
    return FT_ERR(err, FT_ERR_INVALID, "%s", msg);
}

ft_status ft_memplan_fit(const ft_memplan_params *p, int64_t micro_max, ft_memplan_ckpt ckpt, uint64_t limit,
                         ft_memplan_choice *out, ft_err *err) {
    return fit(p, micro_max, ckpt, limit, NULL, out, err);
}

/* ---------------------------------------------------------------- a training run */

ft_status ft_memplan_for_run(const ft_train_config *c, const ft_model_config *mc, int64_t T, int64_t G,
                             const ft_memplan_world *world, const ft_memplan_machine *machine, ft_memplan_choice *out,
                             uint64_t *limit_out, ft_err *err) {
    const int64_t N = world && world->size > 1 ? world->size : 1;
    int64_t local = world && world->local > 0 ? world->local : N;
    if (local > N)
        local = N;
    ft_memplan_machine mm;
    if (!machine) {
        ft_memplan_machine_read(&mm);
        machine = &mm;
    }
    char src[300], a[32];
    uint64_t limit = 0;
    if (c->memory_limit[0]) {
        FT_TRY(ft_memplan_parse_limit(c->memory_limit, machine, &limit, err));
        snprintf(src, sizeof src, "--memory-limit %s", c->memory_limit);
    } else if (machine->available) {
        limit = ft_memplan_default_limit(machine);
        char shared[80] = "";
        if (local > 1) { /* the processes on this machine share its memory */
            limit /= (uint64_t)local;
            snprintf(shared, sizeof shared, ", divided among the %lld processes on this machine", (long long)local);
        }
        snprintf(src, sizeof src, "the default, 95%% of the %s available, at least 512 MiB below it%s: %s",
                 ft_memplan_format_bytes(machine->available, a, 32), shared, machine->source);
    } else {
        limit = UINT64_MAX / 2; /* unknown machine: no refusal */
        snprintf(src, sizeof src, "no limit (the available memory is unknown)");
    }
    if (limit_out)
        *limit_out = limit;
    ft_memplan_params p = ft_memplan_default_params(mc);
    p.optimizer = c->optimizer == FT_OPTIMIZER_LION ? FT_OPTIM_LION : FT_OPTIM_ADAMW;
    p.context_length = T;
    p.threads = c->threads;
    if (p.threads <= 0 && local > 1) /* the trainer's default: the cores shared among the local ranks */
        p.threads = ft_tensor_threads() / (int)local > 1 ? ft_tensor_threads() / (int)local : 1;
    p.world_size = N;
    p.zero = !world || world->zero;
    if (!ft_dtype_parse(c->dtype, &p.dtype)) {
        /* "auto": the run picks a dtype by measuring; plan for the one that needs more (bf16
         * keeps rounded copies of a layer's weights and of the LM head) */
        ft_memplan a16, a32;
        p.dtype = FT_DTYPE_BF16;
        ft_memplan_estimate(&p, &a16);
        p.dtype = FT_DTYPE_FP32;
        ft_memplan_estimate(&p, &a32);
        p.dtype = a16.total > a32.total ? FT_DTYPE_BF16 : FT_DTYPE_FP32;
    }
    /* what the run's workspace would refuse, before anything is recorded */
    FT_TRY(ft_workspace_check_dtype(mc, !strcmp(c->dtype, "auto") ? FT_DTYPE_FP32 : p.dtype, true, err));
    p.global_batch = G;
    p.prefetch = FT_MEMPLAN_RUN_PREFETCH;
    p.run = true;
    int64_t micro_max = 0;
    if (c->micro_batch_size > 0)
        p.micro_batch = c->micro_batch_size < G ? c->micro_batch_size : G;
    else
        micro_max = G < 8 ? G : 8;
    ft_memplan_ckpt ck = FT_MEMPLAN_CKPT_AUTO;
    ft_memplan_ckpt_parse(c->activation_checkpointing, &ck);
    return fit(&p, micro_max, ck, limit, src, out, err);
}
