# the test split, read once, for r2 with its tuned fusions (the candidate to ship); four shards in two chains, then the baselines
cd /work/main/runs
A=adapter-b-repair2-cf-yn
ev() { OMP_NUM_THREADS=1 ../.venv/bin/python -m llmrec evaluate --model $A --data ml-h10-v3 --k 1,5,10 --users 0 --baselines "" \
         --variants llm,cf --shard $1/4 --explain-users 0 --no-progress --overwrite --out eval-r2/llmrec-$1 > eval-r2-llmrec-$1.log 2>&1; }
mkdir -p eval-r2
( ev 0; ev 2 ) &
( ev 1; ev 3; OMP_NUM_THREADS=1 ../.venv/bin/python -m llmrec evaluate --model $A --data ml-h10-v3 --k 1,5,10 --users 0 --no-llmrec \
    --baselines popularity,itemknn,sasrec --no-progress --overwrite --out eval-r2/baselines > eval-r2-baselines.log 2>&1 ) &
wait
../.venv/bin/python -m llmrec evaluate-merge eval-r2/llmrec-0 eval-r2/llmrec-1 eval-r2/llmrec-2 eval-r2/llmrec-3 eval-r2/baselines --out eval-r2/all > eval-r2-merge.log 2>&1
date > eval-r2.done
