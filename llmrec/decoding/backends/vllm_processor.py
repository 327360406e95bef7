"""The catalogue constraint as a vLLM V2-runner logits processor. NOT executed in this workplace.

vLLM loads it by name (``llmrec.decoding.backends.vllm_processor:TrieProcessor``) in its worker process. A
request switches it on with ``SamplingParams.extra_args={"llmrec": {"index": NPZ, "excluded":
[...], "allowed": [...] | None}}`` (see ``vllm.processor_args``). The trie arrays are loaded once
per file onto the worker's GPU as ``TrieTensors``, the same class the transformers backend's
``TrieLogitsProcessor`` uses; the walk and the mask are that class's tested code.

Written against the V2 interface in ``vllm.v1.worker.gpu.sample.logits_processor``:
``__init__(vllm_config, req_states)``, ``add_request(req_idx, sampling_params) -> bool`` and
``apply(logits, ctx)``, with ``ctx.expanded_idx_mapping`` mapping logits rows to request slots and
each slot's tokens in ``req_states.all_token_ids`` between ``prompt_len`` and ``total_len``. Those
``req_states`` field names (``prompt_len.np``, ``total_len.gpu``, ``all_token_ids.gpu``) were read
from vLLM's source, not verified by running it: check them first on a GPU machine.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

import torch
from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor

from llmrec.decoding.index import CatalogIndex
from llmrec.decoding.trie import TrieTensors


@lru_cache(maxsize=4)
def load_tensors(path: str, device: str) -> TrieTensors:
    """``TrieTensors`` from a file written by ``CatalogIndex.save_arrays``, once per file and device."""
    return TrieTensors(CatalogIndex.load_arrays(path), device)


class TrieProcessor(LogitsProcessor):
    """Masks every logit that would leave the catalogue, for the requests that ask for it."""

    def __init__(self, vllm_config, req_states) -> None:
        self.req_states = req_states
        self.device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
        self.slots: dict[int, SimpleNamespace] = {}

    def add_request(self, req_idx: int, sampling_params) -> bool:
        args = (getattr(sampling_params, "extra_args", None) or {}).get("llmrec")
        self.slots.pop(req_idx, None)  # slots are reused: forget the previous request
        if not args:
            return False
        tensors = load_tensors(args["index"], str(self.device))
        mask = tensors.masks([args.get("excluded", [])], [args.get("allowed")])[0]
        self.slots[req_idx] = SimpleNamespace(tensors=tensors, mask=mask)
        return True

    def apply(self, logits: torch.Tensor, ctx) -> torch.Tensor:
        slots = ctx.expanded_idx_mapping.tolist()
        for row, slot in enumerate(slots):
            state = self.slots.get(slot)
            if state is None:
                continue
            start = int(self.req_states.prompt_len.np[slot])
            end = int(self.req_states.total_len.gpu[slot])
            generated = self.req_states.all_token_ids.gpu[slot, start:end].unsqueeze(0)
            node = state.tensors.walk(generated)
            allowed = state.tensors.allowed(node, state.mask.unsqueeze(0), logits.shape[-1])[0]
            logits[row].masked_fill_(~allowed, float("-inf"))
        return logits
