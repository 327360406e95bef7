"""Yes/no AUC of an adapter folder or a checkpoint (no llmrec manifest needed) on a prepared
folder's rendered prompts: the LLM alone. Session 13's prototype scoring, kept as run.

    python score_prompts.py ADAPTER_OR_CHECKPOINT PREPARED [valid|test]
"""

import json
import sys

import datasets
import numpy as np
from sklearn.metrics import roc_auc_score

from llmrec.data import prepared
from llmrec.decoding.backends import load_backend
from llmrec.decoding.recommender import Recommender

model, data = sys.argv[1], sys.argv[2]
split = sys.argv[3] if len(sys.argv) > 3 else "valid"
d = datasets.load_from_disk(f"{data}/sft/yes_no")[split]
catalog, inter, info = prepared.load(data)
engine = load_backend("hf", "smollm2-135m-instruct", model, "cpu", 8)
rec = Recommender(engine, catalog, inter, info)
p = np.array(rec.p_yes(d["prompt"]))
y = np.array(d["label"])
users = np.array(d["user_id"])
ua = [roc_auc_score(y[users == u], p[users == u]) for u in set(users) if len(set(y[users == u])) == 2]
print(json.dumps({"model": model, "split": split, "n": len(y), "auc": round(roc_auc_score(y, p), 4),
                  "uauc": round(float(np.mean(ua)), 4), "std_p": round(float(p.std()), 4)}), flush=True)
np.save(f"{model.rstrip('/')}-{split}-p.npy", p)
