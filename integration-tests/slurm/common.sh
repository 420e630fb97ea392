# common.sh: what local-slurm.sh and multi-node-slurm.sh share; sourced by
# both (they define log and fail first).

# Whether pid $1 exists and is no zombie (daemons reparented to pid 1 can
# linger as zombies).
alive() {
    local state
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [ "${state%% *}" != Z ]
}

# Installs Debian's Slurm 22.05 and munge, and the packages named in the
# arguments, unless every tool named in $TOOLS is already here.
install_packages() {
    local tool missing=0
    for tool in munged munge unmunge slurmctld slurmd sinfo srun sbatch squeue scancel scontrol ${TOOLS:-}; do
        command -v "$tool" >/dev/null 2>&1 || missing=1
    done
    [ "$missing" = 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || fail "Slurm is not installed and there is no apt-get"
    log "installing munge slurmctld slurmd slurm-client $*"
    timeout 600 apt-get update -q >/dev/null
    # shellcheck disable=SC2068
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends \
        munge slurmctld slurmd slurm-client $@ >/dev/null
}

# The slurm.conf lines both clusters share: root daemons, munge, no cgroups
# (proctrack/linuxproc, task/none), cores as the unit, no accounting.
common_conf() {
    cat <<EOF2
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
EOF2
}
