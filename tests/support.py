"""Helpers the tests import (``from support import write``): on pytest's ``pythonpath`` so that
the repository root, whose ``llmrec/`` would shadow the installed wheel, never is."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
# a training subprocess's environment: nothing may ask the hub
TRAIN_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write a fixture file (creating its folder) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def run_failing(argv: list[str], capsys) -> str:
    """Run the CLI expecting a user error: exit 2 and exactly one line on stderr, no traceback."""
    from llmrec.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("llmrec: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def leftovers(folder: Path) -> list[str]:
    """Temporary folders of ours left in ``folder``."""
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def with_other_test_events(folder: Path, out: Path, seed: int) -> Path:
    """A copy of a prepared folder whose test events point at random catalogue items."""
    import shutil

    import numpy as np

    from llmrec.data import prepared

    shutil.copytree(folder, out)
    catalog, interactions, _ = prepared.read_tables(out)
    test = interactions["split"] == "test"
    items = catalog["item_id"].astype(interactions["item_id"].dtype).to_numpy()
    interactions.loc[test, "item_id"] = np.random.default_rng(seed).choice(items, int(test.sum()))
    interactions.to_parquet(out / "interactions.parquet")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``llmrec serve`` in a subprocess on a free loopback port, ready when constructed."""

    def __init__(self, toy_model: Path, shop: Path, keys: dict, folder: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.feedback = folder / "feedback.jsonl"
        self.log = folder / "server.log"
        argv = [str(Path(sys.executable).with_name("llmrec")), "serve", "--model", str(toy_model), "--data", str(shop),
                "--device", "cpu", "--keys", str(keys["path"]), "--port", str(self.port),
                "--feedback", str(self.feedback), *extra]  # fmt: skip
        self.out = self.log.open("w")
        self.process = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, cwd=folder)
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError("server not ready in 180 s:\n" + self.log.read_text())

    def post(self, path: str, body, key: str | None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=120, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.out.close()


def cli_toy_flags(base: Path) -> list[str]:
    """test_train's shrunk quick recipe as flags, for runs through `main` or `accelerate launch`."""
    return ["--base", str(base), "--set", "batch_size=2", "--set", "max_eval_samples=4", "--set", "logging_steps=1",
            "--no-progress"]
