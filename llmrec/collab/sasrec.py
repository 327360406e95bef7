"""SASRec (Kang and McAuley, 2018) trained with cross-entropy over the catalogue.

Full softmax instead of the original sampled binary loss: Klenitskiy and Vasilev (RecSys 2023)
show it is what makes SASRec the strong baseline it is in recent comparisons. A compact
implementation written for llmrec (causal transformer over item embeddings, tied output
embeddings); it trains on each user's train sequence and scores every item after a history.

The softmax's cost is (positions of an epoch) x (items). Where that passes ``FULL_SOFTMAX_BUDGET``
(a 50k-user, 17k-item log: ~12 min an epoch on two cores with the full softmax) the loss is a
sampled softmax instead: the target against ``negatives`` items drawn uniformly per batch and
shared by its positions (a draw that hits the target is masked), the form the same paper measures
close to the full one. The choice is reported (``loss``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

# Logits an epoch may cost before the sampled softmax is used: ml-latest-small (~32k positions x
# 9k items, 0.3e9) stays full; the 50k-user synthetic Amazon log (~284k x 17k, 4.8e9) is sampled.
FULL_SOFTMAX_BUDGET = 2e9
NEGATIVES = 512


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
        negatives: Sampled negatives per batch; 0 = full softmax; None = full softmax unless an
            epoch would cost more than ``FULL_SOFTMAX_BUDGET`` logits, then ``NEGATIVES``.
        item_init: (items, dim) starting item embeddings, e.g. the LLM's reading of each title
            (:func:`llmrec.collab.text.project`); default random.
    """

    def __init__(self, dim: int = 64, layers: int = 2, heads: int = 2, dropout: float = 0.2, max_len: int = 50,
                 epochs: int = 200, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                 negatives: int | None = None, item_init: np.ndarray | None = None) -> None:  # fmt: skip
        self.options = dict(dim=dim, layers=layers, heads=heads, dropout=dropout, max_len=max_len)
        self.item_init = item_init
        self.max_len, self.epochs, self.batch_size, self.lr, self.seed = max_len, epochs, batch_size, lr, seed
        self.negatives = negatives
        self.net: _Net | None = None
        self.epochs_run = 0
        self.loss = ""

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
        checks without improvement. Checks come every ``every`` epochs, or every epoch once an epoch
        holds 150k positions or more (a big log learns more per epoch, and an epoch costs more)."""
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.net = _Net(n_items, **self.options)
        if self.item_init is not None:
            if self.item_init.shape != (n_items, self.options["dim"]):
                raise ValueError(f"item_init: expected shape {(n_items, self.options['dim'])}, got {self.item_init.shape}")
            with torch.no_grad():
                self.net.items.weight[1:] = torch.as_tensor(self.item_init, dtype=torch.float32)
        long = [list(s)[-(self.max_len + 1) :] for s in sequences if len(s) >= 2]
        inputs, lengths = self._pad([s[:-1] for s in long])
        targets = self._pad([s[1:] for s in long])[0] - 1  # -1: padding, no target
        positions = int(lengths.sum())
        negatives = self.negatives
        if negatives is None:
            negatives = NEGATIVES if positions * n_items > FULL_SOFTMAX_BUDGET else 0
        negatives = min(negatives, n_items)
        self.loss = f"sampled softmax, {negatives} negatives a batch" if negatives else "full softmax"
        every = max(1, min(every, -(-150_000 // max(1, positions))))
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        best, best_state, stale = -np.inf, None, 0
        for epoch in range(1, self.epochs + 1):
            self.net.train()
            for batch in np.array_split(rng.permutation(len(long)), max(1, len(long) // self.batch_size)):
                width = int(lengths[batch].max())  # right padding: the columns past it are all padding
                hidden = self.net(inputs[batch, :width])
                target = targets[batch, :width]
                real = target >= 0  # the head only where there is a target
                loss = self._loss(hidden[real], target[real], n_items, negatives)
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

    def _loss(self, hidden: torch.Tensor, target: torch.Tensor, n_items: int, negatives: int) -> torch.Tensor:
        if not negatives:
            return nn.functional.cross_entropy(self.net.logits(hidden), target)
        drawn = torch.randint(n_items, (negatives,))
        table = self.net.items.weight[1:]
        positive = (hidden * table[target]).sum(-1, keepdim=True)
        sampled = hidden @ table[drawn].T
        sampled = sampled.masked_fill(drawn[None, :] == target[:, None], float("-inf"))
        logits = torch.cat([positive, sampled], dim=1)
        return nn.functional.cross_entropy(logits, torch.zeros(len(target), dtype=torch.long))

    def log_scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """Log-weights of a distribution over items: the logits (their softmax is the model's)."""
        return self.score(histories)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        config = {**self.options, "n_items": self.net.items.num_embeddings - 1, "epochs_run": self.epochs_run,
                  "loss": self.loss}  # fmt: skip
        return config, {k: v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> SASRec:
        config = dict(config)
        n_items, epochs_run, loss = config.pop("n_items"), config.pop("epochs_run", 0), config.pop("loss", "")
        model = cls(**config)
        model.net = _Net(n_items, **model.options)
        model.net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
        model.net.eval()
        model.epochs_run, model.loss = epochs_run, loss
        return model

    @torch.no_grad()
    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        self.net.eval()
        out = []
        for start in range(0, len(histories), 256):
            seq, lengths = self._pad(histories[start : start + 256])
            seq = seq[:, : max(1, int(lengths.max()))]  # right padding: the columns past it are all padding
            last = self.net(seq)[torch.arange(len(seq)), (lengths - 1).clamp(min=0)]
            # an empty history (every item unknown to the model) has no opinion: equal scores
            out.append(self.net.logits(last).masked_fill((lengths == 0)[:, None], 0.0).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.net.items.num_embeddings - 1))
