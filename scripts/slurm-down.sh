#!/usr/bin/env bash
# Stop the one-node SLURM cluster that scripts/slurm-up.sh started: slurmd, slurmctld, then
# munged, each by the pid file in the state directory, never by name. Jobs still running are
# killed with their slurmd. The state directory (config, logs, jobcomp record) is kept for
# inspection; `rm -rf .slurm` removes it. Does nothing when nothing runs.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${BAMSTORE_SLURM_DIR:-$REPO/.slurm}"
WAIT_SECONDS=30

stop() {  # stop NAME PIDFILE: TERM the process the pid file names, wait, then KILL
    local name="$1" pidfile="$2" pid
    [[ -s "$pidfile" ]] || return 0
    pid="$(cat "$pidfile")"
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pidfile"
        return 0
    fi
    # the pid file may be stale and the pid reused: only stop the daemon it was written for
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]]; then
        echo "slurm-down: $pidfile names pid $pid, which is not $name; left alone" >&2
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid"
    for (( i = 0; i < WAIT_SECONDS * 10; i++ )); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "slurm-down: $name (pid $pid) did not stop in ${WAIT_SECONDS}s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    echo "slurm-down: stopped $name (pid $pid)"
}

# Cancel this cluster's jobs first: a job's slurmstepd outlives slurmd, so stopping the daemons
# alone would leave job processes behind.
CONF="$STATE/etc/slurm.conf"
if [[ -s "$STATE/run/slurmctld.pid" ]] && kill -0 "$(cat "$STATE/run/slurmctld.pid")" 2>/dev/null; then
    export SLURM_CONF="$CONF"
    if [[ -n "$(squeue --noheader --format %i 2>/dev/null)" ]]; then
        scancel --full --partition "${BAMSTORE_SLURM_PARTITION:-local}" 2>/dev/null || true
        for (( i = 0; i < WAIT_SECONDS; i++ )); do
            [[ -z "$(squeue --noheader --format %i 2>/dev/null)" ]] && break
            sleep 1
        done
        echo "slurm-down: cancelled the jobs still queued or running"
    fi
fi

stop slurmd "$STATE/run/slurmd.pid"
stop slurmctld "$STATE/run/slurmctld.pid"
stop munged "$STATE/munge/munged.pid"
