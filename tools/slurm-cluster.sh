#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for tests and for trying slurm/*.sbatch:
#   bash tools/slurm-cluster.sh start    # installs what is missing, starts munged, slurmctld, slurmd
#   bash tools/slurm-cluster.sh status
#   bash tools/slurm-cluster.sh stop     # stops exactly the processes `start` started
# `start` prints the `export SLURM_CONF=...` line the Slurm commands need. Everything lives
# under MESHLM_SLURM_DIR (default /tmp/meshlm-slurm): config, munge key and socket, state,
# spool, logs and the PIDs it started. Needs root (the daemons run as root, SlurmUser=root).
# Facts this relies on: /work/shared/notes/slurm.md and docs/slurm.md.
# Exit status: 0 done; 1 failed (the logs' tails are printed); 3 Slurm or munge is not installed
# and cannot be installed here (not root, or apt-get failed) -- tests skip on 3 only.
set -euo pipefail

dir="${MESHLM_SLURM_DIR:-/tmp/meshlm-slurm}"
conf="$dir/slurm.conf"
socket="$dir/munge/munge.socket"
daemons=(munged slurmctld slurmd)
host=$(hostname -s)
say() { echo "slurm-cluster: $*"; }
fail() { echo "slurm-cluster: error: $*" >&2; exit 1; }

# Installs the Debian packages that are not "install ok installed" (some images hold packages
# unpacked but never configured), with apt-get update only when something is missing.
install_missing() {
    local packages=(slurmctld slurmd slurm-client munge openmpi-bin) missing=() package status
    for package in "${packages[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
        [ "$status" = "install ok installed" ] || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "slurm-cluster: cannot install ${missing[*]}: this needs root (apt-get install as root, then run again)" >&2
        exit 3
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local log="$dir/apt.log"
    if ! { apt-get update -qq -o DPkg::Lock::Timeout=600 &&
           apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"; } >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        echo "slurm-cluster: cannot install ${missing[*]}: apt-get failed (log: $log)" >&2
        exit 3
    fi
}

# Whether a process exists and has not exited: an exited daemon stays a zombie until init
# reaps it, which here can take seconds.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# The PID recorded for a daemon, if that process is still the daemon we started.
running_pid() {
    local name=$1 pid
    [ -f "$dir/$name.pid" ] || return 1
    pid=$(cat "$dir/$name.pid")
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] && alive "$pid" && echo "$pid"
}

# Still alive, or still about to exec the daemon (start-up checks).
launched() { [ -f "$dir/$1.pid" ] && alive "$(cat "$dir/$1.pid")"; }

all_running() {
    local name
    for name in "${daemons[@]}"; do running_pid "$name" >/dev/null || return 1; done
}

node_state() { SLURM_CONF="$conf" sinfo -h -N -n "$host" -o '%T' 2>/dev/null | head -n 1; }

# Cancels this cluster's jobs and waits (at most 15 s) until they are gone: slurmd's job steps
# (slurmstepd and the tasks) would otherwise outlive it.
cancel_jobs() {
    local waited=0
    running_pid slurmctld >/dev/null || return 0
    SLURM_CONF="$conf" scancel --quiet --user "$(id -un)" 2>/dev/null || return 0
    while [ -n "$(SLURM_CONF="$conf" squeue -h -o %i 2>/dev/null)" ] && [ $waited -lt 60 ]; do
        sleep 0.25; waited=$((waited + 1))
    done
}

stop_daemons() {
    local name pid pids=() waited
    # Reverse order: slurmd, slurmctld, then munged (which the other two authenticate through).
    for name in slurmd slurmctld munged; do
        if pid=$(running_pid "$name"); then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
        rm -f "$dir/$name.pid"
    done
    for pid in "${pids[@]}"; do
        waited=0
        while alive "$pid" && [ $waited -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    return 0
}

# Starts a daemon in the background, in its own session, and records its PID. The daemon must
# not inherit what its caller had:
# - descriptors: a caller reading this script's output waits for EOF, Swift's Foundation.Process
#   waits until a socket it gives every child is closed, and the start/stop lock is fd 9;
# - the signal mask and ignored signals: a test process spawns children with almost every
#   signal blocked, and a slurmd with SIGTERM blocked would not stop. bash cannot unblock
#   signals; perl (Essential on Debian) can, then execs in place like env and setsid, so the
#   recorded PID is the daemon's.
launch() {
    local name=$1 fd; shift
    (
        exec >>"$dir/log/$name.out" 2>&1 </dev/null
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ] && [ -e "/proc/$BASHPID/fd/$fd" ]; then eval "exec $fd>&-"; fi
        done
        exec env --default-signal perl -MPOSIX -e \
            'sigprocmask(SIG_SETMASK, POSIX::SigSet->new) or die "sigprocmask: $!\n"; exec { $ARGV[0] } @ARGV or die "cannot run $ARGV[0]: $!\n"' \
            setsid "$@"
    ) &
    echo $! >"$dir/$name.pid"
}

print_tails() {
    local log
    for log in "$dir"/log/*; do
        [ -s "$log" ] || continue
        echo "--- tail of $log" >&2
        tail -n 15 "$log" >&2
    done
}

write_config() {
    local first_job_id=$1 memory cpus
    # RealMemory above what the node has makes the node unusable: take the kernel's figure.
    memory=$(free -m | awk '/^Mem:/ { print $2 }')
    cpus=$(nproc)
    cat >"$conf" <<EOF
# Generated by tools/slurm-cluster.sh: a one-node cluster on $host, run as root.
ClusterName=meshlm
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.daemon.pid
SlurmdPidFile=$dir/slurmd.daemon.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=1
KillWait=5
MailProg=/bin/true
InactiveLimit=0
MinJobAge=300
FirstJobId=$first_job_id
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    if all_running; then
        say "already running ($(node_state || echo 'state unknown')) under $dir"
        echo "export SLURM_CONF=$conf"
        return 0
    fi
    stop_daemons   # whatever part of an earlier cluster is left
    install_missing
    # A fresh controller state each start, but job IDs carry on from the previous cluster, so
    # a job's default output file (JOBNAME-JOBID.out, appended to) is never an old job's.
    local last_job_id name
    last_job_id=$( { cat "$dir/last-job-id" 2>/dev/null; grep -ho 'JobId=[0-9]*' "$dir/log/slurmctld.log" 2>/dev/null | cut -d= -f2; echo 0; } |
        sort -n | tail -n 1)
    rm -rf "$dir/state" "$dir/spool" "$dir/munge"
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge" "$dir/log"
    # munge checks that every parent of its socket is world-executable and its own directory
    # private to root; root-run munged refuses the default /var/lib/munge.
    chmod 755 "$dir" "$dir/munge"
    echo "$last_job_id" >"$dir/last-job-id"
    : >"$dir/log/munged.log"; : >"$dir/log/slurmctld.log"; : >"$dir/log/slurmd.log"
    rm -f "$dir"/log/*.out
    mungekey --create --keyfile "$dir/munge/munge.key" --force >/dev/null 2>&1 ||
        fail "mungekey --create failed"
    chmod 600 "$dir/munge/munge.key"
    write_config $((last_job_id + 1))

    launch munged munged --foreground --key-file "$dir/munge/munge.key" --socket "$socket" \
        --seed-file "$dir/munge/munge.seed" --log-file "$dir/log/munged.log" --pid-file "$dir/munge/munged.pid"
    local waited=0
    while [ ! -S "$socket" ]; do
        [ $waited -lt 100 ] && launched munged || { print_tails; stop_daemons; fail "munged did not start"; }
        sleep 0.05; waited=$((waited + 1))
    done
    launch slurmctld slurmctld -D -i -f "$conf"
    launch slurmd slurmd -D -N "$host" -f "$conf"

    # Bounded wait for the node to report idle (about 1 s here).
    local state="" deadline=$((SECONDS + 30))
    while [ $SECONDS -lt $deadline ]; do
        state=$(node_state || true)
        [ "$state" = "idle" ] && break
        for name in "${daemons[@]}"; do
            launched "$name" || { print_tails; stop_daemons; fail "$name exited during start-up (logs above, all under $dir/log)"; }
        done
        sleep 0.25
    done
    if [ "$state" != "idle" ]; then
        print_tails
        stop_daemons
        fail "node $host is '${state:-not reported}' after 30 s, not idle (logs above, all under $dir/log)"
    fi
    say "node $host idle: $(nproc) CPUs, partition debug; state, logs and PIDs under $dir"
    echo "export SLURM_CONF=$conf"
}

status() {
    local name pid missing=0
    for name in "${daemons[@]}"; do
        if pid=$(running_pid "$name"); then say "$name running (pid $pid)"; else say "$name not running"; missing=1; fi
    done
    if [ $missing -eq 0 ]; then
        say "node $host: $(node_state || echo 'no answer from slurmctld')"
        echo "export SLURM_CONF=$conf"
        return 0
    fi
    return 1
}

case "${1:-}" in
    start) mkdir -p "$dir"; exec 9>"$dir/lock"; flock 9; start ;;
    stop) [ -d "$dir" ] || { say "not running (no $dir)"; exit 0; }
          exec 9>"$dir/lock"; flock 9; cancel_jobs; stop_daemons; say "stopped" ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status   (state under MESHLM_SLURM_DIR, default /tmp/meshlm-slurm)" >&2; exit 2 ;;
esac
