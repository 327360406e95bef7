"""SASRec (Kang and McAuley, 2018) trained with full cross-entropy over the catalogue.

Full softmax instead of the original sampled binary loss: Klenitskiy and Vasilev (RecSys 2023)
show it is what makes SASRec the strong baseline it is in recent comparisons. A compact
implementation written for llmrec (causal transformer over item embeddings, tied output
embeddings); it trains on each user's train sequence and scores every item after a history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn


class _Net(nn.Module):
    def __init__(self, n_items: int, dim: int, layers: int, heads: int, dropout: float, max_len: int) -> None:
        super().__init__()
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)  # 0 pads; item i is i + 1
        self.positions = nn.Embedding(max_len, dim)
        block = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        # Small initial embeddings: with nn.Embedding's N(0, 1) the tied output logits start with a
        # standard deviation of ~sqrt(dim), a near one-hot softmax that full cross-entropy learns from slowly.
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        n = seq.shape[1]
        x = self.items(seq) + self.positions(torch.arange(n, device=seq.device))
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool, device=seq.device), diagonal=1)
        h = self.encoder(self.dropout(x), mask=causal, src_key_padding_mask=seq == 0)
        return self.norm(h)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.items.weight[1:].T  # tied output embeddings, padding row left out


class SASRec:
    """Self-attentive sequential recommendation with full cross-entropy.

    Args:
        dim: Embedding size.
        layers: Transformer blocks.
        heads: Attention heads.
        dropout: Dropout rate.
        max_len: Newest items of a sequence the model sees.
        epochs: Training epochs (the evaluator may stop earlier on the valid split).
        batch_size: Users per batch.
        lr: Adam learning rate.
        seed: Seed of initialisation and batching.
    """

    def __init__(self, dim: int = 64, layers: int = 2, heads: int = 2, dropout: float = 0.2, max_len: int = 50,
                 epochs: int = 200, batch_size: int = 32, lr: float = 1e-3, seed: int = 0) -> None:  # fmt: skip
        self.options = dict(dim=dim, layers=layers, heads=heads, dropout=dropout, max_len=max_len)
        self.max_len, self.epochs, self.batch_size, self.lr, self.seed = max_len, epochs, batch_size, lr, seed
        self.net: _Net | None = None
        self.epochs_run = 0

    def _pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded item ids (+1; 0 pads) and each row's length. Right padding keeps every real
        position's causal window free of padding, so no attention row is fully masked."""
        out = torch.zeros(len(sequences), self.max_len, dtype=torch.long)
        lengths = torch.zeros(len(sequences), dtype=torch.long)
        for i, s in enumerate(sequences):
            s = list(s)[-self.max_len :]
            out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long) + 1
            lengths[i] = len(s)
        return out, lengths

    def fit(self, sequences: Sequence[Sequence[int]], n_items: int,
            validate: Callable[[SASRec], float] | None = None, patience: int = 5, every: int = 5) -> SASRec:  # fmt: skip
        """Train; with ``validate`` (higher is better) keep the best epoch and stop after ``patience``
        checks (every ``every`` epochs) without improvement."""
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.net = _Net(n_items, **self.options)
        long = [list(s)[-(self.max_len + 1) :] for s in sequences if len(s) >= 2]
        inputs, _ = self._pad([s[:-1] for s in long])
        targets = self._pad([s[1:] for s in long])[0] - 1  # -1: padding, no target
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        best, best_state, stale = -np.inf, None, 0
        for epoch in range(1, self.epochs + 1):
            self.net.train()
            for batch in np.array_split(rng.permutation(len(long)), max(1, len(long) // self.batch_size)):
                logits = self.net.logits(self.net(inputs[batch]))
                loss = nn.functional.cross_entropy(logits.reshape(-1, n_items), targets[batch].reshape(-1), ignore_index=-1)
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.epochs_run = epoch
            if validate is not None and epoch % every == 0:
                value = validate(self)
                if value > best:
                    best, stale = value, 0
                    best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
                else:
                    stale += 1
                    if stale >= patience:
                        break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        return self

    @torch.no_grad()
    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        self.net.eval()
        out = []
        for start in range(0, len(histories), 256):
            seq, lengths = self._pad(histories[start : start + 256])
            last = self.net(seq)[torch.arange(len(seq)), (lengths - 1).clamp(min=0)]
            out.append(self.net.logits(last).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.net.items.num_embeddings - 1))
