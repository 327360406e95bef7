"""Text-aware item embeddings: each title as the LLM reads it, to start SASRec's item table from.

An item with few train events barely moves its SASRec embedding from where initialisation put
it. Starting it at the LLM's reading of its title (mean-pooled last hidden states, reduced to
SASRec's width by PCA) puts a rarely seen sequel next to its well-trained predecessor before any
training. Whether that helps is measured, not assumed (eval/text_sasrec.py, eval/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# SASRec initialises its item table at this standard deviation; projected text embeddings are
# scaled to it, so only their directions differ from a random start
INIT_STD = 0.02


def title_embeddings(titles: Sequence[str], model: str | None = None, batch_size: int = 64) -> np.ndarray:
    """(titles, hidden) mean-pooled last hidden states of ``model`` (default: the embedded one) over
    each title's own tokens, in float32 on the CPU. Titles are batched by length (little padding)."""
    import torch
    from transformers import AutoModel

    from llmrec.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(model)
    tokenizer.padding_side = "right"  # real tokens at positions 0..n-1, as in a prompt of their own
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    net = AutoModel.from_pretrained(resolve_model(model), dtype=torch.float32).eval()
    order = np.argsort([len(t) for t in titles], kind="stable")
    out = np.zeros((len(titles), net.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(titles), batch_size):
            rows = order[start : start + batch_size]
            enc = tokenizer([str(titles[i]) or " " for i in rows], padding=True, add_special_tokens=False,
                            return_tensors="pt")  # fmt: skip
            hidden = net(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out[rows] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()
    return out


def project(embeddings: np.ndarray, dim: int, std: float = INIT_STD) -> np.ndarray:
    """``embeddings`` reduced to ``dim`` columns by PCA (centred; the top principal directions),
    scaled to an overall standard deviation of ``std``."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    reduced = x @ vt[:dim].T
    if reduced.shape[1] < dim:  # fewer items or hidden units than the width: pad with zeros
        reduced = np.pad(reduced, ((0, 0), (0, dim - reduced.shape[1])))
    scale = reduced.std()
    return (reduced * (std / scale if scale > 0 else 0.0)).astype(np.float32)
