#!/usr/bin/env bash
# multi-node-slurm.sh: the three-node Slurm cluster that
# integration-tests/tests/pool_slurm_multinode.rs runs against (.ci/run starts
# it before the tests): Slurm 22.05 on one machine, one network namespace (and
# one UTS namespace, so `hostname` differs) per host.
#
#   multi-node-slurm.sh start            install Debian's packages if missing; build the
#                                        namespaces and the bridge, start munged, slurmctld
#                                        and 3 slurmd; wait until node[1-3] take jobs
#                                        (keeps what already runs)
#   multi-node-slurm.sh stop             cancel the jobs, stop our daemons (by pid file), end
#                                        what is left in our namespaces, delete them
#   multi-node-slurm.sh status           one line per host; exit 0 if all 3 nodes take jobs
#   multi-node-slurm.sh on HOST CMD...   run CMD "on" HOST (head, node1..node3): exec'd in its
#                                        network and UTS namespaces with SLURM_CONF set, so
#                                        the caller's child is CMD itself (like ssh HOST CMD)
#   multi-node-slurm.sh partition NODE   cut NODE off the switch (its switch-side veth down)
#   multi-node-slurm.sh heal NODE        plug it back in, and restart its slurmd (its job
#                                        steps go on) so that it registers at once rather
#                                        than at slurmctld's next ping (SlurmdTimeout/3 later)
#   multi-node-slurm.sh pids HOST        the processes living in HOST's network namespace
#
# Layout (all in 10.213.0.0/24; every link lives inside the cluster's own
# namespaces, so two clusters with different prefixes can use the same
# addresses side by side; nothing in the root namespace but munged, which
# only has a Unix socket):
#
#   netns PREFIX-head  (UTS "head")  br0 10.213.0.1/24  slurmctld :6817, the pool's head,
#                                                        sinfo/sbatch/srun
#     br0 ports sw-node1..sw-node3  <-veth->  eth0 in netns PREFIX-nodeN
#   netns PREFIX-nodeN (UTS "nodeN") eth0 10.213.0.1N/24  slurmd :6818
#
# What it relies on, learned on these machines (2 cores, no systemd, no
# cgroups), beside what local-slurm.sh says:
# - Every file lives under the state directory (config, munge key and socket,
#   Slurm state and spool, logs, pid files): /etc/slurm and /etc/munge are
#   not touched, so the one-node cluster of local-slurm.sh runs beside it.
# - The daemons run under symlinked names (PREFIX-munged, PREFIX-slurmctld,
#   PREFIX-slurmd) so that pid files and `pgrep -x slurmd` guards tell ours
#   from local-slurm.sh's and from another cluster's.
# - Each node says CPUs=2 although all three share this machine's cores.
# - The nodes resolve no host name: workers must be told the head's address.
#
# Needs root. Environment:
#   POOL_MULTINODE_PREFIX  namespace and daemon name prefix, 1-5 of [a-z0-9]
#                          (default pmn); another prefix is another cluster
#   POOL_MULTINODE_DIR     state directory (default /tmp/pool-multinode-PREFIX)
#   POOL_MULTINODE_SLURMD_TIMEOUT  Slurm's SlurmdTimeout (default 300, Slurm's)
#   POOL_MULTINODE_WAIT_S  bounds the wait for the nodes (default 60)
set -Eeuo pipefail

readonly P=${POOL_MULTINODE_PREFIX:-pmn}
[[ "$P" =~ ^[a-z0-9]{1,5}$ ]] || { echo "cluster: POOL_MULTINODE_PREFIX must be 1-5 of [a-z0-9], not '$P'" >&2; exit 2; }
readonly BASE=${POOL_MULTINODE_DIR:-/tmp/pool-multinode-$P}
readonly NODES=(node1 node2 node3)
readonly HEAD_IP=10.213.0.1
readonly CONF=$BASE/etc/slurm.conf
readonly MUNGE_DIR=$BASE/munge
readonly SOCKET=$MUNGE_DIR/munge.socket
readonly WAIT_S=${POOL_MULTINODE_WAIT_S:-60}
readonly SLURMD_TIMEOUT=${POOL_MULTINODE_SLURMD_TIMEOUT:-300}
export SLURM_CONF=$CONF

log() { printf 'multi-node-slurm(%s): %s\n' "$P" "$*" >&2; }
fail() { log "error: $*"; exit 1; }

node_ip() { echo "10.213.0.$((10 + ${1#node}))"; }
netns() { echo "$P-$1"; }
uts_file() { echo "$BASE/ns/$1.uts"; }

# shellcheck source=integration-tests/slurm/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
readonly TOOLS="nsenter unshare ip"

# pid in pid file $1 if alive and its comm is $2
pid_of() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && alive "$pid" || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
    echo "$pid"
}

kill_pid() {   # TERM, wait up to 10 s, then KILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do alive "$pid" || return 0; sleep 0.1; done
    log "pid $pid did not end on SIGTERM; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

# Run "on" host $1: its network and UTS namespaces.
on() {
    local host=$1; shift
    [ -e "/run/netns/$(netns "$host")" ] || fail "no host $host (is the cluster started?)"
    nsenter --net="/run/netns/$(netns "$host")" --uts="$(uts_file "$host")" -- "$@"
}

# The command line's `on`: the caller's child becomes CMD itself, so that
# signals sent to it reach CMD.
exec_on() {
    local host=$1; shift
    [ -e "/run/netns/$(netns "$host")" ] || fail "no host $host (is the cluster started?)"
    exec nsenter --net="/run/netns/$(netns "$host")" --uts="$(uts_file "$host")" -- "$@"
}

ns_exists() { [ -e "/run/netns/$1" ]; }

make_host() {   # netns + persistent UTS namespace with hostname $1
    local host=$1 ns
    ns=$(netns "$host")
    ns_exists "$ns" || ip netns add "$ns"
    ip -n "$ns" link set lo up
    if ! findmnt -n "$(uts_file "$host")" >/dev/null 2>&1; then
        touch "$(uts_file "$host")"
        unshare --uts="$(uts_file "$host")" hostname "$host"
    fi
}

build_network() {
    mkdir -p "$BASE/ns"
    make_host head
    local hns n nns
    hns=$(netns head)
    ip -n "$hns" link show br0 >/dev/null 2>&1 || ip -n "$hns" link add br0 type bridge
    ip -n "$hns" addr replace "$HEAD_IP/24" dev br0
    ip -n "$hns" link set br0 up
    for n in "${NODES[@]}"; do
        make_host "$n"
        nns=$(netns "$n")
        if ! ip -n "$hns" link show "sw-$n" >/dev/null 2>&1; then
            ip -n "$hns" link add "sw-$n" type veth peer name eth0 netns "$nns"
        fi
        ip -n "$hns" link set "sw-$n" master br0 up
        ip -n "$nns" addr replace "$(node_ip "$n")/24" dev eth0
        ip -n "$nns" link set eth0 up
    done
}

remove_network() {
    local host ns f
    for host in "${NODES[@]}" head; do
        ns=$(netns "$host")
        ns_exists "$ns" && ip netns del "$ns" && log "deleted netns $ns"
        f=$(uts_file "$host")
        if findmnt -n "$f" >/dev/null 2>&1; then umount "$f"; fi
        rm -f "$f"
    done
    return 0
}

link_daemons() {
    mkdir -p "$BASE/bin"
    ln -sfn /usr/sbin/munged "$BASE/bin/$P-munged"
    ln -sfn /usr/sbin/slurmctld "$BASE/bin/$P-slurmctld"
    ln -sfn /usr/sbin/slurmd "$BASE/bin/$P-slurmd"
}

munge_ok() {
    munge --socket="$SOCKET" -n 2>/dev/null | unmunge --socket="$SOCKET" >/dev/null 2>&1
}

start_munge() {
    pid_of "$MUNGE_DIR/munged.pid" "$P-munged" >/dev/null && munge_ok && return 0
    install -d -o munge -g munge -m 0700 "$MUNGE_DIR"
    if [ ! -s "$MUNGE_DIR/munge.key" ]; then
        head -c 1024 /dev/urandom > "$MUNGE_DIR/munge.key"
        chown munge:munge "$MUNGE_DIR/munge.key"
        chmod 0400 "$MUNGE_DIR/munge.key"
    fi
    rm -f "$MUNGE_DIR/munged.pid"
    runuser -u munge -- "$BASE/bin/$P-munged" --force --socket="$SOCKET" \
        --key-file="$MUNGE_DIR/munge.key" --pid-file="$MUNGE_DIR/munged.pid" \
        --log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed"
    local i
    for i in $(seq 1 50); do munge_ok && return 0; sleep 0.1; done
    fail "munged does not answer on $SOCKET (see $MUNGE_DIR/munged.log)"
}

write_conf() {
    local hw sockets cores threads n new
    hw=$(slurmd -C | head -n 1)
    [[ "$hw" == NodeName=* ]] || fail "slurmd -C printed: $hw"
    sockets=$(grep -o 'SocketsPerBoard=[0-9]*' <<< "$hw" | cut -d= -f2)
    cores=$(grep -o 'CoresPerSocket=[0-9]*' <<< "$hw" | cut -d= -f2)
    threads=$(grep -o 'ThreadsPerCore=[0-9]*' <<< "$hw" | cut -d= -f2)
    new=$(
        cat <<EOF
# written by integration-tests/slurm/multi-node-slurm.sh
ClusterName=$P
SlurmctldHost=head($HEAD_IP)
$(common_conf)
AuthInfo=socket=$SOCKET
SlurmdTimeout=$SLURMD_TIMEOUT
StateSaveLocation=$BASE/state/slurmctld
SlurmdSpoolDir=$BASE/state/%n
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd-%n.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
EOF
        for n in "${NODES[@]}"; do
            echo "NodeName=$n NodeAddr=$(node_ip "$n") CPUs=2 Boards=1 SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=2000 State=UNKNOWN"
        done
        echo "PartitionName=debug Nodes=node[1-3] Default=YES MaxTime=INFINITE State=UP"
    )
    mkdir -p "$BASE/etc"
    [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$new" ] && return 1
    printf '%s\n' "$new" > "$CONF"
    return 0
}

# Starts daemon $1 (comm name) writing pid file $2, by running the rest "on" a host.
launch() {
    local comm=$1 pidfile=$2 i pid
    shift 2
    rm -f "$pidfile"
    "$@"
    for i in $(seq 1 100); do
        if pid=$(pid_of "$pidfile" "$comm"); then return 0; fi
        sleep 0.1
    done
    fail "$comm did not start (see $BASE/log/)"
}

start_slurm() {
    local n
    install -d -m 0755 "$BASE/state/slurmctld" "$BASE/run" "$BASE/log"
    for n in "${NODES[@]}"; do install -d -m 0755 "$BASE/state/$n"; done
    if ! pid_of "$BASE/run/slurmctld.pid" "$P-slurmctld" >/dev/null; then
        # -c: forget jobs of an earlier run
        launch "$P-slurmctld" "$BASE/run/slurmctld.pid" on head "$BASE/bin/$P-slurmctld" -c -f "$CONF"
        log "slurmctld started on head ($HEAD_IP)"
    fi
    for n in "${NODES[@]}"; do
        if ! pid_of "$BASE/run/slurmd-$n.pid" "$P-slurmd" >/dev/null; then
            launch "$P-slurmd" "$BASE/run/slurmd-$n.pid" on "$n" "$BASE/bin/$P-slurmd" -N "$n" -f "$CONF"
            log "slurmd started on $n ($(node_ip "$n"))"
        fi
    done
}

node_states() { on head sinfo -h -N -o '%N %T' 2>/dev/null || true; }

all_idle() {
    local n st
    for n in "${NODES[@]}"; do
        st=$(node_states | awk -v n="$n" '$1 == n {print $2}')
        case "$st" in idle|mixed|allocated|completing) ;; *) return 1 ;; esac
    done
}

wait_ready() {
    local deadline=$((SECONDS + WAIT_S)) resumed=0 n st
    until all_idle; do
        for n in "${NODES[@]}"; do
            st=$(node_states | awk -v n="$n" '$1 == n {print $2}')
            case "$st" in
                down*|drain*)
                    if [ "$resumed" = 0 ]; then
                        on head scontrol update NodeName="$n" State=RESUME >/dev/null 2>&1 || true
                    fi ;;
            esac
        done
        resumed=1
        if [ "$SECONDS" -ge "$deadline" ]; then
            node_states >&2
            tail -n 5 "$BASE"/log/*.log >&2 || true
            fail "nodes not idle after ${WAIT_S}s"
        fi
        sleep 0.3
    done
}

do_start() {
    local began=$SECONDS changed=0 pid n
    [ "$(id -u)" = 0 ] || fail "must run as root"
    install_packages iproute2 util-linux
    mkdir -p "$BASE"
    link_daemons
    build_network
    start_munge
    write_conf && changed=1
    if [ "$changed" = 1 ]; then
        for n in "${NODES[@]}"; do
            if pid=$(pid_of "$BASE/run/slurmd-$n.pid" "$P-slurmd"); then kill_pid "$pid"; fi
        done
        if pid=$(pid_of "$BASE/run/slurmctld.pid" "$P-slurmctld"); then kill_pid "$pid"; fi
    fi
    start_slurm
    wait_ready
    log "ready in $((SECONDS - began)) s"
    do_status || true
}

do_stop() {
    local pid n host jobs i left
    if pid_of "$BASE/run/slurmctld.pid" "$P-slurmctld" >/dev/null; then
        jobs=$(on head squeue -h -o '%i' 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            log "cancelling jobs:" $jobs
            # shellcheck disable=SC2086
            on head scancel $jobs 2>/dev/null || true
            for i in $(seq 1 50); do
                [ -z "$(on head squeue -h -o '%i' 2>/dev/null)" ] && break
                sleep 0.2
            done
        fi
    fi
    for n in "${NODES[@]}"; do
        if pid=$(pid_of "$BASE/run/slurmd-$n.pid" "$P-slurmd"); then kill_pid "$pid"; log "stopped slurmd on $n (pid $pid)"; fi
    done
    if pid=$(pid_of "$BASE/run/slurmctld.pid" "$P-slurmctld"); then kill_pid "$pid"; log "stopped slurmctld (pid $pid)"; fi
    # Whatever still lives in our namespaces (slurmstepd, workers, a head) was
    # started there by us or by our daemons.
    for host in "${NODES[@]}" head; do
        ns_exists "$(netns "$host")" || continue
        left=$(ip netns pids "$(netns "$host")" 2>/dev/null || true)
        for pid in $left; do
            log "ending leftover pid $pid on $host: $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-80)"
            kill_pid "$pid"
        done
    done
    if pid=$(pid_of "$MUNGE_DIR/munged.pid" "$P-munged"); then kill_pid "$pid"; log "stopped munged (pid $pid)"; fi
    remove_network
}

do_status() {
    local host ns ok=0 line
    for host in head "${NODES[@]}"; do
        ns=$(netns "$host")
        if ns_exists "$ns"; then
            line="$host: netns $ns uts=$(on "$host" hostname 2>/dev/null || echo '?')"
            case $host in
                head) line+=" ip $HEAD_IP slurmctld=$(pid_of "$BASE/run/slurmctld.pid" "$P-slurmctld" || echo -)" ;;
                *) line+=" ip $(node_ip "$host") link=$(ip -n "$(netns head)" -br link show "sw-$host" 2>/dev/null | awk '{print $2}') slurmd=$(pid_of "$BASE/run/slurmd-$host.pid" "$P-slurmd" || echo -) state=$(node_states | awk -v n="$host" '$1 == n {print $2}')" ;;
            esac
        else
            line="$host: absent"
        fi
        echo "$line"
    done
    echo "munged=$(pid_of "$MUNGE_DIR/munged.pid" "$P-munged" || echo -) socket=$SOCKET"
    if ns_exists "$(netns head)"; then
        on head squeue -h -o 'job %i %T %j nodes=%N' 2>/dev/null || true
        all_idle && ok=1
    fi
    [ "$ok" = 1 ]
}

do_heal() {
    local n=$1 pid
    ip -n "$(netns head)" link set "sw-$n" up
    if pid=$(pid_of "$BASE/run/slurmd-$n.pid" "$P-slurmd"); then
        kill_pid "$pid"
        launch "$P-slurmd" "$BASE/run/slurmd-$n.pid" on "$n" "$BASE/bin/$P-slurmd" -N "$n" -f "$CONF"
    fi
    log "$n healed"
}

case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    on) shift; exec_on "$@" ;;
    partition) ip -n "$(netns head)" link set "sw-$2" down; log "$2 partitioned" ;;
    heal) do_heal "$2" ;;
    pids) ip netns pids "$(netns "$2")" ;;
    *) echo "usage: $0 start|stop|status|on HOST CMD...|partition NODE|heal NODE|pids HOST" >&2; exit 2 ;;
esac
