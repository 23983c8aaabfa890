#!/bin/bash
# A virtual cluster on one machine, sourced by the netsim tests (tests/netsim/test_netsim.sh):
#
#   netsim_up N              N "nodes" n1..nN, each a network namespace with one interface eth0
#                            (10.77.0.1I/24) on a switch; mpirun runs in a head namespace
#                            (10.77.0.2), all on one Linux bridge.
#   netsim_mpirun ARGS...    mpirun in the head namespace, one rank per node, TCP only, over the
#                            namespaces' addresses only, short failure-detection timeouts
#   netsim_up_switch N DELAY_US RATE_MBIT
#                            the same nodes, but each eth0 a TUN port of tests/netsim/delay_switch
#                            (a userspace switch adding DELAY_US one-way latency and RATE_MBIT
#                            per link; this kernel has no netem); NETSIM_SWITCH = its binary
#   netsim_shape I RATE      token-bucket shaping of node I's egress (tc tbf), e.g. 1gbit
#   netsim_loss I PERCENT    drop PERCENT % of node I's packets, both ways (nftables numgen)
#   netsim_cut I             node I's link goes down (ip link set eth0 down in its namespace)
#   netsim_down              kill every process in the namespaces, delete them (trap-safe)
#   netsim_down_on_exit SCRATCH WHO
#                            on the script's exit (INT and TERM too): netsim_down, rm -rf SCRATCH,
#                            and a non-zero status, said by WHO, if the cluster did not tear down
#
# Everything lives in namespaces named NETSIM_PREFIX-* (NETSIM_PREFIX unique per run): the
# bridge too, so the root namespace gets no interface, address or route, and parallel runs (each
# with the same 10.77.0.0/24 inside its own namespaces) cannot collide.
# netsim_check_support exits 77 (ctest SKIP_RETURN_CODE) saying why, where namespaces cannot be made.

NETSIM_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
NETSIM_SUBNET=10.77.0.0/24
NETSIM_HEAD_ADDR=10.77.0.2
# Failure detection: Open MPI's out-of-band channel (mpirun <-> each node's orted) declares a
# peer lost after KEEPALIVE_TIME idle seconds plus PROBES unanswered probes INTVL seconds apart
# (defaults 300 + 9 x 20 = 480 s); here 1 + 3 x 1 = 4 s.
NETSIM_KEEPALIVE_TIME=${NETSIM_KEEPALIVE_TIME:-1}
NETSIM_KEEPALIVE_INTVL=${NETSIM_KEEPALIVE_INTVL:-1}
NETSIM_KEEPALIVE_PROBES=${NETSIM_KEEPALIVE_PROBES:-3}
NETSIM_N=0

netsim_log() { echo "netsim: $*" >&2; }

# netsim_check_support: exit 77 with the reason when this machine cannot host the cluster.
netsim_check_support() {
  export PATH=$PATH:/usr/sbin:/sbin
  local why="" probe="gnsprobe$$"
  if [[ $(id -u) != 0 ]]; then
    why="needs root to create network namespaces"
  elif ! command -v ip >/dev/null; then
    why="iproute2 (ip) is not installed"
  elif ! ip netns add "$probe" 2>/dev/null; then
    why="cannot create a network namespace (ip netns add failed: no CAP_SYS_ADMIN or no netns support)"
  elif ! ip -n "$probe" link add gnsa type veth peer name gnsb 2>/dev/null; then
    why="cannot create a veth pair inside a namespace (no veth support in this kernel)"
  elif ! ip -n "$probe" link add gnsbr type bridge 2>/dev/null; then
    why="cannot create a bridge inside a namespace (no bridge support in this kernel)"
  fi
  ip netns del "$probe" 2>/dev/null || true
  if [[ -n $why ]]; then
    echo "SKIP: $why"
    exit 77
  fi
}

netsim_node_ns() { echo "$NETSIM_PREFIX-n$1"; }
netsim_node_addr() { echo "10.77.0.$((10 + $1))"; }

# netsim_up N: the namespaces, the switch, addresses; waits until the head reaches every node.
netsim_up() {
  local n=$1 i ns
  NETSIM_N=$n
  export NETSIM_PREFIX=${NETSIM_PREFIX:-gns$(printf '%05x' $(((RANDOM << 8 ^ $$) & 0xfffff)))}
  export NETSIM_DIR
  NETSIM_DIR=$(mktemp -d "${TMPDIR:-/tmp}/$NETSIM_PREFIX.XXXXXX")
  ip netns add "$NETSIM_PREFIX-sw"
  ip netns add "$NETSIM_PREFIX-h"
  for ((i = 1; i <= n; i++)); do ip netns add "$(netsim_node_ns "$i")"; done
  ip -n "$NETSIM_PREFIX-sw" link add br0 type bridge
  ip -n "$NETSIM_PREFIX-sw" link set br0 up
  # The head (index 0) and the nodes, each one veth into the switch namespace.
  ip -n "$NETSIM_PREFIX-sw" link add p0 type veth peer name eth0 netns "$NETSIM_PREFIX-h"
  for ((i = 1; i <= n; i++)); do
    ip -n "$NETSIM_PREFIX-sw" link add "p$i" type veth peer name eth0 netns "$(netsim_node_ns "$i")"
  done
  for ((i = 0; i <= n; i++)); do
    ip -n "$NETSIM_PREFIX-sw" link set "p$i" master br0 up
  done
  ip -n "$NETSIM_PREFIX-h" addr add "$NETSIM_HEAD_ADDR/24" dev eth0
  ip -n "$NETSIM_PREFIX-h" link set lo up
  ip -n "$NETSIM_PREFIX-h" link set eth0 up
  for ((i = 1; i <= n; i++)); do
    ns=$(netsim_node_ns "$i")
    ip -n "$ns" addr add "$(netsim_node_addr "$i")/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
  done
  : >"$NETSIM_DIR/hosts"
  for ((i = 1; i <= n; i++)); do echo "n$i slots=1" >>"$NETSIM_DIR/hosts"; done
  for ((i = 1; i <= n; i++)); do
    ip -n "$(netsim_node_ns "$i")" link show eth0 | grep -q 'state \(UP\|UNKNOWN\)' ||
      { netsim_log "node $i's link did not come up"; return 1; }
  done
  netsim_log "up: $n nodes in namespaces $NETSIM_PREFIX-n1..n$n"
}

# netsim_up_switch N DELAY_US RATE_MBIT: netsim_up's nodes and head, linked by delay_switch
# instead of a bridge (MTU NETSIM_MTU, default 9000: jumbo frames, as on a cluster network).
netsim_up_switch() {
  local n=$1 delay_us=$2 rate_mbit=$3 i ns addr ports=()
  NETSIM_N=$n
  export NETSIM_PREFIX=${NETSIM_PREFIX:-gns$(printf '%05x' $(((RANDOM << 8 ^ $$) & 0xfffff)))}
  export NETSIM_DIR
  NETSIM_DIR=$(mktemp -d "${TMPDIR:-/tmp}/$NETSIM_PREFIX.XXXXXX")
  ip netns add "$NETSIM_PREFIX-h"
  ports+=("$NETSIM_PREFIX-h=${NETSIM_HEAD_ADDR##*.}")
  for ((i = 1; i <= n; i++)); do
    ip netns add "$(netsim_node_ns "$i")"
    ports+=("$(netsim_node_ns "$i")=$((10 + i))")
  done
  # It ends up in the last node's namespace, so netsim_down kills it with everything else. Real
  # time priority: a switch that waits for a core behind spinning ranks would add that wait to
  # every packet (on a 2-core machine running 8 ranks, milliseconds).
  local rt=()
  chrt -f 10 true 2>/dev/null && rt=(chrt -f 10)
  "${rt[@]}" "${NETSIM_SWITCH:?NETSIM_SWITCH is not set}" "$delay_us" "$rate_mbit" "$NETSIM_DIR/switch.ready" "${ports[@]}" \
    2>"$NETSIM_DIR/switch.err" &
  disown
  for ((i = 0; i < 100; i++)); do [[ -s $NETSIM_DIR/switch.ready ]] && break; sleep 0.05; done
  [[ -s $NETSIM_DIR/switch.ready ]] || { netsim_log "delay_switch did not start: $(cat "$NETSIM_DIR/switch.err")"; return 1; }
  for ((i = 0; i <= n; i++)); do
    if ((i == 0)); then
      ns=$NETSIM_PREFIX-h addr=$NETSIM_HEAD_ADDR
    else
      ns=$(netsim_node_ns "$i") addr=$(netsim_node_addr "$i")
    fi
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 mtu "${NETSIM_MTU:-9000}" up
  done
  : >"$NETSIM_DIR/hosts"
  for ((i = 1; i <= n; i++)); do echo "n$i slots=1" >>"$NETSIM_DIR/hosts"; done
  netsim_log "up: $n nodes behind delay_switch ($(cat "$NETSIM_DIR/switch.ready"))"
}

# netsim_mpirun ARGS...: mpirun in the head namespace with one rank per node, ended (SIGTERM,
# then SIGKILL 5 s later) after NETSIM_TIMEOUT seconds (default 120): exit status 124 = a hang.
netsim_mpirun() {
  timeout -k 5 "${NETSIM_TIMEOUT:-120}" ip netns exec "$NETSIM_PREFIX-h" mpirun -np "$NETSIM_N" --hostfile "$NETSIM_DIR/hosts" --map-by node \
    --mca plm_rsh_agent "$NETSIM_HERE/agent.sh" --mca plm_rsh_no_tree_spawn 1 \
    --mca pml ob1 --mca btl tcp,self \
    --mca btl_tcp_if_include "$NETSIM_SUBNET" --mca oob_tcp_if_include "$NETSIM_SUBNET" \
    --mca oob_tcp_keepalive_time "$NETSIM_KEEPALIVE_TIME" \
    --mca oob_tcp_keepalive_intvl "$NETSIM_KEEPALIVE_INTVL" \
    --mca oob_tcp_keepalive_probes "$NETSIM_KEEPALIVE_PROBES" \
    "$@"
}

netsim_shape() {
  ip netns exec "$(netsim_node_ns "$1")" tc qdisc replace dev eth0 root tbf rate "$2" burst 256kb latency 50ms
}

# Node I drops PERCENT % of what it sends and of what it receives (two independent draws).
netsim_loss() {
  local ns percent=$2
  ns=$(netsim_node_ns "$1")
  ip netns exec "$ns" nft -f - <<EOF
table inet netsim_loss {
  chain in { type filter hook input priority 0; iifname "eth0" numgen random mod 100 < $percent counter drop; }
  chain out { type filter hook output priority 0; oifname "eth0" numgen random mod 100 < $percent counter drop; }
}
EOF
}

# Packets node I's loss rules dropped so far (in + out).
netsim_loss_dropped() {
  ip netns exec "$(netsim_node_ns "$1")" nft list table inet netsim_loss |
    awk '/counter packets/ { for (i = 1; i <= NF; i++) if ($i == "packets") s += $(i + 1) } END { print s + 0 }'
}

netsim_cut() { ip -n "$(netsim_node_ns "$1")" link set eth0 down; }

# The pids of every process in the cluster's namespaces.
netsim_pids() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk -v p="$NETSIM_PREFIX-" 'index($1, p) == 1 { print $1 }'); do
    ip netns pids "$ns" 2>/dev/null
  done
}

# netsim_down: idempotent; safe in an EXIT trap whatever state netsim_up reached.
netsim_down() {
  [[ -n ${NETSIM_PREFIX:-} ]] || return 0
  local pids ns i
  for i in 1 2 3 4 5; do
    pids=$(netsim_pids)
    [[ -n $pids ]] || break
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.2
  done
  [[ -z $(netsim_pids) ]] || netsim_log "processes still in the namespaces: $(netsim_pids | tr '\n' ' ')"
  for ns in $(ip netns list 2>/dev/null | awk -v p="$NETSIM_PREFIX-" 'index($1, p) == 1 { print $1 }'); do
    ip netns del "$ns" 2>/dev/null || netsim_log "cannot delete namespace $ns"
  done
  [[ -n ${NETSIM_DIR:-} ]] && rm -rf "$NETSIM_DIR"
  local left
  left=$(ip netns list 2>/dev/null | awk -v p="$NETSIM_PREFIX-" 'index($1, p) == 1' | wc -l)
  NETSIM_PREFIX_DONE=$NETSIM_PREFIX
  unset NETSIM_PREFIX
  ((left == 0))
}

# netsim_down_on_exit SCRATCH WHO: the scripts' exit trap (see the top of this file).
netsim_down_on_exit() {
  NETSIM_EXIT_SCRATCH=$1
  NETSIM_EXIT_WHO=$2
  trap netsim_exit_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

netsim_exit_cleanup() {
  local rc=$?
  trap - EXIT
  netsim_down || { echo "$NETSIM_EXIT_WHO: the cluster did not tear down cleanly" >&2; rc=1; }
  rm -rf "$NETSIM_EXIT_SCRATCH"
  exit "$rc"
}
