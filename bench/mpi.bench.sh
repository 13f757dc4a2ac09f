#!/bin/sh
# Data-parallel scaling (issue #15): one real `ftune create` run of the medium configuration as one
# process and as `mpirun -np 2`, one thread per process, ROUNDS times alternating, in this one
# invocation (bench/mpi_bench.py says how each figure is taken). Prints tokens/s of each, their
# ratio (goal: 2 ranks >= 1.8x one), tokens per CPU-second (what the ratio would be on two free
# cores of a shared machine), rank 0's communication time and bytes sent per step, and the load
# average. Needs the MPI build (make MPI=1, built here when missing) and Open MPI's mpirun.
#   ROUNDS=2 STEPS=4 sh bench/mpi.bench.sh
set -e
FTUNE=${FTUNE:-./build-mpi/ftune}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-4}
if [ ! -x "$FTUNE" ] && [ "$FTUNE" = ./build-mpi/ftune ]; then
    make --no-print-directory MPI=1 build-mpi/ftune >/dev/null
fi
exec /usr/bin/python3 bench/mpi_bench.py --ftune "$FTUNE" --rounds "$ROUNDS" --steps "$STEPS" ${JSON:+--json "$JSON"}
