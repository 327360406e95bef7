"""The service's front door, an ASGI middleware in front of every endpoint: request id, API key
and scope, body size limit, metrics and one log line per request.

A request without the key its endpoint's scope needs is refused before its body is read.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid

log = logging.getLogger("llmrec.serve")
ENDPOINTS = ("/v1/recommend", "/v1/predict", "/v1/rank", "/v1/explain", "/v1/feedback", "/v1/items",
             "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")  # fmt: skip
# the scope each endpoint needs; the others (health, readiness, metrics, schema) carry no user data
SCOPES = {"/v1/recommend": "read", "/v1/predict": "read", "/v1/rank": "read", "/v1/explain": "read",
          "/v1/feedback": "feedback", "/v1/items": "admin"}  # fmt: skip


class Gate:
    """ASGI middleware: request id, API key and scope, body size limit, metrics and one log line per request."""

    def __init__(self, app, service) -> None:  # service: app.Service (its options, keys and metrics)
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        status = {"code": 500, "started": False}

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        async def refuse(code: int, error: str, headers: dict[str, str] | None = None) -> None:
            await _send_json(send_with_id, code, {"error": error, "request_id": rid}, headers)

        try:
            if (needed := SCOPES.get(path)) is not None and (problem := self._auth(scope, needed)) is not None:
                await refuse(*problem)  # before the body is read: no key, no work
                return
            limit = self.service.options.max_body_bytes
            body, too_big = await _read_body(receive, limit, scope)
            if too_big:
                await refuse(413, f"body larger than {limit} bytes")
                return
            await self.app(scope, _replay(body, receive), send_with_id)
        except Exception as exc:  # noqa: BLE001 - a bug: the frames are logged, never the message (it can quote titles)
            log.error("%s internal error %s\n%s", rid, type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))
            if not status["started"]:
                await refuse(500, "internal error")
        finally:
            seconds = time.perf_counter() - started
            self.service.metrics.observe(endpoint, status["code"], seconds)
            extra = "".join(f" {k}={v}" for k, v in scope["state"].get("log", {}).items())
            log.info("%s %s %s %d %.1fms%s", rid, scope["method"], endpoint, status["code"], seconds * 1000, extra)

    def _auth(self, scope, needed: str) -> tuple[int, str, dict[str, str] | None] | None:
        """(status, error, headers) when the request may not use ``needed``; None when it may."""
        keys = self.service.keys
        if keys is None:
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("x-api-key")
        verdict = keys.check(key, needed)
        if verdict == 401:
            return 401, "missing or unknown API key (Authorization: Bearer KEY)", {"WWW-Authenticate": "Bearer"}
        if verdict == 403:
            return 403, f"this key may not use scope '{needed}'", None
        return None


async def _read_body(receive, limit: int, scope) -> tuple[bytes, bool]:
    declared = dict(scope.get("headers", [])).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return b"", True
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def _replay(body: bytes, receive):
    sent = {"done": False}

    async def replay():
        if not sent["done"]:
            sent["done"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # http.disconnect, when it comes

    return replay


async def _send_json(send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *extra]})  # fmt: skip
    await send({"type": "http.response.body", "body": data})
