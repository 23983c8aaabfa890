#!/bin/bash
# The network's cost per decoded token, measured on the netsim virtual cluster. Not a ctest (it
# measures, it does not pass or fail, and takes minutes); run it as root:
#
#   tests/netsim/bench_netsim.sh [GPTOSS]        (default build/gptoss)
#
# One rank per network namespace, Open MPI over TCP only (netsim_mpirun), the nodes linked by
# tests/netsim/delay_switch (a userspace switch: this kernel has no netem) with a one-way latency
# and a per-link bandwidth. For each node count and link profile, `gptoss bench --json` decodes
# DECODE tokens of a synthetic model shaped like gpt-oss-20b where the network sees it (hidden
# size 2880, 8 KV heads, so each reduction is 2880 floats) but with LAYERS layers and small
# experts, so the compute stays short. Printed per token: decode time, the allreduce wait and
# sampling phases (averaged over ranks), the bytes each rank's reductions send (the engine's own
# count), the extra time over the same node count with no added latency or shaping, and what the
# model of BENCHMARKS.md ("Across nodes") predicts for that extra time. Then the wire bytes: the
# IP bytes each node really sent per decoded token, from the TUN counters of two runs that differ
# only in their decode length.
#
# Environment: NODES ("2 4 8"), PROFILES ("name:one_way_us:mbit ..."; the first is the baseline
# and should be 0:0), DECODE (32), LAYERS (4), REPEATS (2: the best of each is kept, the machine
# is shared), OUT (a file for the table, default stdout only).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../.." && pwd -P)
GPTOSS=$(realpath "${1:-${GPTOSS:-$ROOT/build/gptoss}}")
NODES=${NODES:-2 4 8}
PROFILES=${PROFILES:-base:0:0 10us/25G:10:25000 100us/10G:100:10000 1ms/1G:1000:1000}
DECODE=${DECODE:-32}
LAYERS=${LAYERS:-4}
REPEATS=${REPEATS:-2}
HIDDEN=2880
# shellcheck source=netsim.sh
source "$HERE/netsim.sh"
netsim_check_support
[[ -x $GPTOSS ]] || { echo "no gptoss binary at $GPTOSS (build first)" >&2; exit 1; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/gptoss-netbench-XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT
  netsim_down || { echo "bench_netsim: the cluster did not tear down cleanly" >&2; rc=1; }
  rm -rf "$scratch"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_mpi_yield_when_idle=1
export NETSIM_SWITCH=$scratch/delay_switch
cc -O2 -Wall -Wextra -o "$NETSIM_SWITCH" "$HERE/delay_switch.c"

# The model: gpt-oss-20b's shapes where the reductions see them, small everywhere else.
python3 - "$ROOT/tests/data/tiny20/checkpoint/config.json" "$scratch/config.json" "$LAYERS" "$HIDDEN" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
layers, hidden = int(sys.argv[3]), int(sys.argv[4])
c.update(hidden_size=hidden, head_dim=64, num_attention_heads=8, num_key_value_heads=8, intermediate_size=256,
         num_hidden_layers=layers, vocab_size=1024, eos_token_id=1000, pad_token_id=1001, sliding_window=128,
         layer_types=["sliding_attention", "full_attention"] * (layers // 2) + ["sliding_attention"] * (layers % 2))
json.dump(c, open(sys.argv[2], "w"), indent=2)
EOF
"$GPTOSS" synth --config "$scratch/config.json" --out "$scratch/ckpt" >/dev/null 2>&1
"$GPTOSS" convert --checkpoint "$scratch/ckpt" --out "$scratch/bench.model" --quiet >/dev/null

# run_bench DECODE: one bench on the running cluster, its JSON on stdout.
run_bench() {
  netsim_mpirun "$GPTOSS" bench --model "$scratch/bench.model" --prompt-tokens 8 --decode-tokens "$1" --no-probe \
    --no-verify --threads 1 --json --quiet 2>"$scratch/err" | grep '^{' || { cat "$scratch/err" >&2; return 1; }
}

# Bytes all nodes' eth0 sent so far (IP bytes: TCP/IP headers included).
tx_total() {
  local i sum=0
  for ((i = 1; i <= NETSIM_N; i++)); do
    sum=$((sum + $(ip -n "$(netsim_node_ns "$i")" -s -j link show eth0 |
      python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])')))
  done
  echo "$sum"
}

results=$scratch/results
: >"$results"
for n in $NODES; do
  for profile in $PROFILES; do
    IFS=: read -r name delay_us mbit <<<"$profile"
    netsim_up_switch "$n" "$delay_us" "$mbit"
    best=""
    for ((r = 0; r < REPEATS; r++)); do
      json=$(run_bench "$DECODE")
      best=$(python3 -c 'import json,sys
a, b = sys.argv[1], sys.argv[2]
print(b if not a or json.loads(b)["decode_tokens_per_s"] > json.loads(a)["decode_tokens_per_s"] else a)' "$best" "$json")
    done
    wire=""
    if [[ $profile == "${PROFILES%% *}" ]]; then
      t0=$(tx_total); run_bench "$DECODE" >/dev/null; t1=$(tx_total)
      run_bench "$((2 * DECODE))" >/dev/null; t2=$(tx_total)
      wire=$(( ((t2 - t1) - (t1 - t0)) / DECODE / n ))
    fi
    echo "$n|$name|$delay_us|$mbit|$wire|$best" >>"$results"
    netsim_down
  done
done

python3 - "$results" "$LAYERS" "$HIDDEN" <<'EOF' | tee "${OUT:-/dev/null}"
import json, math, sys
rows = [l.rstrip("\n").split("|", 5) for l in open(sys.argv[1])]
L, H = int(sys.argv[2]), int(sys.argv[3])
base = {}
print(f"synthetic 20b-shaped model, {L} layers (H = {H}): {2 * L + 1} reductions + 1 command broadcast + 1 argmax per token")
print("| nodes | link (one-way, per link) | decode ms/token | allreduce wait ms/token | sampling ms/token "
      "| reduction bytes sent/token/rank | wire bytes sent/token/node | extra ms/token vs base | model ms/token |")
print("|---|---|---|---|---|---|---|---|---|")
for n, name, delay_us, mbit, wire, js in rows:
    n, d = int(n), json.loads(js)
    ms = 1e3 / d["decode_tokens_per_s"]
    tok = d["decode_tokens"]
    wait = d["decode"]["allreduce_wait"][1] / tok * 1e3
    samp = d["decode"]["sampling"][1] / tok * 1e3
    sent = d["decode"]["max_bytes_sent_per_token"]
    if n not in base: base[n] = ms
    alpha = float(delay_us) * 1e-3                       # ms
    beta = float(mbit) * 1e6 / 8 / 1e3 if float(mbit) > 0 else math.inf  # bytes per ms
    rounds = math.ceil(math.log2(n))
    model = (2 * L + 3) * rounds * alpha + (2 * L + 1) * (n - 1) * 4 * H / beta
    print(f"| {n} | {name} | {ms:.1f} | {wait:.1f} | {samp:.2f} | {sent:.0f} | {wire or '-'} | {ms - base[n]:+.1f} | {model:.2f} |")
EOF
