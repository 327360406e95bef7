"""One LoRA step of SmolLM2-135M on 4 prepared rows, fp32 against bf16 autocast, on this CPU.

    .venv/bin/python eval/bench_bf16_step.py      # after `llmrec prepare --out runs/ml-latest-small`

One warm-up step, then one timed step each. Whether bf16 pays depends on the CPU: with AVX-512 BF16
or AMX it is native; without, torch emulates it.
"""
import time, torch
from peft import get_peft_model
from transformers import DataCollatorForSeq2Seq
from llmrec.data import prepared
from llmrec.training.lora import load_base, lora_config
from llmrec.training.recipe import load_recipe
from llmrec.training.tokens import tokenize_rows
from llmrec.training.trainer import compact_loss
recipe = load_recipe("quick")
model, tok = load_base(None, recipe, "fp32", cuda=False)
model = get_peft_model(model, lora_config(recipe))
rows = prepared.load_sft("runs/ml-latest-small", "next_item", "train").select(range(4))
t = tokenize_rows(list(rows["prompt"]), list(rows["completion"]), tok)
ex = [{"input_ids": i, "labels": [x if m else -100 for x, m in zip(i, k)]} for i, k in zip(t["input_ids"], t["completion_mask"])]
batch = dict(DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)(ex))
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
def step(autocast):
    began = time.perf_counter()
    loss, _ = compact_loss(model, batch, None, autocast)
    loss.backward(); opt.step(); opt.zero_grad()
    return time.perf_counter() - began, float(loss)
ntok = int(batch["attention_mask"].sum())
step(None)
for name, ac in [("fp32", None), ("bf16 autocast", lambda: torch.autocast("cpu", dtype=torch.bfloat16))]:
    s, l = step(ac)
    print(f"{name}: {s:.1f} s a step, {ntok / s:.0f} tokens/s (batch of 4, {ntok} tokens), loss {l:.3f}", flush=True)
