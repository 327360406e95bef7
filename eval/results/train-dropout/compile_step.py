"""A bare LoRA step (PEFT model, llmrec's compact loss, AdamW) eager against torch.compile, on 40
next_item rows of runs/ml-h10 in batches of 4: two warm-up steps, then 8 timed. Session 15's
scratch script, kept as run (eval/RESULTS.md, "LoRA dropout's random masks").

    python compile_step.py eager|eager0|compile      # eager0: LoRA dropout 0
"""

import sys
import time

import torch
from peft import get_peft_model
from transformers import DataCollatorForSeq2Seq

from llmrec.data import prepared
from llmrec.training.lora import load_base, lora_config
from llmrec.training.recipe import load_recipe
from llmrec.training.tokens import tokenize_rows
from llmrec.training.trainer import compact_loss

mode = sys.argv[1]
torch.manual_seed(0)
recipe = load_recipe("quick")
if mode == "eager0": recipe = recipe.replace(lora_dropout=0.0)
model, tokenizer = load_base(None, recipe, "fp32", cuda=False)
model = get_peft_model(model, lora_config(recipe))
rows = prepared.load_sft("runs/ml-h10", "next_item", "train").select(range(40))
tokens = tokenize_rows(list(rows["prompt"]), list(rows["completion"]), tokenizer)
ex = [{"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}
      for ids, mask in zip(tokens["input_ids"], tokens["completion_mask"])]
col = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
batches = [dict(col(ex[i:i+4])) for i in range(0, 40, 4)]
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
fwd = model
if mode == "compile":
    fwd = torch.compile(model, dynamic=True)
def step(b):
    loss, _ = compact_loss(fwd, b)
    loss.backward(); opt.step(); opt.zero_grad()
    return float(loss)
t = time.perf_counter(); l = step(batches[0]); print("first step", time.perf_counter()-t, l, flush=True)
t = time.perf_counter(); l = step(batches[1]); print("second step", time.perf_counter()-t, l, flush=True)
n = 0; t = time.perf_counter(); losses = []
for b in batches[2:]:
    losses.append(step(b)); n += int(b["attention_mask"].sum())
dt = time.perf_counter()-t
print(mode, f"{n/dt:.1f} tokens/s over {len(batches)-2} steps, {n} tokens, {dt:.1f}s", [round(x,3) for x in losses], flush=True)
