/* ftune/memplan.h: the memory planner (issue #10 item 3). Predicts a training run's peak
 * resident memory from the model's shape, dtype, optimizer, micro-batch, context length and
 * activation checkpointing, reads what the machine has available (/proc/meminfo MemAvailable and
 * the cgroup's limit), makes the automatic choices (micro-batch size, checkpointing) within a
 * memory limit, and refuses a plan that cannot fit with the numbers and what would make it fit.
 * Used by `ftune validate`, `ftune create` (and the trainer) and `ftune bench`.
 * Implemented in src/train/memplan.c.
 *
 * The prediction is the sum of what the engine allocates, each term from the engine's own sizing
 * (ft_model_state_bytes, ft_optim_state_bytes, ft_workspace_bytes: the same layout code as the
 * allocations), plus the data loader's prefetched batches and a measured allowance for the
 * process itself (code, libraries, OpenBLAS and thread buffers, tokenizer).
 *
 * Data parallelism (world_size > 1, docs/distributed.md): the prediction is per process. Every
 * process holds the whole weights and gradients; with ZeRO-1 (the default) the optimizer state of
 * its shard only (1/N of it, the largest shard counted); and the reduce-scatter's receive buffers
 * (N times the largest shard: about one more gradient) and the per-chunk sums of the gradient norm.
 * A checkpoint gathers the optimizer state on rank 0 into buffers that are idle between steps (the
 * gradients, the receive buffers); the other ranks never fill their own receive slot, so their
 * peak is lower by one shard (total_others). */
#ifndef FTUNE_MEMPLAN_H
#define FTUNE_MEMPLAN_H

#include "ftune/base.h"
#include "ftune/config.h"
#include "ftune/optim.h"
#include "ftune/tensor.h"
#include "ftune/train.h"

/* ---------------------------------------------------------------- the machine */

typedef struct ft_memplan_machine {
    uint64_t mem_total;      /* /proc/meminfo MemTotal */
    uint64_t mem_available;  /* /proc/meminfo MemAvailable */
    uint64_t cgroup_limit;   /* the tightest memory limit of this process's cgroups; 0: none */
    uint64_t cgroup_used;    /* that cgroup's usage less its inactive file cache */
    uint64_t available;      /* what a run may use: min(MemAvailable, cgroup limit - used) */
    char source[160];        /* where `available` came from, for messages */
} ft_memplan_machine;

/* Read the machine's memory (never fails: unknown values are 0; available falls back to
 * MemTotal, then to 0 meaning "unknown"). */
void ft_memplan_machine_read(ft_memplan_machine *out);

/* The default memory limit: 95% of what is available, and at least 512 MiB below it (the
 * prediction errs on the high side: +0-4% on the bench configs). 0 when available is 0. */
uint64_t ft_memplan_default_limit(const ft_memplan_machine *m);

/* Parse a --memory-limit value: "20G", "20GiB", "1.5T", "900M", "4096K" (K, M, G, T are powers
 * of 1024; a trailing "B" or "iB" is accepted), a plain number of bytes, or "80%" (of
 * m->available). FT_ERR_INVALID with a message saying what is accepted. */
ft_status ft_memplan_parse_limit(const char *s, const ft_memplan_machine *m, uint64_t *out, ft_err *err);

/* "1.23 GiB" / "456 MiB" into buf (>= 32 bytes); returns buf. */
const char *ft_memplan_format_bytes(uint64_t bytes, char *buf, size_t cap);

/* ---------------------------------------------------------------- the prediction */

typedef enum ft_memplan_ckpt { FT_MEMPLAN_CKPT_AUTO = 0, FT_MEMPLAN_CKPT_ON, FT_MEMPLAN_CKPT_OFF } ft_memplan_ckpt;
/* "auto" | "on" | "off"; false when unknown. */
bool ft_memplan_ckpt_parse(const char *s, ft_memplan_ckpt *out);

typedef struct ft_memplan_params {
    ft_model_config model;
    ft_dtype dtype;
    ft_optim_kind optimizer;
    bool training;           /* false: inference only (no gradients, optimizer or backward activations) */
    int64_t micro_batch;     /* rows per forward/backward pass */
    int64_t context_length;  /* T */
    bool checkpointing;
    int threads;             /* threads the kernels use (0: all cores) */
    int64_t global_batch;    /* rows a step's batch holds (the loader's batches); 0: micro_batch */
    int64_t prefetch;        /* batches the data loader keeps ready (the trainer's: 4); 0: none */
    bool run;                /* a full run (tokenizer, data loader, store): a larger process allowance */
    int64_t world_size;      /* processes of a data-parallel run; 0 or 1: one process */
    bool zero;               /* with world_size > 1: ZeRO-1, each process holds its shard of the optimizer state */
} ft_memplan_params;
/* Defaults: fp32, AdamW, training, micro 1, T 2048, no checkpointing, all threads, no loader, one
 * process (ZeRO-1 on, for when world_size is set). */
ft_memplan_params ft_memplan_default_params(const ft_model_config *c);

typedef struct ft_memplan {
    uint64_t params, grads, optimizer; /* fp32 master weights, gradients, optimizer state (this
                                        * process's shard under ZeRO-1) */
    uint64_t workspace;                /* activations, scratch, logits chunk: one workspace */
    uint64_t batches;                  /* the data loader's prefetched batches */
    uint64_t gemm_pack;                /* bf16 on oneDNN: the operands packed to 16 bits (largest product) */
    uint64_t comm;                     /* data parallelism: receive buffers and per-chunk norm sums */
    uint64_t process;                  /* the process itself */
    uint64_t total;                    /* the predicted peak resident memory (of rank 0, the largest) */
    uint64_t total_others;             /* data parallelism: ranks > 0, which never fill the receive
                                        * slot of their own shard (rank 0 does, gathering a
                                        * checkpoint's optimizer state into it, under ZeRO-1);
                                        * else total */
} ft_memplan;

void ft_memplan_estimate(const ft_memplan_params *p, ft_memplan *out);

/* One line: "14.2 GiB = weights 4.6 + gradients 4.6 + AdamW state 9.2 + activations 0.8 + ...";
 * with world_size > 1 "per process of N: ..." with the shard and the data-parallel buffers. */
void ft_memplan_describe(const ft_memplan_params *p, const ft_memplan *m, char *buf, size_t cap);

/* ---------------------------------------------------------------- choices within a limit */

typedef struct ft_memplan_choice {
    int64_t micro_batch;
    bool checkpointing;
    ft_dtype dtype; /* planned for (a run's "auto": the dtype that needs more) */
    ft_memplan plan;
} ft_memplan_choice;

/* Fit p within `limit` bytes. micro_max > 0: the micro-batch is automatic, the largest of
 * 1..micro_max that fits; micro_max == 0: p->micro_batch is fixed. Checkpointing `ckpt`: ON and
 * OFF are fixed; AUTO prefers no checkpointing (it costs a recomputed forward) and turns it on
 * only when that is what fits (a larger micro-batch is never bought with checkpointing). When
 * nothing fits: FT_ERR_INVALID, the message with the prediction, the limit, and what would make it
 * fit (a smaller micro-batch, checkpointing, Lion's smaller state, the longest context that fits,
 * a larger --memory-limit), *out filled with the smallest plan tried. */
ft_status ft_memplan_fit(const ft_memplan_params *p, int64_t micro_max, ft_memplan_ckpt ckpt, uint64_t limit,
                         ft_memplan_choice *out, ft_err *err);

/* The processes of a data-parallel run, for ft_memplan_for_run. */
typedef struct ft_memplan_world {
    int64_t size;  /* processes (ranks); 0 or 1: one */
    int64_t local; /* of them on this machine, sharing its memory; 0: all of them */
    bool zero;     /* ZeRO-1 (the trainer's default; FTUNE_ZERO=0 turns it off) */
} ft_memplan_world;

/* The plan of a training run: configuration c on a model of config mc, at context length T with
 * G rows a step, on `machine` (NULL: read it now), per process of `world` (NULL: one process).
 * The limit is c->memory_limit, per process (default: ft_memplan_default_limit divided among the
 * world's processes on this machine); the micro-batch is c's (at most G) or
 * automatic up to min(G, 8); checkpointing as c->activation_checkpointing; dtype and optimizer
 * from c; the loader's prefetched batches of G rows and a run's process allowance included.
 * *limit_out (may be NULL) gets the limit used. Refusal: as ft_memplan_fit, the message naming the
 * limit's source. */
ft_status ft_memplan_for_run(const ft_train_config *c, const ft_model_config *mc, int64_t T, int64_t G,
                             const ft_memplan_world *world, const ft_memplan_machine *machine, ft_memplan_choice *out,
                             uint64_t *limit_out, ft_err *err);
/* The batches the trainer's data loader keeps ready (what ft_memplan_for_run counts). */
#define FT_MEMPLAN_RUN_PREFETCH 4

#endif
