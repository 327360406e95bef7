#!/usr/bin/env bash
# The first benchmark in eval/RESULTS.md: llmrec and the three baselines, leave-one-out, on one dataset.
#
#   eval/benchmark.sh DATA OUT [LLMREC_USERS] [SHARDS]
#
# DATA as `llmrec evaluate --data` takes it. The baselines are tuned and scored once, over every
# user with a test event. llmrec is scored on LLMREC_USERS seeded users (0, the default: all of
# them), in SHARDS parts of interleaved users, so a run cut short keeps its finished parts and a
# re-run skips them. Two merged reports: OUT/all (each system over the users it was scored on)
# and OUT/common (every system over the users llmrec was scored on). BASELINES (environment)
# narrows the baselines, e.g. BASELINES=popularity,itemknn.
set -euo pipefail
data=$1 out=$2 users=${3:-0} shards=${4:-1}
common=(--data "$data" --k 1,5,10 --tasks next_item,yes_no --no-progress)
[ -d "$out/baselines" ] || llmrec evaluate "${common[@]}" --users 0 --no-llmrec --baselines "${BASELINES:-popularity,itemknn,sasrec}" --out "$out/baselines"
for ((i = 0; i < shards; i++)); do
  [ -d "$out/llmrec-$i" ] ||
    llmrec evaluate "${common[@]}" --users "$users" --baselines "" --shard "$i/$shards" --out "$out/llmrec-$i"
done
llmrec evaluate-merge "$out"/llmrec-* "$out/baselines" --common-users --out "$out/common" --overwrite
[ "$users" != 0 ] || llmrec evaluate-merge "$out"/llmrec-* "$out/baselines" --out "$out/all" --overwrite
