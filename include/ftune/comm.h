/* ftune/comm.h: the communication seam of data-parallel training (issue #15): the processes of one
 * run, their rank and count, and the few collectives the trainer needs. Implemented in src/comm/:
 * a single-process implementation always built, and an MPI one in a binary built with `make MPI=1`
 * (Debian's Open MPI). Depends on base only; src/train/ uses it.
 *
 * Which one a process gets (ft_comm_world): MPI when the binary has it AND the process was started
 * by an MPI launcher (mpirun/mpiexec/srun set OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK); else one
 * process, so an MPI build runs as an ordinary program without mpirun.
 *
 * Determinism: every sum here is taken in a fixed order, rank 0 first, whatever the MPI library's
 * algorithms are (MPI_Allreduce promises no order, and with 3+ ranks Open MPI's give different
 * bits): data moves point to point or by gathers, and the arithmetic is done here.
 *   reduce-scatter: shard s (of ft_comm_shard) of the result is, element by element,
 *                   ((x_0 + x_1) + x_2) + ... + x_{N-1} in float, x_r rank r's buffer;
 *   sums of doubles / int64: the same order (exact for int64).
 * So N ranks give the same bits as one process adding the N contributions in rank order.
 *
 * Errors: MPI runs with MPI_ERRORS_RETURN; a failed call is an ft_err naming the operation and
 * MPI's message. A rank that dies: Open MPI's launcher ends the job (every rank is killed), so no
 * rank waits forever on a dead peer. A rank that is alive but stuck (stopped, hung): with
 * FTUNE_COMM_TIMEOUT_S=S, a rank that waits more than S seconds in one operation ends the job
 * (MPI_Abort); unset, it waits (rank 0 may legitimately work alone for a long time: evaluation,
 * export). Waiting ranks test their requests and yield the core instead of MPI's blocking spin. */
#ifndef FTUNE_COMM_H
#define FTUNE_COMM_H

#include "ftune/base.h"

typedef struct ft_comm ft_comm; /* opaque */

/* True when this binary was built with MPI (make MPI=1). */
bool ft_comm_mpi_built(void);
/* True when this process was started by an MPI launcher (the environment says so). */
bool ft_comm_launched_by_mpi(void);

/* The processes of this run: MPI's world (initialising MPI) when the binary has MPI and the
 * process was launched by mpirun/srun, else a one-process communicator. A process launched by
 * mpirun with more than one rank in a binary without MPI is refused (FT_ERR_UNSUPPORTED), since it
 * would silently train N independent copies. Free with ft_comm_free (MPI_Finalize). */
ft_status ft_comm_world(ft_comm **out, ft_err *err);
/* A one-process communicator (never MPI). */
ft_status ft_comm_single(ft_comm **out, ft_err *err);
void ft_comm_free(ft_comm *c);

int64_t ft_comm_rank(const ft_comm *c);
int64_t ft_comm_size(const ft_comm *c);
/* The ranks on this process's host, this one included (they share its memory; MPI's shared-memory
 * split, found when the world is made); 1 in one process. */
int64_t ft_comm_local_size(const ft_comm *c);
/* "mpi" or "single". */
const char *ft_comm_backend(const ft_comm *c);
/* This process's host name (gethostname). */
const char *ft_comm_host(const ft_comm *c);

/* The part of n units that rank r owns: [*lo, *hi) with lo = floor(n * r / N), contiguous and in
 * rank order, possibly empty. */
void ft_comm_shard(int64_t n, int64_t size, int64_t rank, int64_t *lo, int64_t *hi);

ft_status ft_comm_barrier(ft_comm *c, ft_err *err);
/* root's `bytes` bytes of buf to every rank. */
ft_status ft_comm_bcast(ft_comm *c, void *buf, size_t bytes, int64_t root, ft_err *err);

/* Reduce-scatter of floats in units of `unit` elements: buf (n elements) holds this rank's
 * contribution; afterwards this rank's shard of units (ft_comm_shard(ceil(n / unit), ...), in
 * elements [lo * unit, min(hi * unit, n))) holds the ordered sum of every rank's (see above). The
 * rest of buf is left unspecified. `scratch` is caller memory of ft_comm_scratch_floats(n, unit)
 * floats (NULL: allocated per call). */
ft_status ft_comm_reduce_scatter_f32(ft_comm *c, float *buf, int64_t n, int64_t unit, float *scratch, ft_err *err);
int64_t ft_comm_scratch_floats(const ft_comm *c, int64_t n, int64_t unit);
/* All-gather in the same layout: each rank's shard of buf (elements as above) to every rank. No
 * arithmetic, so the result is bit-exact. */
ft_status ft_comm_allgather_f32(ft_comm *c, float *buf, int64_t n, int64_t unit, ft_err *err);
/* The same layout gathered to `root` only: `mine` is this rank's shard (its elements only, e.g. a
 * ZeRO-1 optimizer state), `full` root's n-element result (unused on the others). */
ft_status ft_comm_gather_f32(ft_comm *c, const float *mine, float *full, int64_t n, int64_t unit, int64_t root,
                             ft_err *err);
/* The same for doubles, to every rank (e.g. per-chunk partial sums). */
ft_status ft_comm_allgather_f64(ft_comm *c, double *buf, int64_t n, int64_t unit, ft_err *err);

/* v[0..n) summed over ranks in rank order, the result on every rank. */
ft_status ft_comm_sum_f64(ft_comm *c, double *v, int64_t n, ft_err *err);
ft_status ft_comm_sum_i64(ft_comm *c, int64_t *v, int64_t n, ft_err *err);
/* Every rank's `bytes` bytes gathered on every rank: out gets size * bytes, rank order. */
ft_status ft_comm_allgather_bytes(ft_comm *c, const void *mine, size_t bytes, void *out, ft_err *err);

/* End every process of the run with `code` (MPI_Abort); in one process, _exit(code). For a rank
 * that cannot go on and must not leave the others waiting. Never returns. */
void ft_comm_abort(ft_comm *c, int code) __attribute__((noreturn));

#endif
