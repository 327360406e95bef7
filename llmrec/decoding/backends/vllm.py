"""The vLLM backend (GPU), written against vLLM 0.33 and kept thin. NOT executed in this workplace:
vLLM cannot be installed or run here (see README, "What was executed").

The same ``Backend`` protocol as ``HFBackend``. Everything it computes itself (which answers a request permits,
the beam search, the trie walk and mask, label scoring) is shared with the transformers backend
and tested on a CPU; this file only turns those into vLLM requests:

- up to ``CHOICE_LIMIT`` permitted items: ``LLM.beam_search`` with
  ``StructuredOutputsParams(choice=...)`` (grammar engines do not scale past a few thousand);
- more: llmrec's own beam search (``llmrec.decoding.beam``), each step one ``LLM.generate`` call of one
  token with ``logprob_token_ids`` = the trie's permitted next tokens (raw log-probs, the same
  scores as the transformers backend); for ``k == 1`` a single greedy ``generate`` with the
  V2-runner logits processor ``llmrec.decoding.backends.vllm_processor:TrieProcessor`` masking on the GPU;
- a request with a collaborative guide: always llmrec's own beam search, which adds the guide's
  term at each step from the same node log-masses as the transformers backend's logits processor;
- yes/no: ``logprob_token_ids=[yes, no]``, then renormalised over the two;
- adapters: ``LoRARequest`` with ``enable_lora`` and ``max_lora_rank`` from the adapter's rank.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.decoding.backends.base import ItemSearch
from llmrec.decoding.index import CatalogIndex
from llmrec.errors import LlmrecError

CHOICE_LIMIT = 2000  # llguidance refuses more than 2,000 choices; xgrammar's compile grows fast past that
LOGPROB_IDS_LIMIT = 128  # vLLM's MAX_LOGPROB_TOKEN_IDS
MAX_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # values vLLM accepts for --max-lora-rank


def permitted_items(index: CatalogIndex, excluded: Sequence[int], allowed: Sequence[int] | None) -> list[int]:
    """Item positions a request may return, in catalogue order."""
    pool = range(len(index)) if allowed is None else sorted(set(allowed))
    banned = set(excluded)
    return [i for i in pool if i not in banned]


def choice_list(index: CatalogIndex, items: Sequence[int]) -> list[str] | None:
    """The answers for ``StructuredOutputsParams(choice=...)``, or None above ``CHOICE_LIMIT``."""
    if len(items) > CHOICE_LIMIT:
        return None
    return [index.titles[i] for i in items]


def token_chunks(tokens: np.ndarray, limit: int = LOGPROB_IDS_LIMIT) -> list[list[int]]:
    """Split candidate tokens into ``logprob_token_ids`` lists vLLM accepts (at most 128 each)."""
    tokens = [int(t) for t in tokens]
    return [tokens[i : i + limit] for i in range(0, len(tokens), limit)] or [[]]


def engine_kwargs(base: str, adapter: Path | None, max_model_len: int = 2048) -> dict[str, Any]:
    """Arguments of ``vllm.LLM``: LoRA switched on at the adapter's rank, raw log-probs, our processor."""
    kwargs: dict[str, Any] = {
        "model": base,
        "max_model_len": max_model_len,
        "logprobs_mode": "raw_logprobs",  # scores before any processor: model log-probs, like the HF backend
        "logits_processors": ["llmrec.decoding.backends.vllm_processor:TrieProcessor"],
        "enable_prefix_caching": True,  # every beam step re-sends the prompt
    }
    if adapter is not None:
        config = json.loads((Path(adapter) / "adapter_config.json").read_text())
        rank = int(config["r"])
        kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=min(r for r in MAX_LORA_RANKS if r >= rank))
    return kwargs


def lora_kwargs(adapter: Path) -> dict[str, Any]:
    """Arguments of ``vllm.lora.request.LoRARequest`` for one adapter folder."""
    return {"lora_name": Path(adapter).name or "adapter", "lora_int_id": 1, "lora_path": str(Path(adapter).resolve())}


def processor_args(index_file: str, excluded: Sequence[int], allowed: Sequence[int] | None) -> dict[str, Any]:
    """``SamplingParams.extra_args`` that switch the trie processor on for one request."""
    permitted = None if allowed is None else [int(i) for i in allowed]
    return {"llmrec": {"index": index_file, "excluded": [int(i) for i in excluded], "allowed": permitted}}


class VLLMBackend:
    """vLLM behind llmrec's backend interface (see the module docstring)."""

    name = "vllm"

    def __init__(self, llm, adapter: Path | None) -> None:
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.device = "cuda"
        self.adapter = adapter
        self.index: CatalogIndex | None = None
        self._index_files: dict[int, str] = {}

    def set_catalog(self, index: CatalogIndex) -> None:
        """Use ``index`` for later searches (its arrays go to a file when a worker needs them)."""
        self.index = index

    @classmethod
    def load(cls, base: str | None, adapter: str | Path | None = None) -> VLLMBackend:
        """Start a vLLM engine (it schedules its own batches: there is no batch size to give)."""
        try:
            from vllm import LLM
        except ImportError:
            raise LlmrecError("the vllm backend needs vLLM on a CUDA machine: pip install 'llmrec[gpu]'") from None
        from llmrec.models import resolve_model

        adapter = Path(adapter) if adapter is not None else None
        os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "1")  # the processor is written for the V2 runner
        return cls(LLM(**engine_kwargs(resolve_model(base), adapter)), adapter)

    def _lora(self):
        if self.adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(**lora_kwargs(self.adapter))

    def _prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer(p)["input_ids"] for p in prompts]

    def _index_file(self, index: CatalogIndex) -> str:
        """The trie arrays in a file the worker processes can load (written once per index)."""
        key = id(index)
        if key not in self._index_files:
            path = Path(tempfile.mkdtemp(prefix="llmrec-vllm-")) / "index.npz"
            index.save_arrays(path)
            self._index_files[key] = str(path)
        return self._index_files[key]

    def _greedy(self, prompts, index, excluded, allowed) -> list[list[tuple[int, float]]]:
        """k = 1 on a large catalogue: one greedy generate per prompt, masked on the GPU by TrieProcessor."""
        import torch
        from vllm import SamplingParams

        from llmrec.decoding.trie import TrieTensors

        depth = max(len(s) for s in index.sequences)
        params = [
            SamplingParams(
                max_tokens=depth, temperature=0.0, logprobs=0, stop_token_ids=[index.end_token],
                extra_args=processor_args(self._index_file(index), ex, al),
            )
            for ex, al in zip(excluded, allowed)
        ]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False, lora_request=self._lora())
        walker, found = TrieTensors(index), []
        for out in outputs:
            tokens = list(out.outputs[0].token_ids)
            tokens = tokens if tokens and tokens[-1] == index.end_token else tokens + [index.end_token]
            node = int(walker.walk(torch.as_tensor([tokens]))[0])
            item = index.item_at(node) if node >= 0 else -1
            found.append([(item, float(out.outputs[0].cumulative_logprob))] if item >= 0 else [])
        return found

    def step_fn(self, prompts: Sequence[str]):
        """A ``beam.StepFn``: one-token generate calls returning raw log-probs of the candidates."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        heads = self._prompt_ids(prompts)

        def step(queries):
            requests, params, owner = [], [], []
            for q, (r, tokens, cands) in enumerate(queries):
                for chunk in token_chunks(cands):
                    requests.append(TokensPrompt(prompt_token_ids=heads[r] + list(tokens)))
                    params.append(SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=chunk))
                    owner.append((q, chunk))
            outputs = self.llm.generate(requests, params, use_tqdm=False, lora_request=self._lora())
            found: list[dict[int, float]] = [{} for _ in queries]
            for (q, chunk), out in zip(owner, outputs):
                step_logprobs = out.outputs[0].logprobs[0]
                found[q].update({t: step_logprobs[t].logprob for t in chunk})
            return [np.array([found[q][int(t)] for t in cands]) for q, (_, _, cands) in enumerate(queries)]

        return step

    def top_items(
        self, requests: Sequence[ItemSearch], k: int = 10, length_normalize: bool = False, beams: int | None = None
    ) -> list[list[tuple[int, float]]]:
        """Top-``k`` catalogue items per request (same contract as ``HFBackend.top_items``)."""
        from llmrec.decoding.beam import beam_search

        if self.index is None:
            raise LlmrecError("top_items: no catalogue index set (set_catalog)")
        index = self.index
        prompts = [r.prompt for r in requests]
        results: list[list[tuple[int, float]] | None] = [None] * len(requests)
        large = []
        for r, request in enumerate(requests):
            items = permitted_items(index, request.excluded, request.allowed)
            choices = choice_list(index, items)
            # a collaborative guide needs the score of every step: only the engine-agnostic search adds it
            if choices is None or request.guide is not None and request.guide_weight:
                large.append(r)
            else:
                results[r] = self._choice_search(request.prompt, choices, items, k, beams, length_normalize)
        guided = any(requests[r].guide is not None and requests[r].guide_weight for r in large)
        if large and k == 1 and not guided:
            found = self._greedy([prompts[r] for r in large], index, [requests[r].excluded for r in large],
                                 [requests[r].allowed for r in large])  # fmt: skip
            for r, items in zip(large, found):
                results[r] = items
        elif large:
            masks = [index.node_mask(requests[r].excluded, requests[r].allowed) for r in large]
            bonuses = [requests[r].bonus(index) for r in large]
            found = beam_search(self.step_fn([prompts[r] for r in large]), index, masks, k, beams, length_normalize,
                                bonuses)  # fmt: skip
            for r, items in zip(large, found):
                results[r] = items
        return results

    def _choice_search(self, prompt, choices, items, k, beams, length_normalize):
        from vllm.sampling_params import BeamSearchParams, StructuredOutputsParams

        params = BeamSearchParams(
            beam_width=max(beams or k, k), max_tokens=64, length_penalty=1.0 if length_normalize else 0.0,
            structured_outputs=StructuredOutputsParams(choice=choices),
        )  # fmt: skip
        [out] = self.llm.beam_search([{"prompt": prompt}], params, lora_request=self._lora())
        by_answer = {choice: item for choice, item in zip(choices, items)}
        picked: list[tuple[int, float]] = []
        for seq in out.sequences:
            answer = seq.text.removeprefix(prompt)  # beam search text includes the prompt
            item = by_answer.get(answer.replace(self.tokenizer.eos_token or "", "").strip())
            if item is not None and item not in {i for i, _ in picked}:
                picked.append((item, float(seq.cum_logprob)))
        return picked[:k]

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[Sequence[int]]) -> list[list[float]]:
        """Raw log-probability of each label as the answer: ``logprob_token_ids`` when every label
        is one token, else ``prompt_logprobs`` of prompt + label."""
        if all(len(label) == 1 for label in labels):
            return self._next_token_logprobs(prompts, [label[0] for label in labels])
        return self._sequence_logprobs(prompts, labels)

    def _next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int]) -> list[list[float]]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(token_ids))
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False, lora_request=self._lora())
        return [[out.outputs[0].logprobs[0][t].logprob for t in token_ids] for out in outputs]

    def _sequence_logprobs(self, prompts: Sequence[str], continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        heads = self._prompt_ids(prompts)
        requests = [TokensPrompt(prompt_token_ids=h + list(c)) for h in heads for c in continuations]
        params = SamplingParams(max_tokens=1, prompt_logprobs=0)
        outputs = self.llm.generate(requests, params, use_tqdm=False, lora_request=self._lora())
        sums = []
        for out, cont in zip(outputs, [c for _ in heads for c in continuations]):
            tail = out.prompt_logprobs[-len(cont) :]
            sums.append(sum(pos[t].logprob for pos, t in zip(tail, cont)))
        n = len(continuations)
        return [sums[i * n : (i + 1) * n] for i in range(len(prompts))]

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 80) -> list[str]:
        """Free greedy generation (explanations)."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0)
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False, lora_request=self._lora())
        return [out.outputs[0].text.strip() for out in outputs]
