#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, for the pipeline's SLURM tests and CI.
#
#   scripts/slurm-up.sh            # or: make slurm-up
#   export SLURM_CONF="$(scripts/slurm-up.sh --conf)"   # then sinfo, sbatch, nextflow -profile slurm
#   scripts/slurm-up.sh --check    # exit 0 when the cluster is up and healthy, 1 otherwise
#   scripts/slurm-down.sh          # or: make slurm-down
#
# Guarantees:
# - Nothing outside the state directory is touched: its own munge key, munged socket and pid
#   file, slurm.conf, spool, logs and pid files all live in $BAMSTORE_SLURM_DIR (default
#   <repo>/.slurm, git-ignored). The host's /etc/munge and /etc/slurm are neither read nor
#   written, and a munged or SLURM already running on the host is left alone (pick other ports
#   with BAMSTORE_SLURM_CTLD_PORT / BAMSTORE_SLURM_SLURMD_PORT if it uses the default ones).
#   SLURM's clients find this cluster through SLURM_CONF, which is why callers export it.
# - Host facts are read at run time: the node is `hostname -s` with `nproc` CPUs and
#   RealMemory 90 % of MemTotal (slurmd drains a node that has less memory than configured).
# - Idempotent: when munged, slurmctld and slurmd from an earlier run are alive and the node is
#   up, it prints the config path and does nothing else. A daemon that died is started again.
# - `slurm-down.sh` stops exactly the processes named by the pid files written here.
#
# The cluster: SlurmUser/SlurmdUser root, auth/munge, proctrack/linuxproc, task/none (no cgroup:
# memory requests are scheduled, not enforced), select/cons_tres with CR_Core_Memory, no
# accounting daemon (jobacct_gather/none, so `sacct` does not work: use `scontrol show job`
# while the job is remembered, MinJobAge below, or the jobcomp/filetxt record of every finished
# job in <state>/log/jobcomp.log, which has its memory request and array ids).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${BAMSTORE_SLURM_DIR:-$REPO/.slurm}"
CTLD_PORT="${BAMSTORE_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${BAMSTORE_SLURM_SLURMD_PORT:-6818}"
PARTITION="${BAMSTORE_SLURM_PARTITION:-local}"
# Nextflow's `array` directive submits `--array 0-(n-1)`: n must stay below MaxArraySize.
MAX_ARRAY_SIZE=10001
WAIT_SECONDS=60

CONF="$STATE/etc/slurm.conf"
MUNGE_DIR="$STATE/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
MUNGED_PID="$MUNGE_DIR/munged.pid"
CTLD_PID="$STATE/run/slurmctld.pid"
SLURMD_PID="$STATE/run/slurmd.pid"

die() { echo "slurm-up: $*" >&2; exit 1; }

alive() {  # alive PIDFILE: the pid file names a running process
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_state() {  # the node's state as sinfo reports it (idle, mixed, alloc, down*, ...)
    SLURM_CONF="$CONF" sinfo --noheader --Node --partition "$PARTITION" --format '%T' \
        2>/dev/null | head -n 1
}

healthy() {
    alive "$MUNGED_PID" && alive "$CTLD_PID" && alive "$SLURMD_PID" \
        && [[ "$(node_state)" =~ ^(idle|mixed|allocated|completing)$ ]]
}

case "${1:-}" in
    --conf) echo "$CONF"; exit 0 ;;
    --check) healthy; exit ;;
    "") ;;
    *) die "unknown option '$1' (options: --conf, --check)" ;;
esac

if healthy; then
    echo "slurm-up: already running (node $(node_state)); SLURM_CONF=$CONF"
    exit 0
fi

[[ "$(id -u)" -eq 0 ]] || die "needs root: slurmd starts jobs as their users and munged runs as the munge user"
for tool in munged slurmctld slurmd sinfo scontrol; do
    command -v "$tool" >/dev/null || die "'$tool' not found: apt-get install slurm-wlm munge"
done
getent passwd munge >/dev/null || die "no 'munge' user: apt-get install munge"
# a unix socket path is limited to 107 bytes
(( ${#MUNGE_SOCKET} < 100 )) || die "state directory path too long for a socket: set BAMSTORE_SLURM_DIR to a shorter path"

mkdir -p "$STATE"/{etc,run,log,spool/slurmctld,spool/slurmd}

# ---- munge: a private key and daemon, reachable only through the socket in the state dir ----
if ! alive "$MUNGED_PID"; then
    mkdir -p "$MUNGE_DIR"
    chown munge:munge "$MUNGE_DIR"
    chmod 755 "$MUNGE_DIR"   # munged wants its socket directory reachable by every user
    if [[ ! -s "$MUNGE_DIR/munge.key" ]]; then
        (umask 077 && dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none)
    fi
    chown munge:munge "$MUNGE_DIR/munge.key"
    chmod 400 "$MUNGE_DIR/munge.key"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$MUNGED_PID"
    su -s /bin/sh munge -c "exec /usr/sbin/munged \
        --socket='$MUNGE_SOCKET' --key-file='$MUNGE_DIR/munge.key' \
        --pid-file='$MUNGED_PID' --log-file='$MUNGE_DIR/munged.log' \
        --seed-file='$MUNGE_DIR/munged.seed'" \
        || die "munged did not start: see $MUNGE_DIR/munged.log"
fi

# ---- slurm.conf, from this machine's facts (rewritten only while no SLURM daemon runs) ----
if ! alive "$CTLD_PID" && ! alive "$SLURMD_PID"; then
    NODE="$(hostname -s)"
    CPUS="$(nproc)"
    MEM_TOTAL_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
    REAL_MEMORY_MB=$(( MEM_TOTAL_MB * 9 / 10 ))
    cat > "$CONF" <<EOF
# Written by scripts/slurm-up.sh for this machine; regenerated on the next start.
ClusterName=bamstore
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.log
MpiDefault=none
ReturnToService=2
MaxArraySize=$MAX_ARRAY_SIZE
# finished jobs stay visible to 'scontrol show job' for this long (seconds)
MinJobAge=3600
# jobs that give no --mem get a share of the node, so several can run at once
DefMemPerCPU=$(( REAL_MEMORY_MB / CPUS ))
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
PlugStackConfig=$STATE/etc/plugstack.conf
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEMORY_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    : > "$STATE/etc/plugstack.conf"
fi

export SLURM_CONF="$CONF"
if ! alive "$CTLD_PID"; then
    rm -f "$CTLD_PID"
    slurmctld -f "$CONF" || die "slurmctld did not start: see $STATE/log/slurmctld.log"
fi
if ! alive "$SLURMD_PID"; then
    rm -f "$SLURMD_PID"
    slurmd -f "$CONF" || die "slurmd did not start: see $STATE/log/slurmd.log"
fi

# ---- wait for the node to be idle (or busy with jobs of an earlier session) ----
for (( waited = 0; waited < WAIT_SECONDS; waited++ )); do
    state="$(node_state)"
    if [[ "$state" =~ ^(idle|mixed|allocated|completing)$ ]] \
        && alive "$MUNGED_PID" && alive "$CTLD_PID" && alive "$SLURMD_PID"; then
        echo "slurm-up: node $(hostname -s) $state after ${waited}s; SLURM_CONF=$CONF"
        exit 0
    fi
    if [[ "$state" == down* || "$state" == drain* ]] && (( waited == 5 )); then
        # a node left DOWN by an earlier session's state: registered again, so resume it
        scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true
    fi
    sleep 1
done
echo "slurm-up: the node did not become idle within ${WAIT_SECONDS}s (state: '${state:-none}')" >&2
echo "--- $STATE/log/slurmctld.log" >&2; tail -n 20 "$STATE/log/slurmctld.log" >&2 || true
echo "--- $STATE/log/slurmd.log" >&2; tail -n 20 "$STATE/log/slurmd.log" >&2 || true
exit 1
