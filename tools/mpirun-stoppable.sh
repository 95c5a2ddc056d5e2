#!/usr/bin/env bash
# mpirun with a clean stop on SIGTERM: `bash tools/mpirun-stoppable.sh -np 2 meshlm pretrain ...`
# takes mpirun's arguments and runs it. Open MPI 4.1's mpirun answers SIGTERM (and Ctrl-C) by
# aborting the job: the ranks are killed about a second later and a checkpoint being written is
# lost. It forwards SIGUSR1 instead, which MeshLM's training commands take as a request to
# save a checkpoint at the next step and exit 0. So here a SIGTERM, or a first Ctrl-C, reaches
# the ranks as SIGUSR1; a second Ctrl-C aborts as plain mpirun would. Exits with mpirun's status.
# (slurm/common.sh does the same for the batch script's SIGTERM; docs/training.md, "Preemption".)
set -uo pipefail
mpirun "$@" &
pid=$!
interrupts=0
stop() {
    echo "mpirun-stoppable: $1: asking the ranks to checkpoint and stop (SIGUSR1 to mpirun)" >&2
    kill -USR1 "$pid" 2>/dev/null || true
}
on_int() {
    interrupts=$((interrupts + 1))
    if [ "$interrupts" -gt 1 ]; then
        echo "mpirun-stoppable: second Ctrl-C: aborting the job" >&2
        kill -INT "$pid" 2>/dev/null || true
    else
        stop "Ctrl-C (again to abort)"
    fi
}
trap 'stop SIGTERM' TERM
trap on_int INT
# `wait` returns early (status > 128) when a trapped signal arrives: wait until mpirun exits.
while true; do
    status=0
    wait "$pid" || status=$?
    kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
