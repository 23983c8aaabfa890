#!/bin/bash
# ctest `slurm_golden` (label slurm): the project's own launch/gptoss.sbatch, submitted to a real
# throwaway single-node Slurm cluster with 8 tasks, must produce the official reference's greedy
# tokens on the golden tiny model, with both launchers (srun --mpi=pmix and mpirun), and a job
# that fails must give a non-zero `sbatch --wait` status.
#
# Environment:
#   GPTOSS     path to the built gptoss binary
#   TEST_DATA  the tests/data directory (tiny20/checkpoint, tiny20/reference.h5)
#   SCRATCH    a scratch directory for the converted model and job outputs (wiped first)
#
# Exit 77 (ctest SKIP_RETURN_CODE) only when Slurm is not installed; every other problem fails.
# The cluster lives in its own short /tmp directory and is torn down on exit, whatever happens.
set -euo pipefail

PROG=${0##*/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../.." && pwd -P)
SBATCH_SCRIPT=$ROOT/launch/gptoss.sbatch
CLUSTER=$HERE/slurm_cluster.sh
JOB_TIMEOUT=${SLURM_TEST_JOB_TIMEOUT:-300}  # seconds for one `sbatch --wait`

fail() {
  echo "$PROG: FAIL: $*" >&2
  exit 1
}
log() { echo "$PROG: $*"; }

# ---- the one reason to skip: Slurm is not installed ----
export PATH=$PATH:/usr/sbin:/sbin
missing=()
for tool in slurmctld slurmd sbatch srun scontrol squeue scancel sinfo; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]} > 0)); then
  echo "SKIP: Slurm is not installed (missing: ${missing[*]});" \
    "install Debian's slurm-wlm to run this test"
  exit 77
fi

# ---- inputs ----
[[ -n ${GPTOSS:-} && -x ${GPTOSS:-} ]] || fail "GPTOSS='${GPTOSS:-}' is not an executable"
[[ -n ${TEST_DATA:-} && -d ${TEST_DATA:-} ]] || fail "TEST_DATA='${TEST_DATA:-}' is not a directory"
[[ -n ${SCRATCH:-} ]] || fail "SCRATCH (a scratch directory) is not set"
command -v h5dump >/dev/null || fail "h5dump not found (Debian: hdf5-tools)"
[[ $(id -u) == 0 ]] || fail "needs root: slurmd runs as root"
GPTOSS=$(realpath -e -- "$GPTOSS")
REFERENCE=$TEST_DATA/tiny20/reference.h5
CHECKPOINT=$TEST_DATA/tiny20/checkpoint
[[ -r $REFERENCE ]] || fail "missing $REFERENCE"
[[ -d $CHECKPOINT ]] || fail "missing $CHECKPOINT"

rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd -P)

# read_ints H5 DATASET COUNT: the integers of a 1-D dataset, space-separated, checked.
read_ints() {
  local file=$1 dset=$2 count=$3 raw vals
  raw=$SCRATCH/$(basename "$dset").txt
  # -y: no indices, -w 0: no wrapping, -o: only the values, into a file.
  h5dump -d "$dset" -y -w 0 -o "$raw" "$file" >/dev/null ||
    fail "h5dump cannot read $dset from $file"
  vals=$(tr -s ', \t\r\n' '\n' <"$raw" | grep -v '^$' | tr '\n' ' ')
  vals=${vals% }
  [[ $vals =~ ^-?[0-9]+( -?[0-9]+)*$ ]] || fail "$dset in $file is not a list of integers: $vals"
  local n
  read -r -a arr <<<"$vals"
  n=${#arr[@]}
  ((n == count)) || fail "$dset in $file has $n values, expected $count"
  echo "$vals"
}
TOKENS=$(read_ints "$REFERENCE" /tokens 48)
GREEDY=$(read_ints "$REFERENCE" /greedy 16)
TOKENS_CSV=${TOKENS// /,}

# ---- convert the golden checkpoint ----
MODEL=$SCRATCH/golden.model
t0=$SECONDS
"$GPTOSS" convert --checkpoint "$CHECKPOINT" --out "$MODEL" --quiet ||
  fail "gptoss convert of $CHECKPOINT failed"
log "converted the golden checkpoint in $((SECONDS - t0)) s"

# ---- a clean environment for Slurm clients and jobs ----
# Nothing from an enclosing Slurm job or the user's sbatch/srun defaults may leak in.
while read -r var; do
  unset "$var"
done < <(compgen -e | grep -E '^(SLURM|SBATCH|SALLOC|SRUN)_' || true)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# 8 ranks share the machine's few cores; under srun Open MPI cannot tell it is oversubscribed and
# busy-polls, which makes a 2-second job take 40. Yielding when idle changes no result.
export OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-1}
export GPTOSS_BIN=$GPTOSS
unset GPTOSS_LAUNCHER GPTOSS_SRUN_MPI GPTOSS_LAUNCHER_ARGS

# ---- the cluster, torn down whatever happens ----
CLUSTER_DIR=$(mktemp -d /tmp/gslurm.XXXXXX)
teardown() {
  local rc=$? down_rc=0
  trap - EXIT INT TERM
  "$CLUSTER" down "$CLUSTER_DIR" || down_rc=$?
  if ((rc != 0 || down_rc != 0)); then
    mkdir -p "$SCRATCH/cluster"
    cp -f "$CLUSTER_DIR"/slurm.conf "$CLUSTER_DIR"/*.log "$SCRATCH/cluster/" 2>/dev/null || true
    echo "$PROG: cluster config and logs kept in $SCRATCH/cluster" >&2
    for f in "$SCRATCH"/cluster/*.log; do
      [[ -s $f ]] || continue
      echo "---- last lines of $f ----" >&2
      tail -n 20 "$f" >&2
    done
  fi
  rm -rf "$CLUSTER_DIR"
  if ((rc == 0 && down_rc != 0)); then
    echo "$PROG: FAIL: the cluster did not tear down cleanly" >&2
    rc=1
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
"$CLUSTER" up "$CLUSTER_DIR" >/dev/null
export SLURM_CONF=$CLUSTER_DIR/slurm.conf
log "cluster up in $((SECONDS - t0)) s ($(sinfo -h -N -o '%N %c CPUs %T'))"

# submit NAME ARGS...: sbatch --wait the project's batch script with 8 tasks; sets JOB_STATUS.
# stdout/stderr of the job are in $SCRATCH/NAME.out / NAME.err.
submit() {
  local name=$1 t=$SECONDS
  shift
  JOB_STATUS=0
  timeout "$JOB_TIMEOUT" sbatch --wait --ntasks=8 --cpus-per-task=1 --time=5 \
    --job-name="gptoss-$name" --chdir="$SCRATCH" \
    --output="$SCRATCH/$name.out" --error="$SCRATCH/$name.err" \
    "$SBATCH_SCRIPT" "$@" >"$SCRATCH/$name.sbatch" 2>&1 || JOB_STATUS=$?
  if ((JOB_STATUS == 124)); then
    fail "job '$name' did not finish within $JOB_TIMEOUT s (see $SCRATCH/$name.err)"
  fi
  log "job '$name': sbatch --wait exited $JOB_STATUS after $((SECONDS - t)) s"
}

show_job() {
  local name=$1 f
  for f in "$SCRATCH/$name.sbatch" "$SCRATCH/$name.out" "$SCRATCH/$name.err"; do
    echo "---- $f ----" >&2
    cat "$f" >&2 2>/dev/null || true
  done
}

# check_golden NAME: the job succeeded and printed exactly the reference's greedy ids.
check_golden() {
  local name=$1 got
  if ((JOB_STATUS != 0)); then
    show_job "$name"
    fail "job '$name' exited with status $JOB_STATUS, expected 0"
  fi
  got=$(tr -s ' \t\r\n' ' ' <"$SCRATCH/$name.out")
  got=${got# }
  got=${got% }
  if [[ $got != "$GREEDY" ]]; then
    show_job "$name"
    fail "job '$name' printed '$got', expected the reference greedy tokens '$GREEDY'"
  fi
  log "job '$name': 8 ranks produced the reference's 16 greedy tokens"
}

GENERATE=(generate --model "$MODEL" --tokens "$TOKENS_CSV" --max-tokens 16 --temperature 0 --ids)

# 1. srun --mpi=pmix (the default launcher)
submit srun "${GENERATE[@]}"
check_golden srun

# 2. mpirun inside the allocation
export GPTOSS_LAUNCHER=mpirun
submit mpirun "${GENERATE[@]}"
unset GPTOSS_LAUNCHER
check_golden mpirun

# 3. a failing job: the status must propagate through srun, the script and sbatch --wait
submit fail generate --model /nonexistent --tokens "$TOKENS_CSV" --max-tokens 16 --temperature 0 --ids
if ((JOB_STATUS == 0)); then
  show_job fail
  fail "a job with --model /nonexistent exited 0; expected a non-zero status"
fi
grep -q nonexistent "$SCRATCH/fail.err" || {
  show_job fail
  fail "the failing job's stderr does not name the missing model /nonexistent"
}
log "job 'fail': non-zero status $JOB_STATUS propagated, stderr names the cause"

# 4. serve: the API on the first node answers the reference's greedy ids, and SIGUSR1 to the
#    batch script (scancel --signal=B:USR1) drains it: the job completes with exit code 0.
command -v node >/dev/null || fail "node not found (Debian: nodejs): the serve case talks HTTP with it"
t=$SECONDS
job=$(sbatch --parsable --ntasks=8 --cpus-per-task=1 --time=5 --job-name=gptoss-serve --chdir="$SCRATCH" \
  --output="$SCRATCH/serve.out" --error="$SCRATCH/serve.err" \
  "$SBATCH_SCRIPT" serve --model "$MODEL" --port 0 --parallel 2) || fail "sbatch of the serve job failed"
port=""
for ((i = 0; i < JOB_TIMEOUT * 5; i++)); do
  grep -q 'serve: ready' "$SCRATCH/serve.err" 2>/dev/null && break
  squeue -h -j "$job" 2>/dev/null | grep -q . || { show_job serve; fail "the serve job ended before it was ready"; }
  sleep 0.2
done
grep -q 'serve: ready' "$SCRATCH/serve.err" || { show_job serve; fail "the serve job was not ready in $JOB_TIMEOUT s"; }
port=$(grep -o 'listening on http://[^ ]*:[0-9]*/' "$SCRATCH/serve.err" | grep -o '[0-9]*/$' | tr -d /)
grep -q "serving on .* scancel --signal=B:USR1 $job" "$SCRATCH/serve.err" ||
  { show_job serve; fail "the serve job's log does not say where it serves and how to stop it"; }
got=$(node -e '
  const [port, ids] = process.argv.slice(1);
  fetch(`http://127.0.0.1:${port}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: ids.split(",").map(Number), max_tokens: 16, temperature: 0, return_token_ids: true }) })
    .then((r) => r.json()).then((j) => console.log(j.choices[0].token_ids.join(" ")))
    .catch((e) => { console.error(String(e)); process.exit(1); });' "$port" "$TOKENS_CSV") ||
  { show_job serve; fail "the request to the serve job failed"; }
[[ $got == "$GREEDY" ]] || { show_job serve; fail "the serve job answered '$got', expected '$GREEDY'"; }
scancel --signal=USR1 --batch "$job" || fail "scancel --signal=USR1 --batch $job failed"
for ((i = 0; i < JOB_TIMEOUT * 5; i++)); do
  squeue -h -j "$job" 2>/dev/null | grep -q . || break
  sleep 0.2
done
state=$(scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z]* .*ExitCode=[0-9:]*' | tr -s ' ' | cut -d' ' -f1,2) || state=""
info=$(scontrol show job "$job" 2>/dev/null)
[[ $info == *JobState=COMPLETED* && $info == *"ExitCode=0:0"* ]] ||
  { show_job serve; fail "the drained serve job ended as '$state', expected COMPLETED with exit code 0"; }
grep -q 'serve: drained' "$SCRATCH/serve.err" || { show_job serve; fail "the serve job did not drain"; }
log "job 'serve': 8 ranks answered the reference's greedy ids over HTTP on port $port; drained, exit 0 ($((SECONDS - t)) s)"

# 5. the batch script refuses to run outside an allocation
status=0
env -u SLURM_JOB_ID bash "$SBATCH_SCRIPT" "${GENERATE[@]}" >"$SCRATCH/outside.out" 2>"$SCRATCH/outside.err" ||
  status=$?
if ((status == 0)) || ! grep -q 'not inside a Slurm allocation' "$SCRATCH/outside.err"; then
  cat "$SCRATCH/outside.err" >&2
  fail "launch/gptoss.sbatch run outside an allocation exited $status without the expected message"
fi
log "outside an allocation: refused with status $status"

log "PASS"
