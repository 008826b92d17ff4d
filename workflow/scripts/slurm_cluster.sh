#!/usr/bin/env bash
# A one-node SLURM cluster on this Debian machine (Debian 12's slurm 22.05 + munge), to run profiles/slurm for real.
#
#   workflow/scripts/slurm_cluster.sh start    install the packages if missing (apt-get, as root), write the config,
#                                              start the daemons, wait until the node is idle
#   workflow/scripts/slurm_cluster.sh stop     cancel every job, stop every daemon it started, check none is left
#   workflow/scripts/slurm_cluster.sh status   the daemons, sinfo and squeue (exit 0: all up, 3: none, 1: some)
#   eval "$(workflow/scripts/slurm_cluster.sh env)"   export SLURM_CONF for sbatch, squeue, sacct, snakemake
#
# State: everything (config, munge key and socket, logs, spool, controller state, pid files, job completion log,
# database) lives under $SLURM_LOCAL_DIR (default /tmp/spirl-slurm), with its own ports and munge socket, so a system
# install (/etc/slurm, /etc/munge, ports 6817-6819, /run/munge) is left alone. Clients find the cluster through
# SLURM_CONF, with one exception: Snakemake's jobstep plugin (snakemake-executor-plugin-slurm-jobstep 0.6) drops
# every SLURM_* variable, SLURM_CONF included, before the `srun` it runs inside each job, and srun then reads only
# /etc/slurm/slurm.conf. So `start` links /etc/slurm/slurm.conf to our config where that path is free
# (SLURM_LINK_ETC=0: never) and `stop` removes the link if it is ours; with a system slurm.conf there, Snakemake
# jobs on this cluster fail in srun.
#
# Accounting (SLURM_ACCOUNTING):
#   jobcomp (default, nothing more to install): finished jobs are appended to $DIR/log/jobcomp.txt (jobcomp/filetxt);
#       `sacct -c` lists them (state, partition, time limit, CPUs, nodes, start/end, exit code; the requested memory
#       is only in the file's Tres= field). Plain `sacct` says "Slurm accounting storage is disabled" (exit 1), so
#       Snakemake's SLURM executor must poll with squeue: --slurm-status-command squeue (MinJobAge keeps finished
#       jobs in squeue for 10 minutes); a slurm_account is not checked (sacctmgr and sshare know none) and sbatch
#       accepts any.
#   slurmdbd: also installs slurmdbd and mariadb-server and runs MariaDB (on 127.0.0.1:$SLURM_DB_PORT, data under
#       $DIR/mysql) and slurmdbd, like a production cluster: plain `sacct` (with ReqTRES, MaxRSS), `sacctmgr`, and
#       an account "spirl" that is the default account of the user who starts the cluster.
#
# Other settings: SLURM_PARTITIONS ("cpu gpu": the names profiles/slurm/config.yaml uses; the first is the default),
# SLURMCTLD_PORT (6917), SLURMD_PORT (6918), SLURMDBD_PORT (6919), SLURM_DB_PORT (6920), SLURM_NODE_CPUS and
# SLURM_NODE_MEM_MB (default: what `slurmd -C` finds; larger values are taken as configured:
# SlurmdParameters=config_overrides), SLURM_FAKE_GPUS (0; N: the node offers gres gpu:N backed by links $DIR/dev/gpu* -> /dev/null, so
# `--gpus=1` jobs are scheduled on a machine without a GPU, N at a time), SLURM_START_TIMEOUT (60 s).
# Idempotent: `start` on a running cluster only checks it; `stop` with nothing running does nothing. A running
# cluster keeps its config: stop it before changing a setting.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/spirl-slurm}
CONF=$DIR/etc/slurm.conf
MUNGE_SOCKET=$DIR/munge/munge.socket
ACCOUNTING=${SLURM_ACCOUNTING:-jobcomp}
PARTITIONS=${SLURM_PARTITIONS:-cpu gpu}
CTLD_PORT=${SLURMCTLD_PORT:-6917}
SLURMD_PORT=${SLURMD_PORT:-6918}
DBD_PORT=${SLURMDBD_PORT:-6919}
DB_PORT=${SLURM_DB_PORT:-6920}
FAKE_GPUS=${SLURM_FAKE_GPUS:-0}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
LINK_ETC=${SLURM_LINK_ETC:-1}
ETC_CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)
ALL_DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # start order; stop goes backwards
export SLURM_CONF=$CONF

log() { echo "slurm_cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pidfile() { echo "$DIR/run/$1.pid"; }

# The pid of a running daemon of ours: its pid file names a live process of that name.
daemon_pid() {
    local f pid
    f=$(pidfile "$1")
    [[ -s $f ]] || return 1
    pid=$(tr -dc 0-9 < "$f")
    [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 1
    echo "$pid"
}

# The daemons the config in $DIR uses (the one written by the last start), else those SLURM_ACCOUNTING asks for.
daemons() {
    if [[ -f $CONF ]] && grep -q '^AccountingStorageType=accounting_storage/slurmdbd' "$CONF"; then
        echo munged mariadbd slurmdbd slurmctld slurmd
    elif [[ -f $CONF ]]; then
        echo munged slurmctld slurmd
    elif [[ $ACCOUNTING == slurmdbd ]]; then
        echo munged mariadbd slurmdbd slurmctld slurmd
    else
        echo munged slurmctld slurmd
    fi
}

# Processes of ours still alive (pgrep): daemons whose command line names $DIR, and any slurmstepd (its command line
# names no path: with our slurmd gone, it is a job step of ours, or of a system install, which is only reported).
leftovers() {
    local name pid cmd
    for name in "${ALL_DAEMONS[@]}"; do
        for pid in $(pgrep -x "$name" || true); do
            cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true)
            [[ $cmd == *"$DIR"* ]] && echo "$pid $cmd"
        done
    done
    for pid in $(pgrep -x slurmstepd || true); do echo "$pid $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)"; done
    return 0
}

install_packages() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v pgrep >/dev/null || missing+=(procps)  # `stop` looks for leftovers with it (minimal images lack it)
    if [[ $ACCOUNTING == slurmdbd ]]; then
        command -v slurmdbd >/dev/null || missing+=(slurmdbd)
        command -v mariadbd >/dev/null || missing+=(mariadb-server)
    fi
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}: run as root, or: sudo apt-get install ${missing[*]}"
    log "installing ${missing[*]} (apt-get)"
    # The daemons and clients only: slurm-wlm (the metapackage) adds ~35 plugin packages (hdf5, rrd, ipmi, rocm...)
    # that this cluster does not use. Where systemd runs, postinst may start the system's munge/slurmd/mariadb
    # units; they use /etc, /run and the default ports, not ours.
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
    # munged wants its socket's folder searchable by all and its key's folder private
    mkdir -p "$DIR"/{etc,log,run,munge/private,spool/ctld,spool/d}
    chmod 755 "$DIR" "$DIR/munge"
    chmod 700 "$DIR/munge/private"
    # slurmd -C: this machine's CPUs, sockets, cores, threads and memory, as slurmd will detect them
    local hw cpus mem node p first=1 gres="" accounting i
    hw=$(slurmd -C | head -1)
    cpus=${SLURM_NODE_CPUS:-$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")}
    mem=${SLURM_NODE_MEM_MB:-$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")}
    [[ -n $cpus && -n $mem ]] || die "could not read CPUs and memory from 'slurmd -C': $hw"
    if [[ -n ${SLURM_NODE_CPUS:-} ]]; then
        node="NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem"
    else
        node="NodeName=$NODE NodeAddr=127.0.0.1 $(grep -o 'CPUs=.*ThreadsPerCore=[0-9]*' <<<"$hw") RealMemory=$mem"
    fi
    rm -f "$DIR/etc/gres.conf"
    if ((FAKE_GPUS > 0)); then
        # a gpu gres needs one device file per GPU (a count that differs from the files is fatal to slurmd), a
        # character device for slurmd to set CUDA_VISIBLE_DEVICES: links $DIR/dev/gpu0..N-1 -> /dev/null stand in
        mkdir -p "$DIR/dev"
        rm -f "$DIR"/dev/gpu*
        for ((i = 0; i < FAKE_GPUS; i++)); do ln -s /dev/null "$DIR/dev/gpu$i"; done
        gres="GresTypes=gpu"
        # slurmdbd also records the GPUs a job had (without slurmdbd this line is fatal to slurmctld)
        [[ $ACCOUNTING == slurmdbd ]] && gres+=$'\nAccountingStorageTRES=gres/gpu'
        node+=" Gres=gpu:$FAKE_GPUS"
        printf 'AutoDetect=off\nNodeName=%s Name=gpu File=%s/dev/gpu[0-%s]\n' "$NODE" "$DIR" "$((FAKE_GPUS - 1))" \
            > "$DIR/etc/gres.conf"
    fi
    case $ACCOUNTING in
        jobcomp) accounting=$'AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none' ;;
        slurmdbd)
            accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
            write_dbd_config
            ;;
        *) die "SLURM_ACCOUNTING=$ACCOUNTING: jobcomp or slurmdbd" ;;
    esac
    {
        cat <<EOF
# Written by workflow/scripts/slurm_cluster.sh: a one-node test cluster; all state under $DIR.
ClusterName=spirl
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
PlugStackConfig=$DIR/etc/plugstack.conf
MailProg=/bin/true
# no cgroups: a job's processes tracked by their process group (a job's Snakemake that hangs on SIGTERM after its
# batch shell died is still killed at KillWait; proctrack/linuxproc follows parents and lost such orphans), no CPU
# binding, no memory enforcement
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# memory is consumable: a job without --mem gets 1 GB per CPU (not the whole node, which would serialise jobs)
DefMemPerCPU=1024
# finished jobs: one line each in a text file (\`sacct -c\`), and the accounting below
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
$accounting
# finished jobs stay in squeue for 10 minutes (what Snakemake's --slurm-status-command squeue needs)
MinJobAge=600
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
$gres
$node State=UNKNOWN
EOF
        for p in $PARTITIONS; do
            echo "PartitionName=$p Nodes=$NODE MaxTime=INFINITE State=UP Default=$([[ $first == 1 ]] && echo YES || echo NO)"
            first=0
        done
    } > "$CONF"
    : > "$DIR/etc/plugstack.conf"
    # the node is described afresh: forget its recorded state (a DRAIN from an earlier config would stick) but keep
    # the jobs' (job ids go on, so the completion log and the database get no duplicates)
    rm -f "$DIR"/spool/ctld/node_state "$DIR"/spool/ctld/node_state.old
    [[ -s $DIR/munge/private/munge.key ]] || dd if=/dev/urandom of="$DIR/munge/private/munge.key" bs=1024 count=1 status=none
    chmod 600 "$DIR/munge/private/munge.key"
}

# (AccountingStoragePass above: the munge socket that clients such as sacctmgr use to reach slurmdbd; they ignore
# AuthInfo there.) slurmdbd reads slurmdbd.conf beside SLURM_CONF (mode 600); MariaDB its own file, on a port of its own.
write_dbd_config() {
    mkdir -p "$DIR/mysql/data"
    cat > "$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdAddr=127.0.0.1
DbdHost=$NODE
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$(pidfile slurmdbd)
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
    cat > "$DIR/mysql/my.cnf" <<EOF
[mysqld]
user=root
datadir=$DIR/mysql/data
socket=$DIR/mysql/mysqld.sock
port=$DB_PORT
bind-address=127.0.0.1
skip-name-resolve
pid-file=$(pidfile mariadbd)
log-error=$DIR/log/mariadbd.log
performance_schema=OFF
innodb_buffer_pool_size=32M
innodb_log_file_size=48M
innodb_lock_wait_timeout=900
EOF
}

start_mariadb() {
    daemon_pid mariadbd >/dev/null && { log "mariadbd already running (pid $(daemon_pid mariadbd))"; return; }
    if [[ ! -d $DIR/mysql/data/mysql ]]; then
        mariadb-install-db --defaults-file="$DIR/mysql/my.cnf" --auth-root-authentication-method=socket \
            --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 || { tail -20 "$DIR/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    setsid mariadbd --defaults-file="$DIR/mysql/my.cnf" </dev/null >/dev/null 2>&1 &
    local i
    for i in $(seq 100); do
        mariadb --socket="$DIR/mysql/mysqld.sock" -u root -e 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.3
    done
    daemon_pid mariadbd >/dev/null || { show_logs; die "mariadbd did not start"; }
    # the user slurmdbd logs in as (TCP on 127.0.0.1; skip-name-resolve, so by address)
    mariadb --socket="$DIR/mysql/mysqld.sock" -u root -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
    log "mariadbd started (pid $(daemon_pid mariadbd))"
}

# The cluster, an account "spirl" and the current user in it (default account): what a production cluster's
# administrator would have done, so `slurm_account: spirl` validates.
register_accounts() {
    local i user
    user=$(id -un)
    for i in $(seq 50); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.3; done
    sacctmgr -n list cluster format=cluster%30 2>/dev/null | grep -qw spirl || sacctmgr -i add cluster spirl >/dev/null
    sacctmgr -n list account format=account%30 2>/dev/null | grep -qw spirl ||
        sacctmgr -i add account spirl Description="test cluster" Organization=spirl >/dev/null
    sacctmgr -n list assoc user="$user" account=spirl format=user%30 2>/dev/null | grep -qw "$user" ||
        sacctmgr -i add user "$user" Account=spirl DefaultAccount=spirl >/dev/null
    sacctmgr -i modify user "$user" set DefaultAccount=spirl >/dev/null 2>&1 || true
}

# /etc/slurm/slurm.conf -> our config, for clients that lost SLURM_CONF (see the top); only where nothing is there.
link_etc() {
    [[ $LINK_ETC == 1 ]] || return 0
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
        return 0
    elif [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
        log "WARNING: $ETC_CONF exists (a system install?): left alone; srun inside Snakemake jobs will use it"
    elif mkdir -p "$(dirname "$ETC_CONF")" 2>/dev/null && ln -s "$CONF" "$ETC_CONF" 2>/dev/null; then
        log "linked $ETC_CONF -> $CONF"
    else
        log "WARNING: could not link $ETC_CONF -> $CONF; srun inside Snakemake jobs will find no config"
    fi
}

unlink_etc() {
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
        rm -f "$ETC_CONF"
        log "removed the link $ETC_CONF"
    fi
    return 0
}

start_daemon() {  # name, command...
    local name=$1 i
    shift
    if daemon_pid "$name" >/dev/null; then
        log "$name already running (pid $(daemon_pid "$name"))"
        return
    fi
    "$@" || { show_logs; die "$name did not start: $*"; }
    for i in $(seq 50); do
        daemon_pid "$name" >/dev/null && { log "$name started (pid $(daemon_pid "$name"))"; return; }
        sleep 0.2
    done
    show_logs
    die "$name wrote no pid file $(pidfile "$name")"
}

show_logs() {
    local d f
    for d in $(daemons); do
        f=$DIR/log/$d.log
        [[ -f $f ]] && { echo "----- $f (last 30 lines)" >&2; tail -n 30 "$f" >&2; }
    done
    return 0
}

node_state() { { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null || true; } | head -1; }

# a start that fails half-way stops what it started
abort_start() {
    local rc=$?
    trap - EXIT
    if ((rc != 0)); then
        log "start failed: stopping what was started; fix the above, then start again"
        cmd_stop || true
    fi
    exit "$rc"
}

cmd_start() {
    install_packages
    trap abort_start EXIT
    daemon_pid slurmctld >/dev/null || write_config
    link_etc
    local ds
    ds=" $(daemons) "
    start_daemon munged munged --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/private/munge.key" \
        --pid-file="$(pidfile munged)" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/private/munged.seed"
    if [[ $ds == *" slurmdbd "* ]]; then
        start_mariadb
        start_daemon slurmdbd slurmdbd
        register_accounts
    fi
    start_daemon slurmctld slurmctld -f "$CONF"
    start_daemon slurmd slurmd -f "$CONF" -N "$NODE"
    local t=0 state="" d
    while ((t < TIMEOUT)); do
        for d in $ds; do
            daemon_pid "$d" >/dev/null || { show_logs; die "$d exited (its log is above)"; }
        done
        state=$(node_state)
        [[ $state == idle || $state == mixed || $state == allocated ]] && break
        sleep 1
        t=$((t + 1))
    done
    if [[ $state != idle && $state != mixed && $state != allocated ]]; then
        log "node $NODE is '${state:-unknown}' after ${TIMEOUT}s, not idle"
        sinfo -N -l -n "$NODE" >&2 || true
        scontrol show node "$NODE" 2>/dev/null | grep -i -E 'State|Reason' >&2 || true
        show_logs
        exit 1
    fi
    trap - EXIT
    log "node $NODE is $state; partitions: $PARTITIONS (default: ${PARTITIONS%% *}); accounting: $ACCOUNTING"
    echo "export SLURM_CONF=$CONF"
}

stop_daemon() {
    local name=$1 pid i
    pid=$(daemon_pid "$name") || { rm -f "$(pidfile "$name")"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM for 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$(pidfile "$name")"
    log "$name stopped (pid $pid)"
}

cmd_stop() {
    local i left
    if daemon_pid slurmctld >/dev/null; then
        # cancel every job (stopping the daemons does not end running job steps) and wait for their steps to end
        squeue -h -o %i -t PD,R,CG,S 2>/dev/null | xargs -r scancel --quiet 2>/dev/null || true
        for i in $(seq 30); do
            [[ -z $(squeue -h -t PD,R,CG,S -o %i 2>/dev/null) ]] && ! pgrep -x slurmstepd >/dev/null && break
            sleep 1
        done
    fi
    for ((i = ${#ALL_DAEMONS[@]} - 1; i >= 0; i--)); do stop_daemon "${ALL_DAEMONS[i]}"; done
    unlink_etc
    left=$(leftovers)
    if [[ -n $left ]]; then
        log "still running after stop:"
        echo "$left" >&2
        return 1
    fi
    log "stopped: no ${ALL_DAEMONS[*]} or slurmstepd of $DIR is running"
}

cmd_status() {
    local name running=0 n=0 pid
    for name in $(daemons); do
        n=$((n + 1))
        if pid=$(daemon_pid "$name"); then
            echo "$name: running (pid $pid)"
            running=$((running + 1))
        else
            echo "$name: not running"
        fi
    done
    echo "SLURM_CONF=$CONF"
    if daemon_pid slurmctld >/dev/null; then
        sinfo || true
        squeue || true
    fi
    ((running == n)) && return 0
    ((running == 0)) && return 3
    return 1
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env   (state in \$SLURM_LOCAL_DIR, default /tmp/spirl-slurm)" >&2; exit 2 ;;
esac
