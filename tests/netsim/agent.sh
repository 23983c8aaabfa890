#!/bin/bash
# Open MPI's launcher agent for the netsim cluster (tests/netsim/netsim.sh), given to mpirun as
# `--mca plm_rsh_agent tests/netsim/agent.sh`. Open MPI runs it the way it runs ssh:
#   agent.sh [options] HOST orted ARGS...
# HOST is a node name of the netsim hostfile (n1, n2, ...); the command runs in that node's
# network namespace, NETSIM_PREFIX-HOST, through /bin/sh as ssh's remote shell would (orted's
# arguments arrive quoted for a shell). The environment (NETSIM_PREFIX, NETSIM_DIR, OMPI_*) is
# mpirun's. Each node also gets what a real node has of its own: a host name (a UTS namespace)
# and a TMPDIR, where Open MPI keeps its session directory and PMIx its shared-memory store —
# nodes that share one collide there (PMIx dstore errors, a daemon that never reports).
set -u
while [[ $# -gt 0 && $1 == -* ]]; do shift; done  # ssh-style options, if plm_rsh_args adds any
host=${1:?agent.sh: no host}
shift
[[ -n ${NETSIM_PREFIX:-} ]] || { echo "agent.sh: NETSIM_PREFIX is not set" >&2; exit 255; }
[[ $host =~ ^n[0-9]+$ ]] || { echo "agent.sh: '$host' is not a netsim node name (n1, n2, ...)" >&2; exit 255; }
[[ -n ${NETSIM_DIR:-} ]] || { echo "agent.sh: NETSIM_DIR is not set" >&2; exit 255; }
export TMPDIR=$NETSIM_DIR/$host
mkdir -p "$TMPDIR"
exec ip netns exec "$NETSIM_PREFIX-$host" unshare --uts /bin/sh -c 'hostname "$0" && exec /bin/sh -c "$1"' "$host" "$*"
