"""``llmrec tune``: the fusion of LLM and collaborative model, chosen on the valid split only.

Next item: for each valid user, the collaborative model's top ``rerank_candidates`` items
(history excluded) are scored once by the LLM (teacher-forced title log-probability, one shared
prefill); every lambda of the grid then ranks them by ``log p_LLM + lambda * log p_CF`` and the
lambda with the best NDCG@10 (the smaller on a tie) is kept, so the grid costs one LLM pass.
The number of candidates is chosen the same way among 10, 20 and ``rerank_candidates`` (the top
n of the scored lists): fewer candidates mean less LLM work per request. So is the LLM score, the
title's log-probability or that less its prior (``pmi``, see ``llmrec.decoding.scoring``), and
whether the LLM takes part at all: both on held-out valid users (``choose_next_item``). With
``pmi``, every catalogue title's prior is then stored in the adapter (``priors.safetensors``).
Before all this, the collaborative distribution's popularity exponent beta (``p_CF(item) * (1 +
train interactions) ** beta``, renormalised) is chosen by the collaborative model's own valid
NDCG@10 over the whole catalogue, on every valid user (``choose_popularity``: no LLM work); its
candidates and ``log p_CF`` follow it.
yes/no: ``p = sigmoid(a * logit p_LLM + b * log p_CF(target) + c [+ d * log(1 + train count) +
e * log(1 + liked train count)])`` fitted by logistic regression (Platt scaling) on the valid
yes/no samples; the item statistics go in only when they score better on held-out valid users
(``llmrec.evaluation.yes_no_fusion``).
Both go into the adapter manifest (``fusion``), which ``recommend``/``predict``/``evaluate`` then
use. Only events of the train and valid splits are read: the histories end before the valid
event, and the test split is dropped before anything is built from the interactions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.collab.guide import normalised, top
from llmrec.errors import LlmrecError
from llmrec.options import option, parse_list

# lambda = 0 is the LLM alone (within the candidates); the largest is the collaborative order
LAMBDAS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0)
# the popularity exponent's grid (0: the collaborative model's own distribution)
POPULARITY = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


@dataclass(kw_only=True)
class TuneOptions:
    """What ``tune`` fits; the CLI fills it from flags."""

    model: Path = option(help="an llmrec adapter folder with a collaborative model (cf/)", parse=Path)
    data: str | None = option(None, "the prepared folder it was trained on (default: embedded ml-latest-small)")
    device: str | None = option(None, "cpu or cuda (default: cuda when available)")
    users: int = option(0, "valid users for the next-item lambda (0 = all), drawn with --seed; the popularity "
                        "exponent is chosen on all")  # fmt: skip
    seed: int = option(0, "seed of the user sample")
    candidates: int = option(50, "collaborative candidates the LLM rescores (rerank mode)")
    lambdas: list[str] = option(default_factory=lambda: [str(x) for x in LAMBDAS], parse=parse_list,
                                help="the lambda grid, comma-separated")  # fmt: skip
    popularity_exponents: list[str] = option(default_factory=lambda: [str(x) for x in POPULARITY], parse=parse_list,
                                             help="the grid of the next-item popularity exponent beta (p_CF times (1 "
                                             "+ train interactions) ** beta), comma-separated; 0 alone keeps the "
                                             "collaborative model's distribution")  # fmt: skip
    tasks: list[str] = option(default_factory=lambda: ["next_item", "yes_no"], parse=parse_list,
                              help="what to tune: next_item,yes_no")  # fmt: skip
    cf: str | None = option(None, "first fit a new collaborative model on --data's train split (auto, sasrec, itemknn, "
                            "popularity) into the adapter's cf/, replacing its own and its fusion: to use an adapter "
                            "on another catalogue of its domain", metavar="MODEL")  # fmt: skip
    cf_max_mb: float | None = option(None, "with --cf: the largest collaborative weights in MB (0 = no limit; "
                                     "default: the adapter recipe's cf_max_mb)", metavar="MB")  # fmt: skip
    llm_scores: list[str] = option(default_factory=lambda: ["sum", "pmi"], parse=parse_list,
                                   help="the LLM scores rerank may use, chosen on held-out valid users: sum (the "
                                   "title's log-probability), pmi (that less the title's prior)")  # fmt: skip
    progress: bool = option(True, "no progress bars", flag="--no-progress")
    grid: list[float] = option(default_factory=list, cli=False)
    betas: list[float] = option(default_factory=list, cli=False)

    def __post_init__(self) -> None:
        self.grid = _grid("--lambdas", self.lambdas)
        self.betas = _grid("--popularity-exponents", self.popularity_exponents)
        if self.candidates < 1 or self.users < 0:
            raise LlmrecError("--candidates must be >= 1 and --users >= 0")
        if self.cf_max_mb is not None and not (np.isfinite(self.cf_max_mb) and self.cf_max_mb >= 0):
            raise LlmrecError(f"--cf-max-mb: expected a number >= 0, got {self.cf_max_mb:g}")
        if self.cf is not None and self.cf not in ("auto", "sasrec", "itemknn", "popularity"):
            raise LlmrecError(f"--cf: expected auto, sasrec, itemknn or popularity, got '{self.cf}'")
        if not self.llm_scores or set(self.llm_scores) - {"sum", "pmi"}:
            raise LlmrecError(f"--llm-scores: expected sum and/or pmi, got {','.join(self.llm_scores) or '(none)'}")
        unknown = [t for t in self.tasks if t not in ("next_item", "yes_no")]
        if unknown or not self.tasks:
            raise LlmrecError(f"--tasks: expected next_item and/or yes_no, got {','.join(self.tasks) or '(none)'}")


def _grid(flag: str, values: Sequence[str]) -> list[float]:
    """A grid flag's distinct values, sorted; each a finite number >= 0."""
    try:
        grid = sorted({float(x) for x in values})
    except ValueError:
        raise LlmrecError(f"{flag}: expected numbers, got {','.join(values)}") from None
    if not grid or any(not np.isfinite(x) or x < 0 for x in grid):
        raise LlmrecError(f"{flag}: every value must be a finite number >= 0")
    return grid


def valid_pairs(rec, folder: Path, users: int, seed: int) -> dict[str, tuple[list[int], int]]:
    """Per valid user (all, or ``users`` drawn with ``seed``): the history before the valid event
    and the valid item, in catalogue positions. The test split is dropped first."""
    from llmrec.data import prepared
    from llmrec.evaluation.evaluate import select_users

    _, interactions, _ = prepared.read_tables(folder)
    interactions = interactions[interactions["split"] != "test"]
    seqs = prepared.sequences(interactions, rec.position)
    chosen = select_users(interactions, "valid", users, seed, (0, 1))
    return {u: p for u in chosen if (p := prepared.history_and_target(seqs[u], "valid")) is not None and p[0]}


def choose_popularity(rec, pairs: dict[str, tuple[list[int], int]], betas: Sequence[float],
                      seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The popularity exponent with the best valid NDCG@10 of the collaborative model alone over
    the whole catalogue (history excluded, ties against the target; the smaller on a tie), and
    for the record the same choice held out (each half of the users scored by the other's)."""
    from llmrec.evaluation.metrics import rank_from_scores

    pop = np.log1p(rec.guide.item_stats(rec.item_ids)["count"]) if any(betas) else np.zeros(len(rec.item_ids))
    values = list(pairs.values())
    ranks = np.empty((len(values), len(betas)))
    for start in range(0, len(values), 64):  # the collaborative model scores a batch of histories at once
        chunk = values[start : start + 64]
        for n, ((history, target), row) in enumerate(zip(chunk, rec.guide.log_scores([h for h, _ in chunk], rec.item_ids))):
            for j, beta in enumerate(betas):
                ranks[start + n, j] = rank_from_scores(row + beta * pop, target, history)
    by_beta = {f"{b:g}": _metrics(ranks[:, j].tolist()) for j, b in enumerate(betas)}

    def pick(rows: np.ndarray) -> int:
        return max(range(len(betas)), key=lambda j: (_metrics(ranks[rows, j].tolist())["ndcg@10"], -betas[j]))

    held, chosen_by_fold = [0.0] * len(values), []
    if len(values) >= 2:
        folds = np.random.default_rng(seed).permutation(len(values)) % 2
        for fold in (0, 1):
            j = pick(np.flatnonzero(folds != fold))
            chosen_by_fold.append(betas[j])
            for k in np.flatnonzero(folds == fold):
                held[k] = ranks[k, j]
    best = betas[pick(np.arange(len(values)))]
    return {"popularity": best, "users": len(values), "by_exponent": by_beta,
            "held_out": {**_metrics(held), "chosen_by_fold": chosen_by_fold} if chosen_by_fold else None}  # fmt: skip


def tune_next_item(rec, pairs: dict[str, tuple[list[int], int]], options: TuneOptions,
                   every: dict[str, tuple[list[int], int]] | None = None) -> dict[str, Any]:  # fmt: skip
    """NDCG@10 and HR@10 of rerank mode for every lambda of the grid on the valid ``pairs``; the
    chosen fusion (:func:`choose_next_item`), over the collaborative distribution of the popularity
    exponent chosen on ``every`` valid user (:func:`choose_popularity`: no LLM work; default ``pairs``)."""
    from tqdm.auto import tqdm

    popularity = choose_popularity(rec, every or pairs, options.betas, options.seed)
    beta = popularity.pop("popularity")
    scored = []
    began = time.perf_counter()
    for history, target in tqdm(pairs.values(), desc="tune next_item", disable=not options.progress):
        cf = normalised(rec.guide.log_scores([history], rec.item_ids, beta)[0], history)
        cands = [i for i, _ in top(cf, options.candidates)]
        llm = np.asarray(rec.rerank_scores(rec._prompt("next_item", history, {}), cands))
        scored.append((cands, llm, cf[cands], target))
    per_user_s = (time.perf_counter() - began) / max(1, len(scored))
    priors = None
    if "pmi" in options.llm_scores:  # each distinct candidate's prior once (no events read)
        distinct = sorted({i for cands, _, _, _ in scored for i in cands})
        prior = dict(zip(distinct, rec.title_priors(distinct)))
        priors = [np.array([prior[i] for i in cands]) for cands, _, _, _ in scored]
    chosen = choose_next_item(scored, options.grid, options.candidates, options.seed, priors, options.llm_scores)
    chosen["valid"].update(seconds_per_user=round(per_user_s, 3), seconds_per_user_at=options.candidates,
                           popularity=popularity)  # fmt: skip
    return {"popularity": beta, **chosen}


def _rank(user: tuple[list[int], np.ndarray, np.ndarray, int], n: int, lam: float) -> float:
    """The target's rank when the collaborative top ``n`` are ordered by ``llm + lam * cf``."""
    from llmrec.evaluation.metrics import rank_in_list

    cands, llm, cf, target = user
    return rank_in_list(cands[:n], (llm[:n] + lam * cf[:n]).tolist(), target)


def _metrics(ranks: list[float]) -> dict[str, float]:
    from llmrec.evaluation.metrics import ranking_metrics

    m = ranking_metrics(ranks, [10])
    return {"ndcg@10": round(m["ndcg@10"], 5), "hr@10": round(m["hr@10"], 5)}


def best_fusion(scored: list, grid: Sequence[float], candidates: int) -> tuple[int, dict, dict[str, dict[str, Any]]]:
    """On ``scored`` users: the chosen candidate count, its NDCG@10/HR@10 by lambda, and each
    count's best lambda (the smaller on a tie)."""
    # fewer candidates cost proportionally less LLM work (rerank scores each title): the candidate
    # count is chosen with lambda, the smaller on a tie; the candidates come in collaborative order,
    # so the top n of the scored lists are what rerank with n candidates would score
    sizes = sorted({n for n in (10, 20) if n < candidates} | {candidates})
    tables = {n: {f"{lam:g}": _metrics([_rank(u, n, lam) for u in scored]) for lam in grid} for n in sizes}
    by_size = {}
    for size in sizes:
        lam = max(grid, key=lambda x: (tables[size][f"{x:g}"]["ndcg@10"], -x))
        recall = float(np.mean([target in cands[:size] for cands, _, _, target in scored]))
        by_size[str(size)] = {"lambda": lam, **tables[size][f"{lam:g}"], "candidate_recall": round(recall, 5)}
    n = max(sizes, key=lambda size: (by_size[str(size)]["ndcg@10"], -size))
    return n, tables[n], by_size


def held_out_ranks(scored: list, grid: Sequence[float], candidates: int,
                   seed: int = 0) -> tuple[list[float], list[dict[str, Any]]] | None:  # fmt: skip
    """Each user's rank under the fusion chosen (``best_fusion``) on the other half of the users
    (two folds, seeded), in ``scored``'s order, and what each fold was ranked with; None for fewer
    than two users."""
    if len(scored) < 2:
        return None
    folds = np.random.default_rng(seed).permutation(len(scored)) % 2
    ranks = [0.0] * len(scored)
    chosen_by_fold = []
    for fold in (0, 1):
        n, _, by_size = best_fusion([u for u, f in zip(scored, folds) if f != fold], grid, candidates)
        lam = by_size[str(n)]["lambda"]
        chosen_by_fold.append({"rerank_candidates": n, "lambda": lam})
        for k in np.flatnonzero(folds == fold):
            ranks[k] = _rank(scored[k], n, lam)
    return ranks, chosen_by_fold


def choose_next_item(scored: list[tuple[list[int], np.ndarray, np.ndarray, int]], grid: Sequence[float],
                     candidates: int, seed: int = 0, priors: list[np.ndarray] | None = None,
                     llm_scores: Sequence[str] = ("sum", "pmi")) -> dict[str, Any]:  # fmt: skip
    """The next-item fusion from per-user (collaborative top candidates, their LLM log-probabilities,
    their collaborative log-probabilities, target): the candidate count and lambda with the best
    valid NDCG@10 (the fewer candidates and the smaller lambda on a tie), or the collaborative
    model alone (``mode: cf``, the limit of an infinite lambda) when it is strictly better than
    the fusion held out (``held_out_ranks``). The LLM is then left out of next-item answers rather
    than kept for a gain that only the users it was tuned on show (as the yes/no inputs are chosen).
    With ``priors`` (per user, each candidate title's prior: ``Recommender.title_priors``) the LLM score
    is chosen too, held out as well, among ``llm_scores``: the sum, or the sum less the prior
    (``pmi``); the sum on a tie."""
    from llmrec.evaluation.metrics import rank_in_list

    kinds = {"sum": scored} if "sum" in llm_scores else {}
    if priors is not None and "pmi" in llm_scores:
        kinds["pmi"] = [(c, llm - p, cf, t) for (c, llm, cf, t), p in zip(scored, priors)]
    if not kinds:
        raise LlmrecError(f"no LLM score to choose from among {', '.join(llm_scores) or '(none)'} (pmi needs priors)")
    fits = {}
    for kind, rows in kinds.items():
        n, table, by_size = best_fusion(rows, grid, candidates)
        held = held_out_ranks(rows, grid, candidates, seed)
        in_sample = {k: by_size[str(n)][k] for k in ("ndcg@10", "hr@10")}
        held_out = {**_metrics(held[0]), "chosen_by_fold": held[1]} if held else {**in_sample, "chosen_by_fold": []}
        fits[kind] = (n, table, by_size, held_out)
    kind = max(fits, key=lambda k: (fits[k][3]["ndcg@10"], k == "sum"))
    n, table, by_size, held_out = fits[kind]
    # the guide's own order (its top ``candidates`` hold its top 10), ties against it as in evaluate
    alone = _metrics([rank_in_list(cands, cf.tolist(), target) for cands, _, cf, target in scored])
    mode = "cf" if alone["ndcg@10"] > held_out["ndcg@10"] else "rerank"
    return {"mode": mode, "llm_score": kind, "lambda": by_size[str(n)]["lambda"], "rerank_candidates": n,
            "valid": {"users": len(scored), "by_lambda": table, "by_candidates": by_size, "cf_alone": alone,
                      "held_out": held_out, "held_out_by_llm_score": {k: f[3]["ndcg@10"] for k, f in fits.items()},
                      "candidate_recall": by_size[str(n)]["candidate_recall"]}}  # fmt: skip


def _refit_guide(adapter: Path, folder: Path, choice: str, progress: bool, max_mb: float | None) -> None:
    """Replace ``adapter/cf/`` by a collaborative model fitted on ``folder``'s train split (tuned
    on its valid split) and drop the fusion tuned for the old one; the manifest's ``cf`` says
    which data it was fitted on. The adapter is consistent at every step (without a fusion it
    answers with the LLM alone until this tune writes the new one)."""
    from llmrec.collab.guide import GUIDE_DIR, fit_guide
    from llmrec.data import prepared
    from llmrec.files import atomic_dir, atomic_write_text
    from llmrec.training.adapter import MANIFEST

    if max_mb is None:
        max_mb = _recipe_budget(adapter)
    guide = fit_guide(folder, choice, progress, max_mb)
    manifest = json.loads((adapter / MANIFEST).read_text())
    manifest.pop("fusion", None)
    atomic_write_text(adapter / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    with atomic_dir(adapter / GUIDE_DIR, overwrite=True) as tmp:
        written = guide.write(tmp)
    hashes = prepared.read_manifest(folder).get("hashes", {})
    manifest["cf"] = {"model": guide.name, **guide.report, "bytes": written,
                      "fitted_on": {"data": str(folder), "hashes": hashes}}  # fmt: skip
    atomic_write_text(adapter / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def _recipe_budget(adapter: Path) -> float:
    """The ``cf_max_mb`` of the recipe the adapter was trained with (0 when it has none)."""
    import yaml

    from llmrec.training.adapter import RECIPE_FILE

    path = adapter / RECIPE_FILE
    recipe = yaml.safe_load(path.read_text()) if path.is_file() else None
    value = recipe.get("cf_max_mb", 0) if isinstance(recipe, dict) else 0
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise LlmrecError(f"{path}: cf_max_mb must be a number >= 0, got {value!r}")
    return float(value)


def _add_item_stats(adapter: Path, folder: Path) -> None:
    """Count the train split's interactions and likes per item into ``adapter/cf/`` when its guide
    has none (trained before it kept them, or the file lost), before the adapter is loaded: its
    stored fusion may read them. The manifest's ``cf.bytes`` follows."""
    import warnings

    from llmrec.collab.guide import GUIDE_DIR, Guide
    from llmrec.data import prepared
    from llmrec.data.split import item_statistics
    from llmrec.errors import LlmrecWarning
    from llmrec.files import atomic_write_text
    from llmrec.training.adapter import MANIFEST

    guide = Guide.load(adapter)
    if guide is None or guide.stats is not None:
        return
    manifest = json.loads((adapter / MANIFEST).read_text())
    if manifest.get("data", {}).get("interactions_hash") != prepared.read_manifest(folder).get("hashes", {}).get("interactions"):
        warnings.warn(f"{folder}: not the interactions the adapter was trained on; its item statistics now count "
                      "this data's train split", LlmrecWarning, stacklevel=3)  # fmt: skip
    guide.stats = item_statistics(prepared.read_tables(folder)[1], guide.item_ids)
    guide.save_stats(adapter / GUIDE_DIR)
    if manifest.get("cf"):
        manifest["cf"]["bytes"] = sum(p.stat().st_size for p in (adapter / GUIDE_DIR).iterdir())
        atomic_write_text(adapter / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def _store_priors(rec, fusion: dict[str, Any], adapter: Path, progress: bool) -> None:
    """When rerank scores by ``pmi``, write every catalogue title's prior into the adapter
    (``llmrec.decoding.scoring``), so that no request waits for them; otherwise remove a stale file."""
    from llmrec.decoding.scoring import PRIORS_FILE

    path = adapter / PRIORS_FILE
    if fusion.get("mode") != "rerank" or fusion.get("llm_score") != "pmi":
        path.unlink(missing_ok=True)
        fusion.pop("priors", None)
        return
    began = time.perf_counter()
    if progress:
        print(f"computing the prior of {len(rec.item_ids):,} titles for {path} ...", flush=True)
    written = rec.scorer.write_priors(path, rec.catalog_answers())
    fusion["priors"] = {"file": PRIORS_FILE, "titles": len(rec.item_ids), "bytes": written,
                        "seconds": round(time.perf_counter() - began, 1)}  # fmt: skip


def tune(options: TuneOptions) -> dict[str, Any]:
    """Tune the fusion of ``options.model`` and write it into its manifest; returns it."""
    from llmrec.decoding.recommender import Recommender
    from llmrec.files import atomic_write_text
    from llmrec.prompting.prepare import prepared_folder
    from llmrec.training.adapter import MANIFEST

    manifest_path = Path(options.model) / MANIFEST
    if not manifest_path.is_file():
        raise LlmrecError(f"{options.model}: not an llmrec adapter folder (no {MANIFEST})")
    folder = prepared_folder(options.data, options.progress)
    if options.cf is not None:
        _refit_guide(Path(options.model), folder, options.cf, options.progress, options.cf_max_mb)
    _add_item_stats(Path(options.model), folder)
    rec = Recommender.load(options.model, folder, device=options.device, batch_size=1)
    if rec.guide is None:
        raise LlmrecError(f"{options.model}: no collaborative model (cf/) to fuse with; train with --cf or tune with --cf")
    manifest = json.loads(manifest_path.read_text())
    fusion = dict(manifest.get("fusion") or {})
    every = valid_pairs(rec, folder, 0, options.seed)
    if "next_item" in options.tasks:
        pairs = valid_pairs(rec, folder, options.users, options.seed) if options.users else every
        fusion.update(tune_next_item(rec, pairs, options, every))
        _store_priors(rec, fusion, Path(options.model), options.progress)
    if "yes_no" in options.tasks:
        from llmrec.evaluation.yes_no_fusion import tune_yes_no

        fusion["yes_no"] = tune_yes_no(rec, folder, every, options.seed)
    fusion["tuned_on"] = {"data": str(folder), "split": "valid",
                          "data_manifest": rec.info.get("hashes", {})}  # fmt: skip
    manifest["fusion"] = fusion
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return fusion
