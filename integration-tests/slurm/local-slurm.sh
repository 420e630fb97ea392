#!/usr/bin/env bash
# local-slurm.sh: a real single-node Slurm cluster on this machine, for the
# Slurm tests of integration-tests (tests/pool_slurm.rs) and .ci/run.
#
#   local-slurm.sh [start]   install if missing, start munged/slurmctld/slurmd
#                                  (or keep them if already up and idle), wait until
#                                  the node is idle, print a one-line summary
#   local-slurm.sh restart   stop what this script started, then start afresh
#   local-slurm.sh stop      cancel the cluster's jobs, then end only the
#                                  daemons this script started (by its pid files)
#   local-slurm.sh status    one line; exit 0 if slurmd answers and the node is
#                                  idle/mixed/allocated/completing
#
# Needs root and Debian/Ubuntu packages (slurmctld, slurmd, slurm-client, munge).
# Works without systemd and without cgroups (proctrack/linuxproc, task/none).
# Writes /etc/slurm/slurm.conf (a hand-written one is copied aside first); each
# fresh slurmctld start uses -c, so jobs from an earlier run are forgotten.
# Environment: LOCAL_SLURM_WAIT_S (default 60) bounds the wait for the node;
# LOCAL_SLURM_PARTITION (default "debug") names the one partition.
set -euo pipefail

WAIT_S=${LOCAL_SLURM_WAIT_S:-60}
PARTITION=${LOCAL_SLURM_PARTITION:-debug}
CONF=/etc/slurm/slurm.conf
MARK="# written by integration-tests/slurm/local-slurm.sh"
STATE_DIR=/run/local-slurm                # pid files of the daemons this script started
CTLD_PID=/run/slurmctld.pid               # written by slurmctld itself
SLURMD_PID=/run/slurmd.pid                # written by slurmd itself
MUNGED_PID=/run/munge/munged.pid          # written by munged itself
LOG_DIR=/var/log/slurm

say() { printf 'local-slurm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

node_name() { hostname -s 2>/dev/null || hostname; }

# true if pid $1 exists and is not a zombie (daemons here are reparented to
# pid 1, which may reap them late)
alive() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st%% *}
    [ -n "$st" ] && [ "$st" != Z ]
}

# true if a live process named exactly $1 exists
any_alive() {
    local p
    for p in $(pgrep -x "$1" 2>/dev/null || true); do alive "$p" && return 0; done
    return 1
}

# pid recorded by this script for daemon $1, if that process is still alive and
# is the same program (guards against a recycled pid).
our_pid() {
    local name=$1 f="$STATE_DIR/$1.pid" pid comm
    [ -f "$f" ] || return 1
    pid=$(cat "$f" 2>/dev/null) || return 1
    [ -n "$pid" ] && alive "$pid" || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    case "$comm" in "$name"*) echo "$pid" ;; *) return 1 ;; esac
}

# Wait (bounded) until the pid file $1 names a live process; print the pid.
wait_pidfile() {
    local f=$1 i pid
    for i in $(seq 1 100); do
        if [ -s "$f" ]; then
            pid=$(cat "$f")
            if [ -n "$pid" ] && alive "$pid"; then echo "$pid"; return 0; fi
        fi
        sleep 0.1
    done
    return 1
}

kill_pid() {   # TERM, wait up to 10 s, then KILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        alive "$pid" || return 0
        sleep 0.1
    done
    say "pid $pid did not end on SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

install_if_missing() {
    local missing=0 c
    for c in slurmctld slurmd srun sinfo munged munge; do
        command -v "$c" >/dev/null 2>&1 || missing=1
    done
    [ "$missing" = 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "slurm/munge missing and no apt-get"
    say "installing slurmctld slurmd slurm-client munge"
    # policy-rc.d may deny service starts in containers; we start daemons ourselves.
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munged() {
    if munge_works; then return 0; fi
    if [ ! -s /etc/munge/munge.key ]; then
        say "creating /etc/munge/munge.key"
        install -d -o munge -g munge -m 0700 /etc/munge
        if command -v mungekey >/dev/null 2>&1; then
            runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    rm -f "$MUNGED_PID"
    # --force: start even if a stale socket from an unclean stop is left behind.
    runuser -u munge -- /usr/sbin/munged --force
    local pid
    pid=$(wait_pidfile "$MUNGED_PID") || die "munged did not start (see /var/log/munge/munged.log)"
    echo "$pid" > "$STATE_DIR/munged.pid"
    local i
    for i in $(seq 1 50); do munge_works && return 0; sleep 0.1; done
    die "munged started (pid $pid) but munge -n | unmunge fails"
}

write_conf() {
    local name node_line tmp
    name=$(node_name)
    # slurmd -C prints the real hardware: "NodeName=... CPUs=... RealMemory=..."
    node_line=$(slurmd -C | head -n 1)
    case "$node_line" in NodeName=*) ;; *) die "slurmd -C printed: $node_line" ;; esac
    node_line=$(printf '%s\n' "$node_line" | sed "s/^NodeName=[^ ]*/NodeName=$name/")
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        say "keeping a copy of the existing $CONF as $CONF.orig.$$"
        cp -p "$CONF" "$CONF.orig.$$"
    fi
    tmp=$(mktemp)
    cat > "$tmp" <<EOF
$MARK: one node, no cgroups, no accounting
ClusterName=localci
SlurmctldHost=$name(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$name Default=YES MaxTime=INFINITE State=UP
EOF
    install -d -m 0755 /etc/slurm
    if [ -f "$CONF" ] && cmp -s "$tmp" "$CONF"; then rm -f "$tmp"; return 1; fi
    install -m 0644 "$tmp" "$CONF"
    rm -f "$tmp"
    return 0   # changed
}

node_state() { sinfo -h -n "$(node_name)" -o '%T' 2>/dev/null | head -n 1 || true; }

# slurmctld keeps showing a node idle for minutes after its slurmd died, so
# also ask the local slurmd itself.
slurmd_answers() { scontrol show slurmd >/dev/null 2>&1; }

node_ready() {
    slurmd_answers || return 1
    case "$(node_state)" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

start_slurm() {
    local pid
    install -d -m 0755 /var/lib/slurm/slurmctld /var/lib/slurm/slurmd "$LOG_DIR"
    if [ -z "$(our_pid slurmctld)" ]; then
        any_alive slurmctld && die "a slurmctld not started by this script is running"
        rm -f "$CTLD_PID"
        # -c: start with no jobs left over from an earlier run
        slurmctld -c
        pid=$(wait_pidfile "$CTLD_PID") || die "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
        echo "$pid" > "$STATE_DIR/slurmctld.pid"
    fi
    if [ -z "$(our_pid slurmd)" ]; then
        any_alive slurmd && die "a slurmd not started by this script is running"
        rm -f "$SLURMD_PID"
        slurmd -N "$(node_name)"
        pid=$(wait_pidfile "$SLURMD_PID") || die "slurmd did not start (see $LOG_DIR/slurmd.log)"
        echo "$pid" > "$STATE_DIR/slurmd.pid"
    fi
}

wait_ready() {
    local deadline=$((SECONDS + WAIT_S)) resumed=0 st
    while :; do
        st=$(node_state)
        case "$st" in
            idle|mixed|allocated|completing) slurmd_answers && return 0 ;;
            down*|drain*|drained*)
                if [ "$resumed" = 0 ]; then
                    scontrol update NodeName="$(node_name)" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi ;;
        esac
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "node not ready after ${WAIT_S}s (state: ${st:-unknown}); last log lines:"
            tail -n 5 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

summary() {
    local ver cpus
    ver=$(sinfo -V 2>/dev/null || echo 'slurm ?')
    cpus=$(sinfo -h -n "$(node_name)" -o '%c' 2>/dev/null | head -n 1 || true)
    printf 'local-slurm: %s, node %s (%s cpus) %s, partition %s, pids munged=%s slurmctld=%s slurmd=%s\n' \
        "$ver" "$(node_name)" "${cpus:-?}" "$(node_state)" "$PARTITION" \
        "$(our_pid munged || { munge_works && echo external; } || echo -)" "$(our_pid slurmctld || echo -)" "$(our_pid slurmd || echo -)"
}

do_stop() {
    local any=0 pid ids
    if [ -n "$(our_pid slurmctld)" ]; then
        ids=$(squeue -h -o '%i' 2>/dev/null || true)
        if [ -n "$ids" ]; then
            say "cancelling jobs:" $ids
            # shellcheck disable=SC2086
            scancel $ids 2>/dev/null || true
            local i
            for i in $(seq 1 50); do
                [ -z "$(squeue -h -o '%i' 2>/dev/null)" ] && break
                sleep 0.2
            done
        fi
    fi
    for d in slurmd slurmctld munged; do
        if pid=$(our_pid "$d"); then
            kill_pid "$pid"; any=1
            say "stopped $d (pid $pid)"
        fi
        rm -f "$STATE_DIR/$d.pid"
    done
    [ "$any" = 1 ] || say "nothing to stop"
}

do_start() {
    local t0=$SECONDS changed=0
    mkdir -p "$STATE_DIR"
    install_if_missing
    write_conf && changed=1
    start_munged
    if [ "$changed" = 1 ] && { [ -n "$(our_pid slurmctld)" ] || [ -n "$(our_pid slurmd)" ]; }; then
        say "configuration changed: restarting slurm daemons"
        for d in slurmd slurmctld; do
            if pid=$(our_pid "$d"); then kill_pid "$pid"; fi
            rm -f "$STATE_DIR/$d.pid"
        done
    fi
    start_slurm
    wait_ready || exit 1
    say "ready after $((SECONDS - t0))s"
    summary
}

case "${1:-start}" in
    start)   do_start ;;
    restart) do_stop; do_start ;;
    stop)    do_stop ;;
    status)  if node_ready; then summary; else summary; exit 1; fi ;;
    *)       echo "usage: $0 [start|restart|stop|status]" >&2; exit 2 ;;
esac
