#!/bin/bash
# gptoss-mpirun.sh — run gptoss with Open MPI's mpirun over the hosts of a hostfile, one rank per
# node or one rank per socket (or K of them), each rank bound to the cores it owns and running
# that many OpenMP threads.
#
#   launch/gptoss-mpirun.sh --hostfile hosts --per node   -- generate --model /shared/m --prompt Hi
#   launch/gptoss-mpirun.sh --hostfile hosts --per socket -- bench --model /shared/m
#   launch/gptoss-mpirun.sh --hostfile hosts --per node --ranks-per 4 -- bench --model /shared/m
#
# Options (before the `--`; everything after it goes to gptoss unchanged):
#   --hostfile FILE  Open MPI hostfile, one `host slots=N` line per node (N >= ranks on that
#                    node). Without it, only this machine is used.
#   --per node|socket  one rank per node (default) or per socket. Ranks must divide the model's
#                    shard count (8 for gpt-oss-20b/120b): 1, 2, 4 or 8 ranks in total.
#   --ranks-per K    K ranks per node/socket instead of one, each bound to 1/K of its cores.
#   --np N           total ranks (default: every node/socket of the hostfile).
#   --threads T      OpenMP threads per rank (default: the cores of one node or one socket of
#                    this machine divided by K; nodes are assumed alike).
#   --bin PATH       the gptoss binary (default: $GPTOSS_BIN, else `gptoss` on PATH); it and the
#                    model directory must be at the same path on every node.
#   --mpirun-arg A   one extra mpirun argument (repeatable), e.g. --mpirun-arg --mca
#                    --mpirun-arg btl_tcp_if_include --mpirun-arg eth1. Also GPTOSS_MPIRUN_ARGS
#                    (split on spaces).
#   --dry-run        print the mpirun command instead of running it.
#   -h, --help
#
# Binding: per socket, each rank is bound to its socket (--bind-to socket) and its threads are
# placed on that socket's cores (OMP_PLACES=cores, OMP_PROC_BIND=close), so its weights live in
# that socket's memory. Per node, the rank is not bound (--bind-to none) and its threads spread
# over all cores of the node (OMP_PROC_BIND=spread). With K > 1, each rank is bound to its own
# T cores (--map-by ppr:K:node|socket:PE=T --bind-to core, OMP_PROC_BIND=close).
# OPENBLAS_NUM_THREADS=1 always. OMP_PLACES and OMP_PROC_BIND already set are kept. As root, Open MPI also needs
# OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1.
# The exit status is mpirun's: non-zero if any rank failed.
set -euo pipefail

PROG=${0##*/}

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}
die() {
  echo "$PROG: error: $*" >&2
  exit 2
}

hostfile="" per=node ranks_per=1 np="" threads="" bin=${GPTOSS_BIN:-} dry=0
mpirun_extra=()
read -r -a env_extra <<<"${GPTOSS_MPIRUN_ARGS:-}"

need_arg() { (($# >= 2)) || die "option $1 needs a value"; }
while (($# > 0)); do
  case $1 in
    --hostfile) need_arg "$@"; hostfile=$2; shift 2 ;;
    --per) need_arg "$@"; per=$2; shift 2 ;;
    --ranks-per) need_arg "$@"; ranks_per=$2; shift 2 ;;
    --np) need_arg "$@"; np=$2; shift 2 ;;
    --threads) need_arg "$@"; threads=$2; shift 2 ;;
    --bin) need_arg "$@"; bin=$2; shift 2 ;;
    --mpirun-arg) need_arg "$@"; mpirun_extra+=("$2"); shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (gptoss arguments go after '--'; see --help)" ;;
  esac
done
(($# > 0)) || die "no gptoss arguments after '--', e.g. -- generate --model DIR --prompt TEXT"

case $per in
  node | socket) ;;
  *) die "--per must be 'node' or 'socket', not '$per'" ;;
esac
[[ $ranks_per =~ ^[1-9][0-9]*$ ]] || die "--ranks-per must be a positive integer, not '$ranks_per'"
[[ -z $np || $np =~ ^[1-9][0-9]*$ ]] || die "--np must be a positive integer, not '$np'"
[[ -z $threads || $threads =~ ^[1-9][0-9]*$ ]] ||
  die "--threads must be a positive integer, not '$threads'"
if [[ -n $hostfile ]]; then
  [[ -r $hostfile ]] || die "cannot read hostfile '$hostfile'"
  hostfile=$(realpath -e -- "$hostfile")
fi
command -v mpirun >/dev/null || die "mpirun not found on PATH (Debian: apt-get install openmpi-bin)"

# ---- the binary ----
if [[ -n $bin ]]; then
  resolved=$(command -v -- "$bin" 2>/dev/null) || resolved=""
  [[ -n $resolved && -f $resolved && -x $resolved ]] || die "'$bin' is not an executable file"
else
  resolved=$(command -v gptoss 2>/dev/null) || resolved=""
  [[ -n $resolved ]] || die "no 'gptoss' on PATH: add its directory to PATH, or use --bin / GPTOSS_BIN"
fi
bin=$(realpath -e -- "$resolved")

# ---- threads per rank: cores of one node or one socket of this machine ----
if [[ -z $threads ]]; then
  cores=0 sockets=0
  if command -v lscpu >/dev/null; then
    # One line per logical CPU: "core,socket"; count distinct physical cores and sockets.
    cores=$(lscpu -p=CORE,SOCKET | grep -v '^#' | sort -u | wc -l)
    sockets=$(lscpu -p=SOCKET | grep -v '^#' | sort -u | wc -l)
  fi
  ((cores > 0 && sockets > 0)) || { cores=$(nproc); sockets=1; }
  if [[ $per == socket ]]; then
    threads=$((cores / sockets / ranks_per))
  else
    threads=$((cores / ranks_per))
  fi
  ((threads > 0)) || die "$ranks_per rank(s) per $per leave no core per rank on this machine" \
    "($cores cores, $sockets socket(s)); use --threads"
fi

export OMP_NUM_THREADS=$threads
export OPENBLAS_NUM_THREADS=1
export OMP_PLACES=${OMP_PLACES:-cores}
if ((ranks_per > 1)); then
  export OMP_PROC_BIND=${OMP_PROC_BIND:-close}
  layout=(--map-by "ppr:$ranks_per:$per:PE=$threads" --bind-to core)
elif [[ $per == socket ]]; then
  export OMP_PROC_BIND=${OMP_PROC_BIND:-close}
  layout=(--map-by ppr:1:socket --bind-to socket)
else
  export OMP_PROC_BIND=${OMP_PROC_BIND:-spread}
  layout=(--map-by ppr:1:node --bind-to none)
fi

cmd=(mpirun)
[[ -n $hostfile ]] && cmd+=(--hostfile "$hostfile")
[[ -n $np ]] && cmd+=(-np "$np")
cmd+=("${layout[@]}")
for v in OMP_NUM_THREADS OPENBLAS_NUM_THREADS OMP_PLACES OMP_PROC_BIND PATH LD_LIBRARY_PATH; do
  [[ -n ${!v:-} ]] && cmd+=(-x "$v")
done
cmd+=("${env_extra[@]}" "${mpirun_extra[@]}" "$bin" "$@")

if ((dry)); then
  printf 'OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=1 OMP_PLACES=%s OMP_PROC_BIND=%s' \
    "$OMP_NUM_THREADS" "$OMP_PLACES" "$OMP_PROC_BIND"
  printf ' %q' "${cmd[@]}"
  printf '\n'
  exit 0
fi

echo "$PROG: $ranks_per rank(s) per $per, $threads thread(s) per rank${hostfile:+, hosts from $hostfile}" >&2
# exec: signals sent to this script reach mpirun, which forwards them to every rank.
exec "${cmd[@]}"
