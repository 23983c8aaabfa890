#!/bin/bash
# ctest serve_curl (label serve): the README's curl commands against `gptoss serve` on the small
# model (2 ranks): a streamed chat (SSE chunks ending in [DONE]), a whole chat, a completion from
# token ids, /health and /v1/models, a missing key's 401; then SIGTERM to the ranks drains it to 0.
# Environment: GPTOSS, SMALL_MODEL, MPIRUN (default mpirun).
set -euo pipefail
die() { echo "FAIL: serve_curl: $*" >&2; [[ -f ${err:-} ]] && cat "$err" >&2; exit 1; }
command -v curl >/dev/null || die "curl is not installed (Debian: curl)"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/gptoss-curl-XXXXXX")
err=$scratch/server.err
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
"${MPIRUN:-mpirun}" --oversubscribe -np 2 -x OMP_NUM_THREADS=1 "$GPTOSS" serve --model "$SMALL_MODEL" --port 0 \
  --context 512 --api-key sk-curl >"$scratch/server.out" 2>"$err" &
server=$!
trap 'kill -KILL $server 2>/dev/null || true; rm -rf "$scratch"' EXIT
for ((i = 0; i < 600; i++)); do
  grep -q 'serve: ready' "$err" && break
  kill -0 $server 2>/dev/null || die "the server exited before it was ready"
  sleep 0.2
done
grep -q 'serve: ready' "$err" || die "the server was not ready in 120 s"
port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$err" | grep -o '[0-9]*$')
key=(-H 'Authorization: Bearer sk-curl')

[[ $(curl -s "localhost:$port/health") == '{"status":"ok"}' ]] || die "/health is not ok"
curl -s "${key[@]}" "localhost:$port/v1/models" | grep -q '"id":"small.model"' || die "/v1/models lacks the model"

# The README's streamed chat, verbatim but for the port and the key.
curl -s "${key[@]}" "localhost:$port/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model":"gpt-oss","messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":12}' >"$scratch/stream"
grep -q '^data: {"id":"chatcmpl-[0-9a-f]*","object":"chat.completion.chunk"' "$scratch/stream" || die "no chunk: $(head -c 300 "$scratch/stream")"
[[ $(grep -c '"delta":{"role":"assistant"}' "$scratch/stream") == 1 ]] || die "the role chunk is not there once"
grep -q '"finish_reason":"\(length\|stop\)"' "$scratch/stream" || die "no finish chunk"
[[ $(tail -n 2 "$scratch/stream" | head -n 1) == 'data: [DONE]' ]] || die "the stream does not end with [DONE]"

curl -s "${key[@]}" "localhost:$port/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":12}' >"$scratch/whole"
grep -q '"object":"chat.completion".*"usage":{"prompt_tokens":[0-9]*,"completion_tokens":[0-9]*' "$scratch/whole" ||
  die "no chat.completion with usage: $(cat "$scratch/whole")"

curl -s "${key[@]}" "localhost:$port/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt":[13225,11,2375],"max_tokens":5,"temperature":0,"return_token_ids":true}' >"$scratch/ids"
grep -q '"token_ids":\[[0-9]*,[0-9]*,[0-9]*,[0-9]*,[0-9]*\]' "$scratch/ids" || die "no 5 token ids: $(cat "$scratch/ids")"

code=$(curl -s -o "$scratch/401" -w '%{http_code}' "localhost:$port/v1/models")
[[ $code == 401 ]] && grep -q '"code":"invalid_api_key"' "$scratch/401" || die "without the key: $code $(cat "$scratch/401")"

# SIGTERM to the ranks themselves (as Slurm's scancel or time limit sends it; the node tests send
# SIGUSR1 to mpirun): rank 0 drains, the workers ignore it and wait for rank 0.
pkill -TERM -P $server -f 'gptoss serve' || die "no rank processes under mpirun"
status=0
wait $server || status=$?
[[ $status == 0 ]] || die "the drained server exited $status"
grep -q 'serve: drained' "$err" || die "the server did not drain"
echo "serve_curl: health, models, streamed and whole chat, ids, 401, SIGTERM drain to 0"
