#!/bin/bash
# the fused default (rerank) and the collaborative model alone on test, in 2 shards, and the baselines
cd /work/main/runs
out=eval-v2-fused
common="--data ml-h10 --k 1,5,10 --tasks next_item,yes_no --no-progress"
run_shard() { [ -d $out/llmrec-$1 ] || OMP_NUM_THREADS=1 ../.venv/bin/llmrec evaluate $common --users 0 --baselines "" --variants cf --shard $1/2 --explain-users 5 --out $out/llmrec-$1 > $out/log-$1.txt 2>&1; }
mkdir -p $out
if [ "$1" = a ]; then run_shard 0; fi
if [ "$1" = b ]; then run_shard 1; fi
if [ "$1" = c ]; then [ -d $out/baselines ] || OMP_NUM_THREADS=1 ../.venv/bin/llmrec evaluate $common --users 0 --no-llmrec --baselines popularity,itemknn,sasrec --out $out/baselines > $out/log-baselines.txt 2>&1; fi
