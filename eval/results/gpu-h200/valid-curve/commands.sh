#!/usr/bin/env bash
# valid-split next-item NDCG@10 of the H200 run b along its samples (200 valid users, seed 0), LLM alone; two one-thread queues
cd /work/main/runs
ev() { OMP_NUM_THREADS=1 ../.venv/bin/python -m llmrec evaluate --model "$1" --data ml-h10-all-next --split valid --k 1,5,10 \
        --tasks next_item --users 200 --baselines "" --variants "" --explain-users 0 --no-progress --overwrite --out "$2" > "$2.log" 2>&1; }
( ev adapter-v3-llm curve-h200/shipped; ev gpu-h200/b.snapshots/checkpoint-800 curve-h200/b-800 ) &
( ev gpu-h200/b.snapshots/checkpoint-300 curve-h200/b-300; ev adapter-h200-b curve-h200/b-final ) &
wait
date > curve-h200.done
