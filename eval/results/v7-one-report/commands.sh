#!/bin/bash
# ml-latest-small, test, all 671 users: the shipped default, the guide alone and fused generate in one report
cd /work/main/runs
PY="env PYTHONPATH=/tmp/siteY OMP_NUM_THREADS=1 /work/main/.venv/bin/python -m llmrec"
run_shard() {
  $PY evaluate --data ml-h10-v3 --k 1,5,10 --tasks next_item --users 0 --baselines "" --variants cf,generate \
    --shard $1/2 --explain-users 0 --no-progress --out eval-v7/llmrec-$1 > eval-v7-llmrec-$1.log 2>&1
}
mkdir -p eval-v7
run_shard 0 && $PY evaluate --data ml-h10-v3 --k 1,5,10 --tasks next_item --users 0 --no-llmrec \
    --baselines popularity,itemknn,sasrec --no-progress --out eval-v7/baselines > eval-v7-baselines.log 2>&1 &
run_shard 1 &
wait
echo finished > eval-v7.done
