#!/bin/bash
# A throwaway single-node Slurm cluster that lives entirely in one scratch directory.
#
#   tests/slurm/slurm_cluster.sh up DIR     write DIR/slurm.conf, start slurmctld + slurmd, wait
#                                           until the node is idle; prints SLURM_CONF=DIR/slurm.conf
#   tests/slurm/slurm_cluster.sh down DIR   cancel every job, stop the daemons by their pid files
#   tests/slurm/slurm_cluster.sh status DIR scontrol/sinfo view of the cluster
#
# Clients reach the cluster with `export SLURM_CONF=DIR/slurm.conf`. Nothing under /etc/slurm is
# read or written. The node is declared with 8 CPUs whatever the machine has (config_overrides,
# task/none, proctrack/linuxproc: no cgroups), auth/none (no munge), no accounting, free TCP
# ports on 127.0.0.1 only, so two clusters can coexist. Runs as root (slurmd must).
# The facts this relies on: shared/notes/slurm.md.
#
# `down` never stops anything by name: it cancels the cluster's jobs, signals the pids in the
# pid files, then sweeps the processes that belong to this cluster (cwd or an open file in DIR,
# or a job environment pointing at DIR/slurm.conf) — nothing else on the machine is touched.
set -euo pipefail

PROG=${0##*/}
CPUS=${SLURM_CLUSTER_CPUS:-8}
START_TIMEOUT=${SLURM_CLUSTER_START_TIMEOUT:-30}

die() { echo "$PROG: error: $*" >&2; exit 1; }
usage() { echo "usage: $PROG up|down|status DIR" >&2; exit 2; }

# ---- helpers ----

# TCP ports in use on this machine (any state), from /proc, one decimal per line.
used_ports() {
  local f sl local_addr rest
  for f in /proc/net/tcp /proc/net/tcp6; do
    [[ -r $f ]] || continue
    while read -r sl local_addr rest; do
      [[ $sl == sl ]] && continue
      echo "$((16#${local_addr##*:}))"
    done <"$f"
  done
}

# Sets CTLD_PORT and SLURMD_PORT to two consecutive free ports below the ephemeral range.
pick_ports() {
  local used p i
  used=$(used_ports | sort -un)
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + (RANDOM % 6000) * 2))
    if ! grep -qx -e "$p" -e "$((p + 1))" <<<"$used"; then
      CTLD_PORT=$p
      SLURMD_PORT=$((p + 1))
      return 0
    fi
  done
  die "no free TCP port pair found between 20000 and 32000"
}

# A pid that exists and is not a zombie (this machine's init may never reap daemons).
pid_alive() {
  local state
  [[ ${1:-} =~ ^[0-9]+$ ]] || return 1
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != [ZX] ]]
}

read_pid() {  # read_pid FILE: the pid in FILE, or nothing
  local pid=""
  if [[ -s $1 ]]; then read -r pid <"$1" || true; fi
  [[ $pid =~ ^[0-9]+$ ]] && echo "$pid"
  return 0
}

# stop_pid PID NAME: SIGTERM, wait up to 10 s, then SIGKILL.
stop_pid() {
  local pid=$1 name=$2 i
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  echo "$PROG: $name (pid $pid) ignored SIGTERM for 10 s: SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

# The processes of the cluster in DIR, found without names: those whose working directory is
# DIR or that hold a file in DIR open (the daemons and every slurmstepd: they keep the log open),
# and job processes (SLURM_JOB_ID set, SLURM_CONF=DIR/slurm.conf in their environment). This
# shell and its ancestors are never listed.
cluster_pids() {
  local dir=$1 ancestors=" " p=$$ pid
  while [[ $p =~ ^[0-9]+$ ]] && ((p > 1)); do
    ancestors+="$p "
    p=$(awk '/^PPid:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || break
  done
  {
    find /proc/[0-9]*/cwd -maxdepth 0 -lname "$dir" 2>/dev/null || true
    find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -lname "$dir/*" 2>/dev/null || true
    # shellcheck disable=SC2046 # one word per file
    grep -lz '^SLURM_JOB_ID=' $(grep -lzxF "SLURM_CONF=$dir/slurm.conf" /proc/[0-9]*/environ \
      2>/dev/null) /dev/null 2>/dev/null || true
  } | awk -F/ '$2 == "proc" && $3 ~ /^[0-9]+$/ { print $3 }' | sort -un |
    while read -r pid; do
      [[ $ancestors == *" $pid "* || $pid == "$BASHPID" ]] || echo "$pid"
    done
}

live_cluster_pids() {  # cluster_pids without zombies
  local pid
  for pid in $(cluster_pids "$1"); do
    if pid_alive "$pid"; then echo "$pid"; fi
  done
  return 0
}

show_logs() {
  local dir=$1 f
  for f in "$dir"/slurmctld.log "$dir"/slurmd.log; do
    [[ -s $f ]] || continue
    echo "---- last lines of $f ----" >&2
    tail -n 25 "$f" >&2
  done
}

# ---- up ----

write_conf() {
  local dir=$1 host=$2 ctld_port=$3 slurmd_port=$4
  cat >"$dir/slurm.conf" <<EOF
# Throwaway single-node cluster written by $PROG; not for production.
ClusterName=gptosstest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
# Job and PMIx scratch (spmix_appdir_*) stay inside DIR, not in /tmp.
TmpFS=$dir/tmp
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
# No cgroups on these machines: track processes by parentage, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Declare 8 CPUs even on a 2-core machine.
SlurmdParameters=config_overrides
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Start batch jobs at once; reject (never leave PENDING forever) a job that can never fit.
SchedulerParameters=batch_sched_delay=0
EnforcePartLimits=ALL
ReturnToService=2
# No slurmdbd, no accounting.
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Scripts must choose their MPI plugin themselves (launch/gptoss.sbatch uses --mpi=pmix).
MpiDefault=none
KillWait=5
InactiveLimit=0
MinJobAge=300
# Job ids unique to this cluster: Open MPI names its shared-memory segments after the job id, so
# two clusters on one machine both running job 1 would share them and crash.
FirstJobId=$((ctld_port * 1000))
NodeName=$host NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

# wait_for DESCRIPTION COMMAND...: poll until COMMAND succeeds or START_TIMEOUT seconds pass.
wait_for() {
  local what=$1 i
  shift
  for ((i = 0; i < START_TIMEOUT * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "$PROG: timed out after ${START_TIMEOUT}s waiting for $what" >&2
  return 1
}

ctld_up() { scontrol ping | grep -q 'is UP'; }
node_idle() { [[ $(sinfo -h -N -o '%T' 2>/dev/null) == idle ]]; }

cmd_up() {
  local dir=$1 host tool
  for tool in slurmctld slurmd scontrol sinfo; do
    command -v "$tool" >/dev/null || die "'$tool' not found: install Debian's slurm-wlm"
  done
  [[ $(id -u) == 0 ]] || die "slurmd must run as root"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  [[ ! -e $dir/slurmctld.pid && ! -e $dir/slurmd.pid ]] ||
    die "$dir already holds a cluster (pid files present): run '$PROG down $dir' first"
  # slurmstepd puts unix sockets in the spool dir; sun_path is 108 bytes.
  ((${#dir} <= 60)) || die "scratch dir '$dir' is too long for Slurm's unix sockets (keep it <= 60 characters, e.g. mktemp -d /tmp/slurm.XXXXXX)"
  mkdir -p "$dir/state" "$dir/spool" "$dir/tmp"
  host=$(hostname -s)
  pick_ports
  write_conf "$dir" "$host" "$CTLD_PORT" "$SLURMD_PORT"
  export SLURM_CONF=$dir/slurm.conf

  if ! slurmctld -f "$SLURM_CONF" -c -i; then
    show_logs "$dir"; die "slurmctld failed to start"
  fi
  if ! wait_for "slurmctld to answer" ctld_up; then
    show_logs "$dir"; cmd_down "$dir" || true; die "slurmctld did not come up"
  fi
  if ! slurmd -f "$SLURM_CONF" -N "$host"; then
    show_logs "$dir"; cmd_down "$dir" || true; die "slurmd failed to start"
  fi
  if ! wait_for "node $host to become idle" node_idle; then
    sinfo -N -l >&2 || true
    show_logs "$dir"; cmd_down "$dir" || true; die "slurmd did not register"
  fi
  echo "SLURM_CONF=$SLURM_CONF"
}

# ---- down ----

cmd_down() {
  local dir=$1 jobs pid i rc=0 left still
  [[ -d $dir ]] || return 0
  dir=$(cd "$dir" && pwd -P)
  export SLURM_CONF=$dir/slurm.conf
  # Cancel every job first, while the daemons can still clean up their steps.
  if [[ -f $SLURM_CONF ]] && pid_alive "$(read_pid "$dir/slurmctld.pid")" &&
    jobs=$(timeout 10 squeue -h -o '%i' 2>/dev/null) && [[ -n $jobs ]]; then
    # shellcheck disable=SC2086 # one word per job id
    timeout 10 scancel $jobs 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      [[ -z $(timeout 5 squeue -h -t active -o '%i' 2>/dev/null) ]] && break
      sleep 0.1
    done
  fi
  stop_pid "$(read_pid "$dir/slurmd.pid")" slurmd
  stop_pid "$(read_pid "$dir/slurmctld.pid")" slurmctld
  # Step daemons and job processes that outlived their daemons: SIGTERM all, SIGKILL after 5 s.
  mapfile -t left < <(live_cluster_pids "$dir")
  if ((${#left[@]} > 0)); then
    for pid in "${left[@]}"; do
      echo "$PROG: stopping leftover process $pid:" \
        "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
    done
    kill -TERM "${left[@]}" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      mapfile -t left < <(live_cluster_pids "$dir")
      ((${#left[@]} > 0)) || break
      sleep 0.1
    done
    ((${#left[@]} == 0)) || kill -KILL "${left[@]}" 2>/dev/null || true
    sleep 0.2
  fi
  still=$(live_cluster_pids "$dir")
  if [[ -n $still ]]; then
    echo "$PROG: processes of the cluster in $dir are still alive: ${still//$'\n'/ }" >&2
    rc=1
  fi
  rm -f "$dir/slurmctld.pid" "$dir/slurmd.pid"
  return "$rc"
}

cmd_status() {
  local dir
  dir=$(cd "$1" && pwd -P)
  export SLURM_CONF=$dir/slurm.conf
  scontrol ping
  sinfo -N -l
  squeue
}

[[ $# == 2 ]] || usage
case $1 in
  up) cmd_up "$2" ;;
  down) cmd_down "$2" ;;
  status) cmd_status "$2" ;;
  *) usage ;;
esac
