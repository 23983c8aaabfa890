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
# count), the IP bytes each node really sent per decoded token (from the TUN counters of two
# runs that differ only in their decode length), the extra time over the same node count through
# the switch with nothing added ("base"), and what the model of BENCHMARKS.md ("Across nodes")
# predicts for that extra time. Then each term of the model alone: the slope of the time per
# token over the latency (profiles with latency only) is the number of one-way latencies a token
# waits for; over 8/rate (rate only), the bytes on a token's critical path.
#
# Environment: NODES ("2 4 8"); PROFILES, "name:one_way_us:mbit ..." (mbit 0 = unlimited; the
# profile 0:0 is the baseline; one_way_us "bridge" = netsim_up's kernel bridge, for comparison);
# DECODE (32); LAYERS (4); REPEATS (2: the best is kept, the machine is shared); OUT (a file for
# the tables, besides stdout).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../.." && pwd -P)
GPTOSS=$(realpath "${1:-${GPTOSS:-$ROOT/build/gptoss}}")
NODES=${NODES:-2 4 8}
PROFILES=${PROFILES:-veth:bridge:0 base:0:0 10us/25G:10:25000 100us/10G:100:10000 1ms/1G:1000:1000 2ms:2000:0 5ms:5000:0 10ms:10000:0 100M:0:100 50M:0:50 25M:0:25}
DECODE=${DECODE:-32}
LAYERS=${LAYERS:-4}
REPEATS=${REPEATS:-2}
HIDDEN=2880
# shellcheck source=netsim.sh
source "$HERE/netsim.sh"
netsim_check_support
[[ -x $GPTOSS ]] || { echo "no gptoss binary at $GPTOSS (build first)" >&2; exit 1; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/gptoss-netbench-XXXXXX")
netsim_down_on_exit "$scratch" "bench_netsim"

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
    if [[ $delay_us == bridge ]]; then netsim_up "$n"; else netsim_up_switch "$n" "$delay_us" "$mbit"; fi
    best=""
    for ((r = 0; r < REPEATS; r++)); do
      json=$(run_bench "$DECODE")
      best=$(python3 -c 'import json,sys
a, b = sys.argv[1], sys.argv[2]
print(b if not a or json.loads(b)["decode_tokens_per_s"] > json.loads(a)["decode_tokens_per_s"] else a)' "$best" "$json")
    done
    wire=""
    if [[ $delay_us == 0 && $mbit == 0 ]]; then
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
L, H = int(sys.argv[2]), int(sys.argv[3])
rows = []
for line in open(sys.argv[1]):
    n, name, delay_us, mbit, wire, js = line.rstrip("\n").split("|", 5)
    d = json.loads(js)
    tok = d["decode_tokens"]
    bridge = delay_us == "bridge"
    rows.append(dict(n=int(n), name=name, bridge=bridge, alpha=0.0 if bridge else float(delay_us) / 1e3, mbit=float(mbit), wire=wire,
                     ms=1e3 / d["decode_tokens_per_s"], wait=d["decode"]["allreduce_wait"][1] / tok * 1e3,
                     sent=d["decode"]["max_bytes_sent_per_token"]))

# The model (BENCHMARKS.md, "Across nodes"): per token, 2L+1 allgathers of H floats per rank
# (recursive doubling below 32 ranks, one exchange at 2), the command broadcast and a MAXLOC
# allreduce, each ceil(log2 N) latencies deep; each rank's link carries (2L+1)(N-1)·4H bytes.
def rounds(n): return (2 * L + 3) * math.ceil(math.log2(n))
def model_bytes(n): return (2 * L + 1) * (n - 1) * 4 * H
def model_ms(n, alpha, mbit): return rounds(n) * alpha + (model_bytes(n) * 8 / (mbit * 1e3) if mbit > 0 else 0.0)

print(f"synthetic 20b-shaped model, {L} layers (H = {H}): {2 * L + 1} reductions + 1 command broadcast + 1 argmax per token")
print()
print("| nodes | link (one-way latency, per-link rate) | decode ms/token | allreduce wait ms/token | reduction bytes sent/token/rank | wire bytes sent/token/node | extra ms/token vs base | model ms/token |")
print("|---|---|---|---|---|---|---|---|")
base = {r["n"]: r["ms"] for r in rows if not r["bridge"] and r["alpha"] == 0 and r["mbit"] == 0}
for r in rows:
    print(f"| {r['n']} | {r['name']} | {r['ms']:.1f} | {r['wait']:.1f} | {r['sent']:.0f} | {r['wire'] or '-'} "
          f"| {r['ms'] - base.get(r['n'], r['ms']):+.1f} | {'-' if r['bridge'] else format(model_ms(r['n'], r['alpha'], r['mbit']), '.2f')} |")

# Each term alone: the slope of ms/token over the latency (rate unlimited) is the number of
# latencies a token waits for; over 8/rate (no added latency), the bytes a link carries per token.
def slope(pts):
    if len(pts) < 2: return None
    mx = sum(x for x, _ in pts) / len(pts); my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den > 0 else None
print()
print("| nodes | latencies per token: measured (slope) | model (2L+3)·⌈log2 N⌉ | link bytes per token: measured (slope) | model (2L+1)(N−1)·4H |")
print("|---|---|---|---|---|")
for n in sorted(base):
    lat = slope([(r["alpha"], r["ms"]) for r in rows if r["n"] == n and r["alpha"] >= 1 and r["mbit"] == 0])
    bw = slope([(8 / (r["mbit"] * 1e3), r["ms"]) for r in rows if r["n"] == n and r["alpha"] == 0 and 0 < r["mbit"] <= 100])
    print(f"| {n} | {'-' if lat is None else f'{lat:.1f}'} | {rounds(n)} | {'-' if bw is None else f'{bw:.0f}'} | {model_bytes(n)} |")
EOF
