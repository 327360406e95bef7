"""The transformers backend (CPU or GPU): constrained beam search, label scoring, free generation."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from llmrec.decoding.backends.base import ItemSearch
from llmrec.decoding.index import CatalogIndex
from llmrec.decoding.trie import TrieLogitsProcessor, TrieTensors
from llmrec.errors import LlmrecError

DEFAULT_BATCH = 8  # prompts per forward pass
# Beams per prompt at most, retries included: each holds a copy of the prompt's KV cache.
MAX_BEAMS = 256
# Continuation tokens scored in one forward pass on a prompt's KV cache (packed as a token tree).
PACKED_TOKENS = 1024


def _fp32_head(model) -> None:
    """Make ``model``'s LM head compute in fp32 when its weights are bf16 or fp16 (the model is
    changed in place: the backend owns it).

    At the size of an LM's logits (tens) bf16 holds steps of 0.125-0.25: on a GPU, where `load`
    picks bf16, a yes/no logit difference took five values over 479 requests (ties everywhere in
    an AUC), and every title log-probability was rounded the same way. The decoder still runs in
    its own dtype; only the head's input and weight are cast, per call (a transient fp32 copy of
    the head: 113 MB for SmolLM2; the weight itself is shared with the input embedding in tied
    models, so it stays as it is). A head that is not a plain Linear (none llmrec trains) is left
    alone."""
    import types

    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear) or head.weight.dtype == torch.float32:
        return

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.float()
        return torch.nn.functional.linear(hidden.float(), self.weight.float(), bias)

    # a model loaded with an accelerate device map wraps forward in a hook that calls _old_forward
    name = "_old_forward" if hasattr(head, "_old_forward") else "forward"
    setattr(head, name, types.MethodType(forward, head))


def _bonus_tensor(requests: Sequence[ItemSearch], tensors: TrieTensors) -> torch.Tensor | None:
    """(requests, nodes) collaborative bonus, zero for requests without a guide; None if none has one."""
    rows = [r.bonus(tensors.index) for r in requests]
    if all(row is None for row in rows):
        return None
    n_nodes = tensors.index.trie.n_nodes
    return torch.as_tensor(np.stack([row if row is not None else np.zeros(n_nodes) for row in rows]),
                           dtype=torch.float32, device=tensors.device)  # fmt: skip


class HFBackend:
    """A causal LM (optionally with a LoRA adapter) behind llmrec's ``Backend`` protocol.

    Args:
        model: A loaded causal LM in eval mode.
        tokenizer: Its tokenizer.
        batch_size: Prompts per forward batch.
    """

    name = "hf"

    def __init__(self, model, tokenizer, batch_size: int = DEFAULT_BATCH) -> None:
        if batch_size < 1:
            raise LlmrecError(f"batch size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._device = next(model.parameters()).device
        self.device = str(self._device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.tensors: TrieTensors | None = None
        # transformers 5.24 renamed `past_key_values` to `cache` (the old name warns on every call)
        parameters = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        # the head only at the last position where the model allows it (49k logits a position)
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        _fp32_head(model)

    @classmethod
    def load(cls, base: str | None, adapter: str | Path | None = None, device: str | None = None,
             batch_size: int | None = None) -> HFBackend:  # fmt: skip
        """Load the base model (embedded by default), apply ``adapter`` if given, put it on ``device``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from llmrec.models import not_found_message, resolve_device, resolve_model

        path = resolve_model(base)
        device = resolve_device(device)
        dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except OSError as exc:
            raise LlmrecError(not_found_message(path, exc)) from None
        if adapter is not None:
            from peft import PeftModel

            # merged into the base weights: inference only, and one matmul per layer instead of three
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        model.to(device).eval()
        return cls(model, tokenizer, batch_size or DEFAULT_BATCH)

    def set_catalog(self, index: CatalogIndex) -> None:
        """The catalogue index, as tensors on this model's device."""
        self.tensors = TrieTensors(index, self._device)

    def _encode(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        # left padding: every prompt ends where generation starts
        self.tokenizer.padding_side = "left"
        batch = self.tokenizer(list(prompts), return_tensors="pt", padding=True)
        return {k: v.to(self._device) for k, v in batch.items()}

    def _generation_config(self, **values):
        """A fresh config: checkpoints ship top_k/top_p/temperature that would prune beams silently."""
        from transformers import GenerationConfig

        return GenerationConfig(
            do_sample=False, top_k=None, top_p=None, temperature=None, pad_token_id=self.pad_id,
            return_dict_in_generate=True, **values,
        )  # fmt: skip

    @torch.no_grad()
    def top_items(
        self, requests: Sequence[ItemSearch], k: int = 10, length_normalize: bool = False, beams: int | None = None
    ) -> list[list[tuple[int, float]]]:
        """Top-``k`` distinct catalogue items per request by constrained beam search.

        Args:
            requests: Prompts with the items each may (not) return.
            k: Items per request.
            length_normalize: Divide the log-probability by the answer length (off by default:
                it favours long titles, see "Decoding Matters", Bao et al. 2024).
            beams: Beam width (at least k and 2; default 2k).

        Returns:
            Per request, up to ``k`` (item position, score) pairs, best first; the score is the
            answer's log-probability under the model (summed over its tokens unless normalised).
        """
        if self.tensors is None:
            raise LlmrecError("top_items: no catalogue index set (set_catalog)")
        tensors = self.tensors
        prompts = [r.prompt for r in requests]
        node_ok = tensors.masks([r.excluded for r in requests], [r.allowed for r in requests])
        bonus = _bonus_tensor(requests, tensors)
        # no request can return more items than it permits: k and the beams are capped by that
        permitted = (node_ok & (tensors.leaf_item >= 0)).sum(dim=1).tolist()
        wanted = [min(k, n) for n in permitted]
        k = max(wanted, default=0)
        if k == 0:
            return [[] for _ in requests]
        # 2k beams by default: when several of k beams finish at the same step and the rest were
        # pruned, fewer than k answers complete. A prompt still short of k is retried once, wider.
        # One beam would be greedy search, which reports no scores.
        width = min(max(beams or 2 * k, k, 2), MAX_BEAMS, max(2, max(permitted)))
        results: list[list[tuple[int, float]]] = []
        for start in range(0, len(prompts), self.batch_size):
            stop = min(start + self.batch_size, len(prompts))
            part = None if bonus is None else bonus[start:stop]
            results += self._beam(prompts[start:stop], tensors, node_ok[start:stop], width, k, length_normalize, part)
        wider = min(2 * width, MAX_BEAMS, max(2, max(permitted)))
        for r, found in enumerate(results):
            if len(found) < wanted[r] and wider > width:
                part = None if bonus is None else bonus[r : r + 1]
                [results[r]] = self._beam([prompts[r]], tensors, node_ok[r : r + 1], wider, k, length_normalize, part)
        return [found[:n] for found, n in zip(results, wanted)]

    def _beam(self, prompts, tensors: TrieTensors, node_ok, beams: int, k: int, length_normalize: bool, bonus=None):
        """One constrained beam search over a batch; up to k distinct finished items per prompt."""
        from transformers import LogitsProcessorList

        batch = self._encode(list(prompts))
        prompt_length = batch["input_ids"].shape[1]
        processor = TrieLogitsProcessor(tensors, node_ok, prompt_length, beams, bonus)
        out = self.model.generate(
            **batch,
            **{self._cache_arg: self._prefix_cache(batch, beams)},
            generation_config=self._generation_config(
                num_beams=beams, num_return_sequences=beams, max_new_tokens=max(len(s) for s in tensors.index.sequences),
                early_stopping=True, length_penalty=1.0 if length_normalize else 0.0, eos_token_id=tensors.end_token,
                output_scores=True,  # sequences_scores is only filled with it
            ),
            logits_processor=LogitsProcessorList([processor]),
        )  # fmt: skip
        nodes = tensors.walk(out.sequences[:, prompt_length:])
        items = tensors.leaf_item[nodes.clamp(min=0)].masked_fill(nodes < 0, -1).tolist()
        scores = out.sequences_scores.tolist()
        results = []
        for r in range(len(prompts)):
            picked: list[tuple[int, float]] = []
            for item, score in zip(items[r * beams : (r + 1) * beams], scores[r * beams : (r + 1) * beams]):
                # unfinished beams come back with a score of -1e9: they are not answers
                if item >= 0 and score > -1e8 and bool(node_ok[r, 0]) and item not in {i for i, _ in picked}:
                    picked.append((int(item), float(score)))
            results.append(sorted(picked, key=lambda p: -p[1])[:k])
        return results

    def _prefix_cache(self, batch: dict[str, torch.Tensor], copies: int):
        """The prompts' KV cache computed once per prompt, then repeated for each of its beams.

        ``generate`` would otherwise expand every prompt to ``copies`` rows before the prefill,
        which on CPU costs ``copies`` times the prompt's forward pass (most of a request's time).
        The last prompt token is left for ``generate`` to run, with the positions it would use.
        """
        from transformers import DynamicCache

        ids, mask = batch["input_ids"], batch["attention_mask"]
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        cache = DynamicCache(config=self.model.config)
        self.model(
            input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
            **{self._cache_arg: cache}, use_cache=True,
        )  # fmt: skip
        cache.batch_repeat_interleave(copies)
        return cache

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[Sequence[int]]) -> list[list[float]]:
        """Raw log-probability of each label (token ids) as the answer, per prompt: one forward
        pass per batch when every label is a single token, teacher forcing otherwise."""
        if all(len(label) == 1 for label in labels):
            return self._next_token_logprobs(prompts, [label[0] for label in labels])
        return self._sequence_logprobs(prompts, labels)

    @torch.no_grad()
    def _next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int]) -> list[list[float]]:
        out = []
        ids = torch.as_tensor(list(token_ids), device=self._device)
        for start in range(0, len(prompts), self.batch_size):
            batch = self._encode(prompts[start : start + self.batch_size])
            logits = self.model(**batch, **self._last_only).logits[:, -1, :].float()
            out.extend(torch.log_softmax(logits, dim=-1)[:, ids].tolist())
        return out

    @torch.no_grad()
    def _sequence_logprobs(self, prompts: Sequence[str], continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        """Teacher-forced log-probability of each continuation after each prompt.

        The prompt runs once. The continuations then run as one row on its KV cache, packed as a
        tree: a prefix that several continuations share (the trie of their tokens) is one
        position, each position sees the prompt and its own ancestors only (a 4D attention mask)
        at the position id it would have in its own sequence, so each score is that of the
        continuation alone, without padding or copies of the cache. Groups of at most
        ``PACKED_TOKENS`` positions, neighbours in sorted order together (they share most).
        """
        import copy

        from transformers import DynamicCache

        conts = [tuple(int(t) for t in c) for c in continuations]
        if any(not c for c in conts):
            raise LlmrecError("an empty continuation has no log-probability to score")
        if not conts:
            return [[] for _ in prompts]
        groups: list[list[int]] = [[]]
        width = 0
        for i in sorted(range(len(conts)), key=lambda i: conts[i]):
            if groups[-1] and width + len(conts[i]) - 1 > PACKED_TOKENS:
                groups.append([])
                width = 0
            groups[-1].append(i)
            width += len(conts[i]) - 1  # an upper bound of the positions it adds
        out = []
        for prompt in prompts:
            ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"].to(self._device)
            cache = DynamicCache(config=self.model.config)
            first = self.model(input_ids=ids, **{self._cache_arg: cache}, use_cache=True, **self._last_only)
            first = torch.log_softmax(first.logits[0, -1].float(), -1)
            row = [0.0] * len(conts)
            for n, group in enumerate(groups):
                shared = cache if n == len(groups) - 1 else copy.deepcopy(cache)
                for i, value in zip(group, self._packed(ids.shape[1], first, shared, [conts[i] for i in group])):
                    row[i] = value
            out.append(row)
        return out

    def _packed(self, prompt_length: int, first: torch.Tensor, cache, chunk: list[tuple[int, ...]]) -> list[float]:
        """Summed log-probs of ``chunk`` after a prompt whose KV cache (extended here) and
        next-token log-probs are given: one forward pass over the tree of their proper prefixes."""
        position: dict[tuple[int, ...], int] = {}  # proper prefix -> its place in the packed row
        tokens, parents = [], []
        for c in chunk:
            for d in range(1, len(c)):
                if c[:d] not in position:
                    position[c[:d]] = len(tokens)
                    tokens.append(c[d - 1])
                    parents.append(position.get(c[: d - 1], -1))
        total = first[torch.as_tensor([c[0] for c in chunk], device=self._device)]
        if not tokens:
            return total.tolist()
        q = len(tokens)
        sees = np.zeros((q, prompt_length + q), dtype=bool)
        sees[:, :prompt_length] = True
        depth = np.zeros(q, dtype=np.int64)
        for j, parent in enumerate(parents):  # a parent comes before its children
            if parent >= 0:
                sees[j] = sees[parent]
                depth[j] = depth[parent] + 1
            sees[j, prompt_length + j] = True
        # additive (0 / most negative), which every attention implementation reads the same way
        dtype = self.model.get_input_embeddings().weight.dtype  # the attention's compute dtype
        mask = torch.zeros(sees.shape, dtype=dtype, device=self._device)
        mask.masked_fill_(~torch.as_tensor(sees, device=self._device), torch.finfo(dtype).min)
        mask = mask[None, None]
        positions = torch.as_tensor(prompt_length + depth, device=self._device)[None]
        logits = self.model(input_ids=torch.as_tensor([tokens], device=self._device), attention_mask=mask,
                            position_ids=positions, **{self._cache_arg: cache}, use_cache=True).logits[0]  # fmt: skip
        logp = torch.log_softmax(logits.float(), -1)
        at, nxt, owner = [], [], []
        for r, c in enumerate(chunk):
            for d in range(1, len(c)):
                at.append(position[c[:d]])
                nxt.append(c[d])
                owner.append(r)
        picked = logp[torch.as_tensor(at, device=self._device), torch.as_tensor(nxt, device=self._device)]
        return total.index_add(0, torch.as_tensor(owner, device=self._device), picked).tolist()

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 80) -> list[str]:
        """Free greedy generation (for explanations): the text up to the end-of-answer token."""
        end_id = self.tokenizer.convert_tokens_to_ids(self.tokenizer.eos_token)
        texts = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self._encode(prompts[start : start + self.batch_size])
            out = self.model.generate(
                **batch, generation_config=self._generation_config(max_new_tokens=max_new_tokens, eos_token_id=end_id)
            )
            new = out.sequences[:, batch["input_ids"].shape[1] :]
            texts.extend(self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return [t.strip() for t in texts]

    def step_fn(self, prompts: Sequence[str]):
        """A ``beam.StepFn`` over ``prompts``: raw log-probs of candidate tokens after prompt + prefix."""
        import numpy as np

        self.tokenizer.padding_side = "left"
        heads = self.tokenizer(list(prompts))["input_ids"]

        @torch.no_grad()
        def step(queries):
            out = []
            for start in range(0, len(queries), self.batch_size):
                chunk = queries[start : start + self.batch_size]
                rows = [heads[r] + list(tokens) for r, tokens, _ in chunk]
                width = max(len(x) for x in rows)
                ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for i, x in enumerate(rows):
                    ids[i, width - len(x) :] = torch.as_tensor(x)
                    mask[i, width - len(x) :] = 1
                logits = self.model(input_ids=ids.to(self._device), attention_mask=mask.to(self._device),
                                    **self._last_only).logits[:, -1]  # fmt: skip
                logprobs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
                out.extend(logprobs[i, np.asarray(cands)] for i, (_, _, cands) in enumerate(chunk))
            return out

        return step
