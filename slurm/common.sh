# Sourced by every slurm/*.sbatch: finds the meshlm binary, sets up the environment it runs at
# full speed in, and runs `meshlm ARGS...` once per task of the allocation (docs/slurm.md).
#
# Environment a user may set (sbatch passes the submitting shell's environment on):
#   MESHLM           the meshlm binary (default: .build/release/meshlm under the submit
#                    directory, then `meshlm` on PATH)
#   MESHLM_LAUNCHER  srun | mpirun (default: `srun --mpi=pmix` when Slurm has the PMIx plugin,
#                    otherwise mpirun)
# Outside a Slurm job (`bash slurm/mesh.sbatch ...`) the command runs once, plainly, as one rank.

set -euo pipefail

slurm_log() { echo "meshlm-slurm: $*"; }
slurm_die() { echo "meshlm-slurm: error: $*" >&2; exit 1; }

# The meshlm binary: $MESHLM, then the submit directory's release build, then PATH.
find_meshlm() {
    local submit_dir="${SLURM_SUBMIT_DIR:-$PWD}"
    if [ -n "${MESHLM:-}" ]; then
        [ -x "$MESHLM" ] || slurm_die "MESHLM=$MESHLM is not an executable file"
        echo "$MESHLM"
    elif [ -x "$submit_dir/.build/release/meshlm" ]; then
        echo "$submit_dir/.build/release/meshlm"
    elif command -v meshlm >/dev/null 2>&1; then
        command -v meshlm
    else
        slurm_die "no meshlm binary: set MESHLM=/path/to/meshlm, submit from the source tree after 'swift build -c release', or put meshlm on PATH"
    fi
}

# The environment of every rank (tools/env.sh does the same for mpirun by hand):
# - one OpenBLAS thread per CPU Slurm gave the task (--cpus-per-task, default 1);
# - a preset OPENBLAS_CORETYPE (e.g. Haswell) forces slower kernels than the CPU has: unset;
# - Open MPI refuses root without its two variables (containers and test clusters run as root).
setup_environment() {
    export OPENBLAS_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"
    if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
        slurm_log "unsetting OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE so OpenBLAS uses this CPU's own kernels"
        unset OPENBLAS_CORETYPE
    fi
    if [ "$(id -u)" -eq 0 ]; then
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    fi
}

# How to start one process per task. Debian's (and most) Open MPI builds have no PMI-1/2:
# plain `srun` and `srun --mpi=pmi2` fail in MPI_Init; `srun --mpi=pmix` works when Slurm has
# its PMIx plugin. mpirun inside the allocation reads the task layout from Slurm itself.
choose_launcher() {
    local choice="${MESHLM_LAUNCHER:-}"
    if [ -z "$choice" ]; then
        if command -v srun >/dev/null 2>&1 && srun --mpi=list 2>&1 | grep -qw pmix; then
            choice=srun
        elif command -v mpirun >/dev/null 2>&1; then
            choice=mpirun
        else
            slurm_die "neither srun with the PMIx plugin (srun --mpi=list) nor mpirun is available on $(hostname -s)"
        fi
    fi
    case "$choice" in
        srun) launcher=(srun --mpi=pmix) ;;
        mpirun) launcher=(mpirun -np "${SLURM_NTASKS:-1}") ;;
        *) slurm_die "MESHLM_LAUNCHER=$choice: expected srun or mpirun" ;;
    esac
}

# The launched step runs in the background so the batch shell can act on signals while it
# waits (bash runs traps only between commands, never during a foreground child).
step_pid=""
stop_requested=""
on_usr1() {
    # `#SBATCH --signal=B:USR1@60`: the time limit (or a preemption) is a minute away. Pass it
    # to the ranks (srun and mpirun forward SIGUSR1): `meshlm pretrain` saves a checkpoint at
    # the next step and exits 0; the job is then requeued and resumes from RUN/checkpoints/latest.
    slurm_log "SIGUSR1: the time limit or a preemption is near; asking the step to checkpoint and stop"
    stop_requested=1
    [ -n "$step_pid" ] && kill -USR1 "$step_pid" 2>/dev/null || true
}
on_term() {
    # A SIGTERM to the batch script (scancel --batch, a preemption) asks for a clean stop. Both
    # launchers kill the ranks on SIGTERM -- srun cancels the step, mpirun (Open MPI 4.1) aborts
    # the job a second later -- before a checkpoint can be written; both forward SIGUSR1, which
    # the ranks take as "save and exit 0". Unlike on_usr1, the job is not requeued.
    slurm_log "SIGTERM: asking the step to checkpoint and stop (passed on as SIGUSR1: the launcher would kill the ranks on SIGTERM)"
    [ -n "$step_pid" ] && kill -USR1 "$step_pid" 2>/dev/null || true
}

# Runs `meshlm ARGS...` on every task of the allocation and exits with its status.
run_meshlm() {
    local meshlm status=0
    meshlm=$(find_meshlm)
    if [ -z "${SLURM_JOB_ID:-}" ]; then
        setup_environment
        slurm_log "not inside a Slurm job: running one rank here"
        exec "$meshlm" "$@"
    fi
    # With --open-mode=append a requeued job appends to the same output file: a header per run.
    slurm_log "==== job $SLURM_JOB_ID (${SLURM_JOB_NAME:-}) run $((${SLURM_RESTART_COUNT:-0} + 1)) started $(date '+%Y-%m-%d %H:%M:%S')"
    setup_environment
    choose_launcher
    slurm_log "${SLURM_NTASKS:-1} tasks on ${SLURM_JOB_NUM_NODES:-1} node(s) (${SLURM_JOB_NODELIST:-?}), ${SLURM_CPUS_PER_TASK:-1} CPU(s) per task"
    slurm_log "launcher: ${launcher[*]}; binary: $meshlm"
    slurm_log "command: meshlm $*"
    if [ -n "${SLURM_RESTART_COUNT:-}" ]; then
        # This run is a requeue: `meshlm pretrain` resumes from RUN/checkpoints/latest by itself.
        slurm_log "requeued (SLURM_RESTART_COUNT=$SLURM_RESTART_COUNT): a training command resumes from RUN/checkpoints/latest"
    fi
    trap on_usr1 USR1
    trap on_term TERM
    "${launcher[@]}" "$meshlm" "$@" &
    step_pid=$!
    # `wait` returns early (status > 128) when a trapped signal arrives; wait again until the
    # step itself has exited.
    while true; do
        status=0
        wait "$step_pid" || status=$?
        kill -0 "$step_pid" 2>/dev/null || break
    done
    slurm_log "==== job $SLURM_JOB_ID run $((${SLURM_RESTART_COUNT:-0} + 1)) ended $(date '+%Y-%m-%d %H:%M:%S') with status $status"
    if [ -n "$stop_requested" ] && [ "$status" -eq 0 ]; then
        slurm_log "stopped on request with a checkpoint: requeueing job $SLURM_JOB_ID to resume"
        scontrol requeue "$SLURM_JOB_ID" || slurm_log "scontrol requeue failed: resubmit to resume from RUN/checkpoints/latest"
    fi
    exit "$status"
}
