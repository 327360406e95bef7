"""The HTTP service: FastAPI endpoints over one ``Recommender``, micro-batched on one model thread.

``create_app(options)`` builds the app; the model loads in the background once the server has
started (``/healthz`` answers at once, ``/readyz`` once the model is in). Every response carries
``X-Request-ID`` (and JSON bodies ``request_id``); every log line names it. Logs hold no user id
(a salted hash), no history and no key. Keys, body limits and the per-request log line are the
middleware's (``gate.Gate``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmrec.decoding.items import free_text
from llmrec.errors import LlmrecError, shorten
from llmrec.serve.batching import MicroBatcher, Overloaded
from llmrec.serve.feedback import FeedbackLog, event_record
from llmrec.serve.gate import Gate
from llmrec.serve.keys import KeyStore
from llmrec.serve.metrics import Metrics
from llmrec.serve.options import ServeOptions
from llmrec.serve.schemas import (
    ExplainRequest,
    FeedbackRequest,
    ItemsRequest,
    PredictRequest,
    RankRequest,
    RecommendRequest,
)

log = logging.getLogger("llmrec.serve")
RETRY_AFTER_S = "1"


class Service:
    """What the endpoints share: the model, its batcher, the keys, the feedback log, the metrics."""

    def __init__(self, options: ServeOptions, recommender=None) -> None:
        self.options = options
        self.metrics = Metrics()
        self.keys = KeyStore.read(options.keys) if options.keys is not None else None
        self.feedback = FeedbackLog(options.feedback)
        self.rec = recommender
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.on_load_failure = None  # called (from the loading thread) when the model cannot load
        self.id_salt = secrets.token_bytes(16)  # per process: log lines of one run can be joined, not reversed
        self.batcher = MicroBatcher(
            {"recommend": self._recommend, "predict": self._predict, "rank": self._each(self._rank),
             "explain": self._each(self._explain), "items": self._each(self._add_items)},
            max_batch=options.max_batch, max_wait_ms=options.max_wait_ms, max_queue=options.max_queue,
            on_batch=lambda task, n: self.metrics.batch_size.labels(task).observe(n),
        )  # fmt: skip
        self.metrics.queue_depth.set_function(self.batcher.depth)

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self._load, name="llmrec-load", daemon=True).start()

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            if self.rec is None:
                from llmrec.cli.common import quiet_loading
                from llmrec.decoding.recommender import Recommender

                quiet_loading()
                o = self.options
                self.rec = Recommender.load(o.model, o.data, o.backend, o.device, o.max_batch)
            self.users = self._user_index()
        except Exception as exc:  # noqa: BLE001 - reported, and the server stops
            self.load_error = shorten(exc, 300) if isinstance(exc, LlmrecError) else f"{type(exc).__name__}: {exc}"
            log.error("model failed to load: %s", self.load_error)
            if self.on_load_failure is not None:
                self.on_load_failure()
            return
        self.metrics.load_seconds.set(time.perf_counter() - started)
        self.batcher.start()
        self.ready.set()
        log.info("model ready in %.1f s: %d catalogue items", time.perf_counter() - started, len(self.rec.item_ids))

    def _user_index(self) -> set[str]:
        inter = self.rec.interactions
        return set() if inter is None else set(inter["user_id"].astype(str).unique())

    def stop(self) -> None:
        self.batcher.stop()
        self.feedback.close()

    def user_tag(self, user: str | int) -> str:
        return hashlib.sha256(self.id_salt + str(user).encode()).hexdigest()[:12]

    # -- batched model calls (the model thread) ----------------------------------------------
    @staticmethod
    def _each(function):
        def batch(payloads):
            out = []
            for p in payloads:
                try:
                    out.append(function(p))
                except Exception as exc:  # noqa: BLE001 - that request's error
                    out.append(exc)
            return out

        return batch

    def _recommend(self, payloads: list[dict]) -> list[dict]:
        rec, first = self.rec, payloads[0]
        histories = [rec.user_history(str(p["user"])) if p["user"] is not None else p["history"] for p in payloads]
        results = rec.recommend_many(histories, first["k"], first["explain"], mode=first["mode"],
                                     guide_weight=first["guide_weight"], unknown_items=first["unknown_items"],
                                     exclude=[p["exclude"] for p in payloads])  # fmt: skip
        out = []
        for history, items in zip(histories, results):
            body = {"items": [i.to_dict() for i in items], "mode": rec.mode_used(history, first["mode"]),
                    "unknown_history": rec.count_unknown(history)}  # fmt: skip
            if note := rec.short_note(first["k"], len(items)):
                body["note"] = note
            out.append(body)
        return out

    def _predict(self, payloads: list[dict]) -> list[dict]:
        rec = self.rec
        unknown = payloads[0]["unknown_items"]
        p = rec.predict_yes_no_many([(x["history"], x["target"], x["disliked"]) for x in payloads], unknown)
        out = []
        for x, value in zip(payloads, p):
            pos = rec.lookup(x["target"])
            target = ({"item_id": rec.item_ids[pos], "title": rec.titles[pos], "in_catalogue": True} if pos is not None
                      else {"item_id": None, "title": free_text(x["target"]), "in_catalogue": False})  # fmt: skip
            out.append({"p_yes": round(float(value), 6), "target": target,
                        "unknown_history": rec.count_unknown(x["history"]) + rec.count_unknown(x["disliked"])})  # fmt: skip
        return out

    def _rank(self, x: dict) -> dict:
        items = self.rec.rank(x["history"], x["candidates"], x["unknown_items"])
        return {"items": [i.to_dict() for i in items], "unknown_history": self.rec.count_unknown(x["history"])}

    def _explain(self, x: dict) -> dict:
        rec = self.rec
        e = rec.explain(x["history"], x["item"], x["unknown_items"])
        [pos] = rec.resolve([x["item"]])
        return {"item_id": rec.item_ids[pos], "title": rec.titles[pos], "explanation": e["text"],
                "grounded": e["grounded"], "cited": e["cited"], "invented": e["invented"],
                "unknown_history": rec.count_unknown(x["history"])}  # fmt: skip

    def _add_items(self, x: dict) -> dict:
        ids = [str(i["item_id"]) for i in x["items"]]
        known = [i for i in ids if i in self.rec.position]
        if known or len(set(ids)) != len(ids):
            raise LlmrecError(f"item_id '{shorten(known[0] if known else ids[0])}': already in the catalogue or twice")
        self.rec.add_items(ids, [i["title"] for i in x["items"]])
        self.metrics.items_added.inc(len(ids))
        return {"added": len(ids), "catalogue_items": len(self.rec.item_ids)}


def create_app(options: ServeOptions, recommender=None) -> FastAPI:
    """The service's app; ``recommender`` (already loaded) skips loading ``options.model``."""
    service = Service(options, recommender)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        yield
        await asyncio.to_thread(service.stop)  # answers what is queued first

    app = FastAPI(title="llmrec", version="1", lifespan=lifespan,
                  description="Recommendations from a generative LLM, decoded only over your catalogue.")  # fmt: skip
    app.state.service = service
    app.add_middleware(Gate, service=service)

    async def model(kind: str, key: Any, payload: dict) -> dict:
        if not service.ready.is_set():
            raise HTTPException(503, service.load_error or "the model is loading", headers={"Retry-After": RETRY_AFTER_S})
        if not service.batcher.alive():
            raise HTTPException(503, "the model thread has stopped; restart the server")
        try:
            return await service.batcher.submit(kind, key, payload, options.timeout_s)
        except Overloaded:
            raise HTTPException(503, "too many requests waiting; retry shortly", headers={"Retry-After": RETRY_AFTER_S}) from None
        except TimeoutError:
            raise HTTPException(504, f"no answer within {options.timeout_s:g} s") from None

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = "body" if first.get("type") == "json_invalid" else _field(first.get("loc", ()))
        return _error(request, 422, f"{field}: {first.get('msg', 'invalid')}", field=field)

    @app.exception_handler(StarletteHTTPException)  # the router's 404/405 too
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(request, exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(LlmrecError)
    async def user_error(request: Request, exc: LlmrecError) -> JSONResponse:
        return _error(request, 422, shorten(exc, 300))

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz(request: Request):
        if service.ready.is_set() and service.batcher.alive():
            return {"status": "ready", "catalogue_items": len(service.rec.item_ids)}
        if service.ready.is_set():
            return _error(request, 503, "the model thread has stopped; restart the server")
        return _error(request, 503, service.load_error or "the model is loading", headers={"Retry-After": RETRY_AFTER_S})

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/recommend")
    async def recommend(body: RecommendRequest, request: Request) -> dict:
        """Top-k catalogue items after a history (or a known user's), optionally explained."""
        if body.user is not None:
            _note(request, user=service.user_tag(body.user))
            if service.ready.is_set() and str(body.user) not in service.users:
                raise HTTPException(404, "user: not in the served data (send a history instead)")
        payload = body.model_dump()
        key = (body.k, body.explain, body.mode, body.guide_weight, body.unknown_items)
        return _ok(request, await model("recommend", key, payload))

    @app.post("/v1/predict")
    async def predict(body: PredictRequest, request: Request) -> dict:
        """p(yes): will a user with this history like the target item?"""
        return _ok(request, await model("predict", body.unknown_items, body.model_dump()))

    @app.post("/v1/rank")
    async def rank(body: RankRequest, request: Request) -> dict:
        """The candidates (catalogue items) ordered best first."""
        return _ok(request, await model("rank", None, body.model_dump()))

    @app.post("/v1/explain")
    async def explain(body: ExplainRequest, request: Request) -> dict:
        """Why this catalogue item for this history, with a grounding check."""
        return _ok(request, await model("explain", None, body.model_dump()))

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackRequest, request: Request) -> dict:
        """Append an event to the durable feedback log (on disk before this answers)."""
        _note(request, user=service.user_tag(body.user))
        if not service.ready.is_set():
            raise HTTPException(503, service.load_error or "the model is loading", headers={"Retry-After": RETRY_AFTER_S})
        pos = service.rec.lookup(body.item)
        if pos is None:
            raise HTTPException(422, "item: not in the catalogue (add it with POST /v1/items first)")
        record = event_record(str(body.user), service.rec.item_ids[pos], service.rec.titles[pos], body.event,
                              body.timestamp if body.timestamp is not None else round(time.time(), 3),
                              body.context, _rid(request))  # fmt: skip
        await asyncio.to_thread(service.feedback.append, record)
        service.metrics.feedback.labels(body.event).inc()
        return _ok(request, {"logged": True, "item_id": record["item"]})

    @app.post("/v1/items")
    async def items(body: ItemsRequest, request: Request) -> dict:
        """Add catalogue items now: recommendable at once, without retraining."""
        if options.workers > 1:
            raise HTTPException(409, "items cannot be added at run time with --workers > 1 (each worker has its own "
                                     "catalogue); add them to the data and restart")  # fmt: skip
        return _ok(request, await model("items", None, body.model_dump()))

    return app


def _field(loc) -> str:
    """A validation error's field as ``history.0``: without ``body`` and the union members pydantic names
    (``history.0.constrained-str``)."""
    parts = [str(p) for p in loc if isinstance(p, int) or (re.fullmatch(r"[a-z_][a-z0-9_]*", str(p))
                                                           and p not in ("body", "int", "str", "float", "bool"))]  # fmt: skip
    return ".".join(parts) or "body"


def _rid(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "-")


def _note(request: Request, **fields: str) -> None:
    request.scope.setdefault("state", {}).setdefault("log", {}).update(fields)


def _ok(request: Request, body: dict) -> dict:
    return {"request_id": _rid(request), **body}


def _error(request: Request, status: int, message: str, field: str | None = None,
           headers: dict | None = None) -> JSONResponse:  # fmt: skip
    body = {"error": message, "request_id": _rid(request)}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


def app_from_environment() -> FastAPI:
    """The app for ``uvicorn --factory`` (``llmrec serve --workers N``): options from ``LLMREC_SERVE_OPTIONS``."""
    return create_app(ServeOptions.from_json(os.environ["LLMREC_SERVE_OPTIONS"]))
