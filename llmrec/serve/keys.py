"""API keys for ``llmrec serve``: a file of salted hashes, one scope set per key.

A key is shown once, when ``llmrec serve keys add`` makes it; the file keeps only a random salt
and SHA-256(salt + key) per key. A key is 256 random bits, so a fast salted hash is as safe as a
slow password hash would be and costs microseconds per request. Checking a presented key
compares it with every stored hash in constant time (``hmac.compare_digest``), so the time taken
says nothing about which stored key came close.

Scopes: ``read`` (recommend, predict, rank, explain), ``feedback`` (post events), ``admin``
(add catalogue items; admin may also do everything else).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from llmrec.errors import LlmrecError

SCOPES = ("read", "feedback", "admin")
KEY_PREFIX = "llmrec_"
FORMAT = "llmrec-api-keys/1"


@dataclass(frozen=True)
class StoredKey:
    """One key as the file holds it: never the key itself."""

    name: str
    salt: str
    digest: str
    scopes: tuple[str, ...]
    created: float

    def matches(self, key: str) -> bool:
        return hmac.compare_digest(_digest(self.salt, key), self.digest)

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def _digest(salt: str, key: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + key.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """The keys of one file; ``check`` answers whether a presented key may use a scope."""

    def __init__(self, keys: list[StoredKey]) -> None:
        self.keys = keys

    @classmethod
    def read(cls, path: str | Path) -> KeyStore:
        """Read a keys file; a missing, unreadable or malformed one is a one-line error."""
        path = Path(path)
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LlmrecError(f"{path}: no such keys file (make one with `llmrec serve keys add --keys {path}`)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LlmrecError(f"{path}: not a readable llmrec keys file ({exc})") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT or not isinstance(body.get("keys"), list):
            raise LlmrecError(f"{path}: not an llmrec keys file (expected format '{FORMAT}')")
        keys = []
        for n, row in enumerate(body["keys"], start=1):
            try:
                scopes = tuple(row["scopes"])
                key = StoredKey(str(row["name"]), str(row["salt"]), str(row["sha256"]), scopes, float(row["created"]))
                bytes.fromhex(key.salt)
            except (KeyError, TypeError, ValueError):
                raise LlmrecError(f"{path}: key {n}: expected name, salt, sha256, scopes and created") from None
            if not scopes or any(s not in SCOPES for s in scopes):
                raise LlmrecError(f"{path}: key {n}: scopes {list(scopes)} (known: {', '.join(SCOPES)})")
            keys.append(key)
        return cls(keys)

    def check(self, presented: str | None, scope: str) -> int:
        """200 when ``presented`` is a key allowed ``scope``, 401 when it is no key of ours, 403 otherwise."""
        if not presented:
            return 401
        found = None
        for key in self.keys:  # every stored key is compared, whichever matches
            if key.matches(presented):
                found = key
        if found is None:
            return 401
        return 200 if found.allows(scope) else 403


def add_key(path: str | Path, scopes: list[str], name: str | None = None) -> str:
    """Make a new key with ``scopes``, store its salted hash in ``path`` (created if missing,
    replaced atomically, readable by its owner only), and return the key: the only time it is shown."""
    path = Path(path)
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise LlmrecError(f"scope {bad[0] if bad else 'missing'}: expected one or more of {', '.join(SCOPES)}")
    existing = KeyStore.read(path).keys if path.exists() else []
    name = name or f"key-{len(existing) + 1}"
    if any(k.name == name for k in existing):
        raise LlmrecError(f"{path}: a key named '{name}' exists already")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    rows = [{"name": k.name, "salt": k.salt, "sha256": k.digest, "scopes": list(k.scopes), "created": k.created}
            for k in existing]  # fmt: skip
    rows.append({"name": name, "salt": salt, "sha256": _digest(salt, key), "scopes": sorted(set(scopes)),
                 "created": round(time.time(), 3)})  # fmt: skip
    text = json.dumps({"format": FORMAT, "keys": rows}, indent=2) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    except OSError as exc:
        raise LlmrecError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:  # mkstemp makes it 0600
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return key
