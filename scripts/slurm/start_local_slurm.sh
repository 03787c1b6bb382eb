#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, for the `slurm` tests and for trying
# `gnnddm train -m hydra/launcher=slurm ...` without a real cluster.
#
# Idempotent: installs Debian's slurm-wlm and munge if missing, writes /etc/slurm/slurm.conf for the
# local host, starts munged, slurmctld and slurmd as plain daemons (no systemd, no cgroups), and waits
# until the node reports `idle`. Needs root on Debian/Ubuntu. Listens on the loopback address only.
#
# Environment:
#   LOCAL_SLURM_TIMEOUT        seconds to wait for the node to become idle (default 60)
#   LOCAL_SLURM_CPUS           CPUs the node offers (default `nproc`, at least 2 so that the 2-task
#                              test jobs fit)
#   LOCAL_SLURM_MEM_MARGIN_MB  memory left out of RealMemory for the system (default 1024)
#   LOCAL_SLURM_RESTART=1      restart slurmctld and slurmd even if they run with the same slurm.conf
set -euo pipefail

TIMEOUT="${LOCAL_SLURM_TIMEOUT:-60}"
MARGIN_MB="${LOCAL_SLURM_MEM_MARGIN_MB:-1024}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
LOG_DIR=/var/log/slurm
SPOOL=/var/spool/slurm

say() { echo "[start_local_slurm] $*"; }

fail() {
    say "ERROR: $*" >&2
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
        if [[ -f "$f" ]]; then
            echo "----- tail of $f -----" >&2
            tail -n 25 "$f" >&2
        fi
    done
    exit 1
}

[[ "$(id -u)" == 0 ]] || fail "must run as root (it installs packages and starts system daemons)"

# --- 1. packages -------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sinfo >/dev/null \
        || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # Without systemd, the packages' maintainer scripts would try to start the daemons through
    # invoke-rc.d before slurm.conf exists; a temporary policy-rc.d defers that to this script.
    POLICY=/usr/sbin/policy-rc.d
    if [[ ! -e "$POLICY" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY"
        chmod +x "$POLICY"
        trap 'rm -f "$POLICY"' EXIT
    fi
    apt_install() {
        apt-get install -y -q --no-install-recommends slurm-wlm munge >/tmp/slurm-apt.log 2>&1
    }
    if ! apt_install; then
        say "install failed without a package index refresh; running apt-get update"
        apt-get update -q >>/tmp/slurm-apt.log 2>&1 || { tail -n 20 /tmp/slurm-apt.log >&2; fail "apt-get update failed"; }
        apt_install || { tail -n 20 /tmp/slurm-apt.log >&2; fail "apt-get install slurm-wlm munge failed"; }
    fi
    if [[ -n "$(trap -p EXIT)" ]]; then rm -f "$POLICY"; trap - EXIT; fi
fi

# --- 2. munge ----------------------------------------------------------------------------------
MUNGE_USER=munge
id "$MUNGE_USER" >/dev/null 2>&1 || MUNGE_USER=root
install -d -m 0700 -o "$MUNGE_USER" /etc/munge /var/lib/munge /var/log/munge
install -d -m 0755 -o "$MUNGE_USER" /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating /etc/munge/munge.key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown "$MUNGE_USER" /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    rm -f /run/munge/munged.pid
    if [[ "$MUNGE_USER" == root ]]; then
        munged --force
    else
        runuser -u "$MUNGE_USER" -- munged --force
    fi
    for _ in $(seq 1 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
    munge -n | unmunge >/dev/null 2>&1 || fail "munged does not answer (munge -n | unmunge)"
fi

# --- 3. slurm.conf -----------------------------------------------------------------------------
HOST="$(hostname -s)"
CPUS="${LOCAL_SLURM_CPUS:-$(nproc)}"
if (( CPUS < 2 )); then
    say "offering 2 CPUs on this ${CPUS}-CPU machine so that 2-task jobs fit (tasks share the core)"
    CPUS=2
fi
# Jobs reach their first host by name (MASTER_ADDR); make sure this one resolves.
if ! getent hosts "$HOST" >/dev/null; then
    say "adding '127.0.0.1 $HOST' to /etc/hosts (the host name did not resolve)"
    echo "127.0.0.1 $HOST" >>/etc/hosts
fi
TOTAL_MB="$(free -m | awk '/^Mem:/ {print $2}')"
MEM_MB=$(( TOTAL_MB > MARGIN_MB + 512 ? TOTAL_MB - MARGIN_MB : TOTAL_MB / 2 ))

write_conf() {
    cat <<CONF
# One-node SLURM cluster on the loopback address, written by scripts/slurm/start_local_slurm.sh.
ClusterName=gnnddm-local
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits the credential lifetime before it starts again (default 120 s); 10 s keeps the
# requeue test short and still leaves a loaded 2-core machine time to launch a job step.
AuthInfo=cred_expire=10
MpiDefault=none
# No systemd and no delegated cgroup v2 in containers: track processes by parent id, bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# CPUs are the consumable resource: a 2-task job of 1 CPU per task takes 2 cores, and a job that does
# not fit the free cores waits in the queue instead of oversubscribing the node.
SchedulerType=sched/backfill
# The backfill pass starts a requeued job once its begin time has passed: every 5 s rather than 30 s.
SchedulerParameters=bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Trust the CPU and memory figures below rather than the detected hardware (containers misreport it).
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=${SPOOL}/ctld
SlurmdSpoolDir=${SPOOL}/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
KillWait=5
MinJobAge=300
SlurmdTimeout=60
InactiveLimit=0
NodeName=${HOST} NodeAddr=127.0.0.1 NodeHostname=${HOST} CPUs=${CPUS} Boards=1 SocketsPerBoard=1 CoresPerSocket=${CPUS} ThreadsPerCore=1 RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
CONF
}

install -d -m 0755 "$CONF_DIR" "$LOG_DIR" "$SPOOL/ctld" "$SPOOL/d"
NEW_CONF="$(write_conf)"
CONF_CHANGED=0
if [[ ! -f "$CONF" ]] || [[ "$(cat "$CONF")" != "$NEW_CONF" ]]; then
    say "writing $CONF (node $HOST, $CPUS CPUs, ${MEM_MB} MB)"
    printf '%s\n' "$NEW_CONF" >"$CONF"
    CONF_CHANGED=1
fi

# --- 4. daemons --------------------------------------------------------------------------------
running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [[ "$CONF_CHANGED" == 1 || "${LOCAL_SLURM_RESTART:-0}" == 1 ]]; then
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        if running "$pidfile"; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
            for _ in $(seq 1 20); do running "$pidfile" || break; sleep 0.5; done
        fi
    done
fi

if ! running /run/slurmctld.pid; then
    say "starting slurmctld"
    # -c: clean start, so that a stale state from an earlier configuration never drains the node.
    slurmctld -c || fail "slurmctld did not start"
fi
if ! running /run/slurmd.pid; then
    say "starting slurmd"
    slurmd -N "$HOST" || fail "slurmd did not start"
fi

# --- 5. wait for the node ------------------------------------------------------------------------
deadline=$(( $(date +%s) + TIMEOUT ))
state=""
while (( $(date +%s) < deadline )); do
    state="$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)"
    case "$state" in
        idle|mixed|allocated) break ;;
        down*|drain*|drained*)
            # A node that was down before this start: bring it back (ReturnToService covers new ones).
            scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
case "$state" in
    idle|mixed|allocated) say "SLURM is up: node $HOST is $state (partition debug, $CPUS CPUs)" ;;
    *) fail "node $HOST not idle after ${TIMEOUT}s (sinfo state: '${state:-none}')" ;;
esac
