#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by scripts/slurm/start_local_slurm.sh (slurmd, slurmctld,
# munged). Leaves the packages, the configuration and the logs in place; safe to run when nothing runs.
set -uo pipefail

say() { echo "[stop_local_slurm] $*"; }

stop_pidfile() {
    local name="$1" pidfile="$2" pid
    [[ -f "$pidfile" ]] || { say "$name not running"; return 0; }
    pid="$(cat "$pidfile")"
    if ! kill -0 "$pid" 2>/dev/null; then
        say "$name not running (stale $pidfile)"
        rm -f "$pidfile"
        return 0
    fi
    kill "$pid"
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || { say "stopped $name (pid $pid)"; rm -f "$pidfile"; return 0; }
        sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    say "killed $name (pid $pid) after 15 s"
}

stop_pidfile slurmd /run/slurmd.pid
stop_pidfile slurmctld /run/slurmctld.pid
stop_pidfile munged /run/munge/munged.pid
