"""``llmrec serve`` options: one dataclass for the flags, the app and its worker processes."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from llmrec.decoding.loading import LoadOptions
from llmrec.errors import LlmrecError
from llmrec.options import option


@dataclass(kw_only=True)
class ServeOptions(LoadOptions):
    """How ``llmrec serve`` runs: the model and catalogue as recommend loads them, then the server's own."""

    host: str = option("127.0.0.1", "address to listen on")
    port: int = option(8000, "port to listen on")
    keys: Path | None = option(None, "API keys file (make one with `llmrec serve keys add`)")
    insecure_no_auth: bool = option(False, "serve without keys (allowed on a loopback host only)")
    feedback: Path = option(Path("feedback.jsonl"), "the durable feedback log (JSON lines, appended)")
    # 8: the HF backend's default batch on a GPU; not yet measured for the service (eval/bench_serve.py)
    max_batch: int = option(8, "most requests answered by one model call (1: no micro-batching)")
    max_wait_ms: float = option(5.0, "how long the first request of a batch waits for others")
    max_queue: int = option(64, "requests waiting for the model beyond which new ones get 503")
    timeout_s: float = option(120.0, "a request still unanswered after this gets 504")
    max_body_bytes: int = option(1_000_000, "larger request bodies get 413")
    workers: int = option(1, "server processes, each with its own model (memory x N)")

    def __post_init__(self) -> None:
        if self.keys is not None:
            self.keys = Path(self.keys)
        self.feedback = Path(self.feedback)
        for name in ("max_batch", "max_queue", "max_body_bytes", "workers"):
            if getattr(self, name) < 1:
                raise LlmrecError(f"--{name.replace('_', '-')} must be >= 1")
        if not 0 < self.port < 65536:
            raise LlmrecError(f"--port must be 1-65535, got {self.port}")
        if self.max_wait_ms < 0 or self.timeout_s <= 0:
            raise LlmrecError("--max-wait-ms must be >= 0 and --timeout-s > 0")
        if self.keys is None and not self.insecure_no_auth:
            raise LlmrecError("no --keys file: make one with `llmrec serve keys add --keys FILE --scope read`, "
                              "or pass --insecure-no-auth on a loopback host")  # fmt: skip
        if self.insecure_no_auth and self.keys is None and not is_loopback(self.host):
            raise LlmrecError(f"--insecure-no-auth serves only on a loopback host (127.0.0.1, ::1), not {self.host}")

    def to_json(self) -> str:
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> ServeOptions:
        return cls(**json.loads(text))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
