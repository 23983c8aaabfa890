#!/usr/bin/env bash
# End-to-end tests of the gptoss command line, one case per ctest (tests/CMakeLists.txt).
# Each case checks exit status and the message a user would read. Environment: GPTOSS, MPIEXEC,
# COMPARE (compare_logits), FIXTURE (h5_fixture), TEST_DATA, GOLDEN_MODEL (converted by the
# convert_golden fixture).
set -euo pipefail

case_name=$1
scratch=$(mktemp -d "${TMPDIR:-/tmp}/gptoss-cli-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
ref=$TEST_DATA/tiny20/reference.h5
tokens=$("$FIXTURE" ints "$ref" tokens)
greedy=$("$FIXTURE" ints "$ref" greedy | tr ',' ' ')

die() { echo "FAIL: $*" >&2; exit 1; }

# run NP ARGS...: gptoss under mpirun, with a deadline so a hang fails the test.
run() {
  local np=$1; shift
  timeout 240 "$MPIEXEC" --oversubscribe -np "$np" "$GPTOSS" "$@"
}

# expect_failure PATTERN COUNT NP ARGS...: non-zero exit, not a timeout, PATTERN printed COUNT
# times (0 = at least once).
expect_failure() {
  local pattern=$1 count=$2 np=$3; shift 3
  local out status=0
  out=$(run "$np" "$@" 2>&1) || status=$?
  echo "$out"
  [[ $status -ne 0 ]] || die "exit status 0; expected a failure"
  [[ $status -ne 124 ]] || die "timed out (a hang) instead of failing"
  local seen
  seen=$(grep -c -- "$pattern" <<<"$out" || true)
  [[ $seen -gt 0 ]] || die "no message matching '$pattern'"
  [[ $count -eq 0 || $seen -eq $count ]] || die "message '$pattern' printed $seen times, expected $count"
}

# expect_refusal PATTERN NP ARGS...: an option error: exit status 2, PATTERN printed exactly once
# (by rank 0), and refused before the model was loaded (no "loaded" note, within seconds).
expect_refusal() {
  local pattern=$1 np=$2; shift 2
  local out status=0
  SECONDS=0
  out=$(run "$np" "$@" 2>&1) || status=$?
  echo "$out"
  [[ $status -eq 2 ]] || die "exit status $status for '$*'; expected 2 (an option error)"
  [[ $(grep -c -- "$pattern" <<<"$out" || true) -eq 1 ]] || die "'$*': message '$pattern' not printed exactly once"
  ! grep -q "loaded " <<<"$out" || die "'$*': the model was loaded before the option was refused"
  [[ $SECONDS -lt 30 ]] || die "'$*' took ${SECONDS}s to refuse"
}

copy_model() { cp -r "$GOLDEN_MODEL" "$scratch/model"; chmod -R u+w "$scratch/model"; }

# wait_for FILE PATTERN [SECONDS]: until FILE has a line matching PATTERN (the program saying it is
# ready for the next step), or fail after SECONDS (default 120). Signal tests wait on this, never
# on a sleep: a signal that arrives before the program installs its handler proves nothing.
wait_for() {
  local file=$1 pattern=$2 limit=${3:-120}
  SECONDS=0
  until grep -Eq -- "$pattern" "$file" 2>/dev/null; do
    [[ $SECONDS -lt $limit ]] || die "waited ${limit}s for '$pattern' in $(basename "$file"): $(tail -c 400 "$file" 2>/dev/null)"
    sleep 0.05
  done
}

# open_input: a FIFO on fd 3 to feed a chat one line at a time (close_input ends its input). The
# chat must be started with 3>&- so that closing fd 3 here is its end of input.
open_input() { mkfifo "$scratch/in"; exec 3<>"$scratch/in"; }
close_input() { exec 3>&-; }

# write_general_config FILE: a model unlike the released ones (see general_config_consistent).
write_general_config() {
  cat >"$1" <<'JSON'
{"hidden_size": 96, "head_dim": 16, "num_attention_heads": 16, "num_key_value_heads": 4,
 "num_hidden_layers": 3, "layer_types": ["full_attention", "sliding_attention", "sliding_attention"],
 "num_local_experts": 6, "experts_per_token": 2, "intermediate_size": 64, "vocab_size": 301,
 "sliding_window": 5, "max_position_embeddings": 2048, "rope_theta": 10000.0,
 "rope_scaling": {"rope_type": "yarn", "factor": 8.0, "beta_fast": 16.0, "beta_slow": 2.0,
                  "original_max_position_embeddings": 256, "truncate": false},
 "rms_norm_eps": 1e-6, "swiglu_limit": 5.0, "eos_token_id": [299, 300]}
JSON
}

# make_six_kv_model: that model with 6 KV groups, in $scratch/model6: at 2 ranks a rank's block of
# 3 shards is not a node of the summation tree, at 3 and 6 ranks it is.
make_six_kv_model() {
  write_general_config "$scratch/config.json"
  sed -e 's/"num_key_value_heads": 4/"num_key_value_heads": 6/' -e 's/"num_attention_heads": 16/"num_attention_heads": 12/' \
    "$scratch/config.json" >"$scratch/config6.json"
  "$GPTOSS" synth --config "$scratch/config6.json" --out "$scratch/ckpt6" --seed 6
  "$GPTOSS" convert --checkpoint "$scratch/ckpt6" --out "$scratch/model6" --quiet
}

# reduce_scatter_agrees MODEL TOKENS NP...: scored at each NP with every reduction reduce-scattered
# ($scratch/rsNP.h5), the logits are bitwise those of one rank with the default exchange.
reduce_scatter_agrees() {
  local model=$1 ids=$2; shift 2
  run 1 score --model "$model" --tokens "$ids" --logits "$scratch/rs_base.h5" --quiet >/dev/null
  for np in "$@"; do
    GPTOSS_REDUCE_SCATTER_MIN_FLOATS=0 run "$np" score --model "$model" --tokens "$ids" --logits "$scratch/rs$np.h5" --quiet >/dev/null
    "$COMPARE" "$scratch/rs$np.h5" "$scratch/rs_base.h5" --exact
  done
}

case $case_name in
  score_matches_reference)
    out=$(run 2 score --model "$GOLDEN_MODEL" --tokens "$tokens" --logits "$scratch/out.h5" --quiet)
    grep -q '^mean_nll [0-9.]* over 47 tokens$' <<<"$out" || die "no mean_nll line: $out"
    "$COMPARE" "$scratch/out.h5" "$ref" --tol 2e-4
    ;;
  generate_greedy)
    for np in 1 2 4 8; do
      got=$(run "$np" generate --model "$GOLDEN_MODEL" --tokens "$tokens" --max-tokens 16 --temperature 0 --ids --quiet)
      [[ "$got" == "$greedy" ]] || die "np=$np: got '$got', reference '$greedy'"
    done
    ;;
  decode_matches_prefill)
    run 4 score --model "$GOLDEN_MODEL" --tokens "$tokens" --logits "$scratch/prefill.h5" --quiet >/dev/null
    run 4 score --model "$GOLDEN_MODEL" --tokens "$tokens" --chunk 1 --logits "$scratch/decode.h5" --quiet >/dev/null
    "$COMPARE" "$scratch/decode.h5" "$ref" --tol 2e-4
    "$COMPARE" "$scratch/decode.h5" "$scratch/prefill.h5" --tol 2e-4
    ;;
  ranks_agree_bitwise)
    for np in 1 2 4 8; do
      run "$np" score --model "$GOLDEN_MODEL" --tokens "$tokens" --logits "$scratch/np$np.h5" --quiet >/dev/null
    done
    for np in 2 4 8; do "$COMPARE" "$scratch/np$np.h5" "$scratch/np1.h5" --exact; done
    # Sampling: the same seed gives the same tokens at any rank count.
    a=$(run 1 generate --model "$GOLDEN_MODEL" --tokens "$tokens" --temperature 0.9 --top-p 0.95 --seed 11 --ids --quiet)
    b=$(run 8 generate --model "$GOLDEN_MODEL" --tokens "$tokens" --temperature 0.9 --top-p 0.95 --seed 11 --ids --quiet)
    [[ "$a" == "$b" && -n "$a" ]] || die "sampling differs across rank counts: '$a' vs '$b'"
    ;;
  ranks_agree_reduce_scatter)
    # Every reduction through the reduce-scatter exchange (dist/comm.h; by default a 48-token
    # prompt's reductions allgather): the reference's logits, bitwise those of one rank.
    reduce_scatter_agrees "$GOLDEN_MODEL" "$tokens" 2 4 8
    "$COMPARE" "$scratch/rs8.h5" "$ref" --tol 2e-4
    # Rank blocks that are tree nodes (3, 6 ranks) and are not (2): each shard's pieces travel.
    make_six_kv_model
    reduce_scatter_agrees "$scratch/model6" "$(seq -s, 7 11 290)" 2 3 6
    ;;
  bad_rank_count)
    SECONDS=0
    expect_failure "3 ranks cannot split this model" 1 3 score --model "$GOLDEN_MODEL" --tokens 1,2
    [[ $SECONDS -lt 30 ]] || die "took ${SECONDS}s to refuse"
    ;;
  bad_rank_count_4kv)
    cat >"$scratch/config.json" <<'JSON'
{"hidden_size": 64, "head_dim": 8, "num_attention_heads": 16, "num_key_value_heads": 4,
 "num_hidden_layers": 2, "num_local_experts": 8, "num_experts_per_tok": 2, "intermediate_size": 32,
 "vocab_size": 300, "sliding_window": 4, "max_position_embeddings": 1024, "rope_theta": 10000.0,
 "rms_norm_eps": 1e-5, "swiglu_limit": 7.0, "eos_token_id": 299}
JSON
    "$GPTOSS" synth --config "$scratch/config.json" --out "$scratch/ckpt"
    "$GPTOSS" convert --checkpoint "$scratch/ckpt" --out "$scratch/model" --quiet
    expect_failure "must divide num_key_value_heads = 4" 1 8 score --model "$scratch/model" --tokens 1,2
    run 4 score --model "$scratch/model" --tokens 1,2,3 --quiet >/dev/null
    ;;
  wrong_format_version)
    copy_model
    "$FIXTURE" set-u64-attr "$scratch/model/manifest.h5" format_version 999
    expect_failure "model format version 999, but this gptoss reads version 1" 1 2 score --model "$scratch/model" --tokens 1,2
    ;;
  missing_shard)
    copy_model
    rm "$scratch/model/shard-00005-of-00008.h5"
    expect_failure "shard-00005-of-00008.h5: No such file" 1 8 score --model "$scratch/model" --tokens 1,2
    ;;
  truncated_shard)
    copy_model
    truncate -s 100000 "$scratch/model/shard-00002-of-00008.h5"
    expect_failure "shard-00002-of-00008.h5 is 100000 bytes but the manifest recorded" 1 4 score --model "$scratch/model" --tokens 1,2
    ;;
  damaged_shard)
    copy_model
    f=$scratch/model/shard-00006-of-00008.h5
    size=$(stat -c %s "$f")
    printf '\xde\xad\xbe\xef\xde\xad\xbe\xef' | dd of="$f" bs=1 seek=$((size / 2)) conv=notrunc status=none
    expect_failure "shard-00006-of-00008.h5: dataset .* does not match the manifest's checksum" 1 8 score --model "$scratch/model" --tokens 1,2
    ;;
  token_out_of_vocab)
    expect_failure "token id 512 (position 1 of the input) is outside the model's vocabulary \[0, 512)" 1 4 \
      score --model "$GOLDEN_MODEL" --tokens 1,512
    expect_failure "is not a token id" 1 2 generate --model "$GOLDEN_MODEL" --tokens 1,x --ids
    ;;
  bad_option)
    expect_failure "unknown option '--bogus'" 1 4 generate --model "$GOLDEN_MODEL" --tokens 1 --bogus
    expect_failure "model directory /nonexistent" 1 2 score --model /nonexistent --tokens 1
    ;;
  option_ranges)
    # Each value outside its option's range, refused with the option, the value and the range.
    m=(--model "$GOLDEN_MODEL")
    expect_refusal "--max-tokens -5 is outside the allowed range \[1, " 2 generate "${m[@]}" --tokens 1 --max-tokens -5
    expect_refusal "--max-tokens 0 is outside the allowed range \[1, " 2 generate "${m[@]}" --tokens 1 --max-tokens 0
    expect_refusal "--context 0 is outside the allowed range \[1, " 2 generate "${m[@]}" --tokens 1 --context 0
    expect_refusal "--chunk 0 is outside the allowed range \[1, 65536\]" 2 score "${m[@]}" --tokens 1 --chunk 0
    expect_refusal "--temperature -1 is outside the allowed range \[0, 100\]" 4 generate "${m[@]}" --tokens 1 --temperature -1
    expect_refusal "--top-p 2 is outside the allowed range (0, 1\]" 2 generate "${m[@]}" --tokens 1 --top-p 2
    expect_refusal "--top-p 0 is outside the allowed range (0, 1\]" 1 generate "${m[@]}" --tokens 1 --top-p 0
    expect_refusal "--top-p nan is outside the allowed range" 2 chat "${m[@]}" --top-p nan
    expect_refusal "--max-tokens 99999999999999999999 is outside the allowed range" 2 generate "${m[@]}" --tokens 1 \
      --max-tokens 99999999999999999999
    expect_refusal "--prompt-tokens 0 is outside the allowed range \[1, " 2 bench "${m[@]}" --prompt-tokens 0
    expect_refusal "--decode-tokens -1 is outside the allowed range \[1, " 2 bench "${m[@]}" --decode-tokens -1
    expect_refusal "--max-tokens expects a whole number, got '5x'" 2 generate "${m[@]}" --tokens 1 --max-tokens 5x
    # The model-dependent bound, from the manifest before any weight is mapped.
    expect_refusal "--context 200000 is outside the allowed range \[1, 131072\] of this model" 4 \
      generate "${m[@]}" --tokens 1 --context 200000
    ;;
  option_values)
    m=(--model "$GOLDEN_MODEL")
    expect_refusal "--reasoning 'extreme' is not one of low|medium|high" 2 generate "${m[@]}" --tokens 1 --reasoning extreme
    expect_refusal "--date '2025-02-30' is not a date YYYY-MM-DD" 2 generate "${m[@]}" --tokens 1 --date 2025-02-30
    expect_refusal "--date '5 May' is not a date" 1 chat "${m[@]}" --date "5 May"
    expect_refusal "--prompt needs a value, got an empty string" 2 generate "${m[@]}" --prompt ""
    expect_refusal "--max-tokens given twice" 2 generate "${m[@]}" --tokens 1 --max-tokens 3 --max-tokens 4
    expect_refusal "--tokens: entry 2 of '1,,2' is empty" 2 generate "${m[@]}" --tokens 1,,2
    expect_refusal "--tokens: entry 1 of ',1' is empty" 2 score "${m[@]}" --tokens ,1
    expect_refusal "--tokens: entry 3 of '1,2,' is empty" 2 score "${m[@]}" --tokens 1,2,
    expect_refusal "--tokens: entry 2 of '1,-2' is not a token id" 2 score "${m[@]}" --tokens 1,-2
    expect_refusal "--tokens: entry 1 of '4294967296' is too large" 2 score "${m[@]}" --tokens 4294967296
    expect_refusal "--tokens: no token ids given" 2 score "${m[@]}" --tokens " "
    # Single-process commands: the same table, the same status.
    expect_refusal "--layers 0 is outside the allowed range \[1, 1024\]" 1 synth --preset tiny --layers 0 --out "$scratch/x"
    expect_refusal "--preset 'huge' is not one of tiny|small|20b|120b" 1 synth --preset huge --out "$scratch/x"
    [[ ! -e "$scratch/x" ]] || die "synth wrote a checkpoint despite a bad option"
    expect_refusal "--decode: entry 2 of '1,,2' is empty" 1 tokenize --decode 1,,2
    expect_refusal "--decode: token id 201088 is outside the vocabulary" 1 tokenize --decode 201088
    expect_refusal "unknown option '--txt'" 1 tokenize --txt hi
    # Separators that are allowed: commas, spaces, both.
    [[ $("$GPTOSS" tokenize --vocab "$VOCAB" --decode "72, 101 108") == "$("$GPTOSS" tokenize --vocab "$VOCAB" --decode 72,101,108)" ]] ||
      die "spaced and comma lists decode differently"
    ;;
  serve_bad_options)
    # gptoss serve refuses its own options before loading (status 2), and a taken port at once
    # (status 1), before the weights are mapped.
    m=(--model "$GOLDEN_MODEL")
    expect_refusal "--host example.com is not a numeric IPv4 or IPv6 address" 2 serve "${m[@]}" --host example.com
    expect_refusal "--port 70000 is outside the allowed range \[0, 65535\]" 2 serve "${m[@]}" --port 70000
    expect_refusal "give --api-key or --api-key-file, not both" 2 serve "${m[@]}" --api-key k --api-key-file "$scratch/k"
    expect_refusal "--api-key-file $scratch/none cannot be read" 2 serve "${m[@]}" --api-key-file "$scratch/none"
    : >"$scratch/empty"
    expect_refusal "must hold the key on its first line" 2 serve "${m[@]}" --api-key-file "$scratch/empty"
    expect_refusal "--parallel 0 is outside the allowed range" 2 serve "${m[@]}" --parallel 0
    # A port already taken: another listener holds it for the length of the check.
    "$GPTOSS" serve "${m[@]}" --port 0 2>"$scratch/first.err" &
    first=$!
    for ((i = 0; i < 200; i++)); do grep -q 'serve: ready' "$scratch/first.err" 2>/dev/null && break; sleep 0.1; done
    port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$scratch/first.err" | grep -o '[0-9]*$')
    [[ -n $port ]] || die "the first server did not start: $(cat "$scratch/first.err")"
    expect_failure "cannot listen on 127.0.0.1 port $port: Address already in use" 1 1 serve "${m[@]}" --port "$port"
    kill -TERM $first
    wait $first || die "the first server did not drain to exit 0 on SIGTERM"
    ;;
  prompt_does_not_fit)
    # 48 prompt tokens in a context of 40: refused before anything is fed, non-zero, with the reason.
    expect_failure "the prompt (48 tokens) does not fit the context (40 tokens)" 1 2 \
      generate --model "$GOLDEN_MODEL" --tokens "$tokens" --context 40 --temperature 0 --ids
    ;;
  context_full_before_max_tokens)
    # 48 prompt tokens, context 52: room for 5 new tokens of the 16 asked for. The 5 come out (the
    # reference's first 5), then the job fails saying why.
    status=0
    out=$(run 2 generate --model "$GOLDEN_MODEL" --tokens "$tokens" --context 52 --max-tokens 16 --temperature 0 --ids \
          --quiet 2>"$scratch/err") || status=$?
    cat "$scratch/err"
    [[ $status -eq 1 ]] || die "exit status $status; expected 1 for a reply the context cut short"
    grep -q "the context is full (52 tokens) after 5 of --max-tokens 16 new tokens" "$scratch/err" || die "no reason given"
    [[ "$out" == "$(cut -d' ' -f1-5 <<<"$greedy")" ]] || die "got '$out', want the reference's first 5 tokens"
    # Room for all 16: a normal stop at --max-tokens, status 0.
    out=$(run 2 generate --model "$GOLDEN_MODEL" --tokens "$tokens" --context 63 --max-tokens 16 --temperature 0 --ids --quiet)
    [[ "$out" == "$greedy" ]] || die "context 63: got '$out', want '$greedy'"
    ;;
  convert_refuses_existing)
    mkdir "$scratch/model" && echo keep >"$scratch/model/precious"
    expect_failure "already exists" 1 1 convert --checkpoint "$TEST_DATA/tiny20/checkpoint" --out "$scratch/model"
    [[ -f "$scratch/model/precious" ]] || die "an existing directory was touched"
    ;;
  convert_missing_file)
    cp -r "$TEST_DATA/tiny20/checkpoint" "$scratch/ckpt" && chmod -R u+w "$scratch/ckpt"
    rm "$scratch/ckpt/model-00000-of-00001.safetensors"
    expect_failure "model-00000-of-00001.safetensors: No such file" 1 1 \
      convert --checkpoint "$scratch/ckpt" --out "$scratch/model"
    [[ ! -e "$scratch/model" ]] || die "a failed conversion left $scratch/model"
    ;;
  convert_config_missing_key)
    cp -r "$TEST_DATA/tiny20/checkpoint" "$scratch/ckpt" && chmod -R u+w "$scratch/ckpt"
    grep -v '"rope_theta"' "$TEST_DATA/tiny20/checkpoint/config.json" >"$scratch/ckpt/config.json"
    expect_failure 'missing key "rope_theta"' 1 1 convert --checkpoint "$scratch/ckpt" --out "$scratch/model"
    ;;
  general_config_consistent)
    # A model unlike the released ones: 4 KV heads of 4 queries, 6 experts (fewer than some
    # rank counts' shards), top-2, a vocabulary that does not divide, other RoPE, mixed layers.
    write_general_config "$scratch/config.json"
    "$GPTOSS" synth --config "$scratch/config.json" --out "$scratch/ckpt" --files 3 --seed 5
    "$GPTOSS" convert --checkpoint "$scratch/ckpt" --out "$scratch/model" --quiet
    ids=$(seq -s, 7 11 290)
    for np in 1 2 4; do
      run "$np" score --model "$scratch/model" --tokens "$ids" --logits "$scratch/np$np.h5" --quiet >/dev/null
    done
    "$COMPARE" "$scratch/np2.h5" "$scratch/np1.h5" --exact
    "$COMPARE" "$scratch/np4.h5" "$scratch/np1.h5" --exact
    run 2 score --model "$scratch/model" --tokens "$ids" --chunk 1 --logits "$scratch/decode.h5" --quiet >/dev/null
    "$COMPARE" "$scratch/decode.h5" "$scratch/np1.h5" --tol 2e-4
    expect_failure "must divide num_key_value_heads = 4" 1 8 score --model "$scratch/model" --tokens 1
    # Six KV groups: at 3 and 6 ranks each rank adds its own shards before the exchange; at 2 ranks
    # (blocks of 3 are not nodes of the summation tree) every shard's partial is exchanged.
    make_six_kv_model
    for np in 1 2 3 6; do
      run "$np" score --model "$scratch/model6" --tokens "$ids" --logits "$scratch/six$np.h5" --quiet >/dev/null
    done
    for np in 2 3 6; do "$COMPARE" "$scratch/six$np.h5" "$scratch/six1.h5" --exact; done
    ;;
  text_generate)
    # Harmony prompt, sampled: the same seed gives the same text at 1 and 8 ranks.
    a=$(run 1 generate --model "$SMALL_MODEL" --prompt "Hello, who are you?" --max-tokens 12 --seed 3 --ids --quiet)
    b=$(run 8 generate --model "$SMALL_MODEL" --prompt "Hello, who are you?" --max-tokens 12 --seed 3 --ids --quiet)
    [[ -n "$a" && "$a" == "$b" ]] || die "harmony generation differs across rank counts: '$a' vs '$b'"
    # --raw sends the text as plain tokens: the same as giving the ids gptoss tokenize makes.
    ids=$("$GPTOSS" tokenize --vocab "$VOCAB" --text "The capital of France is")
    a=$(run 2 generate --model "$SMALL_MODEL" --prompt "The capital of France is" --raw --temperature 0 --max-tokens 8 --ids --quiet)
    b=$(run 4 generate --model "$SMALL_MODEL" --tokens "${ids// /,}" --temperature 0 --max-tokens 8 --ids --quiet)
    [[ -n "$a" && "$a" == "$b" ]] || die "--raw '$a' differs from --tokens '$b'"
    # Text out: the decoded ids.
    text=$(run 2 generate --model "$SMALL_MODEL" --tokens "${ids// /,}" --temperature 0 --max-tokens 8 --quiet)
    want=$("$GPTOSS" tokenize --vocab "$VOCAB" --decode "${b// /,}")
    [[ "$text" == "$want" ]] || die "text output '$text' is not the decoded ids '$want'"
    ;;
  text_refused_on_small_vocab)
    expect_failure "cannot hold the o200k_harmony tokenizer" 1 2 generate --model "$GOLDEN_MODEL" --prompt "hi"
    ;;
  chat_turns)
    # Two turns then end of input: two answers, every rank exits 0.
    out=$(printf 'Hi there\nAnd a second question\n' |
          run 4 chat --model "$SMALL_MODEL" --temperature 0 --max-tokens 150 --ids --quiet)
    [[ $(grep -c '^[0-9][0-9 ]*$' <<<"$out") -eq 2 ]] || die "expected two answers, got: $out"
    ;;
  chat_interrupt)
    # Without mpirun, Ctrl-C (SIGINT) stops the current answer, not the job: the next turn runs
    # to its token limit and end of input ends the job with status 0. Each step waits for the
    # chat to say it is ready for it: the ready line (handlers installed), the first token of
    # the answer, the "stopped" note.
    open_input
    timeout 280 "$GPTOSS" chat --model "$SMALL_MODEL" --max-tokens 400 --ids <"$scratch/in" \
      >"$scratch/out" 2>"$scratch/err" 3>&- &
    job=$!
    wait_for "$scratch/err" "chat ready"
    echo Hi >&3
    wait_for "$scratch/out" "[0-9]"
    kill -INT "$(pgrep -P "$job")"   # gptoss, the child of timeout
    wait_for "$scratch/err" "stopped"
    echo again >&3
    close_input
    status=0
    wait "$job" || status=$?
    cat "$scratch/err"
    [[ $status -eq 0 ]] || die "chat exited with $status"
    counts=$(awk '{print NF}' "$scratch/out" | tr '\n' ' ')
    [[ "$counts" =~ ^[0-9]+\ 400\ $ ]] || die "answer lengths '$counts': want an interrupted one, then 400"
    first=${counts%% *}
    [[ $first -lt 400 ]] || die "the first answer was not interrupted"
    ;;
  mpirun_wrapper)
    # launch/gptoss-mpirun.sh on a one-host hostfile: 2 ranks on the node, greedy tokens exact.
    echo "localhost slots=2" >"$scratch/hosts"
    got=$(timeout 120 "$LAUNCH_DIR/gptoss-mpirun.sh" --hostfile "$scratch/hosts" --per node --ranks-per 2 \
          --threads 1 --bin "$GPTOSS" --mpirun-arg --oversubscribe -- \
          generate --model "$GOLDEN_MODEL" --tokens "$tokens" --max-tokens 16 --temperature 0 --ids --quiet)
    [[ "$got" == "$greedy" ]] || die "got '$got', reference '$greedy'"
    status=0
    timeout 60 "$LAUNCH_DIR/gptoss-mpirun.sh" --hostfile "$scratch/hosts" --per node --ranks-per 2 --threads 1 \
      --bin "$GPTOSS" --mpirun-arg --oversubscribe -- score --model /nonexistent --tokens 1 || status=$?
    [[ $status -ne 0 && $status -ne 124 ]] || die "a failing job gave status $status"
    ;;
  synth_deterministic)
    # The same seed writes the same bytes whatever the file split; another seed does not.
    "$GPTOSS" synth --preset tiny --seed 4 --out "$scratch/a"
    "$GPTOSS" synth --preset tiny --seed 4 --out "$scratch/b" --files 3
    "$GPTOSS" synth --preset tiny --seed 5 --out "$scratch/c"
    [[ -f "$scratch/b/model.safetensors.index.json" && ! -f "$scratch/a/model.safetensors.index.json" ]] || die "file split"
    for d in a b c; do "$GPTOSS" convert --checkpoint "$scratch/$d" --out "$scratch/$d.model" --quiet; done
    run 1 score --model "$scratch/a.model" --tokens 1,2,3,4 --logits "$scratch/a.h5" --quiet >/dev/null
    run 1 score --model "$scratch/b.model" --tokens 1,2,3,4 --logits "$scratch/b.h5" --quiet >/dev/null
    run 1 score --model "$scratch/c.model" --tokens 1,2,3,4 --logits "$scratch/c.h5" --quiet >/dev/null
    "$COMPARE" "$scratch/a.h5" "$scratch/b.h5" --exact
    ! "$COMPARE" "$scratch/a.h5" "$scratch/c.h5" --exact || die "another seed gave the same model"
    ;;
  chat_interrupt_mpirun)
    # Under mpirun, SIGUSR1 (which mpirun forwards to every rank) stops the current answer.
    # Waits as in chat_interrupt; mpirun forwards rank 0's stdin from the FIFO and its stderr.
    open_input
    timeout 280 "$MPIEXEC" --oversubscribe -np 2 "$GPTOSS" chat --model "$SMALL_MODEL" --max-tokens 400 --ids \
      <"$scratch/in" >"$scratch/out" 2>"$scratch/err" 3>&- &
    job=$!
    wait_for "$scratch/err" "chat ready"
    echo Hi >&3
    wait_for "$scratch/out" "[0-9]"
    kill -USR1 "$(pgrep -P "$job")"  # mpirun, the child of timeout
    wait_for "$scratch/err" "stopped"
    echo again >&3
    close_input
    status=0
    wait "$job" || status=$?
    cat "$scratch/err"
    [[ $status -eq 0 ]] || die "the job exited with $status"
    counts=$(awk '{print NF}' "$scratch/out" | tr '\n' ' ')
    [[ "$counts" =~ ^[0-9]+\ 400\ $ && ${counts%% *} -lt 400 ]] || die "answer lengths '$counts': want an interrupted one, then 400"
    ;;
  bench_json)
    # With the read probe: both ranks share this node, so the job's bound is the one node's figure
    # (both ranks reading at once), and the fraction is the job's decode GB/s over it.
    out=$(run 2 bench --model "$GOLDEN_MODEL" --prompt-tokens 24 --decode-tokens 8 --json --quiet)
    echo "$out"
    for key in prefill_tokens_per_s decode_tokens_per_s decode_bytes_per_token job_read_GBps decode_fraction_of_bound; do
      grep -Eq "\"$key\": [0-9]*\.?[0-9]*[1-9]" <<<"$out" || die "no positive $key in: $out"
    done
    grep -q '"ranks": 2' <<<"$out" || die "rank count missing"
    field() { grep -Eo "\"$1\": \[?[0-9.]*" <<<"$out" | grep -Eo '[0-9.]+$'; }
    nodes=$(grep -Eo '"node_read_GBps": \[[0-9., ]*\]' <<<"$out") || die "no node_read_GBps list"
    [[ "$nodes" =~ ^\"node_read_GBps\":\ \[[0-9.]+\]$ ]] || die "2 ranks on one node: want one node figure, got $nodes"
    awk -v node="$(field node_read_GBps)" -v job="$(field job_read_GBps)" -v gbps="$(field decode_GBps)" \
        -v frac="$(field decode_fraction_of_bound)" \
        'BEGIN { exit !(node > 0 && node == job && (frac - gbps / job)^2 < 1e-4) }' ||
      die "the bound is not the node's figure, or the fraction is not decode_GBps / job_read_GBps"
    [[ $(field probe_bytes_per_rank) -ge $((256 << 20)) ]] || die "probe buffer below 256 MiB"
    ;;
  bench_concurrency)
    out=$(run 2 bench --model "$GOLDEN_MODEL" --prompt-tokens 16 --decode-tokens 6 --concurrency 1,3 --no-probe --json --quiet)
    echo "$out"
    [[ $(grep -o '"sequences": [0-9]*' <<<"$out" | tr -dc '0-9\n' | paste -sd,) == "1,3" ]] || die "not one entry per concurrency"
    grep -q '"node_read_GBps": \[\], "probe_bytes_per_rank": 0, "job_read_GBps": 0.000, "decode_fraction_of_bound": 0.000' \
      <<<"$out" || die "--no-probe still reports a bound"
    for key in aggregate_decode_tokens_per_s per_sequence_tokens_per_s bytes_per_step unique_experts_per_layer; do
      [[ $(grep -Eo "\"$key\": [0-9]*\.?[0-9]*[1-9]" <<<"$out" | wc -l) -eq 2 ]] || die "no positive $key per entry"
    done
    ;;
  parallel_too_large)
    # KV memory for every slot is allocated at load: a size the node cannot hold is refused on
    # every rank, with the bytes, before any work.
    printf '{"tokens": [1, 2]}\n' >"$scratch/in.jsonl"
    expect_failure "the KV cache for --parallel 100000 x --context 4096 needs [0-9.]* GB" 0 2 \
      generate --model "$SMALL_MODEL" --batch "$scratch/in.jsonl" --parallel 100000 --context 4096 --quiet
    ;;
  worker_allocation_fails)
    # A worker rank that cannot allocate its run state says so itself, and every rank ends,
    # non-zero. Rank 1 runs with a small address space (a small allocation limit under ASan,
    # which needs a large address space of its own).
    printf '{"tokens": [1, 2]}\n' >"$scratch/in.jsonl"
    args=(generate --model "$SMALL_MODEL" --batch "$scratch/in.jsonl" --parallel 1000 --context 4096 --quiet)
    limit="ulimit -v 3000000"
    if [[ "${ASAN_OPTIONS:-}" == *detect_leaks=0* ]]; then
      limit="export ASAN_OPTIONS=$ASAN_OPTIONS:allocator_may_return_null=1:max_allocation_size_mb=1"
    fi
    status=0
    out=$(timeout 240 "$MPIEXEC" --oversubscribe -np 1 "$GPTOSS" "${args[@]}" : \
      -np 1 bash -c "$limit; exec \"\$0\" \"\$@\"" "$GPTOSS" "${args[@]}" 2>&1) || status=$?
    echo "$out"
    [[ $status -ne 0 && $status -ne 124 ]] || die "exit status $status; expected a failure, not a hang"
    grep -q "rank 1: error: .*cannot allocate the run state" <<<"$out" || die "rank 1 did not say it could not allocate"
    ! grep -q "rank 0: error: .*cannot allocate" <<<"$out" || die "rank 0 claims the allocation failure"
    ;;
  batch_generate)
    # The golden prompt beside other requests, greedy and sampled (own seeds, top-p), long and
    # short prompts: one at a time (--parallel 1) and four at once at 1, 2 and 4 ranks give the
    # same lines, in input order, and the golden prompt gives the reference's greedy tokens.
    {
      printf '{"tokens": [%s], "max_tokens": 16, "temperature": 0}\n' "$tokens"
      printf '{"tokens": [5, 6, 7], "max_tokens": 9, "temperature": 0.8, "seed": 11}\n'
      printf '{"tokens": [100], "max_tokens": 5, "top_p": 0.7, "seed": 3}\n\n'
      printf '{"tokens": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], "max_tokens": 7, "temperature": 0}\n'
      printf '{"tokens": [42], "max_tokens": 12}\n'
    } >"$scratch/in.jsonl"
    want=$(run 1 generate --model "$GOLDEN_MODEL" --batch "$scratch/in.jsonl" --parallel 1 --chunk 8 --quiet)
    echo "$want"
    [[ $(wc -l <<<"$want") -eq 5 ]] || die "expected 5 result lines"
    for i in 0 1 2 3 4; do
      sed -n "$((i + 1))p" <<<"$want" | grep -q "^{\"index\": $i," || die "line $((i + 1)) is not request $i"
    done
    head -1 <<<"$want" | grep -qF "\"tokens\": [${greedy// /, }]" || die "the golden prompt's tokens are not the reference's"
    for np in 1 2 4; do
      got=$(run "$np" generate --model "$GOLDEN_MODEL" --batch "$scratch/in.jsonl" --parallel 4 --chunk 8 --quiet)
      [[ "$got" == "$want" ]] || die "np=$np --parallel 4 differs from one at a time: $got"
    done
    ;;
  batch_bad_file)
    # A malformed file is refused whole, naming the line and the field; nothing is generated.
    printf '{"tokens": [1, 2]}\n{"tokens": [1, 2], "temprature": 0}\n' >"$scratch/bad.jsonl"
    status=0
    err=$(run 2 generate --model "$GOLDEN_MODEL" --batch "$scratch/bad.jsonl" --quiet 2>&1 >"$scratch/out") || status=$?
    echo "$err"
    [[ $status -eq 2 ]] || die "exit status $status, expected 2"
    grep -q 'bad.jsonl:2: .*temprature' <<<"$err" || die "the message does not name line 2 and the key"
    [[ ! -s "$scratch/out" ]] || die "something was generated: $(cat "$scratch/out")"
    printf '{"tokens": [1, 2]}\n{"tokens": [3, 512]}\n' >"$scratch/bad.jsonl"
    err=$(run 1 generate --model "$GOLDEN_MODEL" --batch "$scratch/bad.jsonl" --quiet 2>&1 >"$scratch/out") || status=$?
    grep -q 'bad.jsonl:2: "tokens"\[1\] = 512 is outside the vocabulary' <<<"$err" || die "bad token id not named: $err"
    ;;
  batch_prompt_too_long)
    # A prompt longer than the context gets "context" and an error; the others still run; the
    # exit status says a request could not run.
    long=$(seq -s, 1 40)
    printf '{"tokens": [1, 2, 3], "max_tokens": 3, "temperature": 0}\n{"tokens": [%s]}\n{"tokens": [4], "max_tokens": 2}\n' \
      "${long//,/, }" >"$scratch/in.jsonl"
    status=0
    out=$(run 2 generate --model "$GOLDEN_MODEL" --batch "$scratch/in.jsonl" --context 32 --parallel 2 --quiet) || status=$?
    echo "$out"
    [[ $status -eq 1 ]] || die "exit status $status, expected 1"
    sed -n 2p <<<"$out" | grep -q '"finish_reason": "context", "error": "the prompt has 40 tokens' || die "line 2 lacks the context error"
    sed -n 1p <<<"$out" | grep -q '"finish_reason": "length"}$' || die "request 0 did not run"
    sed -n 3p <<<"$out" | grep -q '"finish_reason": "length"}$' || die "request 2 did not run"
    ;;
  verbose_stats)
    out=$(run 4 generate --model "$GOLDEN_MODEL" --tokens 1,2,3 --max-tokens 4 --temperature 0 --ids --verbose 2>&1)
    for phase in attention experts "allreduce wait" unembedding sampling sent/token; do
      grep -q "^$phase " <<<"$out" || die "no '$phase' row in: $out"
    done
    ;;
  worker_killed)
    # Kill rank 2 in the middle of a long generation: the whole job must end within seconds,
    # non-zero, saying which rank died and how.
    timeout 120 "$MPIEXEC" --oversubscribe -np 4 "$GPTOSS" generate --model "$SMALL_MODEL" --prompt "count" \
      --max-tokens 100000 --ids --quiet >"$scratch/out" 2>"$scratch/err" &
    job=$!
    # Ready: the first token is out, so every rank is inside the generation loop.
    wait_for "$scratch/out" "[0-9]"
    victim=""
    for pid in $(pgrep -f "gptoss generate --model $SMALL_MODEL --prompt count" || true); do
      if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=2'; then victim=$pid; fi
    done
    [[ -n "$victim" ]] || die "no process of rank 2 while the job generates"
    kill -9 "$victim"
    SECONDS=0
    status=0
    wait "$job" || status=$?
    cat "$scratch/err"
    [[ $status -ne 0 && $status -ne 124 ]] || die "job status $status after a rank was killed"
    [[ $SECONDS -lt 30 ]] || die "the job took ${SECONDS}s to end after a rank died"
    grep -Eq "rank 2.*(signal 9|Killed)|signal 9 \(Killed\)" "$scratch/err" || die "stderr does not name the dead rank"
    ! pgrep -f "gptoss generate --model $SMALL_MODEL --prompt count" >/dev/null || die "ranks left running"
    ;;
  sigterm_stops_job)
    timeout 120 "$MPIEXEC" --oversubscribe -np 4 "$GPTOSS" generate --model "$SMALL_MODEL" --prompt "wait" \
      --max-tokens 100000 --ids --quiet >"$scratch/out" 2>"$scratch/err" &
    job=$!
    wait_for "$scratch/out" "[0-9]"
    kill -TERM "$(pgrep -P "$job")"  # mpirun, the child of timeout
    SECONDS=0
    status=0
    wait "$job" || status=$?
    [[ $status -ne 0 && $status -ne 124 ]] || die "job status $status after SIGTERM"
    [[ $SECONDS -lt 30 ]] || die "the job took ${SECONDS}s to stop"
    sleep 1
    ! pgrep -f "gptoss generate --model $SMALL_MODEL --prompt wait" >/dev/null || die "ranks left running"
    ;;
  version)
    # gptoss --version: the project's version, the kernel ISA this CPU gets, MPI and HDF5.
    out=$("$GPTOSS" --version)
    echo "$out"
    grep -q "^gptoss $PROJECT_VERSION (git [^)]*)$" <<<"$out" || die "no 'gptoss $PROJECT_VERSION (git ...)' line"
    isa=portable
    grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && isa=avx2
    [[ $isa == avx2 ]] && grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && isa=avx512
    grep -q "^kernels: $isa " <<<"$out" || die "kernels line does not say $isa, which this CPU supports"
    grep -Eq "^mpi: Open MPI v[0-9]+\.[0-9]+" <<<"$out" || die "no Open MPI version"
    grep -Eq "^hdf5: HDF5 [0-9]+\.[0-9]+\.[0-9]+$" <<<"$out" || die "no HDF5 version"
    h5=$(h5cc -showconfig 2>/dev/null | sed -n 's/^ *HDF5 Version: *//p')
    [[ -z "$h5" ]] || grep -qx "hdf5: HDF5 $h5" <<<"$out" || die "HDF5 line differs from h5cc's $h5"
    ;;
  unreadable_model_dir)
    mkdir "$scratch/model"
    echo "not hdf5" >"$scratch/model/manifest.h5"
    expect_failure "manifest.h5 is not a readable HDF5 file" 1 4 score --model "$scratch/model" --tokens 1
    echo data >"$scratch/file"
    expect_failure "not a directory" 1 2 score --model "$scratch/file" --tokens 1
    ;;
  prompt_not_utf8)
    # Bytes that are not UTF-8 (here Latin-1 "café" and a stray 0xff), refused with the offset of
    # the first bad byte, once, non-zero, on every way text comes in.
    expect_failure "text is not valid UTF-8: bad byte 0xe9 at offset 3 of 4" 1 2 \
      generate --model "$SMALL_MODEL" --prompt $'caf\xe9' --max-tokens 2 --quiet
    expect_failure "text is not valid UTF-8: bad byte 0xff at offset 2 of 3" 1 2 \
      generate --model "$SMALL_MODEL" --prompt $'ab\xff' --raw --max-tokens 2 --quiet
    status=0
    out=$(printf 'hi\xff\n' | run 2 chat --model "$SMALL_MODEL" --max-tokens 2 --ids --quiet 2>&1) || status=$?
    echo "$out"
    [[ $status -ne 0 && $status -ne 124 ]] || die "chat: exit status $status for a line that is not UTF-8"
    [[ $(grep -c "text is not valid UTF-8: bad byte 0xff at offset 2 of 3" <<<"$out") -eq 1 ]] || die "chat: no message"
    status=0
    out=$("$GPTOSS" tokenize --vocab "$VOCAB" --text $'ab\xffc' 2>&1) || status=$?
    [[ $status -eq 1 ]] && grep -q "bad byte 0xff at offset 2 of 4" <<<"$out" || die "tokenize: status $status: $out"
    ;;
  model_is_not_converted)
    # A Hugging Face checkpoint (or an empty directory) given to --model: told to convert it.
    expect_failure "checkpoint/manifest.h5: No such file or directory (not a converted model, or its conversion did not finish; run gptoss convert)" 1 2 \
      score --model "$TEST_DATA/tiny20/checkpoint" --tokens 1
    mkdir "$scratch/empty"
    expect_failure "empty/manifest.h5: No such file or directory" 1 1 generate --model "$scratch/empty" --tokens 1
    ;;
  convert_config_absurd)
    # Sizes whose products overflow: refused naming the key, nothing written.
    cp -r "$TEST_DATA/tiny20/checkpoint" "$scratch/ckpt" && chmod -R u+w "$scratch/ckpt"
    sed 's/"hidden_size": 64/"hidden_size": 4611686018427387904/' "$TEST_DATA/tiny20/checkpoint/config.json" \
      >"$scratch/ckpt/config.json"
    expect_failure '"hidden_size" must be in \[1, 16777216\], got 4611686018427387904' 1 1 \
      convert --checkpoint "$scratch/ckpt" --out "$scratch/model"
    [[ ! -e "$scratch/model" ]] || die "a refused conversion left $scratch/model"
    ;;
  batch_absurd_values)
    # max_tokens at 2^63-1 ends at the full context, not in a hang or an overflow.
    printf '{"tokens": [1, 2], "max_tokens": 9223372036854775807, "temperature": 0}\n' >"$scratch/in.jsonl"
    out=$(run 2 generate --model "$GOLDEN_MODEL" --batch "$scratch/in.jsonl" --context 12 --quiet)
    echo "$out"
    grep -q '^{"index": 0, "tokens": \[[0-9, ]*\], "text": "", "finish_reason": "context"}$' <<<"$out" ||
      die "max_tokens 2^63-1 did not end at the context"
    # A line that is not an object, a temperature no float holds: the file is refused, status 2.
    for line in '[1, 2]' '{"tokens": [1], "temperature": 1e300}'; do
      printf '{"tokens": [1]}\n%s\n' "$line" >"$scratch/bad.jsonl"
      status=0
      err=$(run 1 generate --model "$GOLDEN_MODEL" --batch "$scratch/bad.jsonl" --quiet 2>&1 >"$scratch/out") || status=$?
      echo "$err"
      [[ $status -eq 2 ]] || die "'$line': exit status $status, expected 2"
      grep -Eq 'bad.jsonl:2: (\[1,2\] is not a JSON object|"temperature" = 1e300 is not a number in \[0, 100\])' <<<"$err" ||
        die "'$line': the message does not name line 2"
      [[ ! -s "$scratch/out" ]] || die "something was generated for '$line'"
    done
    ;;
  manifest_lies)
    # A manifest whose shard count disagrees with its own config.json, or is 0: refused at start-up.
    copy_model
    "$FIXTURE" set-u64-attr "$scratch/model/manifest.h5" num_shards 4
    expect_failure "manifest.h5: num_shards 4 does not match num_key_value_heads 8" 1 2 score --model "$scratch/model" --tokens 1
    "$FIXTURE" set-u64-attr "$scratch/model/manifest.h5" num_shards 0
    expect_failure "manifest.h5: missing num_shards" 1 1 score --model "$scratch/model" --tokens 1
    # A config_json or tokenizer dataset declared at 2 GiB but storing nothing (the file stays
    # small): refused by its size, not read into 2 GiB of fill bytes.
    rm -rf "$scratch/model" && copy_model
    "$FIXTURE" declare-u8 "$scratch/model/manifest.h5" config_json 2147483648
    [[ $(stat -c %s "$scratch/model/manifest.h5") -lt 10000000 ]] || die "the fixture stored the dataset"
    expect_failure "manifest.h5: dataset config_json holds 2147483648 bytes, more than the 1048576 it may" 1 2 \
      score --model "$scratch/model" --tokens 1
    cp -r "$SMALL_MODEL" "$scratch/small" && chmod -R u+w "$scratch/small"
    "$FIXTURE" declare-u8 "$scratch/small/manifest.h5" tokenizer 2147483648
    expect_failure "manifest.h5: dataset tokenizer holds 2147483648 bytes, more than the 67108864 it may" 1 2 \
      generate --model "$scratch/small" --prompt hi --max-tokens 1
    ;;
  option_conflicts)
    # Options that cannot go together, or a required one left out: status 2, before loading.
    m=(--model "$GOLDEN_MODEL")
    printf '{"tokens": [1]}\n' >"$scratch/in.jsonl"
    expect_refusal "--batch takes its prompts from the file; drop --prompt / --tokens" 2 \
      generate "${m[@]}" --tokens 1 --batch "$scratch/in.jsonl"
    expect_refusal "give exactly one of --tokens IDS or --prompt TEXT" 2 generate "${m[@]}"
    expect_refusal "give exactly one of --tokens IDS or --prompt TEXT" 2 score "${m[@]}" --tokens 1 --prompt hi
    expect_refusal "gptoss score: --model is required" 2 score --tokens 1
    expect_refusal "--parallel 0 is outside the allowed range \[1, 1000000\]" 2 generate "${m[@]}" --batch "$scratch/in.jsonl" --parallel 0
    expect_refusal "gptoss tokenize: give exactly one of --text, --file and --decode" 1 tokenize --text a --decode 1
    expect_refusal "--max-tokens needs a value" 2 generate "${m[@]}" --tokens 1 --max-tokens
    ;;
  placement_threads)
    # Each rank's default thread count is its share of the CPUs in its affinity mask (Σ over them
    # of 1 / the node's ranks whose mask holds it: whole CPUs, at least 1); --threads, else
    # OMP_NUM_THREADS, wins. Open MPI's default binding (a core per rank at -np <= 2) ignores the
    # launcher's own mask, so the runs under taskset pass --bind-to none.
    g=(generate --model "$GOLDEN_MODEL" --tokens 1,2 --max-tokens 1 --ids --verbose --quiet)
    mpi=(timeout 120 "$MPIEXEC" --oversubscribe)
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc heeds OMP_NUM_THREADS
    half=$((cpus / 2 > 0 ? cpus / 2 : 1))
    first=$(awk '/^Cpus_allowed_list/ {split($2, a, /[-,]/); print a[1]}' /proc/self/status)
    # expect_threads WANT COMMAND...: WANT is each rank's "threads (source)", comma-separated, in
    # rank order ("": any). Every "cpu share" line must also agree with the share it prints.
    expect_threads() {
      local want=$1 out got; shift
      out=$("$@" 2>&1) || die "$*: exit status $?: $out"
      grep '^placement: rank' <<<"$out"
      awk -F'[:(),]' '/^placement: rank [0-9]+: .*\(cpu share\)/ {
          split($3, t, " "); n = split($NF, s, " "); want = int(s[n] + 1e-6); if (want < 1) want = 1
          if (t[1] != want) { print "rank" $2 ": " t[1] " threads for share " s[n]; bad = 1 } }
        END { exit bad }' <<<"$out" || die "$*: a default thread count is not the rank's CPU share"
      got=$(sed -n 's/^placement: rank [0-9]*: \([0-9]*\) thread(s) (\([^)]*\)).*/\1 (\2)/p' <<<"$out" | paste -sd,)
      [[ -z "$want" || "$got" == "$want" ]] || die "$*: placement '$got', want '$want'"
      [[ $(grep -c '^placement: rank [0-9]*: ' <<<"$out") -gt 0 ]] || die "$*: no placement printed"
    }
    expect_threads "$cpus (cpu share)" env -u OMP_NUM_THREADS timeout 120 "$GPTOSS" "${g[@]}"
    expect_threads "$cpus (cpu share)" env -u OMP_NUM_THREADS "${mpi[@]}" --bind-to none -np 1 "$GPTOSS" "${g[@]}"
    expect_threads "$half (cpu share),$half (cpu share)" env -u OMP_NUM_THREADS "${mpi[@]}" --bind-to none -np 2 "$GPTOSS" "${g[@]}"
    # Open MPI's default binding (a core each, disjoint masks): what it gives depends on the
    # machine's cores, so only the rule is checked.
    expect_threads "" env -u OMP_NUM_THREADS "${mpi[@]}" -np 2 "$GPTOSS" "${g[@]}"
    expect_threads "1 (cpu share)" env -u OMP_NUM_THREADS taskset -c "$first" timeout 120 "$GPTOSS" "${g[@]}"
    expect_threads "1 (cpu share),1 (cpu share)" \
      env -u OMP_NUM_THREADS taskset -c "$first" "${mpi[@]}" --bind-to none -np 2 "$GPTOSS" "${g[@]}"
    [[ $(env -u OMP_NUM_THREADS taskset -c "$first" "${mpi[@]}" --bind-to none -np 2 "$GPTOSS" "${g[@]}" 2>&1 |
         grep -c '1 CPU(s) in mask of [0-9]* online, share 0.50$') -eq 2 ]] || die "two ranks on one CPU: not a half share each"
    expect_threads "3 (--threads)" env OMP_NUM_THREADS=2 timeout 120 "$GPTOSS" "${g[@]}" --threads 3
    expect_threads "3 (--threads),3 (--threads)" env OMP_NUM_THREADS=2 "${mpi[@]}" -np 2 "$GPTOSS" "${g[@]}" --threads 3
    expect_threads "2 (OMP_NUM_THREADS),2 (OMP_NUM_THREADS)" env OMP_NUM_THREADS=2 "${mpi[@]}" -np 2 "$GPTOSS" "${g[@]}"
    ;;
  *)
    die "unknown case $case_name"
    ;;
esac
echo "PASS: $case_name"
