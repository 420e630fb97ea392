#!/usr/bin/env bash
# local-slurm.sh: the one-node Slurm cluster that integration-tests/tests/pool_slurm.rs
# runs against (.ci/run starts it before the tests).
#
#   local-slurm.sh start    install Debian's packages if missing, start munged,
#                           slurmctld and slurmd (keeping ours if they are up),
#                           wait until the node takes jobs
#   local-slurm.sh stop     cancel every job, then stop the daemons this script started
#   local-slurm.sh status   one line; exit 0 if the node takes jobs
#
# What it relies on, learned on these machines (2 cores, no systemd, no cgroups):
# - Debian's slurmctld/slurmd/slurm-client/munge (Slurm 22.05) start by hand:
#   munged as the munge user, `slurmctld -c` (forget jobs of an earlier run),
#   `slurmd -N <node>`.
# - Without cgroups: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none.
# - The node line comes from `slurmd -C`; NodeAddr=127.0.0.1 keeps it on loopback.
# - slurmctld reports a node "idle" for minutes after its slurmd died, so
#   readiness also asks slurmd itself (`scontrol show slurmd`).
# - Daemons reparented to pid 1 can linger as zombies: "alive" means a /proc
#   entry whose state is not Z.
# - A node restarted after an unclean stop comes back "down": resume it once.
# - slurmctld refuses a state directory written under another ClusterName,
#   so this cluster keeps its state in directories of its own.
#
# Needs root. POOL_SLURM_WAIT_S (default 60) bounds each wait.
set -Eeuo pipefail

readonly WAIT_S=${POOL_SLURM_WAIT_S:-60}
readonly PARTITION=debug
readonly CONF=/etc/slurm/slurm.conf
readonly OURS=/run/pool-slurm           # pid files of the daemons this script started
readonly LOGS=/var/log/slurm
readonly MARK="# written by integration-tests/slurm/local-slurm.sh"

log() { printf 'local-slurm: %s\n' "$*" >&2; }
fail() { log "error: $*"; exit 1; }
trap 'fail "line $LINENO: \"$BASH_COMMAND\" failed"' ERR

node() { hostname -s 2>/dev/null || hostname; }

# shellcheck source=integration-tests/slurm/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# The pid of daemon $1 if this script started it and it still runs.
ours() {
    local pid
    pid=$(cat "$OURS/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && alive "$pid" || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$1"* ]] || return 1   # not a recycled pid
    echo "$pid"
}

# Starts daemon $1, which writes its pid to file $2, by running the rest of
# the arguments; records the pid as ours.
launch() {
    local name=$1 pidfile=$2 pid i
    shift 2
    for pid in $(pgrep -x "$name" || true); do
        if alive "$pid"; then fail "a $name this script did not start runs (pid $pid)"; fi
    done
    rm -f "$pidfile"
    "$@"
    for i in $(seq 1 100); do
        pid=$(cat "$pidfile" 2>/dev/null || true)
        if [ -n "$pid" ] && alive "$pid"; then echo "$pid" > "$OURS/$name.pid"; return 0; fi
        sleep 0.1
    done
    fail "$name did not start (see $LOGS/ and /var/log/munge/)"
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    munge_ok && return 0
    install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge /var/lib/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        head -c 1024 /dev/urandom > /etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    # --force: a socket left by an unclean stop must not keep it down.
    launch munged /run/munge/munged.pid runuser -u munge -- /usr/sbin/munged --force
    local i
    for i in $(seq 1 50); do munge_ok && return 0; sleep 0.1; done
    fail "munged runs but a credential does not round-trip"
}

# Writes slurm.conf; returns 0 if it changed.
write_conf() {
    local hw new
    hw=$(slurmd -C | head -n 1)
    [[ "$hw" == NodeName=* ]] || fail "slurmd -C printed: $hw"
    hw=$(sed "s/^NodeName=[^ ]*/NodeName=$(node)/" <<< "$hw")
    new=$(cat <<EOF
$MARK
ClusterName=poolci
SlurmctldHost=$(node)(127.0.0.1)
$(common_conf)
StateSaveLocation=/var/lib/pool-slurm/slurmctld
SlurmdSpoolDir=/var/lib/pool-slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
$hw NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$(node) Default=YES MaxTime=INFINITE State=UP
EOF
)
    [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$new" ] && return 1
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        log "keeping the existing $CONF as $CONF.before-pool-slurm"
        cp -p "$CONF" "$CONF.before-pool-slurm"
    fi
    install -d -m 0755 /etc/slurm
    printf '%s\n' "$new" > "$CONF"
}

state() { sinfo --noheader --nodes="$(node)" --format=%T 2>/dev/null | head -n 1 || true; }

takes_jobs() {
    scontrol show slurmd >/dev/null 2>&1 || return 1
    case "$(state)" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

stop_daemon() {
    local pid i
    pid=$(ours "$1") || { rm -f "$OURS/$1.pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$OURS/$1.pid"
    log "stopped $1 (pid $pid)"
}

start() {
    local began=$SECONDS resumed=0 deadline
    mkdir -p "$OURS"
    install_packages
    start_munge
    if write_conf; then
        stop_daemon slurmd
        stop_daemon slurmctld
    fi
    install -d -m 0755 /var/lib/pool-slurm/slurmctld /var/lib/pool-slurm/slurmd "$LOGS"
    ours slurmctld >/dev/null || launch slurmctld /run/slurmctld.pid slurmctld -c
    ours slurmd >/dev/null || launch slurmd /run/slurmd.pid slurmd -N "$(node)"
    deadline=$((SECONDS + WAIT_S))
    until takes_jobs; do
        case "$(state)" in
            down*|drain*)
                [ "$resumed" = 1 ] || scontrol update NodeName="$(node)" State=RESUME >/dev/null 2>&1 || true
                resumed=1 ;;
        esac
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 5 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
            fail "the node does not take jobs after ${WAIT_S}s (state: $(state))"
        fi
        sleep 0.2
    done
    log "ready in $((SECONDS - began)) s"
    status
}

stop() {
    if ours slurmctld >/dev/null; then
        local jobs i
        jobs=$(squeue --noheader --format=%i 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for i in $(seq 1 50); do
                [ -z "$(squeue --noheader --format=%i 2>/dev/null)" ] && break
                sleep 0.2
            done
        fi
    fi
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
}

status() {
    printf 'local-slurm: %s, node %s %s, partition %s, daemons munged=%s slurmctld=%s slurmd=%s\n' \
        "$(sinfo -V 2>/dev/null || echo 'no Slurm')" "$(node)" "$(state)" "$PARTITION" \
        "$(ours munged || echo -)" "$(ours slurmctld || echo -)" "$(ours slurmd || echo -)"
}

[ "$(id -u)" = 0 ] || fail "must run as root"
case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) status; if takes_jobs; then exit 0; fi; exit 1 ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
