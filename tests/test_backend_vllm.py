"""The vLLM backend's own logic on a CPU. vLLM cannot be installed here: these tests cover what the
backend computes itself (request building, the index as tensors loaded from its file, the
logits processor's per-slot masking); the search and scoring it shares with the HF backend are
tested in test_backend_hf.py with the HF model as the engine."""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.decoding.backends import vllm as vb
from llmrec.decoding.index import CatalogIndex
from llmrec.decoding.trie import TrieTensors
from llmrec.errors import LlmrecError

END = 0


def small_index() -> CatalogIndex:
    seqs = [[1, 2, END], [1, 3, END], [4, END], [4, 5, 2, END]]
    return CatalogIndex([f"i{n}" for n in range(4)], ["A", "B", "C", "D"], seqs, 8, END)


def test_choice_lists_only_below_the_limit_and_without_excluded_items():
    index = small_index()
    items = vb.permitted_items(index, excluded=[1], allowed=None)
    assert items == [0, 2, 3] and vb.choice_list(index, items) == ["A", "C", "D"]
    assert vb.permitted_items(index, [3], [3, 2]) == [2]
    assert vb.choice_list(index, list(range(vb.CHOICE_LIMIT + 1))) is None


def test_logprob_token_ids_are_chunked_to_vllms_limit():
    chunks = vb.token_chunks(np.arange(300))
    assert [len(c) for c in chunks] == [128, 128, 44] and sum(chunks, []) == list(range(300))


def test_engine_and_lora_arguments_follow_the_adapter(tmp_path: Path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16}))
    kwargs = vb.engine_kwargs("some/base", tmp_path)
    assert kwargs["enable_lora"] and kwargs["max_lora_rank"] == 16 and kwargs["logprobs_mode"] == "raw_logprobs"
    module, cls = kwargs["logits_processors"][0].split(":")
    assert (Path(vb.__file__).parent / f"{module.rsplit('.', 1)[1]}.py").is_file() and cls == "TrieProcessor"
    assert "enable_lora" not in vb.engine_kwargs("some/base", None)
    lora = vb.lora_kwargs(tmp_path)
    assert lora == {"lora_name": tmp_path.name, "lora_int_id": 1, "lora_path": str(tmp_path.resolve())}


def test_the_backend_says_what_it_needs_without_vllm():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(LlmrecError, match=r"needs vLLM on a CUDA machine"):
        vb.VLLMBackend.load(None)


def test_saved_arrays_give_the_same_walk_and_mask(tmp_path: Path):
    index = small_index()
    index.save_arrays(tmp_path / "t.npz")
    loaded = CatalogIndex.load_arrays(tmp_path / "t.npz")
    a, b = TrieTensors(index), TrieTensors(loaded)
    rows = torch.tensor([[1, 3, END], [4, 5, 2], [4, 7, 7]])
    assert torch.equal(a.walk(rows), b.walk(rows))
    mask_a, mask_b = a.masks([[1]]), b.masks([[1]])
    assert torch.equal(mask_a, mask_b)
    nodes = b.walk(torch.tensor([[1], [4]]))
    allowed = b.allowed(nodes, mask_b.expand(2, -1))
    assert allowed[0].nonzero().flatten().tolist() == [2]  # item B (1, 3) excluded
    assert allowed[1].nonzero().flatten().tolist() == [0, 5]  # C ends, or D goes on


def test_trie_processor_masks_only_its_requests(tmp_path: Path, monkeypatch):
    """The V2 processor's bookkeeping, with vLLM's base class stubbed (the only vLLM name it uses)."""
    stub = types.ModuleType("vllm.v1.worker.gpu.sample.logits_processor")
    stub.LogitsProcessor = type("LogitsProcessor", (), {})
    for name in ("vllm", "vllm.v1", "vllm.v1.worker", "vllm.v1.worker.gpu", "vllm.v1.worker.gpu.sample"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, stub.__name__, stub)
    monkeypatch.delitem(sys.modules, "llmrec.decoding.backends.vllm_processor", raising=False)
    from llmrec.decoding.backends.vllm_processor import TrieProcessor

    index = small_index()
    index.save_arrays(tmp_path / "t.npz")
    tokens = torch.zeros(3, 10, dtype=torch.long)
    tokens[0, 2:4] = torch.tensor([1, 3])  # slot 0: prompt of 2 tokens, then 1 generated token so far
    tokens[1, 3:4] = torch.tensor([4])
    req_states = types.SimpleNamespace(
        all_token_ids=types.SimpleNamespace(gpu=tokens),
        prompt_len=types.SimpleNamespace(np=np.array([2, 3, 1])),
        total_len=types.SimpleNamespace(gpu=torch.tensor([3, 4, 1])),
    )
    proc = TrieProcessor(None, req_states)
    args = vb.processor_args(str(tmp_path / "t.npz"), excluded=[2], allowed=None)
    assert proc.add_request(0, types.SimpleNamespace(extra_args=args))
    assert proc.add_request(1, types.SimpleNamespace(extra_args=args))
    assert not proc.add_request(2, types.SimpleNamespace(extra_args=None))
    logits = torch.zeros(3, 8)
    out = proc.apply(logits, types.SimpleNamespace(expanded_idx_mapping=torch.tensor([0, 1, 2])))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [2, 3]  # after token 1: A or B
    assert torch.isfinite(out[1]).nonzero().flatten().tolist() == [5]  # after 4: C is excluded, D goes on
    assert torch.isfinite(out[2]).all()  # a request without extra_args is untouched
