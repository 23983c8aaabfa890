#!/bin/bash
# ctest `netsim_*` (label netsim): gptoss across a virtual cluster on one machine — one rank per
# network namespace, each with its own link to a switch, Open MPI's TCP transport only
# (tests/netsim/netsim.sh). Cases:
#
#   exact N       N nodes: the reference's greedy tokens, and `score --logits` bitwise identical
#                 to one process and within 2e-4 of the official reference; every rank in its
#                 own namespace; the reductions really crossed every node's link
#   loss N        the same with 1 % of every node's packets dropped each way (nftables)
#   link_cut      4 nodes, node 3's link goes down mid-run: the job ends non-zero within
#                 FAULT_BOUND seconds, nothing is left running, no complete-looking output
#   rank_killed   4 nodes, node 2's rank gets SIGKILL mid-run: the same, and mpirun names it
#   bench_probe   2 nodes with 1, then 2 ranks each: `bench --json` reports one read bandwidth per
#                 node, the job's is their sum, and decode_fraction_of_bound divides by it
#
# Environment: GPTOSS, COMPARE (compare_logits), FIXTURE (h5_fixture), TEST_DATA, GOLDEN_MODEL.
# Exit 77 (SKIP_RETURN_CODE) only where namespaces cannot be made; the cluster is torn down on
# exit whatever happens.
set -euo pipefail

CASE=${1:?usage: test_netsim.sh exact|loss N | link_cut | rank_killed}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=netsim.sh
source "$HERE/netsim.sh"
netsim_check_support

# The failure-detection bound the README states: keepalive (1 s idle + 3 probes 1 s apart) plus
# the teardown of the other ranks, with margin for a loaded 2-core machine.
FAULT_BOUND=${FAULT_BOUND:-20}

die() { echo "FAIL: $CASE: $*" >&2; exit 1; }
log() { echo "$CASE: $*"; }

for v in GPTOSS COMPARE FIXTURE TEST_DATA GOLDEN_MODEL; do
  [[ -n ${!v:-} ]] || die "$v is not set"
done
ref=$TEST_DATA/tiny20/reference.h5
tokens=$("$FIXTURE" ints "$ref" tokens)
greedy=$("$FIXTURE" ints "$ref" greedy | tr ',' ' ')
scratch=$(mktemp -d "${TMPDIR:-/tmp}/gptoss-netsim-XXXXXX")

netsim_down_on_exit "$scratch" "FAIL: $CASE"

# Bytes node I has sent on its link so far.
tx_bytes() { ip -n "$(netsim_node_ns "$1")" -s -j link show eth0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])'; }

# check_exact: the golden checks on the running cluster of NETSIM_N nodes.
check_exact() {
  local n=$NETSIM_N i got seen before=() sent

  # Placement: rank r runs in node r+1's namespace, on its address, and each in a different one.
  got=$(netsim_mpirun sh -c 'echo "$OMPI_COMM_WORLD_RANK $(readlink /proc/self/ns/net) $(ip -o -4 addr show eth0 | awk "{print \$4}")"')
  seen=$(awk '{print $2}' <<<"$got" | sort -u | wc -l)
  ((seen == n)) || die "ranks ran in $seen distinct network namespaces, expected $n: $got"
  for ((i = 1; i <= n; i++)); do
    grep -qx "$((i - 1)) .* $(netsim_node_addr "$i")/24" <<<"$got" || die "rank $((i - 1)) is not on node $i: $got"
  done

  for ((i = 1; i <= n; i++)); do before[i]=$(tx_bytes "$i"); done
  got=$(netsim_mpirun "$GPTOSS" generate --model "$GOLDEN_MODEL" --tokens "$tokens" --max-tokens 16 \
        --temperature 0 --ids --quiet) || die "generate exited $?"
  [[ $got == "$greedy" ]] || die "$n nodes: got '$got', reference '$greedy'"
  log "$n nodes: the reference's 16 greedy tokens"
  # 64 decode steps x 8 reductions (2 per layer) x 64 floats x 4 bytes to each of N - 1 peers:
  # the reductions alone are > 130 kB per node. Less on any link means they did not cross it.
  for ((i = 1; i <= n; i++)); do
    sent=$(($(tx_bytes "$i") - before[i]))
    ((sent > 130000)) || die "node $i sent only $sent bytes on its link during generate"
  done

  netsim_mpirun "$GPTOSS" score --model "$GOLDEN_MODEL" --tokens "$tokens" --logits "$scratch/net$n.h5" \
    --quiet >/dev/null || die "score exited $?"
  "$COMPARE" "$scratch/net$n.h5" "$scratch/local1.h5" --exact || die "$n nodes: logits differ from one process"
  "$COMPARE" "$scratch/net$n.h5" "$ref" --tol 2e-4 || die "$n nodes: logits differ from the reference"
  log "$n nodes: logits bitwise identical to one process, within 2e-4 of the reference"
}

# start_long_job: a teacher-forced score of 3000 tokens fed one at a time (thousands of decode
# steps, each with its reductions over the network), in the background; waits until rank 0 is
# computing and every node has sent traffic. Sets JOB.
start_long_job() {
  local ids i t
  ids=$(seq -s, 1 3000 | awk -F, '{ for (i = 1; i <= NF; i++) printf "%s%d", (i > 1 ? "," : ""), $i % 500 }')
  NETSIM_TIMEOUT=$((FAULT_BOUND * 6)) netsim_mpirun "$GPTOSS" score --model "$GOLDEN_MODEL" --tokens "$ids" \
    --chunk 1 --logits "$scratch/long.h5" --quiet >"$scratch/out" 2>"$scratch/err" &
  JOB=$!
  for ((t = 0; t < 300; t++)); do
    [[ -n $(rank_pid "$NETSIM_N") ]] && (($(tx_bytes "$NETSIM_N") > 200000)) && break
    kill -0 "$JOB" 2>/dev/null || { cat "$scratch/err" >&2; die "the job ended before the fault"; }
    sleep 0.1
  done
  ((t < 300)) || die "the job did not start within 30 s"
  sleep 1
  kill -0 "$JOB" 2>/dev/null || { cat "$scratch/err" >&2; die "the job ended before the fault (too short)"; }
}

# rank_pid I: the pid of the gptoss rank in node I's namespace (empty if none).
rank_pid() {
  local pid
  for pid in $(ip netns pids "$(netsim_node_ns "$1")" 2>/dev/null); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == gptoss ]] && { echo "$pid"; return 0; }
  done
  return 0
}

# check_fault_outcome WHAT: after the fault at FAULT_T (seconds, date +%s.%N): the job exits
# non-zero within FAULT_BOUND, not by our timeout, leaves no process in any namespace and no
# logits file.
check_fault_outcome() {
  local what=$1 status=0 took left
  wait "$JOB" || status=$?
  took=$(awk -v a="$FAULT_T" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  cat "$scratch/err"
  ((status != 0)) || die "exit status 0 after $what"
  ((status != 124)) || die "the job hung after $what (killed by the deadline)"  # 137 = mpirun reporting a rank killed by signal 9; a hang also fails the time bound below
  awk -v t="$took" -v b="$FAULT_BOUND" 'BEGIN { exit !(t < b) }' ||
    die "the job took ${took} s to end after $what (bound ${FAULT_BOUND} s)"
  # Nothing hangs: every orted and rank, in every namespace, is gone within a few seconds.
  for ((i = 0; i < 50; i++)); do
    left=$(netsim_pids)
    [[ -z $left ]] && break
    sleep 0.2
  done
  [[ -z $left ]] || die "processes still running after the job ended: $(ps -o pid,comm -p "${left//$'\n'/,}" | tail -n +2 | tr '\n' ' ')"
  [[ ! -e $scratch/long.h5 ]] || die "a logits file was left looking complete after $what"
  log "after $what: exit status $status within ${took} s (bound ${FAULT_BOUND} s), nothing left running, no logits file"
  echo "$took" >"$scratch/took"
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_mpi_yield_when_idle=1

case $CASE in
  exact | loss)
    n=${2:?usage: test_netsim.sh $CASE N}
    "$GPTOSS" score --model "$GOLDEN_MODEL" --tokens "$tokens" --logits "$scratch/local1.h5" --quiet >/dev/null
    netsim_up "$n"
    if [[ $CASE == loss ]]; then
      for ((i = 1; i <= n; i++)); do netsim_loss "$i" 1; done
      check_exact
      dropped=0
      for ((i = 1; i <= n; i++)); do dropped=$((dropped + $(netsim_loss_dropped "$i"))); done
      # ~1 % of a few thousand packets: zero drops would mean the rules never applied.
      ((dropped > 0)) || die "the loss rules dropped no packet"
      log "$n nodes, 1 % loss: exact with $dropped packets dropped"
    else
      check_exact
    fi
    ;;
  link_cut)
    netsim_up 4
    start_long_job
    FAULT_T=$(date +%s.%N)
    netsim_cut 3
    log "cut node 3's link"
    check_fault_outcome "node 3's link was cut"
    ;;
  rank_killed)
    netsim_up 4
    start_long_job
    victim=$(rank_pid 2)
    [[ -n $victim ]] || die "no gptoss rank in node 2's namespace"
    FAULT_T=$(date +%s.%N)
    kill -9 "$victim"
    log "SIGKILL to rank 1 (pid $victim, node 2)"
    check_fault_outcome "node 2's rank was killed"
    grep -Eq "rank 1.*(signal 9|Killed)|signal 9 \(Killed\)" "$scratch/err" || die "stderr does not name the dead rank"
    ;;
  bench_probe)
    netsim_up 2
    for per_node in 1 2; do
      # --map-by node: ranks 0 and 2 on n1, 1 and 3 on n2.
      out=$(NETSIM_N=$((2 * per_node)) netsim_mpirun --oversubscribe "$GPTOSS" bench --model "$GOLDEN_MODEL" \
            --prompt-tokens 8 --decode-tokens 8 --json --quiet) || die "bench exited $?"
      echo "$out" | cut -c1-400
      field() { grep -Eo "\"$1\": [0-9.]+" <<<"$out" | grep -Eo '[0-9.]+$'; }
      nodes=$(grep -Eo '"node_read_GBps": \[[0-9., ]*\]' <<<"$out" | sed 's/.*\[//; s/\]//; s/,//g') ||
        die "no node_read_GBps list"
      awk -v nodes="$nodes" -v job="$(field job_read_GBps)" -v gbps="$(field decode_GBps)" \
          -v frac="$(field decode_fraction_of_bound)" 'BEGIN {
            n = split(nodes, v, " "); for (i = 1; i <= n; i++) { if (v[i] <= 0) exit 1; sum += v[i] }
            exit !(n == 2 && (sum - job)^2 < 1e-5 && (frac - gbps / job)^2 < 1e-4) }' ||
        die "$per_node rank(s) per node: want 2 positive node figures summing to job_read_GBps and the fraction over it"
      log "2 nodes x $per_node rank(s): node_read_GBps [$nodes], job $(field job_read_GBps)"
    done
    ;;
  *)
    die "unknown case"
    ;;
esac
log PASS
