/* tests/comm/mpi_util.h: launching processes under mpirun from a test (the data-parallel tests of
 * tests/comm/). Local runs use shared memory (--mca btl self,vader), no core binding (Open MPI pins
 * each rank to one core by default, which starves OpenMP) and --oversubscribe (more ranks than
 * cores); every launch is bounded by `timeout` so that a hang fails the test instead of blocking
 * the suite. Open MPI refuses to run as root unless told. Ranks waiting in MPI yield the core and
 * OpenMP runs one passive thread a rank: with more ranks than cores, spinning waiters otherwise
 * take the time the computing rank needs (a 2-rank test took 65 s instead of 2 on 2 busy cores). */
#ifndef FTUNE_TESTS_COMM_MPI_UTIL_H
#define FTUNE_TESTS_COMM_MPI_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ftune/comm.h"

#define MPI_TEST_ENV                                                                                     \
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "            \
    "OMPI_MCA_mpi_yield_when_idle=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE "

/* "timeout S env mpirun -np N <local flags> " into buf. */
static inline void mpi_test_launch(char *buf, size_t cap, int timeout_s, int np) {
    snprintf(buf, cap,
             "timeout -k 5 %d env " MPI_TEST_ENV "mpirun -np %d --oversubscribe --mca btl self,vader --bind-to none ",
             timeout_s, np);
}

/* This test binary's own path (for `--helper` children). */
static inline const char *mpi_test_self(void) {
    static char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    return self;
}

#define SKIP_WITHOUT_MPI()                                                                                     \
    do {                                                                                                       \
        if (!ft_comm_mpi_built())                                                                              \
            SKIP("this binary is built without MPI; the MPI=1 build's run (make test) covers it");            \
        if (system("command -v mpirun >/dev/null 2>&1") != 0)                                                  \
            SKIP("mpirun is not installed (make deps installs openmpi-bin)");                                  \
    } while (0)

#endif
