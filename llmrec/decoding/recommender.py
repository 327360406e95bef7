"""The Python API: ``Recommender.load(...)`` then ``recommend``, ``predict_yes_no``, ``explain``, ``rank``.

Mirrors the CLI one to one. Prompts are rendered with the same templates and renderer as the
training samples, and every recommended item comes out of the catalogue index.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmrec.collab.guide import (
    Guide,
    fusion_inputs,
    normalised,
    popularity_exponent,
    top,
)
from llmrec.data import prepared
from llmrec.data.clean import neutralize_markup
from llmrec.decoding.backends import ItemSearch, load_backend, renormalize_yes
from llmrec.decoding.grounding import GroundingChecker
from llmrec.decoding.index import CatalogIndex, answer_tokens
from llmrec.decoding.items import ItemRefs
from llmrec.decoding.loading import adapter_manifest
from llmrec.decoding.scoring import LLM_SCORES, TitleScorer, model_key
from llmrec.decoding.yes_no import fused_answers, yes_no_prompts
from llmrec.errors import LlmrecError
from llmrec.prompting.itemstats import ItemStats
from llmrec.prompting.samples import SampleOptions
from llmrec.prompting.templates import PromptRenderer, domain_words, templates_for
from llmrec.training.adapter import MANIFEST as ADAPTER_MANIFEST
from llmrec.training.adapter import shipped_adapter_dir

MODES = ("llm", "cf", "generate", "rerank")
# rerank: the collaborative model's top candidates the LLM rescores
RERANK_CANDIDATES = 50
# At most this many items per request: beam search keeps about 2k beams, each with its own copy
# of the prompt's KV cache (~20 MB for SmolLM2-135M at 450 tokens), so k bounds the memory.
MAX_K = 100


@dataclass
class Recommendation:
    """One recommended item."""

    item_id: str
    title: str
    score: float  # log-probability of the answer (next item), or p(yes), or a label log-probability
    explanation: str | None = None
    grounded: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"item_id": self.item_id, "title": self.title, "score": round(self.score, 6)}
        if self.explanation is not None:
            out["explanation"] = self.explanation
            out["grounded"] = self.grounded
        return out


class Recommender:
    """Recommendations, yes/no probabilities, explanations and rankings from one model and catalogue."""

    def __init__(self, backend, catalog: pd.DataFrame, interactions: pd.DataFrame | None, info: dict[str, Any],
                 adapter: dict[str, Any] | None = None, guide=None) -> None:  # fmt: skip
        self.backend = backend
        # the collaborative model saved with the adapter (``cf/``) and the fusion tuned on valid
        self.guide = guide
        self.fusion: dict[str, Any] = dict((adapter or {}).get("fusion") or {})
        self.catalog = catalog.reset_index(drop=True)
        self.interactions = interactions
        # train-split counts for templates that show a yes/no target's popularity (yes_no v3); a
        # frame without a split (built by hand, nothing held out) counts every event as train
        self.item_stats = None
        if interactions is not None and "liked" in interactions.columns:
            frame = interactions if "split" in interactions.columns else interactions.assign(split="train")
            self.item_stats = ItemStats.from_interactions(self.catalog, frame)
        self.info = info
        self.adapter = adapter
        # the template versions the adapter was trained with (the current ones for a bare model)
        self.templates = templates_for(adapter.get("templates") if adapter else None)
        tokenizer = backend.tokenizer
        # the adapter's prompt shape; before adapters recorded it, the data's (prepare's defaults
        # for raw data, as the shipped adapter was trained)
        learned = {k: v for k, v in ((adapter or {}).get("data", {}).get("prompts") or {}).items() if v is not None}
        samples = {**asdict(SampleOptions()), **info.get("samples", {}), **learned}
        self.max_history = int(samples["max_history"])
        self.renderer = PromptRenderer(tokenizer, int(samples["max_length"]))
        self.words = domain_words(info.get("item_noun") or "item")
        self.items = ItemRefs(self.catalog["item_id"].astype(str).tolist(), self.catalog["title"].tolist())
        # the same lists and map as ``items`` holds (add_items grows them in place)
        self.titles, self.item_ids, self.position = self.items.titles, self.items.item_ids, self.items.position
        prefix = self.renderer.chat("system", "user")
        answers = [self.templates["next_item"].render_answer({"target": t}) for t in self.titles]
        self.index = CatalogIndex.from_tokenizer(tokenizer, self.item_ids, answers, prefix)
        backend.set_catalog(self.index)
        self.scorer = TitleScorer(backend, lambda: self._prompt("next_item", [], {}))
        self.checker = GroundingChecker(self.titles)
        labels = self.templates["yes_no"].labels
        self.yes_no_ids = [answer_tokens(tokenizer, [labels[k]], prefix, "")[0] for k in ("yes", "no")]
        self.rank_labels = list(self.templates["rank"].labels)
        self.rank_ids = [answer_tokens(tokenizer, [label], prefix, "")[0] for label in self.rank_labels]

    @classmethod
    def load(cls, model: str | Path | None = None, data: str | Path | None = None, backend: str = "hf",
             device: str | None = None, batch_size: int | None = None) -> Recommender:  # fmt: skip
        """Load a model and a catalogue.

        Args:
            model: An llmrec adapter folder, or a base model (HF id or folder) used without an
                adapter. Default: the adapter shipped in the package.
            data: A prepared folder, or raw data as ``prepare --data`` takes it. Default: the
                embedded ml-latest-small.
            backend: ``hf`` (transformers, CPU or GPU) or ``vllm`` (GPU).
            device: ``cpu``/``cuda``; default CUDA when available.
            batch_size: Prompts per forward pass (hf; default 8). vLLM schedules its own batches.
        """
        adapter_dir = Path(model) if model is not None else shipped_adapter_dir()
        adapter = adapter_manifest(model)
        base = adapter["base_model"]["name"] if adapter else str(model)
        catalog, interactions, info = prepared.load(data)
        if adapter and adapter["data"]["catalog_hash"] != info["hashes"]["catalog"]:
            warnings.warn(
                "the catalogue differs from the one the adapter was trained on: new items are reachable but the "
                "model has never seen them", stacklevel=2,
            )  # fmt: skip
        engine = load_backend(backend, base, adapter_dir if adapter else None, device, batch_size)
        guide = Guide.load(adapter_dir) if adapter else None
        if (score := ((adapter or {}).get("fusion") or {}).get("llm_score", "sum")) not in LLM_SCORES:
            raise LlmrecError(f"{adapter_dir / ADAPTER_MANIFEST}: fusion.llm_score '{score}': expected one of "
                              f"{', '.join(LLM_SCORES)}")  # fmt: skip
        if guide is not None and (weights := (adapter.get("fusion") or {}).get("yes_no")):
            names, _, _ = fusion_inputs(weights)  # a malformed fusion fails here, not at each request
            if {"popularity", "liked"} & set(names) and guide.stats is None:
                raise LlmrecError(f"{adapter_dir / 'cf' / 'item_stats.safetensors'}: missing, and the adapter's yes/no "
                                  "fusion reads it (run llmrec tune --tasks yes_no to rebuild it)")  # fmt: skip
        if guide is not None and popularity_exponent(adapter.get("fusion") or {}, str(adapter_dir / ADAPTER_MANIFEST)):
            if guide.stats is None:
                raise LlmrecError(f"{adapter_dir / 'cf' / 'item_stats.safetensors'}: missing, and the adapter's "
                                  "next-item fusion reads it (run llmrec tune --tasks next_item to rebuild it)")  # fmt: skip
        rec = cls(engine, catalog, interactions, info, adapter, guide)
        if adapter:
            rec.scorer.model = model_key(adapter_dir, base)  # what stored priors must have been computed with
        if score == "pmi":
            tuned = (adapter.get("fusion") or {}).get("tuned_on", {}).get("data_manifest", {}).get("catalog")
            rec.scorer.load_stored(adapter_dir, rec.catalog_answers(), tuned == info["hashes"]["catalog"])
        return rec

    def add_items(self, item_ids: Sequence[str], titles: Sequence[str]) -> None:
        """Make new items recommendable at once (cold start): no retraining, the index grows."""
        if len(item_ids) != len(titles):
            raise LlmrecError("add_items: one title per item id")
        titles = [neutralize_markup(" ".join(str(t).split())) for t in titles]  # as cleaning stores titles
        for title in titles:
            if title in self.items.by_title:
                raise LlmrecError(f"'{title}': a catalogue item already has this title")
        prefix = self.renderer.chat("system", "user")
        answers = [self.templates["next_item"].render_answer({"target": t}) for t in titles]
        tokenizer = self.backend.tokenizer
        self.index = self.index.with_items(list(map(str, item_ids)), answers,
                                           answer_tokens(tokenizer, answers, prefix, tokenizer.eos_token))  # fmt: skip
        self.backend.set_catalog(self.index)
        self.items.add(item_ids, titles)
        self.checker = GroundingChecker(self.titles)

    def lookup(self, ref: str | int) -> int | None:
        """The catalogue position of an item id or title, or None (``ItemRefs.lookup``)."""
        return self.items.lookup(ref)

    def resolve(self, refs: Sequence[str | int]) -> list[int]:
        """Catalogue positions of item ids or titles; an unknown one is an error (with close matches)."""
        return self.items.read(refs, "error")  # type: ignore[return-value]

    def read_history(self, refs: Sequence[str | int], unknown: str = "keep") -> list[int | str]:
        """A history as catalogue positions, and, for ``unknown="keep"``, the free text of references
        that are not in the catalogue (``ItemRefs.read``; ``unknown``: keep, drop or error)."""
        return self.items.read(refs, unknown)

    def count_unknown(self, refs: Sequence[str | int]) -> int:
        """How many of ``refs`` are not catalogue items."""
        return sum(self.items.lookup(ref) is None for ref in refs)

    def user_history(self, user_id: str) -> list[str]:
        """A known user's whole history (every split), oldest first, as item ids."""
        if self.interactions is None:
            raise LlmrecError("this catalogue has no interactions: pass the history instead of a user")
        rows = self.interactions[self.interactions["user_id"].astype(str) == str(user_id)]
        if rows.empty:
            raise LlmrecError(f"user '{user_id}' is not in the data")
        return [str(i) for i in rows.sort_values("seq")["item_id"]]

    def _prompt(self, task: str, history: Sequence[int | str], extra: dict[str, Any]) -> str:
        template = self.templates[task]
        history = list(history)[-self.max_history :]

        def context(kept):
            return {**self.words, "history": [self.items.title(e) for e in kept], **extra}

        fitted = self.renderer.fit(template, history, context, "")
        if fitted is None:
            raise LlmrecError(f"the {task} prompt does not fit the token budget even without history")
        return fitted[0]

    def recommend(self, history: Sequence[str | int], k: int = 10, explain: bool = False,
                  exclude_history: bool = True, length_normalize: bool = False, mode: str = "auto",
                  guide_weight: float | None = None, unknown_items: str = "keep") -> list[Recommendation]:  # fmt: skip
        """The top-``k`` catalogue items to come next after ``history`` (ids or titles)."""
        return self.recommend_many([history], k, explain, exclude_history, length_normalize, mode, guide_weight,
                                   unknown_items)[0]  # fmt: skip

    def default_mode(self) -> str:
        """What ``mode="auto"`` means for this model: the tuned fusion, else the LLM alone."""
        return self.fusion.get("mode", "llm") if self.guide is not None else "llm"

    def mode_used(self, history: Sequence[str | int], mode: str = "auto") -> str:
        """The mode ``recommend`` answers ``history`` in: ``mode`` (``auto`` resolved), or ``llm``
        when the collaborative model knows none of the history's items."""
        mode = self.default_mode() if mode == "auto" else mode
        if mode == "llm" or self.guide is None:
            return mode
        known = [e for e in self.read_history(history, "drop") if isinstance(e, int)]
        return mode if self.guide.knows(known, self.item_ids) else "llm"

    def recommend_many(self, histories: Sequence[Sequence[str | int]], k: int = 10, explain: bool = False,
                       exclude_history: bool = True, length_normalize: bool = False, mode: str = "auto",
                       guide_weight: float | None = None, unknown_items: str = "keep",
                       exclude: Sequence[Sequence[str | int]] | None = None) -> list[list[Recommendation]]:  # fmt: skip
        """``recommend`` for a batch of histories.

        ``mode``: ``llm`` (the LLM alone, constrained to the catalogue), ``cf`` (the adapter's
        collaborative model alone), ``generate`` (constrained beam search scoring
        ``log p_LLM(title) + lambda * log p_CF(item)``), ``rerank`` (the collaborative model's
        top ``rerank_candidates`` rescored with the same sum), ``auto`` (the adapter's tuned
        choice; ``llm`` without a collaborative model). Where the fusion has a popularity exponent
        beta, ``p_CF`` is the collaborative model's distribution times ``(1 + train interactions) **
        beta``, renormalised, in every mode but ``llm``. ``guide_weight`` overrides the tuned lambda
        (tuned in rerank mode; generate uses the same). A history none of whose items the
        collaborative model has seen is answered by the LLM alone. ``unknown_items``: what becomes
        of history references outside the catalogue (``keep`` them in the prompt as text, ``drop``,
        ``error``; see :meth:`read_history`). ``exclude``: per history, more items never to
        recommend (ids or titles; those outside the catalogue are ignored).
        At most ``min(k, MAX_K)`` items per history, and no more than the catalogue holds outside
        the history: a larger ``k`` returns what there is (see :func:`short_note`).
        """
        if k < 1:
            raise LlmrecError(f"k must be >= 1, got {k}")
        k = min(k, MAX_K)
        mode = self.default_mode() if mode == "auto" else mode
        if mode not in MODES:
            raise LlmrecError(f"mode '{mode}': expected one of auto, {', '.join(MODES)}")
        if mode != "llm" and self.guide is None:
            raise LlmrecError(f"mode '{mode}' needs a collaborative model: this model has none (train with --cf)")
        lam = float(self.fusion.get("lambda", 1.0) if guide_weight is None else guide_weight)
        if not (np.isfinite(lam) and lam >= 0):
            raise LlmrecError(f"guide weight must be a finite number >= 0, got {lam}")
        entries = [self.read_history(h, unknown_items) for h in histories]
        positions = [[e for e in h if isinstance(e, int)] for h in entries]
        excluded = [h if exclude_history else [] for h in positions]
        if exclude is not None:
            if len(exclude) != len(histories):
                raise LlmrecError("exclude: one list per history")
            extra = [[e for e in self.read_history(x, "drop") if isinstance(e, int)] for x in exclude]
            excluded = [list(dict.fromkeys([*h, *x])) for h, x in zip(excluded, extra)]
        # a history the collaborative model knows nothing of gets the LLM alone
        modes = [mode if mode == "llm" or self.guide.knows(h, self.item_ids) else "llm" for h in positions]
        prompts = [self._prompt("next_item", h, {}) if m != "cf" else "" for h, m in zip(entries, modes)]
        guided = [r for r, m in enumerate(modes) if m != "llm"]
        beta = popularity_exponent(self.fusion, "the adapter manifest")  # tuned on valid (Guide.log_scores)
        cf = dict(zip(guided, self.guide.log_scores([positions[r] for r in guided], self.item_ids, beta))) if guided else {}
        ranked: list[list[tuple[int, float]]] = [[] for _ in positions]
        searched = [r for r, m in enumerate(modes) if m in ("llm", "generate")]
        requests = [ItemSearch(prompts[r], excluded[r], guide=cf.get(r), guide_weight=lam if modes[r] == "generate" else 0.0)
                    for r in searched]  # fmt: skip
        for r, items in zip(searched, self.backend.top_items(requests, k, length_normalize) if requests else []):
            ranked[r] = items
        for r in [r for r, m in enumerate(modes) if m == "cf"]:
            ranked[r] = top(normalised(cf[r], excluded[r]), k)
        for r in [r for r, m in enumerate(modes) if m == "rerank"]:
            n = max(int(self.fusion.get("rerank_candidates", RERANK_CANDIDATES)), k)
            ranked[r] = self._rerank(prompts[r], normalised(cf[r], excluded[r]), lam, n, k)
        out = []
        for h, items in zip(entries, ranked):
            recs = [Recommendation(self.item_ids[i], self.titles[i], s) for i, s in items]
            if explain:
                for rec, text in zip(recs, self._explain_many(h, [self.position[r.item_id] for r in recs])):
                    rec.explanation, rec.grounded = text["text"], text["grounded"]
            out.append(recs)
        return out

    def rerank_scores(self, prompt: str, items: Sequence[int]) -> list[float]:
        """The LLM's log-probability of each item's answer after ``prompt`` (one shared prefill)."""
        return self.scorer.sums(prompt, [self.index.sequences[i] for i in items])

    def catalog_answers(self) -> list[Sequence[int]]:
        """Every catalogue item's answer tokens, in catalogue order (what the LLM scores)."""
        return [self.index.sequences[i] for i in range(len(self.item_ids))]

    def title_priors(self, items: Sequence[int]) -> list[float]:
        """Each item's answer log-probability after the next-item prompt with an empty history."""
        return self.scorer.priors([self.index.sequences[i] for i in items])

    def llm_item_scores(self, prompt: str, items: Sequence[int], kind: str | None = None) -> list[float]:
        """The LLM's part of a rerank score (:class:`TitleScorer`): ``sum`` or ``pmi``; by default
        the adapter's tuned ``fusion.llm_score`` (``sum`` when untuned)."""
        answers = [self.index.sequences[i] for i in items]
        return self.scorer.scores(prompt, answers, kind or self.fusion.get("llm_score", "sum"))

    def _rerank(self, prompt: str, cf: np.ndarray, lam: float, n: int, k: int) -> list[tuple[int, float]]:
        """The collaborative top ``n`` (``cf``: normalised log-probs, -inf where not permitted),
        plus up to ``n`` permitted items the collaborative model never saw (added after training:
        the newest first), each scored ``llm + lam * log p_CF(item)`` (``llm``: :meth:`llm_item_scores`);
        the best ``k``."""
        candidates = [i for i, _ in top(cf, n)]
        unseen = [int(i) for i in self.guide.unknown_items(self.item_ids)[::-1] if np.isfinite(cf[i])][:n]
        candidates += [i for i in unseen if i not in set(candidates)]
        llm = self.llm_item_scores(prompt, candidates) if candidates else []
        return _top_pairs([(i, s + lam * float(cf[i])) for i, s in zip(candidates, llm)], k)

    def short_note(self, asked: int, got: int) -> str | None:
        """Why fewer items than asked came back, or None when all did."""
        if got >= asked:
            return None
        if asked > MAX_K and got == MAX_K:
            return f"{got} of the {asked} items asked: at most {MAX_K} per request"
        return f"{got} of the {asked} items asked: the catalogue holds no more outside the history"

    def predict_yes_no(self, history: Sequence[str | int], item: str | int,
                       disliked: Sequence[str | int] = (), unknown_items: str = "keep") -> float:  # fmt: skip
        """p(the user likes ``item``): the LLM's, renormalised over the template's Yes and No
        answers, fused with the collaborative model when the adapter has a tuned yes/no fusion.

        ``unknown_items`` as in :meth:`read_history`; with ``keep`` an ``item`` outside the
        catalogue is judged from its text by the LLM alone."""
        return self.predict_yes_no_many([(history, item, disliked)], unknown_items)[0]

    def predict_yes_no_many(self, requests: Sequence[tuple[Sequence, str | int, Sequence]],
                            unknown_items: str = "keep") -> list[float]:  # fmt: skip
        """``predict_yes_no`` for a batch of (history, item, disliked) requests."""
        prompts, seen, targets = yes_no_prompts(self, requests, unknown_items)
        return fused_answers(self, self.p_yes(prompts), seen, targets)

    def p_yes(self, prompts: Sequence[str]) -> list[float]:
        """p(yes) for rendered yes/no prompts (e.g. a prepared split's), renormalised over Yes and No."""
        return [renormalize_yes(a, b) for a, b in self.backend.label_logprobs(prompts, self.yes_no_ids)]

    def rank_scores(self, prompts: Sequence[str], n_candidates: Sequence[int]) -> list[list[float]]:
        """Per rendered rank prompt, the log-probability of each of its first ``n`` candidate letters."""
        rows = self.backend.label_logprobs(prompts, self.rank_ids[: max(n_candidates, default=0)])
        return [row[:n] for row, n in zip(rows, n_candidates)]

    def explain(self, history: Sequence[str | int], item: str | int, unknown_items: str = "keep") -> dict[str, Any]:
        """A generated explanation of recommending ``item`` (a catalogue item), with its grounding check."""
        return self._explain_many(self.read_history(history, unknown_items), self.resolve([item]))[0]

    def _explain_many(self, history: Sequence[int | str], items: list[int]) -> list[dict[str, Any]]:
        prompts = [self._prompt("explain", history, {"target": self.titles[i]}) for i in items]
        texts = self.backend.generate(prompts, max_new_tokens=80)
        shown = [self.items.title(e) for e in list(history)[-self.max_history :]]
        out = []
        for item, text in zip(items, texts):
            g = self.checker.check(text, shown, self.titles[item])
            out.append({"text": text, "grounded": g.grounded, "cited": g.cited, "invented": g.invented})
        return out

    def rank(self, history: Sequence[str | int], candidates: Sequence[str | int],
             unknown_items: str = "keep") -> list[Recommendation]:  # fmt: skip
        """``candidates`` (catalogue items) ordered best first, scored in one pass.

        Up to as many candidates as the rank template has labels (20): the label log-probability
        of each at the answer position. More: the catalogue index restricted to the candidates.
        """
        positions, cands = self.read_history(history, unknown_items), self.resolve(candidates)
        if len(set(cands)) != len(cands) or not cands:
            raise LlmrecError("candidates must be distinct and at least one")
        if len(cands) <= len(self.rank_labels) and all(len(ids) == 1 for ids in self.rank_ids):
            pairs = [(self.rank_labels[j], self.titles[c]) for j, c in enumerate(cands)]
            prompt = self._prompt("rank", positions, {"candidates": pairs})
            [row] = self.rank_scores([prompt], [len(cands)])
            scored = list(zip(cands, row))
        else:
            prompt = self._prompt("next_item", positions, {})
            [scored] = self.backend.top_items([ItemSearch(prompt, (), cands)], len(cands))
        scored.sort(key=lambda p: -p[1])
        return [Recommendation(self.item_ids[i], self.titles[i], float(s)) for i, s in scored]


def _top_pairs(pairs: list[tuple[int, float]], k: int) -> list[tuple[int, float]]:
    return sorted(pairs, key=lambda p: -p[1])[:k]
