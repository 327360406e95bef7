"""The prototype of session 13 (kept as run): a copy of a prepared folder whose yes/no prompts carry
the target's train counts (the sample's own event taken out), before yes_no v3 existed. Its wording
differs from v3's ("of the N who rated it" against "of the N other users who watched it").

    python prototype_prompts.py runs/ml-h10 /tmp/probe/ml-h10-stats
"""

import shutil
import sys

import datasets
import numpy as np
import pandas as pd

src, dst = sys.argv[1], sys.argv[2]
inter = pd.read_parquet(f"{src}/interactions.parquet")
cat = pd.read_parquet(f"{src}/catalog.parquet")
train = inter[inter.split == "train"]
n = train.groupby("item_id").size()
m = train[train.liked].groupby("item_id").size()
items = cat.item_id
n_all = n.reindex(items, fill_value=0).to_numpy()
m_all = m.reindex(items, fill_value=0).to_numpy()
sorted_m = np.sort(m_all)
own = {(u, i): bool(l) for u, i, l in zip(train.user_id, train.item_id, train.liked)}
N = dict(zip(items, n_all)); M = dict(zip(items, m_all))

def line(user, item, title):
    nn, mm = N.get(item, 0), M.get(item, 0)
    if (user, item) in own:
        nn -= 1; mm -= own[(user, item)]
    p = int(100 * np.searchsorted(sorted_m, mm, side="left") / len(sorted_m))
    share = f"liked by {round(100 * mm / nn)}% of the {nn} who rated it" if nn else "no ratings yet"
    return f'"{title}": popularity {p}/100, {share}.\n'

d = datasets.load_from_disk(f"{src}/sft/yes_no")
titles = dict(zip(cat.item_id, cat.title))
def rw(r):
    t = titles[r["item_id"]]
    q = f'Will the user like "{t}"?'
    assert r["prompt"].count(q) == 1, r["prompt"]
    r["prompt"] = r["prompt"].replace(q, line(r["user_id"], r["item_id"], t) + q)
    return r
shutil.copytree(src, dst, dirs_exist_ok=True)
out = d.map(rw)
shutil.rmtree(f"{dst}/sft/yes_no")
out.save_to_disk(f"{dst}/sft/yes_no", num_shards={s: 1 for s in out})
print(out["valid"][0]["prompt"]); print(out["train"][5]["prompt"])
